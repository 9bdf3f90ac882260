//! The messages of the agent ↔ controller WebSocket (DESIGN §4), one JSON object per text frame,
//! tagged by `type`.
//!
//! Unknown fields are ignored here (unlike in plans): a peer of the same protocol version may add
//! an optional field without breaking the other side. Anything that changes meaning bumps
//! [`PROTOCOL_VERSION`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::plan::{HostPlan, Operation, ResolvedRepo, ResolvedSchedule, SecretRef};

/// The protocol this build speaks. 2 added `scrub.cursor`, `job.finished.scrubPart` and
/// `job.finished.drill`, and to plans the field `check.readDataRotate` and the operation `drill`
/// (see [`HostPlan::needs_protocol`]).
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest agent protocol a controller of this build accepts in `hello`.
pub const MIN_AGENT_PROTOCOL: u32 = 1;
/// The oldest controller protocol an agent of this build accepts in `welcome`.
pub const MIN_CONTROLLER_PROTOCOL: u32 = 1;
/// Largest frame either side decodes. A plan for a host with hundreds of schedules is a few
/// hundred KiB; anything near this limit is a bug or an attack.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Longest WebSocket frame an agent sends: a longer message (a host's whole snapshot list) goes
/// as a text frame and continuation frames of at most this size. A WebSocket server keeps a
/// connection's read buffer at the size of the largest frame it has read, so across 10,000
/// connections this bounds the controller's memory, not the size of a message.
pub const AGENT_FRAGMENT_BYTES: usize = 4 * 1024;
/// Longest job id, in bytes, the controller accepts in a report.
pub const MAX_JOB_ID_BYTES: usize = 256;
/// WebSocket close code for a frame over [`MAX_FRAME_BYTES`] (RFC 6455 "Message Too Big").
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// Path of the WebSocket endpoint, relative to the controller's base URL.
pub const CONNECT_PATH: &str = "/agent/v1/connect";
/// Path of the enrollment endpoint (HTTP POST of [`EnrollRequest`]).
pub const ENROLL_PATH: &str = "/agent/v1/enroll";

/// Identifies one run on one host. Scheduled runs use `<schedule>-<minutes since epoch>` of the
/// scheduled minute (like a CronJob's Jobs), so a run fired twice is still one run; runs asked
/// for by the controller carry the id the controller chose.
pub type JobId = String;

/// Body of `POST /agent/v1/enroll`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollRequest {
    pub token: String,
}

/// Answer to a successful enrollment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    /// The Host this credential acts as.
    pub host: String,
    pub namespace: String,
    /// Long-lived bearer credential; the controller keeps only its hash.
    pub credential: String,
}

impl fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("token", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("host", &self.host)
            .field("namespace", &self.namespace)
            .field("credential", &"<redacted>")
            .finish()
    }
}

/// Everything an agent sends. Messages live for one send; boxing the large report would only add
/// an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AgentMessage {
    #[serde(rename = "hello")]
    Hello(Hello),
    #[serde(rename = "heartbeat")]
    Heartbeat(Heartbeat),
    #[serde(rename = "schedule.ack")]
    ScheduleAck(ScheduleAck),
    /// A message from the outbox; the controller answers with `ack` once it is stored.
    #[serde(untagged)]
    Report(Report),
}

/// A report kept in the agent's outbox until acknowledged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Outbox sequence number, increasing per agent; `ack` names it.
    pub seq: u64,
    #[serde(flatten)]
    pub body: ReportBody,
}

// Messages live for one send; boxing the large variants would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ReportBody {
    #[serde(rename = "job.started")]
    JobStarted(JobStarted),
    #[serde(rename = "job.progress")]
    JobProgress(JobProgress),
    #[serde(rename = "job.log")]
    JobLog(JobLog),
    #[serde(rename = "job.finished")]
    JobFinished(JobFinished),
    #[serde(rename = "snapshots.report")]
    SnapshotsReport(SnapshotsReport),
    #[serde(rename = "repo.stats")]
    RepoStats(RepoStats),
}

impl ReportBody {
    /// The job a report belongs to, if it belongs to one.
    pub fn job(&self) -> Option<&str> {
        match self {
            ReportBody::JobStarted(m) => Some(&m.job),
            ReportBody::JobProgress(m) => Some(&m.job),
            ReportBody::JobLog(m) => Some(&m.job),
            ReportBody::JobFinished(m) => Some(&m.job),
            ReportBody::SnapshotsReport(_) | ReportBody::RepoStats(_) => None,
        }
    }
}

/// Everything a controller sends. Messages are built, sent and dropped; boxing the large ones
/// would save nothing worth having.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ControllerMessage {
    #[serde(rename = "welcome")]
    Welcome(Welcome),
    #[serde(rename = "schedule.set")]
    ScheduleSet(ScheduleSet),
    #[serde(rename = "command.run")]
    CommandRun(CommandRun),
    #[serde(rename = "command.cancel")]
    CommandCancel(CommandCancel),
    #[serde(rename = "ack")]
    Ack(Ack),
    #[serde(rename = "scrub.cursor")]
    ScrubCursor(ScrubCursor),
    #[serde(rename = "error")]
    Error(ErrorMessage),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    pub protocol_version: u32,
    pub host: String,
    pub agent_version: String,
    /// `None` when restic could not be run.
    pub restic_version: Option<String>,
    pub os: String,
    pub arch: String,
    /// 0 when the agent has never accepted a schedule.
    pub applied_schedule_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_schedule_digest: Option<String>,
    /// Jobs running right now, so a controller that restarted knows about them.
    #[serde(default)]
    pub running: Vec<JobId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    #[serde(default)]
    pub running: Vec<JobId>,
}

/// The agent's answer to every `schedule.set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleAck {
    /// The version that was offered.
    pub version: u64,
    /// The version the agent runs now (equal to `version` when accepted).
    pub applied_version: u64,
    /// Why the offer was refused; `None` when it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// Why a job ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// Its cron came due.
    Schedule,
    /// Catching up on a run time that passed while the agent was down (`RunOnce`).
    MissedRun,
    /// A `command.run` from the controller.
    Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStarted {
    pub job: JobId,
    /// The schedule it belongs to; `None` for a restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub operation: JobOperation,
    pub repo: String,
    pub trigger: Trigger,
    /// RFC 3339; for scheduled runs the cron time, without jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// RFC 3339.
    pub started_at: String,
}

/// A schedule operation, or one of the operations only a command asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobOperation {
    Backup,
    Forget,
    Prune,
    Check,
    Restore,
    Drill,
}

impl From<Operation> for JobOperation {
    fn from(op: Operation) -> Self {
        match op {
            Operation::Backup => JobOperation::Backup,
            Operation::Forget => JobOperation::Forget,
            Operation::Prune => JobOperation::Prune,
            Operation::Check => JobOperation::Check,
            Operation::Drill => JobOperation::Drill,
        }
    }
}

impl JobOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOperation::Backup => "backup",
            JobOperation::Forget => "forget",
            JobOperation::Prune => "prune",
            JobOperation::Check => "check",
            JobOperation::Restore => "restore",
            JobOperation::Drill => "drill",
        }
    }
}

/// Progress of a running job, sent at most once a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    pub job: JobId,
    /// 0.0 to 1.0.
    pub percent_done: f64,
    pub files_done: u64,
    pub total_files: u64,
    pub bytes_done: u64,
    pub total_bytes: u64,
    pub seconds_elapsed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_files: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobLog {
    pub job: JobId,
    pub lines: Vec<LogLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Where the line came from: `restic`, `pre-hook`, `post-hook` or `agent`.
    pub source: String,
    pub line: String,
}

/// How a job ended (DESIGN §2's Backup phases that end a run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobPhase {
    Succeeded,
    PartiallyFailed,
    Failed,
    Missed,
    Skipped,
    Cancelled,
}

impl JobPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Succeeded => "Succeeded",
            JobPhase::PartiallyFailed => "PartiallyFailed",
            JobPhase::Failed => "Failed",
            JobPhase::Missed => "Missed",
            JobPhase::Skipped => "Skipped",
            JobPhase::Cancelled => "Cancelled",
        }
    }
}

impl fmt::Display for JobPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobFinished {
    pub job: JobId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub operation: JobOperation,
    pub repo: String,
    pub trigger: Trigger,
    pub phase: JobPhase,
    /// A CamelCase word for machines (`PreHookFailed`, `WrongPassword`, `AgentRestarted` …);
    /// `None` on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One readable sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// RFC 3339; `None` for runs that never started (Missed, Skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub finished_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The full 64-character id of the snapshot a backup made, or a drill restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<BackupSummary>,
    /// The part of the repository's data a rotating check read (`readDataRotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub_part: Option<ScrubPart>,
    /// What a drill restored and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillResult>,
}

/// One part of a repository's data: restic's `--read-data-subset part/parts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubPart {
    /// From 1 to `parts`.
    pub part: u32,
    pub parts: u32,
}

impl ScrubPart {
    /// The part after this one, back to the first after the last.
    pub fn following(self) -> ScrubPart {
        ScrubPart {
            part: self.part % self.parts.max(1) + 1,
            parts: self.parts,
        }
    }

    /// Whether `part` lies in `1..=parts`.
    pub fn is_valid(self) -> bool {
        (1..=self.parts).contains(&self.part)
    }
}

impl fmt::Display for ScrubPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.part, self.parts)
    }
}

/// Where a repository is in its cycle of rotating checks: the part its next check reads. Sent
/// after `welcome` for each repo of the host's plan checked in parts that the controller has a
/// position for, and to each such host whenever a check advances the position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScrubCursor {
    /// Name of the Repo resource.
    pub repo: String,
    /// The part the next check reads: from 1 to `parts`.
    pub next: ScrubPart,
}

/// Longest list of differences a drill reports; `differences_total` counts them all.
pub const MAX_DRILL_DIFFERENCES: usize = 20;

/// A restore drill's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// Files restored whose content matched the snapshot's.
    pub files_verified: u64,
    /// Their bytes.
    pub bytes_verified: u64,
    /// Files the drill set out to restore.
    pub files_expected: u64,
    /// Seconds `restic restore` took.
    pub seconds: f64,
    /// Bytes restored per second of `restic restore`.
    pub bytes_per_second: u64,
    /// The first [`MAX_DRILL_DIFFERENCES`] files that did not verify, in path order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<DrillDifference>,
    /// How many files did not verify.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub differences_total: u64,
}

/// A file a drill could not verify, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillDifference {
    /// The path in the snapshot.
    pub path: String,
    /// One sentence, such as `restic dump failed: … ciphertext verification failed`.
    pub reason: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// restic's backup summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs_new: u64,
    pub dirs_changed: u64,
    pub dirs_unmodified: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub total_duration_seconds: f64,
}

/// The snapshots of this host in one repository, after a backup or forget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotsReport {
    pub repo: String,
    pub snapshots: Vec<Snapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub id: String,
    /// RFC 3339, as restic wrote it.
    pub time: String,
    pub hostname: String,
    pub paths: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoStats {
    pub repo: String,
    /// Bytes stored in the repository (after deduplication and compression).
    pub total_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_uncompressed_size: Option<u64>,
    pub snapshots_count: u64,
    pub blob_count: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    pub protocol_version: u32,
    pub controller_version: String,
    /// How often the agent sends `heartbeat`.
    pub heartbeat_seconds: u32,
}

/// A full plan at a version, with the secret values it refers to that live on the controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSet {
    pub version: u64,
    pub digest: String,
    pub plan: HostPlan,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretValue>,
}

/// The value of a [`SecretRef`] that is not a host file. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretValue {
    pub reference: SecretRef,
    pub value: String,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("reference", &self.reference)
            .field("value", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandRun {
    pub job: JobId,
    pub request: RunRequest,
    /// Secret values a restore from another repository needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretValue>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RunRequest {
    /// Run one schedule of the applied plan now.
    Schedule {
        schedule: String,
    },
    /// Run this fully resolved schedule once; it need not be in the plan. A run-now request that
    /// overrides the repo, or names only an operation, becomes one of these.
    Resolved(ResolvedSchedule),
    Restore(RestoreRequest),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    pub repo: ResolvedRepo,
    /// A snapshot id, or `latest`.
    pub snapshot: String,
    /// With `latest`, only snapshots of this host are considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
    pub target_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandCancel {
    pub job: JobId,
}

/// The report with this sequence number is stored; the agent may forget it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessage {
    pub code: ErrorCode,
    /// One sentence saying what is wrong and what to do.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The agent speaks a protocol older than the controller accepts: upgrade the agent.
    ProtocolTooOld,
    /// The agent speaks a protocol newer than the controller knows: upgrade the controller.
    ProtocolTooNew,
    /// The credential is unknown or revoked: enroll again.
    Unauthorized,
    /// The agent tried to act as another host.
    WrongHost,
    /// A frame could not be decoded (not JSON, not a known message, a binary frame); the session
    /// goes on.
    BadMessage,
    /// A message decoded but the controller will not act on it: a report about a repository or
    /// schedule outside the sender's plan, a finish before its start, an oversized field, or a
    /// `schedule.ack` for a version never offered. A refused report is also acked (the message
    /// names its `seq`), so it leaves the agent's outbox; the session goes on.
    Refused,
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// Errors after which reconnecting at once cannot help.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::ProtocolTooOld
                | ErrorCode::ProtocolTooNew
                | ErrorCode::Unauthorized
                | ErrorCode::WrongHost
        )
    }
}

/// Why a frame could not be decoded.
#[derive(Debug)]
pub enum DecodeError {
    TooLarge { bytes: usize },
    Invalid(serde_json::Error),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLarge { bytes } => write!(
                f,
                "frame of {bytes} bytes is larger than the {MAX_FRAME_BYTES}-byte limit"
            ),
            DecodeError::Invalid(e) => write!(f, "not a valid message: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one frame, refusing oversized ones before parsing.
pub fn decode<T: serde::de::DeserializeOwned>(frame: &str) -> Result<T, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge { bytes: frame.len() });
    }
    serde_json::from_str(frame).map_err(DecodeError::Invalid)
}

/// Encodes one frame. Messages are plain data, so this cannot fail.
pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("protocol messages always serialize")
}
