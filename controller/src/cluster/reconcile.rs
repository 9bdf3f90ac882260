//! A Host's reconcile in Kubernetes mode, for `kube-runtime`'s applier: the desired state is
//! read from reflector stores instead of a directory, validated and compiled by the same
//! [`validate`](crate::validate) and [`compile`], its version continued by the same
//! [`versions::next`] from what Host status already holds, and the status computed by the same
//! [`status::host`]; only the sink differs. The version, once in Host status, goes to the
//! agent hub ([`Hub::adopt`]), which pushes it.
//!
//! Versions continue from Host status (`desiredScheduleVersion` and its digest), so a restart,
//! a new leader or a no-op change bumps nothing. Versions this process wrote but the Host store
//! has not shown yet are remembered, so a quick second change cannot hand out a version twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use kube::Client;
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::compile::{self, CompileError, Fleet, HostKey};
use crate::diagnostics::{Finding, Severity};
use crate::resources::{Backup, Host, HostStatus, Kind, Phase, Restore};
use crate::revision::{Revision, name_of, namespace_of};
use crate::status::{self, Inputs, finish_conditions};
use crate::validate::{Mode, validate};
use crate::versions::{self, Versioned};

/// Recompute at least this often: online and last seen move without any object changing.
const RESYNC: Duration = Duration::from_secs(60);

pub use crate::resources::MANAGED_BY;
pub use crate::server::backend::Stores;
pub use crate::server::reconciler::{Agents, Hub};

fn is_request(meta: &ObjectMeta) -> bool {
    let recorded = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1);
    !recorded
}

/// Whether a Backup or Restore is a run request still to dispatch: created by a person and not
/// yet past Pending.
pub fn is_open_request(meta: &ObjectMeta, phase: Option<Phase>) -> bool {
    is_request(meta) && phase.is_none_or(|p| p == Phase::Pending)
}

/// Whether a run request is in the revision: until it has finished. One that is Dispatched or
/// Running stays in, so that a new leader, which has no record of it in its own database,
/// records it and sends it once more: the agent keys it by its job id, so it answers with the
/// run going on or the result it recorded (never running it twice), and its report of the run
/// has a record to land in instead of being refused as an unknown job.
pub fn is_unfinished_request(meta: &ObjectMeta, phase: Option<Phase>) -> bool {
    is_request(meta) && phase.is_none_or(|p| !crate::runs::is_final(p))
}

/// A decision worth an Event on the object it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// Where Host status and Events go: the API server, or memory in tests.
pub trait StatusSink: Send + Sync {
    /// Applies `status`, computed from the Host at `resource_version`.
    fn apply_host(
        &self,
        key: &HostKey,
        resource_version: Option<&str>,
        status: &HostStatus,
    ) -> BoxFuture<'static, Result<(), kube::Error>>;
    /// Records `decision` as an Event about the object `regarding`.
    fn event(
        &self,
        regarding: ObjectReference,
        decision: Decision,
    ) -> BoxFuture<'static, Result<(), kube::Error>>;
}

/// Host status by server-side apply on the status subresource; Events by `kube-runtime`'s
/// recorder (events.k8s.io, repeated ones folded into a series).
pub struct ApiSink {
    client: Client,
    recorder: Recorder,
}

impl ApiSink {
    pub fn new(client: Client, identity: &str) -> ApiSink {
        let reporter = Reporter {
            controller: super::sink::FIELD_MANAGER.into(),
            instance: Some(identity.into()),
        };
        ApiSink {
            recorder: Recorder::new(client.clone(), reporter),
            client,
        }
    }
}

impl StatusSink for ApiSink {
    fn apply_host(
        &self,
        key: &HostKey,
        resource_version: Option<&str>,
        status: &HostStatus,
    ) -> BoxFuture<'static, Result<(), kube::Error>> {
        let api: Api<Host> = Api::namespaced(self.client.clone(), &key.namespace);
        let name = key.name.clone();
        let rv = resource_version.map(str::to_string);
        let status = serde_json::to_value(status).unwrap_or_default();
        Box::pin(
            async move { super::sink::apply_status(&api, &name, rv.as_deref(), &status).await },
        )
    }

    fn event(
        &self,
        reference: ObjectReference,
        decision: Decision,
    ) -> BoxFuture<'static, Result<(), kube::Error>> {
        let recorder = self.recorder.clone();
        Box::pin(async move {
            let event = Event {
                type_: if decision.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: decision.reason.into(),
                note: Some(decision.note),
                action: "Reconcile".into(),
                secondary: None,
            };
            recorder.publish(&event, &reference).await
        })
    }
}

pub struct Context {
    pub stores: Stores,
    pub hub: Arc<dyn Hub>,
    pub sink: Arc<dyn StatusSink>,
    /// Versions applied by this process, ahead of the Host store.
    written: Mutex<BTreeMap<HostKey, Versioned>>,
    /// The last compile, reused while no spec or label changed. An async lock: reconciles
    /// after a change wait for one compile instead of each compiling, without blocking threads.
    compiled: tokio::sync::Mutex<Option<Compiled>>,
}

/// A compiled revision and the fingerprint of the objects it came from.
struct Compiled {
    fingerprint: u64,
    revision: Arc<Revision>,
    fleet: Arc<Fleet>,
}

impl Context {
    pub fn new(stores: Stores, hub: Arc<dyn Hub>, sink: Arc<dyn StatusSink>) -> Context {
        Context {
            stores,
            hub,
            sink,
            written: Mutex::new(BTreeMap::new()),
            compiled: tokio::sync::Mutex::new(None),
        }
    }

    /// The desired state in the stores, as one revision: every Repo, Host and Schedule, and
    /// the open run requests.
    fn revision(&self) -> Revision {
        let s = &self.stores;
        Revision {
            repos: all(&s.repos).map(|o| (*o).clone()).collect(),
            hosts: all(&s.hosts).map(|o| (*o).clone()).collect(),
            schedules: all(&s.schedules).map(|o| (*o).clone()).collect(),
            backups: open_backups(&s.backups).map(|o| (*o).clone()).collect(),
            restores: open_restores(&s.restores).map(|o| (*o).clone()).collect(),
        }
    }

    /// The compiled desired state. Compiling takes the whole fleet, so it is done again only
    /// when a spec or a label changed (status writes change neither), not on every reconcile.
    async fn desired(&self) -> Result<(Arc<Revision>, Arc<Fleet>), ReconcileError> {
        let s = &self.stores;
        let fingerprint = fingerprint(all(&s.repos))
            ^ fingerprint(all(&s.hosts)).rotate_left(13)
            ^ fingerprint(all(&s.schedules)).rotate_left(26)
            ^ fingerprint(open_backups(&s.backups)).rotate_left(39)
            ^ fingerprint(open_restores(&s.restores)).rotate_left(52);
        let mut cache = self.compiled.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| c.fingerprint == fingerprint) {
            return Ok((c.revision.clone(), c.fleet.clone()));
        }
        let revision = Arc::new(self.revision());
        let input = revision.clone();
        // Validating and compiling a large fleet takes a while: off the async threads.
        let fleet = tokio::task::spawn_blocking(move || {
            // A run request that does not validate fails alone, when it is dispatched: a
            // person's typo in a Backup must not hold back every host's schedule.
            let errors: Vec<Finding> = validate(&input, Mode::Kubernetes)
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .filter(|f| !matches!(f.object.kind, Kind::Backup | Kind::Restore))
                .collect();
            if !errors.is_empty() {
                return Err(ReconcileError::Rejected(errors));
            }
            Ok(compile::compile(&input)?)
        })
        .await
        .map_err(|e| ReconcileError::Internal(format!("compile stopped: {e}")))??;
        let fleet = Arc::new(fleet);
        *cache = Some(Compiled {
            fingerprint,
            revision: revision.clone(),
            fleet: fleet.clone(),
        });
        Ok((revision, fleet))
    }

    /// What `host` had: the newest of its status, what this process wrote since (ahead of the
    /// watch), and what its agent says it applied (a Host deleted and created again starts
    /// from its status anew, but its agent never accepts a lower version).
    fn previous_version(&self, key: &HostKey, host: &Host, agents: &Agents) -> Option<Versioned> {
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let applied = agents.records.get(key).and_then(|a| {
            Some(Versioned {
                version: a.applied_version?,
                digest: a.applied_digest.clone().unwrap_or_default(),
            })
        });
        // `max_by_key` keeps the last of equals: the agent's report counts only when newer.
        [applied, written.get(key).cloned(), stored_version(host)]
            .into_iter()
            .flatten()
            .max_by_key(|v| v.version)
    }
}

fn all<K>(store: &Store<K>) -> impl Iterator<Item = Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().into_iter()
}

fn open_backups(store: &Store<Backup>) -> impl Iterator<Item = Arc<Backup>> {
    all(store)
        .filter(|b| is_unfinished_request(&b.metadata, b.status.as_ref().and_then(|s| s.run.phase)))
}

fn open_restores(store: &Store<Restore>) -> impl Iterator<Item = Arc<Restore>> {
    all(store)
        .filter(|r| is_unfinished_request(&r.metadata, r.status.as_ref().and_then(|s| s.run.phase)))
}

/// An order-independent digest of what compile reads of some objects ([`inputs`]).
fn fingerprint<K: Resource>(objects: impl Iterator<Item = Arc<K>>) -> u64 {
    let (sum, count) = objects.fold((0u64, 0u64), |(sum, count), o| {
        (sum.wrapping_add(inputs(&*o)), count + 1)
    });
    sum ^ count.rotate_left(32)
}

/// What a reconcile reads of a Repo, Host or Schedule, as a digest: its identity, its
/// generation (the API server bumps it on spec changes only) and its labels (selectors). Status
/// writes, the controller's own included, change none of it, so they neither recompile the
/// fleet nor trigger a reconcile ([`Triggers`](super::run::Triggers)).
pub fn inputs<K: Resource>(object: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = object.meta();
    (&m.namespace, &m.name, &m.uid, m.generation, &m.labels).hash(&mut h);
    h.finish()
}

/// [`inputs`] of a Repo, Host or Schedule, as a trigger key: every one is in the revision.
pub fn desired_inputs<K: Resource>(object: &K) -> Option<u64> {
    Some(inputs(object))
}

/// [`inputs`] of a Backup while it is in the revision (an unfinished run request), `None`
/// otherwise: the records Holdfast writes and finished requests are read by no reconcile.
/// Its phase moving on while unfinished (`Pending`, `Dispatched`, `Running`: the leader's
/// own status writes) changes nothing a reconcile reads; leaving the revision does.
pub fn backup_inputs(b: &Backup) -> Option<u64> {
    is_unfinished_request(&b.metadata, b.status.as_ref().and_then(|s| s.run.phase))
        .then(|| inputs(b))
}

/// [`backup_inputs`], for a Restore.
pub fn restore_inputs(r: &Restore) -> Option<u64> {
    is_unfinished_request(&r.metadata, r.status.as_ref().and_then(|s| s.run.phase))
        .then(|| inputs(r))
}

/// The schedule version a Host holds in its status.
pub fn stored_version(host: &Host) -> Option<Versioned> {
    let status = host.status.as_ref()?;
    Some(Versioned {
        version: status.desired_schedule_version?,
        digest: status.desired_schedule_digest.clone()?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the fleet does not validate; the version in force stays: {}", describe(.0))]
    Rejected(Vec<Finding>),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("{0}")]
    Internal(String),
    #[error("cannot write the status of Host {host}: {source}")]
    Write {
        host: HostKey,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// A status write refused because the Host changed since it was read (409 Conflict): an
    /// expected race with the watch, not a failure.
    pub fn is_stale(&self) -> bool {
        matches!(self, ReconcileError::Write { source: kube::Error::Api(s), .. } if s.is_conflict())
    }
}

fn describe(findings: &[Finding]) -> String {
    let each: Vec<String> = findings
        .iter()
        .map(|f| format!("{} {}: {}", f.object, f.field, f.message))
        .collect();
    each.join("; ")
}

/// Computes one Host's desired version and status, and applies the status when it changed.
pub fn reconcile(
    host: Arc<Host>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>> {
    Box::pin(async move {
        let now = Utc::now();
        let key = HostKey::new(namespace_of(&*host), name_of(&*host));
        let desired = match ctx.desired().await {
            Ok(desired) => desired,
            Err(e) => {
                if let ReconcileError::Rejected(findings) = &e {
                    ctx.hub.rejected(findings);
                }
                if let ReconcileError::Rejected(_) | ReconcileError::Compile(_) = &e {
                    let decision = Decision {
                        warning: true,
                        reason: "RevisionRejected",
                        note: e.to_string(),
                    };
                    publish(&ctx, &host, decision).await;
                }
                return Err(e);
            }
        };
        let agents = ctx.hub.agents();
        let status = match desired_status(&ctx, &host, &desired, &agents, now) {
            Some(status) => status,
            None => return Ok(Action::await_change()),
        };
        let was_online = host.status.as_ref().and_then(|s| s.online);
        if was_online == Some(true) && status.online == Some(false) {
            let decision = Decision {
                warning: true,
                reason: "AgentOffline",
                note: "the agent is no longer connected; schedules already applied keep running on the host".into(),
            };
            publish(&ctx, &host, decision).await;
        }
        if host.status.as_ref() != Some(&status) {
            ctx.sink
                .apply_host(&key, host.metadata.resource_version.as_deref(), &status)
                .await
                .map_err(|source| ReconcileError::Write {
                    host: key.clone(),
                    source,
                })?;
            if let (Some(version), Some(digest)) = (
                status.desired_schedule_version,
                status.desired_schedule_digest.clone(),
            ) {
                ctx.written
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), Versioned { version, digest });
            }
            let before = host
                .status
                .as_ref()
                .and_then(|s| s.desired_schedule_version);
            if let (Some(before), Some(after)) = (before, status.desired_schedule_version)
                && after > before
            {
                let decision = Decision {
                    warning: false,
                    reason: "ScheduleVersionChanged",
                    note: format!(
                        "desired schedule version {after} (was {before}); the agent gets it when connected"
                    ),
                };
                publish(&ctx, &host, decision).await;
            }
        }
        // Pushed only once the version is in Host status: a new leader continues from there.
        if let (Some(version), Some(digest)) = (
            status.desired_schedule_version,
            status.desired_schedule_digest.clone(),
        ) {
            let (revision, fleet) = &desired;
            ctx.hub
                .adopt(revision, fleet, &key, Versioned { version, digest });
        }
        Ok(Action::requeue(RESYNC))
    })
}

/// Events are for people: one that cannot be written is logged, and the reconcile goes on.
async fn publish(ctx: &Context, host: &Host, decision: Decision) {
    let reason = decision.reason;
    if let Err(e) = ctx.sink.event(host.object_ref(&()), decision).await {
        tracing::warn!(host = name_of(host), reason, "cannot record an event: {e}");
    }
}

fn desired_status(
    ctx: &Context,
    host: &Host,
    (revision, fleet): &(Arc<Revision>, Arc<Fleet>),
    agents: &Agents,
    now: DateTime<Utc>,
) -> Option<HostStatus> {
    let key = HostKey::new(namespace_of(host), name_of(host));
    let compiled = fleet.hosts.get(&key)?;
    let previous = ctx.previous_version(&key, host, agents);
    let version = versions::next(previous.as_ref(), &compiled.digest);
    let runs = ctx.hub.runs(&key);
    let versions = BTreeMap::from([(key, version)]);
    let online = |k: &HostKey| agents.online.contains(k);
    let inputs = Inputs {
        now,
        revision,
        fleet,
        versions: &versions,
        agents: &agents.records,
        online: &online,
        runs: &crate::summaries::RunSummaries::of(&runs),
        repo_sizes: &BTreeMap::new(),
        snapshot_counts: &BTreeMap::new(),
        schedule_created: &|_, _| None,
    };
    let mut status = status::host(&inputs, host);
    // The journal holds this pod's runs; the status, those of the leaders before it.
    let before = host.status.as_ref().and_then(|s| s.last_backup.clone());
    status.last_backup = match (status.last_backup.take(), before) {
        (Some(now), Some(before)) if before.time.0 > now.time.0 => Some(before),
        (now, before) => now.or(before),
    };
    let generation = host.metadata.generation.unwrap_or(0);
    let previous_conditions = host
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    status.observed_generation = Some(generation);
    finish_conditions(
        &mut status.conditions,
        &previous_conditions,
        generation,
        now,
    );
    Some(status)
}

/// Retries a failed reconcile after a pause: soon for a write (a conflict means the store is
/// behind), later for a compile error (a fix anywhere in the fleet may clear it, and the
/// fixing change may be a deletion in another namespace).
pub fn error_policy(host: Arc<Host>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    if error.is_stale() {
        // The Host changed since the copy the status was computed from (often by the last
        // status write, not yet seen by the watch): the newer copy reconciles again.
        tracing::debug!(host = name_of(&*host), "reconcile of a stale copy: {error}");
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(host = name_of(&*host), "reconcile failed: {error}");
    match error {
        ReconcileError::Rejected(_) | ReconcileError::Compile(_) | ReconcileError::Internal(_) => {
            Action::requeue(Duration::from_secs(30))
        }
        ReconcileError::Write { .. } => Action::requeue(Duration::from_secs(5)),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use kube::runtime::reflector::{self, ObjectRef, store::Writer};
    use kube::runtime::{Config, applier, watcher};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use crate::resources::{Repo, Schedule};
    use crate::runs::RunRecord;
    use crate::store::AgentRecord;

    use super::*;

    /// Status applies and Events, kept instead of sent.
    #[derive(Default)]
    struct MemorySink {
        applied: Mutex<Vec<(HostKey, HostStatus)>>,
        events: Mutex<Vec<(String, Decision)>>,
    }

    impl MemorySink {
        fn take(&self) -> Vec<(HostKey, HostStatus)> {
            std::mem::take(&mut *self.applied.lock().expect("not poisoned"))
        }

        fn take_events(&self) -> Vec<(String, Decision)> {
            std::mem::take(&mut *self.events.lock().expect("not poisoned"))
        }
    }

    impl StatusSink for MemorySink {
        fn apply_host(
            &self,
            key: &HostKey,
            _resource_version: Option<&str>,
            status: &HostStatus,
        ) -> BoxFuture<'static, Result<(), kube::Error>> {
            self.applied
                .lock()
                .expect("not poisoned")
                .push((key.clone(), status.clone()));
            Box::pin(async { Ok(()) })
        }

        fn event(
            &self,
            regarding: ObjectReference,
            decision: Decision,
        ) -> BoxFuture<'static, Result<(), kube::Error>> {
            self.events
                .lock()
                .expect("not poisoned")
                .push((regarding.name.unwrap_or_default(), decision));
            Box::pin(async { Ok(()) })
        }
    }

    /// Agents as a test sets them; versions adopted, kept instead of pushed.
    #[derive(Default)]
    struct MemoryHub {
        agents: Mutex<Agents>,
        adopted: Mutex<Vec<(HostKey, u64, usize)>>,
        rejected: Mutex<Vec<String>>,
        runs: Mutex<Vec<RunRecord>>,
    }

    impl Hub for MemoryHub {
        fn agents(&self) -> Agents {
            self.agents.lock().expect("not poisoned").clone()
        }

        fn adopt(
            &self,
            revision: &Arc<Revision>,
            _fleet: &Arc<Fleet>,
            host: &HostKey,
            version: Versioned,
        ) {
            self.adopted.lock().expect("not poisoned").push((
                host.clone(),
                version.version,
                revision.backups.len(),
            ));
        }

        fn rejected(&self, findings: &[Finding]) {
            let mut rejected = self.rejected.lock().expect("not poisoned");
            *rejected = findings.iter().map(|f| f.object.to_string()).collect();
        }

        fn runs(&self, host: &HostKey) -> Vec<RunRecord> {
            let runs = self.runs.lock().expect("not poisoned");
            runs.iter()
                .filter(|r| r.host_key() == *host)
                .cloned()
                .collect()
        }
    }

    /// Reflector stores fed with fixture objects, as watches would feed them.
    struct World {
        hosts: Writer<Host>,
        schedules: Writer<Schedule>,
        backups: Writer<Backup>,
        ctx: Arc<Context>,
        sink: Arc<MemorySink>,
        hub: Arc<MemoryHub>,
    }

    fn from_yaml<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
        serde_yaml::from_str(yaml).expect("a fixture object")
    }

    fn host(name: &str, role: &str) -> Host {
        from_yaml(&format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: fleet, generation: 1, labels: {{role: {role}}}}}\nspec: {{defaultRepo: nas}}\n"
        ))
    }

    fn schedule(name: &str, role: &str, path: &str) -> Schedule {
        from_yaml(&format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {{name: {name}, namespace: fleet, generation: 1}}\nspec: {{operation: backup, cron: '0 1 * * *', hostSelector: {{matchLabels: {{role: {role}}}}}, paths: [{path}]}}\n"
        ))
    }

    /// The initial list of a watch: the store is ready (the applier waits for that) once it ends.
    fn list<K>(writer: &mut Writer<K>, objects: Vec<K>)
    where
        K: kube::runtime::reflector::Lookup + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }

    const REPO: &str = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: nas, namespace: fleet, generation: 1}\nspec: {url: /srv/restic, password: {hostFile: /etc/holdfast/nas.password}}\n";

    impl World {
        /// Three hosts, two web and one db, each with its own schedule; `hosts` may carry
        /// status from before.
        fn new(hosts: Vec<Host>) -> World {
            let (repo_store, mut repos) = reflector::store::<Repo>();
            let (host_store, mut host_writer) = reflector::store::<Host>();
            let (schedule_store, mut schedule_writer) = reflector::store::<Schedule>();
            let (backup_store, mut backup_writer) = reflector::store::<Backup>();
            let (restore_store, mut restore_writer) = reflector::store::<Restore>();
            list(&mut backup_writer, vec![]);
            list(&mut restore_writer, vec![]);
            list(&mut repos, vec![from_yaml(REPO)]);
            list(&mut host_writer, hosts);
            list(
                &mut schedule_writer,
                vec![
                    schedule("web-nightly", "web", "/srv/www"),
                    schedule("db-nightly", "db", "/var/lib/db"),
                ],
            );
            let sink = Arc::new(MemorySink::default());
            let hub = Arc::new(MemoryHub::default());
            let stores = Stores {
                repos: repo_store,
                hosts: host_store,
                schedules: schedule_store,
                backups: backup_store,
                restores: restore_store,
            };
            let ctx = Arc::new(Context::new(stores, hub.clone(), sink.clone()));
            World {
                hosts: host_writer,
                schedules: schedule_writer,
                backups: backup_writer,
                ctx,
                sink,
                hub,
            }
        }

        /// Reconciles every host once through the applier, and returns the statuses applied,
        /// after writing them into the Host store as the API server's watch would.
        async fn reconcile_all(&mut self) -> BTreeMap<String, HostStatus> {
            let refs: Vec<ObjectRef<Host>> = self
                .ctx
                .stores
                .hosts
                .state()
                .iter()
                .map(|h| ObjectRef::from_obj(&**h))
                .collect();
            let (tx, rx) = mpsc::unbounded_channel();
            for r in &refs {
                tx.send(Ok::<_, std::convert::Infallible>(r.clone()))
                    .expect("the queue is open");
            }
            let results: Vec<_> = applier(
                reconcile,
                error_policy,
                self.ctx.clone(),
                self.ctx.stores.hosts.clone(),
                UnboundedReceiverStream::new(rx),
                Config::default(),
            )
            .take(refs.len())
            .collect()
            .await;
            for r in &results {
                assert!(r.is_ok(), "reconcile failed: {r:?}");
            }
            let applied = self.sink.take();
            for (key, status) in &applied {
                let stored = self
                    .ctx
                    .stores
                    .hosts
                    .state()
                    .into_iter()
                    .find(|h| name_of(&**h) == key.name)
                    .expect("the host is in the store");
                let mut h = (*stored).clone();
                h.status = Some(status.clone());
                self.hosts.apply_watcher_event(&watcher::Event::Apply(h));
            }
            applied.into_iter().map(|(k, s)| (k.name, s)).collect()
        }

        /// A spec edit, as the API server records it: with the next generation.
        fn edit_schedule(&mut self, mut s: Schedule) {
            let before = self
                .ctx
                .stores
                .schedules
                .state()
                .into_iter()
                .find(|o| o.metadata.name == s.metadata.name)
                .and_then(|o| o.metadata.generation)
                .unwrap_or(0);
            s.metadata.generation = Some(before + 1);
            self.schedules
                .apply_watcher_event(&watcher::Event::Apply(s));
        }

        fn agent_offline(&self, host: &str) {
            let key = HostKey::new("fleet", host);
            self.hub
                .agents
                .lock()
                .expect("not poisoned")
                .online
                .remove(&key);
        }

        fn adopted(&self) -> Vec<(HostKey, u64, usize)> {
            let mut adopted = std::mem::take(&mut *self.hub.adopted.lock().expect("not poisoned"));
            adopted.sort();
            adopted
        }

        fn agent_runs(&self, host: &str, version: u64) {
            let key = HostKey::new("fleet", host);
            let mut agents = self.hub.agents.lock().expect("not poisoned");
            agents.online.insert(key.clone());
            agents.records.insert(
                key,
                AgentRecord {
                    applied_version: Some(version),
                    last_seen: Some(Utc::now()),
                    ..AgentRecord::default()
                },
            );
        }

        fn status(&self, host: &str) -> HostStatus {
            self.ctx
                .stores
                .hosts
                .state()
                .into_iter()
                .find(|h| name_of(&**h) == host)
                .and_then(|h| h.status.clone())
                .expect("a status")
        }
    }

    fn fleet() -> Vec<Host> {
        vec![
            host("web-1", "web"),
            host("web-2", "web"),
            host("db-1", "db"),
        ]
    }

    fn condition(status: &HostStatus, kind: &str) -> String {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| format!("{}/{}", c.status, c.reason))
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_schedule_edit_bumps_exactly_the_matching_hosts() {
        let mut world = World::new(fleet());
        let first = world.reconcile_all().await;
        assert_eq!(first.len(), 3, "every host gets its first status");
        for status in first.values() {
            assert_eq!(status.desired_schedule_version, Some(1));
            assert_eq!(status.observed_generation, Some(1));
        }

        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-2"));
        let second = world.reconcile_all().await;
        let bumped: BTreeMap<&str, Option<u64>> = second
            .iter()
            .map(|(k, s)| (k.as_str(), s.desired_schedule_version))
            .collect();
        assert_eq!(
            bumped,
            BTreeMap::from([("web-1", Some(2)), ("web-2", Some(2))]),
            "only the web hosts change, and db-1 is not written at all"
        );
        assert_eq!(world.status("db-1").desired_schedule_version, Some(1));
        // The applier reconciles hosts concurrently: compare in name order.
        let mut events: Vec<(String, &str)> = world
            .sink
            .take_events()
            .into_iter()
            .map(|(host, d)| (host, d.reason))
            .collect();
        events.sort();
        assert_eq!(
            events,
            [
                ("web-1".to_string(), "ScheduleVersionChanged"),
                ("web-2".to_string(), "ScheduleVersionChanged")
            ],
            "an event for each bumped host, none for the first version"
        );
    }

    /// A finished backup of `host` in the hub's journal.
    fn backup_run(host: &str, name: &str, minutes_ago: i64) -> RunRecord {
        let at = Utc::now() - chrono::Duration::minutes(minutes_ago);
        RunRecord {
            phase: Phase::Succeeded,
            finished_at: Some(at),
            ..RunRecord::pending(
                Kind::Backup,
                &HostKey::new("fleet", host),
                name.into(),
                name.into(),
                protocol::JobOperation::Backup,
                at,
            )
        }
    }

    #[tokio::test]
    async fn a_hosts_last_backup_comes_from_the_journal_and_survives_a_new_leader() {
        let mut world = World::new(fleet());
        world.agent_runs("web-1", 0);
        world.hub.runs.lock().expect("not poisoned").extend([
            backup_run("web-1", "web-nightly-web-1-older", 90),
            backup_run("web-1", "web-nightly-web-1-newest", 30),
            backup_run("web-2", "web-nightly-web-2", 10),
        ]);
        world.reconcile_all().await;
        let last = world.status("web-1").last_backup.expect("a last backup");
        assert_eq!(last.backup, "web-nightly-web-1-newest");
        assert_eq!(last.phase, Phase::Succeeded);

        // A new leader's journal is empty: the status keeps what the one before it wrote.
        world.hub.runs.lock().expect("not poisoned").clear();
        world.agent_runs("web-1", 1);
        world.reconcile_all().await;
        let kept = world.status("web-1").last_backup.expect("kept");
        assert_eq!(kept.backup, "web-nightly-web-1-newest");
        // Until a newer run is in its journal.
        world
            .hub
            .runs
            .lock()
            .expect("not poisoned")
            .push(backup_run("web-1", "web-nightly-web-1-next", 1));
        world.agent_runs("web-1", 1);
        world.reconcile_all().await;
        let next = world.status("web-1").last_backup.expect("the newer run");
        assert_eq!(next.backup, "web-nightly-web-1-next");
    }

    #[tokio::test]
    async fn an_agent_ack_turns_reconciling_off_and_schedule_in_sync_on() {
        let mut world = World::new(fleet());
        world.agent_runs("web-1", 0);
        world.reconcile_all().await;
        let waiting = world.status("web-1");
        assert_eq!(condition(&waiting, "Reconciling"), "True/AwaitingAck");
        assert_eq!(condition(&waiting, "ScheduleInSync"), "False/AwaitingAck");
        assert_eq!(waiting.online, Some(true));

        world.agent_runs("web-1", 1);
        let after = world.reconcile_all().await;
        let acked = &after["web-1"];
        assert_eq!(condition(acked, "Reconciling"), "False/Idle");
        assert_eq!(condition(acked, "ScheduleInSync"), "True/InSync");
        assert_eq!(condition(acked, "Ready"), "True/Ready");
        assert_eq!(acked.applied_schedule_version, Some(1));
        assert!(!after.contains_key("db-1"), "nothing changed for db-1");
    }

    #[tokio::test]
    async fn a_restart_from_stored_status_bumps_nothing() {
        let mut world = World::new(fleet());
        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-2"));
        world.reconcile_all().await;
        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-3"));
        world.reconcile_all().await;
        let before: Vec<Host> = ["web-1", "web-2", "db-1"]
            .iter()
            .map(|name| {
                let mut h = host(name, if name.starts_with("web") { "web" } else { "db" });
                h.status = Some(world.status(name));
                h
            })
            .collect();
        assert_eq!(
            before[0]
                .status
                .as_ref()
                .and_then(|s| s.desired_schedule_version),
            Some(2)
        );

        // A new process (a restart, or another replica taking the lease) with the same objects.
        let mut restarted = World::new(before);
        restarted.edit_schedule(schedule("web-nightly", "web", "/srv/www-3"));
        let applied = restarted.reconcile_all().await;
        assert!(
            applied.is_empty(),
            "nothing to write after a restart: {:?}",
            applied.keys().collect::<Vec<_>>()
        );
        assert_eq!(restarted.status("web-1").desired_schedule_version, Some(2));
        assert_eq!(restarted.status("db-1").desired_schedule_version, Some(1));
    }

    #[tokio::test]
    async fn a_fleet_that_does_not_validate_is_rejected_with_a_warning_and_changes_no_version() {
        let mut world = World::new(fleet());
        world.reconcile_all().await;
        let mut broken = schedule("web-nightly", "web", "/srv/www-2");
        broken.spec.repo = Some("missing".into());
        world.edit_schedule(broken);
        let refs: Vec<ObjectRef<Host>> = world
            .ctx
            .stores
            .hosts
            .state()
            .iter()
            .map(|h| ObjectRef::from_obj(&**h))
            .collect();
        for r in refs {
            let host = world.ctx.stores.hosts.get(&r).expect("in the store");
            let result = reconcile(host, world.ctx.clone()).await;
            assert!(
                matches!(result, Err(ReconcileError::Rejected(_))),
                "{result:?}"
            );
        }
        assert!(world.sink.take().is_empty(), "no status is written");
        let events = world.sink.take_events();
        assert_eq!(events.len(), 3, "{events:?}");
        for (_, d) in &events {
            assert!(d.warning && d.reason == "RevisionRejected", "{d:?}");
            assert!(d.note.contains("no Repo `missing`"), "{}", d.note);
        }
        assert_eq!(
            *world.hub.rejected.lock().expect("not poisoned"),
            ["Schedule/fleet/web-nightly"],
            "the hub learns which object is at fault"
        );
        assert_eq!(world.status("web-1").desired_schedule_version, Some(1));
    }

    #[tokio::test]
    async fn events_go_to_events_k8s_io_as_holdfast_about_the_host() {
        let created = serde_json::json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web-1.1", "namespace": "fleet"},
            "eventTime": "2026-11-22T01:00:00.000000Z"
        });
        let (client, server) = crate::cluster::scripted::api(vec![(201, created)]);
        let sink = ApiSink::new(client, "pod-a");
        let decision = Decision {
            warning: false,
            reason: "ScheduleVersionChanged",
            note: "desired schedule version 2 (was 1)".into(),
        };
        sink.event(host("web-1", "web").object_ref(&()), decision)
            .await
            .expect("recorded");
        let asked = server.await.expect("the server answered");
        assert_eq!(asked[0].method, "POST");
        assert_eq!(
            asked[0].path(),
            "/apis/events.k8s.io/v1/namespaces/fleet/events"
        );
        let body = &asked[0].body;
        assert_eq!(body["type"], "Normal");
        assert_eq!(body["reason"], "ScheduleVersionChanged");
        assert_eq!(body["note"], "desired schedule version 2 (was 1)");
        assert_eq!(body["action"], "Reconcile");
        assert_eq!(body["reportingController"], "holdfast");
        assert_eq!(body["reportingInstance"], "pod-a");
        assert_eq!(body["regarding"]["kind"], "Host");
        assert_eq!(body["regarding"]["name"], "web-1");
        assert_eq!(body["regarding"]["namespace"], "fleet");
        assert_eq!(body["regarding"]["apiVersion"], "holdfast.dev/v1alpha1");
    }

    #[tokio::test]
    async fn a_label_change_moves_a_host_to_other_schedules() {
        let mut world = World::new(fleet());
        world.reconcile_all().await;
        // Labels are metadata: the API server does not bump the generation for them, and the
        // compiled fleet must not be reused.
        let mut moved = host("db-1", "web");
        moved.status = Some(world.status("db-1"));
        world
            .hosts
            .apply_watcher_event(&watcher::Event::Apply(moved));
        let applied = world.reconcile_all().await;
        assert_eq!(applied["db-1"].desired_schedule_version, Some(2));
        assert!(!applied.contains_key("web-1"), "web-1's plan is the same");
    }

    #[tokio::test]
    async fn a_host_created_again_continues_above_what_its_agent_runs() {
        // The Host object was deleted and created again: no status, but its agent still runs
        // version 7 and would refuse anything lower.
        let mut world = World::new(fleet());
        world.agent_runs("web-1", 7);
        let applied = world.reconcile_all().await;
        assert_eq!(applied["web-1"].desired_schedule_version, Some(8));
        assert_eq!(applied["web-2"].desired_schedule_version, Some(1));
    }

    #[tokio::test]
    async fn a_version_goes_to_the_hub_once_it_is_in_host_status() {
        let mut world = World::new(fleet());
        world.reconcile_all().await;
        let adopted: Vec<(String, u64)> = world
            .adopted()
            .into_iter()
            .map(|(k, v, _)| (k.name, v))
            .collect();
        assert_eq!(
            adopted,
            [("db-1".into(), 1), ("web-1".into(), 1), ("web-2".into(), 1)]
        );
        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-2"));
        world.reconcile_all().await;
        let versions: BTreeMap<String, u64> = world
            .adopted()
            .into_iter()
            .map(|(k, v, _)| (k.name, v))
            .collect();
        assert_eq!(versions["web-1"], 2);
        assert_eq!(versions["db-1"], 1);
    }

    fn backup(name: &str, extra: &str) -> Backup {
        from_yaml(&format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata: {{name: {name}, namespace: fleet, generation: 1{extra}}}\nspec: {{host: web-1, schedule: web-nightly}}\n"
        ))
    }

    #[tokio::test]
    async fn open_run_requests_join_the_revision_and_records_do_not() {
        let mut world = World::new(fleet());
        let request = backup("by-hand", "");
        let record = backup(
            "web-nightly-web-1-29400000",
            ", labels: {app.kubernetes.io/managed-by: holdfast}",
        );
        let mut dispatched = backup("earlier", "");
        dispatched.status = Some(
            serde_json::from_value(serde_json::json!({"phase": "Dispatched"})).expect("a status"),
        );
        let mut done = backup("done", "");
        done.status = Some(
            serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).expect("a status"),
        );
        list(&mut world.backups, vec![request, record, dispatched, done]);
        world.reconcile_all().await;
        let requests: Vec<usize> = world.adopted().into_iter().map(|(_, _, n)| n).collect();
        assert_eq!(
            requests,
            [2, 2, 2],
            "`by-hand` to dispatch, and `earlier` still going (a new leader sends it once more); not the record, not the finished one"
        );
        let meta = backup("x", "").metadata;
        assert!(is_open_request(&meta, Some(Phase::Pending)));
        assert!(!is_open_request(&meta, Some(Phase::Running)));
        assert!(is_unfinished_request(&meta, Some(Phase::Running)));
        assert!(!is_unfinished_request(&meta, Some(Phase::Succeeded)));
    }

    #[tokio::test]
    async fn a_run_request_that_does_not_validate_holds_back_nothing() {
        let mut world = World::new(fleet());
        let mut typo = backup("by-hand", "");
        typo.spec.host = "web-9".into();
        list(&mut world.backups, vec![typo]);
        let applied = world.reconcile_all().await;
        assert_eq!(applied.len(), 3, "every host gets its status");
        assert!(world.sink.take_events().is_empty(), "no RevisionRejected");
    }

    #[tokio::test]
    async fn an_agent_going_offline_is_an_event_on_its_host() {
        let mut world = World::new(fleet());
        world.agent_runs("web-1", 0);
        world.reconcile_all().await;
        world.sink.take_events();
        world.agent_offline("web-1");
        let applied = world.reconcile_all().await;
        assert_eq!(applied["web-1"].online, Some(false));
        let events: Vec<(String, &str, bool)> = world
            .sink
            .take_events()
            .into_iter()
            .map(|(host, d)| (host, d.reason, d.warning))
            .collect();
        assert_eq!(events, [("web-1".to_string(), "AgentOffline", true)]);
    }
}
