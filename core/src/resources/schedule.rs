//! Schedule: an operation on a cron, for a set of hosts.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use protocol::{ConcurrencyPolicy, Limits, MissedRunPolicy, Operation, Retention};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Hooks, LabelSelector, Phase, conditions_schema};

/// What a Schedule declares: the operation, when, on which hosts, and its parameters.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "holdfast.dev",
    version = "v1alpha1",
    kind = "Schedule",
    namespaced,
    status = "ScheduleStatus",
    category = "holdfast",
    shortname = "hfsched",
    doc = "A restic operation run on a cron by a set of hosts.",
    printcolumn(name = "Operation", type_ = "string", json_path = ".spec.operation"),
    printcolumn(name = "Cron", type_ = "string", json_path = ".spec.cron"),
    printcolumn(name = "Hosts", type_ = "integer", json_path = ".status.hostCount"),
    printcolumn(
        name = "Healthy",
        type_ = "integer",
        json_path = ".status.healthyHosts"
    ),
    printcolumn(
        name = "Pending",
        type_ = "integer",
        json_path = ".status.pendingHosts"
    ),
    printcolumn(name = "Stale", type_ = "integer", json_path = ".status.staleHosts"),
    printcolumn(
        name = "Last success",
        type_ = "date",
        json_path = ".status.lastSuccessfulTime"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Next run",
        type_ = "string",
        json_path = ".status.nextScheduleTime",
        priority = 1
    ),
    printcolumn(
        name = "Time zone",
        type_ = "string",
        json_path = ".spec.timeZone",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// What to run: `backup`, `forget`, `prune`, `check` or `drill`.
    pub operation: Operation,
    /// When to run: five fields (`min hour day-of-month month day-of-week`), six with a leading
    /// seconds field, or a macro such as `@daily`.
    pub cron: String,
    /// IANA time zone the cron is read in, such as `Europe/Berlin` (default `UTC`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Hosts by name (same namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Hosts by label; combined with `hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<LabelSelector>,
    /// Repo to use (same namespace); default: each host's `defaultRepo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Backup only: what to back up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Backup only: exclude patterns, added after the host's defaults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// Backup: tags put on each snapshot. Forget: only snapshots with these tags are considered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Backup only: commands run before and after; replaces the host's default hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// Backup only: bandwidth limits; replaces the host's default limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Forget only: which snapshots to keep. Forget is always scoped to the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Forget only: prune unreferenced data afterwards.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
    /// Check only: restic's `--read-data-subset`, such as `10%` or `1/7`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_subset: Option<String>,
    /// Check only: read the repository's whole data over this many runs, each run the next
    /// part (`--read-data-subset n/N`), continuing across restarts and across the hosts that
    /// check the repo; the Repo's status shows when every pack was last read. Not with
    /// `readDataSubset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub read_data_rotate: Option<u32>,
    /// Drill only: which snapshot to restore a sample of, and which files (default: 20 random
    /// files of the host's latest snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillSpec>,
    /// What to do when a run comes due while the last is still running (default `Forbid`).
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// What to do about runs that came due while the agent was down (default `Skip`).
    #[serde(default)]
    pub missed_run_policy: MissedRunPolicy,
    /// Spread hosts over this window, such as `30m`: each host runs at a fixed, deterministic
    /// offset within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    /// Stop scheduling new runs; a run already going finishes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// How many successful Backup records to keep per host (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_runs_history_limit: Option<u32>,
    /// How many failed Backup records to keep per host (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_runs_history_limit: Option<u32>,
    /// A host is stale when it has had no successful run for this long, such as `36h`
    /// (default: twice the longest gap between runs of the cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<String>,
}

/// Files a drill samples when it names neither `include` nor `sampleFiles`.
pub const DEFAULT_DRILL_SAMPLE_FILES: u32 = 20;
/// The most files a drill samples: each is read back from the repository on its own.
pub const MAX_DRILL_SAMPLE_FILES: u32 = 1000;
/// A drill's sample stays under this many bytes unless `maxBytes` says otherwise (256 MiB).
pub const DEFAULT_DRILL_MAX_BYTES: u64 = 256 << 20;

/// A restore drill: restore part of a snapshot into a private temporary directory, compare every
/// restored file with the snapshot's content, measure the restore rate, and remove it all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillSpec {
    /// A backup Schedule (same namespace): drill the latest snapshot it made (its paths and
    /// tags); default: the latest snapshot of the host, whatever made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_schedule: Option<String>,
    /// Drill another Host's snapshots in the repo (a cross-host drill); default: the host's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_host: Option<String>,
    /// Whole absolute paths of the snapshot to restore and verify, instead of a random sample.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// How many random files to restore and verify (default 20, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_files: Option<u32>,
    /// The random sample's files together stay under this many bytes (default 268435456,
    /// 256 MiB); larger files are passed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
}

/// How the schedule is doing on each of its hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` when every host runs the schedule and none is stale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Number of hosts the schedule applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_count: Option<u32>,
    /// Hosts whose last run that ran to an end (not missed, skipped or cancelled) succeeded
    /// and that are not stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_hosts: Option<u32>,
    /// Hosts where the schedule has not run to an end yet and that are not stale: pending
    /// their first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_hosts: Option<u32>,
    /// Hosts with no successful run within `staleAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_hosts: Option<u32>,
    /// The most recent run on any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The most recent successful run on any host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The next run on any host (none while suspended, or on paused hosts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// Per host, sorted by host name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["host"]))]
    pub hosts: Vec<ScheduleHostStatus>,
}

/// How the schedule is doing on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleHostStatus {
    /// Name of the Host.
    pub host: String,
    /// When the last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last successful run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// When the next run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// How the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<Phase>,
    /// When a run was last missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missed_time: Option<Time>,
    /// No successful run within `staleAfter`.
    #[serde(default)]
    pub stale: bool,
    /// The schedule has not run to an end on the host yet (missed or skipped runs do not
    /// count) and it is not stale.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_first_run: bool,
}
