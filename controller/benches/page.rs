//! Render time of the fleet page for 10,000 hosts, each with a last backup and five schedules
//! (every schedule's status lists all 10,000 hosts), and 20 runs in progress: the first page of
//! all hosts and the first page of the failed ones. The page's goal is under 100 ms.
//!
//! Run: `cargo bench -p holdfast --bench page`. Prints the fastest and the median of the timed
//! renders, after one warm-up, and the page's size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use holdfast::resources::{
    Backup, BackupSpec, BackupStatus, Host, HostSpec, HostStatus, LastRun, Phase, Progress,
    RunStatus, Schedule, ScheduleHostStatus, ScheduleStatus,
};
use holdfast::time::k8s;
use holdfast::web::page;
use holdfast::web::view::{FleetView, HostFilter, RevisionRecord, Revisions};

const HOSTS: usize = 10_000;
const SCHEDULES: [&str; 5] = [
    "nightly",
    "hourly",
    "weekly-forget",
    "weekly-prune",
    "monthly-check",
];
const RUNS: usize = 25;

fn main() {
    let now = Utc::now();
    let hosts: Vec<Host> = (0..HOSTS)
        .map(|i| {
            let mut h = Host::new(&format!("host-{i:04}"), HostSpec::default());
            h.metadata.namespace = Some("default".into());
            h.status = Some(HostStatus {
                online: Some(i % 10 != 0),
                desired_schedule_version: Some(4),
                applied_schedule_version: Some(if i % 25 == 0 { 3 } else { 4 }),
                drift_reason: (i % 25 == 0).then(|| "the agent is offline".to_string()),
                last_seen: Some(k8s(now)),
                last_backup: Some(LastRun {
                    time: k8s(now - chrono::Duration::hours(3)),
                    phase: match i {
                        _ if i % 50 == 0 => Phase::Failed,
                        _ if i % 70 == 0 => Phase::PartiallyFailed,
                        _ => Phase::Succeeded,
                    },
                    backup: format!("nightly-host-{i:04}-29400000"),
                }),
                ..HostStatus::default()
            });
            h
        })
        .collect();
    let schedules: Vec<Arc<Schedule>> = SCHEDULES
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let mut s: Schedule = serde_json::from_value(serde_json::json!({
                "apiVersion": "holdfast.dev/v1alpha1", "kind": "Schedule",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"operation": "backup", "cron": "30 1 * * *", "paths": ["/etc"]}
            }))
            .expect("a valid schedule");
            s.status = Some(ScheduleStatus {
                hosts: hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| ScheduleHostStatus {
                        host: h.metadata.name.clone().unwrap_or_default(),
                        next_schedule_time: Some(k8s(
                            now + chrono::Duration::minutes((5 * i + 60 * n) as i64 % 1440)
                        )),
                        last_result: Some(Phase::Succeeded),
                        // One host in 40 is stale on the nightly backup.
                        stale: n == 0 && i % 40 == 0,
                        ..ScheduleHostStatus::default()
                    })
                    .collect(),
                ..ScheduleStatus::default()
            });
            Arc::new(s)
        })
        .collect();
    // As the read model holds them.
    let hosts: Vec<Arc<Host>> = hosts.into_iter().map(Arc::new).collect();
    let active: Vec<Backup> = (0..20)
        .map(|i| {
            let mut b = Backup::new(
                &format!("nightly-host-{i:04}-29400100"),
                BackupSpec {
                    host: format!("host-{i:04}"),
                    schedule: Some("nightly".into()),
                    operation: None,
                    repo: None,
                },
            );
            b.metadata.namespace = Some("default".into());
            b.status = Some(BackupStatus {
                run: RunStatus {
                    phase: Some(Phase::Running),
                    progress: Some(Progress {
                        percent: "42%".into(),
                        ..Progress::default()
                    }),
                    ..RunStatus::default()
                },
                ..BackupStatus::default()
            });
            b
        })
        .collect();
    let revisions = Revisions {
        applied: Some(RevisionRecord {
            id: 12,
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            uncommitted: false,
            at: now,
            summary: "2 repos, 10000 hosts, 5 schedules, 0 backups, 0 restores".into(),
            errors: vec![],
            changes: None,
        }),
        rejected: None,
    };
    for (what, show) in [
        ("page 1", None),
        ("page 1 of ?show=failed", Some(HostFilter::Failed)),
    ] {
        let render = || {
            page::fleet(&FleetView {
                now,
                revisions: &revisions,
                hosts: &hosts,
                schedules: &schedules,
                repos: &[],
                active: active.iter().collect(),
                store_failing: None,
                page: 1,
                show,
                release: env!("CARGO_PKG_VERSION"),
            })
            .into_string()
        };
        let size = render().len();
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(render());
                start.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "fleet page, {HOSTS} hosts x {} schedules, {what}: fastest {:.1} ms, median {:.1} ms, {} KiB",
            SCHEDULES.len(),
            times[0].as_secs_f64() * 1000.0,
            times[RUNS / 2].as_secs_f64() * 1000.0,
            size / 1024
        );
    }
}
