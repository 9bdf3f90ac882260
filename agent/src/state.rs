//! Everything the agent keeps on disk, under its state directory:
//!
//! ```text
//! identity.json   server, host and credential from `enroll`            (0600)
//! schedule.json   the last accepted plan, its version and secrets      (0600)
//! marks.json      per schedule, the last run time handled (missed runs)
//! commands.json   the job.finished of the last 1,000 command runs (run once)  (0600)
//! scrub.json      per repo checked in parts, the part its next check reads
//! outbox/         one file per report not yet acknowledged
//! running/        one marker per job in progress (AgentRestarted)
//! tmp/            password files of running jobs; emptied at start
//! ```
//!
//! The directory is owner-only (0700, or a protected DACL on Windows: `platform`), and so is
//! every file in it. Every file is replaced atomically (temp file, fsync, rename, fsync of the directory), so a
//! crash leaves either the old or the new contents, never a torn file.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use protocol::{JobFinished, JobStarted, ScheduleSet, ScrubPart};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::platform;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: corrupt state file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `scrub.json` is read and written by the connection (`scrub.cursor`) and by check jobs.
static SCRUB_FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The state directory and the files in it.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating when needed, owner-only) the state directory and its subdirectories.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        for dir in [
            root.to_path_buf(),
            root.join("outbox"),
            root.join("running"),
            root.join("tmp"),
        ] {
            platform::create_private_dir(&dir).map_err(io_err(&dir))?;
        }
        Ok(StateDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join("outbox")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Removes password files and drill directories left behind by a killed agent.
    pub fn clear_tmp(&self) -> Result<(), StateError> {
        let dir = self.tmp_dir();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            // A drill's restored files are a directory.
            let removed = match path.is_dir() {
                true => crate::drill::remove_tree(&path),
                false => fs::remove_file(&path),
            };
            removed.map_err(io_err(&path))?;
        }
        Ok(())
    }

    pub fn load_identity(&self) -> Result<Option<Identity>, StateError> {
        read_json(&self.root.join("identity.json"))
    }

    pub fn store_identity(&self, identity: &Identity) -> Result<(), StateError> {
        write_json(&self.root.join("identity.json"), identity)
    }

    pub fn load_schedule(&self) -> Result<Option<ScheduleSet>, StateError> {
        read_json(&self.root.join("schedule.json"))
    }

    pub fn store_schedule(&self, schedule: &ScheduleSet) -> Result<(), StateError> {
        write_json(&self.root.join("schedule.json"), schedule)
    }

    pub fn load_marks(&self) -> Result<Marks, StateError> {
        Ok(read_json(&self.root.join("marks.json"))?.unwrap_or_default())
    }

    pub fn store_marks(&self, marks: &Marks) -> Result<(), StateError> {
        write_json(&self.root.join("marks.json"), marks)
    }

    pub fn load_commands(&self) -> Result<CommandRuns, StateError> {
        Ok(read_json(&self.root.join("commands.json"))?.unwrap_or_default())
    }

    pub fn store_commands(&self, commands: &CommandRuns) -> Result<(), StateError> {
        write_json(&self.root.join("commands.json"), commands)
    }

    /// The part of `repo`'s data its next rotating check in `parts` parts reads: where the
    /// controller (`scrub.cursor`) or this agent's last check left it, else the first. An
    /// unreadable file starts the cycle again rather than stop the check.
    pub fn scrub_next(&self, repo: &str, parts: u32) -> ScrubPart {
        let _held = SCRUB_FILE.lock().unwrap_or_else(|e| e.into_inner());
        let cursors: BTreeMap<String, ScrubPart> = self.load_scrub().unwrap_or_else(|e| {
            tracing::warn!("{e}; the check reads the first part");
            BTreeMap::new()
        });
        match cursors.get(repo) {
            Some(next) if next.parts == parts && next.is_valid() => *next,
            _ => ScrubPart { part: 1, parts },
        }
    }

    /// Records the part `repo`'s next rotating check reads.
    pub fn store_scrub_next(&self, repo: &str, next: ScrubPart) -> Result<(), StateError> {
        let _held = SCRUB_FILE.lock().unwrap_or_else(|e| e.into_inner());
        let mut cursors = self.load_scrub().unwrap_or_default();
        if cursors.get(repo) == Some(&next) {
            return Ok(());
        }
        cursors.insert(repo.to_string(), next);
        write_json(&self.root.join("scrub.json"), &cursors)
    }

    fn load_scrub(&self) -> Result<BTreeMap<String, ScrubPart>, StateError> {
        Ok(read_json(&self.root.join("scrub.json"))?.unwrap_or_default())
    }

    fn running_path(&self, job: &str) -> PathBuf {
        self.root
            .join("running")
            .join(format!("{}.json", file_safe(job)))
    }

    /// Notes that a job is in progress, so that a killed agent reports it at its next start.
    pub fn mark_running(&self, job: &RunningJob) -> Result<(), StateError> {
        write_json(&self.running_path(&job.started.job), job)
    }

    pub fn clear_running(&self, job: &str) -> Result<(), StateError> {
        let path = self.running_path(job);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => sync_dir(path.parent().unwrap_or(&self.root)),
        }
    }

    /// Jobs that were running when the agent last stopped.
    pub fn interrupted_jobs(&self) -> Result<Vec<RunningJob>, StateError> {
        let dir = self.root.join("running");
        let mut jobs = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(job) = read_json::<RunningJob>(&path)?
            {
                jobs.push(job);
            }
        }
        jobs.sort_by(|a, b| a.started.started_at.cmp(&b.started.started_at));
        Ok(jobs)
    }
}

/// Who this agent is, from `enroll`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub server: String,
    pub host: String,
    pub namespace: String,
    pub credential: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("server", &self.server)
            .field("host", &self.host)
            .field("namespace", &self.namespace)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// Per schedule, the latest cron time (without jitter) the agent has dealt with: ran, skipped
/// or reported missed. Runs due after it and before now were missed.
pub type Marks = BTreeMap<String, DateTime<Utc>>;

/// How many finished command runs `commands.json` keeps. A repeated `command.run` comes from a
/// controller that lost track of a dispatch it just made (failover, lost ack), so it follows
/// the first within minutes; 1,000 runs cover that many times over and bound the file (~1 MiB).
pub const COMMANDS_KEPT: usize = 1000;

/// The `job.finished` reported for each of the last `COMMANDS_KEPT` runs a `command.run`
/// asked for, oldest first, so that the same request sent again is answered, not run again.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRuns {
    finished: VecDeque<JobFinished>,
}

impl CommandRuns {
    pub fn get(&self, job: &str) -> Option<&JobFinished> {
        self.finished.iter().rev().find(|f| f.job == job)
    }

    /// Remembers a run's result, dropping the oldest beyond `COMMANDS_KEPT`. The first result
    /// of a job wins, as at the controller; false when the job was already remembered.
    pub fn remember(&mut self, finished: JobFinished) -> bool {
        if self.get(&finished.job).is_some() {
            return false;
        }
        self.finished.push_back(finished);
        while self.finished.len() > COMMANDS_KEPT {
            self.finished.pop_front();
        }
        true
    }

    pub fn len(&self) -> usize {
        self.finished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.finished.is_empty()
    }
}

/// The marker of a job in progress.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningJob {
    pub started: JobStarted,
}

/// A schedule version refused because it is older than the applied one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "version {offered} is older than the applied version {applied}; a stale controller may be pushing"
)]
pub struct OlderVersion {
    pub offered: u64,
    pub applied: u64,
}

/// Whether a schedule version may replace the applied one: never a lower version.
pub fn offered_is_acceptable(
    applied: Option<&ScheduleSet>,
    offered: u64,
) -> Result<(), OlderVersion> {
    match applied {
        Some(a) if offered < a.version => Err(OlderVersion {
            offered,
            applied: a.version,
        }),
        _ => Ok(()),
    }
}

/// Job ids come from schedules and the controller; keep them to a safe file name.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Corrupt {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, &bytes)
}

/// Temp file in the same directory (owner-only), fsync, rename over, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = platform::create_private_file(&tmp).map_err(io_err(&tmp))?;
    file.write_all(bytes).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    platform::sync_dir(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_whole_and_owner_only() {
        let root = tempfile::tempdir().unwrap();
        // A directory StateDir creates, as the agent's is.
        let dir = root.path().join("state");
        let state = StateDir::open(&dir).unwrap();
        let identity = Identity {
            server: "http://127.0.0.1:1".into(),
            host: "web-1".into(),
            namespace: "default".into(),
            credential: "s3cret".into(),
        };
        state.store_identity(&identity).unwrap();
        let path = dir.join("identity.json");
        platform::check_owner_only(&path).unwrap();
        assert_eq!(state.load_identity().unwrap().unwrap().host, "web-1");
        assert!(!format!("{identity:?}").contains("s3cret"));
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(dir.path().join("marks.json"), "{not json").unwrap();
        let err = state.load_marks().unwrap_err().to_string();
        assert!(err.contains("marks.json: corrupt state file"), "{err}");
    }

    #[test]
    fn lower_versions_are_refused_and_equal_ones_accepted() {
        let set = ScheduleSet {
            version: 5,
            digest: "sha256:x".into(),
            plan: protocol::HostPlan {
                namespace: "default".into(),
                host: "h".into(),
                paused: false,
                schedules: vec![],
            },
            secrets: vec![],
        };
        assert!(offered_is_acceptable(None, 1).is_ok());
        assert!(offered_is_acceptable(Some(&set), 5).is_ok());
        assert!(offered_is_acceptable(Some(&set), 6).is_ok());
        let err = offered_is_acceptable(Some(&set), 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("older than the applied version 5"), "{err}");
    }

    fn finished(job: &str, phase: protocol::JobPhase) -> JobFinished {
        JobFinished {
            job: job.into(),
            schedule: None,
            operation: protocol::JobOperation::Backup,
            repo: "nas".into(),
            trigger: protocol::Trigger::Command,
            phase,
            reason: None,
            message: None,
            scheduled_at: None,
            started_at: None,
            finished_at: "2025-12-01T02:04:12Z".into(),
            exit_code: None,
            snapshot_id: None,
            summary: None,
            scrub_part: None,
            drill: None,
        }
    }

    #[test]
    fn command_runs_keep_the_first_result_and_the_newest_ids_owner_only() {
        use protocol::JobPhase;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let state = StateDir::open(&dir).unwrap();
        assert!(state.load_commands().unwrap().is_empty());
        let mut runs = CommandRuns::default();
        assert!(runs.remember(finished("job-0", JobPhase::Succeeded)));
        assert!(!runs.remember(finished("job-0", JobPhase::Failed)));
        assert_eq!(runs.get("job-0").unwrap().phase, JobPhase::Succeeded);
        for i in 1..=COMMANDS_KEPT {
            runs.remember(finished(&format!("job-{i}"), JobPhase::Succeeded));
        }
        assert_eq!(runs.len(), COMMANDS_KEPT);
        assert!(runs.get("job-0").is_none(), "the oldest id is dropped");
        assert!(runs.get("job-1").is_some());
        state.store_commands(&runs).unwrap();
        let path = dir.join("commands.json");
        platform::check_owner_only(&path).unwrap();
        let loaded = state.load_commands().unwrap();
        assert_eq!(loaded.len(), COMMANDS_KEPT);
        assert_eq!(
            loaded.get(&format!("job-{COMMANDS_KEPT}")),
            runs.get(&format!("job-{COMMANDS_KEPT}"))
        );
    }

    #[test]
    fn job_ids_become_safe_file_names() {
        assert_eq!(file_safe("nightly-29412345"), "nightly-29412345");
        assert_eq!(file_safe("../../etc/passwd"), ".._.._etc_passwd");
    }
}
