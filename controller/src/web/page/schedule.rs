use super::*;

/// Rows of a schedule's hosts table; a schedule may run on every host of a large fleet.
const SCHEDULE_HOSTS_PER_PAGE: usize = 100;

/// One schedule at `/schedules/{namespace}/{name}`: what it is, each host's last and next run
/// and whether it is stale, its recent runs, and its YAML as applied.
pub fn schedule(view: &ScheduleView) -> Markup {
    let now = view.now;
    let schedule = view.schedule;
    let (namespace, name) = (namespace_of(schedule), name_of(schedule));
    let status = schedule.status.as_ref();
    let online: HashMap<&str, bool> = view
        .hosts
        .iter()
        .filter(|h| namespace_of(h.as_ref()) == namespace)
        .map(|h| (name_of(h.as_ref()), is_online(h)))
        .collect();
    // Those needing attention first (stale, then missed or failed), then by name.
    let mut entries: Vec<&ScheduleHostStatus> = status.iter().flat_map(|s| &s.hosts).collect();
    entries.sort_by_key(|e| (!e.stale, !entry_failed_or_missed(e), e.host.as_str()));
    let pages = entries.len().div_ceil(SCHEDULE_HOSTS_PER_PAGE).max(1);
    let page = view.page.clamp(1, pages);
    let shown = &entries
        [(page - 1) * SCHEDULE_HOSTS_PER_PAGE..entries.len().min(page * SCHEDULE_HOSTS_PER_PAGE)];
    let url = schedule_url(namespace, name);
    let declared = Declared::new(view.hosts, &[], view.repos);
    let pager = pager(
        (page, pages),
        (SCHEDULE_HOSTS_PER_PAGE, shown.len(), entries.len()),
        &|n| format!("{url}?page={n}#hosts"),
    );
    layout(
        name,
        None,
        html! {
            nav.crumbs { a href="/" { "Holdfast" } " / schedules / " (qualified(namespace, name)) }
            header.page {
                h1 { (name) }
                (badge(schedule.spec.operation.as_str(), "info"))
                @if schedule.spec.suspend { (badge("suspended", "muted")) }
                @if stale_hosts(schedule) > 0 {
                    (badge(&format!("{} stale", stale_hosts(schedule)), "warn"))
                }
            }
            h2 { "Schedule" }
            dl.facts {
                dt { "Namespace" } dd { (namespace) }
                dt { "Operation" } dd { (schedule.spec.operation.as_str()) }
                dt { "Cron" }
                dd {
                    code.cron { (schedule.spec.cron) } " "
                    span.dim { (schedule.spec.time_zone.as_deref().unwrap_or("UTC")) }
                }
                dt { "Repo" }
                dd {
                    @match &schedule.spec.repo {
                        Some(repo) => { (declared.repo(namespace, repo)) }
                        None => { span.dim { "each host's default repo" } }
                    }
                }
                dt { "Hosts" } dd { (host_count(schedule)) }
                dt { "Healthy" } dd { (opt_count(status.and_then(|s| s.healthy_hosts))) }
                dt { "Pending first run" } dd { (opt_count(status.and_then(|s| s.pending_hosts))) }
                dt { "Stale" } dd { (stale_hosts(schedule)) }
                dt { "Last run" } dd { (when(now, status.and_then(|s| s.last_schedule_time.as_ref()))) }
                dt { "Last success" }
                dd { (when(now, status.and_then(|s| s.last_successful_time.as_ref()))) }
            }
            h2 #hosts { "Hosts" }
            @if entries.is_empty() {
                p.empty { "This schedule runs on no host." }
            } @else {
                @if pages > 1 { (pager) }
                table {
                    thead { tr {
                        th { "Host" } th { "Last run" } th { "Last result" } th { "Last success" }
                        th { "Next" } th { "Last missed" } th { "Stale" }
                    } }
                    tbody {
                        @for entry in shown {
                            @let up = online.get(entry.host.as_str()).copied().unwrap_or(false);
                            tr data-host=(entry.host) {
                                td data-label="Host" {
                                    @if online.contains_key(entry.host.as_str()) {
                                        a href=(host_url(namespace, &entry.host)) { (entry.host) }
                                    } @else {
                                        (entry.host)
                                    }
                                    " " (state_badge(up))
                                }
                                td data-label="Last run" { (when(now, entry.last_schedule_time.as_ref())) }
                                td data-label="Last result" { (entry_result(entry)) }
                                td data-label="Last success" {
                                    (when(now, entry.last_successful_time.as_ref()))
                                }
                                td data-label="Next" {
                                    (next_run(now, up, entry.next_schedule_time.as_ref()))
                                }
                                td data-label="Last missed" { (when(now, entry.last_missed_time.as_ref())) }
                                td data-label="Stale" {
                                    @if entry.stale { (badge("stale", "warn")) } @else { span.dim { "no" } }
                                }
                            }
                        }
                    }
                }
                @if pages > 1 { (pager) }
            }
            h2 { "Recent runs" }
            (recent_runs(now, &view.runs, &declared))
            h2 { "As applied" }
            pre.yaml { (applied_yaml(schedule)) }
        },
    )
}

fn entry_failed_or_missed(entry: &ScheduleHostStatus) -> bool {
    matches!(
        entry.last_result,
        Some(Phase::Failed | Phase::PartiallyFailed | Phase::Missed | Phase::Skipped)
    )
}

fn opt_count(n: Option<u32>) -> Markup {
    match n {
        Some(n) => html! { (n) },
        None => dash(),
    }
}

/// A schedule's newest runs on any host.
fn recent_runs(now: DateTime<Utc>, runs: &[&Backup], declared: &Declared) -> Markup {
    if runs.is_empty() {
        return html! { p.empty { "No runs recorded." } };
    }
    html! {
        table {
            thead { tr {
                th { "Run" } th { "Host" } th { "Phase" } th { "Started" } th.num { "Duration" }
                th.num { "Data added" } th { "Reason" }
            } }
            tbody {
                @for backup in runs {
                    @let status = backup.status.as_ref();
                    @let namespace = namespace_of(*backup);
                    tr {
                        td data-label="Run" {
                            a href=(run_url(namespace, name_of(*backup))) { (name_of(*backup)) }
                        }
                        td data-label="Host" {
                            (declared.host(namespace, &backup.spec.host))
                        }
                        td data-label="Phase" { (phase_badge(status.and_then(|s| s.run.phase))) }
                        td data-label="Started" {
                            (when(now, status.and_then(|s| s.run.start_time.as_ref())))
                        }
                        td.num data-label="Duration" { (opt_text(run_duration(backup).as_deref())) }
                        td.num data-label="Data added" { (opt_text(data_added(backup).as_deref())) }
                        td data-label="Reason" {
                            span title=[status.and_then(|s| s.run.message.as_deref())] {
                                (opt_text(status.and_then(|s| s.run.reason.as_deref())))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The schedule as the revision in force declares it: what a person wrote, without status.
fn applied_yaml(schedule: &Schedule) -> String {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), name_of(schedule).into());
    metadata.insert("namespace".into(), namespace_of(schedule).into());
    let meta = &schedule.metadata;
    if let Some(labels) = meta.labels.as_ref().filter(|l| !l.is_empty()) {
        metadata.insert("labels".into(), serde_json::json!(labels));
    }
    if let Some(annotations) = meta.annotations.as_ref().filter(|a| !a.is_empty()) {
        metadata.insert("annotations".into(), serde_json::json!(annotations));
    }
    let document = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "Schedule",
        "metadata": metadata,
        "spec": schedule.spec,
    });
    serde_yaml::to_string(&document).unwrap_or_default()
}
