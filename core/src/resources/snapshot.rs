//! Snapshot: one restic snapshot of one host in one repo, as its agent last reported it.
//! Read-only: the controller makes them; a file or a client cannot.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What restic says about a snapshot, and which Backup made it.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Snapshot",
    namespaced,
    status = "SnapshotStatus",
    category = "holdfast",
    shortname = "hfsnap",
    doc = "One restic snapshot of a host in a repo, as its agent reported it; read-only.",
    printcolumn(name = "Host", type_ = "string", json_path = ".spec.host"),
    printcolumn(name = "Repo", type_ = "string", json_path = ".spec.repo"),
    printcolumn(name = "Time", type_ = "string", json_path = ".spec.time"),
    printcolumn(name = "Short ID", type_ = "string", json_path = ".spec.shortId"),
    printcolumn(name = "Tags", type_ = "string", json_path = ".spec.tags"),
    printcolumn(name = "Paths", type_ = "string", json_path = ".spec.paths"),
    printcolumn(
        name = "Forget at",
        type_ = "string",
        json_path = ".status.forgetAt",
        priority = 1
    ),
    printcolumn(
        name = "Backup",
        type_ = "string",
        json_path = ".spec.backup",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".spec.time"),
    selectable = ".spec.host",
    selectable = ".spec.repo",
    selectable = ".spec.schedule"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotSpec {
    /// The Host whose agent reported it.
    pub host: String,
    /// The Repo it is in.
    pub repo: String,
    /// restic's full snapshot id.
    pub id: String,
    /// Its first eight characters, as restic shows it.
    pub short_id: String,
    /// When it was taken (RFC 3339, in the offset restic wrote).
    pub time: String,
    /// The hostname restic recorded.
    pub hostname: String,
    /// The paths backed up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// restic's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Bytes the backup that made it looked at (its summary's `totalBytesProcessed`), when that
    /// Backup's record is known; restic 0.14's snapshot list has no size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The Backup that made it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// The backup Schedule that made it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// What retention will do to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// When the next run of a forget Schedule covering it would remove it, from the snapshots
    /// known now; absent while every such run keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_at: Option<Time>,
    /// The forget Schedule whose run that is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_schedule: Option<String>,
}
