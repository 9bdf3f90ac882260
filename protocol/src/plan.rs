//! The resolved per-host plan: what compile produces in the controller and the agent runs.
//!
//! Everything here is fully resolved — repository URLs, credential *references*, hooks, limits,
//! retention and the effective cron with jitter — so the agent needs nothing else to run a
//! schedule. Secret values are never part of a plan: only where to get them.
//!
//! Field order is part of the canonical serialisation the controller digests, so adding a field
//! changes every digest once; optional fields are skipped when empty so that old plans keep their
//! bytes.

use serde::{Deserialize, Serialize};

/// The full set of schedules one host must run, at one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPlan {
    /// Namespace of the Host resource.
    pub namespace: String,
    /// Name of the Host resource; also the `--host` restic records in snapshots.
    pub host: String,
    /// A paused host runs nothing until it is unpaused.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Sorted by schedule name.
    pub schedules: Vec<ResolvedSchedule>,
}

impl HostPlan {
    /// The newest plan field this plan uses, with the agent protocol that first knows it.
    /// Plans are strict (an agent refuses a plan with a field it does not know, and cannot even
    /// say which), so the controller does not offer such a plan to an older agent.
    pub fn needs_protocol(&self) -> Option<(u32, &'static str)> {
        self.schedules.iter().find_map(|s| {
            if s.operation == Operation::Drill {
                return Some((2, "operation drill"));
            }
            s.check
                .as_ref()?
                .read_data_rotate
                .map(|_| (2, "check.readDataRotate"))
        })
    }
}

/// One schedule as a particular host runs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolvedSchedule {
    /// Name of the Schedule resource (same namespace as the host).
    pub name: String,
    pub operation: Operation,
    /// Six fields (`sec min hour day-of-month month day-of-week`) in the dialect of the `cron`
    /// crate: day-of-week 1 is Sunday. Compile normalises what people write into this form.
    pub cron: String,
    /// IANA time zone the cron is evaluated in.
    pub time_zone: String,
    /// Deterministic per-host delay added to every fire time, in seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub jitter_seconds: u32,
    pub repo: ResolvedRepo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget: Option<ForgetParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillParams>,
    pub concurrency_policy: ConcurrencyPolicy,
    pub missed_run_policy: MissedRunPolicy,
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
}

/// The restic operation a schedule runs.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Backup,
    Forget,
    Prune,
    Check,
    /// Restore a sample of a snapshot into a private directory and verify it.
    Drill,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Backup => "backup",
            Operation::Forget => "forget",
            Operation::Prune => "prune",
            Operation::Check => "check",
            Operation::Drill => "drill",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens when a run comes due while the previous one is still running.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    /// Skip the new run and report it Skipped.
    #[default]
    Forbid,
    /// Cancel the running one and start the new one.
    Replace,
    /// Run both.
    Allow,
}

/// What the agent does about run times that passed while it was not running.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MissedRunPolicy {
    /// Report the missed run as Missed and wait for the next one.
    #[default]
    Skip,
    /// Run once as soon as possible, however many runs were missed.
    RunOnce,
}

/// Repository access for one operation: for forget and prune this is the privileged access when
/// the Repo declares one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolvedRepo {
    /// Name of the Repo resource.
    pub name: String,
    pub url: String,
    pub password: SecretRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<ResolvedEnv>,
    /// Run `restic init` when the repository does not exist yet.
    #[serde(default, skip_serializing_if = "is_false")]
    pub initialize: bool,
    /// The host that initialises this shared repository. Until the repository exists, this
    /// host's runs skip instead of racing it with a second `restic init`, which would leave the
    /// repository with keys for two different master keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialized_by: Option<String>,
}

/// Where a secret value comes from. The value itself travels only when an agent needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum SecretRef {
    /// A key of a Kubernetes Secret in the resource's namespace (Kubernetes mode).
    SecretKey { name: String, key: String },
    /// A file on the controller's machine, read by the controller.
    ControllerFile { path: String },
    /// A file on the agent's host; its contents never leave that host.
    HostFile { path: String },
}

/// One environment variable for restic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolvedEnv {
    pub name: String,
    pub value: EnvValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum EnvValue {
    /// A plain, non-secret value.
    Plain(String),
    Secret(SecretRef),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupParams {
    pub paths: Vec<String>,
    /// Host defaults first, then the schedule's own; duplicates removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_hooks: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_hooks: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
}

/// A command run before or after a backup, without a shell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Killed after this many seconds.
    pub timeout_seconds: u32,
}

/// Bandwidth limits for restic, passed as `--limit-upload`/`--limit-download`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Upload limit in KiB per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_kib_per_second: Option<u32>,
    /// Download limit in KiB per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_kib_per_second: Option<u32>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.upload_kib_per_second.is_none() && self.download_kib_per_second.is_none()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgetParams {
    pub retention: Retention,
    /// Only snapshots carrying all these tags are considered (always scoped to the host too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Run `restic forget --prune`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
}

/// Which snapshots `restic forget` keeps (its `--keep-*` flags); at least one must be set.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// Keep the last n snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the last snapshot of each of the last n hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the last snapshot of each of the last n days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the last snapshot of each of the last n weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the last snapshot of each of the last n months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the last snapshot of each of the last n years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot newer than this restic duration, such as `2y5m7d3h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<String>,
    /// Keep every snapshot that carries one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
}

impl Retention {
    /// A policy that keeps nothing would make `forget` delete everything it selects.
    pub fn is_empty(&self) -> bool {
        self == &Retention::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckParams {
    /// restic's `--read-data-subset` (`n/t`, a percentage or a size); none reads no data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_subset: Option<String>,
    /// Read the repository's data in this many parts over successive runs, each run the next
    /// part (`--read-data-subset n/parts`), which the controller tells the agent with
    /// `scrub.cursor` so that hosts sharing the repo continue one cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_data_rotate: Option<u32>,
}

/// A restore drill: which snapshot, and which of its files to restore and verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrillParams {
    /// Only snapshots made by this host (restic's `--host`): the drilling host itself, or
    /// another one for a cross-host drill.
    pub source_host: String,
    /// Only snapshots carrying all these tags (a backup schedule's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Only snapshots of exactly these paths (a backup schedule's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Whole paths to restore and verify; when empty, a random sample of files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// How many random files to sample when `include` is empty.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_files: u32,
    /// The sample's files together stay under this many bytes.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max_bytes: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
