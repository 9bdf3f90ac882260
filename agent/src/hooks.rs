//! Pre- and post-backup hooks: run without a shell, with a timeout, their output captured into
//! the job's log like restic's.

use std::process::Stdio;
use std::time::Duration;

use protocol::Hook;
use tokio::process::Command;
use tokio::sync::watch;

use crate::reporter::Reporter;
use crate::restic::{Stream, run_streaming};

/// Runs hooks in order; the first failure stops the rest and is returned as one sentence.
pub async fn run_all(
    hooks: &[Hook],
    source: &str,
    env: &[(&str, &str)],
    reporter: &mut Reporter,
) -> Result<(), String> {
    for hook in hooks {
        run_one(hook, source, env, reporter).await?;
    }
    Ok(())
}

async fn run_one(
    hook: &Hook,
    source: &str,
    env: &[(&str, &str)],
    reporter: &mut Reporter,
) -> Result<(), String> {
    let Some((program, args)) = hook.command.split_first() else {
        return Err(format!("{source} has an empty command"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The timeout cancels through the same path as a cancelled job: SIGINT, then SIGKILL.
    let (cancel_tx, mut cancel) = watch::channel(false);
    let timeout = Duration::from_secs(u64::from(hook.timeout_seconds.max(1)));
    let timer = tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let _ = cancel_tx.send(true);
    });
    let result = run_streaming(cmd, &mut cancel, |_: Stream, line| {
        reporter.line(source, line);
    })
    .await;
    timer.abort();
    reporter.flush();
    let shown = hook.command.join(" ");
    match result {
        Err(e) => Err(format!("{source} `{shown}` could not be started: {e}")),
        Ok(exit) if exit.cancelled => Err(format!(
            "{source} `{shown}` was stopped after its {}s timeout",
            hook.timeout_seconds
        )),
        Ok(exit) if exit.code == Some(0) => Ok(()),
        Ok(exit) => Err(match exit.code {
            Some(code) => format!("{source} `{shown}` exited with code {code}"),
            None => format!("{source} `{shown}` was killed by a signal"),
        }),
    }
}
