use super::*;

/// One repo at `/repos/{namespace}/{name}`: size and snapshot count over the last 30 days,
/// its last check and where its cycle of rotating checks is, its lock as last seen, and the
/// hosts that use it.
pub fn repo(view: &RepoView) -> Markup {
    let now = view.now;
    let repo = view.repo;
    let (namespace, name) = (namespace_of(repo), name_of(repo));
    let status = repo.status.as_ref();
    let sizes: Vec<(DateTime<Utc>, u64)> =
        view.history.iter().map(|p| (p.at, p.total_size)).collect();
    let snapshots: Vec<(DateTime<Utc>, u64)> =
        view.history.iter().map(|p| (p.at, p.snapshots)).collect();
    let lock = status.and_then(|s| s.lock.as_ref());
    layout(
        name,
        None,
        html! {
            nav.crumbs { a href="/" { "Holdfast" } " / repos / " (qualified(namespace, name)) }
            header.page {
                h1 { (name) }
                @if lock.is_some_and(|l| l.locked) { (badge("locked", "warn")) }
                @if let Some(check) = status.and_then(|s| s.last_check.as_ref()) {
                    @if !check.passed { (badge("check failed", "bad")) }
                }
            }
            h2 { "Repo" }
            dl.facts {
                dt { "Namespace" } dd { (namespace) }
                dt { "URL" } dd { code.url { (repo.spec.url) } }
                dt { "Initialized" }
                dd {
                    @match status.and_then(|s| s.initialized) {
                        Some(true) => { "yes" }
                        Some(false) => { "not yet: the first backup initialises it" }
                        None => { (dash()) }
                    }
                }
                dt { "Snapshots" }
                dd {
                    @match status.and_then(|s| s.snapshot_count) {
                        Some(n) => { (count(n)) }
                        None => { (dash()) }
                    }
                }
                dt { "Size" }
                dd {
                    @match status.and_then(|s| s.size.clone().or(s.size_bytes.map(bytes))) {
                        Some(size) => { (size) }
                        None => { (dash()) }
                    }
                }
                dt { "Dedup ratio" }
                dd {
                    @match status.and_then(|s| s.dedup_ratio) {
                        Some(r) => { (format!("{r:.2}×")) }
                        None => { (dash()) }
                    }
                }
                dt { "Last check" }
                dd #last-check {
                    @match status.and_then(|s| s.last_check.as_ref()) {
                        Some(check) => {
                            @if check.passed { (badge("passed", "ok")) } @else { (badge("failed", "bad")) }
                            " " (when(now, Some(&check.time)))
                            @if let Some(run) = &check.backup {
                                " · " a href=(run_url(namespace, run)) { (run) }
                            }
                            @if let Some(message) = &check.message { div.note { (message) } }
                        }
                        None => { span.dim { "never checked" } }
                    }
                }
                @if let Some(scrub) = status.and_then(|s| s.scrub.as_ref()) {
                    dt { "Full read" }
                    dd #scrub {
                        @match &scrub.fully_read_since {
                            Some(since) => { "every pack read since " (when(now, Some(since))) }
                            None => {
                                span.dim { (scrub.parts_read) " of " (scrub.parts) " parts read so far" }
                            }
                        }
                        div.note {
                            "checks read one of " (scrub.parts) " parts each; the next reads part "
                            (scrub.next_part)
                            @if let Some(last) = &scrub.last_read { ", the last read " (when(now, Some(last))) }
                        }
                    }
                }
                dt { "Lock" }
                dd #lock {
                    @match lock {
                        Some(l) if l.locked => {
                            (badge("locked", "warn"))
                            @if l.stale { " stale, cleared with restic unlock" }
                            @if let Some(message) = &l.message { div.note { (message) } }
                        }
                        Some(l) => {
                            "not locked"
                            @if l.stale { " (a stale lock was cleared with restic unlock)" }
                        }
                        None => { span.dim { "not known: no agent has reported a lock" } }
                    }
                }
                dt { "Last updated" }
                dd { (when(now, status.and_then(|s| s.last_updated.as_ref()))) }
            }
            h2 { "Last 30 days" }
            (line_chart(
                now,
                html! { strong { "Size" } @if let Some((_, v)) = sizes.last() { " · " (bytes(*v)) } },
                &format!("Size of repo {name} over the last 30 days"),
                &sizes,
                bytes,
            ))
            (line_chart(
                now,
                html! { strong { "Snapshots" } @if let Some((_, v)) = snapshots.last() { " · " (count(*v)) } },
                &format!("Snapshots in repo {name} over the last 30 days"),
                &snapshots,
                count,
            ))
            h2 { "Hosts using it" }
            (users_table(now, namespace, &view.users))
        },
    )
}

fn users_table(now: DateTime<Utc>, namespace: &str, users: &[RepoUser]) -> Markup {
    if users.is_empty() {
        return html! { p.empty { "No host uses this repo." } };
    }
    html! {
        table {
            thead { tr {
                th { "Host" } th { "Schedules" } th.num { "Snapshots" } th { "Newest snapshot" }
            } }
            tbody {
                @for user in users {
                    tr data-host=(user.host) {
                        td data-label="Host" {
                            @if user.declared {
                                a href=(host_url(namespace, &user.host)) { (user.host) }
                            } @else {
                                (user.host) " " span.dim { "(no longer declared)" }
                            }
                        }
                        td data-label="Schedules" {
                            @if user.schedules.is_empty() {
                                span.dim { "none in force; snapshots from before" }
                            }
                            @for (i, schedule) in user.schedules.iter().enumerate() {
                                @if i > 0 { ", " }
                                a href=(schedule_url(namespace, schedule)) { (schedule) }
                            }
                        }
                        td.num data-label="Snapshots" {
                            @match user.snapshots { Some(n) => { (count(n)) } None => { (dash()) } }
                        }
                        td data-label="Newest snapshot" {
                            @match user.latest { Some(t) => { (time_el(now, t)) } None => { (dash()) } }
                        }
                    }
                }
            }
        }
    }
}
