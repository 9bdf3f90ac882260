//! The agent hub: enrollment, one WebSocket per agent, schedule pushes, commands, and reports
//! stored before they are acked.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use protocol::{
    AgentMessage, CONNECT_PATH, CommandRun, ControllerMessage, ENROLL_PATH, EnrollRequest,
    EnrollResponse, ErrorCode, ErrorMessage, HostPlan, MAX_FRAME_BYTES, MIN_AGENT_PROTOCOL,
    PROTOCOL_VERSION, ReportBody, ResolvedRepo, RunRequest, ScheduleSet, SecretRef, SecretValue,
    Welcome,
};
use tokio::sync::mpsc;

use super::backend::BackendError;
use super::{Controller, RunEvent, Session, StoreFailure};
use crate::compile::{self, HostKey};
use crate::resources::{Kind, Phase};
use crate::revision::{name_of, namespace_of};
use crate::runs::{self, RunRecord};
use crate::store::{SizePoint, StoreError};
use crate::validate::MAX_ROTATE_PARTS;

/// Read buffer of each agent's WebSocket: agents say little between pushes, and the buffer
/// grows for a larger frame.
const READ_BUFFER: usize = 4 * 1024;
/// The agent must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);
/// What the WebSocket layer reads at most in one frame or message. Above
/// [`MAX_FRAME_BYTES`], so that a frame a little too big is read whole and answered with a
/// clean close; beyond this, the frame is refused from its header.
const TRANSPORT_LIMIT: usize = 4 * MAX_FRAME_BYTES;
/// How long to wait for the agent's answer to a Close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// First wait before storing held-back reports again; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// While the database cannot be written, how often a probe tries a write.
const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Reports one session holds back while the database cannot be written; beyond this the
/// session is closed (the agent keeps them in its outbox and sends them again).
const MAX_QUEUED_REPORTS: usize = 1000;
const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;
/// Plans remembered per host for checking reports, newest first.
const PLANS_KEPT: usize = 8;
/// Bounds on what a report carries; a legitimate agent stays well inside them.
const MAX_NAME_BYTES: usize = 253;
const MAX_TIME_BYTES: usize = 64;
const MAX_TEXT_BYTES: usize = 64 * 1024;
const MAX_PATH_BYTES: usize = 4096;
const MAX_CURRENT_FILES: usize = 100;
const MAX_LOG_LINES: usize = 1000;
const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route(ENROLL_PATH, post(enroll))
        .route(CONNECT_PATH, get(connect))
        .with_state(controller)
}

/// Runs `work`, which reads or writes SQLite, on the blocking pool: a slow or full disk then
/// holds up only the agent it is for, never the threads serving every other agent and the page.
/// `None` when the runtime is shutting down.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => None,
        },
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn enroll(State(controller): State<Arc<Controller>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<EnrollRequest>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body must be JSON: {\"token\": \"...\"}",
        );
    };
    let result = controller.backend.enroll(&request.token).await;
    match result {
        Ok(Ok(enrolled)) => {
            tracing::info!(host = %enrolled.host, "agent enrolled");
            axum::Json(EnrollResponse {
                host: enrolled.host.name,
                namespace: enrolled.host.namespace,
                credential: enrolled.credential,
            })
            .into_response()
        }
        Ok(Err(refused)) => {
            tracing::warn!("enrollment refused: {refused}");
            refuse(StatusCode::UNAUTHORIZED, refused.to_string())
        }
        Err(e) => {
            tracing::error!("enrollment failed: {e}");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the controller cannot read or write its credentials; see its log",
            )
        }
    }
}

async fn connect(
    State(controller): State<Arc<Controller>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let credential = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if let Some(why) = controller.backend.refuses_agents() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let known = controller.backend.authenticate(credential).await;
    let host = match known {
        Ok(Some(host)) => host,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "unknown agent credential; enroll the agent again with a new token from `holdfast token create HOST`",
            );
        }
        Err(e) => {
            tracing::error!("cannot check a credential: {e}");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the controller cannot read its credentials; see its log",
            );
        }
    };
    let max = controller.config.max_agents;
    let full = {
        let state = controller.state();
        // A reconnecting agent replaces its own session.
        state.sessions.len() >= max && !state.sessions.contains_key(&host)
    };
    if full {
        tracing::warn!(host = %host, "refused an agent: {max} agents are connected (--max-agents)");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this controller serves its maximum of {max} agents (--max-agents, or what its open-file limit allows); the agent retries and gets in once another disconnects"
            ),
        );
    }
    match upgrade {
        Ok(upgrade) => upgrade
            // Instead of the default 128 KiB per connection.
            .read_buffer_size(READ_BUFFER)
            .max_message_size(TRANSPORT_LIMIT)
            .max_frame_size(TRANSPORT_LIMIT)
            .on_upgrade(move |socket| session(controller, host, socket)),
        Err(rejection) => rejection.into_response(),
    }
}

async fn send(
    socket: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: &ControllerMessage,
) -> bool {
    socket.send(Message::Text(encoded(message))).await.is_ok()
}

/// A message as the session sends it.
pub(super) fn encoded(message: &ControllerMessage) -> Utf8Bytes {
    protocol::encode(message).into()
}

fn error(code: ErrorCode, message: String) -> ControllerMessage {
    ControllerMessage::Error(ErrorMessage { code, message })
}

const BINARY_FRAME: &str = "binary frames are not part of the protocol; send JSON text frames";

/// One frame from the agent, as the session sees it.
enum Frame {
    Text(Utf8Bytes),
    /// Larger than [`MAX_FRAME_BYTES`]: answered with a Close frame. `drained` when the whole
    /// frame was read, so that the agent's answer to the Close can be waited for.
    TooBig {
        reason: String,
        drained: bool,
    },
    Binary,
    /// Ping or pong.
    Control,
    /// The agent closed the connection, or it broke.
    Closed,
}

fn frame(item: Option<Result<Message, axum::Error>>) -> Frame {
    let too_big = |bytes: usize| Frame::TooBig {
        reason: format!("frame of {bytes} bytes is larger than the {MAX_FRAME_BYTES}-byte limit"),
        drained: true,
    };
    match item {
        Some(Ok(Message::Text(text))) if text.len() > MAX_FRAME_BYTES => too_big(text.len()),
        Some(Ok(Message::Text(text))) => Frame::Text(text),
        Some(Ok(Message::Binary(data))) if data.len() > MAX_FRAME_BYTES => too_big(data.len()),
        Some(Ok(Message::Binary(_))) => Frame::Binary,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Frame::Control,
        Some(Ok(Message::Close(_))) | None => Frame::Closed,
        // Over the transport limit: tungstenite refused the frame from its header, unread.
        // axum does not expose tungstenite's error type, only its text.
        Some(Err(e)) if e.to_string().starts_with("Space limit exceeded") => Frame::TooBig {
            reason: format!("frame is larger than the {MAX_FRAME_BYTES}-byte limit"),
            drained: false,
        },
        Some(Err(e)) => {
            tracing::debug!("agent connection failed: {e}");
            Frame::Closed
        }
    }
}

/// Ends a session whose agent sent a frame over the limit: a Close frame with code 1009
/// (Message Too Big) and the reason, then, when the frame was read whole, the agent's own
/// Close, so that it reads ours before the connection ends.
async fn close_too_big(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    stream: &mut futures_util::stream::SplitStream<WebSocket>,
    host: &HostKey,
    reason: String,
    drained: bool,
) {
    tracing::warn!(host = %host, "closed the agent's connection: {reason}");
    let close = Message::Close(Some(CloseFrame {
        code: protocol::CLOSE_MESSAGE_TOO_BIG,
        reason: reason.into(),
    }));
    if sink.send(close).await.is_err() || !drained {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(message)) = stream.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn session(controller: Arc<Controller>, host: HostKey, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let first = match tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await {
        Ok(item) => frame(item),
        Err(_) => Frame::Closed,
    };
    let hello = match first {
        Frame::Text(text) => protocol::decode::<AgentMessage>(&text).ok(),
        Frame::TooBig { reason, drained } => {
            close_too_big(&mut sink, &mut stream, &host, reason, drained).await;
            return;
        }
        Frame::Binary => {
            send(
                &mut sink,
                &error(ErrorCode::BadMessage, BINARY_FRAME.into()),
            )
            .await;
            return;
        }
        Frame::Control | Frame::Closed => None,
    };
    let hello = match hello {
        Some(AgentMessage::Hello(hello)) => hello,
        _ => {
            let refusal = error(
                ErrorCode::BadMessage,
                "the first message must be a hello".into(),
            );
            send(&mut sink, &refusal).await;
            return;
        }
    };
    let refusal = if hello.protocol_version < MIN_AGENT_PROTOCOL {
        Some(error(
            ErrorCode::ProtocolTooOld,
            format!(
                "the agent speaks protocol {}, this controller needs at least {MIN_AGENT_PROTOCOL}: upgrade holdfast-agent on {host}",
                hello.protocol_version
            ),
        ))
    } else if hello.protocol_version > PROTOCOL_VERSION {
        Some(error(
            ErrorCode::ProtocolTooNew,
            format!(
                "the agent speaks protocol {}, newer than this controller's protocol {PROTOCOL_VERSION}: upgrade the Holdfast controller (now {})",
                hello.protocol_version,
                env!("CARGO_PKG_VERSION")
            ),
        ))
    } else if hello.host != host.name {
        Some(error(
            ErrorCode::WrongHost,
            format!("this credential belongs to host {host}, not {}", hello.host),
        ))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        tracing::warn!(host = %host, "refused an agent: {refusal:?}");
        send(&mut sink, &refusal).await;
        return;
    }
    let welcome = ControllerMessage::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        controller_version: env!("CARGO_PKG_VERSION").into(),
        heartbeat_seconds: controller.config.heartbeat.as_secs().max(1) as u32,
    });
    if !send(&mut sink, &welcome).await {
        return;
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = controller
        .next_session
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    {
        let mut state = controller.state();
        // A newer connection replaces an older one: dropping its sender ends it.
        state.sessions.insert(
            host.clone(),
            Session {
                id,
                tx,
                last_heard: Instant::now(),
                offered: None,
            },
        );
        // A new session owes no ack for what an older one was sent.
        controller.answered(&mut state, &host);
        let agent = state.agents.entry(host.clone()).or_default();
        agent.agent_version = Some(hello.agent_version.clone());
        agent.restic_version = hello.restic_version.clone();
        agent.protocol_version = Some(hello.protocol_version);
        agent.os = Some(hello.os.clone());
        agent.arch = Some(hello.arch.clone());
        agent.applied_version = Some(hello.applied_schedule_version).filter(|v| *v > 0);
        agent.applied_digest = hello.applied_schedule_digest.clone();
        agent.rejected = None;
        agent.last_seen = Some(Utc::now());
    }
    tracing::info!(host = %host, agent = %hello.agent_version, applied = hello.applied_schedule_version, "agent connected");
    let (c, h) = (controller.clone(), host.clone());
    let started = off_thread(move || {
        push(&c, &h);
        super::scrub::send_cursors(&c, &h);
        dispatch(&c, &h);
        // Last: what the reconcile it triggers adopts comes after what was due already.
        c.agent_changed(&h);
    })
    .await;
    if started.is_none() {
        return;
    }

    let grace = controller.config.offline_after;
    let mut last_heard = Instant::now();
    let mut inbox = Inbox::default();
    'session: loop {
        let retry_at = inbox.retry_at;
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(text) => if sink.send(Message::Text(text)).await.is_err() { break },
                None => break,
            },
            incoming = stream.next() => {
                let text = match frame(incoming) {
                    Frame::Text(text) => text,
                    Frame::Closed => break,
                    Frame::TooBig { reason, drained } => {
                        close_too_big(&mut sink, &mut stream, &host, reason, drained).await;
                        break;
                    }
                    Frame::Control => { last_heard = Instant::now(); heard(&controller, &host, id); continue }
                    Frame::Binary => {
                        last_heard = Instant::now();
                        heard(&controller, &host, id);
                        inbox.log_refusal(&host, "binary", BINARY_FRAME);
                        if !send(&mut sink, &error(ErrorCode::BadMessage, BINARY_FRAME.into())).await { break }
                        continue
                    }
                };
                last_heard = Instant::now();
                heard(&controller, &host, id);
                let replies = match protocol::decode::<AgentMessage>(&text) {
                    // Heard above; nothing to store or answer, so no trip to the blocking pool.
                    Ok(AgentMessage::Heartbeat(_)) => continue,
                    Ok(message) => {
                        let (c, h, size) = (controller.clone(), host.clone(), text.len());
                        let mut taken = std::mem::take(&mut inbox);
                        let Some((back, replies)) = off_thread(move || {
                            let replies = match message {
                                AgentMessage::Report(protocol::Report { seq, body }) => {
                                    taken.receive(&c, &h, seq, body, size)
                                }
                                message => Ok(handle(&c, &h, &mut taken, message).into_iter().collect()),
                            };
                            (taken, replies)
                        })
                        .await else { break };
                        inbox = back;
                        match replies {
                            Ok(replies) => replies,
                            Err(full) => {
                                tracing::warn!(host = %host, "{full}; closing the connection, the agent sends them again when it reconnects");
                                break
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(host = %host, "undecodable message: {e}");
                        vec![error(ErrorCode::BadMessage, format!("cannot read that message: {e}"))]
                    }
                };
                for reply in &replies {
                    if !send(&mut sink, reply).await { break 'session }
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now).into()), if retry_at.is_some() => {
                let (c, h) = (controller.clone(), host.clone());
                let mut taken = std::mem::take(&mut inbox);
                let Some((back, replies)) = off_thread(move || {
                    let replies = taken.retry(&c, &h);
                    (taken, replies)
                })
                .await else { break };
                inbox = back;
                for reply in &replies {
                    if !send(&mut sink, reply).await { break 'session }
                }
            }
            _ = tokio::time::sleep_until((last_heard + grace).into()) => {
                tracing::warn!(host = %host, "agent silent for {grace:?}; closing its connection");
                break;
            }
        }
    }
    if !inbox.queue.is_empty() {
        tracing::warn!(host = %host, reports = inbox.queue.len(), "session ended with reports not yet stored; the agent keeps them and sends them again");
    }
    {
        let mut state = controller.state();
        if state.sessions.get(&host).is_some_and(|s| s.id == id) {
            state.sessions.remove(&host);
            controller.answered(&mut state, &host);
        }
    }
    let (c, h) = (controller.clone(), host.clone());
    off_thread(move || c.agent_changed(&h)).await;
    tracing::info!(host = %host, "agent disconnected");
}

fn heard(controller: &Controller, host: &HostKey, id: u64) {
    let mut state = controller.state();
    if let Some(session) = state.sessions.get_mut(host).filter(|s| s.id == id) {
        session.last_heard = Instant::now();
    }
    let now = Utc::now();
    let Some(agent) = state.agents.get_mut(host) else {
        return;
    };
    let stepped = crate::status::last_seen_moved(agent.last_seen, now);
    agent.last_seen = Some(now);
    // Host status shows lastSeen to a step: the host is recomputed when that moves, with the
    // next pass (at most a minute away) rather than one pass per heartbeat, as a fleet's
    // heartbeats cross the step within one interval.
    if stepped {
        state.restatus.hosts.insert(host.clone());
    }
}

/// Handles one message that is not a report; returns the reply, if any.
fn handle(
    controller: &Controller,
    host: &HostKey,
    inbox: &mut Inbox,
    message: AgentMessage,
) -> Option<ControllerMessage> {
    match message {
        AgentMessage::Hello(_) => Some(error(
            ErrorCode::BadMessage,
            "hello was already said".into(),
        )),
        AgentMessage::Heartbeat(_) => None,
        AgentMessage::ScheduleAck(ack) => {
            {
                let mut state = controller.state();
                if let Err(refusal) = check_ack(&state, host, &ack) {
                    drop(state);
                    controller.metrics.report_refused(refusal.reason());
                    let message = format!("schedule.ack refused: {refusal}");
                    inbox.log_refusal(host, refusal.reason(), &message);
                    return Some(error(ErrorCode::Refused, message));
                }
                let agent = state.agents.entry(host.clone()).or_default();
                agent.applied_version = Some(ack.applied_version).filter(|v| *v > 0);
                agent.rejected = ack.rejected.clone();
                controller.answered(&mut state, host);
            }
            match &ack.rejected {
                Some(why) => {
                    tracing::warn!(host = %host, version = ack.version, "agent rejected the schedule: {why}")
                }
                None => {
                    tracing::info!(host = %host, version = ack.applied_version, "agent applied the schedule")
                }
            }
            controller.agent_changed(host);
            None
        }
        AgentMessage::Report(_) => None,
    }
}

/// The reports of one session: stored and acked in the order they came, each once; while the
/// database cannot be written they wait here (in order, unacked) and are retried.
#[derive(Default)]
struct Inbox {
    queue: VecDeque<Queued>,
    /// Frame bytes of the queued reports.
    bytes: usize,
    /// When to try storing the queue again.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Refusal reasons already logged in this session.
    logged: HashSet<&'static str>,
}

struct Queued {
    seq: u64,
    body: ReportBody,
    bytes: usize,
}

/// Too many reports wait for the database.
#[derive(Debug, thiserror::Error)]
#[error("{reports} reports ({bytes} bytes) are waiting for the database to accept writes")]
struct InboxFull {
    reports: usize,
    bytes: usize,
}

impl Inbox {
    /// A report from the agent: stored and acked now, or queued behind those still waiting.
    fn receive(
        &mut self,
        controller: &Arc<Controller>,
        host: &HostKey,
        seq: u64,
        body: ReportBody,
        bytes: usize,
    ) -> Result<Vec<ControllerMessage>, InboxFull> {
        if self.queue.len() >= MAX_QUEUED_REPORTS || self.bytes + bytes > MAX_QUEUED_BYTES {
            return Err(InboxFull {
                reports: self.queue.len(),
                bytes: self.bytes,
            });
        }
        self.queue.push_back(Queued { seq, body, bytes });
        self.bytes += bytes;
        if self.queue.len() > 1 {
            // Behind a report that waits for the database: order is kept.
            return Ok(Vec::new());
        }
        Ok(self.drain(controller, host))
    }

    /// Time to try the waiting reports again.
    fn retry(&mut self, controller: &Arc<Controller>, host: &HostKey) -> Vec<ControllerMessage> {
        self.retry_at = None;
        self.drain(controller, host)
    }

    /// Stores the queue from the front until a write fails; the replies to send, in order.
    fn drain(&mut self, controller: &Arc<Controller>, host: &HostKey) -> Vec<ControllerMessage> {
        let mut replies = Vec::new();
        let held_back = self.retry_at.is_some() || self.backoff > Duration::ZERO;
        let mut stored = 0usize;
        while let Some(front) = self.queue.front() {
            let seq = front.seq;
            match ingest(controller, host, seq, &front.body) {
                Ok(()) => {
                    stored += 1;
                    store_write_worked(controller);
                    replies.push(ControllerMessage::Ack(protocol::Ack { seq }));
                }
                Err(IngestError::Refused(refusal)) => {
                    controller.metrics.report_refused(refusal.reason());
                    let message = format!(
                        "report {seq} ({}) refused, acked so that it leaves the outbox: {refusal}",
                        report_type(&front.body)
                    );
                    self.log_refusal(host, refusal.reason(), &message);
                    replies.push(error(ErrorCode::Refused, message));
                    replies.push(ControllerMessage::Ack(protocol::Ack { seq }));
                }
                Err(IngestError::Store(e)) => {
                    // Not acked: kept here and retried; the agent keeps it in its outbox too.
                    if !held_back {
                        tracing::error!(host = %host, seq, "cannot store a report, holding it and those after it and retrying: {e}");
                    }
                    store_write_failed(controller, host, &e);
                    self.backoff = if self.backoff == Duration::ZERO {
                        FIRST_RETRY
                    } else {
                        (self.backoff * 2).min(MAX_RETRY)
                    };
                    self.retry_at = Some(Instant::now() + self.backoff);
                    break;
                }
            }
            if let Some(done) = self.queue.pop_front() {
                self.bytes -= done.bytes;
            }
        }
        if stored > 0 {
            controller.touch();
        }
        if self.queue.is_empty() {
            if held_back {
                tracing::info!(host = %host, "stored the reports held back while the database could not be written");
            }
            self.backoff = Duration::ZERO;
            self.retry_at = None;
        }
        replies
    }

    /// Logs a refusal once per session and reason: an agent that keeps sending the same
    /// thing does not flood the log (the metric counts every one).
    fn log_refusal(&mut self, host: &HostKey, reason: &'static str, message: &str) {
        if self.logged.insert(reason) {
            tracing::warn!(host = %host, reason, "refused a message from the agent (logged once per session and reason): {message}");
        }
    }
}

fn report_type(body: &ReportBody) -> &'static str {
    match body {
        ReportBody::JobStarted(_) => "job.started",
        ReportBody::JobProgress(_) => "job.progress",
        ReportBody::JobLog(_) => "job.log",
        ReportBody::JobFinished(_) => "job.finished",
        ReportBody::SnapshotsReport(_) => "snapshots.report",
        ReportBody::RepoStats(_) => "repo.stats",
    }
}

/// A write to the database failed: `/readyz`, the metrics and [`Controller::store_failing`]
/// say so until a write works again. The first failure starts a probe, so that recovery is
/// seen even when no agent has a report waiting.
fn store_write_failed(controller: &Arc<Controller>, host: &HostKey, error: &StoreError) {
    controller.metrics.store_write_failed();
    let first = {
        let mut failure = controller.store_failure();
        let first = failure.is_none();
        match failure.as_mut() {
            Some(f) => f.error = error.to_string(),
            None => {
                *failure = Some(StoreFailure {
                    since: Utc::now(),
                    error: error.to_string(),
                    host: host.clone(),
                })
            }
        }
        first
    };
    if first {
        controller.metrics.set_store_write_failing(true);
        tracing::error!("the database cannot be written: {error}");
        tokio::spawn(probe_store(controller.clone()));
    }
}

/// A write to the database worked.
fn store_write_worked(controller: &Controller) {
    if controller.store_failure().take().is_some() {
        controller.metrics.set_store_write_failing(false);
        tracing::info!("the database can be written again");
    }
}

/// While writes fail, rewrites one agent's record (the same values) now and then, to see
/// when writing works again.
async fn probe_store(controller: Arc<Controller>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(host) = controller.store_failure().as_ref().map(|f| f.host.clone()) else {
            return;
        };
        let Some(record) = controller.state().agents.get(&host).cloned() else {
            continue;
        };
        let result = controller.store().save_agent(&host, &record);
        match result {
            Ok(()) => {
                store_write_worked(&controller);
                return;
            }
            Err(e) => {
                controller.metrics.store_write_failed();
                if let Some(f) = controller.store_failure().as_mut() {
                    f.error = e.to_string();
                }
            }
        }
    }
}

/// Why a report or a `schedule.ack` was refused; nothing of it is stored.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{field} is {bytes} bytes, more than the {limit} allowed")]
    TooLong {
        field: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("{field} has {count} entries, more than the {limit} allowed")]
    TooMany {
        field: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("the job id is empty")]
    EmptyJob,
    #[error("repository {repo} is not used by the plan of {host}")]
    RepoNotInPlan { repo: String, host: HostKey },
    #[error("schedule {schedule} is not in the plan of {host}")]
    ScheduleNotInPlan { schedule: String, host: HostKey },
    #[error("schedule {schedule} uses repository {planned} in the plan of {host}, not {repo}")]
    WrongRepo {
        schedule: String,
        repo: String,
        planned: String,
        host: HostKey,
    },
    #[error("a scheduled run must name its schedule")]
    NoSchedule,
    #[error("no run request with job id {job} was sent to {host}")]
    UnknownCommand { job: String, host: HostKey },
    #[error("{field} {value:?} is not an RFC 3339 time")]
    BadTime { field: &'static str, value: String },
    #[error("the run finished at {finished}, before it started at {started}")]
    FinishedBeforeStarted { started: String, finished: String },
    #[error(
        "a {operation} cannot have read part {part} of the repository's data: only a check reads parts, from 1 to at most {MAX_ROTATE_PARTS}"
    )]
    BadScrubPart {
        operation: &'static str,
        part: protocol::ScrubPart,
    },
    #[error(
        "it says version {version} was applied, but this controller offered {host} at most version {highest}"
    )]
    UnofferedVersion {
        version: u64,
        highest: u64,
        host: HostKey,
    },
    #[error("it accepts version {version} but says version {applied} is applied")]
    AckMismatch { version: u64, applied: u64 },
}

/// Every `reason` of [`Refusal::reason`]: `/metrics` shows each from the start, at 0, so that
/// the first refusal is an increase an alert sees.
pub const REFUSAL_REASONS: [&str; 8] = [
    "oversize",
    "repo_not_in_plan",
    "schedule_not_in_plan",
    "unknown_job",
    "bad_time",
    "finished_before_started",
    "unoffered_version",
    "bad_scrub_part",
];

impl Refusal {
    /// The `reason` label of `holdfast_reports_refused_total`, one of [`REFUSAL_REASONS`].
    fn reason(&self) -> &'static str {
        match self {
            Refusal::TooLong { .. } | Refusal::TooMany { .. } | Refusal::EmptyJob => "oversize",
            Refusal::RepoNotInPlan { .. } | Refusal::WrongRepo { .. } => "repo_not_in_plan",
            Refusal::ScheduleNotInPlan { .. } | Refusal::NoSchedule => "schedule_not_in_plan",
            Refusal::UnknownCommand { .. } => "unknown_job",
            Refusal::BadTime { .. } => "bad_time",
            Refusal::FinishedBeforeStarted { .. } => "finished_before_started",
            Refusal::UnofferedVersion { .. } | Refusal::AckMismatch { .. } => "unoffered_version",
            Refusal::BadScrubPart { .. } => "bad_scrub_part",
        }
    }
}

/// Why a report was not stored: refused (acked anyway), or the database failed (not acked).
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn limit(field: &'static str, text: &str, limit: usize) -> Result<(), Refusal> {
    if text.len() > limit {
        return Err(Refusal::TooLong {
            field,
            bytes: text.len(),
            limit,
        });
    }
    Ok(())
}

fn limit_opt(field: &'static str, text: Option<&String>, max: usize) -> Result<(), Refusal> {
    text.map_or(Ok(()), |t| limit(field, t, max))
}

fn count(field: &'static str, count: usize, limit: usize) -> Result<(), Refusal> {
    if count > limit {
        return Err(Refusal::TooMany {
            field,
            count,
            limit,
        });
    }
    Ok(())
}

fn job_id(job: &str) -> Result<(), Refusal> {
    if job.is_empty() {
        return Err(Refusal::EmptyJob);
    }
    limit("job", job, protocol::MAX_JOB_ID_BYTES)
}

fn time(field: &'static str, text: &str) -> Result<chrono::DateTime<Utc>, Refusal> {
    limit(field, text, MAX_TIME_BYTES)?;
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.to_utc())
        .map_err(|_| Refusal::BadTime {
            field,
            value: text.to_string(),
        })
}

/// What a report may carry whatever the plan: bounded strings and lists, readable times, a
/// finish not before its start.
fn check_report(body: &ReportBody) -> Result<(), Refusal> {
    match body {
        ReportBody::JobStarted(s) => {
            job_id(&s.job)?;
            limit_opt("schedule", s.schedule.as_ref(), MAX_NAME_BYTES)?;
            limit("repo", &s.repo, MAX_NAME_BYTES)?;
            if let Some(at) = &s.scheduled_at {
                time("scheduledAt", at)?;
            }
            time("startedAt", &s.started_at)?;
        }
        ReportBody::JobProgress(p) => {
            job_id(&p.job)?;
            count("currentFiles", p.current_files.len(), MAX_CURRENT_FILES)?;
            for file in &p.current_files {
                limit("currentFiles[]", file, MAX_PATH_BYTES)?;
            }
        }
        ReportBody::JobLog(log) => {
            job_id(&log.job)?;
            count("lines", log.lines.len(), MAX_LOG_LINES)?;
            for line in &log.lines {
                limit("lines[].source", &line.source, MAX_NAME_BYTES)?;
                limit("lines[].line", &line.line, MAX_LOG_LINE_BYTES)?;
            }
        }
        ReportBody::JobFinished(f) => {
            job_id(&f.job)?;
            limit_opt("schedule", f.schedule.as_ref(), MAX_NAME_BYTES)?;
            limit("repo", &f.repo, MAX_NAME_BYTES)?;
            limit_opt("reason", f.reason.as_ref(), MAX_NAME_BYTES)?;
            limit_opt("message", f.message.as_ref(), MAX_TEXT_BYTES)?;
            limit_opt("snapshotId", f.snapshot_id.as_ref(), MAX_NAME_BYTES)?;
            if let Some(part) = f.scrub_part
                && (f.operation != protocol::JobOperation::Check
                    || !part.is_valid()
                    || part.parts > MAX_ROTATE_PARTS)
            {
                return Err(Refusal::BadScrubPart {
                    operation: f.operation.as_str(),
                    part,
                });
            }
            if let Some(d) = &f.drill {
                count(
                    "drill.differences",
                    d.differences.len(),
                    protocol::MAX_DRILL_DIFFERENCES,
                )?;
                for x in &d.differences {
                    limit("drill.differences[].path", &x.path, MAX_PATH_BYTES)?;
                    limit("drill.differences[].reason", &x.reason, MAX_LOG_LINE_BYTES)?;
                }
            }
            if let Some(at) = &f.scheduled_at {
                time("scheduledAt", at)?;
            }
            let finished = time("finishedAt", &f.finished_at)?;
            if let Some(at) = &f.started_at {
                let started = time("startedAt", at)?;
                if finished < started {
                    return Err(Refusal::FinishedBeforeStarted {
                        started: at.clone(),
                        finished: f.finished_at.clone(),
                    });
                }
            }
        }
        ReportBody::SnapshotsReport(r) => {
            limit("repo", &r.repo, MAX_NAME_BYTES)?;
            for s in &r.snapshots {
                limit("snapshots[].id", &s.id, MAX_NAME_BYTES)?;
                limit("snapshots[].time", &s.time, MAX_TIME_BYTES)?;
                limit("snapshots[].hostname", &s.hostname, MAX_NAME_BYTES)?;
                for p in &s.paths {
                    limit("snapshots[].paths[]", p, MAX_PATH_BYTES)?;
                }
                for t in &s.tags {
                    limit("snapshots[].tags[]", t, MAX_PATH_BYTES)?;
                }
            }
        }
        ReportBody::RepoStats(s) => limit("repo", &s.repo, MAX_NAME_BYTES)?,
    }
    Ok(())
}

/// What one host may report about beyond its desired plan, in memory.
#[derive(Default)]
pub(super) struct Scope {
    /// Schedules (name → repo) of the newest plans pushed to the host, by version.
    plans: BTreeMap<u64, Arc<BTreeMap<String, String>>>,
    /// Repos of run requests dispatched to the host, and of its runs already recorded.
    repos: HashSet<String>,
}

/// Keeps the schedules of a plan the host is given, for checking its reports.
fn remember_plan(state: &mut super::State, host: &HostKey, version: u64, plan: &HostPlan) {
    let scope = state.scopes.entry(host.clone()).or_default();
    if scope.plans.contains_key(&version) {
        return;
    }
    let schedules = plan
        .schedules
        .iter()
        .map(|s| (s.name.clone(), s.repo.name.clone()))
        .collect();
    scope.plans.insert(version, Arc::new(schedules));
    while scope.plans.len() > PLANS_KEPT {
        scope.plans.pop_first();
    }
}

/// The agent says it runs a version whose plan this controller does not hold (it was replaced
/// before this process started): its reports cannot be checked against a plan.
fn runs_unknown_plan(state: &super::State, host: &HostKey) -> bool {
    let Some(applied) = state.agents.get(host).and_then(|a| a.applied_version) else {
        return false;
    };
    let desired = state.versions.get(host).map(|v| v.version);
    Some(applied) != desired
        && !state
            .scopes
            .get(host)
            .is_some_and(|s| s.plans.contains_key(&applied))
}

/// Every (schedule, repo) of the plans the host may run: the desired one and those pushed.
fn planned<'a>(
    state: &'a super::State,
    host: &HostKey,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    let desired = state
        .fleet
        .hosts
        .get(host)
        .into_iter()
        .flat_map(|c| &c.plan.schedules)
        .map(|s| (s.name.as_str(), s.repo.name.as_str()));
    let pushed = state
        .scopes
        .get(host)
        .into_iter()
        .flat_map(|s| s.plans.values())
        .flat_map(|p| p.iter())
        .map(|(s, r)| (s.as_str(), r.as_str()));
    desired.chain(pushed)
}

/// A run the controller has no record of: it must be of a schedule in the host's plan, with
/// that schedule's repo. Runs the controller asks for are recorded before they are sent.
fn check_new_run(
    state: &super::State,
    host: &HostKey,
    job: &str,
    trigger: protocol::Trigger,
    operation: protocol::JobOperation,
    schedule: Option<&str>,
    repo: &str,
) -> Result<(), Refusal> {
    if trigger == protocol::Trigger::Command || operation == protocol::JobOperation::Restore {
        return Err(Refusal::UnknownCommand {
            job: job.to_string(),
            host: host.clone(),
        });
    }
    let Some(schedule) = schedule else {
        return Err(Refusal::NoSchedule);
    };
    let mut other = None;
    for (name, planned_repo) in planned(state, host) {
        if name == schedule {
            if planned_repo == repo {
                return Ok(());
            }
            other = Some(planned_repo);
        }
    }
    if runs_unknown_plan(state, host) {
        return Ok(());
    }
    Err(match other {
        Some(planned) => Refusal::WrongRepo {
            schedule: schedule.to_string(),
            repo: repo.to_string(),
            planned: planned.to_string(),
            host: host.clone(),
        },
        None => Refusal::ScheduleNotInPlan {
            schedule: schedule.to_string(),
            host: host.clone(),
        },
    })
}

/// A repository report: the repo must be one the host's plans use, or one of its recorded runs.
fn check_repo(state: &super::State, host: &HostKey, repo: &str) -> Result<(), Refusal> {
    let known = planned(state, host).any(|(_, r)| r == repo)
        || state
            .scopes
            .get(host)
            .is_some_and(|s| s.repos.contains(repo))
        || runs_unknown_plan(state, host);
    if known {
        Ok(())
    } else {
        Err(Refusal::RepoNotInPlan {
            repo: repo.to_string(),
            host: host.clone(),
        })
    }
}

/// A `schedule.ack` that accepts a version must name one this controller offered; one that
/// rejects the offer is recorded whatever it runs (a controller that lost its database offers
/// lower versions than the agent has, and that must show as drift with the agent's reason).
fn check_ack(
    state: &super::State,
    host: &HostKey,
    ack: &protocol::ScheduleAck,
) -> Result<(), Refusal> {
    limit_opt("rejected", ack.rejected.as_ref(), MAX_TEXT_BYTES)?;
    if ack.rejected.is_some() {
        return Ok(());
    }
    if ack.applied_version != ack.version {
        return Err(Refusal::AckMismatch {
            version: ack.version,
            applied: ack.applied_version,
        });
    }
    let desired = state.versions.get(host).map_or(0, |v| v.version);
    let pushed = state
        .scopes
        .get(host)
        .and_then(|s| s.plans.keys().next_back().copied())
        .unwrap_or(0);
    let highest = desired.max(pushed);
    if ack.applied_version > highest {
        return Err(Refusal::UnofferedVersion {
            version: ack.applied_version,
            highest,
            host: host.clone(),
        });
    }
    Ok(())
}

/// Checks one report against what the host may report about, then stores it; idempotent, so a
/// resent report changes nothing.
fn ingest(
    controller: &Controller,
    host: &HostKey,
    seq: u64,
    body: &ReportBody,
) -> Result<(), IngestError> {
    check_report(body)?;
    // Checked against the plans before the database is locked (the state lock is never taken
    // while holding the database's); used only when the run is new.
    let (verdict, scrub_part) = {
        let state = controller.state();
        let scrub_part = match body {
            ReportBody::JobFinished(f) => super::scrub::counted_part(&state, host, f),
            _ => None,
        };
        let verdict = match body {
            ReportBody::JobStarted(s) => check_new_run(
                &state,
                host,
                &s.job,
                s.trigger,
                s.operation,
                s.schedule.as_deref(),
                &s.repo,
            ),
            ReportBody::JobFinished(f) => check_new_run(
                &state,
                host,
                &f.job,
                f.trigger,
                f.operation,
                f.schedule.as_deref(),
                &f.repo,
            ),
            ReportBody::SnapshotsReport(r) => check_repo(&state, host, &r.repo),
            ReportBody::RepoStats(s) => check_repo(&state, host, &s.repo),
            ReportBody::JobProgress(_) | ReportBody::JobLog(_) => Ok(()),
        };
        (verdict, scrub_part)
    };
    let now = Utc::now();
    let mut store = controller.store();
    let changed = |run: &RunRecord| RunEvent::Changed {
        namespace: run.namespace.clone(),
        name: run.name.clone(),
    };
    // The repo of a recorded run: the host may report on it.
    let mut run_repo = None;
    // A repo's cycle of rotating checks that this report moved on.
    let mut scrubbed = None;
    let event = match body {
        ReportBody::JobStarted(started) => {
            let existing = store.run_by_job(host, &started.job)?;
            match &existing {
                None => verdict?,
                Some(run) => run_repo = run.repo.clone().or(Some(started.repo.clone())),
            }
            runs::started(existing, host, started, now)
                .map(|run| store.save_run(&run).map(|_| changed(&run)))
                .transpose()?
        }
        ReportBody::JobProgress(progress) => {
            let existing = store.run_by_job(host, &progress.job)?;
            runs::progress(existing, progress)
                .map(|run| store.save_run(&run).map(|_| changed(&run)))
                .transpose()?
        }
        ReportBody::JobFinished(finished) => {
            let existing = store.run_by_job(host, &finished.job)?;
            match &existing {
                None => verdict?,
                Some(run) => {
                    run_repo = run.repo.clone().or(Some(finished.repo.clone()));
                    if let (None, Some(started)) = (&finished.started_at, run.started_at) {
                        let at = time("finishedAt", &finished.finished_at)?;
                        if at < started {
                            return Err(Refusal::FinishedBeforeStarted {
                                started: started.to_rfc3339(),
                                finished: finished.finished_at.clone(),
                            }
                            .into());
                        }
                    }
                }
            }
            match runs::finished(existing, host, finished, now) {
                Some(run) => {
                    store.save_run(&run)?;
                    if let Some(part) = scrub_part.filter(|_| run.phase == Phase::Succeeded) {
                        let at = run.finished_at.unwrap_or(now);
                        let cycle = store.record_scrub(
                            &host.namespace,
                            &finished.repo,
                            &host.name,
                            part,
                            at,
                        )?;
                        scrubbed = Some((finished.repo.clone(), cycle));
                    }
                    controller.metrics.job_finished(&run);
                    // The Host's last backup changed: in Kubernetes mode, its reconcile says so.
                    controller.host_changed(host);
                    Some(changed(&run))
                }
                None => None,
            }
        }
        ReportBody::JobLog(log) => match store.run_by_job(host, &log.job)? {
            Some(run) => {
                let lines: Vec<String> = log.lines.iter().map(|l| l.line.clone()).collect();
                store.append_log(&run, seq, &lines)?;
                Some(RunEvent::Log {
                    namespace: run.namespace,
                    name: run.name,
                    lines,
                })
            }
            None => None,
        },
        ReportBody::SnapshotsReport(report) => {
            verdict?;
            let latest = report
                .snapshots
                .iter()
                .filter_map(|s| chrono::DateTime::parse_from_rfc3339(&s.time).ok())
                .map(|t| t.to_utc())
                .max();
            store.record_snapshots(
                &host.namespace,
                &report.repo,
                &host.name,
                report.snapshots.len() as u64,
                latest,
            )?;
            store.replace_snapshots(
                &host.namespace,
                &host.name,
                &report.repo,
                report.snapshots.clone(),
            )?;
            None
        }
        ReportBody::RepoStats(stats) => {
            verdict?;
            let point = SizePoint {
                at: now,
                total_size: stats.total_size,
                uncompressed_size: stats.total_uncompressed_size,
                snapshots: stats.snapshots_count,
            };
            store.record_repo_size(&host.namespace, &stats.repo, &point)?;
            None
        }
    };
    drop(store);
    if let Some(repo) = run_repo.filter(|r| !r.is_empty()) {
        let mut state = controller.state();
        let scope = state.scopes.entry(host.clone()).or_default();
        if !scope.repos.contains(&repo) {
            scope.repos.insert(repo);
        }
    }
    if let Some((repo, cycle)) = scrubbed {
        super::scrub::advanced(controller, &host.namespace, &repo, &cycle);
    }
    if let Some(event) = event {
        let _ = controller.runs.send(event);
    }
    Ok(())
}

/// Why the secret values a push or a run request needs cannot be sent. Names the file or the
/// reference, never a value.
#[derive(Debug, thiserror::Error)]
enum SecretsError {
    #[error("cannot read secret file {path} for repo {repo}: {source}")]
    ControllerFile {
        path: String,
        repo: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a Backup or Restore request cannot be dispatched; the run records it as its message.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("the Restore file was removed before it ran")]
    RestoreRemoved,
    #[error("the Backup file was removed before it ran")]
    BackupRemoved,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unresolved(#[from] compile::ResolveError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

/// Values of the secrets a host's repos reference: files on the controller, and in Kubernetes
/// mode Secret keys. Contents never reach a log.
fn secret_values(
    controller: &Controller,
    host: &HostKey,
    repos: &[&ResolvedRepo],
    files: &mut FileSecrets,
) -> Result<Vec<SecretValue>, SecretsError> {
    let mut out = files.values(repos.iter().copied())?;
    out.extend(controller.backend.secret_values(&host.namespace, repos)?);
    Ok(out)
}

/// The controller-file secrets read during one round of pushes: a fleet-wide change pushes to
/// every connected host, and most of them share a repo's password file.
#[derive(Default)]
pub struct FileSecrets(HashMap<String, String>);

impl FileSecrets {
    /// Values of the controller-file secrets that the repos reference.
    fn values<'a>(
        &mut self,
        repos: impl Iterator<Item = &'a ResolvedRepo>,
    ) -> Result<Vec<SecretValue>, SecretsError> {
        let mut out = Vec::new();
        for (repo, reference) in crate::secrets::references(repos) {
            let SecretRef::ControllerFile { path } = reference else {
                continue;
            };
            let value = match self.0.get(path) {
                Some(value) => value.clone(),
                None => {
                    let text = std::fs::read_to_string(path).map_err(|source| {
                        SecretsError::ControllerFile {
                            path: path.clone(),
                            repo: repo.name.clone(),
                            source,
                        }
                    })?;
                    let value = text.trim_end_matches(['\n', '\r']).to_string();
                    self.0.insert(path.clone(), value.clone());
                    value
                }
            };
            out.push(SecretValue {
                reference: reference.clone(),
                value,
            });
        }
        Ok(out)
    }
}

/// Sends `schedule.set` when the host's agent is connected and runs another version, once the
/// backend holds that version.
pub fn push(controller: &Controller, host: &HostKey) {
    push_reading(controller, host, &mut FileSecrets::default());
}

/// [`push`], with the controller-file secrets read so far in this round of pushes.
pub fn push_reading(controller: &Controller, host: &HostKey, files: &mut FileSecrets) {
    let (version, plan, tx): (_, HostPlan, _) = {
        let mut state = controller.state();
        let (Some(version), Some(compiled)) = (
            state.versions.get(host).cloned(),
            state.fleet.hosts.get(host).cloned(),
        ) else {
            return;
        };
        // Whether or not it is sent now, the host may report on this plan from here on.
        remember_plan(&mut state, host, version.version, &compiled.plan);
        let applied = state.agents.get(host).and_then(|a| a.applied_version);
        let speaks = state.agents.get(host).and_then(|a| a.protocol_version);
        let Some(session) = state.sessions.get_mut(host) else {
            return;
        };
        if applied == Some(version.version)
            || session.offered == Some(version.version)
            || !controller.backend.holds_version(host, version.version)
        {
            return;
        }
        if let Some(((needed, field), speaks)) = compiled.plan.needs_protocol().zip(speaks)
            && speaks < needed
        {
            // Shown as the agent's refusal: what it would say, had it been able to read it.
            let why = format!(
                "version {} uses {field}, which agents of protocol {needed} and later understand, and this agent speaks protocol {speaks}: upgrade holdfast-agent on {host}",
                version.version
            );
            tracing::warn!(host = %host, "not pushing the schedule: {why}");
            state.agents.entry(host.clone()).or_default().rejected = Some(why);
            drop(state);
            controller.agent_changed(host);
            return;
        }
        session.offered = Some(version.version);
        let tx = session.tx.clone();
        state.awaiting.insert(host.clone());
        state.pushed_at = Some(tokio::time::Instant::now());
        (version, compiled.plan, tx)
    };
    let repos: Vec<&ResolvedRepo> = plan.schedules.iter().map(|s| &s.repo).collect();
    let secrets = match secret_values(controller, host, &repos, files) {
        Ok(secrets) => secrets,
        Err(e) => {
            tracing::error!(host = %host, version = version.version, "cannot push the schedule: {e}");
            // Not sent: the next push tries again.
            let mut state = controller.state();
            if let Some(session) = state.sessions.get_mut(host) {
                session.offered = None;
            }
            controller.answered(&mut state, host);
            return;
        }
    };
    // At debug: a fleet-wide change pushes to every host; the revision's line says so once.
    tracing::debug!(host = %host, version = version.version, "pushing schedule");
    let _ = tx.send(encoded(&ControllerMessage::ScheduleSet(ScheduleSet {
        version: version.version,
        digest: version.digest,
        plan,
        secrets,
    })));
}

/// Sends the host's pending run requests (Backup and Restore files), each once.
pub fn dispatch(controller: &Controller, host: &HostKey) {
    let runs = controller.store().open_requests(host);
    let (pending, going): (Vec<RunRecord>, Vec<RunRecord>) = match runs {
        Ok(runs) => runs.into_iter().partition(|r| r.phase == Phase::Pending),
        Err(e) => {
            tracing::error!("cannot read run requests: {e}");
            return;
        }
    };
    // Requests sent before (also before a restart) may still report on their repos.
    allow_repos(controller, host, going.into_iter().filter_map(|r| r.repo));
    for mut run in pending {
        let (request, tx) = {
            let state = controller.state();
            let Some(session) = state.sessions.get(host) else {
                return;
            };
            let request = resolve(controller, &state.revision, &run);
            (request, session.tx.clone())
        };
        let command = request.and_then(|(request, repo)| {
            let secrets = secret_values(controller, host, &[&repo], &mut FileSecrets::default())?;
            let command = CommandRun {
                job: run.job.clone(),
                request,
                secrets,
            };
            Ok((command, repo.name))
        });
        match command {
            Ok((command, repo)) => {
                allow_repos(controller, host, [repo]);
                run.phase = Phase::Dispatched;
                // Recorded before it is sent: a restart must not send it again.
                if let Err(e) = controller.store().save_run(&run) {
                    tracing::error!("cannot record a dispatch: {e}");
                    continue;
                }
                tracing::info!(host = %host, run = %run.name, "dispatching run request");
                let _ = tx.send(encoded(&ControllerMessage::CommandRun(command)));
            }
            Err(why) => {
                run.phase = Phase::Failed;
                run.reason = Some("InvalidRequest".into());
                run.message = Some(why.to_string());
                run.finished_at = Some(Utc::now());
                if let Err(e) = controller.store().save_run(&run) {
                    tracing::error!("cannot record a failed request: {e}");
                }
            }
        }
    }
    controller.touch();
}

/// The host may report on these repos (its run requests use them).
fn allow_repos(controller: &Controller, host: &HostKey, repos: impl IntoIterator<Item = String>) {
    let mut state = controller.state();
    let scope = state.scopes.entry(host.clone()).or_default();
    scope
        .repos
        .extend(repos.into_iter().filter(|r| !r.is_empty()));
}

/// The command a request runs, and the repo whose secrets it needs.
fn resolve(
    controller: &Controller,
    revision: &crate::revision::Revision,
    run: &RunRecord,
) -> Result<(RunRequest, ResolvedRepo), RequestError> {
    match run.kind {
        Kind::Restore => {
            let restore = revision
                .restores
                .iter()
                .find(|r| namespace_of(*r) == run.namespace && name_of(*r) == run.name)
                .ok_or(RequestError::RestoreRemoved)?;
            let snapshot = match &restore.spec.backup {
                Some(backup) => controller
                    .store()
                    .run_by_name(Kind::Backup, &run.namespace, backup)?
                    .and_then(|b| b.snapshot_id),
                None => None,
            };
            let request = compile::restore_request(revision, restore, snapshot.as_deref())?;
            let repo = request.repo.clone();
            Ok((RunRequest::Restore(request), repo))
        }
        _ => {
            let backup = revision
                .backups
                .iter()
                .find(|b| namespace_of(*b) == run.namespace && name_of(*b) == run.name)
                .ok_or(RequestError::BackupRemoved)?;
            let resolved = compile::backup_request(revision, backup)?;
            let repo = resolved.repo.clone();
            Ok((RunRequest::Resolved(resolved), repo))
        }
    }
}

/// Kubernetes mode: the Host reconcile hands each version to the hub, and reads what each
/// agent applied.
impl super::reconciler::Hub for Controller {
    fn applied(&self, host: &HostKey) -> Option<crate::versions::Versioned> {
        let state = self.state();
        let agent = state.agents.get(host)?;
        Some(crate::versions::Versioned {
            version: agent.applied_version?,
            digest: agent.applied_digest.clone().unwrap_or_default(),
        })
    }

    fn adopt(
        &self,
        revision: &Arc<crate::revision::Revision>,
        fleet: &Arc<compile::Fleet>,
        host: &HostKey,
        version: crate::versions::Versioned,
    ) {
        let (new_revision, connected) = {
            let mut state = self.state();
            let new_revision = !Arc::ptr_eq(&state.revision, revision);
            if new_revision {
                state.revision = revision.clone();
                state.fleet = fleet.clone();
                state.rejected.clear();
            }
            state.versions.insert(host.clone(), version);
            state.restatus.hosts.insert(host.clone());
            let connected: Vec<HostKey> = state.sessions.keys().cloned().collect();
            (new_revision, connected)
        };
        if new_revision {
            if let Err(e) = super::desired::record_requests(self, revision) {
                tracing::error!("cannot record run requests: {e}");
            }
            for h in &connected {
                dispatch(self, h);
            }
        }
        push(self, host);
        self.touch();
    }

    fn rejected(&self, findings: &[crate::diagnostics::Finding]) {
        let mut at_fault: BTreeMap<_, Vec<String>> = BTreeMap::new();
        for f in findings {
            at_fault
                .entry(f.object.clone())
                .or_default()
                .push(format!("{}: {}", f.field, f.message));
        }
        self.at_fault(at_fault);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_of_pushes_reads_each_password_file_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("password");
        std::fs::write(&path, "s3cret\n").expect("written");
        let repo = ResolvedRepo {
            name: "nas".into(),
            url: "rest:http://nas/".into(),
            password: SecretRef::ControllerFile {
                path: path.to_string_lossy().into_owned(),
            },
            env: Vec::new(),
            initialize: false,
            initialized_by: None,
        };
        let mut files = FileSecrets::default();
        let first = files.values([&repo].into_iter()).expect("read");
        assert_eq!(first[0].value, "s3cret", "without the line end");
        std::fs::remove_file(&path).expect("removed");
        let again = files
            .values([&repo].into_iter())
            .expect("kept from the first read");
        assert_eq!(again, first);
        let error = FileSecrets::default()
            .values([&repo].into_iter())
            .expect_err("a new round reads the file again");
        assert!(!error.to_string().contains("s3cret"));
    }

    #[test]
    fn a_drill_result_is_bounded_like_every_report_field() {
        let difference = |path: String| protocol::DrillDifference {
            path,
            reason: "not restored".into(),
        };
        let finished = |differences: Vec<protocol::DrillDifference>| {
            ReportBody::JobFinished(protocol::JobFinished {
                job: "weekly-drill-1".into(),
                schedule: Some("weekly-drill".into()),
                operation: protocol::JobOperation::Drill,
                repo: "nas".into(),
                trigger: protocol::Trigger::Schedule,
                phase: protocol::JobPhase::Failed,
                reason: Some("VerificationFailed".into()),
                message: None,
                scheduled_at: None,
                started_at: None,
                finished_at: "2026-01-01T00:00:00Z".into(),
                exit_code: None,
                snapshot_id: None,
                summary: None,
                scrub_part: None,
                drill: Some(protocol::DrillResult {
                    differences,
                    ..protocol::DrillResult::default()
                }),
            })
        };
        let most = protocol::MAX_DRILL_DIFFERENCES;
        assert!(check_report(&finished(vec![difference("/a".into()); most])).is_ok());
        assert!(matches!(
            check_report(&finished(vec![difference("/a".into()); most + 1])),
            Err(Refusal::TooMany { .. })
        ));
        assert!(matches!(
            check_report(&finished(vec![difference("/".repeat(MAX_PATH_BYTES + 1))])),
            Err(Refusal::TooLong { .. })
        ));
    }

    #[test]
    fn every_refusal_reason_is_listed_for_metrics() {
        let host = HostKey::new("default", "web-1");
        let reasons: Vec<&str> = [
            Refusal::EmptyJob,
            Refusal::RepoNotInPlan {
                repo: "nas".into(),
                host: host.clone(),
            },
            Refusal::NoSchedule,
            Refusal::UnknownCommand {
                job: "j".into(),
                host,
            },
            Refusal::BadTime {
                field: "startedAt",
                value: "x".into(),
            },
            Refusal::FinishedBeforeStarted {
                started: "b".into(),
                finished: "a".into(),
            },
            Refusal::AckMismatch {
                version: 2,
                applied: 1,
            },
            Refusal::BadScrubPart {
                operation: "backup",
                part: protocol::ScrubPart { part: 1, parts: 7 },
            },
        ]
        .iter()
        .map(Refusal::reason)
        .collect();
        assert_eq!(reasons, REFUSAL_REASONS);
    }
}
