//! Everything that differs between operating systems, behind one interface, so that the rest of
//! the agent never asks which one it runs on:
//!
//! - default paths: `/etc/holdfast/agent.yaml` and `/var/lib/holdfast-agent` on Unix,
//!   `%ProgramData%\Holdfast\agent.yaml` and `%ProgramData%\Holdfast\agent` on Windows;
//! - owner-only state: mode 0700/0600 on Unix, a protected DACL (SYSTEM, Administrators and the
//!   owner) on Windows, inherited by every file created below it;
//! - child processes (restic, hooks): each in its own process group, interrupted so that restic
//!   removes its lock (SIGINT; Ctrl-Break on Windows), then killed (SIGKILL to the group;
//!   TerminateProcess);
//! - the signals that stop the agent (SIGTERM, SIGINT; Ctrl-C, Ctrl-Break, console close and
//!   system shutdown).
//!
//! The `service` subcommand runs the whole agent and lives beside it, not here.
//!
//! Hooks and restic are started the same way everywhere: an argv, never a shell.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

pub use os::{
    create_private_dir, create_private_file, default_config_file, default_state_dir, interrupt,
    isolate, kill, make_removable, shutdown_signals, sync_dir,
};

#[cfg(test)]
pub use os::check_owner_only;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_directories_and_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a").join("state");
        create_private_dir(&state).unwrap();
        check_owner_only(&state).unwrap();
        let tmp = state.join(".identity.json.tmp");
        let mut f = create_private_file(&tmp).unwrap();
        std::io::Write::write_all(&mut f, b"{}").unwrap();
        f.sync_all().unwrap();
        drop(f);
        check_owner_only(&tmp).unwrap();
        // Files are written under a temporary name and renamed over the old one.
        let file = state.join("identity.json");
        std::fs::rename(&tmp, &file).unwrap();
        check_owner_only(&file).unwrap();
        sync_dir(&state).unwrap();
        // An existing directory is left as it is, as `mkdir -p` would.
        create_private_dir(&state).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
    }

    #[test]
    fn default_paths_are_absolute() {
        assert!(default_state_dir().is_absolute());
        assert!(default_config_file().is_absolute());
        assert!(default_config_file().ends_with("agent.yaml"));
    }

    #[tokio::test]
    async fn an_interrupted_child_ends_and_a_killed_one_too() {
        // The test binary itself stands in for a child, blocking in `child_blocks_when_asked`.
        let exe = std::env::current_exe().unwrap();
        for graceful in [true, false] {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(["--exact", "platform::tests::child_blocks_when_asked"])
                .env(BLOCK, "1")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            isolate(&mut cmd);
            let mut child = cmd.spawn().unwrap();
            if !(graceful && interrupt(&child)) {
                kill(&mut child).unwrap();
            }
            let status = child.wait().await.unwrap();
            assert!(!status.success(), "{status:?}");
        }
    }

    const BLOCK: &str = "HOLDFAST_TEST_CHILD_BLOCKS";

    /// Returns at once, except as the child of the test above, where it blocks until stopped.
    #[test]
    fn child_blocks_when_asked() {
        while std::env::var_os(BLOCK).is_some() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
