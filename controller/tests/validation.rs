//! Every validation rule: the exact message and where it points (`file:line:column`).

mod common;

use common::{SCHEDULE, diagnostics, load};

/// A schedule named `nightly` with the given `spec` body (indented two spaces).
fn schedule(spec: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: nightly\nspec:\n{spec}"
    )
}

fn check(files: &[(&str, &str)], expected: &[&str]) {
    assert_eq!(diagnostics(files), expected);
}

#[test]
fn the_base_fleet_is_valid() {
    check(&[("s.yaml", SCHEDULE)], &[]);
}

#[test]
fn unknown_fields_suggest_the_nearest_name() {
    let s =
        schedule("  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  pathz: [/etc]\n");
    check(
        &[("s.yaml", &s)],
        &[
            // The misspelt field does not hide what its absence means.
            "s.yaml:5:1: Schedule/nightly: spec.paths: a backup schedule needs at least one path",
            "s.yaml:9:3: Schedule/nightly: spec.pathz: unknown field `pathz`; did you mean `paths`?",
        ],
    );
}

#[test]
fn unknown_fields_far_from_any_name_list_the_valid_ones() {
    let s = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: r2\n  colour: blue\nspec:\n  url: /x\n  password: {hostFile: /p}\n";
    check(
        &[("r.yaml", s)],
        &[
            "r.yaml:5:3: Repo/r2: metadata.colour: unknown field `colour`; expected one of `name`, `namespace`, `labels`, `annotations`",
        ],
    );
}

#[test]
fn unknown_enum_values_suggest_too() {
    let s =
        schedule("  operation: Backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  paths: [/etc]\n");
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:6:3: Schedule/nightly: spec.operation: unknown value `Backup`; did you mean `backup`?",
        ],
    );
}

#[test]
fn bad_names() {
    let s = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: Web_1\n  namespace: Prod\nspec: {}\n";
    check(
        &[("h.yaml", s)],
        &[
            "h.yaml:4:3: Host/Prod/Web_1: metadata.name: `Web_1` is not a valid name: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
            "h.yaml:5:3: Host/Prod/Web_1: metadata.namespace: `Prod` is not a valid namespace: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
        ],
    );
}

#[test]
fn duplicate_names_per_kind_and_namespace() {
    let dup = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: web-1\nspec: {defaultRepo: nas}\n";
    check(
        &[("more/dup.yaml", dup)],
        &[
            "more/dup.yaml:4:3: Host/web-1: metadata.name: duplicate: already declared at hosts.yaml:4:3",
        ],
    );
    // The same name in another namespace, or of another kind, is no duplicate.
    let other_ns = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: web-1\n  namespace: lab\nspec: {}\n";
    let other_kind = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: web-1\nspec: {url: /x, password: {hostFile: /p}}\n";
    check(&[("a.yaml", other_ns), ("b.yaml", other_kind)], &[]);
}

#[test]
fn unparsable_cron_and_time_zone() {
    let s = schedule(
        "  operation: backup\n  cron: '61 2 * * *'\n  timeZone: Europe/Nowhere\n  hosts: [web-1]\n  paths: [/etc]\n",
    );
    let d = diagnostics(&[("s.yaml", &s)]);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(
        d[0],
        "s.yaml:7:3: Schedule/nightly: spec.cron: invalid minute `61` in `61 2 * * *`: `61` is out of range 0-59"
    );
    assert_eq!(
        d[1],
        "s.yaml:8:3: Schedule/nightly: spec.timeZone: unknown time zone `Europe/Nowhere`; use an IANA name such as `UTC` or `Europe/Berlin`"
    );
    let s = schedule("  operation: backup\n  cron: '0 2 * *'\n  hosts: [web-1]\n  paths: [/etc]\n");
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:7:3: Schedule/nightly: spec.cron: `0 2 * *` has 4 fields; expected 5 (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a macro such as @daily",
        ],
    );
}

#[test]
fn references_to_missing_hosts_and_repos() {
    let s = schedule(
        "  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1, web-9]\n  repo: tape\n  paths: [/etc]\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:8:18: Schedule/nightly: spec.hosts[1]: no Host `web-9` in namespace `default`",
            "s.yaml:9:3: Schedule/nightly: spec.repo: no Repo `tape` in namespace `default`",
        ],
    );
    let h = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: web-3\nspec:\n  defaultRepo: tape\n";
    check(
        &[("h.yaml", h)],
        &["h.yaml:6:3: Host/web-3: spec.defaultRepo: no Repo `tape` in namespace `default`"],
    );
}

#[test]
fn references_do_not_cross_namespaces() {
    let s = "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: nightly\n  namespace: lab\nspec:\n  operation: prune\n  cron: '@daily'\n  hosts: [web-1]\n";
    check(
        &[("s.yaml", s)],
        &["s.yaml:9:11: Schedule/lab/nightly: spec.hosts[0]: no Host `web-1` in namespace `lab`"],
    );
}

#[test]
fn a_selector_matching_no_host_is_a_warning() {
    let s = schedule(
        "  operation: backup\n  cron: '0 2 * * *'\n  hostSelector:\n    matchLabels: {role: mainframe}\n  paths: [/etc]\n",
    );
    let loaded = load(&[
        ("repo.yaml", common::REPO),
        ("hosts.yaml", common::HOSTS),
        ("s.yaml", &s),
    ]);
    assert!(loaded.is_valid());
    let warnings: Vec<String> = loaded.warnings().map(|d| d.to_string()).collect();
    assert_eq!(
        warnings,
        ["s.yaml:8:3: warning: Schedule/nightly: spec.hostSelector: selects no host"]
    );
}

#[test]
fn a_schedule_must_name_hosts() {
    let s = schedule("  operation: backup\n  cron: '0 2 * * *'\n  paths: [/etc]\n");
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:5:1: Schedule/nightly: spec: names no hosts; set `hosts`, `hostSelector`, or both",
        ],
    );
}

#[test]
fn hooks_only_on_backup_schedules() {
    let s = schedule(
        "  operation: check\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  hooks:\n    pre: [{command: [/bin/true]}]\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:9:3: Schedule/nightly: spec.hooks: only a backup schedule takes hooks; this one runs check",
        ],
    );
}

#[test]
fn fields_of_other_operations_are_errors_not_ignored() {
    let s = schedule(
        "  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  paths: [/etc]\n  retention: {keepLast: 3}\n  readDataSubset: 5%\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:10:3: Schedule/nightly: spec.retention: only a forget schedule takes retention; this one runs backup",
            "s.yaml:11:3: Schedule/nightly: spec.readDataSubset: only a check schedule takes readDataSubset; this one runs backup",
        ],
    );
}

#[test]
fn forget_without_retention() {
    let s = schedule("  operation: forget\n  cron: '0 2 * * 0'\n  hosts: [web-1]\n");
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:5:1: Schedule/nightly: spec.retention: a forget schedule needs a retention policy (keepLast, keepDaily, …)",
        ],
    );
    let s =
        schedule("  operation: forget\n  cron: '0 2 * * 0'\n  hosts: [web-1]\n  retention: {}\n");
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:9:3: Schedule/nightly: spec.retention: the retention policy keeps nothing; set at least one keep* field",
        ],
    );
    let s = schedule(
        "  operation: forget\n  cron: '0 2 * * 0'\n  hosts: [web-1]\n  retention: {keepWithin: 3weeks}\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:9:15: Schedule/nightly: spec.retention.keepWithin: `3weeks` is not a restic duration such as `2y5m7d3h`",
        ],
    );
}

#[test]
fn backup_without_paths() {
    let s = schedule("  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n");
    check(
        &[("s.yaml", &s)],
        &["s.yaml:5:1: Schedule/nightly: spec.paths: a backup schedule needs at least one path"],
    );
}

#[test]
fn a_schedule_without_repo_needs_host_defaults() {
    let h = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: bare\nspec: {}\n";
    let s = schedule("  operation: prune\n  cron: '@weekly'\n  hosts: [bare]\n");
    check(
        &[("h.yaml", h), ("s.yaml", &s)],
        &[
            "s.yaml:5:1: Schedule/nightly: spec.repo: names no repo, and host `bare` has no defaultRepo",
        ],
    );
}

#[test]
fn durations_hooks_and_subsets() {
    let s = schedule(
        "  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  paths: [/etc]\n  jitter: soon\n  hooks:\n    post: [{command: [''], timeout: 0s}]\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:10:3: Schedule/nightly: spec.jitter: `soon` is not a duration such as `30m`, `1h30m` or `2d`",
            "s.yaml:12:13: Schedule/nightly: spec.hooks.post[0].command: needs a program to run",
            "s.yaml:12:28: Schedule/nightly: spec.hooks.post[0].timeout: `0s` is zero",
        ],
    );
    let s = schedule(
        "  operation: check\n  cron: '0 2 1 * *'\n  hosts: [web-1]\n  readDataSubset: most\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:9:3: Schedule/nightly: spec.readDataSubset: `most` is not `n/t`, a percentage such as `10%`, or a size such as `5G`",
        ],
    );
}

#[test]
fn a_rotating_check_takes_one_to_a_thousand_parts_and_no_subset() {
    let s = schedule(
        "  operation: check\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  readDataRotate: 7\n",
    );
    check(&[("s.yaml", &s)], &[]);
    let s = schedule(
        "  operation: check\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  readDataRotate: 0\n",
    );
    check(
        &[("s.yaml", &s)],
        &["s.yaml:9:3: Schedule/nightly: spec.readDataRotate: must be from 1 to 1000 parts, not 0"],
    );
    let s = schedule(
        "  operation: check\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  readDataRotate: 7\n  readDataSubset: 1/7\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:9:3: Schedule/nightly: spec.readDataRotate: set readDataRotate or readDataSubset, not both: rotating chooses the subset of each run",
        ],
    );
    let s = schedule(
        "  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  paths: [/etc]\n  readDataRotate: 7\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:10:3: Schedule/nightly: spec.readDataRotate: only a check schedule takes readDataRotate; this one runs backup",
        ],
    );
}

#[test]
fn secret_sources() {
    let r = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: s3\nspec:\n  url: s3:x\n  password:\n    secretKeyRef: {name: s, key: k}\n  env:\n    - name: AWS_KEY\n    - name: 9LIVES\n      value: x\n      valueFrom: {file: relative}\n";
    check(
        &[("r.yaml", r)],
        &[
            "r.yaml:8:5: Repo/s3: spec.password.secretKeyRef: Kubernetes Secrets are not available in files mode; use `file` (on the controller) or `hostFile` (on the host)",
            "r.yaml:10:7: Repo/s3: spec.env[0]: set exactly one of `value` and `valueFrom`",
            "r.yaml:11:7: Repo/s3: spec.env[1]: set exactly one of `value` and `valueFrom`",
            "r.yaml:11:7: Repo/s3: spec.env[1].name: `9LIVES` is not a valid environment variable name",
        ],
    );
    let r = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: two\nspec:\n  url: /x\n  password: {file: /a, hostFile: /b}\n";
    check(
        &[("r.yaml", r)],
        &[
            "r.yaml:7:3: Repo/two: spec.password: set exactly one of `secretKeyRef`, `file` and `hostFile`",
        ],
    );
}

#[test]
fn run_requests() {
    let b = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: web-7\n  schedule: hourly\n";
    check(
        &[("b.yaml", b)],
        &[
            "b.yaml:6:3: Backup/now: spec.host: no Host `web-7` in namespace `default`",
            "b.yaml:7:3: Backup/now: spec.schedule: no Schedule `hourly` in namespace `default`",
        ],
    );
    let b = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: web-1\n  operation: forget\n";
    check(
        &[("b.yaml", b)],
        &[
            "b.yaml:7:3: Backup/now: spec.operation: a forget request needs a schedule to take its parameters from; set `schedule`",
        ],
    );
    let b = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: web-1\n  schedule: nightly\n  operation: check\n";
    check(
        &[("s.yaml", SCHEDULE), ("b.yaml", b)],
        &["b.yaml:8:3: Backup/now: spec.operation: is check, but schedule `nightly` runs backup"],
    );
    let ok = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: web-1\n  schedule: nightly\n";
    check(&[("s.yaml", SCHEDULE), ("b.yaml", ok)], &[]);
}

#[test]
fn restore_requests() {
    let r = "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata:\n  name: back\nspec:\n  host: web-1\n  snapshot: latest\n  backup: b1\n  targetHost: db-1\n  targetPath: restore/here\n";
    check(
        &[("r.yaml", r)],
        &[
            "r.yaml:5:1: Restore/back: spec: set exactly one of `snapshot` (an id or `latest`), `backup` or `schedule`",
            "r.yaml:10:3: Restore/back: spec.targetPath: `restore/here` is not an absolute path",
        ],
    );
}

#[test]
fn status_cannot_be_declared_in_a_file() {
    let h = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: web-3\nspec: {}\nstatus:\n  online: true\n";
    check(
        &[("h.yaml", h)],
        &[
            "h.yaml:6:1: status: status is written by the controller; a file declares only metadata and spec",
        ],
    );
}

#[test]
fn tags_only_on_backup_and_forget() {
    let s =
        schedule("  operation: check\n  cron: '0 2 1 * *'\n  hosts: [web-1]\n  tags: [nightly]\n");
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:9:3: Schedule/nightly: spec.tags: only a backup or forget schedule takes tags; this one runs check",
        ],
    );
}

#[test]
fn selector_operators_and_values_agree() {
    let s = schedule(
        "  operation: prune\n  cron: '@weekly'\n  hostSelector:\n    matchExpressions:\n      - {key: role, operator: In}\n      - {key: role, operator: Exists, values: [web]}\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:10:10: Schedule/nightly: spec.hostSelector.matchExpressions[0].values: In needs at least one value",
            "s.yaml:11:39: Schedule/nightly: spec.hostSelector.matchExpressions[1].values: Exists takes no values",
        ],
    );
}

/// A Repo whose everyday access is append-only, with `admin` given as YAML (or none).
fn append_only_repo(name: &str, admin: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: {name}\nspec:\n  url: rest:http://nas:8000/fleet/\n  password: {{hostFile: /etc/holdfast/fleet.password}}\n  appendOnly: true\n{admin}"
    )
}

#[test]
fn forget_and_prune_need_an_admin_access_on_an_append_only_repo() {
    let vault = append_only_repo("vault", "");
    let forget = schedule(
        "  operation: forget\n  cron: '@weekly'\n  hosts: [web-1]\n  repo: vault\n  retention: {keepDaily: 7}\n",
    );
    let message = "a forget deletes, but Repo `vault` is append-only (`spec.appendOnly: true`) and declares no `spec.admin` access; give Repo `vault` an `admin` access that may delete";
    check(
        &[("vault.yaml", &vault), ("s.yaml", &forget)],
        &[&format!(
            "s.yaml:9:3: Schedule/nightly: spec.repo: {message}"
        )],
    );
    // Forget with prune, and prune alone.
    let forget_prune = schedule(
        "  operation: forget\n  cron: '@weekly'\n  hosts: [web-1]\n  repo: vault\n  retention: {keepDaily: 7}\n  prune: true\n",
    );
    check(
        &[("vault.yaml", &vault), ("s.yaml", &forget_prune)],
        &[&format!(
            "s.yaml:9:3: Schedule/nightly: spec.repo: {message}"
        )],
    );
    let prune =
        schedule("  operation: prune\n  cron: '@weekly'\n  hosts: [web-1]\n  repo: vault\n");
    check(
        &[("vault.yaml", &vault), ("s.yaml", &prune)],
        &[&format!(
            "s.yaml:9:3: Schedule/nightly: spec.repo: {}",
            message.replace("a forget", "a prune")
        )],
    );
    // Backup and check never delete: append-only is what they are for.
    for op in [
        "  operation: backup\n  paths: [/etc]\n",
        "  operation: check\n",
    ] {
        let s = schedule(&format!(
            "{op}  cron: '@daily'\n  hosts: [web-1]\n  repo: vault\n"
        ));
        check(&[("vault.yaml", &vault), ("s.yaml", &s)], &[]);
    }
    // With an admin access that differs, forget and prune are fine.
    let admin = append_only_repo("vault", "  admin:\n    url: rest:http://nas:8001/fleet/\n");
    check(&[("vault.yaml", &admin), ("s.yaml", &forget_prune)], &[]);
    check(&[("vault.yaml", &admin), ("s.yaml", &prune)], &[]);
    // `admin: {}` is the everyday access again.
    let empty = append_only_repo("vault", "  admin: {}\n");
    check(
        &[("vault.yaml", &empty), ("s.yaml", &prune)],
        &[
            "s.yaml:9:3: Schedule/nightly: spec.repo: a prune deletes, but Repo `vault` is append-only (`spec.appendOnly: true`) and its `spec.admin` sets no url, password or env, so it is the same access; give Repo `vault` an `admin` access that may delete",
        ],
    );
}

#[test]
fn an_append_only_default_repo_is_named_with_its_host() {
    let vault = append_only_repo("vault", "");
    let hosts = "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: app-1\n  labels: {role: app}\nspec: {defaultRepo: vault}\n---\napiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: app-2\n  labels: {role: app}\nspec: {defaultRepo: vault}\n";
    let s = schedule(
        "  operation: prune\n  cron: '@weekly'\n  hostSelector:\n    matchLabels: {role: app}\n",
    );
    // Once for the repo, however many hosts share it.
    check(
        &[("vault.yaml", &vault), ("apps.yaml", hosts), ("s.yaml", &s)],
        &[
            "s.yaml:5:1: Schedule/nightly: spec.repo: a prune deletes, but host `app-1`'s defaultRepo `vault` is append-only (`spec.appendOnly: true`) and declares no `spec.admin` access; give Repo `vault` an `admin` access that may delete",
        ],
    );
    // A run request: prune without a schedule, on the host's default repo or an override.
    let b = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: app-1\n  operation: prune\n";
    check(
        &[("vault.yaml", &vault), ("apps.yaml", hosts), ("b.yaml", b)],
        &[
            "b.yaml:5:1: Backup/now: spec.repo: a prune deletes, but host `app-1`'s defaultRepo `vault` is append-only (`spec.appendOnly: true`) and declares no `spec.admin` access; give Repo `vault` an `admin` access that may delete",
        ],
    );
    let b = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: web-1\n  operation: prune\n  repo: vault\n";
    check(
        &[("vault.yaml", &vault), ("b.yaml", b)],
        &[
            "b.yaml:8:3: Backup/now: spec.repo: a prune deletes, but Repo `vault` is append-only (`spec.appendOnly: true`) and declares no `spec.admin` access; give Repo `vault` an `admin` access that may delete",
        ],
    );
}

#[test]
fn an_unknown_field_is_reported_with_the_objects_other_errors() {
    let s = schedule(
        "  operation: backup\n  cron: '61 2 * * *'\n  hosts: [web-1, nowhere]\n  pathz: [/etc]\n  paths: [/etc]\n  jiter: 5m\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:7:3: Schedule/nightly: spec.cron: invalid minute `61` in `61 2 * * *`: `61` is out of range 0-59",
            "s.yaml:8:18: Schedule/nightly: spec.hosts[1]: no Host `nowhere` in namespace `default`",
            "s.yaml:9:3: Schedule/nightly: spec.pathz: unknown field `pathz`; did you mean `paths`?",
            "s.yaml:11:3: Schedule/nightly: spec.jiter: unknown field `jiter`; did you mean `jitter`?",
        ],
    );
    // Unknown fields in metadata and deeper in the spec, beside an error of another kind.
    let r = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: r2\n  colour: blue\nspec:\n  url: /x\n  password: {hostFile: /p, hostFiel: /q}\n  appendOnly: maybe\n";
    check(
        &[("r.yaml", r)],
        &[
            "r.yaml:5:3: Repo/r2: metadata.colour: unknown field `colour`; expected one of `name`, `namespace`, `labels`, `annotations`",
            "r.yaml:8:28: Repo/r2: spec.password.hostFiel: unknown field `hostFiel`; did you mean `hostFile`?",
            "r.yaml:9:3: Repo/r2: spec.appendOnly: expected `true` or `false`, got `maybe`",
        ],
    );
}

/// A Notifier named `ops` with the given `spec` body (indented two spaces).
fn notifier(spec: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Notifier\nmetadata:\n  name: ops\nspec:\n{spec}"
    )
}

#[test]
fn a_notifier_names_exactly_one_receiver() {
    check(
        &[("n.yaml", &notifier("  events: [RunFailed]\n"))],
        &[
            "n.yaml:5:1: Notifier/ops: spec: set exactly one receiver: `webhook`, `ntfy`, `email` or `alertmanager`",
        ],
    );
    let two = notifier(
        "  webhook: {url: 'https://hooks.example.com/x'}\n  ntfy: {url: 'https://ntfy.sh/t'}\n",
    );
    check(
        &[("n.yaml", &two)],
        &[
            "n.yaml:5:1: Notifier/ops: spec: set exactly one receiver: `webhook`, `ntfy`, `email` or `alertmanager`",
        ],
    );
    check(
        &[("n.yaml", &notifier("  ntfy: {url: 'https://ntfy.sh/t'}\n"))],
        &[],
    );
}

#[test]
fn notifier_urls_addresses_secrets_and_durations() {
    let webhook = notifier(
        "  webhook:\n    url: hooks.example.com/x\n    signingSecret: {hostFile: /etc/key}\n  repeatInterval: soon\n  repoGrowthFactor: 0.5\n  events: [RunFailed, RunFailed]\n",
    );
    check(
        &[("n.yaml", &webhook)],
        &[
            "n.yaml:7:5: Notifier/ops: spec.webhook.url: `hooks.example.com/x` is not an http:// or https:// URL with a host",
            "n.yaml:8:21: Notifier/ops: spec.webhook.signingSecret.hostFile: the controller sends notifications, so it needs the secret: use `file` (on the controller) or `secretKeyRef`",
            "n.yaml:9:3: Notifier/ops: spec.repeatInterval: `soon` is not a duration such as `30m`, `1h30m` or `2d`",
            "n.yaml:10:3: Notifier/ops: spec.repoGrowthFactor: 0.5 is not a growth: give a factor above 1, such as 2",
            "n.yaml:11:23: Notifier/ops: spec.events[1]: `RunFailed` is listed twice",
        ],
    );
    let email = notifier(
        "  email:\n    host: smtp.example.com\n    from: holdfast\n    to: [ops@example.com, nobody]\n    username: holdfast\n",
    );
    check(
        &[("n.yaml", &email)],
        &[
            "n.yaml:6:3: Notifier/ops: spec.email: set both `username` and `password` to log in, or neither",
            "n.yaml:8:5: Notifier/ops: spec.email.from: `holdfast` is not a mail address such as `holdfast@example.com`",
            "n.yaml:9:27: Notifier/ops: spec.email.to[1]: `nobody` is not a mail address such as `ops@example.com`",
        ],
    );
    let kube_secret = notifier(
        "  alertmanager:\n    url: http://alertmanager:9093\n    token: {secretKeyRef: {name: am, key: token}}\n",
    );
    check(
        &[("n.yaml", &kube_secret)],
        &[
            "n.yaml:8:13: Notifier/ops: spec.alertmanager.token.secretKeyRef: Kubernetes Secrets are not available in files mode; use `file` (on the controller) or `hostFile` (on the host)",
        ],
    );
    check(
        &[(
            "n.yaml",
            &notifier("  ntfy: {url: 'https://ntfy.sh/t'}\n  events: [ScheduleStale, RunFaild]\n"),
        )],
        &[
            "n.yaml:7:27: Notifier/ops: spec.events[1]: unknown value `RunFaild`; did you mean `RunFailed`?",
        ],
    );
}

/// A drill schedule named `weekly` with the given `spec` body after its operation, cron and hosts.
fn drill(rest: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: weekly\nspec:\n  operation: drill\n  cron: '0 4 * * 0'\n  hosts: [web-1]\n{rest}"
    )
}

#[test]
fn a_drill_of_a_backup_schedule_with_a_sample_is_valid() {
    let d = drill(
        "  drill:\n    backupSchedule: nightly\n    sampleFiles: 10\n    maxBytes: 1000000\n",
    );
    check(&[("s.yaml", SCHEDULE), ("d.yaml", &d)], &[]);
    // No drill section: the host's latest snapshot, the default sample.
    check(&[("d.yaml", &drill(""))], &[]);
    let cross = drill("  drill: {sourceHost: db-1, include: [/var/lib/postgresql]}\n");
    check(&[("d.yaml", &cross)], &[]);
}

#[test]
fn a_drill_chooses_its_files_one_way_within_limits() {
    let d = drill("  drill:\n    include: [etc, /srv]\n    sampleFiles: 5\n    maxBytes: 10\n");
    check(
        &[("d.yaml", &d)],
        &[
            "d.yaml:9:3: Schedule/weekly: spec.drill: set `include` (whole paths) or `sampleFiles` (a random sample), not both",
            "d.yaml:10:15: Schedule/weekly: spec.drill.include[0]: `etc` is not an absolute path in the snapshot, such as `/etc`",
            "d.yaml:12:5: Schedule/weekly: spec.drill.maxBytes: caps a random sample; with `include` the whole paths are restored, so drop it",
        ],
    );
    let d = drill("  drill: {sampleFiles: 0, maxBytes: 0}\n");
    check(
        &[("d.yaml", &d)],
        &[
            "d.yaml:9:11: Schedule/weekly: spec.drill.sampleFiles: must be at least 1",
            "d.yaml:9:27: Schedule/weekly: spec.drill.maxBytes: must be at least 1 byte",
        ],
    );
    let d = drill("  drill: {sampleFiles: 5000}\n");
    check(
        &[("d.yaml", &d)],
        &[
            "d.yaml:9:11: Schedule/weekly: spec.drill.sampleFiles: 5000 is more than 1000 files; each is read back from the repository on its own",
        ],
    );
}

#[test]
fn a_drill_names_a_backup_schedule_and_a_host_that_exist() {
    let d = drill("  drill: {backupSchedule: hourly, sourceHost: web-9}\n");
    check(
        &[("d.yaml", &d)],
        &[
            "d.yaml:9:11: Schedule/weekly: spec.drill.backupSchedule: no Schedule `hourly` in namespace `default`",
            "d.yaml:9:35: Schedule/weekly: spec.drill.sourceHost: no Host `web-9` in namespace `default`",
        ],
    );
    let prune = "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: tidy\nspec:\n  operation: prune\n  cron: '0 5 * * *'\n  hosts: [web-1]\n";
    let d = drill("  drill: {backupSchedule: tidy}\n");
    check(
        &[("p.yaml", prune), ("d.yaml", &d)],
        &[
            "d.yaml:9:11: Schedule/weekly: spec.drill.backupSchedule: schedule `tidy` runs prune; a drill restores what a backup schedule made",
        ],
    );
    // db-1 does not run nightly, so its drill would find nothing.
    let d = drill("  drill: {backupSchedule: nightly, sourceHost: db-1}\n");
    check(
        &[("s.yaml", SCHEDULE), ("d.yaml", &d)],
        &[
            "d.yaml:9:11: warning: Schedule/weekly: spec.drill.backupSchedule: schedule `nightly` does not run on host `db-1`, so a drill finds no snapshot of it there",
        ],
    );
}

#[test]
fn only_a_drill_schedule_takes_drill_and_a_drill_request_needs_no_schedule() {
    let s = schedule(
        "  operation: backup\n  cron: '0 2 * * *'\n  hosts: [web-1]\n  paths: [/etc]\n  drill: {sampleFiles: 3}\n",
    );
    check(
        &[("s.yaml", &s)],
        &[
            "s.yaml:10:3: Schedule/nightly: spec.drill: only a drill schedule takes drill; this one runs backup",
        ],
    );
    let b = "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now\nspec:\n  host: web-1\n  operation: drill\n";
    check(&[("b.yaml", b)], &[]);
}
