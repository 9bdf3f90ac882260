//! The agent hub: enrollment, one WebSocket per agent, schedule pushes, commands, and reports
//! stored before they are acked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use protocol::{
    AgentMessage, CONNECT_PATH, CommandRun, ControllerMessage, ENROLL_PATH, EnrollRequest,
    EnrollResponse, ErrorCode, ErrorMessage, HostPlan, MIN_AGENT_PROTOCOL, PROTOCOL_VERSION,
    ReportBody, ResolvedRepo, RunRequest, ScheduleSet, SecretRef, SecretValue, Welcome,
};
use tokio::sync::mpsc;

use super::{Controller, Mode, RunEvent, Session};
use crate::compile::{self, HostKey};
use crate::resources::{Kind, Phase};
use crate::revision::{name_of, namespace_of};
use crate::runs::{self, RunRecord};
use crate::store::{SizePoint, StoreError};

/// The agent must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(15);

pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route(ENROLL_PATH, post(enroll))
        .route(CONNECT_PATH, get(connect))
        .with_state(controller)
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
    let result = match &controller.mode {
        Mode::Files { .. } => controller
            .store()
            .enroll(&request.token, Utc::now())
            .map_err(|e| e.to_string()),
        Mode::Cluster(cluster) => cluster.enroll(&request.token).await,
    };
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
    let known = match &controller.mode {
        Mode::Files { .. } => controller
            .store()
            .authenticate(credential)
            .map_err(|e| e.to_string()),
        Mode::Cluster(cluster) => {
            // Only the leader pushes; the agent retries and the Service reaches the leader.
            if !cluster.is_leading() {
                return refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this controller replica is not the leader; retrying reaches the leader",
                );
            }
            cluster.authenticate(credential).await
        }
    };
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
    match upgrade {
        Ok(upgrade) => upgrade
            .max_message_size(protocol::MAX_FRAME_BYTES)
            .on_upgrade(move |socket| session(controller, host, socket)),
        Err(rejection) => rejection.into_response(),
    }
}

async fn send(
    socket: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: &ControllerMessage,
) -> bool {
    socket
        .send(Message::Text(protocol::encode(message).into()))
        .await
        .is_ok()
}

fn error(code: ErrorCode, message: String) -> ControllerMessage {
    ControllerMessage::Error(ErrorMessage { code, message })
}

async fn session(controller: Arc<Controller>, host: HostKey, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => protocol::decode::<AgentMessage>(&text).ok(),
        _ => None,
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
    let record = {
        let mut state = controller.state();
        // A newer connection replaces an older one: dropping its sender ends it.
        state.sessions.insert(
            host.clone(),
            Session {
                id,
                tx,
                last_heard: Instant::now(),
            },
        );
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
        agent.clone()
    };
    save_agent(&controller, &host, &record);
    tracing::info!(host = %host, agent = %hello.agent_version, applied = hello.applied_schedule_version, "agent connected");
    controller.agent_changed(&host);
    push(&controller, &host);
    dispatch(&controller, &host);

    let grace = controller.config.offline_after;
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            outgoing = rx.recv() => match outgoing {
                Some(message) => if !send(&mut sink, &message).await { break },
                None => break,
            },
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => { last_heard = Instant::now(); heard(&controller, &host, id); continue }
                };
                last_heard = Instant::now();
                heard(&controller, &host, id);
                match protocol::decode::<AgentMessage>(&text) {
                    Ok(message) => {
                        if let Some(reply) = handle(&controller, &host, message) && !send(&mut sink, &reply).await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(host = %host, "undecodable message: {e}");
                        let reply = error(ErrorCode::BadMessage, format!("cannot read that message: {e}"));
                        if !send(&mut sink, &reply).await { break }
                    }
                }
            }
            _ = tokio::time::sleep_until((last_heard + grace).into()) => {
                tracing::warn!(host = %host, "agent silent for {grace:?}; closing its connection");
                break;
            }
        }
    }
    let record = {
        let mut state = controller.state();
        if state.sessions.get(&host).is_some_and(|s| s.id == id) {
            state.sessions.remove(&host);
        }
        state.agents.get(&host).cloned()
    };
    if let Some(record) = record {
        save_agent(&controller, &host, &record);
    }
    tracing::info!(host = %host, "agent disconnected");
    controller.agent_changed(&host);
}

fn heard(controller: &Controller, host: &HostKey, id: u64) {
    let mut state = controller.state();
    if let Some(session) = state.sessions.get_mut(host).filter(|s| s.id == id) {
        session.last_heard = Instant::now();
    }
    if let Some(agent) = state.agents.get_mut(host) {
        agent.last_seen = Some(Utc::now());
    }
}

fn save_agent(controller: &Controller, host: &HostKey, record: &crate::store::AgentRecord) {
    if let Err(e) = controller.store().save_agent(host, record) {
        tracing::error!(host = %host, "cannot store the agent's state: {e}");
    }
}

/// Handles one message; returns the reply, if any.
fn handle(
    controller: &Controller,
    host: &HostKey,
    message: AgentMessage,
) -> Option<ControllerMessage> {
    match message {
        AgentMessage::Hello(_) => Some(error(
            ErrorCode::BadMessage,
            "hello was already said".into(),
        )),
        AgentMessage::Heartbeat(_) => None,
        AgentMessage::ScheduleAck(ack) => {
            let record = {
                let mut state = controller.state();
                let agent = state.agents.entry(host.clone()).or_default();
                agent.applied_version = Some(ack.applied_version).filter(|v| *v > 0);
                agent.rejected = ack.rejected.clone();
                agent.clone()
            };
            match &ack.rejected {
                Some(why) => {
                    tracing::warn!(host = %host, version = ack.version, "agent rejected the schedule: {why}")
                }
                None => {
                    tracing::info!(host = %host, version = ack.applied_version, "agent applied the schedule")
                }
            }
            save_agent(controller, host, &record);
            controller.agent_changed(host);
            None
        }
        AgentMessage::Report(protocol::Report { seq, body }) => {
            match ingest(controller, host, seq, body) {
                Ok(()) => {
                    controller.touch();
                    Some(ControllerMessage::Ack(protocol::Ack { seq }))
                }
                Err(e) => {
                    // Not acked: the agent keeps the report and sends it again.
                    tracing::error!(host = %host, seq, "cannot store a report: {e}");
                    None
                }
            }
        }
    }
}

/// Stores one report; idempotent, so a resent report changes nothing.
fn ingest(
    controller: &Controller,
    host: &HostKey,
    seq: u64,
    body: ReportBody,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut store = controller.store();
    let changed = |run: &RunRecord| RunEvent::Changed {
        namespace: run.namespace.clone(),
        name: run.name.clone(),
    };
    let event = match body {
        ReportBody::JobStarted(started) => {
            let existing = store.run_by_job(host, &started.job)?;
            runs::started(existing, host, &started, now)
                .map(|run| store.save_run(&run).map(|_| changed(&run)))
                .transpose()?
        }
        ReportBody::JobProgress(progress) => {
            let existing = store.run_by_job(host, &progress.job)?;
            runs::progress(existing, &progress)
                .map(|run| store.save_run(&run).map(|_| changed(&run)))
                .transpose()?
        }
        ReportBody::JobFinished(finished) => {
            let existing = store.run_by_job(host, &finished.job)?;
            match runs::finished(existing, host, &finished, now) {
                Some(run) => {
                    store.save_run(&run)?;
                    controller.metrics.job_finished(&run);
                    Some(changed(&run))
                }
                None => None,
            }
        }
        ReportBody::JobLog(log) => match store.run_by_job(host, &log.job)? {
            Some(run) => {
                let lines: Vec<String> = log.lines.into_iter().map(|l| l.line).collect();
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
            None
        }
        ReportBody::RepoStats(stats) => {
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
    if let Some(event) = event {
        let _ = controller.runs.send(event);
    }
    Ok(())
}

/// Values of the secrets a host's repos reference: files on the controller, and in Kubernetes
/// mode Secret keys. Contents never reach a log.
fn secret_values(
    controller: &Controller,
    host: &HostKey,
    repos: &[&ResolvedRepo],
) -> Result<Vec<SecretValue>, String> {
    let mut out = controller_files(repos.iter().copied())?;
    if let Mode::Cluster(cluster) = &controller.mode {
        out.extend(cluster.secret_values(&host.namespace, repos.iter().copied())?);
    }
    Ok(out)
}

/// Values of the controller-file secrets that the repos reference.
fn controller_files<'a>(
    repos: impl Iterator<Item = &'a ResolvedRepo>,
) -> Result<Vec<SecretValue>, String> {
    let mut out = Vec::new();
    for (repo, reference) in crate::secrets::references(repos) {
        let SecretRef::ControllerFile { path } = reference else {
            continue;
        };
        let value = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {path} for repo {}: {e}", repo.name))?;
        out.push(SecretValue {
            reference: reference.clone(),
            value: value.trim_end_matches(['\n', '\r']).to_string(),
        });
    }
    Ok(out)
}

/// Sends `schedule.set` when the host's agent is connected and runs another version.
pub fn push(controller: &Controller, host: &HostKey) {
    let (version, plan, tx): (_, HostPlan, _) = {
        let state = controller.state();
        let (Some(session), Some(version), Some(compiled)) = (
            state.sessions.get(host),
            state.versions.get(host),
            state.fleet.hosts.get(host),
        ) else {
            return;
        };
        let applied = state.agents.get(host).and_then(|a| a.applied_version);
        if applied == Some(version.version) {
            return;
        }
        (version.clone(), compiled.plan.clone(), session.tx.clone())
    };
    let repos: Vec<&ResolvedRepo> = plan.schedules.iter().map(|s| &s.repo).collect();
    let secrets = match secret_values(controller, host, &repos) {
        Ok(secrets) => secrets,
        Err(e) => {
            tracing::error!(host = %host, version = version.version, "cannot push the schedule: {e}");
            return;
        }
    };
    tracing::info!(host = %host, version = version.version, "pushing schedule");
    let _ = tx.send(ControllerMessage::ScheduleSet(ScheduleSet {
        version: version.version,
        digest: version.digest,
        plan,
        secrets,
    }));
}

/// Sends the host's pending run requests (Backup and Restore files), each once.
pub fn dispatch(controller: &Controller, host: &HostKey) {
    let pending: Vec<RunRecord> = match controller.store().runs() {
        Ok(runs) => runs
            .into_iter()
            .filter(|r| r.requested && r.phase == Phase::Pending && r.host_key() == *host)
            .collect(),
        Err(e) => {
            tracing::error!("cannot read run requests: {e}");
            return;
        }
    };
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
            let secrets = secret_values(controller, host, &[&repo])?;
            Ok(CommandRun {
                job: run.job.clone(),
                request,
                secrets,
            })
        });
        match command {
            Ok(command) => {
                run.phase = Phase::Dispatched;
                // Recorded before it is sent: a restart must not send it again.
                if let Err(e) = controller.store().save_run(&run) {
                    tracing::error!("cannot record a dispatch: {e}");
                    continue;
                }
                tracing::info!(host = %host, run = %run.name, "dispatching run request");
                let _ = tx.send(ControllerMessage::CommandRun(command));
            }
            Err(why) => {
                run.phase = Phase::Failed;
                run.reason = Some("InvalidRequest".into());
                run.message = Some(why);
                run.finished_at = Some(Utc::now());
                if let Err(e) = controller.store().save_run(&run) {
                    tracing::error!("cannot record a failed request: {e}");
                }
            }
        }
    }
    controller.touch();
}

/// The command a request runs, and the repo whose secrets it needs.
fn resolve(
    controller: &Controller,
    revision: &crate::revision::Revision,
    run: &RunRecord,
) -> Result<(RunRequest, ResolvedRepo), String> {
    match run.kind {
        Kind::Restore => {
            let restore = revision
                .restores
                .iter()
                .find(|r| namespace_of(*r) == run.namespace && name_of(*r) == run.name)
                .ok_or("the Restore file was removed before it ran")?;
            let snapshot = match &restore.spec.backup {
                Some(backup) => controller
                    .store()
                    .run_by_name(Kind::Backup, &run.namespace, backup)
                    .map_err(|e| e.to_string())?
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
                .ok_or("the Backup file was removed before it ran")?;
            let resolved = compile::backup_request(revision, backup)?;
            let repo = resolved.repo.clone();
            Ok((RunRequest::Resolved(resolved), repo))
        }
    }
}

/// Kubernetes mode: the Host reconcile hands each version to the hub once it is in the Host's
/// status, and reads what agents say from it.
impl crate::cluster::reconcile::Hub for Controller {
    fn agents(&self) -> crate::cluster::reconcile::Agents {
        let state = self.state();
        let grace = self.config.offline_after;
        crate::cluster::reconcile::Agents {
            records: state.agents.clone(),
            online: state
                .sessions
                .keys()
                .filter(|k| Controller::online(&state, k, grace))
                .cloned()
                .collect(),
        }
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
        let mut rejected: BTreeMap<_, Vec<String>> = BTreeMap::new();
        for f in findings {
            rejected
                .entry(f.object.clone())
                .or_default()
                .push(format!("{}: {}", f.field, f.message));
        }
        let mut state = self.state();
        if state.rejected != rejected {
            state.rejected = rejected;
            drop(state);
            self.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;
    use crate::cluster::agents::ClusterHub;
    use crate::cluster::scripted;

    /// `GET` of the agent endpoint with a credential: the status and the one-sentence reason.
    async fn connect_as_agent(url: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut response = agent
                .get(&url)
                .header("authorization", "Bearer hf_agent_credential")
                .call()
                .expect("an answer");
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().expect("a text body");
            (status, body)
        })
        .await
        .expect("the request ran")
    }

    #[tokio::test]
    async fn in_kubernetes_mode_a_follower_refuses_agents_and_the_leader_checks_secrets() {
        let (client, api_server) = scripted::api(vec![(404, scripted::status(404, "NotFound"))]);
        let (leading_tx, leading) = watch::channel(false);
        let (controller, _data) = scripted::controller(scripted::hub(client, leading));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!(
            "http://{}{CONNECT_PATH}",
            listener.local_addr().expect("an address")
        );
        tokio::spawn(async move { axum::serve(listener, router(controller)).await });

        let (status, why) = connect_as_agent(url.clone()).await;
        assert_eq!(status, 503);
        assert_eq!(
            why,
            "this controller replica is not the leader; retrying reaches the leader"
        );

        leading_tx.send(true).expect("the hub listens");
        let (status, why) = connect_as_agent(url).await;
        assert_eq!(status, 401, "{why}");
        assert!(why.starts_with("unknown agent credential"), "{why}");
        let asked = api_server.await.expect("the API server answered");
        assert_eq!(asked[0].method, "GET");
        assert!(
            asked[0]
                .path()
                .starts_with("/api/v1/namespaces/holdfast-system/secrets/holdfast-credential-"),
            "{}",
            asked[0].uri
        );
    }

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn fixture<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("a fixture object")
    }

    /// The next message the controller sends, within a deadline.
    async fn next_message<S>(socket: &mut S) -> ControllerMessage
    where
        S: futures_util::Stream<
                Item = Result<
                    tokio_tungstenite::tungstenite::Message,
                    tokio_tungstenite::tungstenite::Error,
                >,
            > + Unpin,
    {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                return protocol::decode(&text).expect("a controller message");
            }
        }
    }

    #[tokio::test]
    async fn in_kubernetes_mode_the_leader_pushes_adopted_versions_with_secret_keys_and_runs_requests()
     {
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;
        use serde_json::json;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let credential = "hf_agent_credential_for_web_1";
        let stored = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "holdfast-credential-x", "namespace": "holdfast-system"},
            "data": {"hash": b64(&crate::store::secret_hash(credential)),
                     "namespace": b64("fleet"), "host": b64("web-1")},
        });
        let (client, _api_server) = scripted::api(vec![(200, stored)]);
        let (secrets, mut writer) = reflector::store::<k8s_openapi::api::core::v1::Secret>();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(fixture(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "nas-restic", "namespace": "fleet"},
            "data": {"password": b64("correct horse\n")},
        }))));
        writer.apply_watcher_event(&Event::InitDone);
        let (_leading_tx, leading) = watch::channel(true);
        let reconciled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let asked = reconciled.clone();
        let hub = ClusterHub {
            secrets: vec![("fleet".into(), secrets)],
            reconcile: Box::new(move |h| asked.lock().expect("not poisoned").push(h.clone())),
            ..scripted::hub(client, leading)
        };
        let (controller, _data) = scripted::controller(hub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(axum::serve(listener, router(controller.clone())).into_future());

        let mut request = format!("ws://{address}{CONNECT_PATH}")
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().expect("a header"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the leader accepts the agent");
        let hello = AgentMessage::Hello(protocol::Hello {
            protocol_version: PROTOCOL_VERSION,
            host: "web-1".into(),
            agent_version: "test".into(),
            restic_version: Some("0.14.0".into()),
            os: "linux".into(),
            arch: "x86_64".into(),
            applied_schedule_version: 0,
            applied_schedule_digest: None,
            running: vec![],
        });
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                protocol::encode(&hello).into(),
            ))
            .await
            .expect("hello sent");
        assert!(matches!(
            next_message(&mut socket).await,
            ControllerMessage::Welcome(_)
        ));
        let key = HostKey::new("fleet", "web-1");
        assert_eq!(
            *reconciled.lock().expect("not poisoned"),
            std::slice::from_ref(&key),
            "a connected agent has its Host reconciled"
        );

        let meta =
            |name: &str| json!({"name": name, "namespace": "fleet", "uid": name, "generation": 1});
        let revision = crate::revision::Revision {
            repos: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Repo", "metadata": meta("nas"),
                "spec": {"url": "/srv/restic", "password": {"secretKeyRef": {"name": "nas-restic", "key": "password"}}}}),
            )],
            hosts: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Host", "metadata": meta("web-1"),
                "spec": {"defaultRepo": "nas"}}),
            )],
            schedules: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Schedule", "metadata": meta("nightly"),
                "spec": {"operation": "backup", "cron": "0 1 * * *", "hosts": ["web-1"], "paths": ["/srv/www"]}}),
            )],
            backups: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Backup", "metadata": meta("by-hand"),
                "spec": {"host": "web-1", "schedule": "nightly"}}),
            )],
            restores: vec![],
        };
        let fleet = compile::compile(&revision).expect("the fixture compiles");
        let digest = fleet.hosts[&key].digest.clone();
        use crate::cluster::reconcile::Hub;
        controller.adopt(
            &Arc::new(revision),
            &Arc::new(fleet),
            &key,
            crate::versions::Versioned { version: 3, digest },
        );

        let ControllerMessage::CommandRun(command) = next_message(&mut socket).await else {
            panic!("the request is dispatched first")
        };
        assert_eq!(
            command.job,
            crate::runs::request_job(Kind::Backup, "fleet", "by-hand")
        );
        assert_eq!(command.secrets.len(), 1);
        assert_eq!(command.secrets[0].value, "correct horse");
        let ControllerMessage::ScheduleSet(set) = next_message(&mut socket).await else {
            panic!("then the schedule")
        };
        assert_eq!(set.version, 3);
        let values: Vec<&str> = set.secrets.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(
            values,
            ["correct horse"],
            "the Secret key's value, without its newline"
        );

        // The lead is lost: the agent is disconnected, to reconnect to the new leader.
        controller.disconnect_agents();
        let end = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the session ends in time");
        assert!(
            matches!(
                end,
                None | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | Some(Err(_))
            ),
            "{end:?}"
        );
    }
}
