//! The status page: server-rendered, read-only HTML for the fleet, each host, run, schedule
//! and repo, and the revisions read.
//!
//! Every page stands alone: one inline stylesheet, inline SVG charts, no external assets. The
//! fleet, host and run pages carry a few lines of plain JavaScript that follow them live over
//! server-sent events; without the script every page is complete, only not live. Nothing on
//! any page changes state: there are no forms and no buttons.

mod attention;
mod badges;
mod charts;
mod fleet;
mod format;
mod host;
mod host_cells;
mod links;
mod repo;
mod revisions;
mod run;
mod runs;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::view::{
    FleetView, HostFilter, HostView, RepoSeries, RepoUser, RepoView, RevisionRecord, RevisionsView,
    RunView, ScheduleView,
};
use crate::resources::{
    API_VERSION, Backup, BackupSummary, DEFAULT_NAMESPACE, Host, HostStatus, LastDrill, Phase,
    Progress, Repo, Schedule, ScheduleHostStatus, Snapshot,
};
use crate::revision::{name_of, namespace_of};
use crate::runs::is_final;
use crate::time;
use attention::*;
use badges::*;
use charts::*;
use format::*;
use host_cells::*;
use links::*;
use revisions::source_of;
use run::progress_state;
use runs::*;

pub use attention::Tally;
pub use fleet::{
    Summary, fleet, host_row_fragment, repos_section, running_section, schedules_section,
    summary_section,
};
pub use host::host;
pub use repo::repo;
pub use revisions::revisions;
pub use run::run;
pub use schedule::schedule;

/// Labels the controller puts on every Backup it records.
const LABEL_SCHEDULE: &str = "holdfast.dev/schedule";
const LABEL_OPERATION: &str = "holdfast.dev/operation";
const LABEL_REPO: &str = "holdfast.dev/repo";

/// The span of the host timeline and the repo size charts.
const WINDOW_DAYS: i64 = 30;
/// Rows of the recent-runs table on a host page; the timeline shows every run.
const MAX_RUN_ROWS: usize = 50;
/// Size charts mark every point with a tooltip up to this many points.
const MAX_CHART_DOTS: usize = 60;
/// Rows of the fleet page's hosts table; one page of 10,000 hosts would be megabytes of HTML.
pub const HOSTS_PER_PAGE: usize = 100;

const PHASES: [Phase; 9] = [
    Phase::Pending,
    Phase::Dispatched,
    Phase::Running,
    Phase::Succeeded,
    Phase::PartiallyFailed,
    Phase::Failed,
    Phase::Missed,
    Phase::Skipped,
    Phase::Cancelled,
];

const CSS: &str = include_str!("style.css");
/// Follows the fleet or a host page live: see `live.js`.
const LIVE_SCRIPT: &str = include_str!("live.js");

/// A plain page saying what was not found, with a link home.
pub fn not_found(what: &str) -> Markup {
    layout(
        "Not found",
        None,
        html! {
            nav.crumbs { a href="/" { "Holdfast" } }
            header.page { h1 { "Not found" } }
            p { "There is no " strong { (what) } "." }
            p { a href="/" { "Back to the fleet overview" } }
        },
    )
}

/// A page: its title, the stylesheet, and `body` in `main`. `live` is the events URL that the
/// live script (`live.js`) follows; a page without one does not carry the script.
fn layout(title: &str, live: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Holdfast" }
                style { (PreEscaped(CSS)) }
            }
            body {
                main data-live=[live] { (body) }
                @if live.is_some() { script { (PreEscaped(LIVE_SCRIPT)) } }
            }
        }
    }
}
