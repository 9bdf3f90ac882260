//! What the status page shows, gathered from the read model; `page` renders it.
//!
//! Every resource is the same object the JSON API serves (spec and status), so the page can never
//! tell a different story from `/api/v1` or `kubectl`.

use chrono::{DateTime, Utc};

use crate::resources::{Backup, Host, Repo, Schedule};

/// One revision the controller read from the config directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// Increasing number of the revision, counted by the controller.
    pub id: i64,
    /// The git commit of the config directory, when it is a git work tree.
    pub commit: Option<String>,
    /// When the controller read it.
    pub at: DateTime<Utc>,
    /// Resource counts, such as `1 repo, 2 hosts, 3 schedules, 0 backups, 0 restores`.
    pub summary: String,
    /// Why it was rejected (each `file:line: message`); empty for an applied revision.
    pub errors: Vec<String>,
}

/// The revision in force, and the newest rejected one when it came after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revisions {
    pub applied: Option<RevisionRecord>,
    pub rejected: Option<RevisionRecord>,
}

/// The fleet overview at `/`.
pub struct FleetView<'a> {
    pub now: DateTime<Utc>,
    pub revisions: &'a Revisions,
    pub hosts: &'a [Host],
    pub schedules: &'a [Schedule],
    pub repos: &'a [Repo],
    /// Runs in phase Running, Dispatched or Pending, newest first.
    pub active: Vec<&'a Backup>,
    /// Why the controller cannot write its database, while it cannot.
    pub store_failing: Option<String>,
}

/// One host at `/hosts/{namespace}/{name}`.
pub struct HostView<'a> {
    pub now: DateTime<Utc>,
    pub host: &'a Host,
    /// The schedules whose status has an entry for this host.
    pub schedules: Vec<&'a Schedule>,
    /// This host's runs of the last 30 days, newest first.
    pub runs: Vec<&'a Backup>,
    /// Size of each repo this host uses over the last 30 days, oldest point first.
    pub repo_sizes: Vec<RepoSeries>,
}

/// A repo's size over time.
pub struct RepoSeries {
    pub repo: String,
    pub points: Vec<(DateTime<Utc>, u64)>,
}

/// One run at `/runs/{namespace}/{name}`; live updates come from `events_url` (SSE).
pub struct RunView<'a> {
    pub now: DateTime<Utc>,
    pub backup: &'a Backup,
    /// The whole stored log (bounded), oldest line first; the status carries only a tail.
    pub log: &'a [String],
    pub events_url: String,
}
