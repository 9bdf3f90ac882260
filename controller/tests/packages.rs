//! The Debian packages: `scripts/package` builds `holdfast` and `holdfast-agent`, dpkg installs
//! both into a scratch root (`dpkg --root`, maintainer scripts run with `DPKG_ROOT`), the
//! installed binaries run, every file is where it belongs, the postinst created the user and
//! the state directories (and does so again harmlessly), and Debian's lintian finds no error.
//! Needs dpkg-dev, lintian and systemd (scripts/test installs them; scripts/package installs
//! cargo-deb). Builds the release binaries once (cargo does nothing when they are current).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fleet::holdfast_bin;

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The target directory this test was built in (`target/debug/holdfast` → `target`).
fn target_dir() -> PathBuf {
    holdfast_bin()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf()
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tool(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (scripts/test does)"
    );
}

/// Runs scripts/package; the two .deb files.
fn build_packages() -> (PathBuf, PathBuf) {
    let target = target_dir();
    let mut command = Command::new(workspace().join("scripts/package"));
    // What cargo test sets for this test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...) would look
    // like a changed environment to build scripts that watch these names (ring's), and rebuild
    // every release crate above them.
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| n.starts_with("CARGO_") && n != "CARGO_HOME")
        {
            command.env_remove(name);
        }
    }
    let out = run(command
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(workspace()));
    assert!(
        out.status.success(),
        "scripts/package failed:\n{}",
        text(&out)
    );
    let version = env!("CARGO_PKG_VERSION");
    let deb = |name: &str| {
        let path = target
            .join("debian")
            .join(format!("{name}_{version}-1_amd64.deb"));
        assert!(path.exists(), "{} missing:\n{}", path.display(), text(&out));
        path
    };
    (deb("holdfast"), deb("holdfast-agent"))
}

/// `dpkg --root` into `root`, maintainer scripts run outside a chroot with DPKG_ROOT (the
/// scratch root has no shell of its own), dependencies (restic, systemd) not installed there.
fn dpkg_install(root: &Path, debs: &[&Path]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", root.join("dpkg.log").display()))
        .args([
            "--force-not-root",
            "--force-script-chrootless",
            "--force-depends",
            "--no-triggers",
            "-i",
        ])
        .args(debs))
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}

#[test]
fn packages_install_into_a_scratch_root_and_pass_lintian() {
    tool("/usr/bin/dpkg-shlibdeps", "dpkg-dev");
    tool("/usr/bin/lintian", "lintian");
    tool("/usr/bin/systemd-sysusers", "systemd");
    let (controller, agent) = build_packages();

    for (deb, depends) in [(&controller, "systemd"), (&agent, "restic")] {
        let out = run(Command::new("dpkg-deb")
            .args(["--field"])
            .arg(deb)
            .arg("Depends"));
        let field = String::from_utf8_lossy(&out.stdout);
        assert!(
            field.contains(depends) && field.contains("libc6"),
            "{}: Depends: {field}",
            deb.display()
        );
    }

    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path();
    let admin = root.join("var/lib/dpkg");
    fs::create_dir_all(admin.join("updates")).unwrap();
    fs::create_dir_all(admin.join("info")).unwrap();
    fs::write(admin.join("status"), "").unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();

    let out = dpkg_install(root, &[&controller, &agent]);
    assert!(out.status.success(), "dpkg -i failed:\n{}", text(&out));

    for (bin, name) in [
        ("holdfast", "holdfast"),
        ("holdfast-agent", "holdfast-agent"),
    ] {
        let path = root.join("usr/bin").join(bin);
        assert_eq!(mode(&path), 0o755, "{bin}");
        let out = run(Command::new(&path).arg("--version"));
        assert!(out.status.success(), "{bin} --version:\n{}", text(&out));
        let version = String::from_utf8_lossy(&out.stdout);
        assert!(
            version.starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{version}"
        );
    }

    for (file, mode_wanted) in [
        ("usr/lib/systemd/system/holdfast.service", 0o644),
        ("usr/lib/systemd/system/holdfast-agent.service", 0o644),
        ("usr/lib/sysusers.d/holdfast.conf", 0o644),
        ("usr/lib/tmpfiles.d/holdfast.conf", 0o644),
        ("etc/holdfast/agent.yaml", 0o644),
        ("etc/default/holdfast", 0o644),
        ("usr/share/man/man1/holdfast.1.gz", 0o644),
        ("usr/share/man/man1/holdfast-controller.1.gz", 0o644),
        ("usr/share/man/man1/holdfast-agent.1.gz", 0o644),
        ("usr/share/bash-completion/completions/holdfast", 0o644),
        (
            "usr/share/bash-completion/completions/holdfast-agent",
            0o644,
        ),
        ("usr/share/zsh/vendor-completions/_holdfast", 0o644),
        ("usr/share/zsh/vendor-completions/_holdfast-agent", 0o644),
        ("usr/share/fish/vendor_completions.d/holdfast.fish", 0o644),
        (
            "usr/share/fish/vendor_completions.d/holdfast-agent.fish",
            0o644,
        ),
        ("usr/share/doc/holdfast/copyright", 0o644),
        ("usr/share/doc/holdfast/changelog.Debian.gz", 0o644),
        ("usr/share/doc/holdfast-agent/copyright", 0o644),
        ("usr/share/doc/holdfast-agent/changelog.Debian.gz", 0o644),
        ("usr/share/doc/holdfast/examples/fleet/repos.yaml", 0o644),
        (
            "usr/share/doc/holdfast/examples/fleet/hosts/web-1.yaml",
            0o644,
        ),
    ] {
        assert_eq!(mode(&root.join(file)), mode_wanted, "{file}");
    }
    // The shipped unit is the one tested in agent_unit.rs, and it runs the installed binary.
    let unit =
        fs::read_to_string(root.join("usr/lib/systemd/system/holdfast-agent.service")).unwrap();
    assert_eq!(
        unit,
        fs::read_to_string(workspace().join("manifests/holdfast-agent.service")).unwrap()
    );
    for unit in ["holdfast.service", "holdfast-agent.service"] {
        let text = fs::read_to_string(root.join("usr/lib/systemd/system").join(unit)).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit} has no ExecStart"));
        let program = exec.split_whitespace().next().unwrap();
        assert!(
            root.join(program.trim_start_matches('/')).exists(),
            "{unit} runs {program}, which the packages do not install"
        );
        // Installed, not enabled: nothing may start before it is configured.
        assert!(
            !root
                .join("etc/systemd/system/multi-user.target.wants")
                .join(unit)
                .exists(),
            "{unit} was enabled"
        );
    }
    let man = run(Command::new("zcat").arg(root.join("usr/share/man/man1/holdfast-agent.1.gz")));
    assert!(String::from_utf8_lossy(&man.stdout).contains(".TH holdfast-agent"));

    let conffiles = run(Command::new("dpkg-query")
        .arg(format!("--root={}", root.display()))
        .args(["-W", "-f=${Conffiles}\n", "holdfast", "holdfast-agent"]));
    let conffiles = String::from_utf8_lossy(&conffiles.stdout);
    for file in ["/etc/holdfast/agent.yaml", "/etc/default/holdfast"] {
        assert!(
            conffiles.contains(file),
            "{file} is no conffile: {conffiles}"
        );
    }

    // What the maintainer scripts made.
    let check_created = |root: &Path| {
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        let users: Vec<&str> = passwd
            .lines()
            .filter(|l| l.starts_with("holdfast:"))
            .collect();
        assert_eq!(users.len(), 1, "{passwd}");
        let fields: Vec<&str> = users[0].split(':').collect();
        let uid: u32 = fields[2].parse().unwrap();
        assert!(uid > 0 && uid < 1000, "not a system user: {}", users[0]);
        assert_eq!(fields[5], "/var/lib/holdfast", "{}", users[0]);
        let state = fs::metadata(root.join("var/lib/holdfast")).unwrap();
        assert_eq!((state.uid(), state.mode() & 0o7777), (uid, 0o700));
        let agent_state = fs::metadata(root.join("var/lib/holdfast-agent")).unwrap();
        assert_eq!((agent_state.uid(), agent_state.mode() & 0o7777), (0, 0o700));
        assert!(root.join("etc/holdfast/fleet").is_dir());
    };
    check_created(root);
    // Installing again (an upgrade to the same version) changes nothing and fails nothing.
    let out = dpkg_install(root, &[&controller, &agent]);
    assert!(
        out.status.success(),
        "second dpkg -i failed:\n{}",
        text(&out)
    );
    check_created(root);

    for deb in [&controller, &agent] {
        let out = run(Command::new("lintian")
            .args(["--allow-root", "--tag-display-limit", "0"])
            .arg(deb));
        let report = text(&out);
        let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
        assert!(
            errors.is_empty(),
            "lintian errors in {}:\n{report}",
            deb.display()
        );
    }
}
