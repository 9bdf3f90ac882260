//! What the status page shows, gathered from the read model; `page` renders it.
//!
//! Every resource is the same object the JSON API serves (spec and status), so the page can never
//! tell a different story from `/api/v1` or `kubectl`.

use chrono::{DateTime, Utc};

use crate::resources::{Backup, Host, Repo, Schedule};
pub use crate::store::{RevisionRecord, Revisions};

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
