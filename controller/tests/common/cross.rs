//! The agent built for other platforms and run here under an emulator: Windows (x86_64, GNU)
//! under wine, arm64 Linux under qemu-user. `scripts/test` installs the Rust targets, the cross
//! linkers, wine and qemu (Debian packages), and Debian's arm64 restic (`scripts/cross-restic`);
//! a missing one fails the test with what to install.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::fleet::{AgentRunner, holdfast_bin, output_within};

pub const WINDOWS: &str = "x86_64-pc-windows-gnu";
pub const ARM64: &str = "aarch64-unknown-linux-gnu";
/// Creating a wine prefix takes tens of seconds on a busy machine; a deadline, not a measure.
const WINE_START: Duration = Duration::from_secs(300);

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The target directory and profile `holdfast` was built in (`target`, `dev`).
fn target_dir_and_profile() -> (PathBuf, String) {
    let bin = holdfast_bin();
    let profile_dir = bin.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_string(),
        other => other.to_string(),
    };
    (profile_dir.parent().unwrap().to_path_buf(), profile)
}

/// Builds `packages` for `target` (cargo does nothing when they are up to date) and returns the
/// directory of their binaries.
pub fn build(target: &str, packages: &[&str]) -> PathBuf {
    cargo_build(Some(target), packages)
}

/// Builds `package` for this machine; the directory of its binaries.
pub fn build_native(package: &str) -> PathBuf {
    cargo_build(None, &[package])
}

fn cargo_build(target: Option<&str>, packages: &[&str]) -> PathBuf {
    let (target_dir, profile) = target_dir_and_profile();
    let mut command = Command::new(env!("CARGO"));
    command.args(["build", "--profile", &profile]);
    if let Some(target) = target {
        command.args(["--target", target]);
    }
    for package in packages {
        command.args(["-p", package]);
    }
    let out = command
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo build --target {target:?} {packages:?} failed (scripts/test installs the targets \
         and their linkers: rustup target add {WINDOWS} {ARM64}; Debian gcc-mingw-w64-x86-64 \
         and gcc-aarch64-linux-gnu):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = if profile == "dev" {
        "debug"
    } else {
        profile.as_str()
    };
    match target {
        Some(target) => target_dir.join(target).join(dir),
        None => target_dir.join(dir),
    }
}

/// Builds the library unit tests of `package` for `target`; the test executable.
pub fn build_unit_tests(target: &str, package: &str) -> PathBuf {
    let (target_dir, profile) = target_dir_and_profile();
    let out = Command::new(env!("CARGO"))
        .args(["test", "--no-run", "--lib", "--message-format", "json"])
        .args(["--profile", &profile, "--target", target, "-p", package])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo test --no-run --target {target} -p {package} failed (scripts/test installs the \
         target and its linker):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|message| {
            let executable = message.get("executable")?.as_str()?;
            (message["target"]["kind"][0] == "lib").then(|| PathBuf::from(executable))
        })
        .unwrap_or_else(|| panic!("cargo built no unit tests of {package}"))
}

/// The first of `candidates` that exists, or a failure naming the Debian package.
fn tool(candidates: &[&str], package: &str) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{candidates:?} missing: install Debian's {package} (scripts/test does)")
        })
}

/// A wine prefix of its own in a temporary directory, with what Rust programs need to start
/// (see `wine/bcryptprimitives.c`). Its wineserver, and whatever still runs in it, is ended on
/// drop.
pub struct Wine {
    pub wine: PathBuf,
    wineserver: PathBuf,
    pub prefix: tempfile::TempDir,
}

impl Wine {
    pub fn start() -> Wine {
        let wine = tool(&["/usr/bin/wine64", "/usr/lib/wine/wine64"], "wine64");
        let wineserver = tool(
            &["/usr/bin/wineserver", "/usr/lib/wine/wineserver"],
            "wine64",
        );
        let gcc = tool(&["/usr/bin/x86_64-w64-mingw32-gcc"], "gcc-mingw-w64-x86-64");
        let prefix = tempfile::Builder::new()
            .prefix("holdfast-wine-")
            .tempdir()
            .unwrap();
        let wine = Wine {
            wine,
            wineserver,
            prefix,
        };
        let out = output_within(wine.command().args(["wineboot", "--init"]), WINE_START);
        assert!(
            out.status.success(),
            "wineboot --init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let system32 = wine.prefix.path().join("drive_c/windows/system32");
        let dll = system32.join("bcryptprimitives.dll");
        if !dll.exists() {
            let source =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/wine/bcryptprimitives.c");
            let out = Command::new(gcc)
                .args(["-shared", "-O2", "-o"])
                .arg(&dll)
                .arg(&source)
                .arg("-lbcrypt")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "cannot build {}: {}",
                dll.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        wine
    }

    pub fn env(&self) -> Vec<(OsString, OsString)> {
        vec![
            ("WINEPREFIX".into(), self.prefix.path().into()),
            ("WINEDEBUG".into(), "-all".into()),
            // No offer to install Mono or Gecko: nothing here needs them.
            ("WINEDLLOVERRIDES".into(), "mscoree,mshtml=".into()),
        ]
    }

    /// `wine64`, in this prefix.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.wine);
        command.envs(self.env());
        command
    }

    /// Keeps wine's session in this prefix running until dropped. Wine ends a session a
    /// moment after its last program exits, and with it the SCM and every service (a
    /// Windows machine does not): a service started by `sc start` would die with `sc.exe`.
    /// The program held is `cmd`, waiting on a standard input that stays open.
    pub fn hold_session(&self) -> Session {
        let child = self
            .command()
            .arg("cmd")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wine64 cmd starts");
        Session(child)
    }

    /// A runner for `exe` (a Windows program) in this prefix.
    pub fn runner(&self, exe: &Path, restic: &Path) -> AgentRunner {
        let mut runner = AgentRunner {
            program: self.wine.clone(),
            args: vec![exe.into()],
            env: self.env(),
            restic: String::new(),
            windows_paths: true,
        };
        runner.restic = runner.path(restic);
        runner
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = Command::new(&self.wineserver)
            .arg("-k")
            .env("WINEPREFIX", self.prefix.path())
            .stderr(Stdio::null())
            .status();
    }
}

/// `qemu-aarch64` with Debian's arm64 libraries (libc6-arm64-cross).
pub fn qemu() -> (PathBuf, PathBuf) {
    let qemu = tool(&["/usr/bin/qemu-aarch64"], "qemu-user");
    let sysroot = tool(&["/usr/aarch64-linux-gnu/lib"], "libc6-arm64-cross")
        .parent()
        .unwrap()
        .to_path_buf();
    (qemu, sysroot)
}

/// Debian's arm64 restic, unpacked by `scripts/cross-restic`, and a script that runs it under
/// qemu: the arm64 agent under qemu-user starts programs through the kernel, which runs only
/// this machine's own (and scripts).
pub fn arm64_restic() -> PathBuf {
    let (target_dir, _) = target_dir_and_profile();
    let dir = target_dir.join("tools/restic-arm64");
    let restic = dir.join("usr/bin/restic");
    assert!(
        restic.exists(),
        "{} is missing: run scripts/cross-restic (scripts/test does)",
        restic.display()
    );
    let (qemu, sysroot) = qemu();
    let wrapper = dir.join("restic-under-qemu");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec {} -L {} {} \"$@\"\n",
            qemu.display(),
            sysroot.display(),
            restic.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// A program that keeps a wine session running; killed when dropped.
pub struct Session(std::process::Child);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
