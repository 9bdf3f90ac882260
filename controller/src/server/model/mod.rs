//! The read model: every resource with metadata and status, as the API, the page and metrics
//! show it. A writer task recomputes it when something changed (at most every [`COALESCE`]),
//! and when the clock alone changes a status: a host's next run comes or it turns stale, a
//! run going on adds to its duration, an agent's `lastSeen` moves on a step. It writes to SQLite
//! only the objects whose spec or status changed.
//!
//! Repos, Hosts and Schedules (as many as the fleet) are held in memory. Backups and Restores
//! (as many as the history) live in SQLite: a pass settles only the records that changed (see
//! [`history`]) and readers page through the store.

mod alerting;
mod history;
mod index;
mod mirror;
mod settle;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::Resource;
use serde::Serialize;

pub use history::History;
pub use index::{Index, Touched};
pub use settle::event_reference;

use super::Controller;
use super::changes::ChangeType;
use crate::compile::HostKey;
use crate::records::{backup_object, restore_object};
use crate::resources::{Backup, Host, Kind, Notifier, Repo, Schedule, Snapshot};
use crate::revision::{name_of, namespace_of};
use crate::runs::RunRecord;
use crate::status::{self, Inputs};
use crate::store::{ObjectId, Revisions, Store, StoreError, StoredObject};
use index::{Found, Scope};
use settle::{HasStatus, Writer, settle_desired};

/// Changes that arrive together are written together.
const COALESCE: Duration = Duration::from_millis(200);
/// After a long pass the writer waits this many times as long before the next one, so that
/// passes take at most a third of a core while changes keep coming (10,000 acks in a second)
/// and leave the rest to the hub; each pass then takes more of the changes at once.
const REST: u32 = 2;
/// The longest the writer waits for changes to gather.
const MAX_COALESCE: Duration = Duration::from_secs(2);
/// Recompute at most this often for the clock; also how often objects observed outside (the
/// cluster's) are read again, and a pass that failed is retried.
const TICK: Duration = Duration::from_secs(1);
/// Recompute at least this often.
const IDLE: Duration = Duration::from_secs(60);
/// The clock alone moves Schedule status (a host's next run comes, or it turns stale) on this
/// step: each pass then takes every such change of a whole step, not one pass a second while a
/// fleet's jittered runs come due. A host that runs its schedule reports, which recomputes at
/// once; the step delays only the hosts that do not (offline, not enrolled) and staleness.
const SCHEDULE_STEP: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// The fleet's resources as last written; Backups and Restores are read from the store.
#[derive(Default)]
pub struct ReadModel {
    pub resource_version: i64,
    pub revisions: Revisions,
    /// Each object by pointer: a pass that recomputes a few carries the others over as they are.
    pub repos: Vec<Arc<Repo>>,
    pub hosts: Vec<Arc<Host>>,
    pub schedules: Vec<Arc<Schedule>>,
    pub notifiers: Vec<Arc<Notifier>>,
    /// Backups of runs going on, newest first (the fleet page's "running now").
    pub active: Vec<Backup>,
    stored: BTreeMap<ObjectId, Arc<StoredObject>>,
}

impl ReadModel {
    /// Every Repo, Host, Schedule or Notifier as JSON, sorted by namespace and name (the API's
    /// list order); Backups and Restores are not held here.
    pub fn objects_json(&self, kind: Kind) -> Vec<serde_json::Value> {
        fn all<K: Serialize>(items: &[K]) -> Vec<serde_json::Value> {
            items
                .iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect()
        }
        let mut objects = match kind {
            Kind::Repo => all(&self.repos),
            Kind::Host => all(&self.hosts),
            Kind::Schedule => all(&self.schedules),
            Kind::Notifier => all(&self.notifiers),
            Kind::Backup | Kind::Restore | Kind::Snapshot => Vec::new(),
        };
        objects.sort_by(|a, b| {
            let key = |o: &serde_json::Value| {
                (
                    o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    o["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            };
            key(a).cmp(&key(b))
        });
        objects
    }

    /// What selectors read (namespace, name, labels) of the Repos, Hosts, Schedules and
    /// Notifiers among `ids`, as `{"metadata": …}`.
    fn selection_metadata(
        &self,
        ids: &HashSet<(Kind, &str, &str)>,
    ) -> HashMap<ObjectId, serde_json::Value> {
        fn some<K: Resource>(
            kind: Kind,
            items: &[Arc<K>],
            ids: &HashSet<(Kind, &str, &str)>,
            out: &mut HashMap<ObjectId, serde_json::Value>,
        ) {
            for o in items {
                let m = o.meta();
                let namespace = m.namespace.as_deref().unwrap_or_default();
                let name = m.name.as_deref().unwrap_or_default();
                if !ids.contains(&(kind, namespace, name)) {
                    continue;
                }
                let metadata = serde_json::json!({"metadata": {
                    "namespace": namespace, "name": name, "labels": m.labels,
                }});
                out.insert((kind, namespace.into(), name.into()), metadata);
            }
        }
        let mut out = HashMap::new();
        some(Kind::Repo, &self.repos, ids, &mut out);
        some(Kind::Host, &self.hosts, ids, &mut out);
        some(Kind::Schedule, &self.schedules, ids, &mut out);
        some(Kind::Notifier, &self.notifiers, ids, &mut out);
        out
    }

    /// A Repo, Host, Schedule or Notifier being deleted, as last written, at the deletion's
    /// resourceVersion. After a restart the objects are not loaded yet: then the identity alone.
    fn object_json(&self, id: &ObjectId, resource_version: i64) -> serde_json::Value {
        let (kind, namespace, name) = id;
        let found = self.objects_json(*kind).into_iter().find(|o| {
            o["metadata"]["namespace"] == namespace.as_str()
                && o["metadata"]["name"] == name.as_str()
        });
        let mut object = found.unwrap_or_else(|| {
            serde_json::json!({
                "apiVersion": crate::resources::API_VERSION,
                "kind": kind.as_str(),
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": self.stored.get(id).map(|o| o.meta.uid.clone()),
                },
            })
        });
        object["metadata"]["resourceVersion"] = resource_version.to_string().into();
        object
    }

    /// The uid of a Repo, Host or Schedule, as served.
    pub fn uid(&self, kind: Kind, namespace: &str, name: &str) -> Option<&str> {
        let id = (kind, namespace.to_string(), name.to_string());
        self.stored.get(&id).map(|o| o.meta.uid.as_str())
    }

    /// The stored identities and statuses; the objects come with the first recompute.
    pub fn load(store: &Store) -> Result<ReadModel, StoreError> {
        Ok(ReadModel {
            resource_version: store.resource_version()?,
            revisions: store.revisions()?,
            stored: store
                .fleet_objects()?
                .into_iter()
                .map(|(id, o)| (id, Arc::new(o)))
                .collect(),
            ..ReadModel::default()
        })
    }
}

pub async fn writer(controller: Arc<Controller>) {
    let mut due = tokio::time::Instant::now();
    let mut spent = Duration::ZERO;
    loop {
        tokio::select! {
            _ = controller.dirty.notified() => {
                tokio::time::sleep(coalesce(spent)).await;
                controller.acks_settled(MAX_COALESCE).await;
            }
            _ = tokio::time::sleep_until(due) => {}
        }
        let c = controller.clone();
        let started = std::time::Instant::now();
        let pass = tokio::task::spawn_blocking(move || rebuild(&c)).await;
        spent = started.elapsed();
        tracing::debug!(took_ms = spent.as_millis(), "status pass");
        let until = match pass {
            Ok(Ok(until)) => until,
            Ok(Err(e)) => {
                tracing::error!("cannot write status: {e}");
                None
            }
            Err(e) => {
                tracing::error!("writing status panicked: {e}");
                None
            }
        };
        let wait = until
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(TICK)
            .clamp(TICK, IDLE);
        due = tokio::time::Instant::now() + wait;
    }
}

/// How long changes gather before a pass, after a pass that took `spent`.
fn coalesce(spent: Duration) -> Duration {
    (spent * REST).clamp(COALESCE, MAX_COALESCE)
}

/// When the clock alone next changes a status: the schedules' own time (`schedules`), rounded
/// up to a [`SCHEDULE_STEP`]. An agent's `lastSeen` moves with its heartbeats, and a run going
/// on with its reports.
fn recompute_at(schedules: Option<chrono::DateTime<Utc>>) -> Option<chrono::DateTime<Utc>> {
    use chrono::DurationRound;
    schedules.and_then(|at| {
        let start = at.duration_trunc(SCHEDULE_STEP).ok()?;
        Some(if start == at {
            at
        } else {
            start + SCHEDULE_STEP
        })
    })
}

/// Recomputes the fleet's statuses, settles the run records that changed, and writes what
/// changed. Returns when the clock alone changes a status next (`None`: as soon as may be).
fn rebuild(controller: &Controller) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
    controller.save_agents();
    if let Some(observed) = controller.backend.observed() {
        if !controller.backend.is_leading() {
            controller.alerting.stop();
            mirror::mirror(controller, observed)?;
            return Ok(None);
        }
        // The cluster's objects change without telling: read them again each second.
        compute(controller)?;
        return Ok(None);
    }
    compute(controller)
}

fn compute(controller: &Controller) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
    let touched = std::mem::take(&mut controller.state().restatus);
    let result = compute_touched(controller, &touched);
    if result.is_err() {
        // What this pass took was not written: the next one starts over.
        controller.index().reset();
    }
    result
}

/// What the status of the hosts a pass recomputes is made from.
struct HostInputs {
    versions: BTreeMap<HostKey, crate::versions::Versioned>,
    agents: BTreeMap<HostKey, crate::store::AgentRecord>,
    online: BTreeSet<HostKey>,
}

impl HostInputs {
    /// Of every host, or of the hosts `scope` names.
    fn read(controller: &Controller, scope: &Scope) -> HostInputs {
        let state = controller.state();
        let grace = controller.config.offline_after;
        let online = |k: &&HostKey| Controller::online(&state, k, grace);
        match scope {
            Scope::Everything => HostInputs {
                versions: state.versions.clone(),
                agents: state.agents.clone(),
                online: state.sessions.keys().filter(online).cloned().collect(),
            },
            Scope::Touched { hosts, .. } => {
                fn pick<V: Clone>(
                    map: &BTreeMap<HostKey, V>,
                    hosts: &BTreeSet<HostKey>,
                ) -> BTreeMap<HostKey, V> {
                    hosts
                        .iter()
                        .filter_map(|k| Some((k.clone(), map.get(k)?.clone())))
                        .collect()
                }
                HostInputs {
                    versions: pick(&state.versions, hosts),
                    agents: pick(&state.agents, hosts),
                    online: hosts.iter().filter(online).cloned().collect(),
                }
            }
        }
    }
}

fn compute_touched(
    controller: &Controller,
    touched: &Touched,
) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
    let now = Utc::now();
    let (revision, fleet, rejected) = {
        let state = controller.state();
        let rejected = state.rejected.clone();
        (state.revision.clone(), state.fleet.clone(), rejected)
    };
    let stores = controller.backend.observed();
    let previous = controller.model();
    let mut index = controller.index();
    let first = index.is_new();
    let mut history = controller.records();
    let mut store = controller.store();
    let pass = history.pass(&mut store, &revision)?;
    let found = Found {
        runs: &pass.observed,
        observed: stores.is_some(),
        reloaded: pass.reloaded,
    };
    let scope = index.scope(&revision, &fleet, &rejected, touched, found, now);
    // The hub locks the state, then the store: the state is read without the store locked.
    drop(store);
    let HostInputs {
        mut versions,
        agents,
        online,
    } = HostInputs::read(controller, &scope);
    let mut store = controller.store();
    if let Some(observed) = stores {
        hold_versions(&mut versions, &revision, &observed.hosts);
    }
    // Each record with its object as stored: what settling compares with.
    let mut records = Vec::with_capacity(pass.settle.len());
    for (id, run) in pass.settle {
        let before = store.stored_object(&id)?;
        records.push((run, before));
    }
    let mut deleted = Vec::new();
    for id in pass.deleted.into_iter().chain(pass.orphans) {
        let served = store.stored_object(&id)?.and_then(|(_, served)| served);
        deleted.push((id, served));
    }
    // Only a new revision moves when snapshots go.
    let forgets = scope.everything().then(|| forget_hashes(&fleet));
    let moved = forgets.as_ref().map(|after| (&index.forgets, after));
    let snapshots = snapshots_to_settle(&mut store, &fleet, first, moved, now)?;
    if let Some(forgets) = forgets {
        index.forgets = forgets;
    }
    let repo_sizes =
        store.latest_repo_sizes(revision.repos.iter().map(|r| (namespace_of(r), name_of(r))))?;
    let snapshot_counts = store.snapshot_counts()?;
    let scrub = store.scrub_cycles()?;
    let revisions = store.revisions()?;
    drop(store);

    let schedule_created = |ns: &str, name: &str| {
        previous
            .stored
            .get(&(Kind::Schedule, ns.to_string(), name.to_string()))
            .map(|o| o.meta.created_at)
    };
    let is_online = |k: &HostKey| online.contains(k);
    let inputs = Inputs {
        now,
        revision: &revision,
        fleet: &fleet,
        versions: &versions,
        agents: &agents,
        online: &is_online,
        runs: &history.summaries,
        repo_sizes: &repo_sizes,
        snapshot_counts: &snapshot_counts,
        scrub: &scrub,
        schedule_created: &schedule_created,
    };
    let mut host_status = match &scope {
        Scope::Everything => status::hosts(&inputs),
        Scope::Touched { hosts, .. } => hosts
            .iter()
            .filter_map(|k| {
                let host = revision.hosts.get(index.place(k)?)?;
                Some((k.clone(), status::host(&inputs, host)))
            })
            .collect(),
    };
    let mut crons = status::CronCache::default();
    let mut schedule_status = BTreeMap::new();
    for schedule in &revision.schedules {
        let (namespace, name) = (namespace_of(schedule), name_of(schedule));
        if !scope.has_schedule(namespace, name) {
            continue;
        }
        let id = (namespace.to_string(), name.to_string());
        let (status, at) = status::schedule_until(&inputs, &index.runners, &mut crons, schedule);
        index.set_until(id.clone(), at);
        schedule_status.insert(id, status);
    }
    index.recomputed = index::Recomputed {
        hosts: host_status.len(),
        schedules: schedule_status.len(),
    };
    tracing::debug!(
        hosts = host_status.len(),
        schedules = schedule_status.len(),
        "status recomputed"
    );
    let mut repo_status = status::repos(&inputs);
    let until = recompute_at(index.until());
    drop(history);

    let mut writer = Writer::new(&previous, now, true);
    if !scope.everything() {
        writer.keep_all();
    }
    let repos = settle_desired(
        &mut writer,
        &revision.repos,
        |r| r.status = repo_status.remove(&(namespace_of(r).into(), name_of(r).into())),
        &rejected,
        stores.map(|s| &s.repos),
    );
    let hosts = settle_hosts(
        &mut writer,
        &mut index,
        &revision,
        &previous,
        &scope,
        &mut host_status,
        stores,
    );
    let schedules = match &scope {
        Scope::Everything => settle_desired(
            &mut writer,
            &revision.schedules,
            |s| s.status = schedule_status.remove(&(namespace_of(s).into(), name_of(s).into())),
            &rejected,
            stores.map(|s| &s.schedules),
        ),
        Scope::Touched { .. } => {
            let mut schedules = previous.schedules.clone();
            for (i, s) in revision.schedules.iter().enumerate() {
                let id = (namespace_of(s).to_string(), name_of(s).to_string());
                let Some(status) = schedule_status.remove(&id) else {
                    continue;
                };
                let settled = settle::settle_one(
                    &mut writer,
                    s,
                    |s: &mut Schedule| s.status = Some(status),
                    &rejected,
                );
                if let Some(slot) = schedules.get_mut(i) {
                    *slot = Arc::new(settled);
                }
            }
            schedules
        }
    };
    drop(index);
    let mut active = Vec::new();
    for (run, before) in &records {
        settle_record(&mut writer, &revision, run, before.as_ref(), &mut active);
    }
    for (id, served) in deleted {
        writer.delete_record(id, served);
    }
    for (snapshot, before) in snapshots.settle {
        writer.settle_record(Kind::Snapshot, snapshot, before.as_ref());
    }
    for (id, served) in snapshots.deleted {
        writer.delete_record(id, served);
    }
    active.sort_by_key(|b| std::cmp::Reverse(b.metadata.creation_timestamp.clone()));
    let settled = alerting::Settled {
        repos: &repos,
        hosts: &hosts,
        schedules: &schedules,
        events: &writer.events,
    };
    let alerts_until =
        alerting::observe(controller, &revision, &settled, &revisions, &rejected, now);
    let deliveries = controller.alerting.deliveries()?;
    let none = crate::notices::Deliveries::default();
    let notifiers = settle_desired(
        &mut writer,
        &revision.notifiers,
        |n| {
            let id = (namespace_of(n).to_string(), name_of(n).to_string());
            n.status = Some(crate::notices::status(deliveries.get(&id).unwrap_or(&none)));
        },
        &rejected,
        stores.map(|s| &s.notifiers),
    );
    let until = match (until, alerts_until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let objects = Objects {
        repos,
        hosts,
        schedules,
        notifiers,
        active,
    };
    let decided = std::mem::take(&mut writer.decided);
    publish(controller, &previous, writer, revisions, objects)?;
    // RecordedEvent once the objects they are about are served.
    for (regarding, decision) in decided {
        controller.backend.record(regarding, decision);
    }
    Ok(until)
}

/// The Hosts of the next read model: every host settled with its status as computed, or, for
/// a pass that recomputed some, the model's hosts with those settled again.
fn settle_hosts(
    writer: &mut Writer,
    index: &mut Index,
    revision: &crate::revision::Revision,
    previous: &ReadModel,
    scope: &Scope,
    computed: &mut BTreeMap<HostKey, crate::resources::HostStatus>,
    stores: Option<&crate::server::backend::Stores>,
) -> Vec<Arc<Host>> {
    match scope {
        Scope::Everything => revision
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let key = HostKey::new(namespace_of(h), name_of(h));
                let status = computed.remove(&key);
                settle_host(writer, index, previous, (i, h), key, status, stores)
            })
            .collect(),
        Scope::Touched { hosts, .. } => {
            let mut out = previous.hosts.clone();
            for key in hosts {
                let Some(i) = index.place(key) else { continue };
                let (Some(h), true) = (revision.hosts.get(i), i < out.len()) else {
                    continue;
                };
                let status = computed.remove(key);
                out[i] = settle_host(writer, index, previous, (i, h), key.clone(), status, stores);
            }
            out
        }
    }
}

/// One Host with its status: as the model holds it when its status hashes as before (under
/// the same revision, the model holds the hosts in the revision's order), else settled anew.
fn settle_host(
    writer: &mut Writer,
    index: &mut Index,
    previous: &ReadModel,
    (i, host): (usize, &Host),
    key: HostKey,
    mut status: Option<crate::resources::HostStatus>,
    stores: Option<&crate::server::backend::Stores>,
) -> Arc<Host> {
    if let (Some(status), Some(observed)) = (&mut status, stores) {
        keep_last_backup(status, &observed.hosts, &key);
    }
    let hash = hash_of(&status);
    let unchanged = index.host_status.insert(key.clone(), hash) == Some(hash);
    let held = previous.hosts.get(i).filter(|p| {
        unchanged && name_of(p.as_ref()) == key.name && namespace_of(p.as_ref()) == key.namespace
    });
    if let Some(held) = held
        && writer.keep((Kind::Host, key.namespace, key.name))
    {
        return held.clone();
    }
    let mut h = host.clone();
    let held = h.conditions();
    h.status = status;
    Arc::new(writer.settle(Kind::Host, h, held))
}

/// The version each host's status holds in the source, for the hosts this process has handed
/// none yet (a new leader, before its reconciles): written back without it, the status would
/// lose the version a new leader continues from.
fn hold_versions(
    versions: &mut BTreeMap<HostKey, crate::versions::Versioned>,
    revision: &crate::revision::Revision,
    observed: &kube::runtime::reflector::Store<Host>,
) {
    for h in &revision.hosts {
        let key = HostKey::new(namespace_of(h), name_of(h));
        if versions.contains_key(&key) {
            continue;
        }
        let reference = kube::runtime::reflector::ObjectRef::new(&key.name).within(&key.namespace);
        let held = observed
            .get(&reference)
            .and_then(|h| crate::versions::held(h.status.as_ref()?));
        if let Some(held) = held {
            versions.insert(key, held);
        }
    }
}

/// A hash of `value`'s JSON, taken without building the text.
fn hash_of<T: Serialize>(value: &T) -> u64 {
    use std::hash::Hasher;
    struct Hashing(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for Hashing {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Default::default());
    // Serialising a status into a hasher cannot fail; if it did, the host is settled anew.
    match serde_json::to_writer(&mut hashing, value) {
        Ok(()) => hashing.0.finish(),
        Err(_) => 0,
    }
}

/// A Host's last backup as the source holds it (written by an earlier leader, whose runs this
/// process's journal lacks) when it is newer than the one the journal gives.
fn keep_last_backup(
    status: &mut crate::resources::HostStatus,
    observed: &kube::runtime::reflector::Store<Host>,
    host: &HostKey,
) {
    let key = kube::runtime::reflector::ObjectRef::new(&host.name).within(&host.namespace);
    let held = observed
        .get(&key)
        .and_then(|h| h.status.as_ref()?.last_backup.clone())
        // An earlier version held a missed or skipped run as the last backup.
        .filter(|l| crate::summaries::ended(l.phase));
    status.last_backup = match (status.last_backup.take(), held) {
        (Some(journal), Some(held)) if held.time.0 > journal.time.0 => Some(held),
        (journal, held) => journal.or(held),
    };
}

/// The object of one run record: its file's (a request), or one made from the record.
fn settle_record(
    writer: &mut Writer,
    revision: &crate::revision::Revision,
    run: &RunRecord,
    before: Option<&(StoredObject, Option<serde_json::Value>)>,
    active: &mut Vec<Backup>,
) {
    let now = writer.now;
    match run.kind {
        Kind::Restore => {
            let file = revision
                .restores
                .iter()
                .find(|r| namespace_of(*r) == run.namespace && name_of(*r) == run.name);
            writer.settle_record(Kind::Restore, restore_object(run, file, now), before);
        }
        _ => {
            let file = revision
                .backups
                .iter()
                .find(|b| namespace_of(*b) == run.namespace && name_of(*b) == run.name);
            let backup = writer.settle_record(Kind::Backup, backup_object(run, file, now), before);
            if !run.is_final() {
                active.push(backup);
            }
        }
    }
}

/// An object as stored, and as last served.
type Stored = (StoredObject, Option<serde_json::Value>);

/// The Snapshot objects a pass writes, each with its stored copy, and those it deletes.
#[derive(Default)]
struct SnapshotWrites {
    settle: Vec<(Snapshot, Option<Stored>)>,
    deleted: Vec<(ObjectId, Option<serde_json::Value>)>,
}

/// A hash of each host's forget schedules, as far as they decide when its snapshots go.
type Forgets = HashMap<HostKey, u64>;

/// Each host's [`Forgets`] hash.
fn forget_hashes(fleet: &crate::compile::Fleet) -> Forgets {
    fleet
        .hosts
        .iter()
        .map(|(key, compiled)| {
            let plan = &compiled.plan;
            let forgets: Vec<_> = plan
                .schedules
                .iter()
                .filter(|s| s.operation == protocol::Operation::Forget)
                .map(|s| {
                    (
                        &s.name,
                        &s.cron,
                        &s.time_zone,
                        s.jitter_seconds,
                        &s.repo.name,
                        &s.forget,
                        s.suspend,
                    )
                })
                .collect();
            (key.clone(), hash_of(&(plan.paused, forgets)))
        })
        .collect()
}

/// The Snapshot objects of the snapshot lists that changed, and of every list of a host whose
/// forget schedules changed (all of them on the first pass), since when each goes follows
/// them; and the objects of forgotten snapshots (on the first pass, also those left without
/// a snapshot while the controller was not running).
fn snapshots_to_settle(
    store: &mut Store,
    fleet: &crate::compile::Fleet,
    first: bool,
    forgets: Option<(&Forgets, &Forgets)>,
    now: chrono::DateTime<Utc>,
) -> Result<SnapshotWrites, StoreError> {
    let changes = store.take_snapshot_changes();
    let mut sets = changes.sets;
    let mut forgotten = changes.forgotten;
    if first {
        forgotten.extend(store.orphaned_snapshot_objects()?);
    }
    let forgets = forgets.filter(|(before, after)| first || before != after);
    if let Some((before, after)) = forgets {
        let moved = |namespace: &str, host: &str| {
            let key = HostKey::new(namespace, host);
            first || before.get(&key) != after.get(&key)
        };
        sets.extend(
            store
                .snapshot_sets()?
                .into_iter()
                .filter(|(namespace, host, _)| moved(namespace, host)),
        );
    }
    let mut out = SnapshotWrites::default();
    for (namespace, host, repo) in sets {
        let known = store.snapshots(&namespace, &host, &repo)?;
        let plan = fleet
            .hosts
            .get(&HostKey::new(&namespace, &host))
            .map(|c| &c.plan);
        for snapshot in crate::snapshots::objects(&namespace, &host, &repo, &known, plan, now) {
            let id = (
                Kind::Snapshot,
                namespace.clone(),
                name_of(&snapshot).to_string(),
            );
            let before = store.stored_object(&id)?;
            out.settle.push((snapshot, before));
        }
    }
    // Reported again since it was forgotten (a list replaced twice in one pass): it stays.
    let settled: HashSet<(&str, &str)> = out
        .settle
        .iter()
        .map(|(s, _)| (namespace_of(s), name_of(s)))
        .collect();
    forgotten
        .retain(|(_, namespace, name)| !settled.contains(&(namespace.as_str(), name.as_str())));
    for id in forgotten {
        if let Some((_, served)) = store.stored_object(&id)? {
            out.deleted.push((id, served));
        }
    }
    Ok(out)
}

/// The objects of the next read model.
struct Objects {
    repos: Vec<Arc<Repo>>,
    hosts: Vec<Arc<Host>>,
    schedules: Vec<Arc<Schedule>>,
    notifiers: Vec<Arc<Notifier>>,
    active: Vec<Backup>,
}

/// Deletes what is gone, stores what changed, swaps the model and tells the watches.
fn publish(
    controller: &Controller,
    previous: &ReadModel,
    mut writer: Writer,
    revisions: Revisions,
    objects: Objects,
) -> Result<(), StoreError> {
    // Repos, Hosts, Schedules and Notifiers no longer desired are deleted.
    let gone: Vec<ObjectId> = previous
        .stored
        .keys()
        .filter(|id| !writer.next.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        writer.resource_version += 1;
        let object = previous.object_json(&id, writer.resource_version);
        let event = super::changes::Change::new(
            writer.resource_version,
            id.0,
            ChangeType::Deleted,
            &object,
            None,
        );
        writer.events.push(event);
        writer.changes.push((id, None));
    }
    if !writer.changes.is_empty() {
        controller
            .store()
            .write_objects(&writer.changes, writer.resource_version)?;
    }
    let model = ReadModel {
        resource_version: writer.resource_version,
        revisions,
        repos: objects.repos,
        hosts: objects.hosts,
        schedules: objects.schedules,
        notifiers: objects.notifiers,
        active: objects.active,
        stored: writer.next,
    };
    let mut events = writer.events;
    let fleet_kind = |k: Kind| !matches!(k, Kind::Backup | Kind::Restore | Kind::Snapshot);
    if events.iter().any(|e| fleet_kind(e.kind)) {
        let ids: HashSet<(Kind, &str, &str)> = events
            .iter()
            .filter(|e| fleet_kind(e.kind))
            .map(|e| {
                let (namespace, name) = e.key();
                (e.kind, namespace, name)
            })
            .collect();
        let before = previous.selection_metadata(&ids);
        drop(ids);
        for event in events.iter_mut().filter(|e| fleet_kind(e.kind)) {
            let (namespace, name) = event.key();
            let id = (event.kind, namespace.to_string(), name.to_string());
            event.before = before.get(&id).cloned();
        }
    }
    *controller.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
    controller.changes.publish(events);
    controller
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_long_pass_changes_gather_twice_as_long_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(coalesce(Duration::ZERO), COALESCE);
        assert_eq!(
            coalesce(ms(80)),
            COALESCE,
            "a short pass waits the usual time"
        );
        assert_eq!(coalesce(ms(400)), ms(800));
        assert_eq!(coalesce(Duration::from_secs(30)), MAX_COALESCE);
    }
    use crate::resources::ObjectKey;

    /// Host web-1 in namespace fleet, as the cluster holds it, with `status`.
    fn web_1(status: serde_json::Value) -> Host {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "namespace": "fleet", "uid": "u-web-1", "generation": 1},
            "spec": {"defaultRepo": "nas"},
            "status": status,
        }))
        .expect("a host")
    }

    #[test]
    fn the_clock_wakes_the_writer_at_schedule_steps() {
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .expect("a time")
                .to_utc()
        };
        assert_eq!(recompute_at(None), None, "nothing to wait for");
        assert_eq!(
            recompute_at(Some(at("2026-12-01T10:03:00Z"))),
            Some(at("2026-12-01T10:03:00Z"))
        );
        assert_eq!(
            recompute_at(Some(at("2026-12-01T10:03:07Z"))),
            Some(at("2026-12-01T10:03:30Z")),
            "a schedule's time waits for the end of its step"
        );
    }

    #[tokio::test]
    async fn a_follower_shows_the_cluster_objects_with_the_status_the_leader_wrote() {
        // Generation 3 is not observed yet: a follower must not claim it is.
        let host: Host = serde_json::from_value(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "namespace": "fleet", "uid": "u-web-1", "generation": 3,
                         "creationTimestamp": "2026-11-01T00:00:00Z"},
            "spec": {"defaultRepo": "nas"},
            "status": {"observedGeneration": 2, "online": true, "desiredScheduleVersion": 4,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                                       "message": "in sync", "lastTransitionTime": "2026-11-20T00:00:00Z"}]},
        }))
        .expect("a host");
        use crate::server::backend::testing::{Mirror, controller, empty, listed};
        let mut stores = empty();
        stores.hosts = listed(vec![host.clone()]);
        let (controller, _data) = controller(Box::new(Mirror {
            stores,
            leading: false,
            events: Default::default(),
        }));
        rebuild(&controller).expect("rebuilt");
        let model = controller.model();
        assert_eq!(model.hosts.len(), 1);
        assert_eq!(
            model.hosts[0].status, host.status,
            "the status exactly as read"
        );
        assert_eq!(model.hosts[0].metadata.uid.as_deref(), Some("u-web-1"));
        assert_eq!(model.hosts[0].metadata.generation, Some(3));
    }

    #[tokio::test]
    async fn a_leaders_host_status_keeps_an_earlier_leaders_last_backup_until_a_newer_run() {
        use crate::server::backend::testing::{Mirror, controller, empty, listed};
        // What the leader before this one wrote: its journal went with it.
        let mut stores = empty();
        stores.hosts = listed(vec![web_1(serde_json::json!({
            "lastBackup": {"backup": "nightly-web-1-old", "phase": "Succeeded",
                           "time": "2026-11-30T01:00:00Z"},
        }))]);
        let (controller, _data) = controller(Box::new(Mirror {
            stores,
            leading: true,
            events: Default::default(),
        }));
        let repo: Repo = serde_json::from_value(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Repo",
            "metadata": {"name": "nas", "namespace": "fleet", "uid": "u-nas", "generation": 1},
            "spec": {"url": "/srv/restic", "password": {"hostFile": "/etc/holdfast/nas.password"}},
        }))
        .expect("a repo");
        let revision = crate::revision::Revision {
            repos: vec![repo],
            hosts: vec![web_1(serde_json::Value::Null)],
            ..Default::default()
        };
        let fleet = crate::compile::compile(&revision).expect("compiles");
        let key = HostKey::new("fleet", "web-1");
        let version = crate::versions::Versioned {
            version: 1,
            digest: fleet.hosts[&key].digest.clone(),
        };
        {
            let mut state = controller.state();
            state.revision = Arc::new(revision);
            state.fleet = Arc::new(fleet);
            state.versions.insert(key.clone(), version.clone());
            state.agents.insert(
                key.clone(),
                crate::store::AgentRecord {
                    applied_version: Some(1),
                    applied_digest: Some(version.digest.clone()),
                    ..Default::default()
                },
            );
        }
        rebuild(&controller).expect("rebuilt");
        let status = |controller: &Controller| {
            let model = controller.model();
            model.hosts[0].status.clone().expect("a status")
        };
        let first = status(&controller);
        assert_eq!(
            first.last_backup.as_ref().map(|l| l.backup.as_str()),
            Some("nightly-web-1-old")
        );
        assert_eq!(first.desired_schedule_version, Some(1));
        let condition = |t: &str| {
            first
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| format!("{}/{}", c.status, c.reason))
        };
        assert_eq!(condition("ScheduleInSync").as_deref(), Some("True/InSync"));
        assert_eq!(condition("Reconciling").as_deref(), Some("False/Idle"));

        // A run this leader's agent reported is newer.
        let now = Utc::now();
        let mut run = RunRecord::pending(
            Kind::Backup,
            &key,
            "nightly-web-1-new".into(),
            "job-new".into(),
            protocol::JobOperation::Backup,
            now,
        );
        run.phase = crate::resources::Phase::Succeeded;
        run.finished_at = Some(now);
        controller.store().save_run(&run).expect("saved");
        rebuild(&controller).expect("rebuilt");
        assert_eq!(
            status(&controller).last_backup.map(|l| l.backup),
            Some("nightly-web-1-new".to_string())
        );
    }

    #[tokio::test]
    async fn a_new_leader_writes_back_the_version_host_status_holds_until_it_hands_out_one() {
        use crate::server::backend::testing::{Mirror, controller, empty, listed};
        let mut stores = empty();
        stores.hosts = listed(vec![web_1(serde_json::json!({
            "desiredScheduleVersion": 4, "desiredScheduleDigest": "sha256:d4",
        }))]);
        let (controller, _data) = controller(Box::new(Mirror {
            stores,
            leading: true,
            events: Default::default(),
        }));
        controller.state().revision = Arc::new(crate::revision::Revision {
            hosts: vec![web_1(serde_json::Value::Null)],
            ..Default::default()
        });
        rebuild(&controller).expect("rebuilt");
        let status = controller.model().hosts[0]
            .status
            .clone()
            .expect("a status");
        assert_eq!(status.desired_schedule_version, Some(4));
        assert_eq!(status.desired_schedule_digest.as_deref(), Some("sha256:d4"));
    }

    #[tokio::test]
    async fn a_pass_writes_only_the_hosts_whose_status_changed() {
        use crate::server::backend::testing::{Mirror, controller, empty};
        let (controller, _data) = controller(Box::new(Mirror {
            stores: empty(),
            leading: true,
            events: Default::default(),
        }));
        let object = |kind: &str, name: &str, spec: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "holdfast.dev/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": "fleet", "uid": name, "generation": 1},
                "spec": spec,
            })
        };
        let revision: crate::revision::Revision = crate::revision::Revision {
            repos: vec![
                serde_json::from_value(object(
                    "Repo",
                    "nas",
                    serde_json::json!({"url": "/srv/restic", "password": {"hostFile": "/p"}}),
                ))
                .expect("a repo"),
            ],
            hosts: ["web-1", "web-2", "web-3"]
                .iter()
                .map(|h| {
                    serde_json::from_value(object(
                        "Host",
                        h,
                        serde_json::json!({"defaultRepo": "nas"}),
                    ))
                    .expect("a host")
                })
                .collect(),
            ..Default::default()
        };
        let fleet = crate::compile::compile(&revision).expect("compiles");
        {
            let mut state = controller.state();
            state.versions = fleet
                .hosts
                .iter()
                .map(|(k, h)| {
                    let v = crate::versions::Versioned {
                        version: 1,
                        digest: h.digest.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            state.revision = Arc::new(revision);
            state.fleet = Arc::new(fleet);
        }
        rebuild(&controller).expect("rebuilt");
        let first = controller.model();
        let mut changes = controller.changes.subscribe();
        let json = |hosts: &[Arc<Host>]| serde_json::to_value(hosts).expect("serialises");
        let host_changes = |changes: &mut tokio::sync::broadcast::Receiver<
            Arc<crate::server::changes::Change>,
        >| {
            let mut names = Vec::new();
            while let Ok(change) = changes.try_recv() {
                names.push(change.key().1.to_string());
            }
            names
        };

        rebuild(&controller).expect("rebuilt");
        assert!(host_changes(&mut changes).is_empty(), "nothing changed");
        assert_eq!(json(&controller.model().hosts), json(&first.hosts));

        // web-2's agent applied version 1.
        let web_2 = HostKey::new("fleet", "web-2");
        {
            let mut state = controller.state();
            let digest = state.versions[&web_2].digest.clone();
            state.agents.insert(
                web_2.clone(),
                crate::store::AgentRecord {
                    applied_version: Some(1),
                    applied_digest: Some(digest),
                    ..Default::default()
                },
            );
        }
        rebuild(&controller).expect("rebuilt");
        assert_eq!(host_changes(&mut changes), ["web-2"]);
        let second = controller.model();
        assert_eq!(
            json(&second.hosts[..1]),
            json(&first.hosts[..1]),
            "web-1 as it was"
        );
        assert_eq!(
            json(&second.hosts[2..]),
            json(&first.hosts[2..]),
            "web-3 as it was"
        );
        let applied = |m: &ReadModel| {
            m.hosts[1]
                .status
                .as_ref()
                .and_then(|s| s.applied_schedule_version)
        };
        assert_eq!(applied(&second), Some(1));
        assert_ne!(
            second.hosts[1].metadata.resource_version,
            first.hosts[1].metadata.resource_version
        );

        // The same desired state as a new revision: each host is settled again, and unchanged.
        {
            let mut state = controller.state();
            state.revision = Arc::new((*state.revision).clone());
        }
        rebuild(&controller).expect("rebuilt");
        assert!(host_changes(&mut changes).is_empty());
        assert_eq!(json(&controller.model().hosts), json(&second.hosts));
    }

    #[tokio::test]
    async fn a_pass_recomputes_the_hosts_and_schedules_something_touched() {
        let (controller, _data) = crate::server::backend::testing::files_controller();
        use crate::source::files::{SourceFile, load_sources};
        let loaded = load_sources(vec![SourceFile::new(
            "fleet.yaml",
            "apiVersion: holdfast.dev/v1alpha1
kind: Repo
metadata: {name: nas, namespace: fleet}
spec: {url: /srv/restic, password: {hostFile: /etc/holdfast/nas.password}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata: {name: nightly, namespace: fleet}
spec: {operation: backup, cron: '0 1 * * *', hosts: [web-1, web-2, web-3], paths: [/srv]}
"
            .to_string()
                + &["web-1", "web-2", "web-3"]
                    .iter()
                    .map(|h| {
                        format!(
                            "---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {{name: {h}, namespace: fleet}}
spec: {{defaultRepo: nas}}
"
                        )
                    })
                    .collect::<String>(),
        )]);
        assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
        let revision = loaded.revision;
        let fleet = crate::compile::compile(&revision).expect("compiles");
        let version = |key: &HostKey| crate::versions::Versioned {
            version: 1,
            digest: fleet.hosts[key].digest.clone(),
        };
        let [web_1, web_2, web_3] = ["web-1", "web-2", "web-3"].map(|h| HostKey::new("fleet", h));
        {
            let mut state = controller.state();
            for key in [&web_1, &web_2, &web_3] {
                state.versions.insert(key.clone(), version(key));
            }
            state.revision = Arc::new(revision);
            state.fleet = Arc::new(fleet.clone());
        }
        let recomputed = |hosts, schedules| index::Recomputed { hosts, schedules };
        let pass = |controller: &Controller| {
            rebuild(controller).expect("rebuilt");
            controller.index().recomputed
        };
        assert_eq!(pass(&controller), recomputed(3, 1), "the first pass");
        assert_eq!(pass(&controller), recomputed(0, 0), "nothing changed");

        // web-2's agent applied version 1, as the hub says it; web-3's record changes without
        // a word (nothing in the controller does that): only what was touched is recomputed.
        let applied = |controller: &Controller, key: &HostKey| {
            let mut state = controller.state();
            state.agents.insert(
                key.clone(),
                crate::store::AgentRecord {
                    applied_version: Some(1),
                    applied_digest: Some(version(key).digest),
                    ..Default::default()
                },
            );
        };
        applied(&controller, &web_2);
        controller.agent_changed(&web_2);
        applied(&controller, &web_3);
        assert_eq!(pass(&controller), recomputed(1, 0));
        let applied_version = |i: usize| {
            let model = controller.model();
            model.hosts[i]
                .status
                .as_ref()
                .and_then(|s| s.applied_schedule_version)
        };
        assert_eq!(applied_version(1), Some(1), "web-2");
        assert_eq!(applied_version(2), None, "web-3, untouched");

        // A run of nightly on web-1: web-1 and nightly are recomputed.
        let now = Utc::now();
        let mut run = RunRecord::pending(
            Kind::Backup,
            &web_1,
            "nightly-web-1-1".into(),
            "job-1".into(),
            protocol::JobOperation::Backup,
            now,
        );
        run.schedule = Some("nightly".into());
        run.repo = Some("nas".into());
        run.phase = crate::resources::Phase::Succeeded;
        run.finished_at = Some(now);
        controller.store().save_run(&run).expect("saved");
        assert_eq!(pass(&controller), recomputed(1, 1));
        let model = controller.model();
        let nightly = model.schedules[0].status.as_ref().expect("a status");
        assert_eq!(
            nightly.hosts[0].last_result,
            Some(crate::resources::Phase::Succeeded),
            "{nightly:?}"
        );
        assert_eq!(nightly.healthy_hosts, Some(1));
        let web_1_status = model.hosts[0].status.as_ref().expect("a status");
        assert_eq!(
            web_1_status.last_backup.as_ref().map(|l| l.backup.as_str()),
            Some("nightly-web-1-1")
        );
        drop(model);
        assert_eq!(pass(&controller), recomputed(0, 0));

        // A new revision recomputes everything: web-3 shows what its agent said.
        {
            let mut state = controller.state();
            state.revision = Arc::new((*state.revision).clone());
        }
        assert_eq!(pass(&controller), recomputed(3, 1));
        assert_eq!(applied_version(2), Some(1), "web-3");
    }

    #[tokio::test]
    async fn objects_that_keep_the_fleet_from_validating_are_stalled_until_a_revision_is_adopted() {
        use crate::server::backend::testing::{Mirror, controller, empty, listed};
        let schedule = |name: &str, generation: i64| -> Schedule {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "holdfast.dev/v1alpha1", "kind": "Schedule",
                "metadata": {"name": name, "namespace": "fleet", "uid": name, "generation": generation},
                "spec": {"operation": "backup", "cron": "0 1 * * *", "hosts": ["web-1"], "paths": ["/srv"]},
            }))
            .expect("a schedule")
        };
        // In the cluster: `nightly` edited (generation 2) and a new `hourly`, both invalid.
        let mut stores = empty();
        stores.schedules = listed(vec![schedule("nightly", 2), schedule("hourly", 1)]);
        let (controller, _data) = controller(Box::new(Mirror {
            stores,
            leading: true,
            events: Default::default(),
        }));
        {
            let mut state = controller.state();
            state.revision = Arc::new(crate::revision::Revision {
                schedules: vec![schedule("nightly", 1)],
                ..Default::default()
            });
            for name in ["nightly", "hourly"] {
                state.rejected.insert(
                    ObjectKey::new(Kind::Schedule, "fleet", name),
                    vec!["spec.repo: no Repo `nas2` in namespace `fleet`".into()],
                );
            }
        }
        rebuild(&controller).expect("rebuilt");
        let model = controller.model();
        let conditions = |name: &str| -> Vec<(String, String, String)> {
            let s = model
                .schedules
                .iter()
                .find(|s| name_of(s.as_ref()) == name)
                .unwrap_or_else(|| panic!("{name} is in the model"));
            let status = s.status.as_ref().expect("a status");
            status
                .conditions
                .iter()
                .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
                .collect()
        };
        let stalled = (
            "Stalled".to_string(),
            "True".to_string(),
            "Invalid".to_string(),
        );
        assert!(
            conditions("nightly").contains(&stalled),
            "{:?}",
            conditions("nightly")
        );
        assert_eq!(
            conditions("hourly"),
            [
                stalled.clone(),
                ("Ready".into(), "False".into(), "Invalid".into())
            ]
        );
        let nightly = model
            .schedules
            .iter()
            .find(|s| name_of(s.as_ref()) == "nightly")
            .expect("in the model");
        assert_eq!(
            nightly.status.as_ref().and_then(|s| s.observed_generation),
            Some(1),
            "the generation in force, not the one that does not validate"
        );
        let message = &nightly
            .status
            .as_ref()
            .expect("a status")
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .expect("stalled")
            .message;
        assert!(message.contains("no Repo `nas2`"), "{message}");

        controller.state().rejected.clear();
        rebuild(&controller).expect("rebuilt");
        let model = controller.model();
        assert!(
            model
                .schedules
                .iter()
                .all(|s| name_of(s.as_ref()) != "hourly"),
            "not in force, no longer rejected"
        );
        assert!(
            model.schedules[0]
                .status
                .as_ref()
                .is_none_or(|s| s.conditions.iter().all(|c| c.type_ != "Stalled")),
            "the fix clears Stalled"
        );
    }

    /// A finished scheduled backup of `nightly` on default/web-1, `minute` minutes in.
    fn finished(name: &str, phase: crate::resources::Phase, minute: i64) -> RunRecord {
        let at = chrono::DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0)
            .expect("a time");
        let mut record = crate::runs::finished(
            None,
            &HostKey::new("default", "web-1"),
            &serde_json::from_str(include_str!(
                "../../../../core/tests/fixtures/reports/job-finished.json"
            ))
            .expect("a report"),
            at,
        )
        .expect("a record");
        record.name = name.into();
        record.job = name.into();
        record.phase = phase;
        record.started_at = Some(at - chrono::Duration::seconds(2));
        record.finished_at = Some(at);
        record
    }

    fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
        serde_yaml::from_str(yaml).expect("a fixture object")
    }

    fn revision() -> crate::revision::Revision {
        crate::revision::Revision {
            repos: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: local}\nspec: {url: /srv/local, password: {hostFile: /p}}\n",
            )],
            hosts: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {name: web-1}\nspec: {defaultRepo: local}\n",
            )],
            schedules: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {name: nightly}\nspec: {operation: backup, cron: '0 2 * * *', hosts: [web-1], paths: [/srv]}\n",
            )],
            ..Default::default()
        }
    }

    fn leading() -> (Arc<Controller>, tempfile::TempDir) {
        use crate::server::backend::testing::{Mirror, controller, empty};
        let (controller, data) = controller(Box::new(Mirror {
            stores: empty(),
            leading: true,
            events: Default::default(),
        }));
        in_force(&controller);
        (controller, data)
    }

    fn in_force(controller: &Controller) {
        let revision = revision();
        let fleet = crate::compile::compile(&revision).expect("compiles");
        let mut state = controller.state();
        state.revision = Arc::new(revision);
        state.fleet = Arc::new(fleet);
    }

    fn names(objects: &[serde_json::Value]) -> Vec<String> {
        objects
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn records_are_served_from_the_store_page_by_page_and_pruned_per_schedule() {
        use crate::resources::Phase;
        let (controller, _data) = leading();
        for i in 0..12 {
            let run = finished(&format!("ok-{i:02}"), Phase::Succeeded, i);
            controller.store().save_run(&run).expect("saved");
        }
        rebuild(&controller).expect("rebuilt");
        let all = |c: &Controller| {
            c.records_page(Kind::Backup, None, None, None, &mut |_| true)
                .expect("read")
                .0
        };
        let expected: Vec<String> = (2..12).map(|i| format!("ok-{i:02}")).collect();
        assert_eq!(names(&all(&controller)), expected, "the newest 10 are kept");

        // Pages of 4 follow each other in name order.
        let mut seen = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let key = after.as_ref().map(|(n, m)| (n.as_str(), m.as_str()));
            let (page, more) = controller
                .records_page(Kind::Backup, None, key, Some(4), &mut |_| true)
                .expect("read");
            assert!(page.len() <= 4);
            seen.extend(names(&page));
            if !more {
                break;
            }
            let last = page.last().expect("a full page");
            after = Some((
                last["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                last["metadata"]["name"].as_str().unwrap_or_default().into(),
            ));
        }
        assert_eq!(seen, expected);

        // Nothing changed: nothing is written.
        let version = controller.model().resource_version;
        rebuild(&controller).expect("rebuilt");
        assert_eq!(controller.model().resource_version, version);

        // One more run: it is added and the oldest kept one deleted, and watches are told.
        let run = finished("ok-12", Phase::Succeeded, 12);
        controller.store().save_run(&run).expect("saved");
        rebuild(&controller).expect("rebuilt");
        let now: Vec<String> = (3..13).map(|i| format!("ok-{i:02}")).collect();
        assert_eq!(names(&all(&controller)), now);
        let (changes, _) = controller.changes.since(version).expect("in the window");
        let told: Vec<(ChangeType, String)> = changes
            .iter()
            .filter(|c| c.kind == Kind::Backup)
            .map(|c| (c.change, c.key().1.to_string()))
            .collect();
        assert_eq!(
            told,
            [
                (ChangeType::Added, "ok-12".to_string()),
                (ChangeType::Deleted, "ok-02".to_string())
            ]
        );
        assert!(
            controller
                .record(Kind::Backup, "default", "ok-02")
                .expect("read")
                .is_none()
        );
    }

    #[tokio::test]
    async fn status_after_a_restart_is_read_back_from_the_stored_records() {
        use crate::resources::Phase;
        let (controller, _data) = leading();
        controller
            .store()
            .save_run(&finished("first", Phase::Succeeded, 1))
            .expect("saved");
        controller
            .store()
            .save_run(&finished("second", Phase::Failed, 2))
            .expect("saved");
        rebuild(&controller).expect("rebuilt");
        let status = |c: &Controller| {
            let model = c.model();
            let host = model.hosts[0].status.clone().expect("a status");
            let schedule = model.schedules[0].status.clone().expect("a status");
            let repo = model.repos[0].status.clone().expect("a status");
            (host.last_backup, schedule.hosts, repo.initialized)
        };
        let before = status(&controller);
        assert_eq!(
            before.0.as_ref().map(|l| (l.backup.as_str(), l.phase)),
            Some(("second", Phase::Failed))
        );
        assert_eq!(before.1[0].last_result, Some(Phase::Failed));
        assert_eq!(before.2, Some(true));

        use crate::server::backend::testing::{Mirror, empty};
        let again = Controller::open(
            controller.config.clone(),
            Box::new(Mirror {
                stores: empty(),
                leading: true,
                events: Default::default(),
            }),
        )
        .expect("opens");
        in_force(&again);
        rebuild(&again).expect("rebuilt");
        assert_eq!(status(&again), before);
    }

    #[tokio::test]
    async fn a_revision_that_lowers_a_history_limit_prunes_that_schedule_at_once() {
        use crate::resources::Phase;
        let (controller, _data) = leading();
        for i in 0..6 {
            let run = finished(&format!("ok-{i}"), Phase::Succeeded, i);
            controller.store().save_run(&run).expect("saved");
        }
        rebuild(&controller).expect("rebuilt");
        let count = |c: &Controller| {
            c.records_page(Kind::Backup, None, None, None, &mut |_| true)
                .expect("read")
                .0
                .len()
        };
        assert_eq!(count(&controller), 6, "within the default limit of 10");

        let mut revision = revision();
        revision.schedules[0].spec.successful_runs_history_limit = Some(2);
        controller.state().revision = Arc::new(revision);
        rebuild(&controller).expect("rebuilt");
        let kept = controller
            .records_page(Kind::Backup, None, None, None, &mut |_| true)
            .expect("read")
            .0;
        assert_eq!(names(&kept), ["ok-4", "ok-5"]);
    }

    /// The Events (reason, kind and name regarded, its uid) the backend was given.
    fn recorded(controller: &Controller) -> Vec<(String, String, String, Option<String>)> {
        let log = controller
            .backend
            .events()
            .expect("the test backend keeps them");
        log.list(Utc::now())
            .0
            .iter()
            .map(|e| {
                let r = &e.regarding;
                (
                    e.reason.clone(),
                    r.kind.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                    r.uid.clone(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn status_changes_that_decide_something_are_events_about_their_objects() {
        use crate::resources::Phase;
        let (controller, _data) = leading();
        let host = HostKey::new("default", "web-1");
        let version = |v: u64| crate::versions::Versioned {
            version: v,
            digest: format!("sha256:{v}"),
        };
        controller.state().versions.insert(host.clone(), version(1));
        rebuild(&controller).expect("rebuilt");
        assert!(
            recorded(&controller).is_empty(),
            "first sight decides nothing"
        );

        controller.state().versions.insert(host.clone(), version(2));
        controller
            .store()
            .save_run(&finished("bad-1", Phase::Failed, 1))
            .expect("saved");
        controller
            .store()
            .save_run(&finished("gone-2", Phase::Missed, 2))
            .expect("saved");
        rebuild(&controller).expect("rebuilt");
        let model = controller.model();
        let uid = |kind: Kind, name: &str| model.uid(kind, "default", name).map(String::from);
        let backup_uid = controller
            .record(Kind::Backup, "default", "bad-1")
            .expect("read")
            .and_then(|b| b["metadata"]["uid"].as_str().map(String::from));
        let mut events = recorded(&controller);
        events.sort();
        assert_eq!(
            events,
            [
                (
                    "RunFailed".into(),
                    "Backup".into(),
                    "bad-1".into(),
                    backup_uid
                ),
                (
                    "ScheduleMissed".into(),
                    "Schedule".into(),
                    "nightly".into(),
                    uid(Kind::Schedule, "nightly")
                ),
                (
                    "ScheduleVersionChanged".into(),
                    "Host".into(),
                    "web-1".into(),
                    uid(Kind::Host, "web-1")
                ),
            ]
        );

        // Nothing changed: nothing more is decided.
        rebuild(&controller).expect("rebuilt");
        assert_eq!(recorded(&controller).len(), 3);
    }
}
