//! Shared test parts: real restic repositories, plans, and a fake controller on loopback that
//! speaks the real protocol over a real WebSocket.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use protocol::*;
use tokio::sync::mpsc;

pub const RESTIC: &str = "/usr/bin/restic";
pub const PASSWORD: &str = "correct horse battery staple";
pub const CREDENTIAL: &str = "agent-credential-for-tests";

/// Fails loudly: these tests exist to run against the real restic (`scripts/test` installs it).
pub fn require_restic() {
    assert!(
        Path::new(RESTIC).exists(),
        "{RESTIC} is missing: install Debian's restic (apt-get install restic) to run the agent tests"
    );
}

/// A fresh local restic repository with its password in a file.
pub struct Repo {
    pub url: String,
    pub password_file: PathBuf,
}

impl Repo {
    pub fn init(dir: &Path) -> Repo {
        require_restic();
        std::fs::create_dir_all(dir).unwrap();
        let password_file = dir.join("repo.password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        let url = dir.join("repo").display().to_string();
        let repo = Repo { url, password_file };
        let out = repo.restic(&["init"]);
        assert!(
            out.status.success(),
            "restic init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        repo
    }

    /// Runs restic directly against this repository.
    pub fn restic(&self, args: &[&str]) -> std::process::Output {
        Command::new(RESTIC)
            .args(args)
            .env("RESTIC_REPOSITORY", &self.url)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .output()
            .unwrap()
    }

    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let out = self.restic(&["snapshots", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn resolved(&self, name: &str) -> ResolvedRepo {
        ResolvedRepo {
            name: name.into(),
            url: self.url.clone(),
            password: SecretRef::HostFile {
                path: self.password_file.display().to_string(),
            },
            env: vec![],
            initialize: false,
            initialized_by: None,
        }
    }
}

/// Writes `count` files of pseudo-random bytes (deterministic per seed) under `dir`.
pub fn tree(dir: &Path, count: usize, size: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for i in 0..count {
        let sub = dir.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        let mut bytes = vec![0u8; size];
        rng.fill(&mut bytes);
        std::fs::write(sub.join(format!("f{i}.bin")), bytes).unwrap();
    }
}

pub fn schedule(name: &str, operation: Operation, repo: ResolvedRepo) -> ResolvedSchedule {
    ResolvedSchedule {
        name: name.into(),
        operation,
        cron: "0 0 3 * * *".into(),
        time_zone: "UTC".into(),
        jitter_seconds: 0,
        repo,
        backup: None,
        forget: None,
        check: None,
        drill: None,
        concurrency_policy: ConcurrencyPolicy::Forbid,
        missed_run_policy: MissedRunPolicy::Skip,
        suspend: false,
    }
}

/// A forget keeping the last `keep_last` snapshots of this host.
pub fn forget(name: &str, repo: ResolvedRepo, keep_last: u32) -> ResolvedSchedule {
    ResolvedSchedule {
        forget: Some(ForgetParams {
            retention: Retention {
                keep_last: Some(keep_last),
                ..Retention::default()
            },
            ..ForgetParams::default()
        }),
        ..schedule(name, Operation::Forget, repo)
    }
}

pub fn backup(name: &str, repo: ResolvedRepo, paths: Vec<String>) -> ResolvedSchedule {
    ResolvedSchedule {
        backup: Some(BackupParams {
            paths,
            ..BackupParams::default()
        }),
        ..schedule(name, Operation::Backup, repo)
    }
}

pub fn plan_set(host: &str, version: u64, schedules: Vec<ResolvedSchedule>) -> ScheduleSet {
    ScheduleSet {
        version,
        digest: format!("sha256:test-{version}"),
        plan: HostPlan {
            namespace: "default".into(),
            host: host.into(),
            paused: false,
            schedules,
        },
        secrets: vec![],
    }
}

/// Polls `f` until it returns Some, failing after `limit`. A deadline for a test that would
/// otherwise hang, not a performance assertion.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the fake controller sends down the current connection.
pub enum Out {
    Message(Box<ControllerMessage>),
    Close,
}

#[derive(Default)]
pub struct ControllerState {
    /// Every message received, with the number of the connection it came on.
    pub received: Mutex<Vec<(usize, AgentMessage)>>,
    pub connections: AtomicUsize,
    pub refused_upgrades: AtomicUsize,
    pub auto_ack: AtomicBool,
    /// Protocol version announced in `welcome` instead of this build's.
    pub welcome_protocol: Mutex<Option<u32>>,
    /// When set, `hello` is answered with this error instead of `welcome`.
    pub refuse_hello: Mutex<Option<ErrorCode>>,
    outgoing: Mutex<Option<mpsc::UnboundedSender<Out>>>,
    /// Enrollment tokens accepted once each.
    pub tokens: Mutex<Vec<String>>,
}

/// A controller stand-in on 127.0.0.1 with the real endpoints and the real wire format.
pub struct FakeController {
    pub addr: SocketAddr,
    pub state: Arc<ControllerState>,
    runtime: tokio::runtime::Runtime,
}

impl FakeController {
    pub fn start() -> FakeController {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    pub fn start_on(addr: SocketAddr) -> FakeController {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(ControllerState::default());
        state.auto_ack.store(true, Ordering::SeqCst);
        let app = axum::Router::new()
            .route(CONNECT_PATH, get(connect))
            .route(ENROLL_PATH, post(enroll))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeController {
            addr,
            state,
            runtime,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn send(&self, message: ControllerMessage) {
        let out = self.state.outgoing.lock().unwrap();
        out.as_ref()
            .expect("no agent connected")
            .send(Out::Message(Box::new(message)))
            .unwrap();
    }

    /// Drops the current connection, as a crashed controller or a broken network would.
    pub fn drop_connection(&self) {
        if let Some(tx) = self.state.outgoing.lock().unwrap().take() {
            let _ = tx.send(Out::Close);
        }
    }

    pub fn received(&self) -> Vec<(usize, AgentMessage)> {
        self.state.received.lock().unwrap().clone()
    }

    /// Reports received (with connection numbers).
    pub fn reports(&self) -> Vec<(usize, Report)> {
        self.received()
            .into_iter()
            .filter_map(|(c, m)| match m {
                AgentMessage::Report(r) => Some((c, r)),
                _ => None,
            })
            .collect()
    }

    pub fn wait<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&[(usize, AgentMessage)]) -> Option<T>,
    ) -> T {
        eventually(Duration::from_secs(30), what, || f(&self.received()))
    }

    pub fn shutdown(self) {
        self.runtime.shutdown_background();
    }
}

async fn enroll(State(state): State<Arc<ControllerState>>, body: String) -> Response {
    let Ok(request) = serde_json::from_str::<EnrollRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "not an enrollment request").into_response();
    };
    let mut tokens = state.tokens.lock().unwrap();
    match tokens.iter().position(|t| *t == request.token) {
        Some(i) => {
            tokens.remove(i);
            let answer = EnrollResponse {
                host: "web-1".into(),
                namespace: "default".into(),
                credential: CREDENTIAL.into(),
            };
            (StatusCode::OK, protocol::encode(&answer)).into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "unknown or already used token").into_response(),
    }
}

async fn connect(
    State(state): State<Arc<ControllerState>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let expected = format!("Bearer {CREDENTIAL}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        state.refused_upgrades.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // As strict as a controller may be about frames: an agent's longer messages come in pieces.
    ws.max_frame_size(AGENT_FRAGMENT_BYTES)
        .on_upgrade(move |socket| session(state, socket))
}

async fn session(state: Arc<ControllerState>, mut socket: WebSocket) {
    let conn = state.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let (tx, mut rx) = mpsc::unbounded_channel();
    *state.outgoing.lock().unwrap() = Some(tx);
    let send = |m: &ControllerMessage| Message::Text(protocol::encode(m).into());
    let mut greeted = false;
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                let message: AgentMessage = protocol::decode(text.as_str()).expect("agent sent a valid message");
                state.received.lock().unwrap().push((conn, message.clone()));
                let reply = match &message {
                    AgentMessage::Hello(_) if !greeted => {
                        greeted = true;
                        let refusal = *state.refuse_hello.lock().unwrap();
                        if let Some(code) = refusal {
                            let e = ControllerMessage::Error(ErrorMessage { code, message: "refused by the test".into() });
                            let _ = socket.send(send(&e)).await;
                            return;
                        }
                        let protocol = state.welcome_protocol.lock().unwrap().unwrap_or(PROTOCOL_VERSION);
                        Some(ControllerMessage::Welcome(Welcome {
                            protocol_version: protocol,
                            controller_version: "test".into(),
                            heartbeat_seconds: 1,
                        }))
                    }
                    AgentMessage::Report(r) if state.auto_ack.load(Ordering::SeqCst) => {
                        Some(ControllerMessage::Ack(Ack { seq: r.seq }))
                    }
                    _ => None,
                };
                if let Some(reply) = reply
                    && socket.send(send(&reply)).await.is_err()
                {
                    return;
                }
            }
            out = rx.recv() => match out {
                Some(Out::Message(m)) => if socket.send(send(&m)).await.is_err() { return },
                Some(Out::Close) | None => return,
            }
        }
    }
}

/// The real agent binary, run as a child process.
pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl AgentProcess {
    pub fn start(state_dir: &Path, server: &str) -> AgentProcess {
        Self::start_binary(
            Path::new(env!("CARGO_BIN_EXE_holdfast-agent")),
            state_dir,
            server,
        )
    }

    pub fn start_binary(binary: &Path, state_dir: &Path, server: &str) -> AgentProcess {
        let log = state_dir.with_extension(format!("log{}", fastrand::u32(..)));
        let child = Command::new(binary)
            .args(["run", "--state-dir"])
            .arg(state_dir)
            .args(["--server", server, "--restic", RESTIC])
            .env("HOLDFAST_LOG", "info")
            .env_remove("HOLDFAST_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        AgentProcess { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, as when the OOM killer or a power cut strikes.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes identity.json as `enroll` would, pointing at `server`.
pub fn enrolled_state(dir: &Path, server: &str) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let identity = serde_json::json!({
        "server": server, "host": "web-1", "namespace": "default", "credential": CREDENTIAL
    });
    std::fs::write(state.join("identity.json"), identity.to_string()).unwrap();
    state
}

/// A `command.run` that backs `paths` up to `repo` once, as the controller sends for a Backup.
pub fn backup_request(job: &str, repo: ResolvedRepo, paths: Vec<String>) -> ControllerMessage {
    ControllerMessage::CommandRun(CommandRun {
        job: job.into(),
        request: RunRequest::Resolved(backup("files", repo, paths)),
        secrets: vec![],
    })
}

/// Waits until every report the agent made is acked and its outbox is empty, with a
/// `repo.stats` (the last report of a backup) among them: the backup's work is done.
pub fn wait_backup_done(controller: &FakeController, state_dir: &Path) {
    eventually(
        Duration::from_secs(60),
        "repo.stats and an empty outbox",
        || {
            let stats = controller
                .reports()
                .iter()
                .any(|(_, r)| matches!(r.body, ReportBody::RepoStats(_)));
            let empty = std::fs::read_dir(state_dir.join("outbox"))
                .map(|d| d.count() == 0)
                .unwrap_or(false);
            (stats && empty).then_some(())
        },
    );
}
