//! The pure status computation the status writer runs: every Host, Schedule and Repo status of
//! the generated fleet (10,000 hosts × 5 schedules) with the full default history of 15 run
//! records per host and schedule (750,000 records), every agent online and in sync.
//!
//! Status reads the records' summaries (folded once, then one record per report), not the
//! records. Run: `cargo bench -p holdfast --bench status`. Prints the time to fold the
//! summaries, then the fastest and the median of the timed runs of `status::hosts`,
//! `status::schedules` and `status::repos`, after one warm-up. Then what a pass that recomputes
//! only what an event touched computes: the index of which hosts run each Schedule (once per
//! revision), one host's status (an ack) and one Schedule's (a run), each the median of 1,000.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use holdfast::compile::{HostKey, compile};
use holdfast::facts::AgentRecord;
use holdfast::resources::{Kind, Phase};
use holdfast::runs::RunRecord;
use holdfast::source::files::load_sources;
use holdfast::status::{self, Inputs};
use holdfast::summaries::RunSummaries;
use holdfast::versions::assign;

#[path = "common/generated.rs"]
mod generated;

/// Records per host and schedule: `successfulRunsHistoryLimit` 10 + `failedRunsHistoryLimit` 5.
const HISTORY: i64 = 15;
const RUNS: usize = 5;

fn main() {
    let loaded = load_sources(generated::fleet());
    assert!(loaded.is_valid(), "generated fleet is invalid");
    let revision = loaded.revision;
    let fleet = compile(&revision).expect("generated fleet compiles");
    let versions = assign(&BTreeMap::new(), &fleet);
    let now = Utc::now();
    let agents: BTreeMap<HostKey, AgentRecord> = versions
        .iter()
        .map(|(k, v)| {
            let record = AgentRecord {
                applied_version: Some(v.version),
                applied_digest: Some(v.digest.clone()),
                last_seen: Some(now),
                ..AgentRecord::default()
            };
            (k.clone(), record)
        })
        .collect();
    let mut runs = Vec::new();
    for (key, compiled) in &fleet.hosts {
        for schedule in &compiled.plan.schedules {
            for i in 0..HISTORY {
                let at = now - chrono::Duration::hours(i + 1);
                let name = format!("{}-{}-{i}", schedule.name, key.name);
                runs.push(RunRecord {
                    schedule: Some(schedule.name.clone()),
                    repo: Some(schedule.repo.name.clone()),
                    phase: if i % 3 == 2 {
                        Phase::Failed
                    } else {
                        Phase::Succeeded
                    },
                    scheduled_at: Some(at),
                    started_at: Some(at),
                    finished_at: Some(at + chrono::Duration::minutes(2)),
                    ..RunRecord::pending(
                        Kind::Backup,
                        key,
                        name.clone(),
                        name,
                        schedule.operation.into(),
                        at,
                    )
                });
            }
        }
    }
    println!(
        "{} hosts, {} schedules, {} run records",
        fleet.hosts.len(),
        revision.schedules.len(),
        runs.len()
    );
    // Folded once at start; afterwards one record per report.
    let folding = Instant::now();
    let summaries = RunSummaries::of(&runs);
    println!(
        "summaries of {} records folded in {:?}",
        runs.len(),
        folding.elapsed()
    );
    let online = |_: &HostKey| true;
    let created = |_: &str, _: &str| Some(now - chrono::Duration::days(30));
    let (sizes, counts) = (BTreeMap::new(), BTreeMap::new());
    let inputs = Inputs {
        now,
        revision: &revision,
        fleet: &fleet,
        versions: &versions,
        agents: &agents,
        online: &online,
        runs: &summaries,
        repo_sizes: &sizes,
        snapshot_counts: &counts,
        scrub: &BTreeMap::new(),
        schedule_created: &created,
    };
    let mut times: [Vec<Duration>; 3] = Default::default();
    for run in 0..=RUNS {
        let started = Instant::now();
        let hosts = status::hosts(&inputs);
        let after_hosts = Instant::now();
        let schedules = status::schedules(&inputs);
        let after_schedules = Instant::now();
        let repos = status::repos(&inputs);
        let done = Instant::now();
        assert_eq!(
            (hosts.len(), schedules.len(), repos.len()),
            (generated::HOSTS, generated::GROUPS * 5, 10)
        );
        let took = [
            after_hosts - started,
            after_schedules - after_hosts,
            done - after_schedules,
        ];
        println!(
            "{}: hosts {:?}, schedules {:?}, repos {:?}",
            if run == 0 {
                "warm-up".to_string()
            } else {
                format!("run {run}")
            },
            took[0],
            took[1],
            took[2]
        );
        if run > 0 {
            for (all, t) in times.iter_mut().zip(took) {
                all.push(t);
            }
        }
    }
    for (what, mut all) in ["hosts", "schedules", "repos"].into_iter().zip(times) {
        all.sort();
        println!(
            "status::{what}: fastest {:?}, median {:?} over {RUNS} runs",
            all[0],
            all[RUNS / 2]
        );
    }

    let indexing = Instant::now();
    let runners = status::Runners::of(&fleet);
    println!(
        "status::Runners::of (once per revision): {:?}",
        indexing.elapsed()
    );
    let host = &revision.hosts[generated::HOSTS / 2];
    let schedule = &revision.schedules[revision.schedules.len() / 2];
    let median = |mut one: Box<dyn FnMut() -> usize + '_>| {
        let mut all: Vec<Duration> = (0..1_000)
            .map(|_| {
                let started = Instant::now();
                assert!(one() > 0);
                started.elapsed()
            })
            .collect();
        all.sort();
        all[all.len() / 2]
    };
    let one_host = median(Box::new(|| status::host(&inputs, host).conditions.len()));
    let one_schedule = median(Box::new(|| {
        let mut crons = status::CronCache::default();
        let (status, _) = status::schedule_until(&inputs, &runners, &mut crons, schedule);
        status.hosts.len()
    }));
    println!("status::host, one host: median {one_host:?} over 1,000");
    println!("status::schedule_until, one schedule: median {one_schedule:?} over 1,000");
}
