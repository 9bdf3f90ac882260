//! The read model: every resource with metadata and status, as the API, the page and metrics
//! show it. A writer task recomputes it when something changed (at most every
//! [`COALESCE`]) and at least once a second (for times: offline, stale, next run), and writes
//! to SQLite only the objects whose spec or status changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Controller;
use super::changes::{Change, ChangeType};
use crate::compile::HostKey;
use crate::resources::{
    Backup, BackupSpec, BackupStatus, BackupSummary, Host, Kind, ObjectKey, Phase, Progress, Repo,
    Restore, RestoreSpec, RestoreStatus, RunStatus, Schedule,
};
use crate::revision::{name_of, namespace_of};
use crate::runs::{RunRecord, is_final, operation_name};
use crate::status::{self, Inputs, finish_conditions, human_bytes, human_duration};
use crate::store::Revisions;
use crate::store::{ObjectMeta, Store, StoreError, StoredObject};

/// Changes that arrive together are written together.
const COALESCE: Duration = Duration::from_millis(200);
/// Recompute at least this often: offline, stale and next-run times move with the clock.
const TICK: Duration = Duration::from_secs(1);
const DEFAULT_SUCCESSFUL_HISTORY: u32 = 10;
const DEFAULT_FAILED_HISTORY: u32 = 5;

type ObjectId = (Kind, String, String);

/// Every resource as last written.
#[derive(Default)]
pub struct ReadModel {
    pub resource_version: i64,
    pub revisions: Revisions,
    pub repos: Vec<Repo>,
    pub hosts: Vec<Host>,
    pub schedules: Vec<Schedule>,
    pub backups: Vec<Backup>,
    pub restores: Vec<Restore>,
    stored: BTreeMap<ObjectId, StoredObject>,
}

impl ReadModel {
    /// Every object of `kind` as JSON, sorted by namespace and name (the API's list order).
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
            Kind::Backup => all(&self.backups),
            Kind::Restore => all(&self.restores),
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

    /// What selectors read of every object (namespace, name, labels), as `{"metadata": …}`.
    fn selection_metadata(&self) -> HashMap<ObjectId, serde_json::Value> {
        fn all<K: Resource>(
            kind: Kind,
            items: &[K],
            out: &mut HashMap<ObjectId, serde_json::Value>,
        ) {
            for o in items {
                let m = o.meta();
                let namespace = m.namespace.clone().unwrap_or_default();
                let name = m.name.clone().unwrap_or_default();
                let metadata = serde_json::json!({"metadata": {
                    "namespace": namespace, "name": name, "labels": m.labels,
                }});
                out.insert((kind, namespace, name), metadata);
            }
        }
        let mut out = HashMap::new();
        all(Kind::Repo, &self.repos, &mut out);
        all(Kind::Host, &self.hosts, &mut out);
        all(Kind::Schedule, &self.schedules, &mut out);
        all(Kind::Backup, &self.backups, &mut out);
        all(Kind::Restore, &self.restores, &mut out);
        out
    }

    /// An object being deleted, as last written, at the deletion's resourceVersion. After a
    /// restart the objects are not loaded yet: then the identity alone.
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

    /// The stored identities and statuses; the objects come with the first recompute.
    pub fn load(store: &Store) -> Result<ReadModel, StoreError> {
        Ok(ReadModel {
            resource_version: store.resource_version()?,
            revisions: store.revisions()?,
            stored: store.objects()?,
            ..ReadModel::default()
        })
    }
}

pub async fn writer(controller: Arc<Controller>) {
    loop {
        tokio::select! {
            _ = controller.dirty.notified() => tokio::time::sleep(COALESCE).await,
            _ = tokio::time::sleep(TICK) => {}
        }
        let c = controller.clone();
        match tokio::task::spawn_blocking(move || rebuild(&c)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot write status: {e}"),
            Err(e) => tracing::error!("writing status panicked: {e}"),
        }
    }
}

/// Recomputes every status and writes what changed.
fn rebuild(controller: &Controller) -> Result<(), StoreError> {
    if let Some(observed) = controller.backend.observed()
        && !controller.backend.is_leading()
    {
        return mirror(controller, observed);
    }
    let now = Utc::now();
    let (revision, fleet, versions, agents, online, rejected) = {
        let state = controller.state();
        let grace = controller.config.offline_after;
        let online: BTreeSet<HostKey> = state
            .sessions
            .keys()
            .filter(|k| Controller::online(&state, k, grace))
            .cloned()
            .collect();
        (
            state.revision.clone(),
            state.fleet.clone(),
            state.versions.clone(),
            state.agents.clone(),
            online,
            state.rejected.clone(),
        )
    };
    let mut store = controller.store();
    let mut runs = store.runs()?;
    let doomed = pruned(&runs, &revision.schedules);
    if !doomed.is_empty() {
        store.delete_runs(&doomed)?;
        runs.retain(|r| !doomed.contains(&(r.kind, r.namespace.clone(), r.name.clone())));
    }
    let repo_sizes = store.latest_repo_sizes()?;
    let snapshot_counts = store.snapshot_counts()?;
    let revisions = store.revisions()?;
    drop(store);

    let previous = controller.model();
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
        runs: &runs,
        repo_sizes: &repo_sizes,
        snapshot_counts: &snapshot_counts,
        schedule_created: &schedule_created,
    };
    let mut host_status = status::hosts(&inputs);
    let mut schedule_status = status::schedules(&inputs);
    let mut repo_status = status::repos(&inputs);

    let mut writer = Writer::new(&previous, now, true);
    let stores = controller.backend.observed();
    let repos = settle_desired(
        &mut writer,
        &revision.repos,
        |r| r.status = repo_status.remove(&(namespace_of(r).into(), name_of(r).into())),
        &rejected,
        stores.map(|s| &s.repos),
    );
    let hosts = revision
        .hosts
        .iter()
        .map(|h| {
            let mut h = h.clone();
            let held = h.conditions();
            h.status = host_status.remove(&HostKey::new(namespace_of(&h), name_of(&h)));
            writer.settle(Kind::Host, h, held)
        })
        .collect();
    let schedules = settle_desired(
        &mut writer,
        &revision.schedules,
        |s| s.status = schedule_status.remove(&(namespace_of(s).into(), name_of(s).into())),
        &rejected,
        stores.map(|s| &s.schedules),
    );
    let mut backups = Vec::new();
    let mut restores = Vec::new();
    for run in runs.iter().rev() {
        match run.kind {
            Kind::Restore => {
                let file = revision
                    .restores
                    .iter()
                    .find(|r| namespace_of(*r) == run.namespace && name_of(*r) == run.name);
                let held = file.map(|f| f.conditions()).unwrap_or_default();
                restores.push(writer.settle(Kind::Restore, restore_object(run, file, now), held));
            }
            _ => {
                let file = revision
                    .backups
                    .iter()
                    .find(|b| namespace_of(*b) == run.namespace && name_of(*b) == run.name);
                let held = file.map(|f| f.conditions()).unwrap_or_default();
                backups.push(writer.settle(Kind::Backup, backup_object(run, file, now), held));
            }
        }
    }
    let objects = Objects {
        repos,
        hosts,
        schedules,
        backups,
        restores,
    };
    publish(controller, &previous, writer, revisions, objects)
}

/// A Repo or Schedule: desired state that a rejected revision can leave `Stalled`.
trait Desired: HasStatus + Resource<DynamicType = ()> + Clone + 'static {
    const KIND: Kind;
    /// The conditions of its status, which is created if it has none.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn clear_status(&mut self);
}

macro_rules! desired {
    ($kind:ident) => {
        impl Desired for $kind {
            const KIND: Kind = Kind::$kind;
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.status.get_or_insert_default().conditions
            }
            fn clear_status(&mut self) {
                self.status = None;
            }
        }
    };
}

desired!(Repo);
desired!(Schedule);

/// The objects in force with the status `compute` gives them, each at fault for a rejected
/// revision marked `Stalled`; then (Kubernetes mode, from the cluster's `store`) those at fault
/// that are not in force at all, `Stalled` and not `Ready`.
fn settle_desired<K: Desired>(
    writer: &mut Writer,
    in_force: &[K],
    mut compute: impl FnMut(&mut K),
    rejected: &BTreeMap<ObjectKey, Vec<String>>,
    store: Option<&kube::runtime::reflector::Store<K>>,
) -> Vec<K> {
    let now = writer.now;
    let key = |o: &K| ObjectKey::new(K::KIND, namespace_of(o), name_of(o));
    let mut out: Vec<K> = in_force
        .iter()
        .map(|o| {
            let mut o = o.clone();
            let held = o.conditions();
            compute(&mut o);
            if let Some(problems) = rejected.get(&key(&o)) {
                stall(o.conditions_mut(), problems, now);
            }
            writer.settle(K::KIND, o, held)
        })
        .collect();
    for mut o in store.map_or_else(Vec::new, |s| not_in_force(s, K::KIND, rejected, in_force)) {
        let Some(problems) = rejected.get(&key(&o)) else {
            continue;
        };
        let held = o.conditions();
        o.clear_status();
        stall(o.conditions_mut(), problems, now);
        never_ready(o.conditions_mut(), now);
        out.push(writer.settle(K::KIND, o, held));
    }
    out
}

/// Kubernetes mode: objects at fault for a rejected revision that are not in force at all
/// (new, or never valid), as the cluster holds them; they get a status that says why.
fn not_in_force<K>(
    store: &kube::runtime::reflector::Store<K>,
    kind: Kind,
    rejected: &BTreeMap<ObjectKey, Vec<String>>,
    in_force: &[K],
) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| {
            rejected.contains_key(&ObjectKey::new(kind, namespace_of(&***o), name_of(&***o)))
        })
        .filter(|o| {
            !in_force
                .iter()
                .any(|f| namespace_of(f) == namespace_of(&***o) && name_of(f) == name_of(&***o))
        })
        .map(|o| (**o).clone())
        .collect()
}

/// `Stalled`: this object's spec does not validate, which retrying will not fix; the spec in
/// force (if any) stays.
fn stall(conditions: &mut Vec<Condition>, problems: &[String], now: DateTime<Utc>) {
    set_condition(
        conditions,
        "Stalled",
        "Invalid",
        format!(
            "the spec does not validate, so the fleet's last valid revision stays in force: {}",
            problems.join("; ")
        ),
        now,
    );
}

/// `Ready=False` for an object that never was in force.
fn never_ready(conditions: &mut Vec<Condition>, now: DateTime<Utc>) {
    set_condition(
        conditions,
        "Ready",
        "Invalid",
        "not in force: its spec does not validate".into(),
        now,
    );
}

fn set_condition(
    conditions: &mut Vec<Condition>,
    kind: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) {
    conditions.retain(|c| c.type_ != kind);
    conditions.push(Condition {
        type_: kind.into(),
        status: if kind == "Ready" { "False" } else { "True" }.into(),
        reason: reason.into(),
        message,
        observed_generation: None,
        last_transition_time: crate::time::k8s(now),
    });
}

/// A follower in Kubernetes mode computes nothing: it shows the objects as the cluster holds
/// them, with the status the leader wrote.
fn mirror(controller: &Controller, stores: &super::backend::Stores) -> Result<(), StoreError> {
    fn all<K>(writer: &mut Writer, kind: Kind, store: &kube::runtime::reflector::Store<K>) -> Vec<K>
    where
        K: HasStatus + Resource<DynamicType = ()> + Clone + 'static,
    {
        store
            .state()
            .iter()
            .map(|o| {
                let object = (**o).clone();
                let held = object.conditions();
                writer.settle(kind, object, held)
            })
            .collect()
    }
    let previous = controller.model();
    let revisions = controller.store().revisions()?;
    let mut writer = Writer::new(&previous, Utc::now(), false);
    let objects = Objects {
        repos: all(&mut writer, Kind::Repo, &stores.repos),
        hosts: all(&mut writer, Kind::Host, &stores.hosts),
        schedules: all(&mut writer, Kind::Schedule, &stores.schedules),
        backups: all(&mut writer, Kind::Backup, &stores.backups),
        restores: all(&mut writer, Kind::Restore, &stores.restores),
    };
    publish(controller, &previous, writer, revisions, objects)
}

/// Every object of the next read model.
struct Objects {
    repos: Vec<Repo>,
    hosts: Vec<Host>,
    schedules: Vec<Schedule>,
    backups: Vec<Backup>,
    restores: Vec<Restore>,
}

/// Deletes what is gone, stores what changed, swaps the model and tells the watches.
fn publish(
    controller: &Controller,
    previous: &ReadModel,
    mut writer: Writer,
    revisions: Revisions,
    objects: Objects,
) -> Result<(), StoreError> {
    // Objects no longer desired, and records pruned, are deleted.
    let gone: Vec<ObjectId> = previous
        .stored
        .keys()
        .filter(|id| !writer.next.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        writer.resource_version += 1;
        writer.events.push(Change {
            resource_version: writer.resource_version,
            kind: id.0,
            change: ChangeType::Deleted,
            object: previous.object_json(&id, writer.resource_version),
            before: None,
        });
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
        backups: objects.backups,
        restores: objects.restores,
        stored: writer.next,
    };
    let mut events = writer.events;
    if !events.is_empty() {
        let before = previous.selection_metadata();
        for event in &mut events {
            let id = (
                event.kind,
                event.object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                event.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
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

/// Fills in metadata and the parts of status that depend on what was written before.
struct Writer<'a> {
    /// Whether statuses were computed here (and get observedGeneration and transition times),
    /// or are shown as read.
    computed: bool,
    previous: &'a BTreeMap<ObjectId, StoredObject>,
    next: BTreeMap<ObjectId, StoredObject>,
    changes: Vec<(ObjectId, Option<StoredObject>)>,
    /// The same changes as watch events.
    events: Vec<Change>,
    resource_version: i64,
    now: DateTime<Utc>,
}

/// The parts of a status every kind has.
trait HasStatus: Resource + Serialize {
    fn spec_json(&self) -> serde_json::Value;
    fn status_json(&self) -> Option<serde_json::Value>;
    fn finish(&mut self, previous: &[Condition], generation: i64, now: DateTime<Utc>);
    fn conditions(&self) -> Vec<Condition>;
}

macro_rules! has_status {
    ($kind:ty $(, $field:ident)?) => {
        impl HasStatus for $kind {
            fn spec_json(&self) -> serde_json::Value {
                serde_json::to_value(&self.spec).unwrap_or_default()
            }
            fn status_json(&self) -> Option<serde_json::Value> {
                self.status.as_ref().and_then(|s| serde_json::to_value(s).ok())
            }
            fn conditions(&self) -> Vec<Condition> {
                self.status.as_ref().map(|s| (*s)$(.$field)?.conditions.clone()).unwrap_or_default()
            }
            fn finish(&mut self, previous: &[Condition], generation: i64, now: DateTime<Utc>) {
                if let Some(status) = &mut self.status {
                    let status = &mut (*status)$(.$field)?;
                    status.observed_generation = Some(generation);
                    finish_conditions(&mut status.conditions, previous, generation, now);
                }
            }
        }
    };
}

// The run kinds keep their conditions in `status.run`.
has_status!(Repo);
has_status!(Host);
has_status!(Schedule);
has_status!(Backup, run);
has_status!(Restore, run);

impl<'a> Writer<'a> {
    fn new(previous: &'a ReadModel, now: DateTime<Utc>, computed: bool) -> Writer<'a> {
        Writer {
            computed,
            previous: &previous.stored,
            next: BTreeMap::new(),
            changes: Vec::new(),
            events: Vec::new(),
            resource_version: previous.resource_version,
            now,
        }
    }

    /// `held`: the conditions the object's status holds where it came from.
    fn settle<K: HasStatus>(&mut self, kind: Kind, mut object: K, held: Vec<Condition>) -> K {
        let id: ObjectId = (
            kind,
            object
                .meta()
                .namespace
                .clone()
                .unwrap_or_else(|| crate::resources::DEFAULT_NAMESPACE.into()),
            object.meta().name.clone().unwrap_or_default(),
        );
        let spec_digest = hex::encode(Sha256::digest(object.spec_json().to_string()));
        let m = object.meta();
        let meta_digest = hex::encode(Sha256::digest(
            serde_json::json!([m.labels, m.annotations]).to_string(),
        ));
        let before = self.previous.get(&id);
        // An object from the API server brings its own identity and generation.
        let m = object.meta();
        let from_cluster = match (&m.uid, m.generation) {
            (Some(uid), Some(generation)) => Some(ObjectMeta {
                uid: uid.clone(),
                generation,
                created_at: m
                    .creation_timestamp
                    .as_ref()
                    .map(crate::time::chrono)
                    .unwrap_or(self.now),
                resource_version: before.map_or(0, |b| b.meta.resource_version),
            }),
            _ => None,
        };
        let meta = from_cluster.unwrap_or_else(|| match before {
            Some(b) if b.spec_digest == spec_digest => b.meta.clone(),
            Some(b) => ObjectMeta {
                generation: b.meta.generation + 1,
                ..b.meta.clone()
            },
            None => ObjectMeta {
                uid: crate::store::new_uid(),
                generation: 1,
                created_at: self.now,
                resource_version: 0,
            },
        });
        // Transition times continue from what was written before: here, or (after a restart
        // in Kubernetes mode) in the cluster.
        let previous_conditions: Vec<Condition> = before
            .and_then(|b| b.status.as_ref())
            .and_then(|s| s.get("conditions"))
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or(held);
        if self.computed {
            object.finish(&previous_conditions, meta.generation, self.now);
        }
        let status = object.status_json();
        let unchanged = before.filter(|b| {
            b.spec_digest == spec_digest && b.meta_digest == meta_digest && b.status == status
        });
        let stored = if let Some(b) = unchanged {
            b.clone()
        } else {
            self.resource_version += 1;
            let stored = StoredObject {
                meta: ObjectMeta {
                    resource_version: self.resource_version,
                    ..meta
                },
                spec_digest,
                meta_digest,
                status,
            };
            self.changes.push((id.clone(), Some(stored.clone())));
            stored
        };
        let m = object.meta_mut();
        m.namespace = Some(id.1.clone());
        m.uid = Some(stored.meta.uid.clone());
        m.generation = Some(stored.meta.generation);
        m.resource_version = Some(stored.meta.resource_version.to_string());
        m.creation_timestamp = Some(crate::time::k8s(stored.meta.created_at));
        if unchanged.is_none() {
            self.events.push(Change {
                resource_version: stored.meta.resource_version,
                kind,
                change: if before.is_some() {
                    ChangeType::Modified
                } else {
                    ChangeType::Added
                },
                object: serde_json::to_value(&object).unwrap_or_default(),
                before: None,
            });
        }
        self.next.insert(id, stored);
        object
    }
}

const HOST_LABEL: &str = "holdfast.dev/host";
const SCHEDULE_LABEL: &str = "holdfast.dev/schedule";
const REPO_LABEL: &str = "holdfast.dev/repo";
const OPERATION_LABEL: &str = "holdfast.dev/operation";
const SCHEDULED_TIME_ANNOTATION: &str = "holdfast.dev/scheduled-time";

fn run_status(run: &RunRecord, now: DateTime<Utc>) -> RunStatus {
    let duration = run
        .started_at
        .map(|start| (run.finished_at.unwrap_or(now) - start).num_seconds())
        .map(human_duration);
    let phase = run.phase;
    let word = serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let condition = |kind: &str, on: bool, message: String| Condition {
        type_: kind.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: word.clone(),
        message,
        observed_generation: None,
        last_transition_time: crate::time::k8s(now),
    };
    let outcome = run.message.clone().unwrap_or_else(|| match phase {
        Phase::Pending => "waiting for the host's agent to connect".into(),
        Phase::Dispatched => "sent to the agent".into(),
        Phase::Running => "running".into(),
        _ => format!("the run ended {word}"),
    });
    let mut conditions = vec![condition(
        "Ready",
        phase == Phase::Succeeded,
        outcome.clone(),
    )];
    if !is_final(phase) {
        conditions.push(condition("Reconciling", true, outcome.clone()));
    } else if matches!(phase, Phase::Failed | Phase::PartiallyFailed) {
        conditions.push(condition("Stalled", true, outcome));
    }
    RunStatus {
        observed_generation: None,
        conditions,
        phase: Some(phase),
        job_id: Some(run.job.clone()),
        scheduled_time: run.scheduled_at.map(crate::time::k8s),
        start_time: run.started_at.map(crate::time::k8s),
        completion_time: run.finished_at.map(crate::time::k8s),
        duration,
        progress: run.progress.as_ref().map(|p| Progress {
            percent: format!("{:.0}%", (p.percent_done * 100.0).clamp(0.0, 100.0)),
            files_done: p.files_done,
            total_files: Some(p.total_files).filter(|n| *n > 0),
            bytes_done: p.bytes_done,
            total_bytes: Some(p.total_bytes).filter(|n| *n > 0),
            seconds_remaining: p.seconds_remaining,
        }),
        exit_code: run.exit_code,
        reason: run.reason.clone(),
        message: run.message.clone(),
        log_tail: run.log_tail.clone(),
    }
}

fn labels(run: &RunRecord) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (HOST_LABEL.to_string(), run.host.clone()),
        (
            OPERATION_LABEL.to_string(),
            operation_name(run.operation).to_string(),
        ),
    ]);
    if let Some(schedule) = &run.schedule {
        labels.insert(SCHEDULE_LABEL.into(), schedule.clone());
    }
    if let Some(repo) = &run.repo {
        labels.insert(REPO_LABEL.into(), repo.clone());
    }
    labels
}

/// A Backup: the file a person wrote, or one made from the run record.
fn backup_object(run: &RunRecord, file: Option<&Backup>, now: DateTime<Utc>) -> Backup {
    let mut backup = file.cloned().unwrap_or_else(|| {
        let operation = match run.operation {
            protocol::JobOperation::Backup => Some(protocol::Operation::Backup),
            protocol::JobOperation::Forget => Some(protocol::Operation::Forget),
            protocol::JobOperation::Prune => Some(protocol::Operation::Prune),
            protocol::JobOperation::Check => Some(protocol::Operation::Check),
            protocol::JobOperation::Restore => None,
        };
        let mut b = Backup::new(
            &run.name,
            BackupSpec {
                host: run.host.clone(),
                schedule: run.schedule.clone(),
                operation,
                repo: run.repo.clone(),
            },
        );
        b.metadata.namespace = Some(run.namespace.clone());
        // A record of a scheduled run; a request (its file or object gone) is a person's.
        if !run.requested {
            let (label, value) = crate::resources::MANAGED_BY;
            b.metadata.labels = Some(BTreeMap::from([(label.into(), value.into())]));
        }
        b
    });
    backup
        .metadata
        .labels
        .get_or_insert_default()
        .extend(labels(run));
    if let Some(at) = run.scheduled_at {
        backup
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(SCHEDULED_TIME_ANNOTATION.into(), at.to_rfc3339());
    }
    backup.status = Some(BackupStatus {
        run: run_status(run, now),
        snapshot_id: run.snapshot_id.clone(),
        snapshot_short_id: run
            .snapshot_id
            .as_ref()
            .map(|id| id.chars().take(8).collect()),
        data_added: run.summary.as_ref().map(|s| human_bytes(s.data_added)),
        summary: run.summary.as_ref().map(|s| BackupSummary {
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            dirs_new: s.dirs_new,
            dirs_changed: s.dirs_changed,
            dirs_unmodified: s.dirs_unmodified,
            data_added: s.data_added,
            total_files_processed: s.total_files_processed,
            total_bytes_processed: s.total_bytes_processed,
        }),
    });
    backup
}

/// A Restore: the file, with the status of its run.
fn restore_object(run: &RunRecord, file: Option<&Restore>, now: DateTime<Utc>) -> Restore {
    let mut restore = file.cloned().unwrap_or_else(|| {
        let mut r = Restore::new(
            &run.name,
            RestoreSpec {
                host: run.host.clone(),
                repo: run.repo.clone(),
                snapshot: run.snapshot_id.clone(),
                backup: None,
                schedule: run.schedule.clone(),
                target_host: run.host.clone(),
                target_path: String::new(),
                include: vec![],
                exclude: vec![],
            },
        );
        r.metadata.namespace = Some(run.namespace.clone());
        r
    });
    restore.status = Some(RestoreStatus {
        run: run_status(run, now),
        snapshot_id: run.snapshot_id.clone(),
        files_restored: None,
        bytes_restored: None,
    });
    restore
}

/// Scheduled run records beyond their schedule's history limits, oldest first to go. Requests
/// (files in git) are never pruned, nor are runs still going.
pub(crate) fn pruned(runs: &[RunRecord], schedules: &[Schedule]) -> Vec<ObjectId> {
    let limits = |namespace: &str, schedule: Option<&str>| {
        let spec = schedule.and_then(|name| {
            schedules
                .iter()
                .find(|s| namespace_of(*s) == namespace && name_of(*s) == name)
                .map(|s| &s.spec)
        });
        (
            spec.and_then(|s| s.successful_runs_history_limit)
                .unwrap_or(DEFAULT_SUCCESSFUL_HISTORY),
            spec.and_then(|s| s.failed_runs_history_limit)
                .unwrap_or(DEFAULT_FAILED_HISTORY),
        )
    };
    let mut groups: BTreeMap<(&str, Option<&str>, &str, bool), Vec<&RunRecord>> = BTreeMap::new();
    for run in runs.iter().filter(|r| !r.requested && r.is_final()) {
        groups
            .entry((
                &run.namespace,
                run.schedule.as_deref(),
                &run.host,
                run.phase == Phase::Succeeded,
            ))
            .or_default()
            .push(run);
    }
    let mut doomed = Vec::new();
    for ((namespace, schedule, _, succeeded), mut group) in groups {
        let (keep_ok, keep_failed) = limits(namespace, schedule);
        let keep = if succeeded { keep_ok } else { keep_failed } as usize;
        group.sort_by_key(|r| std::cmp::Reverse(r.finished_at));
        doomed.extend(
            group
                .into_iter()
                .skip(keep)
                .map(|r| (r.kind, r.namespace.clone(), r.name.clone())),
        );
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, phase: Phase, minute: i64) -> RunRecord {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).unwrap();
        let mut record: RunRecord = crate::runs::finished(
            None,
            &HostKey::new("default", "web-1"),
            &serde_json::from_str(include_str!(
                "../../../core/tests/fixtures/reports/job-finished.json"
            ))
            .unwrap(),
            at,
        )
        .unwrap();
        record.name = name.into();
        record.phase = phase;
        record.started_at = Some(at - chrono::Duration::seconds(2));
        record.finished_at = Some(at);
        record
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
                .find(|s| name_of(*s) == name)
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
            .find(|s| name_of(*s) == "nightly")
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
            model.schedules.iter().all(|s| name_of(s) != "hourly"),
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

    #[test]
    fn history_limits_keep_the_newest_runs_of_each_outcome() {
        let mut runs: Vec<RunRecord> = (0..12)
            .map(|i| run(&format!("ok-{i}"), Phase::Succeeded, i))
            .collect();
        runs.extend((0..7).map(|i| run(&format!("bad-{i}"), Phase::Failed, i)));
        let mut request = run("by-hand", Phase::Succeeded, -100);
        request.requested = true;
        runs.push(request);
        let mut doomed: Vec<String> = pruned(&runs, &[]).into_iter().map(|(_, _, n)| n).collect();
        doomed.sort();
        assert_eq!(doomed, ["bad-0", "bad-1", "ok-0", "ok-1"]);
    }

    #[test]
    fn a_backup_record_carries_labels_summary_and_short_id() {
        let record = run("nightly-web-1-29413440", Phase::Succeeded, 0);
        let backup = backup_object(&record, None, Utc::now());
        let labels = backup.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(HOST_LABEL).map(String::as_str), Some("web-1"));
        assert_eq!(
            labels
                .get(crate::resources::MANAGED_BY.0)
                .map(String::as_str),
            Some("holdfast"),
            "a scheduled run's record is Holdfast's"
        );
        let mut request = record.clone();
        request.requested = true;
        let request_labels = backup_object(&request, None, Utc::now()).metadata.labels;
        assert!(
            request_labels.is_some_and(|l| !l.contains_key(crate::resources::MANAGED_BY.0)),
            "a request stays a person's, so it is never created again once deleted"
        );
        assert_eq!(
            labels.get(SCHEDULE_LABEL).map(String::as_str),
            Some("nightly")
        );
        assert_eq!(labels.get(REPO_LABEL).map(String::as_str), Some("local"));
        let status = backup.status.unwrap();
        assert_eq!(status.snapshot_short_id.as_deref(), Some("3f2a9c1d"));
        assert_eq!(status.data_added.as_deref(), Some("1.2 MiB"));
        assert_eq!(status.run.duration.as_deref(), Some("2s"));
        assert_eq!(status.run.conditions[0].status, "True");
    }
}
