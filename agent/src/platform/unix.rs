//! Unix: file modes, process groups and signals.

use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

pub fn default_config_file() -> PathBuf {
    PathBuf::from("/etc/holdfast/agent.yaml")
}

pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/holdfast-agent")
}

/// Creates `path` and its missing parents with mode 0700; an existing directory is left as is.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Creates or truncates a file readable and writable by its owner only.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Lets the owner remove what is in a directory restored with a read-only mode.
pub fn make_removable(path: &Path, is_dir: bool) -> io::Result<()> {
    if is_dir {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Starts the child in its own process group, so that stopping it reaches whatever it started
/// (a hook's own children) and a Ctrl-C at the agent's terminal reaches only the agent, which
/// then stops its jobs in order.
pub fn isolate(cmd: &mut Command) {
    cmd.process_group(0);
}

/// SIGINT to the child's process group: restic removes its lock and exits. False when the child
/// has already been reaped.
pub fn interrupt(child: &Child) -> bool {
    signal_group(child, libc::SIGINT)
}

/// SIGKILL to the child's process group.
pub fn kill(child: &mut Child) -> io::Result<()> {
    signal_group(child, libc::SIGKILL);
    // The group is gone once its leader has been reaped; this covers a leader that left it.
    child.start_kill()
}

fn signal_group(child: &Child, signal: libc::c_int) -> bool {
    let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return false;
    };
    // SAFETY: killpg(2) on the group `isolate` made for a child we spawned and have not reaped,
    // so the id cannot have been reused.
    unsafe { libc::killpg(pid, signal) == 0 }
}

/// Resolves at the first SIGTERM (systemd's stop) or SIGINT (Ctrl-C).
pub fn shutdown_signals() -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Ok when neither group nor others have any permission on `path`; otherwise its mode.
#[cfg(test)]
pub fn check_owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(format!("{}: mode {:o}", path.display(), mode & 0o777))
    }
}
