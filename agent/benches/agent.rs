//! Benchmarks of the release agent binary: its size, its resident memory when idle and
//! connected, and the wall time of a backup run through it against the same `restic backup` run
//! directly. Point `HOLDFAST_AGENT_BIN` at a binary from `cargo build --release -p
//! holdfast-agent` (a bench build unifies the dev-dependencies' features into the binary).
//!
//! `HOLDFAST_BENCH_FILES` and `HOLDFAST_BENCH_FILE_KIB` size the tree (default 4000 × 256 KiB,
//! 1000 MiB); `HOLDFAST_BENCH_ROUNDS` (default 3) alternates direct and agent runs.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use protocol::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn main() {
    require_restic();
    let binary = std::env::var_os("HOLDFAST_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_holdfast-agent")).to_path_buf());
    let size = std::fs::metadata(&binary).unwrap().len();
    println!(
        "binary: {} ({size} bytes, {:.1} MiB)",
        binary.display(),
        size as f64 / 1048576.0
    );

    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    let state = enrolled_state(dir.path(), &controller.url());
    let mut agent = AgentProcess::start_binary(&binary, &state, &controller.url());
    controller.wait("hello", |m| {
        m.iter()
            .find(|(_, m)| matches!(m, AgentMessage::Hello(_)))
            .map(|_| ())
    });
    let data = dir.path().join("data");
    let files = env_or("HOLDFAST_BENCH_FILES", 4000);
    let kib = env_or("HOLDFAST_BENCH_FILE_KIB", 256);
    tree(&data, files, kib * 1024, 42);
    let repo_dir = dir.path().join("repos");
    std::fs::create_dir_all(&repo_dir).unwrap();
    let warm = Repo::init(&repo_dir.join("warm"));
    controller.send(ControllerMessage::ScheduleSet(plan_set(
        "web-1",
        1,
        vec![backup(
            "bench",
            warm.resolved("warm"),
            vec![data.display().to_string()],
        )],
    )));
    controller.wait("ack", |m| {
        m.iter()
            .find(|(_, m)| matches!(m, AgentMessage::ScheduleAck(_)))
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_secs(5));
    let idle = rss_kib(agent.child.id());
    println!(
        "idle RSS, connected, plan applied: {idle} KiB ({:.1} MiB)",
        idle as f64 / 1024.0
    );

    // Warm the page cache so neither side pays for the first read of the tree.
    assert!(
        warm.restic(&["backup", "--host", "web-1", data.to_str().unwrap()])
            .status
            .success()
    );

    let rounds = env_or("HOLDFAST_BENCH_ROUNDS", 3);
    let (mut direct, mut through, mut resolve, mut recorded) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let d = Repo::init(&repo_dir.join(format!("direct-{round}")));
        let start = Instant::now();
        let out = d.restic(&[
            "backup",
            "--json",
            "--host",
            "web-1",
            data.to_str().unwrap(),
        ]);
        direct.push(start.elapsed().as_secs_f64());
        assert!(out.status.success());
        let start = Instant::now();
        assert!(
            d.restic(&["snapshots", "--json", "--host", "web-1"])
                .status
                .success()
        );
        resolve.push(start.elapsed().as_secs_f64());

        let a = Repo::init(&repo_dir.join(format!("agent-{round}")));
        controller.send(ControllerMessage::ScheduleSet(plan_set(
            "web-1",
            2 + round as u64,
            vec![backup(
                "bench",
                a.resolved("agent"),
                vec![data.display().to_string()],
            )],
        )));
        let job = format!("bench-run-{round}");
        let start = Instant::now();
        controller.send(ControllerMessage::CommandRun(CommandRun {
            job: job.clone(),
            request: RunRequest::Schedule {
                schedule: "bench".into(),
            },
            secrets: vec![],
        }));
        let finished = eventually(Duration::from_secs(3600), "job.finished", || {
            controller
                .reports()
                .into_iter()
                .find_map(|(_, r)| match r.body {
                    ReportBody::JobFinished(f) if f.job == job => Some(f),
                    _ => None,
                })
        });
        through.push(start.elapsed().as_secs_f64());
        assert_eq!(finished.phase, JobPhase::Succeeded);
        let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
        let run = time(&finished.finished_at) - time(finished.started_at.as_deref().unwrap());
        recorded.push(run.num_milliseconds() as f64 / 1000.0);
        println!(
            "round {round}: direct restic backup {:.2}s; through the agent: run {:.2}s as recorded, job.finished received after {:.2}s; restic snapshots alone {:.2}s",
            direct[round], recorded[round], through[round], resolve[round]
        );
    }
    let (d, t, r, rec) = (
        median(direct),
        median(through),
        median(resolve),
        median(recorded),
    );
    let pct = |x: f64| (x / d - 1.0) * 100.0;
    println!(
        "median of {rounds}: direct {d:.2}s; run as recorded {rec:.2}s ({:+.1}%); until job.finished arrives {t:.2}s ({:+.1}%), of which {r:.2}s is the snapshot listing that resolves restic 0.14's short id",
        pct(rec),
        pct(t)
    );
    agent.kill();
    controller.shutdown();
}
