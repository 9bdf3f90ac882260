//! What the status page shows, gathered from the read model; `page` renders it.
//!
//! Every resource is the same object the JSON API serves (spec and status), so the page can never
//! tell a different story from `/api/v1` or `kubectl`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::sync::Arc;

use crate::resources::{Backup, Host, Repo, Schedule, Snapshot};
pub use crate::store::{RevisionEntry, RevisionRecord, Revisions, SizePoint};

/// The fleet overview at `/`.
pub struct FleetView<'a> {
    pub now: DateTime<Utc>,
    pub revisions: &'a Revisions,
    pub hosts: &'a [Arc<Host>],
    pub schedules: &'a [Arc<Schedule>],
    pub repos: &'a [Arc<Repo>],
    /// Runs in phase Running, Dispatched or Pending, newest first.
    pub active: Vec<&'a Backup>,
    /// Why the controller cannot write its database, while it cannot.
    pub store_failing: Option<String>,
    /// The page of the hosts table asked for, from 1; past the last page shows the last.
    pub page: usize,
    /// Only the hosts that need this attention, else every host.
    pub show: Option<HostFilter>,
    /// The controller's release: an agent older than it is flagged.
    pub release: &'a str,
}

/// A reason a host needs attention, most severe first: the hosts table lists hosts in this
/// order, and `?show=` lists only the hosts with one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostFilter {
    /// Its last backup failed in whole or in part.
    Failed,
    /// A schedule has had no successful run on it within `staleAfter`.
    Stale,
    /// The newest run of a schedule on it was missed or skipped.
    Missed,
    Offline,
    /// Its agent runs another schedule version than the controller wants.
    Drifting,
}

impl HostFilter {
    /// In order of severity.
    pub const ALL: [HostFilter; 5] = [
        HostFilter::Failed,
        HostFilter::Stale,
        HostFilter::Missed,
        HostFilter::Offline,
        HostFilter::Drifting,
    ];

    /// The value of `?show=`.
    pub fn as_str(self) -> &'static str {
        match self {
            HostFilter::Failed => "failed",
            HostFilter::Stale => "stale",
            HostFilter::Missed => "missed",
            HostFilter::Offline => "offline",
            HostFilter::Drifting => "drifting",
        }
    }

    pub fn parse(value: &str) -> Option<HostFilter> {
        HostFilter::ALL.into_iter().find(|f| f.as_str() == value)
    }
}

/// The query of `/`: `?page=N&show=failed`. Both are text and read leniently by `page` and
/// `show`, so a malformed value falls back to the default instead of axum's 400 (a number
/// field would reject `?page=abc`), and a bad `page` does not lose the filter.
#[derive(Debug, Default, Deserialize)]
pub struct FleetQuery {
    pub page: Option<String>,
    pub show: Option<String>,
}

impl FleetQuery {
    /// The page asked for, from 1; missing, malformed or 0 is 1.
    pub fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.trim().parse::<usize>().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// The filter asked for; an unknown one is no filter.
    pub fn show(&self) -> Option<HostFilter> {
        self.show.as_deref().and_then(HostFilter::parse)
    }
}

/// One host at `/hosts/{namespace}/{name}`.
pub struct HostView<'a> {
    pub now: DateTime<Utc>,
    pub host: &'a Host,
    /// The controller's release: an agent older than it is flagged.
    pub release: &'a str,
    /// The schedules whose status has an entry for this host.
    pub schedules: Vec<&'a Schedule>,
    /// This host's runs of the last 30 days, newest first.
    pub runs: Vec<&'a Backup>,
    /// Size of each repo this host uses over the last 30 days, oldest point first.
    pub repo_sizes: Vec<RepoSeries>,
    /// The host's Snapshot objects, by repo, newest first.
    pub snapshots: Vec<Snapshot>,
    /// The schedules and repos in force, which names on the page link to.
    pub declared_schedules: &'a [Arc<Schedule>],
    pub repos: &'a [Arc<Repo>],
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
    /// The hosts, schedules and repos in force, which names on the page link to.
    pub hosts: &'a [Arc<Host>],
    pub schedules: &'a [Arc<Schedule>],
    pub repos: &'a [Arc<Repo>],
}

/// A page of a long list: which page is asked for (from 1; past the last shows the last).
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub page: Option<String>,
}

impl PageQuery {
    /// The page asked for, from 1; missing, malformed or 0 is 1.
    pub fn page(&self) -> usize {
        FleetQuery {
            page: self.page.clone(),
            show: None,
        }
        .page()
    }
}

/// One schedule at `/schedules/{namespace}/{name}`.
pub struct ScheduleView<'a> {
    pub now: DateTime<Utc>,
    pub schedule: &'a Schedule,
    /// The fleet's hosts: whether each of the schedule's hosts is online.
    pub hosts: &'a [Arc<Host>],
    /// The repos in force, which its repo links to.
    pub repos: &'a [Arc<Repo>],
    /// Its newest runs on any host, newest first.
    pub runs: Vec<&'a Backup>,
    /// The page of its hosts table, from 1.
    pub page: usize,
}

/// One repo at `/repos/{namespace}/{name}`.
pub struct RepoView<'a> {
    pub now: DateTime<Utc>,
    pub repo: &'a Repo,
    /// Its stored sizes and snapshot counts of the last 30 days, oldest first.
    pub history: Vec<SizePoint>,
    /// The hosts that use it, by name.
    pub users: Vec<RepoUser>,
}

/// A host that uses a repo: through which schedules, and what its agent last said of its
/// snapshots there.
#[derive(Debug, Default)]
pub struct RepoUser {
    pub host: String,
    /// Whether the host is in the revision in force (it has a page).
    pub declared: bool,
    /// The schedules of the revision in force that run against the repo on this host.
    pub schedules: Vec<String>,
    pub snapshots: Option<u64>,
    pub latest: Option<DateTime<Utc>>,
}

/// The revisions read, at `/revisions?before=ID`.
pub struct RevisionsView<'a> {
    pub now: DateTime<Utc>,
    /// Newest first.
    pub entries: &'a [RevisionEntry],
    /// The revision in force.
    pub in_force: Option<i64>,
    /// The page shows revisions older than this one; `None` for the newest.
    pub before: Option<i64>,
    /// Whether older revisions may follow the last one shown.
    pub more: bool,
    /// The objects in force, which the names of changes link to.
    pub hosts: &'a [Arc<Host>],
    pub schedules: &'a [Arc<Schedule>],
    pub repos: &'a [Arc<Repo>],
}

/// The query of `/revisions`.
#[derive(Debug, Default, Deserialize)]
pub struct RevisionsQuery {
    pub before: Option<String>,
}

impl RevisionsQuery {
    /// Older than this revision; a malformed value is none (the newest).
    pub fn before(&self) -> Option<i64> {
        self.before.as_deref().and_then(|b| b.trim().parse().ok())
    }
}
