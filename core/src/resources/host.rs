//! Host: one machine running an agent.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use protocol::Limits;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Hooks, Phase, conditions_schema};

/// What a Host declares: defaults for its backups. Schedules select hosts by their labels.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Host",
    namespaced,
    status = "HostStatus",
    category = "holdfast",
    shortname = "hfhost",
    doc = "A machine running the Holdfast agent.",
    printcolumn(name = "Online", type_ = "boolean", json_path = ".status.online"),
    printcolumn(
        name = "Applied",
        type_ = "integer",
        json_path = ".status.appliedScheduleVersion"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredScheduleVersion"
    ),
    printcolumn(
        name = "In sync",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"ScheduleInSync\")].status"
    ),
    printcolumn(
        name = "Last backup",
        type_ = "date",
        json_path = ".status.lastBackup.time"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Agent",
        type_ = "string",
        json_path = ".status.agentVersion",
        priority = 1
    ),
    printcolumn(name = "OS", type_ = "string", json_path = ".status.os", priority = 1),
    printcolumn(
        name = "Arch",
        type_ = "string",
        json_path = ".status.arch",
        priority = 1
    ),
    printcolumn(
        name = "Last seen",
        type_ = "date",
        json_path = ".status.lastSeen",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// Name of the Repo (same namespace) that schedules use when they name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_repo: Option<String>,
    /// Defaults for the backups this host runs.
    #[serde(default, skip_serializing_if = "HostDefaults::is_empty")]
    pub defaults: HostDefaults,
    /// A paused host runs nothing, scheduled or requested, until it is unpaused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// Defaults for every backup on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostDefaults {
    /// Exclude patterns added before each backup schedule's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Hooks for backup schedules that declare none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Bandwidth limits for schedules that declare none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

impl HostDefaults {
    fn is_empty(&self) -> bool {
        self == &HostDefaults::default()
    }
}

/// What the controller knows of the host and its agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `AgentConnected`, `ScheduleInSync`, `Ready`, and `Reconciling` while a push awaits its ack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Whether the agent is connected now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// When the agent was last heard from: to the minute once it is offline, and within five
    /// minutes while it is connected (as a kubelet refreshes its node's status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// Version of the agent binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Version of restic on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic_version: Option<String>,
    /// Protocol version the agent speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// Operating system, such as `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// CPU architecture, such as `x86_64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The schedule version the controller wants the agent to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_schedule_version: Option<u64>,
    /// Digest of the desired schedule; the version goes up exactly when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_schedule_digest: Option<String>,
    /// The schedule version the agent last acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_schedule_version: Option<u64>,
    /// Why applied differs from desired: agent offline, awaiting ack, or rejected by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_reason: Option<String>,
    /// The host's most recent finished backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastRun>,
    /// The host's most recent restore drill that ran to an end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<LastDrill>,
}

/// A host's latest restore drill: how it ended and how fast it restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastDrill {
    /// When it finished.
    pub time: Time,
    /// How it ended.
    pub phase: Phase,
    /// Name of its Backup record.
    pub backup: String,
    /// Files restored and verified against the snapshot.
    pub files_verified: u64,
    /// Their bytes.
    pub bytes_verified: u64,
    /// Files that did not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differences: Option<u64>,
    /// Bytes restored per second.
    pub bytes_per_second: u64,
    /// When a drill on the host last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
}

/// A pointer to a finished run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// When it finished.
    pub time: Time,
    /// How it ended.
    pub phase: Phase,
    /// Name of its Backup record.
    pub backup: String,
}
