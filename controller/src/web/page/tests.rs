use super::*;
use crate::resources::{
    BackupSpec, BackupStatus, HostSpec, LastRun, RunStatus, ScheduleSpec, ScheduleStatus,
};
use crate::web::view::{FleetQuery, Revisions};
use protocol::Operation;
use std::sync::Arc;

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
            read_data_rotate: None,
            drill: None,
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
        hosts: &shared(hosts),
        schedules: &shared(schedules),
        repos: &[],
        active: vec![],
        store_failing: None,
        page,
        show,
        release: RELEASE,
    })
    .into_string()
}

/// The objects as the read model holds them.
fn shared<K: Clone>(objects: &[K]) -> Vec<Arc<K>> {
    objects.iter().cloned().map(Arc::new).collect()
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
        hosts: &[],
        schedules: &[],
        repos: &[],
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
        "fleet/hosts/web.yaml:4:5: Host/web: spec.defaultRepo: no Repo \"main\" <here>".to_string(),
    ];
    let revisions = Revisions {
        applied: Some(RevisionRecord {
            id: 6,
            commit: Some("0123456789abcdef".into()),
            uncommitted: false,
            at: now() - Duration::hours(3),
            summary: "1 repo, 2 hosts".into(),
            errors: vec![],
            changes: None,
        }),
        rejected: Some(RevisionRecord {
            id: 7,
            commit: None,
            uncommitted: false,
            at: now() - Duration::minutes(3),
            summary: String::new(),
            errors: errors.clone(),
            changes: None,
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
    let page = fleet_page(&fine, &[], &[]);
    assert!(!page.contains(r#"class="banner""#) && !page.contains(" rejected</h2>"));
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
        snapshots: vec![],
        declared_schedules: &[],
        repos: &[],
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
    let svg = size_chart(now(), &series, html! { (series.repo) }).into_string();
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
        hosts: &[Arc::new(host_named("web-1", Some(true)))],
        schedules: &[Arc::new(schedule("nightly", vec![]))],
        repos: &[],
    })
    .into_string();
    assert!(page.contains("<pre id=\"log\">open repository\n&lt;done&gt;\n</pre>"));
    assert!(page.contains(r#"href="/hosts/default/web-1""#));
    assert!(page.contains(r#"<a href="/schedules/default/nightly">nightly</a>"#));
    assert!(page.contains(r#"value="100.0""#));

    // A run of a host and schedule since removed names them without links that would 404.
    let orphan = run_page(&b);
    assert!(!orphan.contains(r#"href="/hosts/"#), "{orphan}");
    assert!(!orphan.contains(r#"href="/schedules/"#), "{orphan}");
    assert!(orphan.contains("<dd>web-1</dd>") && orphan.contains("<dd>nightly</dd>"));
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
            snapshots: vec![],
            declared_schedules: &[],
            repos: &[],
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
        snapshots: vec![],
        declared_schedules: &[],
        repos: &[],
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
        snapshots: vec![],
        declared_schedules: &[],
        repos: &[],
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
    tailed.status.as_mut().expect("has a status").run.log_tail = vec!["Files: 3 new".to_string()];
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
        "/srv/nas".to_string(),
        "created restic repository 5e2a at /srv/nas".to_string(),
    ];
    let page = run(&RunView {
        now: now(),
        backup: &done,
        log: &log,
        events_url: "/runs/default/r2/events".into(),
        hosts: &[],
        schedules: &[],
        repos: &[],
    })
    .into_string();
    assert!(page.contains(r#"id="first-use""#), "{page}");
    assert!(page.contains("the agent initialises it"));
    assert_eq!(
        page.matches(r#"<span class="expected""#).count(),
        3,
        "{page}"
    );
    assert!(page.contains("created restic repository 5e2a at /srv/nas\n</pre>"));
    assert!(!run_page(&running).contains("first-use"));
}

fn repo_named(name: &str) -> Repo {
    let mut repo = Repo::new(
        name,
        crate::resources::RepoSpec {
            url: "/srv/nas".into(),
            ..Default::default()
        },
    );
    repo.metadata.namespace = Some("default".into());
    repo
}

#[test]
fn the_fleet_page_links_schedules_and_repos_and_follows_the_fleet_live() {
    let hosts = [Arc::new(host_named("web-1", Some(true)))];
    let schedules = [Arc::new(schedule("nightly", vec![entry("web-1", None)]))];
    let repos = [Arc::new(repo_named("nas"))];
    let page = fleet(&FleetView {
        now: now(),
        revisions: &Revisions::default(),
        hosts: &hosts,
        schedules: &schedules,
        repos: &repos,
        active: vec![],
        store_failing: None,
        page: 1,
        show: None,
        release: RELEASE,
    })
    .into_string();
    assert!(page.contains(r#"<a href="/schedules/default/nightly">nightly</a>"#));
    assert!(page.contains(r#"<a href="/repos/default/nas">nas</a>"#));
    assert!(page.contains(r#"<main data-live="/events">"#), "{page}");
    assert!(page.contains(r#"<span class="dim" id="live" hidden>Live</span>"#));
    assert!(page.contains("new EventSource(url)"), "the live script");
    for id in ["summary", "hosts-table", "running", "schedules", "repos"] {
        assert!(page.contains(&format!(r#"id="{id}""#)), "section {id}");
    }
    // The live script's fragments are the page's own sections, byte for byte.
    let tally = Tally::of(&hosts, &schedules);
    let summary = summary_section(&Summary {
        now: now(),
        revisions: &Revisions::default(),
        store_failing: None,
        tally,
        show: None,
    })
    .into_string();
    assert!(page.contains(&summary));
    assert!(page.contains(&schedules_section(now(), &schedules).into_string()));
    assert!(page.contains(&repos_section(now(), &repos).into_string()));
    assert!(page.contains(&running_section(now(), &[], &schedules).into_string()));
    let alone = host_row_fragment(now(), RELEASE, &hosts[0], &schedules).into_string();
    assert_eq!(alone, row(&page, "web-1").to_string() + "</tr>");
    // Pages without live updates carry no script.
    assert!(!not_found("x").into_string().contains("<script>"));
}

#[test]
fn a_hosts_row_alone_counts_the_same_attention_as_in_the_table() {
    let mut hosts = vec![
        host_named("web-1", Some(true)),
        host_named("web-2", Some(false)),
    ];
    last_backup(&mut hosts[0], Phase::Failed);
    let schedules = [
        schedule(
            "nightly",
            vec![stale_entry("web-1"), entry("web-2", Some(Phase::Missed))],
        ),
        schedule("weekly", vec![entry("web-2", Some(Phase::PartiallyFailed))]),
    ];
    let page = fleet_page(&Revisions::default(), &hosts, &schedules);
    for host in &hosts {
        let alone = host_row_fragment(now(), RELEASE, host, &shared(&schedules)).into_string();
        assert_eq!(alone, row(&page, name_of(host)).to_string() + "</tr>");
    }
    let tally = Tally::of(&shared(&hosts), &shared(&schedules));
    assert_eq!(
        [
            tally.count(HostFilter::Failed),
            tally.count(HostFilter::Stale),
            tally.count(HostFilter::Missed),
            tally.count(HostFilter::Offline),
        ],
        [2, 1, 1, 1]
    );
}

#[test]
fn a_schedule_page_shows_each_hosts_runs_its_recent_runs_and_its_yaml_as_applied() {
    let hosts = [
        host_named("web-1", Some(true)),
        host_named("web-2", Some(false)),
    ];
    let mut nightly = schedule(
        "nightly",
        vec![
            entry("web-1", Some(Phase::Succeeded)),
            stale_entry("web-2"),
            entry("gone-1", None),
        ],
    );
    nightly.spec.repo = Some("nas".into());
    let repos = [repo_named("nas")];
    let run = backup("nightly-web-1-1", Phase::Succeeded, Some(now()));
    let page = schedule_page(&ScheduleView {
        now: now(),
        schedule: &nightly,
        hosts: &shared(&hosts),
        repos: &shared(&repos),
        runs: vec![&run],
        page: 1,
    });
    let rows = listed(&page);
    assert_eq!(
        rows,
        ["web-2", "gone-1", "web-1"],
        "stale first, then by name"
    );
    assert!(row(&page, "web-2").contains(">stale</span>"));
    assert!(row(&page, "web-2").contains("runs on the host regardless"));
    assert!(row(&page, "web-1").contains(r#"<a href="/hosts/default/web-1">web-1</a>"#));
    assert!(
        !row(&page, "gone-1").contains("href="),
        "no page for an undeclared host"
    );
    assert!(page.contains(r#"<a href="/runs/default/nightly-web-1-1">"#));
    assert!(page.contains(r#"<a href="/repos/default/nas">nas</a>"#));
    let yaml = &page[page.find(r#"<pre class="yaml">"#).expect("the YAML")..];
    for line in [
        "apiVersion: holdfast.dev/v1alpha1\n",
        "kind: Schedule\n",
        "  name: nightly\n",
        "  cron: 0 2 * * *\n",
        "  repo: nas\n",
    ] {
        assert!(yaml.contains(line), "{line:?} in {yaml}");
    }
    assert!(!yaml.contains("status"), "{yaml}");

    let mut big = schedule(
        "big",
        (0..250)
            .map(|i| entry(&format!("h-{i:03}"), None))
            .collect(),
    );
    big.spec.suspend = true;
    let second = schedule_page(&ScheduleView {
        now: now(),
        schedule: &big,
        hosts: &shared(&hosts),
        repos: &[],
        runs: vec![],
        page: 2,
    });
    assert_eq!(listed(&second).len(), 100);
    assert_eq!(listed(&second)[0], "h-100");
    assert!(second.contains(r##"href="/schedules/default/big?page=3#hosts" rel="next""##));
    assert!(second.contains("No runs recorded."));
}

fn schedule_page(view: &ScheduleView) -> String {
    crate::web::page::schedule(view).into_string()
}

#[test]
fn a_repo_page_charts_size_and_snapshots_and_names_the_hosts_using_it() {
    let mut nas = repo_named("nas");
    nas.status = Some(crate::resources::RepoStatus {
        lock: Some(crate::resources::RepoLock {
            locked: true,
            stale: false,
            message: Some("locked by web-1 (PID 42)".into()),
        }),
        last_check: Some(crate::resources::RepoCheck {
            time: time::k8s(now() - Duration::hours(2)),
            passed: false,
            backup: Some("check-1".into()),
            message: Some("pack abc is damaged".into()),
        }),
        ..Default::default()
    });
    let point = |hours: i64, size: u64, snapshots: u64| crate::store::SizePoint {
        at: now() - Duration::hours(hours),
        total_size: size,
        uncompressed_size: None,
        snapshots,
    };
    let page = crate::web::page::repo(&RepoView {
        now: now(),
        repo: &nas,
        history: vec![
            point(48, 1 << 20, 3),
            point(24, 2 << 20, 4),
            point(1, 3 << 20, 5),
        ],
        users: vec![
            RepoUser {
                host: "old-1".into(),
                declared: false,
                schedules: vec![],
                snapshots: Some(2),
                latest: Some(now() - Duration::days(40)),
            },
            RepoUser {
                host: "web-1".into(),
                declared: true,
                schedules: vec!["nightly".into()],
                snapshots: Some(5),
                latest: Some(now() - Duration::hours(1)),
            },
        ],
    })
    .into_string();
    assert_eq!(page.matches("<svg").count(), 2, "size and snapshots");
    assert!(page.contains("Size</strong> · 3.0 MiB"), "{page}");
    assert!(page.contains("Snapshots</strong> · 5"), "{page}");
    let lock = &page[page.find(r#"<dd id="lock">"#).expect("the lock")..];
    assert!(lock.contains(">locked</span>") && lock.contains("locked by web-1 (PID 42)"));
    let check = &page[page.find(r#"<dd id="last-check">"#).expect("the check")..];
    assert!(check.contains(">failed</span>") && check.contains("pack abc is damaged"));
    assert!(check.contains(r#"<a href="/runs/default/check-1">"#));
    assert!(row(&page, "web-1").contains(r#"<a href="/hosts/default/web-1">"#));
    assert!(row(&page, "web-1").contains(r#"<a href="/schedules/default/nightly">"#));
    assert!(
        !row(&page, "old-1").contains("href="),
        "a host no longer declared"
    );
    assert!(row(&page, "old-1").contains("no longer declared"));

    let bare = crate::web::page::repo(&RepoView {
        now: now(),
        repo: &repo_named("s3"),
        history: vec![],
        users: vec![],
    })
    .into_string();
    assert!(bare.contains("not known: no agent has reported a lock"));
    assert!(bare.contains("never checked") && bare.contains("No host uses this repo."));
    assert!(bare.contains("Nothing reported in the last 30 days."));
}

#[test]
fn the_revisions_page_shows_each_revision_its_errors_and_what_it_changed() {
    use crate::diff::{Names, RevisionChanges};
    use crate::store::RevisionEntry;
    let names = |names: &[&str]| Names {
        names: names.iter().map(|n| n.to_string()).collect(),
        total: names.len(),
    };
    let record = |id: i64, errors: Vec<String>, changes: Option<RevisionChanges>| RevisionRecord {
        id,
        commit: Some("0123456789abcdef".into()),
        uncommitted: !errors.is_empty(),
        at: now() - Duration::hours(10 - id),
        summary: "1 repo, 2 hosts".into(),
        errors,
        changes,
    };
    let entries = [
        RevisionEntry {
            record: record(
                9,
                vec!["schedules/x.yaml:7:9: Schedule/x: spec.cron: not a cron".into()],
                Some(RevisionChanges {
                    changed: names(&["Schedule/nightly"]),
                    ..Default::default()
                }),
            ),
            applied: false,
        },
        RevisionEntry {
            record: record(
                8,
                vec![],
                Some(RevisionChanges {
                    added: names(&["Host/web-1", "Host/gone-1"]),
                    removed: names(&["Repo/old"]),
                    new_versions: Names {
                        names: vec!["web-1".into()],
                        total: 140,
                    },
                    ..Default::default()
                }),
            ),
            applied: true,
        },
        RevisionEntry {
            record: record(7, vec![], None),
            applied: true,
        },
    ];
    let hosts = [host_named("web-1", Some(true))];
    let schedules = [schedule("nightly", vec![])];
    let page = crate::web::page::revisions(&RevisionsView {
        now: now(),
        entries: &entries,
        in_force: Some(8),
        before: None,
        more: true,
        hosts: &shared(&hosts),
        schedules: &shared(&schedules),
        repos: &[],
    })
    .into_string();
    let section = |id: i64| {
        let start = page
            .find(&format!(r#"id="revision-{id}""#))
            .unwrap_or_else(|| panic!("revision {id}"));
        let end = page[start..].find("</section>").expect("section ends");
        &page[start..start + end]
    };
    let rejected = section(9);
    assert!(rejected.contains(r#"data-state="rejected""#) && rejected.contains(">rejected</span>"));
    assert!(rejected.contains("uncommitted edits on top of commit"));
    assert!(rejected.contains("spec.cron: not a cron"));
    assert!(rejected.contains("Would change (1)"), "{rejected}");
    assert!(
        rejected
            .contains(r#"<a href="/schedules/default/nightly"><code>Schedule/nightly</code></a>"#)
    );
    let applied = section(8);
    assert!(applied.contains(">in force</span>"));
    assert!(applied.contains("Added (2)"));
    assert!(applied.contains(r#"<a href="/hosts/default/web-1"><code>Host/web-1</code></a>"#));
    assert!(
        applied.contains("<code>Host/gone-1</code>") && !applied.contains("/hosts/default/gone-1")
    );
    assert!(applied.contains("Removed (1)") && applied.contains("<code>Repo/old</code>"));
    assert!(applied.contains("New schedule version (140)") && applied.contains(" and 139 more"));
    let older = section(7);
    assert!(older.contains(">applied</span>") && older.contains("was not recorded"));
    assert!(page.contains(r#"<a href="/revisions?before=7" rel="next">"#));
    assert!(!page.contains(r#"<a href="/revisions">Newest</a>"#));
}

#[test]
fn a_host_page_lists_its_snapshots_per_repo_and_what_the_next_forget_removes() {
    let next = now() + Duration::hours(5);
    let mut forget = schedule(
        "thin-out",
        vec![ScheduleHostStatus {
            host: "web-1".into(),
            next_schedule_time: Some(time::k8s(next)),
            ..ScheduleHostStatus::default()
        }],
    );
    forget.spec.operation = Operation::Forget;
    let known = |id: &str| crate::snapshots::Known {
        snapshot: protocol::Snapshot {
            id: format!("{id}0000000000"),
            time: "2025-06-15T01:00:00Z".into(),
            hostname: "web-1".into(),
            paths: vec!["/etc".into()],
            tags: vec!["nightly".into()],
        },
        origin: crate::snapshots::Origin {
            backup: Some(format!("nightly-{id}")),
            schedule: Some("nightly".into()),
            size: Some(2048),
        },
    };
    let going = crate::snapshots::Removal {
        at: next,
        schedule: "thin-out".into(),
    };
    let snapshots = vec![
        crate::snapshots::object("default", "web-1", "nas", &known("aaaaaaaa"), Some(&going)),
        crate::snapshots::object("default", "web-1", "nas", &known("bbbbbbbb"), None),
        crate::snapshots::object("default", "web-1", "s3", &known("cccccccc"), Some(&going)),
    ];
    let page = host(&HostView {
        now: now(),
        host: &host_named("web-1", Some(true)),
        release: RELEASE,
        schedules: vec![&forget],
        runs: vec![],
        repo_sizes: vec![],
        snapshots,
        declared_schedules: &[],
        repos: &[],
    })
    .into_string();
    assert!(page.contains("Repo nas — 2 snapshots"), "{page}");
    assert!(page.contains("Repo s3 — 1 snapshot"));
    assert!(page.contains(r#"data-snapshot="aaaaaaaa0000000000""#));
    assert!(page.contains(r#"href="/runs/default/nightly-bbbbbbbb""#));
    assert!(
        page.contains("2.0 KiB"),
        "the size of the backup that made it"
    );
    let projection = page
        .split(r#"id="forget-projection""#)
        .nth(1)
        .expect("the projection line");
    assert!(
        projection.contains("thin-out") && projection.contains("removes 2 snapshots"),
        "{projection}"
    );
    assert_eq!(page.matches(">kept<").count(), 1, "one snapshot stays");
}
