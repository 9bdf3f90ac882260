//! Running restic: which one is installed, how a repository is reached, and one process run with
//! its output streamed line by line. What restic's output means is in [`parse`]; its summary
//! of a backup in words, for the log, in [`summary`].

pub mod parse;
pub mod summary;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use protocol::{ResolvedRepo, SecretRef, SecretValue};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;

use crate::platform;
use parse::{Capabilities, Version};

/// How long restic gets to remove its lock after the interrupt (SIGINT; Ctrl-Break on Windows)
/// before it is killed.
const INTERRUPT_GRACE: Duration = Duration::from_secs(30);
/// Longest line of output that goes into a run's log.
pub const MAX_LINE: usize = 4096;
/// Longest line read from a program's output. `restic snapshots --json` and `forget --json`
/// print their whole answer as one line, tens of KiB for a host with many snapshots; this only
/// keeps a program that never ends its line from filling the agent's memory.
const MAX_READ_LINE: u64 = 64 << 20;

/// The restic binary and what it can do, detected once at start.
#[derive(Clone, Debug)]
pub struct Restic {
    pub binary: PathBuf,
    pub version: Option<Version>,
    pub capabilities: Capabilities,
}

impl Restic {
    pub async fn detect(binary: &Path) -> Restic {
        let output = Command::new(binary)
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .await;
        let version = match output {
            Ok(out) => parse::version(&String::from_utf8_lossy(&out.stdout)),
            Err(e) => {
                tracing::error!("cannot run restic at {}: {e}", binary.display());
                None
            }
        };
        // Without a version, assume the oldest supported behaviour.
        let capabilities = Capabilities::of(version.unwrap_or(Version {
            major: 0,
            minor: 14,
            patch: 0,
        }));
        Restic {
            binary: binary.to_path_buf(),
            version,
            capabilities,
        }
    }

    /// A restic command for `repo`. The repository URL and password reach restic through its
    /// environment and a password file, never through argv, so `ps` shows neither.
    pub fn command(&self, access: &RepoAccess, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .env("RESTIC_REPOSITORY", &access.url)
            .env("RESTIC_PASSWORD_FILE", access.password_file())
            .envs(access.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Why a repository's secrets could not be made available. Names references, never values.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the controller did not send the secret {reference:?} that repo {repo} needs")]
    SecretNotSent { reference: SecretRef, repo: String },
    #[error("cannot write a password file in {}: {source}", dir.display())]
    PasswordFileNotCreated {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write a password file: {0}")]
    PasswordFileNotWritten(#[source] std::io::Error),
    #[error("cannot read {path} for {var} of repo {repo}: {source}")]
    HostFileUnreadable {
        path: String,
        var: String,
        repo: String,
        #[source]
        source: std::io::Error,
    },
}

/// What restic needs to open one repository, with secrets resolved for the length of a job.
pub struct RepoAccess {
    pub url: String,
    password: Password,
    env: Vec<(String, String)>,
}

enum Password {
    /// A file on this host named by the plan.
    HostFile(PathBuf),
    /// A value from the controller, in an owner-only temp file removed when the job ends.
    Temp(tempfile::NamedTempFile),
}

impl RepoAccess {
    /// Resolves the repository's secret references. The error names the reference, never a value.
    pub fn resolve(
        repo: &ResolvedRepo,
        secrets: &[SecretValue],
        tmp_dir: &Path,
    ) -> Result<RepoAccess, AccessError> {
        let password = match &repo.password {
            SecretRef::HostFile { path } => Password::HostFile(PathBuf::from(path)),
            other => {
                let value = lookup(secrets, other, &repo.name)?;
                let mut file = tempfile::Builder::new()
                    .prefix("password-")
                    .tempfile_in(tmp_dir)
                    .map_err(|source| AccessError::PasswordFileNotCreated {
                        dir: tmp_dir.to_path_buf(),
                        source,
                    })?;
                std::io::Write::write_all(&mut file, value.as_bytes())
                    .map_err(AccessError::PasswordFileNotWritten)?;
                Password::Temp(file)
            }
        };
        let mut env = Vec::new();
        for var in &repo.env {
            let value = match &var.value {
                protocol::EnvValue::Plain(v) => v.clone(),
                protocol::EnvValue::Secret(SecretRef::HostFile { path }) => {
                    std::fs::read_to_string(path)
                        .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                        .map_err(|source| AccessError::HostFileUnreadable {
                            path: path.clone(),
                            var: var.name.clone(),
                            repo: repo.name.clone(),
                            source,
                        })?
                }
                protocol::EnvValue::Secret(other) => {
                    lookup(secrets, other, &repo.name)?.to_string()
                }
            };
            env.push((var.name.clone(), value));
        }
        Ok(RepoAccess {
            url: repo.url.clone(),
            password,
            env,
        })
    }

    fn password_file(&self) -> &Path {
        match &self.password {
            Password::HostFile(path) => path,
            Password::Temp(file) => file.path(),
        }
    }
}

fn lookup<'a>(
    secrets: &'a [SecretValue],
    reference: &SecretRef,
    repo: &str,
) -> Result<&'a str, AccessError> {
    secrets
        .iter()
        .find(|s| &s.reference == reference)
        .map(|s| s.value.as_str())
        .ok_or_else(|| AccessError::SecretNotSent {
            reference: reference.clone(),
            repo: repo.to_string(),
        })
}

/// Where a line of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    /// The run was cancelled (SIGINT, then SIGKILL after a grace period).
    pub cancelled: bool,
}

/// What a line handler wants after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Interrupt the process as a cancel would (SIGINT, SIGKILL after the grace) without marking
    /// the run cancelled: the caller saw that it cannot succeed.
    Stop,
}

/// Runs `cmd` to completion, handing every output line to `on_line` as it arrives (whole: a
/// log line is cut at [`MAX_LINE`] where it is logged, by [`bound`]). When `cancel` turns true, restic is interrupted so it can remove its lock.
pub async fn run_streaming(
    cmd: Command,
    cancel: &mut watch::Receiver<bool>,
    mut on_line: impl FnMut(Stream, String),
) -> std::io::Result<Exit> {
    run_streaming_until(cmd, cancel, |stream, line| {
        on_line(stream, line);
        Flow::Continue
    })
    .await
}

/// [`run_streaming`], where `on_line` may also stop the process: an interrupt, so that restic
/// removes its lock, then a kill after [`INTERRUPT_GRACE`] (at once where no interrupt can be
/// delivered). Reading goes on until the process ends.
pub async fn run_streaming_until(
    mut cmd: Command,
    cancel: &mut watch::Receiver<bool>,
    mut on_line: impl FnMut(Stream, String) -> Flow,
) -> std::io::Result<Exit> {
    platform::isolate(&mut cmd);
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().map(BufReader::new);
    let mut stderr = child.stderr.take().map(BufReader::new);
    let mut cancelled = *cancel.borrow();
    let mut deadline: Option<tokio::time::Instant> = None;
    if cancelled {
        deadline = Some(interrupt(&child));
    }
    let mut stopping = false;
    loop {
        let flow = tokio::select! {
            line = next_line(&mut stdout) => match line {
                Some(l) => on_line(Stream::Stdout, l),
                None => {
                    stdout = None;
                    Flow::Continue
                }
            },
            line = next_line(&mut stderr) => match line {
                Some(l) => on_line(Stream::Stderr, l),
                None => {
                    stderr = None;
                    Flow::Continue
                }
            },
            changed = cancel.changed(), if !cancelled => {
                if changed.is_err() || *cancel.borrow() {
                    cancelled = true;
                    let kill_at = interrupt(&child);
                    deadline.get_or_insert(kill_at);
                }
                Flow::Continue
            }
            _ = sleep_until(deadline) => {
                platform::kill(&mut child)?;
                deadline = None;
                Flow::Continue
            }
            status = child.wait(), if stdout.is_none() && stderr.is_none() => {
                let status = status?;
                return Ok(Exit { code: status.code(), cancelled });
            }
        };
        if flow == Flow::Stop && !stopping && !cancelled {
            stopping = true;
            deadline = Some(interrupt(&child));
        }
    }
}

/// The next line, with invalid UTF-8 (file names) replaced rather than ending the stream.
async fn next_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut Option<BufReader<R>>,
) -> Option<String> {
    let Some(reader) = reader else {
        return std::future::pending().await;
    };
    let mut buf = Vec::new();
    match (&mut *reader)
        .take(MAX_READ_LINE)
        .read_until(b'\n', &mut buf)
        .await
    {
        // A read error ends the stream like EOF; the exit status tells what happened.
        Ok(0) | Err(_) => None,
        Ok(_) => {
            while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                buf.pop();
            }
            Some(String::from_utf8_lossy(&buf).into_owned())
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Interrupts the child; returns when to kill it if it is still running.
fn interrupt(child: &tokio::process::Child) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if platform::interrupt(child) {
        now + INTERRUPT_GRACE
    } else {
        now
    }
}

/// Cuts a line at [`MAX_LINE`] bytes, on a character boundary.
pub fn bound(mut line: String) -> String {
    if line.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" …");
    }
    line
}
