//! The running controller: desired state from a watched directory (files mode) or from the API
//! server (Kubernetes mode), agents over WebSocket, reports into SQLite, and the read-only web
//! surfaces. Both modes run this same code; what differs sits behind [`backend::Backend`],
//! chosen once (credentials in SQLite or Secrets, secret values, leadership, what follows an
//! agent's change, the objects a follower mirrors).
//!
//! One [`Controller`] value is shared by every task. The database sits behind a mutex: each
//! call is a short transaction, and reports are acked only after their transaction commits.

pub mod backend;
pub mod changes;
mod desired;
pub mod events;
mod hub;
pub mod metrics;
mod model;
#[cfg(target_os = "linux")]
mod process;
pub mod reconciler;
mod scrub;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, broadcast, mpsc};

pub use desired::WatchError;
pub use model::ReadModel;

use crate::compile::{Fleet, HostKey};
use crate::revision::Revision;
use crate::store::{AgentRecord, Store, StoreError};
use crate::versions::Versioned;
use backend::Backend;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// A host is offline when its agent has been silent this long.
    pub offline_after: Duration,
    /// How often agents send a heartbeat.
    pub heartbeat: Duration,
    /// Quiet time after a file change before the directory is read again.
    pub debounce: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Agents served at once; more are refused with a reason until one disconnects.
    pub max_agents: usize,
    /// Where people reach the controller's page, for the links in notifications.
    pub external_url: Option<String>,
}

/// Something a run page follows live.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// The run's record changed.
    Changed { namespace: String, name: String },
    /// New log lines.
    Log {
        namespace: String,
        name: String,
        lines: Vec<String>,
    },
}

/// Lists say how many items remain after a page (`remainingItemCount`) up to this many; beyond,
/// they leave it out, as the API server may: counting costs as much as the items counted.
pub const COUNTED: usize = 10_000;

/// A connected agent.
struct Session {
    id: u64,
    /// Messages for the agent, already encoded: a queue slot is a pointer, not a message
    /// (tokio allocates slots 32 at a time, and a `ControllerMessage` is large).
    tx: mpsc::UnboundedSender<Utf8Bytes>,
    last_heard: Instant,
    /// The schedule version last sent on this session: two reconciles adopting the same
    /// version before the ack push it once.
    offered: Option<u64>,
}

/// Desired state in force, and what agents say.
#[derive(Default)]
struct State {
    revision: Arc<Revision>,
    fleet: Arc<Fleet>,
    versions: BTreeMap<HostKey, Versioned>,
    agents: BTreeMap<HostKey, AgentRecord>,
    sessions: HashMap<HostKey, Session>,
    /// The objects that keep the newest desired state from validating, with what is wrong
    /// with each, until a revision is adopted.
    rejected: BTreeMap<crate::resources::ObjectKey, Vec<String>>,
    /// What each host may report about: the plans it was given and the repos of its runs.
    scopes: HashMap<HostKey, hub::Scope>,
    /// Agents whose record changed since it was stored: the status writer stores them
    /// together each pass (one transaction, not one per ack when a fleet acks a change).
    /// Losing them to a crash loses nothing an agent does not say again in its hello.
    unsaved: BTreeSet<HostKey>,
    /// What the status writer's next pass recomputes besides what the run records touched.
    restatus: model::Touched,
    /// Hosts sent a schedule version on their session that have not acked it yet, and when
    /// the last version was sent: the status writer holds its pass for them (see
    /// [`Controller::acks_settled`]).
    awaiting: HashSet<HostKey>,
    pushed_at: Option<tokio::time::Instant>,
}

/// Since when, and why, the database cannot be written.
#[derive(Clone, Debug)]
struct StoreFailure {
    since: chrono::DateTime<chrono::Utc>,
    error: String,
    /// A host whose agent record a probe rewrites to learn when writing works again.
    host: HostKey,
}

pub struct Controller {
    pub config: Config,
    /// What differs between files mode and Kubernetes mode.
    pub backend: Arc<dyn Backend>,
    store: Mutex<Store>,
    /// A second connection for reading run records' objects, so that a long list does not
    /// hold up reports (WAL lets it read while the other writes).
    reader: Mutex<Store>,
    /// What the status writer keeps of the run records between passes.
    records: Mutex<model::History>,
    /// What the status writer keeps between passes to recompute only what changed.
    index: Mutex<model::Index>,
    state: Mutex<State>,
    model: RwLock<Arc<ReadModel>>,
    dirty: Arc<Notify>,
    /// Every version sent was acked (or its session ended).
    acks_in: Notify,
    runs: broadcast::Sender<RunEvent>,
    /// Recent changes of the read model, for watches.
    pub changes: changes::Changes,
    ready: AtomicBool,
    next_session: AtomicU64,
    pub metrics: metrics::Metrics,
    /// Set while writes to the database fail; cleared by the next write that works.
    store_failure: Mutex<Option<StoreFailure>>,
    /// What each Notifier sends, and the tasks that deliver it.
    alerting: crate::notify::Alerting,
}

/// Why the controller cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Notifications(#[from] crate::notify::OpenError),
}

/// Secret keys for notifications, from the backend.
struct BackendKeys(Arc<dyn Backend>);

impl crate::notify::SecretKeys for BackendKeys {
    fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<String, crate::notify::KeyError> {
        self.0.secret_key(namespace, name, key)
    }
}

impl Controller {
    pub fn open(config: Config, backend: Box<dyn Backend>) -> Result<Arc<Controller>, OpenError> {
        let store = Store::open(&config.data_dir)?;
        let agents = store.agents()?;
        let model = ReadModel::load(&store)?;
        let reader = Store::open(&config.data_dir)?;
        let backend: Arc<dyn Backend> = Arc::from(backend);
        let dirty = Arc::new(Notify::new());
        let metrics = metrics::Metrics::default();
        let alerting = crate::notify::Alerting::open(
            &config.data_dir,
            config.external_url.clone(),
            Arc::new(BackendKeys(backend.clone())),
            dirty.clone(),
            metrics.notifications.clone(),
        )?;
        Ok(Arc::new(Controller {
            config,
            backend,
            store: Mutex::new(store),
            reader: Mutex::new(reader),
            records: Mutex::new(model::History::default()),
            index: Mutex::new(model::Index::default()),
            state: Mutex::new(State {
                agents,
                ..State::default()
            }),
            changes: changes::Changes::new(model.resource_version),
            model: RwLock::new(Arc::new(model)),
            dirty,
            acks_in: Notify::new(),
            runs: broadcast::channel(1024).0,
            ready: AtomicBool::new(false),
            next_session: AtomicU64::new(1),
            metrics,
            store_failure: Mutex::new(None),
            alerting,
        }))
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Store> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn records(&self) -> MutexGuard<'_, model::History> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self) -> MutexGuard<'_, model::Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Backups or Restores as served (of one namespace, or all), in (namespace, name) order
    /// after `after`, that `selects` keeps: at most `limit`, and whether more remain. Read
    /// from the store as far as the page goes.
    pub fn records_page(
        &self,
        kind: crate::resources::Kind,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
        selects: &mut dyn FnMut(&serde_json::Value) -> bool,
    ) -> Result<(Vec<serde_json::Value>, bool), StoreError> {
        self.reader()
            .objects_page(kind, namespace, after, limit, selects)
    }

    /// How many Backups or Restores (of one namespace, or all) come after `after` in
    /// (namespace, name) order; `None` beyond [`COUNTED`].
    pub fn records_after(
        &self,
        kind: crate::resources::Kind,
        namespace: Option<&str>,
        after: (&str, &str),
    ) -> Result<Option<usize>, StoreError> {
        self.reader().count_after(kind, namespace, after, COUNTED)
    }

    /// One Backup or Restore as served.
    pub fn record(
        &self,
        kind: crate::resources::Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        self.reader().object_json(kind, namespace, name)
    }

    /// One host's Snapshot objects as served, by repo, newest first.
    pub fn host_snapshots(
        &self,
        namespace: &str,
        host: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.reader().host_snapshot_objects(namespace, host)
    }

    /// The Backups of one host's runs, as served.
    pub fn host_backups(
        &self,
        namespace: &str,
        host: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.reader().host_backups(namespace, host)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every host's plan in the revision in force.
    pub fn fleet(&self) -> Arc<Fleet> {
        self.state().fleet.clone()
    }

    /// The read model as last written.
    pub fn model(&self) -> Arc<ReadModel> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Status needs recomputing.
    fn touch(&self) {
        self.dirty.notify_one();
    }

    /// Waits until every agent sent a schedule version acked it, or `hold` passed since the
    /// last was sent. A fleet-wide change then reaches the status writer once, with its acks,
    /// instead of once when pushed and again as the acks come: each Host is written once, and
    /// the pushes and acks have the cores to themselves. An agent that never acks delays no
    /// pass by more than `hold`.
    async fn acks_settled(&self, hold: Duration) {
        loop {
            // Registered before the check: an ack between the two still wakes it.
            let acked = self.acks_in.notified();
            let wait = {
                let state = self.state();
                match state.pushed_at {
                    Some(at) if !state.awaiting.is_empty() => hold.saturating_sub(at.elapsed()),
                    _ => return,
                }
            };
            if wait.is_zero() {
                return;
            }
            tokio::select! {
                _ = acked => {}
                _ = tokio::time::sleep(wait) => return,
            }
        }
    }

    /// `host` no longer owes an ack: it acked, or its session ended.
    fn answered(&self, state: &mut State, host: &HostKey) {
        if state.awaiting.remove(host) && state.awaiting.is_empty() {
            self.acks_in.notify_waiters();
        }
    }

    /// Sends `host`'s agent its schedule version, if it is connected, runs another, and the
    /// backend holds that version.
    pub fn offer_schedule(&self, host: &HostKey) {
        hub::push(self, host);
    }

    /// What an agent says of itself changed: its record is stored with the next pass, status
    /// recomputed, and the backend told (Kubernetes mode reconciles its Host).
    fn agent_changed(&self, host: &HostKey) {
        self.state().unsaved.insert(host.clone());
        self.host_changed(host);
    }

    /// What status shows of `host` changed, but not its agent's record (a run finished).
    fn host_changed(&self, host: &HostKey) {
        self.state().restatus.hosts.insert(host.clone());
        self.touch();
        self.backend.agent_changed(host);
    }

    /// The objects at fault in the newest revision, with what is wrong with each (none once a
    /// revision is adopted): each Repo and Schedule among them shows it (`Stalled`, not
    /// `Ready`) until then.
    /// Each object newly at fault, or at fault for new reasons, gets a `RevisionRejected`
    /// Event.
    fn at_fault(&self, at_fault: BTreeMap<crate::resources::ObjectKey, Vec<String>>) {
        let mut state = self.state();
        if state.rejected == at_fault {
            return;
        }
        let before = std::mem::replace(&mut state.rejected, at_fault.clone());
        drop(state);
        self.touch();
        let model = self.model();
        for (key, problems) in at_fault {
            if before.get(&key) == Some(&problems) {
                continue;
            }
            let uid = model.uid(key.kind, &key.namespace, &key.name);
            let regarding = model::event_reference(key.kind, &key.namespace, &key.name, uid);
            self.backend
                .record(regarding, crate::decisions::revision_rejected(&problems));
        }
    }

    /// Stores the agent records that changed since the last call, in one transaction; if
    /// that fails, they are tried again with the next.
    pub(crate) fn save_agents(&self) {
        let agents: Vec<(HostKey, AgentRecord)> = {
            let mut state = self.state();
            let unsaved = std::mem::take(&mut state.unsaved);
            unsaved
                .into_iter()
                .filter_map(|h| Some((h.clone(), state.agents.get(&h)?.clone())))
                .collect()
        };
        if agents.is_empty() {
            return;
        }
        if let Err(e) = self.store().save_agents(&agents) {
            self.metrics.store_write_failed();
            tracing::error!(agents = agents.len(), "cannot store the agents' state: {e}");
            self.state()
                .unsaved
                .extend(agents.into_iter().map(|(h, _)| h));
        }
    }

    /// Ends every agent's session (each ends when its sender is dropped): a replica that lost
    /// the Lease must not take reports it will not write to the cluster. Agents reconnect
    /// and reach the new leader.
    pub fn disconnect_agents(&self) {
        let ended = {
            let mut state = self.state();
            state.restatus.all = true;
            std::mem::take(&mut state.sessions)
        };
        if !ended.is_empty() {
            tracing::warn!(agents = ended.len(), "disconnected every agent");
        }
    }

    /// Ready once the first revision was read and the read model written.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// While the database cannot be written: one sentence saying so, since when and why (for
    /// `/readyz` and the page). Reports that could not be stored are held and retried, and not
    /// acked until they are stored.
    pub fn store_failing(&self) -> Option<String> {
        let failure = self.store_failure().clone()?;
        Some(format!(
            "The controller cannot write its database since {}: {}; agents' reports are held and retried, and stay in the agents' outboxes until they are stored.",
            failure
                .since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            failure.error
        ))
    }

    fn store_failure(&self) -> MutexGuard<'_, Option<StoreFailure>> {
        self.store_failure.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe_runs(&self) -> broadcast::Receiver<RunEvent> {
        self.runs.subscribe()
    }

    /// The stored log of a run.
    pub fn log(
        &self,
        kind: crate::resources::Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.store().log(kind, namespace, name)
    }

    /// Finished runs of a host since `since`, for the timeline.
    pub fn history(
        &self,
        host: &HostKey,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::store::HistoryPoint>, StoreError> {
        self.store().history(host, since)
    }

    /// A repo's sizes since `since`.
    pub fn repo_sizes(
        &self,
        namespace: &str,
        repo: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::store::SizePoint>, StoreError> {
        self.store().repo_sizes(namespace, repo, since)
    }

    /// The Backups of a schedule's newest runs on any host, as served, newest first.
    pub fn schedule_backups(
        &self,
        namespace: &str,
        schedule: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.reader().schedule_backups(namespace, schedule, limit)
    }

    /// The hosts with snapshots in a repo, as their agents last reported them.
    pub fn repo_hosts(
        &self,
        namespace: &str,
        repo: &str,
    ) -> Result<Vec<crate::store::RepoHost>, StoreError> {
        self.reader().repo_hosts(namespace, repo)
    }

    /// Revisions read, newest first: up to `limit` older than `before`, or the newest.
    pub fn revision_list(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<crate::store::RevisionEntry>, StoreError> {
        self.reader().revision_list(before, limit)
    }

    /// Whether the host's agent is connected and was heard from within the grace.
    fn online(state: &State, host: &HostKey, grace: Duration) -> bool {
        state
            .sessions
            .get(host)
            .is_some_and(|s| s.last_heard.elapsed() <= grace)
    }
}

/// Starts the tasks that keep the read model (and status) current and the history tables
/// within their retention.
pub fn start_model(controller: Arc<Controller>) {
    tokio::spawn(model::writer(controller.clone()));
    tokio::spawn(prune_history(controller));
}

/// How often the history tables are pruned; a table with more to delete goes on sooner.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

async fn prune_history(controller: Arc<Controller>) {
    loop {
        let c = controller.clone();
        let pass = tokio::task::spawn_blocking(move || c.store().prune_history(chrono::Utc::now()));
        let more = match pass.await {
            Ok(Ok(pruned)) => {
                if pruned != Default::default() {
                    tracing::info!(?pruned, "pruned history beyond its retention");
                }
                pruned.more()
            }
            Ok(Err(e)) => {
                tracing::error!("cannot prune history: {e}");
                false
            }
            Err(e) => {
                tracing::error!("pruning history panicked: {e}");
                false
            }
        };
        // Between batches the store is free for reports.
        let pause = if more {
            Duration::from_secs(1)
        } else {
            PRUNE_EVERY
        };
        tokio::time::sleep(pause).await;
    }
}

/// The agent endpoints (enroll and the WebSocket), for the server that serves everything.
pub fn agent_router(controller: Arc<Controller>) -> axum::Router {
    hub::router(controller)
}

/// Files mode's source: puts the stored revision back in force, reads the directory once, then
/// watches it.
pub fn start_directory(controller: Arc<Controller>, dir: PathBuf) -> Result<(), WatchError> {
    desired::start(controller, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOLD: Duration = Duration::from_secs(2);

    fn sent(controller: &Controller, hosts: &[&HostKey]) {
        let mut state = controller.state();
        state.awaiting.extend(hosts.iter().map(|h| (*h).clone()));
        state.pushed_at = Some(tokio::time::Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn the_status_writer_waits_for_the_acks_of_what_was_sent_at_most_the_hold() {
        let (controller, _data) = backend::testing::files_controller();
        let (a, b) = (HostKey::new("default", "a"), HostKey::new("default", "b"));
        let started = tokio::time::Instant::now();
        controller.acks_settled(HOLD).await;
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "nothing sent, nothing to wait for"
        );

        sent(&controller, &[&a, &b]);
        let c = controller.clone();
        let waiting = tokio::spawn(async move { c.acks_settled(HOLD).await });
        tokio::task::yield_now().await;
        controller.answered(&mut controller.state(), &a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "b has not acked");
        controller.answered(&mut controller.state(), &b);
        waiting.await.expect("the wait ends");
        assert!(started.elapsed() < HOLD, "the last ack ends the wait");

        // An agent that never acks holds the writer for the hold, no longer.
        sent(&controller, &[&a]);
        let started = tokio::time::Instant::now();
        controller.acks_settled(HOLD).await;
        assert_eq!(started.elapsed(), HOLD);
        let again = tokio::time::Instant::now();
        controller.acks_settled(HOLD).await;
        assert_eq!(
            again.elapsed(),
            Duration::ZERO,
            "past the hold since the push"
        );
    }
}
