//! Validation of a whole revision: a pure function from resources to findings.
//!
//! Field-level rules (names, cron, durations, which fields fit which operation) and references
//! between resources (a schedule's hosts and repo, a host's default repo) are checked here, once
//! for both modes. Parse errors (syntax, types, unknown fields) belong to the source that parses.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::ResourceExt;
use protocol::Operation;

use crate::cronspec;
use crate::diagnostics::{FieldPath, Finding, Severity};
use crate::resources::{
    Backup, DrillSpec, EnvVar, HookSpec, Hooks, Host, Kind, LabelSelector, MAX_DRILL_SAMPLE_FILES,
    Notifier, ObjectKey, Repo, Restore, Schedule, SecretSource, SelectorOperator,
};
use crate::revision::{Revision, RevisionIndex, key_of};
use crate::select::HostIndex;

/// Where desired state comes from; some references only make sense in one mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Files,
    Kubernetes,
}

/// Every finding about `revision`, sorted.
pub fn validate(revision: &Revision, mode: Mode) -> Vec<Finding> {
    let index = revision.index();
    let hosts = HostIndex::new(&revision.hosts);
    let mut v = Validator {
        findings: Vec::new(),
        mode,
        index: &index,
        hosts: &hosts,
    };
    for repo in &revision.repos {
        v.repo(repo);
    }
    for host in &revision.hosts {
        v.host(host);
    }
    for schedule in &revision.schedules {
        v.schedule(schedule);
    }
    for backup in &revision.backups {
        v.backup(backup);
    }
    for restore in &revision.restores {
        v.restore(restore);
    }
    for notifier in &revision.notifiers {
        v.notifier(notifier);
    }
    v.findings.sort();
    v.findings
}

struct Validator<'a> {
    findings: Vec<Finding>,
    mode: Mode,
    index: &'a RevisionIndex<'a>,
    hosts: &'a HostIndex<'a>,
}

/// Findings about one resource.
struct Scope<'v, 'a> {
    v: &'v mut Validator<'a>,
    object: ObjectKey,
}

impl Scope<'_, '_> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, FieldPath::parse(field), message.into());
    }

    fn error_at(&mut self, field: FieldPath, message: impl Into<String>) {
        self.push(Severity::Error, field, message.into());
    }

    fn warning(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, FieldPath::parse(field), message.into());
    }

    fn push(&mut self, severity: Severity, field: FieldPath, message: String) {
        self.v.findings.push(Finding {
            severity,
            object: self.object.clone(),
            field,
            message,
        });
    }

    fn namespace(&self) -> &str {
        &self.object.namespace
    }
}

impl<'a> Validator<'a> {
    fn scope<K: ResourceExt>(&mut self, kind: Kind, object: &K) -> Scope<'_, 'a> {
        let key = key_of(kind, object);
        let mut scope = Scope {
            v: self,
            object: key,
        };
        check_name(&mut scope);
        scope
    }

    fn repo(&mut self, repo: &Repo) {
        let mode = self.mode;
        let mut s = self.scope(Kind::Repo, repo);
        if repo.spec.url.trim().is_empty() {
            s.error("spec.url", "must not be empty");
        }
        check_secret(&mut s, mode, "spec.password", &repo.spec.password);
        check_env(&mut s, mode, "spec.env", &repo.spec.env);
        if let Some(admin) = &repo.spec.admin {
            if admin.url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                s.error("spec.admin.url", "must not be empty when set");
            }
            if let Some(password) = &admin.password {
                check_secret(&mut s, mode, "spec.admin.password", password);
            }
            check_env(&mut s, mode, "spec.admin.env", &admin.env);
        }
    }

    fn host(&mut self, host: &Host) {
        let index = self.index;
        let mut s = self.scope(Kind::Host, host);
        if let Some(repo) = &host.spec.default_repo {
            check_ref(&mut s, "spec.defaultRepo", Kind::Repo, repo, |ns, n| {
                index.repos.contains_key(&(ns, n))
            });
        }
        if let Some(hooks) = &host.spec.defaults.hooks {
            check_hooks(&mut s, "spec.defaults.hooks", hooks);
        }
    }

    fn schedule(&mut self, schedule: &Schedule) {
        let (index, hosts) = (self.index, self.hosts);
        let spec = &schedule.spec;
        let mut s = self.scope(Kind::Schedule, schedule);
        if let Err(e) = cronspec::parse(&spec.cron) {
            s.error("spec.cron", e.to_string());
        }
        if let Some(tz) = &spec.time_zone
            && let Err(e) = cronspec::parse_time_zone(tz)
        {
            s.error("spec.timeZone", e.to_string());
        }
        for (field, value) in [
            ("spec.jitter", &spec.jitter),
            ("spec.staleAfter", &spec.stale_after),
        ] {
            if let Some(text) = value
                && let Err(e) = parse_duration(text)
            {
                s.error(field, e.to_string());
            }
        }

        // Which fields belong to which operation: a field that would be ignored is an error.
        let op = spec.operation;
        let only = |s: &mut Scope, set: bool, field: &str, owner: Operation| {
            if set && op != owner {
                s.error(
                    field,
                    format!(
                        "only a {owner} schedule takes {}; this one runs {op}",
                        last(field)
                    ),
                );
            }
        };
        only(
            &mut s,
            spec.hooks.is_some(),
            "spec.hooks",
            Operation::Backup,
        );
        only(
            &mut s,
            !spec.paths.is_empty(),
            "spec.paths",
            Operation::Backup,
        );
        only(
            &mut s,
            !spec.excludes.is_empty(),
            "spec.excludes",
            Operation::Backup,
        );
        only(
            &mut s,
            spec.limits.is_some(),
            "spec.limits",
            Operation::Backup,
        );
        only(
            &mut s,
            spec.retention.is_some(),
            "spec.retention",
            Operation::Forget,
        );
        only(&mut s, spec.prune, "spec.prune", Operation::Forget);
        if !spec.tags.is_empty() && !matches!(op, Operation::Backup | Operation::Forget) {
            s.error(
                "spec.tags",
                format!("only a backup or forget schedule takes tags; this one runs {op}"),
            );
        }
        only(
            &mut s,
            spec.read_data_subset.is_some(),
            "spec.readDataSubset",
            Operation::Check,
        );
        only(
            &mut s,
            spec.read_data_rotate.is_some(),
            "spec.readDataRotate",
            Operation::Check,
        );
        only(&mut s, spec.drill.is_some(), "spec.drill", Operation::Drill);
        match op {
            Operation::Backup => {
                if spec.paths.is_empty() {
                    s.error("spec.paths", "a backup schedule needs at least one path");
                }
                for (i, path) in spec.paths.iter().enumerate() {
                    if path.trim().is_empty() {
                        s.error_at(FieldPath::parse("spec.paths").index(i), "must not be empty");
                    }
                }
                if let Some(hooks) = &spec.hooks {
                    check_hooks(&mut s, "spec.hooks", hooks);
                }
            }
            Operation::Forget => match &spec.retention {
                None => s.error(
                    "spec.retention",
                    "a forget schedule needs a retention policy (keepLast, keepDaily, …)",
                ),
                Some(r) if r.is_empty() => s.error(
                    "spec.retention",
                    "the retention policy keeps nothing; set at least one keep* field",
                ),
                Some(r) => {
                    if let Some(within) = &r.keep_within
                        && crate::retention::Within::parse(within).is_err()
                    {
                        s.error(
                            "spec.retention.keepWithin",
                            format!("`{within}` is not a restic duration such as `2y5m7d3h`"),
                        );
                    }
                }
            },
            Operation::Check => {
                if let Some(subset) = &spec.read_data_subset
                    && !is_read_data_subset(subset)
                {
                    s.error(
                        "spec.readDataSubset",
                        format!("`{subset}` is not `n/t`, a percentage such as `10%`, or a size such as `5G`"),
                    );
                }
                match spec.read_data_rotate {
                    Some(_) if spec.read_data_subset.is_some() => s.error(
                        "spec.readDataRotate",
                        "set readDataRotate or readDataSubset, not both: rotating chooses the subset of each run",
                    ),
                    Some(parts) if !(1..=MAX_ROTATE_PARTS).contains(&parts) => s.error(
                        "spec.readDataRotate",
                        format!("must be from 1 to {MAX_ROTATE_PARTS} parts, not {parts}"),
                    ),
                    _ => {}
                }
            }
            Operation::Drill => {
                if let Some(drill) = &spec.drill {
                    check_drill(&mut s, index, hosts, schedule, drill);
                }
            }
            Operation::Prune => {}
        }

        // Hosts, by name and by label.
        let ns = s.namespace().to_string();
        if spec.hosts.is_empty() && spec.host_selector.is_none() {
            s.error(
                "spec",
                "names no hosts; set `hosts`, `hostSelector`, or both",
            );
        }
        for (i, name) in spec.hosts.iter().enumerate() {
            if !index.hosts.contains_key(&(ns.as_str(), name.as_str())) {
                s.error_at(
                    FieldPath::parse("spec.hosts").index(i),
                    missing(Kind::Host, name, &ns),
                );
            }
        }
        if let Some(selector) = &spec.host_selector {
            let well_formed = check_selector(&mut s, "spec.hostSelector", selector);
            if well_formed && hosts.matching(&ns, selector).next().is_none() {
                s.warning("spec.hostSelector", "selects no host");
            }
        }

        // The repo: the schedule's own, a drill's backup schedule's (judged there), or each
        // host's default.
        let backup_repo = spec
            .drill
            .as_ref()
            .and_then(|d| d.backup_schedule.as_deref())
            .and_then(|b| index.schedules.get(&(s.namespace(), b)))
            .and_then(|b| b.spec.repo.as_ref());
        match &spec.repo {
            Some(repo) => {
                check_ref(&mut s, "spec.repo", Kind::Repo, repo, |ns, n| {
                    index.repos.contains_key(&(ns, n))
                });
                check_can_delete(&mut s, index, op, repo, None);
            }
            None if op == Operation::Drill && backup_repo.is_some() => {}
            None => {
                let mut defaults = BTreeSet::new();
                for host in hosts.select(schedule) {
                    match &host.spec.default_repo {
                        None => s.error(
                            "spec.repo",
                            format!(
                                "names no repo, and host `{}` has no defaultRepo",
                                host.name_any()
                            ),
                        ),
                        // Once per repo, naming the first host (sorted) that uses it.
                        Some(repo) => {
                            if defaults.insert(repo.as_str()) {
                                check_can_delete(&mut s, index, op, repo, Some(&host.name_any()));
                            }
                        }
                    }
                }
            }
        }
    }

    fn backup(&mut self, backup: &Backup) {
        let index = self.index;
        let spec = &backup.spec;
        let mut s = self.scope(Kind::Backup, backup);
        let ns = s.namespace().to_string();
        let host = index.hosts.get(&(ns.as_str(), spec.host.as_str())).copied();
        if host.is_none() {
            s.error("spec.host", missing(Kind::Host, &spec.host, &ns));
        }
        let schedule = match &spec.schedule {
            Some(name) => {
                let found = index.schedules.get(&(ns.as_str(), name.as_str())).copied();
                if found.is_none() {
                    s.error("spec.schedule", missing(Kind::Schedule, name, &ns));
                }
                found
            }
            None => None,
        };
        match (spec.schedule.is_some(), schedule, spec.operation) {
            (false, _, None) => s.error(
                "spec",
                "names neither a schedule nor an operation; set `schedule` (or `operation: prune` / `check` / `drill`)",
            ),
            (false, _, Some(op @ (Operation::Backup | Operation::Forget))) => s.error(
                "spec.operation",
                format!("a {op} request needs a schedule to take its parameters from; set `schedule`"),
            ),
            (true, Some(sched), Some(op)) if sched.spec.operation != op => s.error(
                "spec.operation",
                format!(
                    "is {op}, but schedule `{}` runs {}",
                    sched.name_any(),
                    sched.spec.operation
                ),
            ),
            _ => {}
        }
        let op = spec.operation.or(schedule.map(|sc| sc.spec.operation));
        match &spec.repo {
            Some(repo) => {
                check_ref(&mut s, "spec.repo", Kind::Repo, repo, |ns, n| {
                    index.repos.contains_key(&(ns, n))
                });
                if let Some(op) = op {
                    check_can_delete(&mut s, index, op, repo, None);
                }
            }
            None => {
                // A prune request without a schedule uses the host's default repo; with a
                // schedule, the schedule's own validation has judged the repo already.
                if let (None, Some(op), Some(repo)) = (
                    &spec.schedule,
                    op,
                    host.and_then(|h| h.spec.default_repo.as_ref()),
                ) {
                    check_can_delete(&mut s, index, op, repo, Some(&spec.host));
                }
                let has_repo = schedule.is_some_and(|sc| sc.spec.repo.is_some())
                    || host.is_some_and(|h| h.spec.default_repo.is_some());
                if host.is_some() && !has_repo {
                    s.error(
                        "spec.repo",
                        format!(
                            "names no repo, and neither the schedule nor host `{}` has one",
                            spec.host
                        ),
                    );
                }
            }
        }
    }

    fn restore(&mut self, restore: &Restore) {
        let index = self.index;
        let spec = &restore.spec;
        let mut s = self.scope(Kind::Restore, restore);
        let ns = s.namespace().to_string();
        for (field, name) in [
            ("spec.host", &spec.host),
            ("spec.targetHost", &spec.target_host),
        ] {
            if !index.hosts.contains_key(&(ns.as_str(), name.as_str())) {
                s.error(field, missing(Kind::Host, name, &ns));
            }
        }
        let sources = [&spec.snapshot, &spec.backup, &spec.schedule]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if sources != 1 {
            s.error(
                "spec",
                "set exactly one of `snapshot` (an id or `latest`), `backup` or `schedule`",
            );
        }
        if let Some(name) = &spec.schedule {
            match index.schedules.get(&(ns.as_str(), name.as_str())) {
                None => s.error("spec.schedule", missing(Kind::Schedule, name, &ns)),
                Some(sc) if sc.spec.operation != Operation::Backup => s.error(
                    "spec.schedule",
                    format!(
                        "schedule `{name}` runs {}; only a backup schedule has snapshots",
                        sc.spec.operation
                    ),
                ),
                Some(_) => {}
            }
        }
        if let Some(repo) = &spec.repo {
            check_ref(&mut s, "spec.repo", Kind::Repo, repo, |ns, n| {
                index.repos.contains_key(&(ns, n))
            });
        }
        if !spec.target_path.starts_with('/') {
            s.error(
                "spec.targetPath",
                format!("`{}` is not an absolute path", spec.target_path),
            );
        }
    }
}

impl Validator<'_> {
    fn notifier(&mut self, notifier: &Notifier) {
        let mode = self.mode;
        let spec = &notifier.spec;
        let mut s = self.scope(Kind::Notifier, notifier);
        let receivers = [
            ("webhook", spec.webhook.is_some()),
            ("ntfy", spec.ntfy.is_some()),
            ("email", spec.email.is_some()),
            ("alertmanager", spec.alertmanager.is_some()),
        ];
        if receivers.iter().filter(|(_, set)| *set).count() != 1 {
            s.error(
                "spec",
                "set exactly one receiver: `webhook`, `ntfy`, `email` or `alertmanager`",
            );
        }
        let secret = |s: &mut Scope, field: &str, source: &Option<SecretSource>| {
            if let Some(source) = source {
                check_secret(s, mode, field, source);
                if source.host_file.is_some() {
                    s.error(
                        &format!("{field}.hostFile"),
                        "the controller sends notifications, so it needs the secret: use `file` (on the controller) or `secretKeyRef`",
                    );
                }
            }
        };
        if let Some(webhook) = &spec.webhook {
            check_http_url(&mut s, "spec.webhook.url", &webhook.url);
            secret(
                &mut s,
                "spec.webhook.signingSecret",
                &webhook.signing_secret,
            );
        }
        if let Some(ntfy) = &spec.ntfy {
            check_http_url(&mut s, "spec.ntfy.url", &ntfy.url);
            secret(&mut s, "spec.ntfy.token", &ntfy.token);
        }
        if let Some(alertmanager) = &spec.alertmanager {
            check_http_url(&mut s, "spec.alertmanager.url", &alertmanager.url);
            secret(&mut s, "spec.alertmanager.token", &alertmanager.token);
        }
        if let Some(email) = &spec.email {
            if email.host.trim().is_empty() {
                s.error("spec.email.host", "must not be empty");
            }
            if !is_mail_address(&email.from) {
                s.error(
                    "spec.email.from",
                    format!(
                        "`{}` is not a mail address such as `holdfast@example.com`",
                        email.from
                    ),
                );
            }
            if email.to.is_empty() {
                s.error("spec.email.to", "needs at least one recipient");
            }
            for (i, to) in email.to.iter().enumerate() {
                if !is_mail_address(to) {
                    s.error_at(
                        FieldPath::parse("spec.email.to").index(i),
                        format!("`{to}` is not a mail address such as `ops@example.com`"),
                    );
                }
            }
            if email.username.is_some() != email.password.is_some() {
                s.error(
                    "spec.email",
                    "set both `username` and `password` to log in, or neither",
                );
            }
            secret(&mut s, "spec.email.password", &email.password);
        }
        let mut seen = BTreeSet::new();
        for (i, event) in spec.events.iter().enumerate() {
            if !seen.insert(*event) {
                s.error_at(
                    FieldPath::parse("spec.events").index(i),
                    format!("`{event}` is listed twice"),
                );
            }
        }
        for (field, selector) in [
            ("spec.hostSelector", &spec.host_selector),
            ("spec.scheduleSelector", &spec.schedule_selector),
        ] {
            if let Some(selector) = selector {
                check_selector(&mut s, field, selector);
            }
        }
        for (field, value) in [
            ("spec.repeatInterval", &spec.repeat_interval),
            ("spec.agentOfflineAfter", &spec.agent_offline_after),
            ("spec.driftStuckAfter", &spec.drift_stuck_after),
        ] {
            if let Some(text) = value
                && let Err(e) = parse_duration(text)
            {
                s.error(field, e.to_string());
            }
        }
        if let Some(factor) = spec.repo_growth_factor
            && !(factor > 1.0 && factor.is_finite())
        {
            s.error(
                "spec.repoGrowthFactor",
                format!("{factor} is not a growth: give a factor above 1, such as 2"),
            );
        }
    }
}

/// An `http://` or `https://` URL with a host.
fn check_http_url(s: &mut Scope, field: &str, url: &str) {
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !url.contains(char::is_whitespace) => {}
        _ => s.error(
            field,
            format!("`{url}` is not an http:// or https:// URL with a host"),
        ),
    }
}

/// `name@domain`, optionally as `Display Name <name@domain>`.
fn is_mail_address(text: &str) -> bool {
    let address = match text.rsplit_once('<') {
        Some((_, rest)) => match rest.strip_suffix('>') {
            Some(address) => address,
            None => return false,
        },
        None => text,
    };
    match address.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !address.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// The `In`/`NotIn` requirements of a selector have values, the others none; false when one
/// does not.
fn check_selector(s: &mut Scope, field: &str, selector: &LabelSelector) -> bool {
    let mut well_formed = true;
    for (i, req) in selector.match_expressions.iter().enumerate() {
        let at = FieldPath::parse(field).key("matchExpressions").index(i);
        let wants_values = matches!(req.operator, SelectorOperator::In | SelectorOperator::NotIn);
        if wants_values == req.values.is_empty() {
            well_formed = false;
            let message = if wants_values {
                format!("{:?} needs at least one value", req.operator)
            } else {
                format!("{:?} takes no values", req.operator)
            };
            s.error_at(at.key("values"), message);
        }
    }
    well_formed
}

/// Forget and prune delete snapshots and data. Through an append-only access every delete is
/// refused, after restic has held the repository's exclusive lock through its retries, so such
/// a run can only fail; refuse it here, before any host tries. `host` is set when the repo is
/// that host's `defaultRepo`.
fn check_can_delete(
    s: &mut Scope,
    index: &RevisionIndex,
    op: Operation,
    repo: &str,
    host: Option<&str>,
) {
    if !matches!(op, Operation::Forget | Operation::Prune) {
        return;
    }
    let ns = s.namespace().to_string();
    // A missing repo is reported by the reference check.
    let Some(found) = index.repos.get(&(ns.as_str(), repo)) else {
        return;
    };
    let spec = &found.spec;
    if !spec.append_only {
        return;
    }
    let admin = match &spec.admin {
        None => "declares no `spec.admin` access",
        Some(a) if a.url.is_none() && a.password.is_none() && a.env.is_empty() => {
            "its `spec.admin` sets no url, password or env, so it is the same access"
        }
        Some(_) => return,
    };
    let through = match host {
        None => format!("Repo `{repo}`"),
        Some(h) => format!("host `{h}`'s defaultRepo `{repo}`"),
    };
    s.error(
        "spec.repo",
        format!(
            "a {op} deletes, but {through} is append-only (`spec.appendOnly: true`) and {admin}; \
             give Repo `{repo}` an `admin` access that may delete"
        ),
    );
}

/// A drill's sample and the snapshot it drills: one way to choose files, limits that make
/// sense, and references to a backup schedule and a host that exist.
fn check_drill(
    s: &mut Scope,
    index: &RevisionIndex,
    hosts: &HostIndex,
    schedule: &Schedule,
    drill: &DrillSpec,
) {
    let ns = s.namespace().to_string();
    if !drill.include.is_empty() && drill.sample_files.is_some() {
        s.error(
            "spec.drill",
            "set `include` (whole paths) or `sampleFiles` (a random sample), not both",
        );
    }
    if !drill.include.is_empty() && drill.max_bytes.is_some() {
        s.error(
            "spec.drill.maxBytes",
            "caps a random sample; with `include` the whole paths are restored, so drop it",
        );
    }
    for (i, path) in drill.include.iter().enumerate() {
        if !path.starts_with('/') {
            s.error_at(
                FieldPath::parse("spec.drill.include").index(i),
                format!("`{path}` is not an absolute path in the snapshot, such as `/etc`"),
            );
        }
    }
    match drill.sample_files {
        Some(0) => s.error("spec.drill.sampleFiles", "must be at least 1"),
        Some(n) if n > MAX_DRILL_SAMPLE_FILES => s.error(
            "spec.drill.sampleFiles",
            format!("{n} is more than {MAX_DRILL_SAMPLE_FILES} files; each is read back from the repository on its own"),
        ),
        _ => {}
    }
    if drill.max_bytes == Some(0) {
        s.error("spec.drill.maxBytes", "must be at least 1 byte");
    }
    if let Some(source) = &drill.source_host {
        check_ref(s, "spec.drill.sourceHost", Kind::Host, source, |ns, n| {
            index.hosts.contains_key(&(ns, n))
        });
    }
    let Some(name) = &drill.backup_schedule else {
        return;
    };
    let Some(backup) = index.schedules.get(&(ns.as_str(), name.as_str())) else {
        s.error(
            "spec.drill.backupSchedule",
            missing(Kind::Schedule, name, &ns),
        );
        return;
    };
    if backup.spec.operation != Operation::Backup {
        s.error(
            "spec.drill.backupSchedule",
            format!(
                "schedule `{name}` runs {}; a drill restores what a backup schedule made",
                backup.spec.operation
            ),
        );
        return;
    }
    // Each drilling host reads the snapshots of its source: that host must run the backup.
    let backed_up: BTreeSet<String> = hosts
        .select(backup)
        .into_iter()
        .map(|h| h.name_any())
        .collect();
    let sources: BTreeSet<String> = match &drill.source_host {
        Some(source) => BTreeSet::from([source.clone()]),
        None => hosts
            .select(schedule)
            .into_iter()
            .map(|h| h.name_any())
            .collect(),
    };
    for source in sources.difference(&backed_up) {
        s.warning(
            "spec.drill.backupSchedule",
            format!("schedule `{name}` does not run on host `{source}`, so a drill finds no snapshot of it there"),
        );
    }
}

fn missing(kind: Kind, name: &str, namespace: &str) -> String {
    format!("no {kind} `{name}` in namespace `{namespace}`")
}

fn last(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

fn check_ref(
    s: &mut Scope,
    field: &str,
    kind: Kind,
    name: &str,
    exists: impl Fn(&str, &str) -> bool,
) {
    let ns = s.namespace().to_string();
    if !exists(&ns, name) {
        s.error(field, missing(kind, name, &ns));
    }
}

/// Names follow Kubernetes: a DNS subdomain for objects, a DNS label for namespaces.
fn check_name(s: &mut Scope) {
    let (name, ns) = (s.object.name.clone(), s.object.namespace.clone());
    if !is_dns_subdomain(&name) {
        s.error(
            "metadata.name",
            format!(
                "`{name}` is not a valid name: use lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters"
            ),
        );
    }
    if !is_dns_label(&ns) {
        s.error(
            "metadata.namespace",
            format!(
                "`{ns}` is not a valid namespace: use lowercase letters, digits and '-', \
                 starting and ending with a letter or digit, at most 63 characters"
            ),
        );
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn check_secret(s: &mut Scope, mode: Mode, field: &str, source: &SecretSource) {
    let set = [
        source.secret_key_ref.is_some(),
        source.file.is_some(),
        source.host_file.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set != 1 {
        s.error(
            field,
            "set exactly one of `secretKeyRef`, `file` and `hostFile`",
        );
        return;
    }
    if mode == Mode::Files && source.secret_key_ref.is_some() {
        s.error(
            &format!("{field}.secretKeyRef"),
            "Kubernetes Secrets are not available in files mode; use `file` (on the controller) or `hostFile` (on the host)",
        );
    }
    for (name, path) in [("file", &source.file), ("hostFile", &source.host_file)] {
        if let Some(path) = path
            && !path.starts_with('/')
        {
            s.error(
                &format!("{field}.{name}"),
                format!("`{path}` is not an absolute path"),
            );
        }
    }
}

fn check_env(s: &mut Scope, mode: Mode, field: &str, env: &[EnvVar]) {
    let mut seen = BTreeSet::new();
    for (i, var) in env.iter().enumerate() {
        let at = FieldPath::parse(field).index(i);
        let valid_name = !var.name.is_empty()
            && !var.name.starts_with(|c: char| c.is_ascii_digit())
            && var
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            s.error_at(
                at.key("name"),
                format!("`{}` is not a valid environment variable name", var.name),
            );
        }
        if !seen.insert(var.name.as_str()) {
            s.error_at(at.key("name"), format!("`{}` is set twice", var.name));
        }
        match (&var.value, &var.value_from) {
            (Some(_), None) => {}
            (None, Some(source)) => {
                check_secret(s, mode, at.key("valueFrom").as_str(), source);
            }
            _ => s.error_at(at, "set exactly one of `value` and `valueFrom`"),
        }
    }
}

fn check_hooks(s: &mut Scope, field: &str, hooks: &Hooks) {
    for (list, hooks) in [("pre", &hooks.pre), ("post", &hooks.post)] {
        for (i, hook) in hooks.iter().enumerate() {
            check_hook(s, FieldPath::parse(field).key(list).index(i), hook);
        }
    }
}

fn check_hook(s: &mut Scope, at: FieldPath, hook: &HookSpec) {
    if hook.command.first().is_none_or(|p| p.trim().is_empty()) {
        s.error_at(at.key("command"), "needs a program to run");
    }
    if let Some(timeout) = &hook.timeout
        && let Err(e) = parse_duration(timeout)
    {
        s.error_at(at.key("timeout"), e.to_string());
    }
}

/// Why a duration is not accepted.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum DurationError {
    #[error("`{text}` is zero")]
    Zero { text: String },
    #[error("`{text}` is not a duration such as `30m`, `1h30m` or `2d`")]
    NotADuration {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
}

/// A duration such as `30m`, `1h30m` or `2d`, which must not be zero.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(DurationError::Zero {
            text: text.to_string(),
        }),
        Ok(d) => Ok(d),
        Err(source) => Err(DurationError::NotADuration {
            text: text.to_string(),
            source,
        }),
    }
}

/// The most parts `readDataRotate` divides a repository's data into: a daily check then reads
/// everything in under three years, and the Repo's status stays small.
pub const MAX_ROTATE_PARTS: u32 = 1000;

/// restic's `--read-data-subset`: `n/t`, `p%`, or a size such as `500M`.
fn is_read_data_subset(text: &str) -> bool {
    if let Some((n, t)) = text.split_once('/') {
        return matches!((n.parse::<u32>(), t.parse::<u32>()), (Ok(n), Ok(t)) if n >= 1 && n <= t);
    }
    if let Some(p) = text.strip_suffix('%') {
        return p.parse::<f64>().is_ok_and(|p| p > 0.0 && p <= 100.0);
    }
    let number = text.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    number.is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns_subdomain("db-1.example.com"));
        assert!(!is_dns_subdomain("Web_1"));
        assert!(!is_dns_subdomain("-web"));
        assert!(!is_dns_subdomain(""));
        assert!(is_dns_label("prod"));
        assert!(!is_dns_label("prod.eu"));
    }

    #[test]
    fn restic_syntaxes() {
        assert!(is_read_data_subset("1/7"));
        assert!(is_read_data_subset("10%"));
        assert!(is_read_data_subset("500M"));
        assert!(!is_read_data_subset("8/7"));
        assert!(!is_read_data_subset("lots"));
        assert!(!is_read_data_subset("5GG"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .to_string()
                .contains("is zero")
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
    }
}
