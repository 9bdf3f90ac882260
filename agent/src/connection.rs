//! The WebSocket to the controller: hello, schedule pushes, commands, acks, heartbeats, and
//! reconnecting with capped exponential backoff. Losing the connection never stops the scheduler;
//! the outbox keeps every report until the controller acknowledges it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::{
    AGENT_FRAGMENT_BYTES, AgentMessage, CommandRun, ControllerMessage, ErrorCode, Heartbeat, Hello,
    JobFinished, JobPhase, MAX_FRAME_BYTES, MIN_CONTROLLER_PROTOCOL, PROTOCOL_VERSION, RunRequest,
    ScheduleAck, ScheduleSet, Trigger,
};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::jobs::Jobs;
use crate::outbox::Outbox;
use crate::runner::{JobSpec, Work, rfc3339};
use crate::scheduler;
use crate::state::{StateDir, offered_is_acceptable};

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// After an error that retrying cannot fix (refused credential, protocol mismatch), wait this
/// long before trying again: an operator may fix the controller, but the agent must not spin.
const FATAL_WAIT: Duration = Duration::from_secs(300);
/// The controller must say `welcome` within this time.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);

/// Where and how to connect.
#[derive(Clone)]
pub struct Endpoint {
    /// `ws://` or `wss://` URL of the connect endpoint.
    pub url: String,
    pub credential: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What the session needs from the rest of the agent.
#[derive(Clone)]
pub struct Shared {
    pub host: String,
    pub agent_version: String,
    pub restic_version: Option<String>,
    pub state: StateDir,
    pub outbox: Outbox,
    pub jobs: Jobs,
    /// The applied schedule; the scheduler follows it.
    pub applied: watch::Sender<Option<ScheduleSet>>,
}

#[derive(Debug)]
enum Ended {
    /// Retrying later may work (network, controller restart).
    Transient(String),
    /// Retrying at once cannot help; the message says what to do.
    Fatal(String),
    /// One frame could not be decoded; the session goes on.
    BadFrame(String),
}

/// Keeps a session with the controller up, forever.
pub async fn run(shared: Shared, endpoint: Endpoint) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut welcomed = false;
        let ended = session(&shared, &endpoint, &mut welcomed).await;
        if welcomed {
            backoff = FIRST_BACKOFF;
        }
        let wait = match ended {
            Ended::Fatal(message) => {
                tracing::error!("{message}");
                FATAL_WAIT
            }
            Ended::Transient(message) | Ended::BadFrame(message) => {
                // Full jitter between half and all of the backoff, so a restarted controller
                // is not hit by the whole fleet at once.
                let wait = backoff.mul_f64(0.5 + fastrand::f64() * 0.5);
                tracing::warn!(
                    "connection to the controller lost: {message}; retrying in {:.1}s",
                    wait.as_secs_f64()
                );
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(endpoint: &Endpoint) -> Result<Socket, Ended> {
    let mut request = endpoint.url.as_str().into_client_request().map_err(|e| {
        Ended::Fatal(format!(
            "the server URL {} is not usable: {e}",
            endpoint.url
        ))
    })?;
    let bearer =
        HeaderValue::from_str(&format!("Bearer {}", endpoint.credential)).map_err(|_| {
            Ended::Fatal("the stored credential is not a valid header value; enroll again".into())
        })?;
    request.headers_mut().insert("authorization", bearer);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connector = endpoint.tls.clone().map(Connector::Rustls);
    match tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector)
        .await
    {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            // The controller says why in one sentence.
            let why = response
                .body()
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|text| format!(": {}", text.trim()))
                .unwrap_or_default();
            Err(match status.as_u16() {
                401 | 403 => Ended::Fatal(format!(
                    "the controller refused this agent's credential (HTTP {status}{why}); create a new token with `holdfast token create HOST` and run `holdfast-agent enroll` again"
                )),
                404 => Ended::Fatal(format!(
                    "the controller has no agent endpoint at {} (HTTP 404): check the server URL",
                    endpoint.url
                )),
                _ => Ended::Transient(format!("the controller answered HTTP {status}{why}")),
            })
        }
        Err(e) => Err(Ended::Transient(e.to_string())),
    }
}

async fn session(shared: &Shared, endpoint: &Endpoint, welcomed: &mut bool) -> Ended {
    let mut socket = match connect(endpoint).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let applied = shared.applied.borrow().clone();
    let hello = AgentMessage::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        host: shared.host.clone(),
        agent_version: shared.agent_version.clone(),
        restic_version: shared.restic_version.clone(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        applied_schedule_version: applied.as_ref().map_or(0, |s| s.version),
        applied_schedule_digest: applied.map(|s| s.digest),
        running: shared.jobs.running(),
    });
    if let Err(e) = send(&mut socket, &hello).await {
        return e;
    }
    let heartbeat = match tokio::time::timeout(WELCOME_TIMEOUT, first_message(&mut socket)).await {
        Err(_) => return Ended::Transient("no welcome from the controller".into()),
        Ok(Err(e)) => return e,
        Ok(Ok(ControllerMessage::Welcome(w))) => {
            if w.protocol_version < MIN_CONTROLLER_PROTOCOL {
                return Ended::Fatal(format!(
                    "the controller speaks protocol {} but this agent needs at least {MIN_CONTROLLER_PROTOCOL}: upgrade the controller to {} or later",
                    w.protocol_version, shared.agent_version
                ));
            }
            Duration::from_secs(u64::from(w.heartbeat_seconds.max(1)))
        }
        Ok(Ok(ControllerMessage::Error(e))) => return refused(e.code, &e.message),
        Ok(Ok(other)) => {
            return Ended::Transient(format!("expected welcome, got {}", kind(&other)));
        }
    };
    *welcomed = true;
    tracing::info!(url = %endpoint.url, "connected to the controller");

    let mut last_sent = 0;
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        // Created before sending, so a report pushed meanwhile still wakes us.
        let added = shared.outbox.added();
        for report in shared.outbox.after(last_sent) {
            last_sent = report.seq;
            let seq = report.seq;
            let frame = protocol::encode(&AgentMessage::Report(report));
            if frame.len() > MAX_FRAME_BYTES {
                // The controller would close the session on it, every time: it can never be
                // delivered, and keeping it would hold back every report after it.
                tracing::error!(
                    seq,
                    "dropped report {seq} from the outbox: it is {} bytes, over the protocol's {MAX_FRAME_BYTES}-byte frame limit",
                    frame.len()
                );
                if let Err(e) = shared.outbox.ack(seq) {
                    tracing::error!("{e}");
                }
                continue;
            }
            if let Err(e) = send_text(&mut socket, frame).await {
                return Ended::Transient(e.to_string());
            }
        }
        tokio::select! {
            _ = added => {}
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 3 {
                    return Ended::Transient("the controller stopped answering".into());
                }
                let beat = AgentMessage::Heartbeat(Heartbeat { running: shared.jobs.running() });
                if let Err(e) = send(&mut socket, &beat).await {
                    return e;
                }
                // The pong proves the controller alive even when it has nothing to say.
                if let Err(e) = socket.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Transient(e.to_string());
                }
            }
            message = next_message(&mut socket) => {
                last_heard = tokio::time::Instant::now();
                match message {
                    Ok(None) => {}
                    Ok(Some(m)) => match handle(shared, m) {
                        Ok(None) => {}
                        Ok(Some(reply)) => if let Err(e) = send(&mut socket, &reply).await {
                            return e;
                        },
                        Err(e) => return e,
                    },
                    Err(Ended::BadFrame(e)) => tracing::warn!("{e}"),
                    Err(e) => return e,
                }
            }
        }
    }
}

/// Acts on one controller message; returns the reply to send, or why the session ends.
fn handle(shared: &Shared, message: ControllerMessage) -> Result<Option<AgentMessage>, Ended> {
    match message {
        ControllerMessage::Welcome(_) => {}
        ControllerMessage::Ack(ack) => {
            if let Err(e) = shared.outbox.ack(ack.seq) {
                tracing::error!("{e}");
            }
        }
        ControllerMessage::ScheduleSet(set) => {
            return Ok(Some(AgentMessage::ScheduleAck(accept(shared, set))));
        }
        ControllerMessage::CommandRun(command) => command_run(shared, command),
        ControllerMessage::ScrubCursor(cursor) => {
            if !cursor.next.is_valid() {
                tracing::warn!(repo = %cursor.repo, "ignored scrub cursor {}", cursor.next);
            } else if let Err(e) = shared.state.store_scrub_next(&cursor.repo, cursor.next) {
                tracing::warn!(
                    "{e}; the next check of {} reads where this agent left off",
                    cursor.repo
                );
            }
        }
        ControllerMessage::CommandCancel(c) => {
            if !shared.jobs.cancel(&c.job) {
                tracing::info!(job = %c.job, "cancel for a job that is not running");
            }
        }
        ControllerMessage::Error(e) if e.code.is_fatal() => {
            return Err(refused(e.code, &e.message));
        }
        ControllerMessage::Error(e) => match e.code {
            ErrorCode::Refused => {
                tracing::warn!(
                    "the controller refused a message from this agent: {}",
                    e.message
                )
            }
            ErrorCode::BadMessage => {
                tracing::warn!(
                    "the controller could not read a message from this agent: {}",
                    e.message
                )
            }
            code => {
                tracing::warn!(?code, "the controller reported an error: {}", e.message)
            }
        },
    }
    Ok(None)
}

/// Stores an offered schedule unless it is older than the applied one or meant for another host.
fn accept(shared: &Shared, set: ScheduleSet) -> ScheduleAck {
    let current = shared.applied.borrow().clone();
    let applied_version = current.as_ref().map_or(0, |s| s.version);
    let refusal = offered_is_acceptable(current.as_ref(), set.version)
        .err()
        .map(|e| e.to_string())
        .or_else(|| {
            (set.plan.host != shared.host).then(|| {
                format!(
                    "the plan is for host {} but this agent is {}",
                    set.plan.host, shared.host
                )
            })
        })
        // A schedule this agent cannot time would silently never run: refuse the plan instead,
        // so the host shows drift with the reason.
        .or_else(|| {
            set.plan
                .schedules
                .iter()
                .find_map(|s| scheduler::Timing::of(s).err())
                .map(|e| e.to_string())
        });
    if let Some(reason) = refusal {
        tracing::warn!(version = set.version, "refused a schedule: {reason}");
        return ScheduleAck {
            version: set.version,
            applied_version,
            rejected: Some(reason),
        };
    }
    let version = set.version;
    if current.as_ref() != Some(&set) {
        if let Err(e) = shared.state.store_schedule(&set) {
            let reason = format!("cannot store the schedule: {e}");
            tracing::error!("{reason}");
            return ScheduleAck {
                version,
                applied_version,
                rejected: Some(reason),
            };
        }
        tracing::info!(
            version,
            schedules = set.plan.schedules.len(),
            "applied schedule"
        );
        shared.applied.send_replace(Some(set));
    }
    ScheduleAck {
        version,
        applied_version: version,
        rejected: None,
    }
}

fn command_run(shared: &Shared, command: CommandRun) {
    // Before anything else: a request that was answered once, in whatever way, is not redone.
    if shared.jobs.answer_repeat(&command.job) {
        return;
    }
    let applied = shared.applied.borrow().clone();
    let work = match command.request {
        RunRequest::Restore(r) => Work::Restore(r),
        RunRequest::Resolved(s) => Work::Schedule(s),
        RunRequest::Schedule { schedule } => {
            let found = applied.as_ref().and_then(|s| {
                scheduler::by_name(&s.plan)
                    .get(schedule.as_str())
                    .map(|s| (*s).clone())
            });
            match found {
                Some(s) => Work::Schedule(s),
                None => {
                    tracing::warn!(job = %command.job, "run-now for unknown schedule {schedule}");
                    let finished = JobFinished {
                        job: command.job,
                        schedule: Some(schedule.clone()),
                        operation: protocol::JobOperation::Backup,
                        repo: String::new(),
                        trigger: Trigger::Command,
                        phase: JobPhase::Failed,
                        reason: Some("UnknownSchedule".into()),
                        message: Some(format!(
                            "schedule {schedule} is not in the plan this agent runs (version {})",
                            applied.as_ref().map_or(0, |s| s.version)
                        )),
                        scheduled_at: None,
                        started_at: None,
                        finished_at: rfc3339(chrono::Utc::now()),
                        exit_code: None,
                        snapshot_id: None,
                        summary: None,
                        scrub_part: None,
                        drill: None,
                    };
                    shared.jobs.report_finished(finished);
                    return;
                }
            }
        }
    };
    let mut secrets = command.secrets;
    if let Some(applied) = &applied {
        secrets.extend(applied.secrets.iter().cloned());
    }
    let spec = JobSpec {
        id: command.job,
        trigger: Trigger::Command,
        scheduled_at: None,
        work,
        secrets,
    };
    if applied.as_ref().is_some_and(|s| s.plan.paused) {
        shared.jobs.report_not_run(
            &spec,
            JobPhase::Skipped,
            "HostPaused",
            "the host is paused; unpause it to run anything on it".into(),
        );
        return;
    }
    shared.jobs.start(spec);
}

fn refused(code: ErrorCode, message: &str) -> Ended {
    let what_to_do = match code {
        ErrorCode::ProtocolTooOld => "upgrade this agent",
        ErrorCode::ProtocolTooNew => "upgrade the controller",
        ErrorCode::Unauthorized => {
            "enroll again with a new token from `holdfast token create HOST`"
        }
        ErrorCode::WrongHost => "check the host name in the agent's config",
        ErrorCode::BadMessage | ErrorCode::Refused | ErrorCode::Other => {
            "check the controller's log"
        }
    };
    Ended::Fatal(format!(
        "the controller ended the session: {message} ({what_to_do})"
    ))
}

async fn send(socket: &mut Socket, message: &AgentMessage) -> Result<(), Ended> {
    send_text(socket, protocol::encode(message))
        .await
        .map_err(|e| Ended::Transient(e.to_string()))
}

/// Sends one message in frames of at most [`AGENT_FRAGMENT_BYTES`] (why: see there). Every
/// WebSocket peer reassembles fragments, so older controllers read it as before.
pub async fn send_text<S>(socket: &mut S, text: String) -> Result<(), tungstenite::Error>
where
    S: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    if text.len() <= AGENT_FRAGMENT_BYTES {
        return socket.send(Message::text(text)).await;
    }
    let bytes = tungstenite::Bytes::from(text);
    let mut start = 0;
    while start < bytes.len() {
        let end = (start + AGENT_FRAGMENT_BYTES).min(bytes.len());
        let opcode = if start == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(bytes.slice(start..end), opcode, end == bytes.len());
        socket.feed(Message::Frame(frame)).await?;
        start = end;
    }
    socket.flush().await
}

/// The next frame: a controller message, or `None` for a control frame (a pong, which shows
/// the controller is alive; pings are answered by tungstenite itself).
async fn next_message(socket: &mut Socket) -> Result<Option<ControllerMessage>, Ended> {
    match socket.next().await {
        None => Err(Ended::Transient(
            "the controller closed the connection".into(),
        )),
        Some(Err(e)) => Err(Ended::Transient(e.to_string())),
        Some(Ok(Message::Text(text))) => protocol::decode(text.as_str())
            .map(Some)
            .map_err(|e| Ended::BadFrame(format!("ignored a frame from the controller: {e}"))),
        Some(Ok(Message::Close(frame))) => Err(Ended::Transient(closed_because(frame))),
        Some(Ok(_)) => Ok(None),
    }
}

/// One sentence for a Close frame from the controller: its code, what the code means, and the
/// controller's reason.
fn closed_because(frame: Option<tungstenite::protocol::CloseFrame>) -> String {
    let Some(frame) = frame else {
        return "the controller closed the connection without giving a reason".into();
    };
    let code = u16::from(frame.code);
    let meaning = match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1007 => "invalid frame payload",
        1008 => "policy violation",
        protocol::CLOSE_MESSAGE_TOO_BIG => "message too big",
        1011 => "internal error",
        _ => "other",
    };
    let reason = frame.reason.trim();
    if reason.is_empty() {
        format!("the controller closed the connection with code {code} ({meaning})")
    } else {
        format!("the controller closed the connection with code {code} ({meaning}): {reason}")
    }
}

/// The first controller message of a session, skipping control frames.
async fn first_message(socket: &mut Socket) -> Result<ControllerMessage, Ended> {
    loop {
        match next_message(socket).await {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => continue,
            Err(Ended::BadFrame(e)) => return Err(Ended::Transient(e)),
            Err(e) => return Err(e),
        }
    }
}

fn kind(message: &ControllerMessage) -> &'static str {
    match message {
        ControllerMessage::Welcome(_) => "welcome",
        ControllerMessage::ScheduleSet(_) => "schedule.set",
        ControllerMessage::CommandRun(_) => "command.run",
        ControllerMessage::CommandCancel(_) => "command.cancel",
        ControllerMessage::ScrubCursor(_) => "scrub.cursor",
        ControllerMessage::Ack(_) => "ack",
        ControllerMessage::Error(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::closed_because;

    #[test]
    fn a_close_from_the_controller_reads_as_one_sentence_with_its_code_and_reason() {
        let frame = CloseFrame {
            code: CloseCode::Size,
            reason: "frame of 5242881 bytes is larger than the 4194304-byte limit".into(),
        };
        assert_eq!(
            closed_because(Some(frame)),
            "the controller closed the connection with code 1009 (message too big): frame of 5242881 bytes is larger than the 4194304-byte limit"
        );
        assert_eq!(
            closed_because(None),
            "the controller closed the connection without giving a reason"
        );
    }
}
