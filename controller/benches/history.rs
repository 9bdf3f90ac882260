//! What the controller costs as its run history grows: the real `holdfast controller` (release
//! build, files mode, `RUST_LOG=warn`) and lightweight simulated agents that speak the real
//! protocol over WebSocket, every run reported through the hub as an agent reports it (nothing
//! is written into SQLite behind the controller's back).
//!
//! The fleet: `HOSTS` hosts (default 1,000) and `SCHEDULES` backup schedules (default 5), each
//! selecting every host by label, daily at its own hour (UTC, `jitter: 10m`), into one local
//! repo. Each agent is enrolled with a token from `holdfast token create` and `POST
//! /agent/v1/enroll`, says `hello` at version 0, acks every `schedule.set`, and sends a heartbeat
//! (and a ping) every `welcome.heartbeatSeconds`, as `holdfast-agent` does.
//!
//! Once every agent has acked version 1, each reports `RUNS` scheduled runs (default 16) per
//! schedule, oldest first, on the days before today at the schedule's cron time, with the job
//! ids, times and reports of the real agent's scheduled backup (`agent/src/jobs.rs`,
//! `agent/src/runner.rs`): a successful run is `job.started`, one `job.progress`,
//! `snapshots.report` (every snapshot of the host in the repo so far), `job.finished` (full
//! snapshot id and restic summary), then `repo.stats`; a failed one (every third run, so that
//! with 16 runs 5 or 6 fail and 11 or 10 succeed: both default history limits, 10 successful
//! and 5 failed, are reached and one of them prunes) is `job.started`, a `job.log` of restic's
//! error and `job.finished` Failed/ResticFailed. An agent keeps at most `IN_FLIGHT`
//! reports (default 8) unacked. Then it waits until `/api/v1/backups` lists exactly the records
//! the history limits keep, for at most `WAIT_SECS` (default 1,800 s); if the list is not there
//! by then, it says so and measures anyway.
//!
//! Printed, one line each: the time to report everything (reports/s, runs/s, ack latency), the
//! time until the list matched, the database size, the controller's resident memory (`VmRSS`),
//! its CPU over 60 idle seconds (agents connected and heartbeating), the latency of a page of
//! backups (`?limit=500`, 20 requests), of `GET /` (10) and `GET /api/v1/hosts` (10), the
//! time from rewriting one schedule file until every agent acked the new version, and then,
//! restarted on the same data with no agent connected, its readiness, memory and idle CPU.
//!
//! Run: `cargo bench -p holdfast --bench history`, or at another scale
//! `HOSTS=50 RUNS=16 cargo bench -p holdfast --bench history`. `HOLDFAST_BIN` runs another
//! `holdfast` binary than the one cargo built for the bench. `WHOLE_FRAMES=1` has the agents
//! send every message in one frame, as agents before 9888f62 did, instead of in frames of at
//! most `AGENT_FRAGMENT_BYTES`.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, SecondsFormat, TimeDelta, Utc};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    AgentMessage, BackupSummary, CONNECT_PATH, ControllerMessage, ErrorCode, Heartbeat, Hello,
    HostPlan, JobFinished, JobLog, JobOperation, JobPhase, JobProgress, JobStarted, LogLine,
    PROTOCOL_VERSION, RepoStats, Report, ReportBody, ScheduleAck, Snapshot, SnapshotsReport,
    Trigger,
};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[path = "common/process.rs"]
mod process;
use process::{Controller, ms, percentile, write_fleet};

/// The default history limits of a Schedule (`successfulRunsHistoryLimit`,
/// `failedRunsHistoryLimit`).
const KEEP_SUCCEEDED: usize = 10;
const KEEP_FAILED: usize = 5;
/// Reports of one run, as the real agent sends them.
const REPORTS_SUCCEEDED: usize = 5;
const REPORTS_FAILED: usize = 3;
/// Bounds on the phases, generous: the point is to measure, not to fail early.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
const REPORT_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// Default bound on waiting for the Backups list (`WAIT_SECS`).
const LIST_TIMEOUT_SECS: usize = 1800;
const CHANGE_TIMEOUT: Duration = Duration::from_secs(600);
/// Idle CPU is read over two heartbeats of every agent (30 s apart): agents that connected
/// together heartbeat together, and a shorter window can fall between two bursts.
const IDLE: Duration = Duration::from_secs(60);

fn main() {
    // The simulated agents' sockets are this process's open files too.
    rlimit::increase_nofile_limit(u64::MAX).expect("the open-file limit raised");
    let scale = Scale::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(run(scale));
}

#[derive(Clone, Copy)]
struct Scale {
    hosts: usize,
    schedules: usize,
    runs: usize,
    in_flight: usize,
}

impl Scale {
    fn from_env() -> Scale {
        let scale = Scale {
            hosts: env_number("HOSTS", 1000),
            schedules: env_number("SCHEDULES", 5),
            runs: env_number("RUNS", 16),
            in_flight: env_number("IN_FLIGHT", 8),
        };
        assert!(scale.hosts > 0 && scale.schedules > 0 && scale.in_flight > 0);
        assert!(
            (1..=24 * 60).contains(&scale.schedules),
            "SCHEDULES: one daily schedule per minute of the day at most"
        );
        // Runs are a day apart; run history older than 90 days is pruned by age.
        assert!(
            scale.runs < 85,
            "RUNS: at most 84 (one run a day, within the 90 days of run history)"
        );
        scale
    }

    /// (successful, failed) runs of one host and schedule.
    fn outcomes(&self, host: usize, schedule: usize) -> (usize, usize) {
        let failed = (0..self.runs).filter(|&r| fails(host, schedule, r)).count();
        (self.runs - failed, failed)
    }

    /// Run records the history limits keep, and reports sent, over the fleet.
    fn expected(&self) -> (usize, usize) {
        let mut kept = 0;
        let mut reports = 0;
        for host in 0..self.hosts {
            for schedule in 0..self.schedules {
                let (ok, failed) = self.outcomes(host, schedule);
                kept += ok.min(KEEP_SUCCEEDED) + failed.min(KEEP_FAILED);
                reports += ok * REPORTS_SUCCEEDED + failed * REPORTS_FAILED;
            }
        }
        (kept, reports)
    }
}

fn env_number(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Whether run `run` of a host's schedule fails: every third, shifted per host and schedule.
fn fails(host: usize, schedule: usize, run: usize) -> bool {
    (host + schedule + run) % 3 == 2
}

async fn run(scale: Scale) {
    let (expected_kept, expected_reports) = scale.expected();
    let total_runs = scale.hosts * scale.schedules * scale.runs;
    let bin = process::binary();
    println!(
        "history: {} hosts x {} backup schedules x {} runs = {} runs, {} reports (at most {} in flight per agent); {} records kept by the history limits; controller {}",
        scale.hosts,
        scale.schedules,
        scale.runs,
        total_runs,
        expected_reports,
        scale.in_flight,
        expected_kept,
        bin.display()
    );

    let (tmp, config, data) = process::workspace("holdfast-history-bench-");
    let names: Vec<String> = (0..scale.hosts).map(|i| format!("sim-{i:04}")).collect();
    write_fleet(&config, tmp.path(), &names);
    for schedule in 0..scale.schedules {
        write_schedule(&config, schedule, 0);
    }

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let controller = Controller::start(&bin, &config, &data, port, tmp.path());
    let base = format!("http://127.0.0.1:{port}");

    // Enroll every host through the CLI and the enroll endpoint, as a real agent would.
    let started = Instant::now();
    let credentials = process::enroll(&bin, &data, port, &names);
    let enrolled = started.elapsed();

    let (events, mut inbox) = mpsc::unbounded_channel();
    let (go, ready) = watch::channel(false);
    let acked_reports = Arc::new(AtomicU64::new(0));
    let connecting = Instant::now();
    for (index, (host, credential)) in names.iter().zip(credentials).enumerate() {
        tokio::spawn(simulated_agent(SimulatedAgent {
            port,
            index,
            host: host.clone(),
            credential,
            scale,
            go: ready.clone(),
            events: events.clone(),
            acked_reports: acked_reports.clone(),
        }));
    }
    drop(events);
    let mut tally = Tally::default();
    // Version 1 is pushed on hello; wait until every agent has it.
    let acks = collect_acks(&mut inbox, &mut tally, 1, scale.hosts, CONNECT_TIMEOUT).await;
    let connected = acks
        .iter()
        .max()
        .map_or(Duration::ZERO, |at| *at - connecting);
    println!(
        "enrolled {} agents in {}; all connected and acked version 1 in {}; controller RSS {:.1} MiB (empty history)",
        scale.hosts,
        secs(enrolled),
        ms(connected),
        mib(controller.rss_kib())
    );

    // Every agent reports its history.
    let reporting = Instant::now();
    go.send(true).expect("the agents are running");
    let mut done = 0;
    let mut last_done = reporting;
    let mut latencies: Vec<Duration> = Vec::with_capacity(expected_reports);
    let mut reports = 0;
    let mut next_note = Instant::now() + Duration::from_secs(30);
    while done < scale.hosts {
        let deadline = next_note.min(reporting + REPORT_TIMEOUT);
        match tokio::time::timeout_at(deadline.into(), inbox.recv()).await {
            Err(_) => {
                assert!(
                    reporting.elapsed() < REPORT_TIMEOUT,
                    "the reports were not all acked within {REPORT_TIMEOUT:?}: {done} agents done, {} of {expected_reports} reports acked",
                    acked_reports.load(Ordering::Relaxed)
                );
                eprintln!(
                    "  {}: {} of {expected_reports} reports acked, {done} agents done",
                    secs(reporting.elapsed()),
                    acked_reports.load(Ordering::Relaxed)
                );
                next_note += Duration::from_secs(30);
            }
            Ok(None) => panic!("every agent ended before reporting"),
            Ok(Some(Event::Reported(r))) => {
                done += 1;
                last_done = last_done.max(r.at);
                reports += r.reports;
                latencies.extend(r.latencies);
            }
            Ok(Some(other)) => tally.note(other),
        }
    }
    let took = last_done - reporting;
    latencies.sort();
    println!(
        "reported {reports} reports ({total_runs} runs) in {}: {:.0} reports/s, {:.0} runs/s; ack latency p50 {}, p99 {}, max {}; {} refused",
        secs(took),
        reports as f64 / took.as_secs_f64(),
        total_runs as f64 / took.as_secs_f64(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(latencies.last().copied().unwrap_or_default()),
        tally.refused,
    );
    assert_eq!(reports, expected_reports, "reports sent");

    // The status writer turns the records into Backups and prunes them to the history limits.
    let timeout = Duration::from_secs(env_number("WAIT_SECS", LIST_TIMEOUT_SECS) as u64);
    let listed = blocking({
        let base = base.clone();
        move || wait_for_backups(&base, expected_kept, timeout)
    })
    .await;
    let (db, wal) = database_size(&data);
    let sizes = format!(
        "holdfast.db {:.1} MiB, WAL {:.1} MiB",
        mib(db / 1024),
        mib(wal / 1024)
    );
    match listed {
        Ok(took) => println!(
            "backups listed: {expected_kept}, as the history limits keep, {} after the last ack; {sizes}",
            secs(took)
        ),
        // The other figures are still worth having: they are what such a controller costs.
        Err(count) => println!(
            "backups listed: still {count}, not the {expected_kept} the history limits keep, {} after the last ack (WAIT_SECS); measuring anyway; {sizes}",
            secs(timeout)
        ),
    }

    println!("controller RSS: {:.1} MiB", mib(controller.rss_kib()));
    let before = controller.cpu_seconds();
    let idle_from = Instant::now();
    tokio::time::sleep(IDLE).await;
    let busy = controller.cpu_seconds() - before;
    let wall = idle_from.elapsed();
    println!(
        "idle CPU over {:.0} s (agents connected, heartbeat every {} s): {:.1} % of one core",
        wall.as_secs_f64(),
        tally.heartbeat_seconds,
        busy / wall.as_secs_f64() * 100.0
    );

    for (path, count) in [
        ("/api/v1/backups?limit=500", 20),
        ("/", 10),
        ("/api/v1/hosts", 10),
    ] {
        let url = format!("{base}{path}");
        let (mut times, bytes) = blocking(move || {
            let http = ureq::Agent::new_with_config(ureq::Agent::config_builder().build());
            let mut bytes = 0;
            let times: Vec<Duration> = (0..count)
                .map(|_| {
                    let (took, size) = timed_get(&http, &url);
                    bytes = size;
                    took
                })
                .collect();
            (times, bytes)
        })
        .await;
        times.sort();
        println!(
            "GET {path} ({count} requests, {:.0} KiB): median {}, max {}",
            bytes as f64 / 1024.0,
            ms(percentile(&times, 50)),
            ms(*times.last().expect("requests")),
        );
    }

    // A fleet-wide change: one schedule's paths, so every host's plan gets version 2.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = Instant::now();
    write_schedule(&config, 0, 1);
    let acks = collect_acks(&mut inbox, &mut tally, 2, scale.hosts, CHANGE_TIMEOUT).await;
    let mut latencies: Vec<Duration> = acks.iter().map(|at| *at - written).collect();
    latencies.sort();
    println!(
        "schedule change, all {} agents acked version 2 in {} (p50 {})",
        scale.hosts,
        ms(*latencies.last().expect("acks")),
        ms(percentile(&latencies, 50)),
    );
    println!(
        "controller RSS at the end: {:.1} MiB",
        mib(controller.rss_kib())
    );
    if tally.refused > 0 {
        println!(
            "refused: {} messages; the first: {}",
            tally.refused,
            tally.first_refusal.as_deref().unwrap_or_default()
        );
    }
    print_log(&controller);

    // What the fleet and its history cost without the agents' connections: the same data
    // directory, restarted; the simulated agents end with the first controller.
    drop(controller);
    let restarted = Instant::now();
    let root = tmp.path().to_path_buf();
    let controller = blocking(move || Controller::start(&bin, &config, &data, port, &root)).await;
    tokio::time::sleep(IDLE).await;
    let before = controller.cpu_seconds();
    tokio::time::sleep(IDLE).await;
    println!(
        "restarted on this history with no agent: ready in {}; after {:.0} s RSS {:.1} MiB, then idle CPU over {:.0} s {:.1} % of one core",
        ms(restarted.elapsed() - IDLE * 2),
        IDLE.as_secs_f64(),
        mib(controller.rss_kib()),
        IDLE.as_secs_f64(),
        (controller.cpu_seconds() - before) / IDLE.as_secs_f64() * 100.0
    );
    print_log(&controller);
}

/// The first lines the controller logged (warnings and errors).
fn print_log(controller: &Controller) {
    let log = fs::read_to_string(&controller.log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    if !lines.is_empty() {
        eprintln!("controller log: {} lines; the first:", lines.len());
        for line in lines.iter().take(5) {
            eprintln!("  {line}");
        }
    }
}

/// Runs blocking work (HTTP through ureq) off the runtime's threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("the blocking work finishes")
}

fn timed_get(http: &ureq::Agent, url: &str) -> (Duration, usize) {
    let started = Instant::now();
    let mut response = http
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("the body of GET {url}: {e}"));
    (started.elapsed(), body.len())
}

/// Polls the Backups list until it holds `expected` objects: the time that took, or the count
/// it still had after `timeout`. Each poll walks every page (`remainingItemCount` is left out
/// beyond 10,000), so the time is at most one walk late.
fn wait_for_backups(base: &str, expected: usize, timeout: Duration) -> Result<Duration, usize> {
    let http = ureq::Agent::new_with_config(ureq::Agent::config_builder().build());
    let started = Instant::now();
    let mut last = None;
    loop {
        let count = count_backups(&http, base);
        if count == expected {
            return Ok(started.elapsed());
        }
        if last != Some(count) {
            eprintln!(
                "  {}: {count} backups listed, waiting for {expected}",
                secs(started.elapsed())
            );
            last = Some(count);
        }
        if started.elapsed() >= timeout {
            return Err(count);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How many Backups `/api/v1/backups` lists, page by page.
fn count_backups(http: &ureq::Agent, base: &str) -> usize {
    let mut count = 0;
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(token) => format!("{base}/api/v1/backups?limit=1000&continue={token}"),
            None => format!("{base}/api/v1/backups?limit=1000"),
        };
        let page: serde_json::Value = http
            .get(url)
            .call()
            .expect("GET /api/v1/backups")
            .body_mut()
            .read_json()
            .expect("a list");
        count += page["items"].as_array().map_or(0, Vec::len);
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => next = Some(token.to_string()),
            _ => return count,
        }
    }
}

/// Sizes of `holdfast.db` and its WAL, in bytes.
fn database_size(data: &Path) -> (u64, u64) {
    let size = |name: &str| fs::metadata(data.join(name)).map_or(0, |m| m.len());
    (size("holdfast.db"), size("holdfast.db-wal"))
}

/// What the agents say that is not the answer being waited for.
#[derive(Default)]
struct Tally {
    refused: usize,
    first_refusal: Option<String>,
    heartbeat_seconds: u32,
}

impl Tally {
    fn note(&mut self, event: Event) {
        match event {
            Event::Refused(message) => {
                self.refused += 1;
                self.first_refusal.get_or_insert(message);
            }
            Event::Welcome { heartbeat_seconds } => self.heartbeat_seconds = heartbeat_seconds,
            Event::Ended { host, why } => panic!("agent {host} stopped: {why}"),
            Event::Acked { .. } | Event::Reported(_) => {}
        }
    }
}

/// Waits for `hosts` acks of `version`; when each came.
async fn collect_acks(
    inbox: &mut mpsc::UnboundedReceiver<Event>,
    tally: &mut Tally,
    version: u64,
    hosts: usize,
    timeout: Duration,
) -> Vec<Instant> {
    let deadline = Instant::now() + timeout;
    let mut acks = Vec::with_capacity(hosts);
    while acks.len() < hosts {
        let event = tokio::time::timeout_at(deadline.into(), inbox.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {hosts} agents acked version {version} within {timeout:?}",
                    acks.len()
                )
            })
            .expect("the agents are running");
        match event {
            Event::Acked { version: v, at } if v == version => acks.push(at),
            Event::Acked { version: v, .. } => {
                assert!(v < version, "version {v} acked while waiting for {version}")
            }
            other => tally.note(other),
        }
    }
    acks
}

enum Event {
    Welcome { heartbeat_seconds: u32 },
    Acked { version: u64, at: Instant },
    Reported(Box<Reported>),
    Refused(String),
    Ended { host: String, why: String },
}

/// One agent's reports are all acked.
struct Reported {
    at: Instant,
    reports: usize,
    /// From sending each report to its ack.
    latencies: Vec<Duration>,
}

struct SimulatedAgent {
    port: u16,
    index: usize,
    host: String,
    credential: String,
    scale: Scale,
    /// True once the agents are to report their history.
    go: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<Event>,
    acked_reports: Arc<AtomicU64>,
}

async fn simulated_agent(agent: SimulatedAgent) {
    let host = agent.host.clone();
    let events = agent.events.clone();
    if let Err(why) = agent_session(agent).await {
        let _ = events.send(Event::Ended { host, why });
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One agent's session: hello, then acks every `schedule.set`, heartbeats, and once `go` says
/// so reports its history with at most `in_flight` reports unacked.
async fn agent_session(mut agent: SimulatedAgent) -> Result<(), String> {
    let mut request = format!("ws://127.0.0.1:{}{CONNECT_PATH}", agent.port)
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", agent.credential)
            .parse()
            .map_err(|_| "a header".to_string())?,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| format!("the controller refused the connection: {e}"))?;
    let hello = AgentMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        host: agent.host.clone(),
        agent_version: "bench".into(),
        restic_version: Some("0.14.0".into()),
        os: "linux".into(),
        arch: "x86_64".into(),
        applied_schedule_version: 0,
        applied_schedule_digest: None,
        running: Vec::new(),
    });
    send(&mut socket, &hello).await?;
    let welcome = match socket.next().await {
        Some(Ok(Message::Text(text))) => serde_json::from_str::<ControllerMessage>(&text)
            .map_err(|e| format!("not a message: {e}"))?,
        other => return Err(format!("no welcome: {other:?}")),
    };
    let ControllerMessage::Welcome(welcome) = welcome else {
        return Err(format!("expected welcome, got {welcome:?}"));
    };
    let _ = agent.events.send(Event::Welcome {
        heartbeat_seconds: welcome.heartbeat_seconds,
    });
    let mut heartbeat = tokio::time::interval(Duration::from_secs(
        u64::from(welcome.heartbeat_seconds).max(1),
    ));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut plan: Option<HostPlan> = None;
    let mut history: Option<History> = None;
    let mut queued: VecDeque<ReportBody> = VecDeque::new();
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut seq = 0u64;
    let mut sent = 0usize;
    let mut finished = false;
    loop {
        if let Some(history) = history.as_mut() {
            while in_flight.len() < agent.scale.in_flight {
                if queued.is_empty() {
                    match history.next_run() {
                        Some(reports) => queued.extend(reports),
                        None => break,
                    }
                }
                let Some(body) = queued.pop_front() else {
                    break;
                };
                seq += 1;
                send(&mut socket, &AgentMessage::Report(Report { seq, body })).await?;
                in_flight.insert(seq, Instant::now());
                sent += 1;
            }
            if !finished && in_flight.is_empty() && queued.is_empty() {
                finished = true;
                let reported = Reported {
                    at: Instant::now(),
                    reports: sent,
                    latencies: std::mem::take(&mut latencies),
                };
                let _ = agent.events.send(Event::Reported(Box::new(reported)));
            }
        }
        tokio::select! {
            _ = heartbeat.tick() => {
                send(&mut socket, &AgentMessage::Heartbeat(Heartbeat::default())).await?;
                // The real agent pings too; the pong proves the controller alive.
                socket
                    .send(Message::Ping(Vec::new().into()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            changed = agent.go.changed(), if history.is_none() => {
                changed.map_err(|_| "the benchmark ended".to_string())?;
                let go = *agent.go.borrow();
                if go {
                    let plan = plan.as_ref().ok_or("told to report before any plan came")?;
                    history = Some(History::new(agent.index, agent.scale, plan)?);
                }
            }
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => return Err(format!("the controller closed the connection: {frame:?}")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("the connection failed: {e}")),
                    None => return Err("the connection ended".into()),
                };
                let message: ControllerMessage = serde_json::from_str(&text)
                    .map_err(|e| format!("not a message: {e}: {text}"))?;
                match message {
                    ControllerMessage::ScheduleSet(set) => {
                        let ack = AgentMessage::ScheduleAck(ScheduleAck {
                            version: set.version,
                            applied_version: set.version,
                            rejected: None,
                        });
                        send(&mut socket, &ack).await?;
                        let _ = agent.events.send(Event::Acked { version: set.version, at: Instant::now() });
                        plan = Some(set.plan);
                    }
                    ControllerMessage::Ack(ack) => {
                        if let Some(at) = in_flight.remove(&ack.seq) {
                            latencies.push(at.elapsed());
                            agent.acked_reports.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    ControllerMessage::Error(e) if e.code == ErrorCode::Refused => {
                        let _ = agent.events.send(Event::Refused(e.message));
                    }
                    ControllerMessage::Error(e) => {
                        return Err(format!("the controller said {:?}: {}", e.code, e.message));
                    }
                    other => return Err(format!("unexpected message {other:?}")),
                }
            }
        }
    }
}

async fn send(socket: &mut Socket, message: &AgentMessage) -> Result<(), String> {
    let text = serde_json::to_string(message).expect("a message serialises");
    let sent = if env_number("WHOLE_FRAMES", 0) == 1 {
        socket.send(Message::text(text)).await
    } else {
        holdfast_agent::connection::send_text(socket, text).await
    };
    sent.map_err(|e| format!("cannot send: {e}"))
}

/// One scheduled run of one schedule.
struct Due {
    /// The cron time, without jitter.
    at: DateTime<Utc>,
    /// Position of the schedule in the plan.
    schedule: usize,
    run: usize,
}

/// An agent's past runs, oldest first, as the reports the real agent sends for each.
struct History {
    host: String,
    index: usize,
    plan: HostPlan,
    due: Vec<Due>,
    next: usize,
    /// The host's snapshots in the repo, as `restic snapshots --host` lists them.
    snapshots: Vec<Snapshot>,
    repo_size: u64,
    blobs: u64,
}

impl History {
    fn new(index: usize, scale: Scale, plan: &HostPlan) -> Result<History, String> {
        if plan.schedules.len() != scale.schedules {
            return Err(format!(
                "the plan has {} schedules, not {}",
                plan.schedules.len(),
                scale.schedules
            ));
        }
        let now = Utc::now();
        let mut due = Vec::new();
        for (position, schedule) in plan.schedules.iter().enumerate() {
            if schedule.operation != protocol::Operation::Backup || schedule.backup.is_none() {
                return Err(format!("schedule {} is not a backup", schedule.name));
            }
            // `0 M H * * *`, as compile normalises `M H * * *`.
            let fields: Vec<&str> = schedule.cron.split_whitespace().collect();
            let at = match fields[..] {
                [_, minute, hour, "*", "*", "*"] => minute
                    .parse()
                    .ok()
                    .zip(hour.parse().ok())
                    .and_then(|(m, h)| NaiveTime::from_hms_opt(h, m, 0)),
                _ => None,
            }
            .ok_or_else(|| format!("cron {:?} is not daily", schedule.cron))?;
            // The latest cron time at least an hour ago, and the days before it.
            let mut latest = now.date_naive().and_time(at).and_utc();
            if latest > now - TimeDelta::hours(1) {
                latest -= TimeDelta::days(1);
            }
            for run in 0..scale.runs {
                due.push(Due {
                    at: latest - TimeDelta::days((scale.runs - 1 - run) as i64),
                    schedule: position,
                    run,
                });
            }
        }
        due.sort_by_key(|d| d.at);
        Ok(History {
            host: plan.host.clone(),
            index,
            plan: plan.clone(),
            due,
            next: 0,
            snapshots: Vec::new(),
            repo_size: 0,
            blobs: 0,
        })
    }

    /// The reports of the next run, in the order the agent sends them.
    fn next_run(&mut self) -> Option<Vec<ReportBody>> {
        let due = self.due.get(self.next)?;
        self.next += 1;
        let schedule = &self.plan.schedules[due.schedule];
        let backup = schedule.backup.as_ref()?;
        let noise = mix(self.index as u64, due.schedule as u64, due.run as u64);
        let failed = fails(self.index, due.schedule, due.run);
        // The scheduler's job id: the schedule and the scheduled minute since the epoch.
        let job = format!("{}-{}", schedule.name, due.at.timestamp().div_euclid(60));
        let started = due.at
            + TimeDelta::seconds(i64::from(schedule.jitter_seconds))
            + TimeDelta::milliseconds((noise % 900) as i64 + 20);
        let seconds = if failed {
            3 + noise % 40
        } else {
            30 + noise % 600
        };
        let finished = started + TimeDelta::milliseconds((seconds * 1000 + noise % 1000) as i64);
        let scheduled_at = Some(rfc3339(due.at));
        let mut reports = vec![ReportBody::JobStarted(JobStarted {
            job: job.clone(),
            schedule: Some(schedule.name.clone()),
            operation: JobOperation::Backup,
            repo: schedule.repo.name.clone(),
            trigger: Trigger::Schedule,
            scheduled_at: scheduled_at.clone(),
            started_at: rfc3339(started),
        })];
        let mut report = JobFinished {
            job: job.clone(),
            schedule: Some(schedule.name.clone()),
            operation: JobOperation::Backup,
            repo: schedule.repo.name.clone(),
            trigger: Trigger::Schedule,
            phase: JobPhase::Succeeded,
            reason: None,
            message: None,
            scheduled_at,
            started_at: Some(rfc3339(started)),
            finished_at: rfc3339(finished),
            exit_code: Some(0),
            snapshot_id: None,
            summary: None,
            scrub_part: None,
            drill: None,
        };
        if failed {
            let error = format!(
                "Fatal: unable to save snapshot: write {}/data/{:02x}/{:016x}: no space left on device",
                schedule.repo.url,
                noise % 256,
                noise
            );
            reports.push(ReportBody::JobLog(JobLog {
                job,
                lines: vec![
                    LogLine {
                        source: "restic".into(),
                        line: "using parent snapshot 2e7d2c03".into(),
                    },
                    LogLine {
                        source: "restic".into(),
                        line: error.clone(),
                    },
                ],
            }));
            report.phase = JobPhase::Failed;
            report.reason = Some("ResticFailed".into());
            report.message = Some(error);
            report.exit_code = Some(1);
            reports.push(ReportBody::JobFinished(report));
            return Some(reports);
        }
        let files = 40_000 + noise % 20_000;
        let bytes = (20 + noise % 30) << 30;
        let (new, changed) = (noise % 50, noise % 400);
        let added = (noise % 512) << 20;
        reports.push(ReportBody::JobProgress(JobProgress {
            job: job.clone(),
            percent_done: 0.5,
            files_done: files / 2,
            total_files: files,
            bytes_done: bytes / 2,
            total_bytes: bytes,
            seconds_elapsed: seconds / 2,
            seconds_remaining: Some(seconds / 2),
            current_files: backup.paths.first().cloned().into_iter().collect(),
        }));
        let id = format!(
            "{:016x}{:016x}{:016x}{:016x}",
            noise,
            mix(noise, 1, 0),
            mix(noise, 2, 0),
            mix(noise, 3, 0)
        );
        self.snapshots.push(Snapshot {
            id: id.clone(),
            time: started.to_rfc3339_opts(SecondsFormat::Nanos, false),
            hostname: self.host.clone(),
            paths: backup.paths.clone(),
            tags: backup.tags.clone(),
        });
        reports.push(ReportBody::SnapshotsReport(SnapshotsReport {
            repo: schedule.repo.name.clone(),
            snapshots: self.snapshots.clone(),
        }));
        report.snapshot_id = Some(id);
        report.summary = Some(BackupSummary {
            files_new: new,
            files_changed: changed,
            files_unmodified: files - new - changed,
            dirs_new: noise % 5,
            dirs_changed: noise % 60,
            dirs_unmodified: files / 10,
            data_blobs: (new + changed) * 3,
            tree_blobs: noise % 60 + 1,
            data_added: added,
            total_files_processed: files,
            total_bytes_processed: bytes,
            total_duration_seconds: seconds as f64 - 0.4,
        });
        reports.push(ReportBody::JobFinished(report));
        self.repo_size += added;
        self.blobs += (new + changed) * 3 + noise % 60 + 1;
        reports.push(ReportBody::RepoStats(RepoStats {
            repo: schedule.repo.name.clone(),
            total_size: self.repo_size,
            total_uncompressed_size: Some(self.repo_size / 10 * 17),
            snapshots_count: self.snapshots.len() as u64,
            blob_count: self.blobs,
        }));
        Some(reports)
    }
}

/// The agent's time format.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A well-mixed number from three (splitmix64), for sizes, durations and snapshot ids.
fn mix(a: u64, b: u64, c: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(c.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Backup schedule `index`, daily at its own minute of the day, selecting every host; `round`
/// changes its path, so that every host's plan changes.
fn write_schedule(config: &Path, index: usize, round: usize) {
    let (hour, minute) = ((index + 1) % 24, (index + 1) / 24 % 60);
    let path = match round {
        0 => format!("/srv/bench-{index}"),
        round => format!("/srv/bench-{index}-round-{round}"),
    };
    let schedule = format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: bench-{index:04}\nspec:\n  operation: backup\n  cron: \"{minute} {hour} * * *\"\n  timeZone: UTC\n  jitter: 10m\n  hostSelector:\n    matchLabels:\n      fleet: bench\n  paths: [{path}]\n  tags: [bench]\n"
    );
    fs::write(
        config.join(format!("schedules/bench-{index:04}.yaml")),
        schedule,
    )
    .expect("schedule file");
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
