//! Latency from a schedule file write to the agents' acks, through the real `holdfast controller`
//! (release build, default 100 ms debounce) and lightweight simulated agents that speak the real
//! protocol over WebSocket: enroll with a token from `holdfast token create`, `hello`, and a
//! `schedule.ack` for every `schedule.set`.
//!
//! Three scenarios: one host, edited 60 times; 500 hosts selected by one schedule, edited 10
//! times; 1,500 hosts, edited 3 times, past the usual open-file soft limit of 1,024. Each round
//! writes the schedule file with a new path, then waits for every agent to ack the next version;
//! a latency is the time from just before the write to just after the ack was sent. After the
//! last round the controller's resident memory (`VmRSS`) is read, to size its memory limit.
//!
//! After the rounds it also reads the controller's CPU time over 20 idle seconds (agents
//! connected and heartbeating every 10 s) and then its resident memory per connected agent
//! (the growth since before the agents connected, divided by their number).
//!
//! Run: `cargo bench -p holdfast --bench ack_latency`. Goals: p99 under 250 ms for one host; all
//! 500 acked within 2 s. Other scenarios: `ACK_SCENARIOS=10000:3` (hosts:rounds, comma
//! separated); `HOLDFAST_BIN` runs another `holdfast` binary than the one cargo built.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use protocol::{
    AgentMessage, CONNECT_PATH, ControllerMessage, Heartbeat, Hello, PROTOCOL_VERSION, ScheduleAck,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[path = "common/process.rs"]
mod process;
use process::{Controller, ms, percentile, write_fleet};

fn main() {
    // The simulated agents' sockets are this process's open files too.
    rlimit::increase_nofile_limit(u64::MAX).expect("the open-file limit raised");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let scenarios: Vec<(usize, usize)> = match std::env::var("ACK_SCENARIOS") {
        Ok(text) => text
            .split(',')
            .map(|s| {
                let (hosts, rounds) = s.split_once(':').expect("ACK_SCENARIOS is hosts:rounds,…");
                (
                    hosts.trim().parse().expect("a number of hosts"),
                    rounds.trim().parse().expect("a number of rounds"),
                )
            })
            .collect(),
        Err(_) => vec![(1, 60), (500, 10), (1500, 3)],
    };
    for (hosts, rounds) in scenarios {
        let result = runtime.block_on(scenario(hosts, rounds));
        result.print();
    }
}

struct Result {
    hosts: usize,
    rounds: usize,
    /// Every agent's ack latency, over all rounds.
    acks: Vec<Duration>,
    /// Per round, the time until the last agent acked.
    all_acked: Vec<Duration>,
    /// The controller's resident memory after the last round, in KiB.
    rss_kib: u64,
    /// Its resident memory after [`IDLE`] with every agent connected, in KiB.
    rss_idle_kib: u64,
    /// Its resident memory before any agent connected, in KiB.
    rss_before_kib: u64,
    /// Its CPU time per second over [`IDLE`] with every agent connected and nothing changing.
    idle_cpu: f64,
}

/// How long the controller is watched while idle: two heartbeats of every agent.
const IDLE: Duration = Duration::from_secs(20);

impl Result {
    fn print(mut self) {
        self.acks.sort();
        self.all_acked.sort();
        println!(
            "{} host(s), {} rounds, {} acks: p50 {}, p99 {}, max {}; all acked per round: median {}, max {}; controller RSS {} KiB",
            self.hosts,
            self.rounds,
            self.acks.len(),
            ms(percentile(&self.acks, 50)),
            ms(percentile(&self.acks, 99)),
            ms(*self.acks.last().expect("acks")),
            ms(percentile(&self.all_acked, 50)),
            ms(*self.all_acked.last().expect("rounds")),
            self.rss_kib,
        );
        println!(
            "  idle CPU with {} agents connected: {:.4} s/s over {:?}; RSS {} KiB before agents, {} KiB after idling, {:.1} KiB per agent",
            self.hosts,
            self.idle_cpu,
            IDLE,
            self.rss_before_kib,
            self.rss_idle_kib,
            self.rss_idle_kib.saturating_sub(self.rss_before_kib) as f64 / self.hosts as f64,
        );
    }
}

async fn scenario(hosts: usize, rounds: usize) -> Result {
    let tmp = tempfile::Builder::new()
        .prefix("holdfast-ack-bench-")
        .tempdir()
        .expect("a temporary directory");
    let config = tmp.path().join("config");
    let data = tmp.path().join("controller");
    fs::create_dir_all(config.join("schedules")).expect("config dir");
    fs::create_dir_all(&data).expect("data dir");
    let names: Vec<String> = (0..hosts).map(|i| format!("sim-{i:05}")).collect();
    write_fleet(&config, tmp.path(), &names);
    write_schedule(&config, 0);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let controller = Controller::start(&process::binary(), &config, &data, port, tmp.path());
    let rss_before_kib = controller.rss_kib();

    let credentials = process::enroll(&process::binary(), &data, port, &names);

    let (acks, mut acked) = mpsc::unbounded_channel();
    for (host, credential) in names.iter().zip(credentials) {
        tokio::spawn(simulated_agent(
            port,
            host.clone(),
            credential,
            acks.clone(),
        ));
    }
    // Version 1 is pushed on hello; wait until every agent has it.
    collect(&mut acked, 1, hosts, Instant::now()).await;

    let mut result = Result {
        hosts,
        rounds,
        acks: Vec::new(),
        all_acked: Vec::new(),
        rss_kib: 0,
        rss_idle_kib: 0,
        rss_before_kib,
        idle_cpu: 0.0,
    };
    for round in 1..=rounds {
        // Let the previous round's reads settle, so each round starts from a quiet controller.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let written = Instant::now();
        write_schedule(&config, round);
        let latencies = collect(&mut acked, round as u64 + 1, hosts, written).await;
        result
            .all_acked
            .push(*latencies.iter().max().expect("acks"));
        result.acks.extend(latencies);
    }
    // At `RUST_LOG=warn` the log says what went wrong, if anything did.
    let warnings = fs::read_to_string(&controller.log).unwrap_or_default();
    if let Some(first) = warnings.lines().next() {
        eprintln!(
            "controller log: {} lines; the first: {first}",
            warnings.lines().count()
        );
    }
    result.rss_kib = controller.rss_kib();
    let cpu = controller.cpu_seconds();
    tokio::time::sleep(IDLE).await;
    result.idle_cpu = (controller.cpu_seconds() - cpu) / IDLE.as_secs_f64();
    result.rss_idle_kib = controller.rss_kib();
    drop(controller);
    result
}

/// Waits for `hosts` acks of `version`, returning each one's latency from `since`.
async fn collect(
    acked: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    version: u64,
    hosts: usize,
    since: Instant,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(hosts);
    while latencies.len() < hosts {
        let (v, at) = tokio::time::timeout(Duration::from_secs(30), acked.recv())
            .await
            .unwrap_or_else(|_| panic!("no ack of version {version} within 30 s"))
            .expect("the agents are running");
        assert!(
            v <= version,
            "version {v} acked before {version} was written"
        );
        if v == version {
            latencies.push(at - since);
        }
    }
    latencies
}

/// Connects, says hello at version 0, acks every `schedule.set` and reports when it did.
async fn simulated_agent(
    port: u16,
    host: String,
    credential: String,
    acks: mpsc::UnboundedSender<(u64, Instant)>,
) {
    let mut request = format!("ws://127.0.0.1:{port}{CONNECT_PATH}")
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().expect("a header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the controller accepts the agent");
    let hello = AgentMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        host,
        agent_version: "bench".into(),
        restic_version: Some("0.14.0".into()),
        os: "linux".into(),
        arch: "x86_64".into(),
        applied_schedule_version: 0,
        applied_schedule_digest: None,
        running: Vec::new(),
    });
    send(&mut socket, &hello).await;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = heartbeat.tick() => {
                send(&mut socket, &AgentMessage::Heartbeat(Heartbeat::default())).await;
            }
            message = socket.next() => {
                let Some(Ok(Message::Text(text))) = message else {
                    match message {
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                };
                let Ok(ControllerMessage::ScheduleSet(set)) = serde_json::from_str(&text) else {
                    continue;
                };
                let ack = AgentMessage::ScheduleAck(ScheduleAck {
                    version: set.version,
                    applied_version: set.version,
                    rejected: None,
                });
                send(&mut socket, &ack).await;
                if acks.send((set.version, Instant::now())).is_err() {
                    return;
                }
            }
        }
    }
}

async fn send<S>(socket: &mut S, message: &AgentMessage)
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::fmt::Debug,
{
    let text = serde_json::to_string(message).expect("a message serialises");
    socket
        .send(Message::text(text))
        .await
        .expect("the controller is connected");
}

/// The one schedule, selecting every host; `round` changes its path, so every plan changes.
fn write_schedule(config: &Path, round: usize) {
    let schedule = format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: bench\nspec:\n  operation: backup\n  cron: \"0 3 1 1 *\"\n  hostSelector:\n    matchLabels:\n      fleet: bench\n  paths: [/srv/round-{round}]\n"
    );
    fs::write(config.join("schedules/bench.yaml"), schedule).expect("schedule file");
}
