use super::*;

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
    let declared = Declared::new(&[], view.declared_schedules, view.repos);
    let events = format!("{}/events", host_url(namespace, name));
    layout(
        name,
        Some(&events),
        html! {
            nav.crumbs { a href="/" { "Holdfast" } " / hosts / " (qualified(namespace, name)) }
            header.page {
                h1 { (name) }
                (state_badge(is_online(host)))
                @if host.spec.paused { (badge("paused", "muted")) }
                @if drifting(status) { (badge("drift", "warn")) }
                span #live .dim hidden { "Live" }
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
            @if let Some(drill) = status.and_then(|s| s.last_drill.as_ref()) {
                h2 { "Restore drill" }
                (drill_facts(now, namespace, drill, &view.runs))
            }
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
                (size_chart(now, series, declared.repo(namespace, &series.repo)))
            }
            h2 { "Recent runs" }
            (runs_table(now, &view.runs, &declared))
            h2 #snapshots { "Snapshots" }
            (snapshots_section(now, name, &view.schedules, &view.snapshots))
        },
    )
}

pub(super) fn host_facts(now: DateTime<Utc>, release: &str, host: &Host) -> Markup {
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

/// The last drill, its restore rate, and what that rate means for restoring the host's data:
/// the newest backup's bytes processed over the drill's bytes per second.
fn drill_facts(now: DateTime<Utc>, namespace: &str, drill: &LastDrill, runs: &[&Backup]) -> Markup {
    let data = runs.iter().find_map(|b| {
        let summary = b.status.as_ref()?.summary.as_ref()?;
        Some(summary.total_bytes_processed)
    });
    let estimate = data
        .and_then(|d| crate::status::restore_estimate(d, drill.bytes_per_second).map(|s| (d, s)));
    html! {
        dl.facts #drill {
            dt { "Last drill" }
            dd {
                a href=(run_url(namespace, &drill.backup)) { (drill.backup) } " "
                (phase_badge(Some(drill.phase))) " " (when(now, Some(&drill.time)))
            }
            dt { "Verified" }
            dd {
                (drill.files_verified) " files, " (bytes(drill.bytes_verified))
                @if let Some(n) = drill.differences { ", " strong { (n) " differed" } }
            }
            dt { "Restore rate" } dd { (bytes(drill.bytes_per_second)) "/s" }
            dt { "RTO estimate" }
            dd {
                @match estimate {
                    Some((data, seconds)) => {
                        (crate::status::human_duration(seconds)) " to restore " (bytes(data))
                        span.dim { " (the latest backup's size at this rate)" }
                    }
                    None => { span.dim { "no backup size or rate yet" } }
                }
            }
            dt { "Last successful drill" }
            dd { (when(now, drill.last_success_time.as_ref())) }
        }
    }
}

pub(super) fn conditions_table(now: DateTime<Utc>, status: &HostStatus) -> Markup {
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

pub(super) fn host_schedules_table(
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
                            a href=(schedule_url(namespace_of(schedule), name_of(schedule))) {
                                (name_of(schedule))
                            }
                            @if schedule.spec.suspend { " " (badge("suspended", "muted")) }
                        }
                        td data-label="Operation" { (schedule.spec.operation.as_str()) }
                        td data-label="Cron" { code.cron { (schedule.spec.cron) } }
                        td data-label="Last run" { (when(now, entry.last_schedule_time.as_ref())) }
                        td data-label="Last result" { (entry_result(entry)) }
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

pub(super) fn runs_table(now: DateTime<Utc>, runs: &[&Backup], declared: &Declared) -> Markup {
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
                        td data-label="Schedule" {
                            @match run_schedule(backup) {
                                Some(schedule) => {
                                    (declared.schedule(namespace_of(*backup), schedule))
                                }
                                None => { (dash()) }
                            }
                        }
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

pub(super) const LEGEND: [(&str, &str); 5] = [
    ("succeeded", "ok"),
    ("partially failed", "warn"),
    ("failed", "bad"),
    ("missed, skipped, cancelled", "muted"),
    ("pending, running", "info"),
];

pub(super) fn legend() -> Markup {
    html! {
        p.legend {
            @for (text, tone) in LEGEND {
                span { i.(tone) {} (text) }
            }
        }
    }
}

/// The host's snapshots per repo, newest first, each with when retention removes it; above
/// them what the next forget run removes.
pub(super) fn snapshots_section(
    now: DateTime<Utc>,
    host: &str,
    schedules: &[&Schedule],
    snapshots: &[Snapshot],
) -> Markup {
    if snapshots.is_empty() {
        return html! { p.empty { "No snapshots reported yet." } };
    }
    let next_forget = schedules
        .iter()
        .filter(|s| s.spec.operation == protocol::Operation::Forget && !s.spec.suspend)
        .filter_map(|s| {
            Some((
                host_entry(s, host)?.next_schedule_time.as_ref()?,
                name_of(*s),
            ))
        })
        .min_by_key(|(t, _)| t.0);
    let mut by_repo: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    for s in snapshots {
        by_repo.entry(s.spec.repo.as_str()).or_default().push(s);
    }
    html! {
        @if let Some((at, schedule)) = next_forget {
            @let removes = snapshots.iter().filter(|s| forget_at(s).is_some_and(|t| t.0 == at.0)).count();
            p #forget-projection {
                "Next forget (" (schedule) ") on "
                time datetime=(time::chrono(at).to_rfc3339_opts(SecondsFormat::Secs, true)) {
                    (time::chrono(at).format("%a %d %b %H:%M UTC"))
                }
                " removes " (crate::revision::plural(removes, "snapshot")) "."
            }
        }
        @for (repo, list) in &by_repo {
            h3 { "Repo " (repo) " — " (crate::revision::plural(list.len(), "snapshot")) }
            table.snapshots {
                thead { tr {
                    th { "Short ID" } th { "Time" } th { "Tags" } th { "Paths" }
                    th.num { "Size" } th { "Backup" } th { "Goes" }
                } }
                tbody {
                    @for s in list {
                        tr data-snapshot=(s.spec.id) {
                            td data-label="Short ID" { code { (s.spec.short_id) } }
                            td data-label="Time" { (s.spec.time) }
                            td data-label="Tags" {
                                @for t in &s.spec.tags { code.chip { (t) } " " }
                            }
                            td data-label="Paths" { (s.spec.paths.join(", ")) }
                            td.num data-label="Size" {
                                (opt_text(s.spec.size.map(crate::status::human_bytes).as_deref()))
                            }
                            td data-label="Backup" {
                                @match &s.spec.backup {
                                    Some(b) => { a href=(run_url(namespace_of(*s), b)) { (b) } }
                                    None => { (dash()) }
                                }
                            }
                            td data-label="Goes" {
                                @match forget_at(s) {
                                    Some(t) => { (when(now, Some(t))) }
                                    None => { span.dim { "kept" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn forget_at(snapshot: &Snapshot) -> Option<&Time> {
    snapshot.status.as_ref()?.forget_at.as_ref()
}
