//! Latency from a schedule file write to the agents' acks, through the real `holdfast controller`
//! (release build, default 100 ms debounce) and lightweight simulated agents that speak the real
//! protocol over WebSocket: enroll with a token from `holdfast token create`, `hello`, and a
//! `schedule.ack` for every `schedule.set`.
//!
//! Three scenarios: one host, edited 60 times; 500 hosts selected by one schedule, edited 10
//! times; 1,500 hosts, edited 3 times, past the usual open-file soft limit of 1,024. Each round
//! waits 300 ms (with `ACK_QUIET` set, also until the controller is quiet: the last round's
//! status written), writes the schedule file with a new path, then waits for every agent to ack
//! the next version;
//! a latency is the time from just before the write to just after the ack was sent. After the
//! last round the controller's resident memory (`VmRSS`) is read, to size its memory limit.
//!
//! After the rounds it also reads the controller's CPU time over 60 idle seconds (agents
//! connected, each sending a heartbeat and a ping every `welcome.heartbeatSeconds`, 30 s) and then its resident memory per connected agent
//! (the growth since before the agents connected, divided by their number).
//!
//! Last, it kills the controller (SIGKILL), starts it again on the same data and port, and
//! times until it is ready and until every agent, reconnecting with the real agent's backoff
//! (from 1 s, doubling, each wait between half and all of it), has been welcomed back; it
//! counts the connection attempts that failed meanwhile.
//!
//! Run: `cargo bench -p holdfast --bench ack_latency`. Goals: p99 under 250 ms for one host; all
//! 500 acked within 2 s. Other scenarios: `ACK_SCENARIOS=10000:3` (hosts:rounds, comma
//! separated); `HOLDFAST_BIN` runs another `holdfast` binary than the one cargo built.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// After a SIGKILL, from starting the controller again until it was ready, and until
    /// every agent was welcomed back.
    restart_ready: Duration,
    restart_all_back: Duration,
    /// Connection attempts that failed while the controller was away or starting.
    failed_connects: u64,
}

/// How long the controller is watched while idle: two heartbeats of every agent (every 30 s,
/// the controller's default).
const IDLE: Duration = Duration::from_secs(60);

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
        println!(
            "  restart after SIGKILL: ready in {}, all {} agents welcomed back in {} (from the start), {} failed connection attempts",
            ms(self.restart_ready),
            self.hosts,
            ms(self.restart_all_back),
            self.failed_connects,
        );
    }
}

async fn scenario(hosts: usize, rounds: usize) -> Result {
    let (tmp, config, data) = process::workspace("holdfast-ack-bench-");
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
    let (welcomes, mut welcomed) = mpsc::unbounded_channel();
    let failed_connects = Arc::new(AtomicU64::new(0));
    for (host, credential) in names.iter().zip(credentials) {
        let agent = SimulatedAgent {
            port,
            host: host.clone(),
            credential,
            acks: acks.clone(),
            welcomes: welcomes.clone(),
            failed_connects: failed_connects.clone(),
        };
        tokio::spawn(agent.run());
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
        restart_ready: Duration::ZERO,
        restart_all_back: Duration::ZERO,
        failed_connects: 0,
    };
    for round in 1..=rounds {
        // 300 ms after the previous round, or with `ACK_QUIET` from a quiet controller (the
        // previous round's status written).
        tokio::time::sleep(Duration::from_millis(300)).await;
        if std::env::var_os("ACK_QUIET").is_some() {
            quiet(&controller).await;
        }
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

    // Killed and started again on the same data: every agent reconnects with the real
    // agent's backoff.
    drop(controller);
    while welcomed.try_recv().is_ok() {}
    failed_connects.store(0, Ordering::SeqCst);
    let restarted = Instant::now();
    let controller = Controller::start(&process::binary(), &config, &data, port, tmp.path());
    result.restart_ready = restarted.elapsed();
    let mut back = HashSet::new();
    while back.len() < hosts {
        let host = tokio::time::timeout(Duration::from_secs(120), welcomed.recv())
            .await
            .expect("every agent back within 120 s")
            .expect("the agents are running");
        back.insert(host);
    }
    result.restart_all_back = restarted.elapsed();
    result.failed_connects = failed_connects.load(Ordering::SeqCst);
    drop(controller);
    result
}

/// Waits until the controller is quiet (under a tenth of a core over a quarter second: the
/// status of the last change written), at most 10 s.
async fn quiet(controller: &Controller) {
    let window = Duration::from_millis(250);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let before = controller.cpu_seconds();
        tokio::time::sleep(window).await;
        if controller.cpu_seconds() - before < window.as_secs_f64() / 10.0 {
            return;
        }
    }
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

/// An agent as the controller sees it: connects, says hello with the version it applied,
/// acks every `schedule.set`, sends a heartbeat and a ping every `welcome.heartbeatSeconds`; when the connection ends it reconnects
/// with the real agent's backoff (from 1 s, doubling, up to 60 s, each wait between half and
/// all of it).
struct SimulatedAgent {
    port: u16,
    host: String,
    credential: String,
    /// Each ack, with the version, when it was sent.
    acks: mpsc::UnboundedSender<(u64, Instant)>,
    /// Each `welcome`, by host.
    welcomes: mpsc::UnboundedSender<String>,
    failed_connects: Arc<AtomicU64>,
}

impl SimulatedAgent {
    async fn run(self) {
        let mut applied = (0, None);
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.session(&mut applied).await {
                Session::Welcomed => backoff = Duration::from_secs(1),
                Session::Refused => {
                    self.failed_connects.fetch_add(1, Ordering::SeqCst);
                }
                Session::Over => return,
            }
            if self.welcomes.is_closed() {
                return;
            }
            let jitter = 0.5 + rand_fraction(&self.host, backoff);
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    async fn session(&self, applied: &mut (u64, Option<String>)) -> Session {
        let mut request = format!("ws://127.0.0.1:{}{CONNECT_PATH}", self.port)
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.credential)
                .parse()
                .expect("a header"),
        );
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(request).await else {
            return Session::Refused;
        };
        let hello = AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            host: self.host.clone(),
            agent_version: "bench".into(),
            restic_version: Some("0.14.0".into()),
            os: "linux".into(),
            arch: "x86_64".into(),
            applied_schedule_version: applied.0,
            applied_schedule_digest: applied.1.clone(),
            running: Vec::new(),
        });
        if !send(&mut socket, &hello).await {
            return Session::Refused;
        }
        let mut welcomed = false;
        // Until the welcome says how often.
        let mut heartbeat = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    if !send(&mut socket, &AgentMessage::Heartbeat(Heartbeat::default())).await
                        || socket.send(Message::Ping(Vec::new().into())).await.is_err()
                    {
                        break;
                    }
                }
                message = socket.next() => {
                    let Some(Ok(message)) = message else { break };
                    let Message::Text(text) = message else { continue };
                    match serde_json::from_str(&text) {
                        Ok(ControllerMessage::Welcome(welcome)) => {
                            welcomed = true;
                            let every = Duration::from_secs(welcome.heartbeat_seconds.max(1).into());
                            heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                            if self.welcomes.send(self.host.clone()).is_err() {
                                return Session::Over;
                            }
                        }
                        Ok(ControllerMessage::ScheduleSet(set)) => {
                            let ack = AgentMessage::ScheduleAck(ScheduleAck {
                                version: set.version,
                                applied_version: set.version,
                                rejected: None,
                            });
                            if !send(&mut socket, &ack).await {
                                break;
                            }
                            *applied = (set.version, Some(set.digest));
                            if self.acks.send((set.version, Instant::now())).is_err() {
                                return Session::Over;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if welcomed {
            Session::Welcomed
        } else {
            Session::Refused
        }
    }
}

/// How a session ended.
enum Session {
    /// After a welcome: the next wait starts from the first backoff again.
    Welcomed,
    /// Before one: the connection failed or was refused.
    Refused,
    /// The benchmark is over.
    Over,
}

/// A fraction in [0, 0.5) that differs between hosts and waits, as the real agent's random
/// jitter does, without a random-number dependency.
fn rand_fraction(host: &str, backoff: Duration) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (host, backoff, Instant::now()).hash(&mut hasher);
    (hasher.finish() % 1000) as f64 / 2000.0
}

/// Sends `message`; false when the connection is gone.
async fn send<S>(socket: &mut S, message: &AgentMessage) -> bool
where
    S: SinkExt<Message> + Unpin,
{
    let text = serde_json::to_string(message).expect("a message serialises");
    socket.send(Message::text(text)).await.is_ok()
}

/// The one schedule, selecting every host; `round` changes its path, so every plan changes.
fn write_schedule(config: &Path, round: usize) {
    let schedule = format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: bench\nspec:\n  operation: backup\n  cron: \"0 3 1 1 *\"\n  hostSelector:\n    matchLabels:\n      fleet: bench\n  paths: [/srv/round-{round}]\n"
    );
    fs::write(config.join("schedules/bench.yaml"), schedule).expect("schedule file");
}
