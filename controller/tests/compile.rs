//! Compile is deterministic: the same desired state gives the same digests whatever the order of
//! files and documents, comments or whitespace; a real change bumps exactly the hosts it touches.

use std::collections::BTreeMap;
use std::path::Path;

use holdfast::compile::{Fleet, HostKey, compile};
use holdfast::revision::Revision;
use holdfast::source::files::{SourceFile, load_sources};
use holdfast::versions::{Versioned, assign};

/// `examples/fleet` as `(relative name, text)`, sorted by name.
fn example_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fleet");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(&root).unwrap().display().to_string();
                files.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// The revision of valid files.
fn revision_of(files: &[(String, String)]) -> Revision {
    let loaded = load_sources(
        files
            .iter()
            .map(|(n, t)| SourceFile::new(n.clone(), t.clone()))
            .collect(),
    );
    let errors: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    loaded.revision
}

fn fleet_of(files: &[(String, String)]) -> Fleet {
    compile(&revision_of(files)).unwrap()
}

fn digests(fleet: &Fleet) -> BTreeMap<String, String> {
    fleet
        .hosts
        .iter()
        .map(|(k, c)| (k.to_string(), c.digest.clone()))
        .collect()
}

fn documents(text: &str) -> Vec<String> {
    text.split("\n---\n")
        .map(|d| d.trim().to_string())
        .collect()
}

/// Hosts whose digest differs between two fleets.
fn changed_hosts(a: &Fleet, b: &Fleet) -> Vec<String> {
    let (a, b) = (digests(a), digests(b));
    a.keys()
        .filter(|h| a.get(*h) != b.get(*h))
        .cloned()
        .collect()
}

fn edit(files: &[(String, String)], name: &str, from: &str, to: &str) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(n, t)| {
            if n == name {
                assert!(t.contains(from), "{name} does not contain {from:?}");
                (n.clone(), t.replacen(from, to, 1))
            } else {
                (n.clone(), t.clone())
            }
        })
        .collect()
}

#[test]
fn the_example_fleet_compiles_for_every_host() {
    let fleet = fleet_of(&example_files());
    let names: Vec<String> = fleet.hosts.keys().map(|k| k.to_string()).collect();
    assert_eq!(names, ["build-1", "db-1", "web-1", "web-2"]);
    let db = &fleet.hosts[&HostKey::new("default", "db-1")].plan;
    let schedules: Vec<&str> = db.schedules.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        schedules,
        ["db-offsite", "nightly", "weekly-drill", "weekly-forget"]
    );
    // forget uses the repo's privileged access; backup the everyday one.
    let url = |name: &str| {
        db.schedules
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.repo.url.clone())
            .unwrap()
    };
    assert_eq!(
        url("nightly"),
        "rest:http://backup-nas.internal:8000/fleet/"
    );
    assert_eq!(
        url("weekly-forget"),
        "rest:http://backup-nas.internal:8001/fleet/"
    );
    // Host default excludes come first, then the schedule's.
    let nightly = db.schedules.iter().find(|s| s.name == "nightly").unwrap();
    let backup = nightly.backup.as_ref().unwrap();
    assert_eq!(
        backup.excludes,
        [
            "/var/cache",
            "/var/lib/postgresql/*/main",
            "*.tmp",
            "/srv/**/cache"
        ]
    );
    assert_eq!(backup.limits.upload_kib_per_second, Some(20480));
    assert!(nightly.jitter_seconds < 30 * 60);
}

#[test]
fn order_of_files_and_documents_does_not_matter() {
    let files = example_files();
    let reference = digests(&fleet_of(&files));

    let mut reversed = files.clone();
    reversed.reverse();
    assert_eq!(digests(&fleet_of(&reversed)), reference);

    // Everything in one file, documents in reverse order.
    let mut docs: Vec<String> = files.iter().flat_map(|(_, t)| documents(t)).collect();
    docs.reverse();
    let one = vec![("all.yaml".to_string(), docs.join("\n---\n"))];
    assert_eq!(digests(&fleet_of(&one)), reference);
}

#[test]
fn comments_and_whitespace_do_not_matter() {
    let files = example_files();
    let reference = digests(&fleet_of(&files));
    let noisy: Vec<(String, String)> = files
        .iter()
        .map(|(n, t)| {
            let text = t
                .lines()
                .map(|l| format!("{l}   # noise\n\n"))
                .collect::<String>()
                .replace("---   # noise", "---");
            (n.clone(), format!("# header comment\n\n{text}"))
        })
        .collect();
    assert_eq!(digests(&fleet_of(&noisy)), reference);
    // Flow style for the same values.
    let flow = edit(
        &files,
        "schedules/nightly.yaml",
        "  paths:\n    - /etc\n    - /home\n    - /srv\n    - /var/backups\n",
        "  paths: [/etc, /home, \"/srv\", '/var/backups']\n",
    );
    assert_eq!(digests(&fleet_of(&flow)), reference);
}

#[test]
fn a_real_change_bumps_exactly_the_affected_hosts() {
    let files = example_files();
    let before = fleet_of(&files);

    let db_only = edit(
        &files,
        "schedules/db-offsite.yaml",
        "0 3 * * *",
        "15 3 * * *",
    );
    assert_eq!(changed_hosts(&before, &fleet_of(&db_only)), ["db-1"]);

    let one_host = edit(
        &files,
        "hosts/web-2.yaml",
        "      - /var/cache\n",
        "      - /var/cache\n      - /var/tmp\n",
    );
    assert_eq!(changed_hosts(&before, &fleet_of(&one_host)), ["web-2"]);

    let everyone = edit(&files, "schedules/nightly.yaml", "    - /home\n", "");
    assert_eq!(
        changed_hosts(&before, &fleet_of(&everyone)),
        ["build-1", "db-1", "web-1", "web-2"]
    );

    let check_host = edit(&files, "schedules/monthly-check.yaml", "10%", "20%");
    assert_eq!(changed_hosts(&before, &fleet_of(&check_host)), ["build-1"]);

    // The repo's privileged URL is used by forget only, which every nightly host runs.
    let admin = edit(&files, "repos.yaml", ":8001/", ":8002/");
    assert_eq!(
        changed_hosts(&before, &fleet_of(&admin)),
        ["build-1", "db-1", "web-1", "web-2"]
    );

    // staleAfter and history limits are the controller's business, not the agent's.
    let controller_only = edit(
        &files,
        "schedules/nightly.yaml",
        "staleAfter: 36h",
        "staleAfter: 48h",
    );
    assert!(changed_hosts(&before, &fleet_of(&controller_only)).is_empty());
}

#[test]
fn versions_go_up_by_one_exactly_when_the_digest_changes() {
    let files = example_files();
    let v1 = assign(&BTreeMap::new(), &fleet_of(&files));
    assert!(v1.values().all(|v| v.version == 1));

    // A restart or a no-op commit: same digests, same versions.
    let again = assign(&v1, &fleet_of(&files));
    assert_eq!(again, v1);

    let changed = fleet_of(&edit(
        &files,
        "schedules/db-offsite.yaml",
        "0 3 * * *",
        "15 3 * * *",
    ));
    let v2 = assign(&v1, &changed);
    let versions: BTreeMap<String, u64> =
        v2.iter().map(|(k, v)| (k.to_string(), v.version)).collect();
    assert_eq!(
        versions,
        BTreeMap::from([
            ("build-1".into(), 1),
            ("db-1".into(), 2),
            ("web-1".into(), 1),
            ("web-2".into(), 1)
        ])
    );
    // Changing back is a change too: versions never go backwards.
    let v3 = assign(&v2, &fleet_of(&files));
    assert_eq!(v3[&HostKey::new("default", "db-1")].version, 3);
}

#[test]
fn a_host_that_returns_continues_from_its_old_version() {
    let files = example_files();
    let fleet = fleet_of(&files);
    let mut previous = assign(&BTreeMap::new(), &fleet);
    let key = HostKey::new("default", "web-1");
    previous.insert(
        key.clone(),
        Versioned {
            version: 7,
            digest: "sha256:gone".into(),
        },
    );
    assert_eq!(assign(&previous, &fleet)[&key].version, 8);
}

/// Three hosts, one of them paused, sharing a repo that is initialised on first use.
fn shared_repo_files(paused: &str) -> Vec<(String, String)> {
    let host = |name: &str| {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: {name}\nspec:\n  defaultRepo: shared\n  paused: {}\n",
            name == paused
        )
    };
    vec![
        (
            "repos.yaml".into(),
            "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: shared\nspec:\n  url: /srv/restic/shared\n  password:\n    file: /etc/holdfast/shared.password\n  initialize: true\n".into(),
        ),
        ("hosts/a.yaml".into(), host("a")),
        ("hosts/b.yaml".into(), host("b")),
        ("hosts/c.yaml".into(), host("c")),
        (
            "schedules/nightly.yaml".into(),
            "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: nightly\nspec:\n  operation: backup\n  cron: \"0 1 * * *\"\n  hosts: [a, b, c]\n  paths: [/srv]\n".into(),
        ),
    ]
}

/// Who may run `restic init` on the shared repo, per host: `Ok(())` for the initialiser,
/// `Err(initialiser)` for the others.
fn initialisers(fleet: &Fleet) -> BTreeMap<String, Result<(), String>> {
    fleet
        .hosts
        .iter()
        .map(|(k, c)| {
            let repo = &c.plan.schedules[0].repo;
            let role = match (repo.initialize, &repo.initialized_by) {
                (true, None) => Ok(()),
                (false, Some(by)) => Err(by.clone()),
                other => panic!("{k}: initialize and initializedBy disagree: {other:?}"),
            };
            (k.name.clone(), role)
        })
        .collect()
}

#[test]
fn exactly_one_host_initialises_a_shared_repo_and_never_a_paused_one() {
    let everyone = fleet_of(&shared_repo_files("none"));
    assert_eq!(
        initialisers(&everyone),
        BTreeMap::from([
            ("a".into(), Ok(())),
            ("b".into(), Err("a".into())),
            ("c".into(), Err("a".into())),
        ])
    );
    let a_paused = fleet_of(&shared_repo_files("a"));
    assert_eq!(
        initialisers(&a_paused),
        BTreeMap::from([
            ("a".into(), Err("b".into())),
            ("b".into(), Ok(())),
            ("c".into(), Err("b".into())),
        ])
    );
}

#[test]
fn a_run_request_agrees_with_the_schedules_on_who_initialises_and_a_restore_never_does() {
    let mut files = shared_repo_files("none");
    files.push((
        "runs.yaml".into(),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: now-c\nspec:\n  host: c\n  schedule: nightly\n---\napiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata:\n  name: back-a\nspec:\n  host: a\n  snapshot: latest\n  targetHost: b\n  targetPath: /tmp/restore\n".into(),
    ));
    let revision = &revision_of(&files);
    let request = holdfast::compile::backup_request(revision, &revision.backups[0]).unwrap();
    assert!(!request.repo.initialize);
    assert_eq!(request.repo.initialized_by.as_deref(), Some("a"));
    let restore =
        holdfast::compile::restore_request(revision, &revision.restores[0], None).unwrap();
    assert!(
        !restore.repo.initialize,
        "a restore never creates a repository"
    );
}

#[test]
fn a_drill_takes_its_backup_schedules_tags_and_paths_and_defaults_its_sample() {
    let fleet = fleet_of(&example_files());
    let db = &fleet.hosts[&HostKey::new("default", "db-1")].plan;
    let drill = db
        .schedules
        .iter()
        .find(|s| s.name == "weekly-drill")
        .unwrap();
    assert_eq!(drill.operation, protocol::Operation::Drill);
    assert_eq!(
        drill.drill,
        Some(protocol::DrillParams {
            source_host: "db-1".into(),
            tags: vec!["nightly".into()],
            paths: ["/etc", "/home", "/srv", "/var/backups"]
                .map(String::from)
                .to_vec(),
            include: vec![],
            sample_files: 20,
            max_bytes: 256 << 20,
        })
    );
    assert_eq!((drill.backup.clone(), drill.forget.clone()), (None, None));

    // Cross-host, whole paths: no sample fields in the plan.
    let files = edit(
        &example_files(),
        "schedules/weekly-drill.yaml",
        "    sampleFiles: 20\n",
        "    sourceHost: db-1\n    include: [/srv]\n",
    );
    let fleet = fleet_of(&files);
    let web = &fleet.hosts[&HostKey::new("default", "web-1")].plan;
    let drill = web
        .schedules
        .iter()
        .find(|s| s.name == "weekly-drill")
        .unwrap();
    let params = drill.drill.as_ref().unwrap();
    assert_eq!(params.source_host, "db-1");
    assert_eq!(params.include, ["/srv"]);
    assert_eq!((params.sample_files, params.max_bytes), (0, 0));
    let json = serde_json::to_string(params).unwrap();
    assert!(
        !json.contains("sampleFiles") && !json.contains("maxBytes"),
        "{json}"
    );

    // A drill reads the repo its backup schedule writes.
    let files = edit(
        &example_files(),
        "schedules/weekly-drill.yaml",
        "backupSchedule: nightly",
        "backupSchedule: db-offsite",
    );
    let fleet = fleet_of(&files);
    let db = &fleet.hosts[&HostKey::new("default", "db-1")].plan;
    let drill = db
        .schedules
        .iter()
        .find(|s| s.name == "weekly-drill")
        .unwrap();
    assert_eq!(drill.repo.name, "offsite");
    assert_eq!(drill.drill.as_ref().unwrap().tags, ["postgresql"]);
}

#[test]
fn a_host_that_only_drills_never_initialises_a_shared_repo() {
    let mut files = shared_repo_files("none");
    files.push((
        "hosts/0-standby.yaml".into(),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: 0-standby\nspec:\n  defaultRepo: shared\n".into(),
    ));
    files.push((
        "schedules/drill.yaml".into(),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: drill\nspec:\n  operation: drill\n  cron: \"0 4 * * 0\"\n  hosts: [0-standby]\n  drill: {sourceHost: a}\n".into(),
    ));
    let fleet = fleet_of(&files);
    let standby = &fleet.hosts[&HostKey::new("default", "0-standby")].plan;
    let repo = &standby.schedules[0].repo;
    assert_eq!(
        (repo.initialize, repo.initialized_by.as_deref()),
        (false, None)
    );
    let a = &fleet.hosts[&HostKey::new("default", "a")].plan;
    assert!(a.schedules[0].repo.initialize, "a still initialises");
}
