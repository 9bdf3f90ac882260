//! Repo: one restic repository.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{EnvVar, SecretSource, conditions_schema};

/// What a Repo declares: where the repository is and how to open it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Repo",
    namespaced,
    status = "RepoStatus",
    category = "holdfast",
    shortname = "hfrepo",
    doc = "A restic repository that schedules back up to.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Snapshots",
        type_ = "integer",
        json_path = ".status.snapshotCount"
    ),
    printcolumn(name = "Size", type_ = "string", json_path = ".status.size"),
    printcolumn(
        name = "Last check",
        type_ = "date",
        json_path = ".status.lastCheck.time"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Initialized",
        type_ = "boolean",
        json_path = ".status.initialized",
        priority = 1
    ),
    printcolumn(
        name = "Check passed",
        type_ = "boolean",
        json_path = ".status.lastCheck.passed",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepoSpec {
    /// Repository location, anything restic accepts: a local path, `rest:https://…`, `s3:…`,
    /// `sftp:…`.
    pub url: String,
    /// Where the repository password comes from.
    pub password: SecretSource,
    /// Extra environment for restic, such as storage credentials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// A second, privileged access used only by forget and prune, so that the everyday access can
    /// be append-only. Unset fields fall back to the everyday ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<RepoAdminAccess>,
    /// The everyday access cannot delete (such as `rclone serve restic --append-only`): forget
    /// and prune schedules then need an `admin` access, or validation refuses them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
    /// Run `restic init` when the repository does not exist yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub initialize: bool,
}

/// Privileged access to the same repository, for forget and prune.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepoAdminAccess {
    /// Repository address for privileged access, such as a REST server without `--append-only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Password for privileged access, when it uses another key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretSource>,
    /// Environment for privileged access; a name given here replaces the everyday one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// What the controller last learned about the repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `Reachable` for the last contact through an agent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Whether the repository exists and has been initialised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialized: Option<bool>,
    /// Number of snapshots, from the last `snapshots.report`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_count: Option<u64>,
    /// Stored size in bytes (restic's raw-data mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Stored size for people, such as `12.4 GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Restored size divided by stored size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_ratio: Option<f64>,
    /// The last `restic check`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<RepoCheck>,
    /// Where its cycle of rotating checks (`readDataRotate`) is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<RepoScrub>,
    /// Whether a lock was seen in the repository, and by whom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<RepoLock>,
    /// When an agent last reported on this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Time>,
}

/// A repository read whole over a cycle of checks, one part per run (`readDataRotate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoScrub {
    /// How many parts the data is read in.
    pub parts: u32,
    /// The part the next check reads.
    pub next_part: u32,
    /// How many of the parts have been read.
    pub parts_read: u32,
    /// When a check last read a part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read: Option<Time>,
    /// Every pack has been read since this time; absent until each part has been read once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fully_read_since: Option<Time>,
}

/// The result of one `restic check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoCheck {
    /// When the check finished.
    pub time: Time,
    /// Whether it found no errors.
    pub passed: bool,
    /// The Backup record of the check run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// What restic said, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A lock seen in the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepoLock {
    /// Whether the repository was locked when last looked at.
    pub locked: bool,
    /// Whether the lock was stale (its holder is gone) and cleared with `restic unlock`.
    #[serde(default)]
    pub stale: bool,
    /// What restic said about the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
