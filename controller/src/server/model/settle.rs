//! Settling an object: its identity, generation and resourceVersion follow what was written
//! before, its conditions keep their transition times, and only what changed is written and
//! told to watches. Also the conditions a rejected revision puts on the objects at fault.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ReadModel;
use crate::decisions::{self, Decision};
use crate::records::RecordId;
use crate::resources::{
    Backup, Host, HostStatus, Kind, Notifier, ObjectKey, Phase, Repo, Restore, RunStatus, Schedule,
    Snapshot,
};
use crate::revision::{name_of, namespace_of};
use crate::server::changes::{Change, ChangeType};
use crate::status::finish_conditions;
use crate::store::{ObjectId, ObjectMeta, ObjectWrite, StoredObject};

/// A Repo, Schedule or Notifier: desired state that a rejected revision can leave `Stalled`.
pub trait Desired: HasStatus + Resource<DynamicType = ()> + Clone + 'static {
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
desired!(Notifier);

/// The objects in force with the status `compute` gives them, each at fault for a rejected
/// revision marked `Stalled` and not `Ready`; then (Kubernetes mode, from the cluster's `store`) those at fault
/// that are not in force at all, `Stalled` and not `Ready`.
pub fn settle_desired<K: Desired>(
    writer: &mut Writer,
    in_force: &[K],
    mut compute: impl FnMut(&mut K),
    rejected: &BTreeMap<ObjectKey, Vec<String>>,
    store: Option<&kube::runtime::reflector::Store<K>>,
) -> Vec<Arc<K>> {
    let now = writer.now;
    let key = |o: &K| ObjectKey::new(K::KIND, namespace_of(o), name_of(o));
    let mut out: Vec<Arc<K>> = in_force
        .iter()
        .map(|o| Arc::new(settle_one(writer, o, &mut compute, rejected)))
        .collect();
    for mut o in store.map_or_else(Vec::new, |s| not_in_force(s, K::KIND, rejected, in_force)) {
        let Some(problems) = rejected.get(&key(&o)) else {
            continue;
        };
        let held = o.conditions();
        o.clear_status();
        stall(o.conditions_mut(), problems, now);
        never_ready(o.conditions_mut(), now);
        out.push(Arc::new(writer.settle(K::KIND, o, held)));
    }
    out
}

/// One object in force with the status `compute` gives it, marked `Stalled` and not `Ready`
/// when a rejected revision has it at fault.
pub fn settle_one<K: Desired>(
    writer: &mut Writer,
    in_force: &K,
    compute: impl FnOnce(&mut K),
    rejected: &BTreeMap<ObjectKey, Vec<String>>,
) -> K {
    let mut o = in_force.clone();
    let held = o.conditions();
    compute(&mut o);
    if let Some(problems) = rejected.get(&ObjectKey::new(K::KIND, namespace_of(&o), name_of(&o))) {
        stall(o.conditions_mut(), problems, writer.now);
        held_back(o.conditions_mut(), writer.now);
    }
    writer.settle(K::KIND, o, held)
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
pub fn stall(conditions: &mut Vec<Condition>, problems: &[String], now: DateTime<Utc>) {
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

/// `Ready=False` for an object in force whose newest spec does not validate: what runs is not
/// what was last written, so `kubectl wait --for=condition=Ready` must not pass.
pub fn held_back(conditions: &mut Vec<Condition>, now: DateTime<Utc>) {
    set_condition(
        conditions,
        "Ready",
        "Invalid",
        "its newest spec does not validate, so the previous one stays in force (see Stalled)"
            .into(),
        now,
    );
}

/// `Ready=False` for an object that never was in force.
pub fn never_ready(conditions: &mut Vec<Condition>, now: DateTime<Utc>) {
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

/// What a change of an object's status from `before` (its status as last written, JSON
/// text; `None` when new) decided: each decision about the object itself (`None`) or about its
/// Schedule (`Some(name)`, in its namespace).
pub trait Decides {
    fn decided(&self, _before: Option<&str>) -> Vec<(Option<String>, Decision)> {
        Vec::new()
    }
}

impl Decides for Repo {}
impl Decides for Schedule {}
// A Notifier's deliveries show in its status and metrics, not as Events.
impl Decides for Notifier {}
impl Decides for Snapshot {}

impl Decides for Host {
    fn decided(&self, before: Option<&str>) -> Vec<(Option<String>, Decision)> {
        let Some(after) = &self.status else {
            return Vec::new();
        };
        let before: Option<HostStatus> = before.and_then(|b| serde_json::from_str(b).ok());
        decisions::host_status_changed(before.as_ref(), after)
            .into_iter()
            .map(|d| (None, d))
            .collect()
    }
}

/// The decisions of a run: about itself, and a missed run about its Schedule.
fn run_decided(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    host: &str,
    schedule: Option<&str>,
    after: &RunStatus,
    before: Option<&str>,
) -> Vec<(Option<String>, Decision)> {
    #[derive(serde::Deserialize)]
    struct Phased {
        phase: Option<Phase>,
    }
    let was = before
        .and_then(|b| serde_json::from_str::<Phased>(b).ok())
        .and_then(|p| p.phase);
    // A person's request has no managed-by label; a record of a scheduled run has.
    let requested = meta
        .labels
        .as_ref()
        .is_none_or(|l| !l.contains_key(crate::resources::MANAGED_BY.0));
    let mut out: Vec<(Option<String>, Decision)> =
        decisions::run_phase_changed(requested, host, was, after.phase, after.message.as_deref())
            .into_iter()
            .map(|d| (None, d))
            .collect();
    let name = meta.name.as_deref().unwrap_or_default();
    if let (Some(schedule), Some(d)) = (
        schedule,
        decisions::run_missed(was, after.phase, host, name),
    ) {
        out.push((Some(schedule.to_string()), d));
    }
    out
}

impl Decides for Backup {
    fn decided(&self, before: Option<&str>) -> Vec<(Option<String>, Decision)> {
        match &self.status {
            Some(s) => run_decided(
                &self.metadata,
                &self.spec.host,
                self.spec.schedule.as_deref(),
                &s.run,
                before,
            ),
            None => Vec::new(),
        }
    }
}

impl Decides for Restore {
    fn decided(&self, before: Option<&str>) -> Vec<(Option<String>, Decision)> {
        match &self.status {
            Some(s) => run_decided(&self.metadata, &self.spec.target_host, None, &s.run, before),
            None => Vec::new(),
        }
    }
}

/// A reference to one of Holdfast's objects, as an Event's `involvedObject` / `regarding`.
pub fn event_reference(
    kind: Kind,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(crate::resources::API_VERSION.into()),
        kind: Some(kind.as_str().into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        uid: uid.map(String::from),
        ..ObjectReference::default()
    }
}

/// Fills in metadata and the parts of status that depend on what was written before.
pub struct Writer<'a> {
    /// Whether statuses were computed here (and get observedGeneration and transition times),
    /// or are shown as read.
    computed: bool,
    pub previous: &'a BTreeMap<ObjectId, Arc<StoredObject>>,
    /// The Repos, Hosts, Schedules and Notifiers of the next read model.
    pub next: BTreeMap<ObjectId, Arc<StoredObject>>,
    pub changes: Vec<ObjectWrite>,
    /// The same changes as watch events.
    pub events: Vec<Change>,
    /// What the changes of computed statuses decided, for Events.
    pub decided: Vec<(ObjectReference, Decision)>,
    pub resource_version: i64,
    pub now: DateTime<Utc>,
}

/// The parts of a status every kind has.
pub trait HasStatus: Resource + Serialize + Decides {
    fn spec_json(&self) -> serde_json::Value;
    /// The status as JSON text, as it is stored.
    fn status_text(&self) -> Option<Box<str>>;
    fn finish(&mut self, previous: &[Condition], generation: i64, now: DateTime<Utc>);
    fn conditions(&self) -> Vec<Condition>;
}

macro_rules! has_status {
    ($kind:ty $(, $field:ident)?) => {
        impl HasStatus for $kind {
            fn spec_json(&self) -> serde_json::Value {
                serde_json::to_value(&self.spec).unwrap_or_default()
            }
            fn status_text(&self) -> Option<Box<str>> {
                self.status
                    .as_ref()
                    .and_then(|s| serde_json::to_string(s).ok())
                    .map(String::into_boxed_str)
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

/// A Backup or Restore: a run's object.
pub trait Record: HasStatus + Resource<DynamicType = ()> + Clone + 'static {
    const KIND: Kind;
}

impl Record for Backup {
    const KIND: Kind = Kind::Backup;
}

impl Record for Restore {
    const KIND: Kind = Kind::Restore;
}

// The run kinds keep their conditions in `status.run`.
has_status!(Repo);
has_status!(Host);
has_status!(Schedule);
has_status!(Notifier);
has_status!(Backup, run);
has_status!(Restore, run);

/// A Snapshot's status has no conditions: it says only when retention removes it.
impl HasStatus for Snapshot {
    fn spec_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.spec).unwrap_or_default()
    }
    fn status_text(&self) -> Option<Box<str>> {
        self.status
            .as_ref()
            .and_then(|s| serde_json::to_string(s).ok())
            .map(String::into_boxed_str)
    }
    fn finish(&mut self, _: &[Condition], _: i64, _: DateTime<Utc>) {}
    fn conditions(&self) -> Vec<Condition> {
        Vec::new()
    }
}

impl<'a> Writer<'a> {
    pub fn new(previous: &'a ReadModel, now: DateTime<Utc>, computed: bool) -> Writer<'a> {
        Writer {
            computed,
            previous: &previous.stored,
            next: BTreeMap::new(),
            changes: Vec::new(),
            events: Vec::new(),
            decided: Vec::new(),
            resource_version: previous.resource_version,
            now,
        }
    }

    /// A Repo, Host or Schedule: compared with the read model's copy, and kept in the next.
    /// `held`: the conditions the object's status holds where it came from.
    pub fn settle<K: HasStatus>(&mut self, kind: Kind, object: K, held: Vec<Condition>) -> K {
        let id = id_of(kind, &object);
        let before = self.previous.get(&id).map(|b| &**b);
        let (object, stored) = self.write(id.clone(), object, held, before, None);
        self.next.insert(id, Arc::new(stored));
        object
    }

    /// Keeps every Repo, Host, Schedule and Notifier the read model holds; those settled
    /// after replace theirs. For a pass under the same revision, whose objects are the same.
    pub fn keep_all(&mut self) {
        self.next = self.previous.clone();
    }

    /// Keeps a Repo, Host or Schedule as the read model holds it, when what its object and
    /// status are made from is unchanged; false when the model does not hold it.
    pub fn keep(&mut self, id: ObjectId) -> bool {
        match self.previous.get(&id) {
            Some(stored) => {
                self.next.insert(id, stored.clone());
                true
            }
            None => false,
        }
    }

    /// A Backup or Restore: compared with its stored copy (`before`, with the object as last
    /// served), which the caller read from the store.
    pub fn settle_record<K: HasStatus>(
        &mut self,
        kind: Kind,
        object: K,
        before: Option<&(StoredObject, Option<serde_json::Value>)>,
    ) -> K {
        let id = id_of(kind, &object);
        let was = before.and_then(|(_, served)| served.as_ref()).map(|o| {
            serde_json::json!({"metadata": {
                "namespace": o["metadata"]["namespace"],
                "name": o["metadata"]["name"],
                "labels": o["metadata"]["labels"],
            }})
        });
        let held = object.conditions();
        self.write(id, object, held, before.map(|(stored, _)| stored), was)
            .0
    }

    /// Deletes a Backup or Restore, served last as `served`.
    pub fn delete_record(&mut self, id: RecordId, served: Option<serde_json::Value>) {
        self.resource_version += 1;
        let mut object = served.unwrap_or_else(|| {
            serde_json::json!({
                "apiVersion": crate::resources::API_VERSION,
                "kind": id.0.as_str(),
                "metadata": {"name": id.2, "namespace": id.1},
            })
        });
        object["metadata"]["resourceVersion"] = self.resource_version.to_string().into();
        let mut change = Change::new(
            self.resource_version,
            id.0,
            ChangeType::Deleted,
            &object,
            None,
        );
        change.before = Some(change.metadata.clone());
        self.events.push(change);
        self.changes.push((id, None));
    }

    fn write<K: HasStatus>(
        &mut self,
        id: ObjectId,
        mut object: K,
        held: Vec<Condition>,
        before: Option<&StoredObject>,
        was: Option<serde_json::Value>,
    ) -> (K, StoredObject) {
        let spec_digest = hex::encode(Sha256::digest(object.spec_json().to_string()));
        let m = object.meta();
        let meta_digest = hex::encode(Sha256::digest(
            serde_json::json!([m.labels, m.annotations]).to_string(),
        ));
        // An object from the API server brings its own identity and generation.
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
            .and_then(|b| b.status.as_deref())
            .and_then(conditions_of)
            .unwrap_or(held);
        if self.computed {
            object.finish(&previous_conditions, meta.generation, self.now);
        }
        let status = object.status_text();
        let unchanged = before.filter(|b| {
            b.spec_digest == spec_digest && b.meta_digest == meta_digest && b.status == status
        });
        let stored = match unchanged {
            Some(b) => b.clone(),
            None => {
                self.resource_version += 1;
                StoredObject {
                    meta: ObjectMeta {
                        resource_version: self.resource_version,
                        ..meta
                    },
                    spec_digest,
                    meta_digest,
                    status,
                }
            }
        };
        let m = object.meta_mut();
        m.namespace = Some(id.1.clone());
        m.uid = Some(stored.meta.uid.clone());
        m.generation = Some(stored.meta.generation);
        m.resource_version = Some(stored.meta.resource_version.to_string());
        m.creation_timestamp = Some(crate::time::k8s(stored.meta.created_at));
        if unchanged.is_none() && self.computed {
            for (schedule, decision) in object.decided(before.and_then(|b| b.status.as_deref())) {
                let regarding = match schedule {
                    None => event_reference(id.0, &id.1, &id.2, Some(&stored.meta.uid)),
                    Some(name) => {
                        let schedule = (Kind::Schedule, id.1.clone(), name);
                        let uid = self
                            .next
                            .get(&schedule)
                            .or(self.previous.get(&schedule))
                            .map(|s| s.meta.uid.as_str());
                        event_reference(Kind::Schedule, &schedule.1, &schedule.2, uid)
                    }
                };
                self.decided.push((regarding, decision));
            }
        }
        if unchanged.is_none() {
            let change = if before.is_some() {
                ChangeType::Modified
            } else {
                ChangeType::Added
            };
            let event = Change::of(stored.meta.resource_version, id.0, change, &object, was);
            self.changes
                .push((id, Some((stored.clone(), event.text()))));
            self.events.push(event);
        }
        (object, stored)
    }
}

/// The conditions at the top of a status's JSON text, if it has any.
fn conditions_of(status: &str) -> Option<Vec<Condition>> {
    #[derive(serde::Deserialize)]
    struct Conditions {
        conditions: Option<Vec<Condition>>,
    }
    serde_json::from_str::<Conditions>(status).ok()?.conditions
}

/// An object's identity; a file without a namespace is in the default one.
fn id_of<K: Resource>(kind: Kind, object: &K) -> ObjectId {
    (
        kind,
        object
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| crate::resources::DEFAULT_NAMESPACE.into()),
        object.meta().name.clone().unwrap_or_default(),
    )
}
