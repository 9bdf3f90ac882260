use super::*;
use std::sync::Arc;

/// The fleet overview at `/`. It follows the fleet live over `/events` (see `live.js`): the
/// script fetches the sections and rows that changed, never the whole page for one host.
pub fn fleet(view: &FleetView) -> Markup {
    let now = view.now;
    let index = schedule_index(view.schedules, view.hosts.len());
    let tally = Tally::counted(view.hosts, &index);
    layout(
        "Fleet",
        Some("/events"),
        html! {
            header.page {
                h1 { "Holdfast" }
                (revision_line(now, view.revisions.applied.as_ref()))
                span #live .dim hidden { "Live" }
            }
            (summary_section(&Summary {
                now,
                revisions: view.revisions,
                store_failing: view.store_failing.as_deref(),
                tally,
                show: view.show,
            }))
            h2 #hosts { "Hosts" }
            div #hosts-table { (hosts_section(view, &index)) }
            h2 { "Running now" }
            (running_section(now, &view.active, view.schedules))
            h2 { "Schedules" }
            (schedules_section(now, view.schedules))
            h2 { "Repos" }
            (repos_section(now, view.repos))
        },
    )
}

/// What the top of the fleet page shows: banners and the summary cards.
pub struct Summary<'a> {
    pub now: DateTime<Utc>,
    pub revisions: &'a crate::store::Revisions,
    pub store_failing: Option<&'a str>,
    pub tally: Tally,
    /// The filter of the hosts shown, whose card is marked.
    pub show: Option<HostFilter>,
}

/// The banners and cards, `#summary`: on the page, and alone for the live script.
pub fn summary_section(summary: &Summary) -> Markup {
    html! {
        div #summary {
            @if let Some(failing) = summary.store_failing {
                section.banner role="alert" {
                    h2 { "Reports are not being stored" }
                    p { (failing) }
                }
            }
            @if let Some(rejected) = &summary.revisions.rejected {
                (rejected_banner(summary.now, rejected))
            }
            (summary_strip(&summary.tally, summary.show))
        }
    }
}

/// One row of the hosts table, alone, for the live script: the host's schedule entries are
/// found by searching each schedule's hosts, not by indexing the fleet.
pub fn host_row_fragment(
    now: DateTime<Utc>,
    release: &str,
    host: &Host,
    schedules: &[Arc<Schedule>],
) -> Markup {
    let (namespace, name) = (namespace_of(host), name_of(host));
    let found = host_schedules(schedules, namespace, name);
    let attention = HostFilter::ALL
        .into_iter()
        .find(|f| needs(host, &found, *f));
    host_row(
        now,
        release,
        &HostRow {
            host,
            namespace,
            name,
            schedules: &found,
            attention,
        },
    )
}

/// "Running now", `#running`; `schedules` are those in force, which its runs link to.
pub fn running_section(
    now: DateTime<Utc>,
    active: &[&Backup],
    schedules: &[Arc<Schedule>],
) -> Markup {
    let declared = Declared::new(&[], schedules, &[]);
    html! { div #running { (active_table(now, active, &declared)) } }
}

/// The schedules table, `#schedules`.
pub fn schedules_section(now: DateTime<Utc>, schedules: &[Arc<Schedule>]) -> Markup {
    html! { div #schedules { (schedules_table(now, schedules)) } }
}

/// The repos table, `#repos`.
pub fn repos_section(now: DateTime<Utc>, repos: &[Arc<Repo>]) -> Markup {
    html! { div #repos { (repos_table(now, repos)) } }
}

pub(super) fn revision_line(now: DateTime<Utc>, applied: Option<&RevisionRecord>) -> Markup {
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
            " · " a href="/revisions" { "all revisions" }
        }
    }
}

pub(super) fn rejected_banner(now: DateTime<Utc>, r: &RevisionRecord) -> Markup {
    html! {
        section.banner role="alert" {
            h2 { "Revision " (r.id) " rejected" }
            p {
                "Read " (time_el(now, r.at))
                @if let Some(commit) = &r.commit {
                    " from " (source_of(r, commit))
                }
                ". Hosts keep the last applied revision until these errors are fixed ("
                a href=(format!("/revisions#revision-{}", r.id)) { "what it changes" } ")."
            }
            ul.errors { @for error in &r.errors { li { (error) } } }
        }
    }
}

/// Each card counts exactly the hosts its link lists: the same `needs` decides both.
pub(super) fn summary_strip(tally: &Tally, shown: Option<HostFilter>) -> Markup {
    let total = tally.total;
    let online = total - tally.count(HostFilter::Offline);
    let in_sync = total - tally.count(HostFilter::Drifting);
    let (stale, missed, failed) = (
        tally.count(HostFilter::Stale),
        tally.count(HostFilter::Missed),
        tally.count(HostFilter::Failed),
    );
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
pub(super) fn tone(attention: bool, alarm: &'static str) -> &'static str {
    if attention { alarm } else { "calm" }
}

/// A summary card linking to the hosts behind its figure, marked while they are the hosts shown.
pub(super) fn card(
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

/// A row of the hosts table.
pub(super) struct HostRow<'a> {
    pub(super) host: &'a Host,
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    pub(super) schedules: &'a HostSchedules<'a>,
    /// The most severe reason it needs attention.
    pub(super) attention: Option<HostFilter>,
}

/// The hosts the table lists (all, or those `show` picks): those needing attention first, most
/// severe first, then by namespace and name.
pub(super) fn listed_hosts<'a>(
    view: &FleetView<'a>,
    index: &'a ScheduleIndex<'a>,
) -> Vec<HostRow<'a>> {
    let mut rows: Vec<HostRow> = view
        .hosts
        .iter()
        .filter_map(|host| {
            let (namespace, name) = (namespace_of(host.as_ref()), name_of(host.as_ref()));
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
pub(super) fn fleet_url(page: usize, show: Option<HostFilter>) -> String {
    match show {
        Some(filter) => format!("/?page={page}&show={}#hosts", filter.as_str()),
        None => format!("/?page={page}#hosts"),
    }
}

/// The words after "hosts" for a filter.
pub(super) fn filter_words(filter: HostFilter) -> &'static str {
    match filter {
        HostFilter::Failed => "whose last backup failed",
        HostFilter::Stale => "with a stale schedule",
        HostFilter::Missed => "whose newest scheduled run was missed or skipped",
        HostFilter::Offline => "that are offline",
        HostFilter::Drifting => "whose agent runs another schedule version",
    }
}

/// The hosts table, one page of it, with the filter in force and links to the other pages.
pub(super) fn hosts_section(view: &FleetView, index: &ScheduleIndex) -> Markup {
    if view.hosts.is_empty() {
        return html! { p.empty { "No hosts declared." } };
    }
    let rows = listed_hosts(view, index);
    let pages = rows.len().div_ceil(HOSTS_PER_PAGE).max(1);
    let page = view.page.clamp(1, pages);
    let shown = &rows[(page - 1) * HOSTS_PER_PAGE..rows.len().min(page * HOSTS_PER_PAGE)];
    let pager = pager(
        (page, pages),
        (HOSTS_PER_PAGE, shown.len(), rows.len()),
        &|n| fleet_url(n, view.show),
    );
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

pub(super) fn host_row(now: DateTime<Utc>, release: &str, row: &HostRow) -> Markup {
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

/// Every reason the host needs attention, most severe first, each in words.
pub(super) fn attention(host: &Host, schedules: &HostSchedules) -> Markup {
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

pub(super) fn active_table(now: DateTime<Utc>, active: &[&Backup], declared: &Declared) -> Markup {
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
                        td data-label="Schedule" {
                            @match run_schedule(backup) {
                                Some(schedule) => { (declared.schedule(namespace, schedule)) }
                                None => { (run_label(backup)) }
                            }
                        }
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

pub(super) fn schedules_table(now: DateTime<Utc>, schedules: &[Arc<Schedule>]) -> Markup {
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
                    tr data-schedule=(name_of(schedule.as_ref())) {
                        td data-label="Schedule" {
                            a href=(schedule_url(namespace_of(schedule.as_ref()), name_of(schedule.as_ref()))) {
                                (qualified(namespace_of(schedule.as_ref()), name_of(schedule.as_ref())))
                            }
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

pub(super) fn repos_table(now: DateTime<Utc>, repos: &[Arc<Repo>]) -> Markup {
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
                            a href=(repo_url(namespace_of(repo.as_ref()), name_of(repo.as_ref()))) {
                                (qualified(namespace_of(repo.as_ref()), name_of(repo.as_ref())))
                            }
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
