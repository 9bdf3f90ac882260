//! Backup and Restore: one run each, on one host.
//!
//! The controller creates a Backup for every run an agent reports. A Backup or Restore that a
//! person creates (no status yet) is a request to run once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use protocol::Operation;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Phase, conditions_schema};

/// What a Backup names: the host, and the schedule or operation to run.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    category = "holdfast",
    shortname = "hfbackup",
    doc = "One run of an operation on one host: a scheduled run, or a run-now request.",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(name = "Operation", type_ = "string", json_path = ".spec.operation"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Progress",
        type_ = "string",
        json_path = ".status.progress.percent"
    ),
    printcolumn(name = "Added", type_ = "string", json_path = ".status.dataAdded"),
    printcolumn(
        name = "Snapshot",
        type_ = "string",
        json_path = ".status.snapshotShortId",
        priority = 1
    ),
    printcolumn(
        name = "Started",
        type_ = "date",
        json_path = ".status.startTime",
        priority = 1
    ),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSpec {
    /// Name of the Host that runs it.
    pub host: String,
    /// The Schedule whose parameters it uses. A request without one names an `operation` that
    /// needs no parameters (`prune` or `check`) and uses the host's default repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The operation; when a schedule is named it must match the schedule's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// Repo to use instead of the schedule's or host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

/// What a Restore names: which snapshot, and where to write it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RestoreStatus",
    category = "holdfast",
    shortname = "hfrestore",
    doc = "Restores a snapshot to a path on the same or another host; runs once.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.host"),
    printcolumn(name = "Target host", type_ = "string", json_path = ".spec.targetHost"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreSpec {
    /// The Host whose snapshots are restored.
    pub host: String,
    /// Repo to read from; default: the schedule's repo, else the host's `defaultRepo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// A snapshot id (full or short), or `latest`. Exactly one of `snapshot`, `backup` and
    /// `schedule` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The snapshot a Backup record produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The latest snapshot of this backup Schedule on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The Host that writes the files.
    pub target_host: String,
    /// Absolute directory on the target host to restore into.
    pub target_path: String,
    /// Restore only paths matching these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Do not restore paths matching these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// What every run reports, Backup or Restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` once the run has finished, with the outcome as its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Where the run is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The agent's id for the run; reports carrying it are idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// When the run was due (scheduled runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<Time>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// How long it ran, such as `1m23s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Live progress while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// restic's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A CamelCase word for why it ended as it did, such as `PreHookFailed` or `AgentRestarted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One readable sentence about the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last lines of output (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// Live progress of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Percent done for people, such as `42%`.
    pub percent: String,
    /// Files processed so far.
    #[serde(default)]
    pub files_done: u64,
    /// Files to process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_files: Option<u64>,
    /// Bytes processed so far.
    #[serde(default)]
    pub bytes_done: u64,
    /// Bytes to process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// restic's estimate of the time left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_remaining: Option<u64>,
}

/// The status of a Backup.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    /// The full id of the snapshot a backup made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Its first eight characters, as restic shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_short_id: Option<String>,
    /// Data added to the repository for people, such as `12.3 MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_added: Option<String>,
    /// restic's backup summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<BackupSummary>,
    /// What a drill restored and verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillStatus>,
}

/// A restore drill's result: the snapshot is `snapshotId`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    /// Files restored whose content matched the snapshot's.
    pub files_verified: u64,
    /// Their bytes.
    pub bytes_verified: u64,
    /// Files the drill set out to restore.
    pub files_expected: u64,
    /// Seconds `restic restore` took.
    pub seconds: f64,
    /// Bytes restored per second.
    pub bytes_per_second: u64,
    /// The restore rate for people, such as `42.0 MiB/s`.
    pub rate: String,
    /// The first files that did not verify, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<DrillDifference>,
    /// How many files did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differences_total: Option<u64>,
}

/// A file a drill could not verify.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillDifference {
    /// The path in the snapshot.
    pub path: String,
    /// Why it did not verify.
    pub reason: String,
}

/// restic's summary of a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files changed since the parent snapshot.
    pub files_changed: u64,
    /// Files unchanged since the parent snapshot.
    pub files_unmodified: u64,
    /// Directories not in the parent snapshot.
    pub dirs_new: u64,
    /// Directories changed since the parent snapshot.
    pub dirs_changed: u64,
    /// Directories unchanged since the parent snapshot.
    pub dirs_unmodified: u64,
    /// Bytes added to the repository (after deduplication, before compression).
    pub data_added: u64,
    /// Files looked at.
    pub total_files_processed: u64,
    /// Bytes looked at.
    pub total_bytes_processed: u64,
}

/// The status of a Restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    #[serde(flatten)]
    pub run: RunStatus,
    /// The full id of the snapshot restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Files written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_restored: Option<u64>,
    /// Bytes written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_restored: Option<u64>,
}
