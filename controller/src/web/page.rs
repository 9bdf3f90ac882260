//! The status page: server-rendered, read-only HTML for the fleet, one host and one run.
//!
//! Every page stands alone: one inline stylesheet, inline SVG charts, no external assets. The
//! page of an unfinished run carries a few lines of plain JavaScript that follow it live over
//! server-sent events; without the script the page is complete, only not live. Nothing on any
//! page changes state: there are no forms and no buttons.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::view::{FleetView, HostFilter, HostView, RepoSeries, RevisionRecord, RunView};
use crate::resources::{
    Backup, BackupSummary, DEFAULT_NAMESPACE, Host, HostStatus, Phase, Progress, Repo, Schedule,
    ScheduleHostStatus,
};
use crate::revision::{name_of, namespace_of};
use crate::runs::is_final;
use crate::time;

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

// ---------------------------------------------------------------------------------------------
// Pages

/// The fleet overview at `/`.
pub fn fleet(view: &FleetView) -> Markup {
    let now = view.now;
    let index = schedule_index(view.schedules, view.hosts.len());
    layout(
        "Fleet",
        html! {
            header.page {
                h1 { "Holdfast" }
                (revision_line(now, view.revisions.applied.as_ref()))
            }
            @if let Some(failing) = &view.store_failing {
                section.banner role="alert" {
                    h2 { "Reports are not being stored" }
                    p { (failing) }
                }
            }
            @if let Some(rejected) = &view.revisions.rejected {
                (rejected_banner(now, rejected))
            }
            (summary_strip(view, &index))
            h2 #hosts { "Hosts" }
            (hosts_section(view, &index))
            h2 { "Running now" }
            (active_table(now, &view.active))
            h2 { "Schedules" }
            (schedules_table(now, view.schedules))
            h2 { "Repos" }
            (repos_table(now, view.repos))
        },
    )
}

/// One host at `/hosts/{namespace}/{name}`.
pub fn host(view: &HostView) -> Markup {
    let now = view.now;
    let host = view.host;
    let name = name_of(host);
    let namespace = namespace_of(host);
    let status = host.status.as_ref();
    let online = is_online(host);
    let next = view
        .schedules
        .iter()
        .filter_map(|s| host_entry(s, name)?.next_schedule_time.as_ref())
        .min_by_key(|t| t.0);
    layout(
        name,
        html! {
            nav.crumbs { a href="/" { "Holdfast" } " / hosts / " (qualified(namespace, name)) }
            header.page {
                h1 { (name) }
                (state_badge(is_online(host)))
                @if host.spec.paused { (badge("paused", "muted")) }
                @if drifting(status) { (badge("drift", "warn")) }
            }
            @if !online {
                section.notice #offline {
                    p {
                        strong { "The agent is offline" } " — " (last_seen(now, status)) ". "
                        "Its schedules run on the host regardless"
                        @if let Some(t) = next { "; the next is due " (when(now, Some(t))) }
                        ". Their results arrive when it reconnects."
                    }
                }
            }
            h2 { "Host" }
            (host_facts(now, view.release, host))
            @if let Some(status) = status.filter(|s| !s.conditions.is_empty()) {
                h2 { "Conditions" }
                (conditions_table(now, status))
            }
            h2 { "Schedules" }
            (host_schedules_table(now, online, name, &view.schedules))
            h2 { "Last 30 days" }
            (timeline(now, &view.runs))
            (legend())
            h2 { "Repository size" }
            @if view.repo_sizes.is_empty() {
                p.empty { "No repository size reported yet." }
            }
            @for series in &view.repo_sizes {
                (size_chart(now, series))
            }
            h2 { "Recent runs" }
            (runs_table(now, &view.runs))
        },
    )
}

/// One run at `/runs/{namespace}/{name}`, followed live while it is not finished.
pub fn run(view: &RunView) -> Markup {
    let now = view.now;
    let backup = view.backup;
    let name = name_of(backup);
    let namespace = namespace_of(backup);
    let status = backup.status.as_ref();
    let phase = status.and_then(|s| s.run.phase);
    let live = !phase.is_some_and(is_final);
    let log: &[String] = match (view.log.is_empty(), status) {
        (true, Some(status)) => &status.run.log_tail,
        _ => view.log,
    };
    let (value, text) = progress_state(phase, status.and_then(|s| s.run.progress.as_ref()));
    layout(
        name,
        html! {
            article #run data-events=[live.then_some(&view.events_url)] {
                nav.crumbs {
                    a href="/" { "Holdfast" } " / "
                    a href=(host_url(namespace, &backup.spec.host)) { (backup.spec.host) }
                    " / runs / " (name)
                }
                header.page {
                    h1 { (name) }
                    span #phase class=(format!("badge {}", phase_tone(phase))) {
                        (phase_name(phase))
                    }
                    @if live { span #live .dim { "Live" } }
                }
                h2 { "Run" }
                (run_facts(now, backup))
                @if let Some(summary) = status.and_then(|s| s.summary.as_ref()) {
                    h2 { "Summary" }
                    (summary_facts(summary))
                }
                h2 { "Progress" }
                div.progress {
                    progress #progress max="100" value=[value.map(fixed)] {
                        (value.map(|v| format!("{v:.0}%")).unwrap_or_default())
                    }
                    span #progress-text { (text) }
                }
                h2 { "Log" }
                @if log.iter().any(|l| first_use(l)) {
                    p.note #first-use {
                        "restic's “unable to open config file” below is its normal message before "
                        "a repository's first use: the repository was not initialised yet, and "
                        "the agent initialises it."
                    }
                }
                @if log.is_empty() {
                    p #log-empty .empty {
                        @if live { "No output yet." } @else { "This run wrote no log lines." }
                    }
                }
                pre #log {
                    @for line in log {
                        @if first_use(line) {
                            span.expected title="expected before the repository's first init" {
                                (line)
                            }
                            "\n"
                        } @else {
                            (line) "\n"
                        }
                    }
                }
            }
            @if live { script { (PreEscaped(live_script())) } }
        },
    )
}

/// A plain page saying what was not found, with a link home.
pub fn not_found(what: &str) -> Markup {
    layout(
        "Not found",
        html! {
            nav.crumbs { a href="/" { "Holdfast" } }
            header.page { h1 { "Not found" } }
            p { "There is no " strong { (what) } "." }
            p { a href="/" { "Back to the fleet overview" } }
        },
    )
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Holdfast" }
                style { (PreEscaped(CSS)) }
            }
            body { main { (body) } }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet page parts

fn revision_line(now: DateTime<Utc>, applied: Option<&RevisionRecord>) -> Markup {
    html! {
        p.revision {
            @match applied {
                Some(r) => {
                    "Revision " strong { (r.id) }
                    @if let Some(commit) = &r.commit {
                        " · " (source_of(r, commit))
                    }
                    " · applied " (time_el(now, r.at)) " · " (r.summary)
                }
                None => { "No revision applied yet." }
            }
        }
    }
}

fn rejected_banner(now: DateTime<Utc>, r: &RevisionRecord) -> Markup {
    html! {
        section.banner role="alert" {
            h2 { "Revision " (r.id) " rejected" }
            p {
                "Read " (time_el(now, r.at))
                @if let Some(commit) = &r.commit {
                    " from " (source_of(r, commit))
                }
                ". Hosts keep the last applied revision until these errors are fixed."
            }
            ul.errors { @for error in &r.errors { li { (error) } } }
        }
    }
}

/// Each card counts exactly the hosts its link lists: the same `needs` decides both.
/// `commit 0123456`, or the edits not committed on top of it: a rejected edit is not the
/// commit checked out, and naming only the commit points at files that are fine.
fn source_of(r: &RevisionRecord, commit: &str) -> Markup {
    html! {
        @if r.uncommitted {
            "uncommitted edits on top of commit "
        } @else {
            "commit "
        }
        code title=(commit) { (short_commit(commit)) }
    }
}

fn summary_strip(view: &FleetView, index: &ScheduleIndex) -> Markup {
    let total = view.hosts.len();
    let mut counts = [0usize; HostFilter::ALL.len()];
    for host in view.hosts {
        let schedules = schedules_of(index, host);
        for (n, filter) in HostFilter::ALL.into_iter().enumerate() {
            counts[n] += usize::from(needs(host, schedules, filter));
        }
    }
    let counted = |filter: HostFilter| {
        HostFilter::ALL
            .into_iter()
            .position(|f| f == filter)
            .map_or(0, |n| counts[n])
    };
    let online = total - counted(HostFilter::Offline);
    let in_sync = total - counted(HostFilter::Drifting);
    let (stale, missed, failed) = (
        counted(HostFilter::Stale),
        counted(HostFilter::Missed),
        counted(HostFilter::Failed),
    );
    let shown = view.show;
    html! {
        div.strip {
            (card(&format!("{online} / {total}"), "hosts online", tone(online < total, "bad"),
                HostFilter::Offline, shown))
            (card(&format!("{in_sync} / {total}"), "in sync", tone(in_sync < total, "warn"),
                HostFilter::Drifting, shown))
            (card(&failed.to_string(), "failed last runs", tone(failed > 0, "bad"),
                HostFilter::Failed, shown))
            (card(&stale.to_string(), "stale hosts", tone(stale > 0, "warn"),
                HostFilter::Stale, shown))
            (card(&missed.to_string(), "missed last runs", tone(missed > 0, "warn"),
                HostFilter::Missed, shown))
        }
    }
}

/// `alarm` when something needs attention, else calm.
fn tone(attention: bool, alarm: &'static str) -> &'static str {
    if attention { alarm } else { "calm" }
}

/// A summary card linking to the hosts behind its figure, marked while they are the hosts shown.
fn card(
    value: &str,
    label: &str,
    tone: &str,
    filter: HostFilter,
    shown: Option<HostFilter>,
) -> Markup {
    let current = (shown == Some(filter)).then_some("true");
    html! {
        a.card.(tone) href=(fleet_url(1, Some(filter))) aria-current=[current] {
            div.value { (value) }
            div.label { (label) }
        }
    }
}

/// What the schedules' status says about one host.
#[derive(Clone, Default)]
struct HostSchedules<'a> {
    /// The earliest next run of any schedule.
    next: Option<&'a Time>,
    /// The schedules stale on it.
    stale: Vec<&'a str>,
    /// The schedules whose newest run on it was missed or skipped.
    missed: Vec<&'a str>,
    /// The worst end of a schedule's newest run on it, when it failed in whole or in part:
    /// a failed forget or check counts as much as a failed backup.
    failed: Option<Phase>,
}

type ScheduleIndex<'a> = HashMap<(&'a str, &'a str), HostSchedules<'a>>;

static NO_SCHEDULES: HostSchedules<'static> = HostSchedules {
    next: None,
    stale: Vec::new(),
    missed: Vec::new(),
    failed: None,
};

fn schedules_of<'a, 'i>(index: &'i ScheduleIndex<'a>, host: &'a Host) -> &'i HostSchedules<'a> {
    index
        .get(&(namespace_of(host), name_of(host)))
        .unwrap_or(&NO_SCHEDULES)
}

/// Failed is worse than partially failed.
fn worse(a: Option<Phase>, b: Option<Phase>) -> Option<Phase> {
    match (a, b) {
        (Some(Phase::Failed), _) | (_, Some(Phase::Failed)) => Some(Phase::Failed),
        (a, b) => a.or(b),
    }
}

/// Every host's schedule entries by (namespace, host), gathered in one pass over the schedules'
/// status: each schedule lists every host it runs on, so searching those lists per host is
/// quadratic in the fleet's size.
fn schedule_index(schedules: &[Schedule], hosts: usize) -> ScheduleIndex<'_> {
    let mut index: ScheduleIndex = HashMap::with_capacity(hosts);
    for schedule in schedules {
        let namespace = namespace_of(schedule);
        let name = name_of(schedule);
        for entry in schedule.status.iter().flat_map(|s| &s.hosts) {
            let found = index.entry((namespace, entry.host.as_str())).or_default();
            if entry.stale {
                found.stale.push(name);
            }
            match entry.last_result {
                Some(Phase::Missed | Phase::Skipped) => found.missed.push(name),
                Some(phase @ (Phase::Failed | Phase::PartiallyFailed)) => {
                    found.failed = worse(found.failed, Some(phase));
                }
                _ => {}
            }
            if let Some(t) = &entry.next_schedule_time
                && found.next.is_none_or(|earliest| t.0 < earliest.0)
            {
                found.next = Some(t);
            }
        }
    }
    index
}

/// A row of the hosts table.
struct HostRow<'a> {
    host: &'a Host,
    namespace: &'a str,
    name: &'a str,
    schedules: &'a HostSchedules<'a>,
    /// The most severe reason it needs attention.
    attention: Option<HostFilter>,
}

fn needs(host: &Host, schedules: &HostSchedules, filter: HostFilter) -> bool {
    match filter {
        HostFilter::Failed => failed(host, schedules).is_some(),
        HostFilter::Stale => !schedules.stale.is_empty(),
        HostFilter::Missed => !schedules.missed.is_empty(),
        HostFilter::Offline => !is_online(host),
        HostFilter::Drifting => drifting(host.status.as_ref()),
    }
}

/// The hosts the table lists (all, or those `show` picks): those needing attention first, most
/// severe first, then by namespace and name.
fn listed_hosts<'a>(view: &FleetView<'a>, index: &'a ScheduleIndex<'a>) -> Vec<HostRow<'a>> {
    let mut rows: Vec<HostRow> = view
        .hosts
        .iter()
        .filter_map(|host| {
            let (namespace, name) = (namespace_of(host), name_of(host));
            let schedules = schedules_of(index, host);
            if view.show.is_some_and(|f| !needs(host, schedules, f)) {
                return None;
            }
            let attention = HostFilter::ALL
                .into_iter()
                .find(|f| needs(host, schedules, *f));
            Some(HostRow {
                host,
                namespace,
                name,
                schedules,
                attention,
            })
        })
        .collect();
    rows.sort_unstable_by_key(|r| (r.attention.is_none(), r.attention, r.namespace, r.name));
    rows
}

/// `/?page=2&show=failed#hosts`.
fn fleet_url(page: usize, show: Option<HostFilter>) -> String {
    match show {
        Some(filter) => format!("/?page={page}&show={}#hosts", filter.as_str()),
        None => format!("/?page={page}#hosts"),
    }
}

/// The words after "hosts" for a filter.
fn filter_words(filter: HostFilter) -> &'static str {
    match filter {
        HostFilter::Failed => "whose last backup failed",
        HostFilter::Stale => "with a stale schedule",
        HostFilter::Missed => "whose newest scheduled run was missed or skipped",
        HostFilter::Offline => "that are offline",
        HostFilter::Drifting => "whose agent runs another schedule version",
    }
}

/// The hosts table, one page of it, with the filter in force and links to the other pages.
fn hosts_section(view: &FleetView, index: &ScheduleIndex) -> Markup {
    if view.hosts.is_empty() {
        return html! { p.empty { "No hosts declared." } };
    }
    let rows = listed_hosts(view, index);
    let pages = rows.len().div_ceil(HOSTS_PER_PAGE).max(1);
    let page = view.page.clamp(1, pages);
    let shown = &rows[(page - 1) * HOSTS_PER_PAGE..rows.len().min(page * HOSTS_PER_PAGE)];
    let pager = html! {
        nav.pager aria-label="Host pages" {
            span {
                "Hosts " (count(((page - 1) * HOSTS_PER_PAGE + 1) as u64)) "–"
                (count(((page - 1) * HOSTS_PER_PAGE + shown.len()) as u64))
                " of " (count(rows.len() as u64))
            }
            @if page > 1 {
                a href=(fleet_url(page - 1, view.show)) rel="prev" { "← Previous" }
            }
            @if page < pages {
                a href=(fleet_url(page + 1, view.show)) rel="next" { "Next →" }
            }
        }
    };
    html! {
        @if let Some(filter) = view.show {
            p.filter {
                "Only hosts " strong { (filter_words(filter)) } ". "
                a href="/#hosts" { "Show all " (count(view.hosts.len() as u64)) " hosts" }
            }
        }
        @if shown.is_empty() {
            p.empty { "No hosts " (view.show.map_or("", filter_words)) "." }
        } @else {
            (pager)
            table {
                thead { tr {
                    th { "Host" } th { "State" } th { "Agent" } th { "Schedule version" }
                    th { "Last backup" } th { "Next run" } th { "Attention" }
                } }
                tbody { @for row in shown { (host_row(view.now, view.release, row)) } }
            }
            @if pages > 1 { (pager) }
        }
    }
}

fn host_row(now: DateTime<Utc>, release: &str, row: &HostRow) -> Markup {
    let HostRow {
        host,
        namespace,
        name,
        schedules,
        ..
    } = *row;
    let status = host.status.as_ref();
    let online = is_online(host);
    let last = status.and_then(|s| s.last_backup.as_ref());
    html! {
        tr data-host=(name) data-state=(state_name(online)) {
            td data-label="Host" {
                a href=(host_url(namespace, name)) { (name) }
                @if namespace != DEFAULT_NAMESPACE { " " span.dim { (namespace) } }
            }
            td data-label="State" {
                (state_badge(online))
                @if host.spec.paused { " " (badge("paused", "muted")) }
                div.note.seen { (last_seen(now, status)) }
            }
            td data-label="Agent" { (agent_cell(status, release)) }
            td data-label="Schedule version" { (versions_cell(status)) }
            td data-label="Last backup" {
                @match last {
                    Some(last) => {
                        a href=(run_url(namespace, &last.backup)) { (when(now, Some(&last.time))) }
                        " " (phase_badge(Some(last.phase)))
                    }
                    None => { span.dim { "never" } }
                }
            }
            td data-label="Next run" { (next_run(now, online, schedules.next)) }
            td data-label="Attention" { (attention(host, schedules)) }
        }
    }
}

/// `seen 3 min ago`, or `never connected`.
fn last_seen(now: DateTime<Utc>, status: Option<&HostStatus>) -> Markup {
    match status.and_then(|s| s.last_seen.as_ref()) {
        Some(t) => html! { "seen " (when(now, Some(t))) },
        None => html! { "never connected" },
    }
}

/// The next run. An offline host's agent still runs its schedules on its own clock: saying
/// so keeps an operator from reading the time as a promise the controller makes.
fn next_run(now: DateTime<Utc>, online: bool, next: Option<&Time>) -> Markup {
    let at = next.map(time::chrono);
    html! {
        @if online {
            @match at { Some(t) => { (time_el(now, t)) }, None => { (dash()) } }
        } @else {
            @if let Some(t) = at {
                span.dim { "on the host: " } (time_el(now, t))
            } @else {
                (dash())
            }
            div.note { "runs on the host regardless; results arrive when it reconnects" }
        }
    }
}

/// Every reason the host needs attention, most severe first, each in words.
fn attention(host: &Host, schedules: &HostSchedules) -> Markup {
    let reasons: Vec<Markup> = HostFilter::ALL
        .into_iter()
        .filter(|f| needs(host, schedules, *f))
        .map(|filter| match filter {
            HostFilter::Failed => match failed(host, schedules) {
                Some(Phase::PartiallyFailed) => badge("partially failed", "warn"),
                _ => badge("failed", "bad"),
            },
            HostFilter::Stale => html! {
                (badge("stale", "warn")) " " span.note { (schedules.stale.join(", ")) }
            },
            HostFilter::Missed => html! {
                (badge("missed", "warn")) " " span.note { (schedules.missed.join(", ")) }
            },
            HostFilter::Offline => badge("offline", "bad"),
            // Why it drifts is in the schedule version cell beside it.
            HostFilter::Drifting => badge("drift", "warn"),
        })
        .collect();
    html! {
        @if reasons.is_empty() {
            (dash())
        } @else {
            ul.reasons { @for reason in reasons { li { (reason) } } }
        }
    }
}

/// The agent's release, flagged when it is older than the controller's or speaks an older
/// protocol.
fn agent_cell(status: Option<&HostStatus>, release: &str) -> Markup {
    let agent = status.and_then(|s| s.agent_version.as_deref());
    let protocol = status.and_then(|s| s.protocol_version);
    let old_release = agent.is_some_and(|a| older(a, release));
    let old_protocol = protocol.is_some_and(|p| p < protocol::PROTOCOL_VERSION);
    html! {
        @match agent {
            Some(agent) => { span.mono { (agent) } }
            None => { (dash()) }
        }
        @if old_release || old_protocol {
            " " span.badge.warn title=(format!(
                "the controller is {release} (protocol {}); upgrade the agent",
                protocol::PROTOCOL_VERSION
            )) { "older" }
        }
    }
}

/// Whether release `a` is older than `b`, comparing their dotted numbers (`0.9.1` < `0.10.0`);
/// a release that does not start with a number is not compared.
fn older(a: &str, b: &str) -> bool {
    fn numbers(v: &str) -> Option<Vec<u64>> {
        let core = v.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        core.split('.').map(|n| n.parse().ok()).collect()
    }
    match (numbers(a), numbers(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

fn versions_cell(status: Option<&HostStatus>) -> Markup {
    let applied = status.and_then(|s| s.applied_schedule_version);
    let desired = status.and_then(|s| s.desired_schedule_version);
    html! {
        @if drifting(status) {
            span.mono { (version(applied)) " → " (version(desired)) }
            " " (badge("drift", "warn"))
            @if let Some(reason) = status.and_then(|s| s.drift_reason.as_deref()) {
                div.note { (reason) }
            }
        } @else {
            @match desired.or(applied) {
                Some(v) => { span.mono { "v" (v) } }
                None => { (dash()) }
            }
        }
    }
}

fn active_table(now: DateTime<Utc>, active: &[&Backup]) -> Markup {
    if active.is_empty() {
        return html! { p.empty { "Nothing is running." } };
    }
    html! {
        table {
            thead { tr {
                th { "Run" } th { "Host" } th { "Schedule" } th { "Phase" } th { "Started" }
                th.wide { "Progress" }
            } }
            tbody {
                @for backup in active {
                    @let namespace = namespace_of(*backup);
                    @let status = backup.status.as_ref();
                    @let phase = status.and_then(|s| s.run.phase);
                    @let progress = status.and_then(|s| s.run.progress.as_ref());
                    @let (value, text) = progress_state(phase, progress);
                    tr {
                        td data-label="Run" {
                            a href=(run_url(namespace, name_of(*backup))) { (name_of(*backup)) }
                        }
                        td data-label="Host" {
                            a href=(host_url(namespace, &backup.spec.host)) { (backup.spec.host) }
                        }
                        td data-label="Schedule" { (run_label(backup)) }
                        td data-label="Phase" { (phase_badge(phase)) }
                        td data-label="Started" {
                            (when(now, status.and_then(|s| s.run.start_time.as_ref())))
                        }
                        td data-label="Progress" {
                            progress max="100" value=[value.map(fixed)] {}
                            div.note { (text) }
                        }
                    }
                }
            }
        }
    }
}

fn schedules_table(now: DateTime<Utc>, schedules: &[Schedule]) -> Markup {
    if schedules.is_empty() {
        return html! { p.empty { "No schedules declared." } };
    }
    html! {
        table {
            thead { tr {
                th { "Schedule" } th { "Operation" } th { "Cron" } th.num { "Hosts" }
                th.num { "Healthy" } th.num { "Pending first run" } th.num { "Stale" }
                th { "Last success" }
            } }
            tbody {
                @for schedule in schedules {
                    @let status = schedule.status.as_ref();
                    @let stale = stale_hosts(schedule);
                    tr data-schedule=(name_of(schedule)) {
                        td data-label="Schedule" {
                            (qualified(namespace_of(schedule), name_of(schedule)))
                            @if schedule.spec.suspend { " " (badge("suspended", "muted")) }
                        }
                        td data-label="Operation" { (schedule.spec.operation.as_str()) }
                        td data-label="Cron" {
                            code.cron { (schedule.spec.cron) }
                            @if let Some(tz) = &schedule.spec.time_zone { " " span.dim { (tz) } }
                        }
                        td.num data-label="Hosts" { (host_count(schedule)) }
                        td.num data-label="Healthy" {
                            @match status.and_then(|s| s.healthy_hosts) {
                                Some(n) => { (n) }
                                None => { (dash()) }
                            }
                        }
                        td.num data-label="Pending first run" {
                            @match status.and_then(|s| s.pending_hosts) {
                                Some(n) => { (n) }
                                None => { (dash()) }
                            }
                        }
                        td.num data-label="Stale" {
                            @if stale > 0 {
                                (badge(&format!("{stale} stale"), "warn"))
                            } @else {
                                "0"
                            }
                        }
                        td data-label="Last success" {
                            (when(now, status.and_then(|s| s.last_successful_time.as_ref())))
                        }
                    }
                }
            }
        }
    }
}

fn repos_table(now: DateTime<Utc>, repos: &[Repo]) -> Markup {
    if repos.is_empty() {
        return html! { p.empty { "No repos declared." } };
    }
    html! {
        table {
            thead { tr {
                th { "Repo" } th { "URL" } th.num { "Snapshots" } th.num { "Size" }
                th.num { "Dedup ratio" } th { "Last check" }
            } }
            tbody {
                @for repo in repos {
                    @let status = repo.status.as_ref();
                    tr {
                        td data-label="Repo" {
                            (qualified(namespace_of(repo), name_of(repo)))
                            @if status.and_then(|s| s.lock.as_ref()).is_some_and(|l| l.locked) {
                                " " (badge("locked", "warn"))
                            }
                        }
                        td data-label="URL" { code.url { (repo.spec.url) } }
                        td.num data-label="Snapshots" {
                            @match status.and_then(|s| s.snapshot_count) {
                                Some(n) => { (count(n)) }
                                None => { (dash()) }
                            }
                        }
                        td.num data-label="Size" {
                            @match status.and_then(|s| s.size.clone().or(s.size_bytes.map(bytes))) {
                                Some(size) => { (size) }
                                None => { (dash()) }
                            }
                        }
                        td.num data-label="Dedup ratio" {
                            @match status.and_then(|s| s.dedup_ratio) {
                                Some(r) => { (format!("{r:.2}×")) }
                                None => { (dash()) }
                            }
                        }
                        td data-label="Last check" {
                            @match status.and_then(|s| s.last_check.as_ref()) {
                                Some(check) => {
                                    (when(now, Some(&check.time))) " "
                                    @if check.passed {
                                        (badge("passed", "ok"))
                                    } @else {
                                        span.badge.bad title=[check.message.as_deref()] { "failed" }
                                    }
                                }
                                None => { span.dim { "never" } }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host page parts

fn host_facts(now: DateTime<Utc>, release: &str, host: &Host) -> Markup {
    let namespace = namespace_of(host);
    let status = host.status.as_ref();
    let text = |f: fn(&HostStatus) -> Option<&String>| status.and_then(f).map(String::as_str);
    let platform = match (text(|s| s.os.as_ref()), text(|s| s.arch.as_ref())) {
        (Some(os), Some(arch)) => Some(format!("{os}/{arch}")),
        (os, arch) => os.or(arch).map(str::to_string),
    };
    let labels = host.metadata.labels.as_ref().filter(|l| !l.is_empty());
    html! {
        dl.facts {
            dt { "State" }
            dd {
                (state_badge(is_online(host)))
                @if host.spec.paused {
                    " " (badge("paused", "muted")) " runs nothing until unpaused"
                }
            }
            dt { "Last seen" }
            dd {
                @match status.and_then(|s| s.last_seen.as_ref()) {
                    Some(t) => { (when(now, Some(t))) }
                    None => { span.dim { "never" } }
                }
            }
            dt { "Namespace" } dd { (namespace) }
            dt { "Schedule version" } dd { (versions_cell(status)) }
            dt { "Last backup" }
            dd {
                @match status.and_then(|s| s.last_backup.as_ref()) {
                    Some(last) => {
                        a href=(run_url(namespace, &last.backup)) { (last.backup) } " "
                        (phase_badge(Some(last.phase))) " " (when(now, Some(&last.time)))
                    }
                    None => { span.dim { "never" } }
                }
            }
            dt { "Agent" } dd { (agent_cell(status, release)) }
            dt { "restic" } dd { (opt_text(text(|s| s.restic_version.as_ref()))) }
            dt { "Protocol" }
            dd {
                @match status.and_then(|s| s.protocol_version) {
                    Some(v) => { (v) }
                    None => { (dash()) }
                }
            }
            dt { "Platform" } dd { (opt_text(platform.as_deref())) }
            dt { "Default repo" } dd { (opt_text(host.spec.default_repo.as_deref())) }
            @if let Some(labels) = labels {
                dt { "Labels" }
                dd { @for (k, v) in labels { code.chip { (k) "=" (v) } " " } }
            }
        }
    }
}

fn conditions_table(now: DateTime<Utc>, status: &HostStatus) -> Markup {
    html! {
        table {
            thead { tr {
                th { "Type" } th { "Status" } th { "Reason" } th { "Message" } th { "Since" }
            } }
            tbody {
                @for c in &status.conditions {
                    tr {
                        td data-label="Type" { (c.type_) }
                        td data-label="Status" { (c.status) }
                        td data-label="Reason" { (c.reason) }
                        td data-label="Message" { (c.message) }
                        td data-label="Since" { (when(now, Some(&c.last_transition_time))) }
                    }
                }
            }
        }
    }
}

fn host_schedules_table(
    now: DateTime<Utc>,
    online: bool,
    host: &str,
    schedules: &[&Schedule],
) -> Markup {
    let rows: Vec<(&Schedule, &ScheduleHostStatus)> = schedules
        .iter()
        .filter_map(|s| host_entry(s, host).map(|e| (*s, e)))
        .collect();
    if rows.is_empty() {
        return html! { p.empty { "No schedule runs on this host." } };
    }
    html! {
        table {
            thead { tr {
                th { "Schedule" } th { "Operation" } th { "Cron" } th { "Last run" }
                th { "Last result" } th { "Last success" } th { "Next" } th { "Last missed" }
                th { "Stale" }
            } }
            tbody {
                @for (schedule, entry) in rows {
                    tr data-schedule=(name_of(schedule)) {
                        td data-label="Schedule" {
                            (name_of(schedule))
                            @if schedule.spec.suspend { " " (badge("suspended", "muted")) }
                        }
                        td data-label="Operation" { (schedule.spec.operation.as_str()) }
                        td data-label="Cron" { code.cron { (schedule.spec.cron) } }
                        td data-label="Last run" { (when(now, entry.last_schedule_time.as_ref())) }
                        td data-label="Last result" {
                            @match entry.last_result {
                                Some(phase) => { (phase_badge(Some(phase))) }
                                None => { (dash()) }
                            }
                            @if entry.pending_first_run {
                                " " (badge("pending first run", "info"))
                            }
                        }
                        td data-label="Last success" {
                            (when(now, entry.last_successful_time.as_ref()))
                        }
                        td data-label="Next" {
                            (next_run(now, online, entry.next_schedule_time.as_ref()))
                        }
                        td data-label="Last missed" {
                            (when(now, entry.last_missed_time.as_ref()))
                        }
                        td data-label="Stale" {
                            @if entry.stale { (badge("stale", "warn")) } @else { span.dim { "no" } }
                        }
                    }
                }
            }
        }
    }
}

fn runs_table(now: DateTime<Utc>, runs: &[&Backup]) -> Markup {
    if runs.is_empty() {
        return html! { p.empty { "No runs in the last 30 days." } };
    }
    html! {
        table {
            thead { tr {
                th { "Run" } th { "Schedule" } th { "Operation" } th { "Phase" } th { "Started" }
                th.num { "Duration" } th.num { "Data added" } th { "Snapshot" } th { "Reason" }
            } }
            tbody {
                @for backup in runs.iter().take(MAX_RUN_ROWS) {
                    @let status = backup.status.as_ref();
                    tr {
                        @let name = name_of(*backup);
                        td data-label="Run" { a href=(run_url(namespace_of(*backup), name)) { (name) } }
                        td data-label="Schedule" { (opt_text(run_schedule(backup))) }
                        td data-label="Operation" { (opt_text(run_operation(backup))) }
                        td data-label="Phase" { (phase_badge(status.and_then(|s| s.run.phase))) }
                        td data-label="Started" {
                            (when(now, status.and_then(|s| s.run.start_time.as_ref())))
                        }
                        td.num data-label="Duration" { (opt_text(run_duration(backup).as_deref())) }
                        td.num data-label="Data added" { (opt_text(data_added(backup).as_deref())) }
                        td data-label="Snapshot" { code { (opt_text(snapshot_short(backup))) } }
                        td data-label="Reason" { span title=[status.and_then(|s| s.run.message.as_deref())] {
                            (opt_text(status.and_then(|s| s.run.reason.as_deref())))
                        } }
                    }
                }
            }
        }
        @if runs.len() > MAX_RUN_ROWS {
            p.note {
                "Showing the newest " (MAX_RUN_ROWS) " of " (runs.len())
                " runs; the timeline shows all."
            }
        }
    }
}

const LEGEND: [(&str, &str); 5] = [
    ("succeeded", "ok"),
    ("partially failed", "warn"),
    ("failed", "bad"),
    ("missed, skipped, cancelled", "muted"),
    ("pending, running", "info"),
];

fn legend() -> Markup {
    html! {
        p.legend {
            @for (text, tone) in LEGEND {
                span { i.(tone) {} (text) }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Run page parts

fn run_facts(now: DateTime<Utc>, backup: &Backup) -> Markup {
    let namespace = namespace_of(backup);
    let status = backup.status.as_ref();
    let run = status.map(|s| &s.run);
    let repo = backup
        .spec
        .repo
        .as_deref()
        .or_else(|| label(backup, LABEL_REPO));
    html! {
        dl.facts {
            dt { "Host" }
            dd { a href=(host_url(namespace, &backup.spec.host)) { (backup.spec.host) } }
            dt { "Schedule" } dd { (opt_text(run_schedule(backup))) }
            dt { "Operation" } dd { (opt_text(run_operation(backup))) }
            dt { "Repo" } dd { (opt_text(repo)) }
            dt { "Scheduled" } dd { (when(now, run.and_then(|r| r.scheduled_time.as_ref()))) }
            dt { "Started" } dd { (when(now, run.and_then(|r| r.start_time.as_ref()))) }
            dt { "Finished" } dd { (when(now, run.and_then(|r| r.completion_time.as_ref()))) }
            dt { "Duration" } dd #duration { (opt_text(run_duration(backup).as_deref())) }
            dt { "Exit code" }
            dd #exit-code {
                @match run.and_then(|r| r.exit_code) {
                    Some(code) => { (code) }
                    None => { (dash()) }
                }
            }
            dt { "Snapshot" }
            dd #snapshot {
                @match status.and_then(|s| s.snapshot_id.as_deref()) {
                    Some(id) => { code title=(id) { (snapshot_short(backup).unwrap_or(id)) } }
                    None => { (opt_text(snapshot_short(backup))) }
                }
            }
            dt { "Data added" } dd #data-added { (opt_text(data_added(backup).as_deref())) }
            dt { "Reason" } dd #reason { (opt_text(run.and_then(|r| r.reason.as_deref()))) }
            dt { "Message" } dd #message { (opt_text(run.and_then(|r| r.message.as_deref()))) }
        }
    }
}

fn summary_facts(summary: &BackupSummary) -> Markup {
    html! {
        dl.facts {
            dt { "Files" }
            dd {
                (count(summary.files_new)) " new · " (count(summary.files_changed)) " changed · "
                (count(summary.files_unmodified)) " unmodified"
            }
            dt { "Directories" }
            dd {
                (count(summary.dirs_new)) " new · " (count(summary.dirs_changed)) " changed · "
                (count(summary.dirs_unmodified)) " unmodified"
            }
            dt { "Data added" } dd { (bytes(summary.data_added)) }
            dt { "Processed" }
            dd {
                (count(summary.total_files_processed)) " files · "
                (bytes(summary.total_bytes_processed))
            }
        }
    }
}

/// The lines restic prints when its repository has no config file yet: before the agent's
/// first `init`, not a failure.
fn first_use(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("Fatal: unable to open config file")
        || line.starts_with("Is there a repository at the following location?")
}

/// The progress bar's value (none: indeterminate) and the text beside it.
fn progress_state(phase: Option<Phase>, progress: Option<&Progress>) -> (Option<f64>, String) {
    match (phase, progress) {
        (Some(Phase::Succeeded), _) => (Some(100.0), "Done".into()),
        (_, Some(p)) => (percent(p), progress_text(p)),
        (Some(p), None) if is_final(p) => (Some(0.0), "No progress reported".into()),
        (Some(Phase::Running), None) => (None, "Starting…".into()),
        (_, None) => (None, "Waiting for the agent…".into()),
    }
}

fn percent(p: &Progress) -> Option<f64> {
    let stated = p
        .percent
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok();
    stated
        .or_else(|| {
            let total = p.total_bytes.filter(|t| *t > 0)?;
            Some(p.bytes_done as f64 / total as f64 * 100.0)
        })
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 100.0))
}

/// `42% · 1,234 / 5,000 files · 1.2 GiB / 3.4 GiB · about 3m05s left`; the live script says the
/// same in the same words.
fn progress_text(p: &Progress) -> String {
    let mut parts = Vec::new();
    if !p.percent.is_empty() {
        parts.push(p.percent.clone());
    }
    parts.push(match p.total_files {
        Some(total) => format!("{} / {} files", count(p.files_done), count(total)),
        None => format!("{} files", count(p.files_done)),
    });
    parts.push(match p.total_bytes {
        Some(total) => format!("{} / {}", bytes(p.bytes_done), bytes(total)),
        None => bytes(p.bytes_done),
    });
    if let Some(left) = p.seconds_remaining {
        parts.push(format!("about {} left", format_seconds(left)));
    }
    parts.join(" · ")
}

/// The live-update script, with the phase colours and final phases taken from this module.
fn live_script() -> String {
    let tones: Vec<String> = PHASES
        .iter()
        .map(|p| format!("{}: \"{}\"", phase_name(Some(*p)), phase_tone(Some(*p))))
        .collect();
    let finals: Vec<String> = PHASES
        .iter()
        .filter(|p| is_final(**p))
        .map(|p| format!("\"{}\"", phase_name(Some(*p))))
        .collect();
    format!(
        "(function () {{\n\"use strict\";\nvar TONES = {{{}}};\nvar FINAL = [{}];\n{}}})();\n",
        tones.join(", "),
        finals.join(", "),
        SCRIPT
    )
}

// ---------------------------------------------------------------------------------------------
// Charts

/// Geometry of the timeline: label column, plot, and lanes.
const TL_WIDTH: f64 = 800.0;
const TL_LABELS: f64 = 150.0;
const TL_RIGHT: f64 = 12.0;
const TL_TOP: f64 = 6.0;
const TL_LANE: f64 = 24.0;
const TL_AXIS: f64 = 22.0;

/// A host's runs of the last 30 days: one lane per schedule, one mark per run placed by when it
/// started (see `run_time`), coloured by phase, each linking to its run.
fn timeline(now: DateTime<Utc>, runs: &[&Backup]) -> Markup {
    let start = now - Duration::days(WINDOW_DAYS);
    let mut lanes: BTreeMap<String, Vec<(DateTime<Utc>, &Backup)>> = BTreeMap::new();
    for backup in runs {
        if let Some(t) = run_time(backup).filter(|t| *t >= start) {
            lanes
                .entry(run_label(backup))
                .or_default()
                .push((t.min(now), backup));
        }
    }
    if lanes.is_empty() {
        return html! { p.empty { "No runs in the last 30 days." } };
    }
    let plot_bottom = TL_TOP + lanes.len() as f64 * TL_LANE;
    let height = plot_bottom + TL_AXIS;
    let x = |t: DateTime<Utc>| window_x(start, t, TL_LABELS, TL_WIDTH - TL_RIGHT);
    html! {
        svg.timeline viewBox=(format!("0 0 {TL_WIDTH} {}", fixed(height))) role="img"
            aria-label="Runs of the last 30 days, one mark per run" {
            (day_ticks(TL_LABELS, TL_WIDTH - TL_RIGHT, TL_TOP, plot_bottom))
            @for (i, (lane, marks)) in lanes.iter().enumerate() {
                @let y = TL_TOP + i as f64 * TL_LANE;
                line.lane x1=(fixed(TL_LABELS)) x2=(fixed(TL_WIDTH - TL_RIGHT))
                    y1=(fixed(y + TL_LANE / 2.0)) y2=(fixed(y + TL_LANE / 2.0)) {}
                text x=(fixed(TL_LABELS - 8.0)) y=(fixed(y + TL_LANE / 2.0 + 4.0))
                    text-anchor="end" {
                    title { (lane) }
                    (ellipsize(lane, 22))
                }
                @for (t, backup) in marks {
                    @let phase = backup.status.as_ref().and_then(|s| s.run.phase);
                    a href=(run_url(namespace_of(*backup), name_of(*backup))) {
                        rect class=(format!("mark {}", phase_tone(phase)))
                            x=(fixed(x(*t) - 2.5)) y=(fixed(y + 4.0)) width="5"
                            height=(fixed(TL_LANE - 8.0)) rx="1.5" {
                            title { (lane) " · " (phase_name(phase)) " · " (exact(*t)) }
                        }
                    }
                }
            }
        }
    }
}

/// Geometry of a size chart.
const SC_WIDTH: f64 = 800.0;
const SC_HEIGHT: f64 = 170.0;
const SC_LEFT: f64 = 76.0;
const SC_RIGHT: f64 = 12.0;
const SC_TOP: f64 = 12.0;
const SC_AXIS: f64 = 22.0;

/// A repo's stored size over the last 30 days, as a line.
fn size_chart(now: DateTime<Utc>, series: &RepoSeries) -> Markup {
    let start = now - Duration::days(WINDOW_DAYS);
    let latest = series.points.last().map(|(_, size)| *size);
    // The largest size sits a tenth below the top; the axis starts at zero.
    let peak = series
        .points
        .iter()
        .map(|(_, size)| *size)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = peak as f64 * 1.1;
    let bottom = SC_HEIGHT - SC_AXIS;
    let x = |t: DateTime<Utc>| window_x(start, t, SC_LEFT, SC_WIDTH - SC_RIGHT);
    let y = |v: u64| bottom - v as f64 / scale * (bottom - SC_TOP);
    let line: Vec<String> = series
        .points
        .iter()
        .map(|(t, v)| format!("{},{}", fixed(x(*t)), fixed(y(*v))))
        .collect();
    let dots = if series.points.len() <= MAX_CHART_DOTS {
        &series.points[..]
    } else {
        &series.points[series.points.len() - 1..]
    };
    html! {
        figure.chart {
            figcaption {
                strong { (series.repo) }
                @if let Some(size) = latest { " · " (bytes(size)) }
            }
            @if series.points.is_empty() {
                p.empty { "No size reported in the last 30 days." }
            } @else {
                svg.sizes viewBox=(format!("0 0 {SC_WIDTH} {SC_HEIGHT}")) role="img"
                    aria-label=(format!("Size of repo {} over the last 30 days", series.repo)) {
                    (day_ticks(SC_LEFT, SC_WIDTH - SC_RIGHT, SC_TOP, bottom))
                    @for v in [0, peak / 2, peak] {
                        @let gy = fixed(y(v));
                        line.grid x1=(fixed(SC_LEFT)) x2=(fixed(SC_WIDTH - SC_RIGHT))
                            y1=(gy) y2=(gy) {}
                        text x=(fixed(SC_LEFT - 6.0)) y=(gy) dy="4" text-anchor="end" {
                            (bytes(v))
                        }
                    }
                    polyline.line points=(line.join(" ")) {}
                    @for (t, v) in dots {
                        circle.dot cx=(fixed(x(*t))) cy=(fixed(y(*v))) r="3" {
                            title { (bytes(*v)) " · " (exact(*t)) }
                        }
                    }
                }
            }
        }
    }
}

/// Vertical lines every five days across a 30-day plot, labelled below it.
fn day_ticks(x0: f64, x1: f64, top: f64, bottom: f64) -> Markup {
    html! {
        @for days_ago in (0..=WINDOW_DAYS).rev().step_by(5) {
            @let x = fixed(x0 + (WINDOW_DAYS - days_ago) as f64 / WINDOW_DAYS as f64 * (x1 - x0));
            line.grid x1=(x) x2=(x) y1=(fixed(top)) y2=(fixed(bottom)) {}
            text x=(x) y=(fixed(bottom + 15.0))
                text-anchor=(match days_ago { 0 => "end", WINDOW_DAYS => "start", _ => "middle" }) {
                @if days_ago == 0 { "now" } @else { (days_ago) " d ago" }
            }
        }
    }
}

/// Where `t` falls between `x0` (30 days ago) and `x1` (now).
fn window_x(start: DateTime<Utc>, t: DateTime<Utc>, x0: f64, x1: f64) -> f64 {
    let span = Duration::days(WINDOW_DAYS).num_seconds() as f64;
    let frac = ((t - start).num_seconds() as f64 / span).clamp(0.0, 1.0);
    x0 + frac * (x1 - x0)
}

fn fixed(v: f64) -> String {
    format!("{v:.1}")
}

fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max - 1).collect();
        format!("{head}…")
    }
}

// ---------------------------------------------------------------------------------------------
// Small pieces

fn badge(text: &str, tone: &str) -> Markup {
    html! { span.badge.(tone) { (text) } }
}

fn phase_badge(phase: Option<Phase>) -> Markup {
    badge(phase_name(phase), phase_tone(phase))
}

/// A run without a phase is a request nobody has picked up yet: pending.
fn phase_name(phase: Option<Phase>) -> &'static str {
    match phase.unwrap_or(Phase::Pending) {
        Phase::Pending => "Pending",
        Phase::Dispatched => "Dispatched",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::PartiallyFailed => "PartiallyFailed",
        Phase::Failed => "Failed",
        Phase::Missed => "Missed",
        Phase::Skipped => "Skipped",
        Phase::Cancelled => "Cancelled",
    }
}

/// The colour of a phase: the CSS class of its badge and timeline mark.
fn phase_tone(phase: Option<Phase>) -> &'static str {
    match phase.unwrap_or(Phase::Pending) {
        Phase::Succeeded => "ok",
        Phase::PartiallyFailed => "warn",
        Phase::Failed => "bad",
        Phase::Missed | Phase::Skipped | Phase::Cancelled => "muted",
        Phase::Pending | Phase::Dispatched | Phase::Running => "info",
    }
}

fn state_name(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

fn state_badge(online: bool) -> Markup {
    let state = state_name(online);
    let tone = if online { "ok" } else { "bad" };
    html! { span.badge.(tone).(format!("state-{state}")) { (state) } }
}

fn is_online(host: &Host) -> bool {
    host.status.as_ref().and_then(|s| s.online).unwrap_or(false)
}

/// The agent runs another schedule version than the controller wants.
fn drifting(status: Option<&HostStatus>) -> bool {
    status.is_some_and(|s| {
        s.desired_schedule_version.is_some()
            && s.applied_schedule_version != s.desired_schedule_version
    })
}

/// How the host's last backup or a schedule's newest run on it failed, in whole or in part.
fn failed(host: &Host, schedules: &HostSchedules) -> Option<Phase> {
    let backup = host
        .status
        .as_ref()
        .and_then(|s| s.last_backup.as_ref())
        .map(|l| l.phase)
        .filter(|p| matches!(p, Phase::Failed | Phase::PartiallyFailed));
    worse(backup, schedules.failed)
}

fn version(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("v{v}"))
}

fn host_entry<'a>(schedule: &'a Schedule, host: &str) -> Option<&'a ScheduleHostStatus> {
    schedule
        .status
        .as_ref()?
        .hosts
        .iter()
        .find(|e| e.host == host)
}

fn host_count(schedule: &Schedule) -> u64 {
    schedule
        .status
        .as_ref()
        .map_or(0, |s| s.host_count.map_or(s.hosts.len() as u64, u64::from))
}

fn stale_hosts(schedule: &Schedule) -> u64 {
    schedule.status.as_ref().map_or(0, |s| {
        s.stale_hosts.map_or_else(
            || s.hosts.iter().filter(|e| e.stale).count() as u64,
            u64::from,
        )
    })
}

fn label<'a>(backup: &'a Backup, key: &str) -> Option<&'a str> {
    backup
        .metadata
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn run_schedule(backup: &Backup) -> Option<&str> {
    backup
        .spec
        .schedule
        .as_deref()
        .or_else(|| label(backup, LABEL_SCHEDULE))
}

fn run_operation(backup: &Backup) -> Option<&str> {
    backup
        .spec
        .operation
        .map(|op| op.as_str())
        .or_else(|| label(backup, LABEL_OPERATION))
}

/// `nightly`, or `run-now · prune` for a request that names no schedule.
fn run_label(backup: &Backup) -> String {
    match (run_schedule(backup), run_operation(backup)) {
        (Some(schedule), _) => schedule.to_string(),
        (None, Some(op)) => format!("run-now · {op}"),
        (None, None) => "run-now".to_string(),
    }
}

/// When a run started, else when it was due, else when it finished, else when it was recorded.
fn run_time(backup: &Backup) -> Option<DateTime<Utc>> {
    let run = backup.status.as_ref().map(|s| &s.run);
    run.and_then(|r| {
        r.start_time
            .as_ref()
            .or(r.scheduled_time.as_ref())
            .or(r.completion_time.as_ref())
    })
    .or(backup.metadata.creation_timestamp.as_ref())
    .map(time::chrono)
}

fn run_duration(backup: &Backup) -> Option<String> {
    let run = &backup.status.as_ref()?.run;
    if let Some(d) = &run.duration {
        return Some(d.clone());
    }
    let start = run.start_time.as_ref().map(time::chrono)?;
    let end = run.completion_time.as_ref().map(time::chrono)?;
    u64::try_from((end - start).num_seconds())
        .ok()
        .map(format_seconds)
}

fn data_added(backup: &Backup) -> Option<String> {
    let status = backup.status.as_ref()?;
    status
        .data_added
        .clone()
        .or_else(|| status.summary.as_ref().map(|s| bytes(s.data_added)))
}

fn snapshot_short(backup: &Backup) -> Option<&str> {
    let status = backup.status.as_ref()?;
    status.snapshot_short_id.as_deref().or_else(|| {
        status
            .snapshot_id
            .as_deref()
            .map(|id| id.get(..8).unwrap_or(id))
    })
}

fn host_url(namespace: &str, name: &str) -> String {
    format!("/hosts/{namespace}/{name}")
}

fn run_url(namespace: &str, name: &str) -> String {
    format!("/runs/{namespace}/{name}")
}

/// `name`, or `namespace/name` outside the default namespace.
fn qualified(namespace: &str, name: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

fn short_commit(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

fn dash() -> Markup {
    html! { span.dim { "—" } }
}

fn opt_text(text: Option<&str>) -> Markup {
    match text {
        Some(text) => html! { (text) },
        None => dash(),
    }
}

// ---------------------------------------------------------------------------------------------
// Time, sizes, counts

/// `<time>` with the exact instant in its attributes and a relative one as its text.
fn time_el(now: DateTime<Utc>, t: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339_opts(SecondsFormat::Secs, true)) title=(exact(t)) {
            (relative(now, t))
        }
    }
}

fn when(now: DateTime<Utc>, t: Option<&Time>) -> Markup {
    match t.map(time::chrono) {
        Some(t) => time_el(now, t),
        None => dash(),
    }
}

fn exact(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `just now`, `3 min ago`, `in 2 h`, `2 d ago`: whole units, rounded down.
fn relative(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let abs = secs.unsigned_abs();
    if abs < 60 {
        return if secs <= 0 { "just now" } else { "in a moment" }.to_string();
    }
    let amount = if abs < 3600 {
        format!("{} min", abs / 60)
    } else if abs < 48 * 3600 {
        format!("{} h", abs / 3600)
    } else {
        format!("{} d", abs / 86_400)
    };
    if secs < 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// `45s`, `3m05s`, `2h10m`.
fn format_seconds(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Binary units with one decimal: `512 B`, `12.3 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Assets

/// The body of the live-update script; `live_script` defines `TONES` and `FINAL` before it.
const SCRIPT: &str = r#"var root = document.getElementById("run");
var url = root && root.getAttribute("data-events");
if (!url || !window.EventSource) return;
var phase = document.getElementById("phase");
var bar = document.getElementById("progress");
var text = document.getElementById("progress-text");
var log = document.getElementById("log");
var live = document.getElementById("live");
function set(id, v) {
  var el = document.getElementById(id);
  if (el && v !== undefined && v !== null) el.textContent = String(v);
}
function bytes(n) {
  var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"], i = 0;
  if (n < 1024) return n + " B";
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(1) + " " + units[i];
}
function count(n) { return Number(n).toLocaleString("en-US"); }
function two(n) { return (n < 10 ? "0" : "") + n; }
function secs(t) {
  var h = Math.floor(t / 3600), m = Math.floor(t / 60) % 60, s = t % 60;
  return h > 0 ? h + "h" + two(m) + "m" : m > 0 ? m + "m" + two(s) + "s" : s + "s";
}
function describe(p) {
  var parts = [];
  if (p.percent) parts.push(p.percent);
  var files = count(p.filesDone || 0);
  parts.push(p.totalFiles != null
    ? files + " / " + count(p.totalFiles) + " files"
    : files + " files");
  var done = bytes(p.bytesDone || 0);
  parts.push(p.totalBytes != null ? done + " / " + bytes(p.totalBytes) : done);
  if (p.secondsRemaining != null) parts.push("about " + secs(p.secondsRemaining) + " left");
  return parts.join(" \u00b7 ");
}
var source = new EventSource(url);
source.addEventListener("status", function (e) {
  var s;
  try { s = JSON.parse(e.data); } catch (err) { return; }
  if (!s) return;
  if (s.phase) {
    phase.textContent = s.phase;
    phase.className = "badge " + (TONES[s.phase] || "info");
  }
  if (s.progress) {
    var pct = parseFloat(s.progress.percent);
    if (!isNaN(pct)) bar.value = Math.max(0, Math.min(100, pct));
    text.textContent = describe(s.progress);
  }
  set("duration", s.duration);
  set("exit-code", s.exitCode);
  set("snapshot", s.snapshotShortId);
  set("data-added", s.dataAdded);
  set("reason", s.reason);
  set("message", s.message);
  if (FINAL.indexOf(s.phase) >= 0) {
    source.close();
    if (s.phase === "Succeeded") {
      bar.value = 100;
      text.textContent = "Done";
    }
    if (live) live.textContent = "Finished \u2014 reload for the full record";
  }
});
source.addEventListener("log", function (e) {
  var follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.appendChild(document.createTextNode(e.data + "\n"));
  var empty = document.getElementById("log-empty");
  if (empty) empty.parentNode.removeChild(empty);
  if (follow) log.scrollTop = log.scrollHeight;
});
"#;

const CSS: &str = r#"
:root {
  --bg: #f6f7f9; --panel: #ffffff; --text: #1f2328; --dim: #656d76; --line: #d8dee4;
  --accent: #0b5cad;
  --ok: #1a7f37; --ok-bg: #dcf5e3; --bad: #c62828; --bad-bg: #ffebe9;
  --warn: #9a6700; --warn-bg: #fff5cc; --muted: #57606a; --muted-bg: #eaeef2;
  --info: #0b5cad; --info-bg: #ddf0ff;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1318; --panel: #161b22; --text: #e6edf3; --dim: #8d96a0; --line: #2d333b;
    --accent: #58a6ff;
    --ok: #3fb950; --ok-bg: #12301d; --bad: #f85149; --bad-bg: #3a1618;
    --warn: #d29922; --warn-bg: #33270e; --muted: #9198a1; --muted-bg: #262c34;
    --info: #58a6ff; --info-bg: #102a46;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  font-variant-numeric: tabular-nums;
}
main { max-width: 1200px; margin: 0 auto; padding: 24px 20px 64px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
h1 { font-size: 24px; line-height: 1.2; margin: 0; letter-spacing: -0.01em; }
h2 {
  font-size: 13px; font-weight: 600; text-transform: uppercase; letter-spacing: 0.06em;
  color: var(--dim); margin: 32px 0 10px;
}
code, pre, .mono { font-family: var(--mono); font-size: 12.5px; }
.page { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 14px; margin: 0 0 16px; }
.crumbs { color: var(--dim); margin-bottom: 8px; }
.revision { color: var(--dim); margin: 0; }
.dim, .note, .empty { color: var(--dim); }
.note { font-size: 12px; margin-top: 2px; }
.empty {
  margin: 0; padding: 14px 16px; background: var(--panel);
  border: 1px dashed var(--line); border-radius: 8px;
}
table {
  width: 100%; border-collapse: separate; border-spacing: 0; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; overflow: hidden;
}
th, td {
  text-align: left; padding: 8px 12px; border-bottom: 1px solid var(--line); vertical-align: top;
}
th {
  font-size: 12px; font-weight: 600; color: var(--dim); background: var(--bg);
  white-space: nowrap;
}
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover td { background: var(--bg); }
.num { text-align: right; }
th.wide { width: 30%; }
code.url { word-break: break-all; }
.chip { background: var(--muted-bg); padding: 1px 6px; border-radius: 4px; }
.badge {
  display: inline-block; padding: 0 8px; border-radius: 999px; font-size: 12px;
  font-weight: 600; line-height: 20px; white-space: nowrap;
}
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.muted { color: var(--muted); background: var(--muted-bg); }
.badge.info { color: var(--info); background: var(--info-bg); }
.banner {
  background: var(--bad-bg); border: 1px solid var(--bad); border-left-width: 5px;
  border-radius: 8px; padding: 14px 18px; margin: 0 0 20px;
}
.banner h2 {
  color: var(--bad); font-size: 16px; text-transform: none; letter-spacing: 0;
  margin: 0 0 4px;
}
.banner p { margin: 0 0 8px; }
.banner ul { margin: 0; padding-left: 20px; }
.banner li {
  font-family: var(--mono); font-size: 12.5px; white-space: pre-wrap; overflow-wrap: anywhere;
}
.strip {
  display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px;
  margin: 20px 0 8px;
}
.card {
  background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px;
}
a.card { display: block; color: inherit; }
a.card:hover { text-decoration: none; border-color: var(--accent); }
a.card[aria-current] { outline: 2px solid var(--accent); outline-offset: -1px; }
.card .value { font-size: 26px; font-weight: 650; line-height: 1.2; }
.card .label { color: var(--dim); font-size: 12px; }
.card.calm { border-top: 3px solid var(--ok); }
.card.warn { border-top: 3px solid var(--warn); }
.card.warn .value { color: var(--warn); }
.card.bad { border-top: 3px solid var(--bad); }
.card.bad .value { color: var(--bad); }
.filter { margin: 0 0 8px; }
.pager { display: flex; flex-wrap: wrap; gap: 4px 16px; color: var(--dim); margin: 8px 0; }
dl.facts {
  display: grid; grid-template-columns: max-content 1fr; gap: 6px 28px; margin: 0;
  background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 18px;
}
dl.facts dt { color: var(--dim); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.progress {
  display: flex; flex-direction: column; gap: 6px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px;
}
progress { width: 100%; height: 10px; accent-color: var(--info); }
#live { font-size: 12px; }
pre#log {
  margin: 8px 0 0; padding: 12px 14px; max-height: 520px; overflow: auto;
  white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.45;
  background: #0d1117; color: #e6edf3; border-radius: 8px;
}
pre#log:empty { display: none; }
svg {
  display: block; width: 100%; height: auto; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px;
}
svg text { fill: var(--dim); font-size: 11px; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .lane { stroke: var(--line); stroke-dasharray: 2 4; }
svg .mark.ok { fill: var(--ok); }
svg .mark.bad { fill: var(--bad); }
svg .mark.warn { fill: var(--warn); }
svg .mark.muted { fill: var(--muted); }
svg .mark.info { fill: var(--info); }
svg a:hover .mark { opacity: 0.65; }
svg .line { fill: none; stroke: var(--accent); stroke-width: 2; stroke-linejoin: round; }
svg .dot { fill: var(--accent); }
figure.chart { margin: 0 0 16px; }
figcaption { margin: 0 0 6px; }
.legend {
  display: flex; flex-wrap: wrap; gap: 4px 16px; color: var(--dim); font-size: 12px;
  margin: 8px 0 0;
}
.legend i {
  display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px;
}
.legend i.ok { background: var(--ok); }
.legend i.bad { background: var(--bad); }
.legend i.warn { background: var(--warn); }
.legend i.muted { background: var(--muted); }
.legend i.info { background: var(--info); }
h1 { overflow-wrap: anywhere; }
code.cron { white-space: nowrap; }
.notice {
  background: var(--warn-bg); border: 1px solid var(--warn); border-left-width: 5px;
  border-radius: 8px; padding: 10px 16px; margin: 0 0 16px;
}
.notice p { margin: 0; }
ul.reasons { list-style: none; margin: 0; padding: 0; }
ul.reasons li + li { margin-top: 4px; }
pre#log .expected { color: #8d96a0; font-style: italic; }
a:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
/* Phones: each table row becomes a card of labelled lines (labels from data-label), so
   nothing is cut off and the page never scrolls sideways. */
@media (max-width: 760px) {
  main { padding: 16px 12px 48px; }
  .strip { grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 8px; }
  table, thead, tbody, tr, th, td { display: block; }
  table { border: 0; background: none; border-radius: 0; }
  thead {
    position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
  }
  tbody tr {
    background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
    margin: 0 0 10px; padding: 6px 0;
  }
  tbody tr:hover td { background: none; }
  td {
    position: relative; border-bottom: 0; padding: 3px 12px 3px calc(9em + 24px);
    min-height: 1.5em; overflow-wrap: anywhere;
  }
  td.num { text-align: left; }
  td::before {
    content: attr(data-label); position: absolute; left: 12px; width: 9em;
    color: var(--dim); font-size: 12px; line-height: 21px;
  }
  dl.facts { grid-template-columns: minmax(0, 1fr); gap: 0; padding: 12px 14px; }
  dl.facts dd { margin-bottom: 8px; }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{
        BackupSpec, BackupStatus, HostSpec, LastRun, RunStatus, ScheduleSpec, ScheduleStatus,
    };
    use crate::web::view::{FleetQuery, Revisions};
    use protocol::Operation;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).expect("valid instant")
    }

    fn host_named(name: &str, online: Option<bool>) -> Host {
        let mut host = Host::new(name, HostSpec::default());
        host.metadata.namespace = Some("default".into());
        host.status = online.map(|online| HostStatus {
            online: Some(online),
            ..HostStatus::default()
        });
        host
    }

    fn backup(name: &str, phase: Phase, start: Option<DateTime<Utc>>) -> Backup {
        let mut backup = Backup::new(
            name,
            BackupSpec {
                host: "web-1".into(),
                schedule: Some("nightly".into()),
                operation: Some(Operation::Backup),
                repo: None,
            },
        );
        backup.metadata.namespace = Some("default".into());
        backup.status = Some(BackupStatus {
            run: RunStatus {
                phase: Some(phase),
                start_time: start.map(time::k8s),
                ..RunStatus::default()
            },
            ..BackupStatus::default()
        });
        backup
    }

    fn schedule(name: &str, entries: Vec<ScheduleHostStatus>) -> Schedule {
        let mut schedule = Schedule::new(
            name,
            ScheduleSpec {
                operation: Operation::Backup,
                cron: "0 2 * * *".into(),
                time_zone: None,
                hosts: vec![],
                host_selector: None,
                repo: None,
                paths: vec!["/etc".into()],
                excludes: vec![],
                tags: vec![],
                hooks: None,
                limits: None,
                retention: None,
                prune: false,
                read_data_subset: None,
                concurrency_policy: Default::default(),
                missed_run_policy: Default::default(),
                jitter: None,
                suspend: false,
                successful_runs_history_limit: None,
                failed_runs_history_limit: None,
                stale_after: None,
            },
        );
        schedule.metadata.namespace = Some("default".into());
        schedule.status = Some(ScheduleStatus {
            hosts: entries,
            ..ScheduleStatus::default()
        });
        schedule
    }

    fn fleet_page(revisions: &Revisions, hosts: &[Host], schedules: &[Schedule]) -> String {
        fleet_shown(hosts, schedules, 1, None, revisions)
    }

    fn fleet_shown(
        hosts: &[Host],
        schedules: &[Schedule],
        page: usize,
        show: Option<HostFilter>,
        revisions: &Revisions,
    ) -> String {
        fleet(&FleetView {
            now: now(),
            revisions,
            hosts,
            schedules,
            repos: &[],
            active: vec![],
            store_failing: None,
            page,
            show,
            release: RELEASE,
        })
        .into_string()
    }

    /// The controller's release in these tests.
    const RELEASE: &str = "1.4.0";

    /// The hosts of the table's rows, in order.
    fn listed(page: &str) -> Vec<&str> {
        page.split("<tr data-host=\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').expect("attribute ends")])
            .collect()
    }

    /// `host-000` … online, in sync, last backup succeeded.
    fn fine_hosts(n: usize) -> Vec<Host> {
        (0..n)
            .map(|i| host_named(&format!("host-{i:03}"), Some(true)))
            .collect()
    }

    fn last_backup(host: &mut Host, phase: Phase) {
        let status = host.status.get_or_insert_with(HostStatus::default);
        status.last_backup = Some(LastRun {
            time: time::k8s(now() - Duration::hours(5)),
            phase,
            backup: "run".into(),
        });
    }

    fn drift(host: &mut Host) {
        let status = host.status.get_or_insert_with(HostStatus::default);
        status.applied_schedule_version = Some(3);
        status.desired_schedule_version = Some(4);
    }

    fn stale_entry(host: &str) -> ScheduleHostStatus {
        ScheduleHostStatus {
            host: host.into(),
            stale: true,
            ..ScheduleHostStatus::default()
        }
    }

    fn run_page(backup: &Backup) -> String {
        run(&RunView {
            now: now(),
            backup,
            log: &[],
            events_url: "/runs/default/r1/events".into(),
        })
        .into_string()
    }

    /// The `<tr data-host="name" …>…</tr>` of one host.
    fn row<'a>(page: &'a str, name: &str) -> &'a str {
        let start = page
            .find(&format!("<tr data-host=\"{name}\""))
            .unwrap_or_else(|| panic!("no row for {name}"));
        let len = page[start..].find("</tr>").expect("row ends");
        &page[start..start + len]
    }

    fn escaped(text: &str) -> String {
        html! { (text) }.into_string()
    }

    #[test]
    fn fleet_lists_every_host_with_its_state() {
        let hosts = [
            host_named("web-1", Some(true)),
            host_named("db-1", Some(false)),
            host_named("new-1", None),
        ];
        let page = fleet_page(&Revisions::default(), &hosts, &[]);
        assert_eq!(page.matches("<tr data-host=").count(), 3);
        let web = row(&page, "web-1");
        assert!(web.contains(r#"data-state="online""#), "{web}");
        assert!(web.contains(">online</span>"), "{web}");
        for name in ["db-1", "new-1"] {
            let r = row(&page, name);
            assert!(r.contains(r#"data-state="offline""#), "{r}");
            assert!(r.contains(">offline</span>"), "{r}");
        }
        assert!(
            page.contains(">1 / 3</div>"),
            "hosts online in the summary strip"
        );
    }

    #[test]
    fn fleet_row_shows_drift_next_run_stale_and_failure() {
        let mut web = host_named("web-1", Some(true));
        let status = web.status.as_mut().expect("has a status");
        status.applied_schedule_version = Some(3);
        status.desired_schedule_version = Some(4);
        status.drift_reason = Some("AwaitingAck".into());
        status.last_backup = Some(LastRun {
            time: time::k8s(now() - Duration::hours(5)),
            phase: Phase::Failed,
            backup: "web-1-nightly-1".into(),
        });
        let entry = |next: i64, stale: bool| ScheduleHostStatus {
            host: "web-1".into(),
            next_schedule_time: Some(time::k8s(now() + Duration::hours(next))),
            stale,
            ..ScheduleHostStatus::default()
        };
        let schedules = [
            schedule("nightly", vec![entry(9, false)]),
            schedule("hourly", vec![entry(2, true)]),
        ];
        let page = fleet_page(&Revisions::default(), &[web], &schedules);
        let r = row(&page, "web-1");
        assert!(
            r.contains("v3 → v4") && r.contains(">drift<") && r.contains("AwaitingAck"),
            "{r}"
        );
        assert!(r.contains(">in 2 h</time>"), "earliest next run: {r}");
        assert!(r.contains(">stale<") && r.contains(">failed<"), "{r}");
        assert!(r.contains(r#"href="/runs/default/web-1-nightly-1""#), "{r}");
    }

    #[test]
    fn rejected_revision_lists_errors_verbatim() {
        let errors = vec![
            "fleet/schedules/nightly.yaml:8:3: Schedule/nightly: spec.cron: `30 1 * *` has 4 fields"
                .to_string(),
            "fleet/hosts/web.yaml:4:5: Host/web: spec.defaultRepo: no Repo \"main\" <here>"
                .to_string(),
        ];
        let revisions = Revisions {
            applied: Some(RevisionRecord {
                id: 6,
                commit: Some("0123456789abcdef".into()),
                uncommitted: false,
                at: now() - Duration::hours(3),
                summary: "1 repo, 2 hosts".into(),
                errors: vec![],
            }),
            rejected: Some(RevisionRecord {
                id: 7,
                commit: None,
                uncommitted: false,
                at: now() - Duration::minutes(3),
                summary: String::new(),
                errors: errors.clone(),
            }),
        };
        let page = fleet_page(&revisions, &[], &[]);
        assert!(page.contains(r#"class="banner""#) && page.contains("Revision 7 rejected"));
        for error in &errors {
            assert!(
                page.contains(&format!("<li>{}</li>", escaped(error))),
                "{error}"
            );
        }
        assert!(page.contains(">0123456</code>") && page.contains(">3 h ago</time>"));

        // Rejected edits not committed yet are named as such, not as the commit they sit on.
        let mut edited = revisions.clone();
        if let Some(rejected) = edited.rejected.as_mut() {
            rejected.commit = Some("0123456789abcdef".into());
            rejected.uncommitted = true;
        }
        let page = fleet_page(&edited, &[], &[]);
        let banner = &page[page.find("Revision 7 rejected").expect("a banner")..];
        assert!(
            banner.contains(
                r#"from uncommitted edits on top of commit <code title="0123456789abcdef">0123456</code>"#
            ),
            "{banner}"
        );

        let fine = Revisions {
            rejected: None,
            ..revisions
        };
        assert!(!fleet_page(&fine, &[], &[]).contains("rejected"));
    }

    #[test]
    fn names_and_messages_are_escaped() {
        let page = fleet_page(
            &Revisions::default(),
            &[host_named("a<b>&\"c", Some(true))],
            &[],
        );
        assert!(!page.contains("a<b>"));
        assert!(page.contains("a&lt;b&gt;&amp;&quot;c"));

        let mut b = backup("r1", Phase::Failed, Some(now()));
        let status = b.status.as_mut().expect("has a status");
        status.run.message = Some("<img src=x onerror=alert(1)>".into());
        status.run.reason = Some("</script><script>x()</script>".into());
        let page = run_page(&b);
        assert!(!page.contains("<img src=x"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("</script><script>x()"));
    }

    #[test]
    fn timeline_marks_each_run_of_the_last_30_days() {
        let runs = [
            backup("r-1h", Phase::Succeeded, Some(now() - Duration::hours(1))),
            backup("r-10d", Phase::Failed, Some(now() - Duration::days(10))),
            backup("r-29d", Phase::Missed, Some(now() - Duration::days(29))),
            backup("r-31d", Phase::Succeeded, Some(now() - Duration::days(31))),
            backup("r-45d", Phase::Succeeded, Some(now() - Duration::days(45))),
        ];
        let refs: Vec<&Backup> = runs.iter().collect();
        let svg = timeline(now(), &refs).into_string();
        assert_eq!(svg.matches(r#"class="mark "#).count(), 3, "{svg}");
        assert!(svg.contains(r#"href="/runs/default/r-10d""#));
        assert!(svg.contains(r#"class="mark bad""#));
        assert!(svg.contains("<title>nightly · Failed · "));
        assert!(!svg.contains("r-31d") && !svg.contains("r-45d"));

        let old: Vec<&Backup> = refs[3..].to_vec();
        let page = host(&HostView {
            now: now(),
            host: &host_named("web-1", Some(true)),
            release: RELEASE,
            schedules: vec![],
            runs: old,
            repo_sizes: vec![],
        })
        .into_string();
        assert_eq!(page.matches(r#"class="mark "#).count(), 0);
    }

    #[test]
    fn size_chart_draws_one_line_per_repo() {
        let series = RepoSeries {
            repo: "main".into(),
            points: vec![
                (now() - Duration::days(20), 10 << 20),
                (now() - Duration::days(1), 12 << 20),
            ],
        };
        let svg = size_chart(now(), &series).into_string();
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("<strong>main</strong> · 12.0 MiB"), "{svg}");
        for axis in [
            ">0 B</text>",
            ">6.0 MiB</text>",
            ">12.0 MiB</text>",
            ">now</text>",
        ] {
            assert!(svg.contains(axis), "{axis}");
        }
    }

    #[test]
    fn relative_time_reads_naturally() {
        let n = now();
        assert_eq!(relative(n, n), "just now");
        assert_eq!(relative(n, n - Duration::seconds(20)), "just now");
        assert_eq!(relative(n, n - Duration::minutes(3)), "3 min ago");
        assert_eq!(relative(n, n + Duration::hours(2)), "in 2 h");
        assert_eq!(relative(n, n - Duration::hours(47)), "47 h ago");
        assert_eq!(relative(n, n - Duration::days(2)), "2 d ago");
        assert_eq!(relative(n, n + Duration::seconds(30)), "in a moment");
        let el = time_el(n, n - Duration::minutes(3)).into_string();
        assert_eq!(
            el,
            r#"<time datetime="2025-06-15T15:03:40Z" title="2025-06-15 15:03:40 UTC">3 min ago</time>"#
        );
    }

    #[test]
    fn sizes_and_counts_are_formatted() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12_897_485), "12.3 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(format_seconds(83), "1m23s");
        assert_eq!(format_seconds(7500), "2h05m");
    }

    #[test]
    fn only_an_unfinished_run_follows_events() {
        for phase in [
            Phase::Succeeded,
            Phase::PartiallyFailed,
            Phase::Failed,
            Phase::Missed,
            Phase::Skipped,
            Phase::Cancelled,
        ] {
            let page = run_page(&backup("r1", phase, Some(now())));
            assert!(!page.contains("EventSource"), "{phase:?}");
            assert!(!page.contains("<script"), "{phase:?}");
            assert!(page.contains(&format!(">{}</span>", phase_name(Some(phase)))));
        }
        let mut running = backup("r1", Phase::Running, Some(now() - Duration::minutes(2)));
        let status = running.status.as_mut().expect("has a status");
        status.run.progress = Some(Progress {
            percent: "42%".into(),
            files_done: 1200,
            total_files: Some(3000),
            bytes_done: 1 << 30,
            total_bytes: None,
            seconds_remaining: Some(185),
        });
        let page = run_page(&running);
        assert!(page.contains("new EventSource(url)"));
        assert!(page.contains(r#"data-events="/runs/default/r1/events""#));
        assert!(page.contains(r#"<span id="phase" class="badge info">Running</span>"#));
        assert!(page.contains(r#"<progress id="progress" max="100" value="42.0">"#));
        assert!(page.contains("42% · 1,200 / 3,000 files · 1.0 GiB · about 3m05s left"));
        assert!(page.contains(r#""Cancelled""#) && page.contains(r#"PartiallyFailed: "warn""#));
    }

    #[test]
    fn run_page_shows_log_and_links_its_host() {
        let b = backup("r1", Phase::Succeeded, Some(now() - Duration::minutes(5)));
        let log = vec!["open repository".to_string(), "<done>".to_string()];
        let page = run(&RunView {
            now: now(),
            backup: &b,
            log: &log,
            events_url: "/runs/default/r1/events".into(),
        })
        .into_string();
        assert!(page.contains("<pre id=\"log\">open repository\n&lt;done&gt;\n</pre>"));
        assert!(page.contains(r#"href="/hosts/default/web-1""#));
        assert!(page.contains(r#"value="100.0""#));
    }

    #[test]
    fn every_page_is_standalone_and_read_only() {
        let hosts = [host_named("web-1", Some(true))];
        let b = backup("r1", Phase::Running, Some(now()));
        let pages = [
            fleet_page(&Revisions::default(), &hosts, &[]),
            host(&HostView {
                now: now(),
                host: &hosts[0],
                release: RELEASE,
                schedules: vec![],
                runs: vec![&b],
                repo_sizes: vec![],
            })
            .into_string(),
            run_page(&b),
            not_found("host default/ghost").into_string(),
        ];
        for page in &pages {
            assert!(
                page.starts_with("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">")
            );
            assert!(page.contains(r#"<meta name="viewport""#));
            assert!(page.contains("<title>"));
            assert_eq!(page.matches("<style>").count(), 1);
            for forbidden in ["<form", "<button", "<link", "src=\"http", "method="] {
                assert!(!page.contains(forbidden), "{forbidden}");
            }
        }
        assert!(pages[3].contains("There is no <strong>host default/ghost</strong>."));
        assert!(pages[3].contains(r#"<a href="/">"#));
    }

    #[test]
    fn hosts_needing_attention_come_first_most_severe_first() {
        let mut hosts = vec![
            host_named("a-fine", Some(true)),
            host_named("b-drift", Some(true)),
            host_named("c-offline", Some(false)),
            host_named("d-stale", Some(true)),
            host_named("e-failed", Some(true)),
            host_named("f-partial", Some(true)),
            host_named("g-offline-failed", Some(false)),
            host_named("h-fine", Some(true)),
        ];
        drift(&mut hosts[1]);
        last_backup(&mut hosts[4], Phase::Failed);
        last_backup(&mut hosts[5], Phase::PartiallyFailed);
        last_backup(&mut hosts[6], Phase::Failed);
        last_backup(&mut hosts[7], Phase::Succeeded);
        let mut other = host_named("a-other-ns", Some(false));
        other.metadata.namespace = Some("lab".into());
        hosts.push(other);
        // A stale entry in another namespace's schedule is not d-stale's.
        let mut lab = schedule("lab-nightly", vec![stale_entry("a-fine")]);
        lab.metadata.namespace = Some("lab".into());
        let schedules = [schedule("nightly", vec![stale_entry("d-stale")]), lab];
        let page = fleet_page(&Revisions::default(), &hosts, &schedules);
        assert_eq!(
            listed(&page),
            [
                "e-failed",
                "f-partial",
                "g-offline-failed",
                "d-stale",
                "c-offline",
                "a-other-ns",
                "b-drift",
                "a-fine",
                "h-fine",
            ],
        );
        assert!(row(&page, "d-stale").contains(">stale<"));
        assert!(!row(&page, "a-fine").contains(">stale<"));
    }

    #[test]
    fn page_two_of_250_hosts_shows_hosts_101_to_200_and_both_links() {
        let hosts = fine_hosts(250);
        let page = fleet_shown(&hosts, &[], 2, None, &Revisions::default());
        let rows = listed(&page);
        assert_eq!(rows.len(), HOSTS_PER_PAGE);
        assert_eq!((rows[0], rows[99]), ("host-100", "host-199"));
        assert!(page.contains("Hosts 101–200 of 250"), "{page}");
        assert!(page.contains(r##"<a href="/?page=1#hosts" rel="prev">"##));
        assert!(page.contains(r##"<a href="/?page=3#hosts" rel="next">"##));
        assert!(page.contains(">250 / 250</div>"), "cards count every host");

        let first = fleet_shown(&hosts, &[], 1, None, &Revisions::default());
        assert_eq!(listed(&first)[0], "host-000");
        assert!(first.contains("Hosts 1–100 of 250") && !first.contains(r#"rel="prev""#));
        let last = fleet_shown(&hosts, &[], 3, None, &Revisions::default());
        assert_eq!(listed(&last).len(), 50);
        assert!(last.contains("Hosts 201–250 of 250") && !last.contains(r#"rel="next""#));
    }

    #[test]
    fn a_filter_lists_only_its_hosts_and_its_page_links_keep_it() {
        let mut hosts = fine_hosts(250);
        for host in hosts.iter_mut().step_by(2) {
            host.status.as_mut().expect("has a status").online = Some(false);
        }
        last_backup(&mut hosts[1], Phase::Failed);
        let page = fleet_shown(
            &hosts,
            &[],
            1,
            Some(HostFilter::Offline),
            &Revisions::default(),
        );
        let rows = listed(&page);
        assert_eq!(rows.len(), HOSTS_PER_PAGE);
        assert!(
            rows.iter()
                .all(|name| row(&page, name).contains(r#"data-state="offline""#))
        );
        assert!(page.contains("Hosts 1–100 of 125"), "{page}");
        assert!(page.contains(r##"href="/?page=2&amp;show=offline#hosts" rel="next""##));
        assert!(page.contains("<strong>that are offline</strong>"));
        assert!(page.contains(r##"<a href="/#hosts">Show all 250 hosts</a>"##));
        assert!(page.contains(">125 / 250</div>"), "cards count every host");

        let second = fleet_shown(
            &hosts,
            &[],
            2,
            Some(HostFilter::Offline),
            &Revisions::default(),
        );
        assert_eq!(listed(&second).len(), 25);
        assert!(second.contains(r##"href="/?page=1&amp;show=offline#hosts" rel="prev""##));

        let failed = fleet_shown(
            &hosts,
            &[],
            1,
            Some(HostFilter::Failed),
            &Revisions::default(),
        );
        assert_eq!(listed(&failed), ["host-001"]);

        let none = fleet_shown(
            &hosts,
            &[],
            1,
            Some(HostFilter::Stale),
            &Revisions::default(),
        );
        assert!(listed(&none).is_empty());
        assert!(none.contains("No hosts with a stale schedule."), "{none}");
    }

    #[test]
    fn summary_cards_link_to_their_filters() {
        let hosts = [host_named("web-1", Some(false))];
        let page = fleet_shown(
            &hosts,
            &[],
            1,
            Some(HostFilter::Stale),
            &Revisions::default(),
        );
        // The stale card counted schedules while its link listed hosts; it counts hosts now.
        for (filter, label, current) in [
            ("offline", "hosts online", false),
            ("drifting", "in sync", false),
            ("stale", "stale hosts", true),
            ("failed", "failed last runs", false),
            ("missed", "missed last runs", false),
        ] {
            let href = format!(r##"href="/?page=1&amp;show={filter}#hosts""##);
            let start = page
                .find(&href)
                .unwrap_or_else(|| panic!("no card for {filter}"));
            let card = &page[page[..start].rfind("<a ").expect("a link")..];
            let card = &card[..card.find("</a>").expect("link ends")];
            assert!(card.starts_with("<a class=\"card "), "{card}");
            assert!(card.contains(&format!(">{label}</div>")), "{card}");
            assert_eq!(card.contains(r#"aria-current="true""#), current, "{card}");
        }
    }

    #[test]
    fn a_malformed_or_out_of_range_query_shows_a_page() {
        let query = |q: &str| {
            let uri: axum::http::Uri = format!("/{q}").parse().expect("a URI");
            axum::extract::Query::<FleetQuery>::try_from_uri(&uri)
                .unwrap_or_else(|e| panic!("{q}: {e}"))
                .0
        };
        for (q, page, show) in [
            ("", 1, None),
            ("?page=abc", 1, None),
            ("?page=abc&show=failed", 1, Some(HostFilter::Failed)),
            ("?page=0", 1, None),
            ("?page=-2", 1, None),
            ("?page=99999999999999999999999", 1, None),
            ("?page=%20999%20", 999, None),
            ("?page=2&show=stale", 2, Some(HostFilter::Stale)),
            ("?show=bogus", 1, None),
            ("?show=", 1, None),
        ] {
            let parsed = query(q);
            assert_eq!((parsed.page(), parsed.show()), (page, show), "{q}");
        }

        let hosts = fine_hosts(250);
        let page = fleet_shown(&hosts, &[], 999, None, &Revisions::default());
        assert!(page.contains("Hosts 201–250 of 250"), "the last page");
        assert_eq!(listed(&page).len(), 50);
    }

    fn entry(host: &str, result: Option<Phase>) -> ScheduleHostStatus {
        ScheduleHostStatus {
            host: host.into(),
            last_result: result,
            next_schedule_time: Some(time::k8s(now() + Duration::seconds(30))),
            ..ScheduleHostStatus::default()
        }
    }

    /// The figure of the card linking to `?show={filter}`.
    fn card_value<'a>(page: &'a str, filter: &str) -> &'a str {
        let href = format!(r##"href="/?page=1&amp;show={filter}#hosts""##);
        let card = &page[page.find(&href).expect("a card")..];
        let value = &card[card.find(r#"<div class="value">"#).expect("a value") + 19..];
        &value[..value.find("</div>").expect("value ends")]
    }

    #[test]
    fn an_offline_host_shows_when_it_was_seen_and_that_its_schedule_runs_regardless() {
        let mut host = host_named("db-1", Some(false));
        host.status.as_mut().expect("has a status").last_seen =
            Some(time::k8s(now() - Duration::hours(3)));
        let schedules = [schedule("nightly", vec![entry("db-1", None)])];
        let page = fleet_page(
            &Revisions::default(),
            std::slice::from_ref(&host),
            &schedules,
        );
        let r = row(&page, "db-1");
        assert!(r.contains("seen <time"), "{r}");
        assert!(r.contains(">3 h ago</time>"), "{r}");
        assert!(
            r.contains(r#"<span class="dim">on the host: </span><time"#),
            "{r}"
        );
        assert!(r.contains("runs on the host regardless"), "{r}");

        let page = crate::web::page::host(&HostView {
            now: now(),
            host: &host,
            release: RELEASE,
            schedules: schedules.iter().collect(),
            runs: vec![],
            repo_sizes: vec![],
        })
        .into_string();
        let notice = &page[page.find(r#"id="offline""#).expect("an offline notice")..];
        assert!(notice.contains("The agent is offline"), "{notice}");
        assert!(notice.contains(">3 h ago</time>"), "{notice}");
        assert!(notice.contains("run on the host regardless"), "{notice}");

        let online = host_named("web-1", Some(true));
        let page = fleet_page(&Revisions::default(), &[online], &[]);
        assert!(!row(&page, "web-1").contains("regardless"));
    }

    #[test]
    fn missed_runs_are_their_own_attention_and_every_card_counts_the_rows_it_links() {
        let mut hosts = vec![
            host_named("a-missed", Some(true)),
            host_named("b-forget-failed", Some(true)),
            host_named("c-fine", Some(true)),
            host_named("d-stale", Some(true)),
        ];
        last_backup(&mut hosts[0], Phase::Succeeded);
        last_backup(&mut hosts[1], Phase::Succeeded);
        let nightly = schedule(
            "nightly",
            vec![
                entry("a-missed", Some(Phase::Missed)),
                entry("b-forget-failed", Some(Phase::Succeeded)),
                entry("c-fine", Some(Phase::Succeeded)),
                ScheduleHostStatus {
                    stale: true,
                    ..entry("d-stale", Some(Phase::Skipped))
                },
            ],
        );
        let forget = schedule(
            "weekly-forget",
            vec![entry("b-forget-failed", Some(Phase::Failed))],
        );
        let schedules = [nightly, forget];
        let page = fleet_page(&Revisions::default(), &hosts, &schedules);
        assert_eq!(card_value(&page, "missed"), "2");
        assert_eq!(
            card_value(&page, "failed"),
            "1",
            "a failed forget is a failed run"
        );
        assert_eq!(card_value(&page, "stale"), "1");
        let missed = row(&page, "a-missed");
        assert!(
            missed.contains(">missed</span> <span class=\"note\">nightly<"),
            "{missed}"
        );
        assert!(row(&page, "b-forget-failed").contains(">failed</span>"));
        assert!(!row(&page, "d-stale").contains("weekly-forget"));
        assert!(!row(&page, "c-fine").contains("<ul class=\"reasons\">"));

        for (filter, rows) in [
            (HostFilter::Missed, vec!["d-stale", "a-missed"]),
            (HostFilter::Failed, vec!["b-forget-failed"]),
            (HostFilter::Stale, vec!["d-stale"]),
        ] {
            let page = fleet_shown(&hosts, &schedules, 1, Some(filter), &Revisions::default());
            assert_eq!(listed(&page), rows, "{filter:?}");
            assert_eq!(
                card_value(&page, filter.as_str()),
                rows.len().to_string(),
                "{filter:?}"
            );
        }
        assert_eq!(HostFilter::parse("missed"), Some(HostFilter::Missed));
    }

    #[test]
    fn an_agent_older_than_the_controller_is_flagged() {
        let agents = [
            ("old", Some("1.3.9"), Some(protocol::PROTOCOL_VERSION), true),
            (
                "same",
                Some("1.4.0"),
                Some(protocol::PROTOCOL_VERSION),
                false,
            ),
            (
                "newer",
                Some("1.10.0"),
                Some(protocol::PROTOCOL_VERSION),
                false,
            ),
            (
                "dev",
                Some("1.4.0-dev+abc"),
                Some(protocol::PROTOCOL_VERSION),
                false,
            ),
            (
                "old-protocol",
                Some("1.4.0"),
                Some(protocol::PROTOCOL_VERSION - 1),
                true,
            ),
            ("unknown", None, None, false),
        ];
        let hosts: Vec<Host> = agents
            .iter()
            .map(|(name, version, protocol, _)| {
                let mut host = host_named(name, Some(true));
                let status = host.status.as_mut().expect("has a status");
                status.agent_version = version.map(str::to_string);
                status.protocol_version = *protocol;
                host
            })
            .collect();
        let page = fleet_page(&Revisions::default(), &hosts, &[]);
        for (name, version, _, flagged) in agents {
            let r = row(&page, name);
            if let Some(version) = version {
                assert!(
                    r.contains(&format!(r#"<span class="mono">{version}</span>"#)),
                    "{r}"
                );
            }
            assert_eq!(r.contains(">older</span>"), flagged, "{name}: {r}");
        }
        assert!(older("0.9.1", "0.10.0") && !older("0.10.0", "0.9.1"));
        assert!(!older("weird", "1.0.0"));
    }

    #[test]
    fn a_schedule_that_never_ran_counts_as_pending_first_run() {
        let mut forget = schedule(
            "weekly-forget",
            vec![ScheduleHostStatus {
                pending_first_run: true,
                ..entry("web-1", None)
            }],
        );
        let status = forget.status.as_mut().expect("has a status");
        (
            status.host_count,
            status.healthy_hosts,
            status.pending_hosts,
            status.stale_hosts,
        ) = (Some(1), Some(0), Some(1), Some(0));
        let page = fleet_page(
            &Revisions::default(),
            &[host_named("web-1", Some(true))],
            std::slice::from_ref(&forget),
        );
        let start = page
            .find(r#"<tr data-schedule="weekly-forget">"#)
            .expect("a row");
        let r = &page[start..start + page[start..].find("</tr>").expect("row ends")];
        assert!(
            r.contains(r#"<td class="num" data-label="Pending first run">1</td>"#),
            "{r}"
        );
        let page = crate::web::page::host(&HostView {
            now: now(),
            host: &host_named("web-1", Some(true)),
            release: RELEASE,
            schedules: vec![&forget],
            runs: vec![],
            repo_sizes: vec![],
        })
        .into_string();
        assert!(page.contains(">pending first run</span>"), "{page}");
    }

    #[test]
    fn a_finished_run_shows_its_log_or_says_it_wrote_none_and_labels_restics_first_use() {
        let done = backup("r2", Phase::Succeeded, Some(now() - Duration::minutes(5)));
        let page = run_page(&done);
        assert!(!page.contains("No output yet."), "{page}");
        assert!(page.contains("This run wrote no log lines."));

        // The log kept only in the status's tail is the log.
        let mut tailed = done.clone();
        tailed.status.as_mut().expect("has a status").run.log_tail =
            vec!["Files: 3 new".to_string()];
        let page = run_page(&tailed);
        assert!(
            page.contains("<pre id=\"log\">Files: 3 new\n</pre>"),
            "{page}"
        );
        assert!(!page.contains("log-empty"));

        let running = backup("r3", Phase::Running, Some(now()));
        assert!(run_page(&running).contains("No output yet."));

        let log = vec![
            "Fatal: unable to open config file: stat /srv/nas/config: no such file or directory"
                .to_string(),
            "Is there a repository at the following location?".to_string(),
            "created restic repository 5e2a at /srv/nas".to_string(),
        ];
        let page = run(&RunView {
            now: now(),
            backup: &done,
            log: &log,
            events_url: "/runs/default/r2/events".into(),
        })
        .into_string();
        assert!(page.contains(r#"id="first-use""#), "{page}");
        assert!(page.contains("the agent initialises it"));
        assert_eq!(
            page.matches(r#"<span class="expected""#).count(),
            2,
            "{page}"
        );
        assert!(page.contains("created restic repository 5e2a at /srv/nas\n</pre>"));
        assert!(!run_page(&running).contains("first-use"));
    }
}
