//! The agent's systemd unit (`manifests/holdfast-agent.service`): hardened to an exposure of at
//! most 4.0 in `systemd-analyze security`, and still able to back up and restore files it does
//! not own and to run a hook.
//!
//! systemd does not run here, so the sandbox is reproduced as far as plain tools can: restic and
//! a hook run as root with the unit's capability bounding set and no_new_privs (`setpriv`), which
//! the kernel enforces, and under `strace`, whose list of the system calls they made must lie
//! inside the unit's `SystemCallFilter` (seccomp itself needs systemd to load the filter). A run
//! with the DAC capabilities taken away shows that the bounding set is really applied. Needs
//! root, restic, strace, setpriv and systemd-analyze (scripts/test installs them).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/holdfast-agent.service"
);
const RESTIC: &str = "/usr/bin/restic";
/// A user that owns the files backed up: neither root nor anyone the test runs as.
const OWNER: u32 = 4242;

fn tool(path: &str, package: &str) -> &'static str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (scripts/test does)"
    );
    path.to_string().leak()
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// The values of every `key=` line of the unit, in order.
fn settings(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn exposure_is_at_most_four() {
    let analyze = tool("/usr/bin/systemd-analyze", "systemd");
    let out = run(Command::new(analyze).args(["security", "--offline=true", UNIT]));
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for holdfast-agent.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in systemd-analyze's output:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score <= 4.0, "exposure {score} > 4.0:\n{text}");
}

/// `systemd-analyze syscall-filter`: every group with its members (system calls and groups).
fn syscall_groups(analyze: &str) -> BTreeMap<String, Vec<String>> {
    let out = run(Command::new(analyze).arg("syscall-filter"));
    assert!(out.status.success(), "{out:?}");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') && trimmed.starts_with('@') {
            current = Some(trimmed.to_string());
            groups.entry(trimmed.to_string()).or_default();
        } else if let Some(group) = &current {
            groups.get_mut(group).unwrap().push(trimmed.to_string());
        }
    }
    groups
}

fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
    match groups.get(name) {
        Some(members) => members.iter().for_each(|m| expand(m, groups, into)),
        None => {
            into.insert(name.to_string());
        }
    }
}

/// The system calls the unit's `SystemCallFilter=` lines allow (an allow list, then `~` deny
/// lists applied in order).
fn allowed_syscalls(unit: &str, analyze: &str) -> BTreeSet<String> {
    let groups = syscall_groups(analyze);
    let mut allowed = BTreeSet::new();
    let filters = settings(unit, "SystemCallFilter");
    assert!(!filters.is_empty(), "the unit sets no SystemCallFilter");
    for filter in filters {
        let (deny, list) = match filter.strip_prefix('~') {
            Some(list) => (true, list),
            None => (false, filter.as_str()),
        };
        let mut set = BTreeSet::new();
        for name in list.split_whitespace() {
            expand(name, &groups, &mut set);
        }
        if deny {
            allowed.retain(|s| !set.contains(s));
        } else {
            allowed.extend(set);
        }
    }
    allowed
}

/// `setpriv`'s `--bounding-set` for the unit's `CapabilityBoundingSet=`.
fn bounding_set(unit: &str) -> String {
    let caps: Vec<String> = settings(unit, "CapabilityBoundingSet")
        .iter()
        .flat_map(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|cap| {
            cap.strip_prefix("CAP_")
                .unwrap_or_else(|| panic!("{cap} is not a capability name"))
                .to_lowercase()
        })
        .collect();
    assert!(!caps.is_empty(), "the unit sets no CapabilityBoundingSet");
    std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A scratch directory with `data/` (owned by [`OWNER`], 0700, holding an 0600 file and a
/// FIFO) and a restic repository password.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("secret"), "only its owner reads this\n").unwrap();
        fs::set_permissions(data.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        let mkfifo = run(Command::new("mkfifo").arg(data.join("pipe")));
        assert!(mkfifo.status.success(), "{mkfifo:?}");
        for path in [data.join("secret"), data.join("pipe"), data.clone()] {
            std::os::unix::fs::chown(&path, Some(OWNER), Some(OWNER)).unwrap();
        }
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        Scene { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `program args` as root with only the `bounding` capabilities and no_new_privs,
    /// under strace; the outcome and the names of the system calls made.
    fn sandboxed(&self, bounding: &str, program: &str, args: &[&str]) -> (Output, Vec<String>) {
        let summary = self.path("strace.txt");
        let out = run(Command::new(tool("/usr/bin/setpriv", "util-linux"))
            .arg(format!("--bounding-set={bounding}"))
            .args(["--inh-caps=-all", "--no-new-privs", "--"])
            .arg(tool("/usr/bin/strace", "strace"))
            .args(["-f", "-c", "-U", "name", "-o"])
            .arg(&summary)
            .arg("--")
            .arg(program)
            .args(args)
            .current_dir(self.dir.path())
            .env("RESTIC_REPOSITORY", self.path("repo"))
            .env("RESTIC_PASSWORD", "correct horse battery staple")
            .env("RESTIC_CACHE_DIR", self.path("cache"))
            .env("HOME", self.dir.path()));
        let table = fs::read_to_string(&summary).unwrap_or_default();
        let calls = table
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("syscall") && !l.starts_with('-'))
            .filter(|l| *l != "total")
            .map(str::to_string)
            .collect();
        (out, calls)
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn backup_restore_and_hook_work_within_the_units_capabilities_and_system_calls() {
    assert!(
        is_root(),
        "this test runs restic as root with the unit's capabilities: run it as root (CI does)"
    );
    tool(RESTIC, "restic");
    let analyze = tool("/usr/bin/systemd-analyze", "systemd");
    let unit = fs::read_to_string(UNIT).unwrap();
    assert_eq!(settings(&unit, "User"), ["root"]);
    assert_eq!(settings(&unit, "NoNewPrivileges"), ["yes"]);
    let allowed = allowed_syscalls(&unit, analyze);
    let bounding = bounding_set(&unit);
    let scene = Scene::new();
    let mut made = BTreeSet::new();

    // The control: without the DAC capabilities root cannot read what it does not own, so the
    // bounding set below is really in force.
    let without_dac = bounding
        .split(',')
        .filter(|c| !c.starts_with("+dac_"))
        .collect::<Vec<_>>()
        .join(",");
    let (out, _) = scene.sandboxed(&without_dac, "/bin/cat", &["data/secret"]);
    assert!(
        !out.status.success(),
        "root read a file it does not own without CAP_DAC_*: the bounding set is not applied"
    );

    let steps: [(&str, &[&str]); 4] = [
        (RESTIC, &["init"]),
        (RESTIC, &["backup", "--json", "data"]),
        (RESTIC, &["restore", "latest", "--target", "restored"]),
        // A hook as the agent runs one (a program and its arguments, no shell of its own): a
        // dump of data it does not own, handed back to that owner.
        (
            "/bin/sh",
            &[
                "-c",
                "cat data/secret > dump && chown 4242:4242 dump && chmod 0600 dump",
            ],
        ),
    ];
    for (program, args) in steps {
        let (out, calls) = scene.sandboxed(&bounding, program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed within the unit's capabilities:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!calls.is_empty(), "strace recorded no system calls");
        made.extend(calls);
    }

    let restored = scene.path("restored").join("data");
    assert_eq!(
        fs::read_to_string(restored.join("secret")).unwrap(),
        "only its owner reads this\n"
    );
    for name in ["secret", "pipe"] {
        let meta = fs::symlink_metadata(restored.join(name)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (OWNER, OWNER),
            "{name}: owner not restored"
        );
    }
    assert_eq!(
        fs::metadata(restored.join("secret")).unwrap().mode() & 0o7777,
        0o600,
        "mode not restored"
    );
    assert!(
        fs::symlink_metadata(restored.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was not restored as one"
    );
    let dump = fs::metadata(scene.path("dump")).unwrap();
    assert_eq!(dump.uid(), OWNER);
    assert_eq!(
        fs::read_to_string(scene.path("dump")).unwrap(),
        "only its owner reads this\n"
    );

    let refused: Vec<&String> = made.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "system calls outside the unit's SystemCallFilter: {refused:?} (of {made:?})"
    );
}
