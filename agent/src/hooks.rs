//! Pre- and post-backup hooks: run without a shell, with a timeout, their output captured into
//! the job's log like restic's.

use std::process::Stdio;
use std::time::Duration;

use protocol::Hook;
use tokio::process::Command;
use tokio::sync::watch;

use crate::reporter::Reporter;
use crate::restic::{Stream, run_streaming};

/// Why a hook failed. `hook` is `pre-hook` or `post-hook`; `command` is its argv, space-joined.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{hook} has an empty command")]
    EmptyCommand { hook: String },
    #[error("{hook} `{command}` could not be started: {source}")]
    NotStarted {
        hook: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{hook} `{command}` was stopped after its {timeout_seconds}s timeout")]
    TimedOut {
        hook: String,
        command: String,
        timeout_seconds: u32,
    },
    #[error("{hook} `{command}` exited with code {code}")]
    Exited {
        hook: String,
        command: String,
        code: i32,
    },
    #[error("{hook} `{command}` was killed by a signal")]
    Killed { hook: String, command: String },
}

/// Runs hooks in order; the first failure stops the rest and is returned.
pub async fn run_all(
    hooks: &[Hook],
    source: &str,
    env: &[(&str, &str)],
    reporter: &mut Reporter,
) -> Result<(), HookError> {
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
) -> Result<(), HookError> {
    let Some((program, args)) = hook.command.split_first() else {
        return Err(HookError::EmptyCommand {
            hook: source.to_string(),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // The timeout cancels through the same path as a cancelled job: interrupt, then kill.
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
    let (hook_name, command) = (source.to_string(), hook.command.join(" "));
    match result {
        Err(e) => Err(HookError::NotStarted {
            hook: hook_name,
            command,
            source: e,
        }),
        Ok(exit) if exit.cancelled => Err(HookError::TimedOut {
            hook: hook_name,
            command,
            timeout_seconds: hook.timeout_seconds,
        }),
        Ok(exit) if exit.code == Some(0) => Ok(()),
        Ok(exit) => Err(match exit.code {
            Some(code) => HookError::Exited {
                hook: hook_name,
                command,
                code,
            },
            None => HookError::Killed {
                hook: hook_name,
                command,
            },
        }),
    }
}
