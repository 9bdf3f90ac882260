//! The read model written back to the API server, on the leader: the one writer of status in
//! Kubernetes mode. The status of Repos, Hosts, Schedules, Backups, Restores and Notifiers, a
//! Backup object for every run an agent reported, and records beyond their schedule's history
//! limits deleted. A Host's schedule version is pushed to its agent once its status holds it.
//! (Events come from the status writer, through the backend, in both modes.)
//!
//! [`plan`] is pure: it compares the model with the cluster's copies and with what this
//! process last wrote, and returns the writes. [`run`] executes them after every change of the
//! model: every record on its first pass, then the records that changed since (from the
//! change feed watches read) and those whose write failed. A write that fails is planned again
//! on the next pass; reports are already safe in the local database (the agents' ack journal),
//! so nothing is lost while the API server is away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams};
use kube::{Client, Resource};
use serde_json::Value;
use tokio::sync::broadcast;

use super::agents::WrittenVersions;
use super::reconcile::{MANAGED_BY, Stores};
use super::sink::{Coalescer, Recorded, apply_status, record_run};
use crate::compile::HostKey;
use crate::records::RecordId;
use crate::resources::{Backup, Host, Kind, Notifier, Phase, Repo, Restore, Schedule, Snapshot};
use crate::revision::{name_of, namespace_of};
use crate::runs::RunRecord;
use crate::server::changes::Change;
use crate::server::{Controller, ReadModel};

/// Retry failed writes at least this often, even when nothing changes.
const RETRY: Duration = Duration::from_secs(5);

/// One write to the API server. (`BackupStatus` flattens the run's fields: `phase` and
/// `message` sit at the top of a Backup's status, as in a Restore's.)
#[derive(Debug)]
pub enum Write {
    /// Create the Backup recording a run (its status follows in a [`Write::Status`]).
    Create(Box<Backup>),
    /// Apply `status`.
    Status {
        kind: Kind,
        namespace: String,
        name: String,
        status: Value,
    },
    /// Delete a Backup record beyond its schedule's history limits.
    Delete { namespace: String, name: String },
    /// Create the Snapshot of a snapshot an agent reported, owned by its Host (its status
    /// follows in a [`Write::Status`]).
    CreateSnapshot(Box<Snapshot>),
    /// Delete the Snapshot of a snapshot no longer reported.
    DeleteSnapshot { namespace: String, name: String },
}

/// What the cluster holds now, from the reflector stores.
pub struct Cluster {
    pub repos: Vec<Arc<Repo>>,
    pub hosts: Vec<Arc<Host>>,
    pub schedules: Vec<Arc<Schedule>>,
    pub backups: Vec<Arc<Backup>>,
    pub restores: Vec<Arc<Restore>>,
    pub notifiers: Vec<Arc<Notifier>>,
    pub snapshots: Vec<Arc<Snapshot>>,
}

impl Cluster {
    pub fn of(stores: &Stores) -> Cluster {
        Cluster {
            repos: stores.repos.state(),
            hosts: stores.hosts.state(),
            schedules: stores.schedules.state(),
            backups: stores.backups.state(),
            restores: stores.restores.state(),
            notifiers: stores.notifiers.state(),
            snapshots: stores.snapshots.state(),
        }
    }
}

/// What the cluster should hold: the read model, and the run records' objects read from the
/// store for this pass.
pub struct Desired {
    pub model: Arc<ReadModel>,
    pub backups: Vec<Backup>,
    pub restores: Vec<Restore>,
    pub snapshots: Vec<Snapshot>,
    /// The Snapshots (namespace, name) this pass compares, whether the store has them or not;
    /// `None`: every one, so that any in the cluster the store lacks is deleted.
    pub snapshot_scope: Option<HashSet<(String, String)>>,
}

impl Desired {
    /// The read model, with every record (`None`) or only `records`.
    pub fn read(
        controller: &Controller,
        records: Option<&HashSet<RecordId>>,
    ) -> Result<Desired, crate::store::StoreError> {
        let read = |kind: Kind| -> Result<Vec<Value>, crate::store::StoreError> {
            match records {
                None => Ok(controller
                    .records_page(kind, None, None, None, &mut |_| true)?
                    .0),
                Some(ids) => {
                    let mut objects = Vec::new();
                    for (_, namespace, name) in ids.iter().filter(|(k, _, _)| *k == kind) {
                        objects.extend(controller.record(kind, namespace, name)?);
                    }
                    Ok(objects)
                }
            }
        };
        fn typed<K: serde::de::DeserializeOwned>(objects: Vec<Value>) -> Vec<K> {
            objects
                .into_iter()
                .filter_map(|o| serde_json::from_value(o).ok())
                .collect()
        }
        Ok(Desired {
            model: controller.model(),
            backups: typed(read(Kind::Backup)?),
            restores: typed(read(Kind::Restore)?),
            snapshots: typed(read(Kind::Snapshot)?),
            snapshot_scope: records.map(|ids| {
                ids.iter()
                    .filter(|(k, _, _)| *k == Kind::Snapshot)
                    .map(|(_, namespace, name)| (namespace.clone(), name.clone()))
                    .collect()
            }),
        })
    }
}

/// What this process wrote: statuses (for coalescing) and the Backups it created.
#[derive(Default)]
pub struct Written {
    pub statuses: Coalescer,
    pub created: HashSet<(String, String)>,
    pub created_snapshots: HashSet<(String, String)>,
}

fn key(kind: Kind, namespace: &str, name: &str) -> String {
    format!("{}/{namespace}/{name}", kind.as_str())
}

/// The cluster's objects of one kind by (namespace, name): one look-up per object planned,
/// not a scan.
struct Index<'a, K>(HashMap<(&'a str, &'a str), &'a K>);

impl<'a, K: Resource> Index<'a, K> {
    fn of(objects: &'a [Arc<K>]) -> Index<'a, K> {
        Index(
            objects
                .iter()
                .map(|o| ((namespace_of(&**o), name_of(&**o)), &**o))
                .collect(),
        )
    }

    fn find(&self, namespace: &str, name: &str) -> Option<&'a K> {
        self.0.get(&(namespace, name)).copied()
    }
}

fn status_of<K: serde::Serialize>(status: &Option<K>) -> Option<Value> {
    status.as_ref().and_then(|s| serde_json::to_value(s).ok())
}

fn phase_of(status: Option<&Value>) -> Option<Phase> {
    status
        .and_then(|s| s.get("phase"))
        .and_then(|p| serde_json::from_value(p.clone()).ok())
}

fn is_record(backup: &Backup) -> bool {
    backup
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1)
}

/// The writes that bring the cluster to the model.
pub fn plan(
    desired: &Desired,
    cluster: &Cluster,
    written: &Written,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let mut out = Vec::new();
    let status = |kind: Kind,
                  namespace: &str,
                  name: &str,
                  computed: Option<Value>,
                  in_cluster: Option<Value>|
     -> Option<Write> {
        let computed = computed?;
        let k = key(kind, namespace, name);
        // After a restart or a change of leader, what the cluster holds counts as written.
        if !written.statuses.knows(&k) && in_cluster.as_ref() == Some(&computed) {
            return None;
        }
        if !written.statuses.should_apply(&k, &computed, now) {
            return None;
        }
        Some(Write::Status {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            status: computed,
        })
    };
    let model = &*desired.model;
    let (repos, schedules) = (Index::of(&cluster.repos), Index::of(&cluster.schedules));
    let (backups, restores) = (Index::of(&cluster.backups), Index::of(&cluster.restores));
    for r in model.repos.iter().map(Arc::as_ref) {
        let (ns, name) = (namespace_of(r), name_of(r));
        let cluster_status = repos.find(ns, name).and_then(|o| status_of(&o.status));
        out.extend(status(
            Kind::Repo,
            ns,
            name,
            status_of(&r.status),
            cluster_status,
        ));
    }
    let hosts = Index::of(&cluster.hosts);
    for h in model.hosts.iter().map(Arc::as_ref) {
        let (ns, name) = (namespace_of(h), name_of(h));
        let cluster_status = hosts.find(ns, name).and_then(|o| status_of(&o.status));
        out.extend(status(
            Kind::Host,
            ns,
            name,
            status_of(&h.status),
            cluster_status,
        ));
    }
    for s in model.schedules.iter().map(Arc::as_ref) {
        let (ns, name) = (namespace_of(s), name_of(s));
        let cluster_status = schedules.find(ns, name).and_then(|o| status_of(&o.status));
        out.extend(status(
            Kind::Schedule,
            ns,
            name,
            status_of(&s.status),
            cluster_status,
        ));
    }
    let notifiers = Index::of(&cluster.notifiers);
    for n in model.notifiers.iter().map(Arc::as_ref) {
        let (ns, name) = (namespace_of(n), name_of(n));
        let cluster_status = notifiers.find(ns, name).and_then(|o| status_of(&o.status));
        out.extend(status(
            Kind::Notifier,
            ns,
            name,
            status_of(&n.status),
            cluster_status,
        ));
    }
    for b in &desired.backups {
        let (ns, name) = (namespace_of(b), name_of(b));
        let in_cluster = backups.find(ns, name);
        let created = written
            .created
            .contains(&(ns.to_string(), name.to_string()));
        if in_cluster.is_none() {
            if !is_record(b) {
                // A request deleted from the cluster: nothing to write to.
                continue;
            }
            if !created {
                let mut object = b.clone();
                object.status = None;
                object.metadata.uid = None;
                object.metadata.resource_version = None;
                object.metadata.generation = None;
                object.metadata.creation_timestamp = None;
                out.push(Write::Create(Box::new(object)));
            }
        }
        let cluster_status = in_cluster.and_then(|o| status_of(&o.status));
        if behind(status_of(&b.status).as_ref(), cluster_status.as_ref()) {
            continue;
        }
        out.extend(status(
            Kind::Backup,
            ns,
            name,
            status_of(&b.status),
            cluster_status,
        ));
    }
    for r in &desired.restores {
        let (ns, name) = (namespace_of(r), name_of(r));
        let Some(in_cluster) = restores.find(ns, name) else {
            continue;
        };
        if behind(
            status_of(&r.status).as_ref(),
            status_of(&in_cluster.status).as_ref(),
        ) {
            continue;
        }
        out.extend(status(
            Kind::Restore,
            ns,
            name,
            status_of(&r.status),
            status_of(&in_cluster.status),
        ));
    }
    out.extend(snapshots(desired, cluster, written, &hosts, &status));
    out.extend(pruned(cluster, now));
    out
}

/// The status write of an object (kind, namespace, name, computed status, the cluster's), if
/// one is due.
type StatusWrite<'a> = dyn Fn(Kind, &str, &str, Option<Value>, Option<Value>) -> Option<Write> + 'a;

/// Snapshots: created (owned by their Host, so that deleting the Host removes them) with their
/// status, and deleted once the store no longer has them.
fn snapshots(
    desired: &Desired,
    cluster: &Cluster,
    written: &Written,
    hosts: &Index<Host>,
    status: &StatusWrite,
) -> Vec<Write> {
    let mut out = Vec::new();
    let in_cluster = Index::of(&cluster.snapshots);
    for s in &desired.snapshots {
        let (ns, name) = (namespace_of(s), name_of(s));
        let found = in_cluster.find(ns, name);
        let created = written
            .created_snapshots
            .contains(&(ns.to_string(), name.to_string()));
        if found.is_none() && !created {
            // Without its Host in the cluster there is no owner yet: a later pass creates it.
            let Some(owner) = hosts.find(ns, &s.spec.host).and_then(owned_by) else {
                continue;
            };
            let mut object = s.clone();
            object.status = None;
            object.metadata.uid = None;
            object.metadata.resource_version = None;
            object.metadata.generation = None;
            object.metadata.creation_timestamp = None;
            object.metadata.owner_references = Some(vec![owner]);
            out.push(Write::CreateSnapshot(Box::new(object)));
        }
        out.extend(status(
            Kind::Snapshot,
            ns,
            name,
            status_of(&s.status),
            found.and_then(|o| status_of(&o.status)),
        ));
    }
    let wanted: HashSet<(&str, &str)> = desired
        .snapshots
        .iter()
        .map(|s| (namespace_of(s), name_of(s)))
        .collect();
    // A pass over everything deletes only in the lists this database holds: a new leader has
    // not heard every agent yet, and the Snapshots of the others stay until it has.
    let lists: HashSet<(&str, &str, &str)> = desired
        .snapshots
        .iter()
        .map(|s| (namespace_of(s), s.spec.host.as_str(), s.spec.repo.as_str()))
        .collect();
    for s in &cluster.snapshots {
        let (ns, name) = (namespace_of(&**s), name_of(&**s));
        let examined = match &desired.snapshot_scope {
            Some(scope) => scope.contains(&(ns.to_string(), name.to_string())),
            None => lists.contains(&(ns, s.spec.host.as_str(), s.spec.repo.as_str())),
        };
        if examined && !wanted.contains(&(ns, name)) {
            out.push(Write::DeleteSnapshot {
                namespace: ns.into(),
                name: name.into(),
            });
        }
    }
    out
}

/// A reference to `host` as the owner of what the controller makes for it.
fn owned_by(host: &Host) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: crate::resources::API_VERSION.into(),
        kind: Kind::Host.as_str().into(),
        name: host.metadata.name.clone()?,
        uid: host.metadata.uid.clone()?,
        ..OwnerReference::default()
    })
}

/// How far a run has come: no phase, Pending, Dispatched, Running, finished.
fn stage(phase: Option<Phase>) -> u8 {
    match phase {
        None => 0,
        Some(Phase::Pending) => 1,
        Some(Phase::Dispatched) => 2,
        Some(Phase::Running) => 3,
        Some(_) => 4,
    }
}

/// Whether the computed status of a run is behind the one the cluster holds: a new leader that
/// took over a request going on starts its record over (Pending, then Dispatched when it sends
/// it again) until the agent reports; the cluster keeps what the last leader knew meanwhile.
fn behind(computed: Option<&Value>, in_cluster: Option<&Value>) -> bool {
    stage(phase_of(computed)) < stage(phase_of(in_cluster))
}

/// Backup records in the cluster beyond their schedule's history limits: the cluster, not
/// this process's database, is what a new leader or a restarted pod sees.
fn pruned(cluster: &Cluster, now: DateTime<Utc>) -> Vec<Write> {
    let runs: Vec<RunRecord> = cluster
        .backups
        .iter()
        .filter(|b| is_record(b))
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            let mut run = RunRecord::pending(
                Kind::Backup,
                &HostKey::new(namespace_of(&**b), &b.spec.host),
                name_of(&**b).to_string(),
                String::new(),
                protocol::JobOperation::Backup,
                now,
            );
            run.schedule = b.spec.schedule.clone();
            run.phase = status.run.phase?;
            run.finished_at = status.run.completion_time.as_ref().map(crate::time::chrono);
            Some(run)
        })
        .collect();
    let schedules: Vec<Schedule> = cluster.schedules.iter().map(|s| (**s).clone()).collect();
    crate::records::pruned(&runs, &schedules)
        .into_iter()
        .map(|(_, namespace, name)| Write::Delete { namespace, name })
        .collect()
}

/// What a pass of writes did beyond the cluster.
#[derive(Debug, Default)]
pub struct Executed {
    /// The Backups and Restores whose write failed, to be planned again.
    pub failed: HashSet<RecordId>,
    /// The schedule version each Host's status now holds.
    pub versions: Vec<(HostKey, u64)>,
}

/// Executes `writes`; a failure is logged and the rest goes on.
pub async fn execute(
    client: &Client,
    written: &mut Written,
    writes: Vec<Write>,
    now: DateTime<Utc>,
) -> Executed {
    let mut executed = Executed::default();
    let failed = &mut executed.failed;
    for write in writes {
        match write {
            Write::Create(backup) => {
                let (ns, name) = (
                    namespace_of(&*backup).to_string(),
                    name_of(&*backup).to_string(),
                );
                let api: Api<Backup> = Api::namespaced(client.clone(), &ns);
                match record_run(&api, &backup).await {
                    Ok(Recorded::Created | Recorded::AlreadyRecorded) => {
                        written.created.insert((ns, name));
                    }
                    Err(e) => {
                        tracing::warn!(backup = %name, namespace = %ns, "cannot record a run: {e}");
                        failed.insert((Kind::Backup, ns, name));
                    }
                }
            }
            Write::Status {
                kind,
                namespace,
                name,
                status,
            } => {
                let applied = match kind {
                    Kind::Repo => apply::<Repo>(client, &namespace, &name, &status).await,
                    Kind::Host => apply::<Host>(client, &namespace, &name, &status).await,
                    Kind::Schedule => apply::<Schedule>(client, &namespace, &name, &status).await,
                    Kind::Backup => apply::<Backup>(client, &namespace, &name, &status).await,
                    Kind::Restore => apply::<Restore>(client, &namespace, &name, &status).await,
                    Kind::Notifier => apply::<Notifier>(client, &namespace, &name, &status).await,
                    Kind::Snapshot => apply::<Snapshot>(client, &namespace, &name, &status).await,
                };
                match applied {
                    Ok(()) => {
                        if kind == Kind::Host
                            && let Some(version) =
                                status.get("desiredScheduleVersion").and_then(Value::as_u64)
                        {
                            let host = HostKey::new(&namespace, &name);
                            executed.versions.push((host, version));
                        }
                        written
                            .statuses
                            .applied(&key(kind, &namespace, &name), status, now);
                    }
                    Err(e) => {
                        tracing::warn!(
                            object = %key(kind, &namespace, &name),
                            "cannot write status: {e}"
                        );
                        if matches!(kind, Kind::Backup | Kind::Restore | Kind::Snapshot) {
                            failed.insert((kind, namespace, name));
                        }
                    }
                }
            }
            Write::CreateSnapshot(snapshot) => {
                let (ns, name) = (
                    namespace_of(&*snapshot).to_string(),
                    name_of(&*snapshot).to_string(),
                );
                let api: Api<Snapshot> = Api::namespaced(client.clone(), &ns);
                match record_run(&api, &snapshot).await {
                    Ok(Recorded::Created | Recorded::AlreadyRecorded) => {
                        written.created_snapshots.insert((ns, name));
                    }
                    Err(e) => {
                        tracing::warn!(snapshot = %name, namespace = %ns, "cannot create a Snapshot: {e}");
                        failed.insert((Kind::Snapshot, ns, name));
                    }
                }
            }
            Write::DeleteSnapshot { namespace, name } => {
                let api: Api<Snapshot> = Api::namespaced(client.clone(), &namespace);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(snapshot = %name, namespace = %namespace, "cannot delete a forgotten Snapshot: {e}");
                        failed.insert((Kind::Snapshot, namespace, name));
                        continue;
                    }
                }
                written
                    .statuses
                    .forget(&key(Kind::Snapshot, &namespace, &name));
                written.created_snapshots.remove(&(namespace, name));
            }
            Write::Delete { namespace, name } => {
                let api: Api<Backup> = Api::namespaced(client.clone(), &namespace);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        tracing::warn!(backup = %name, namespace = %namespace, "cannot delete a record beyond the history limit: {e}");
                        continue;
                    }
                }
                written
                    .statuses
                    .forget(&key(Kind::Backup, &namespace, &name));
                written.created.remove(&(namespace, name));
            }
        }
    }
    executed
}

async fn apply<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &Value,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    apply_status(&api, name, status).await
}

/// Writes the model back after every change of it, and retries every [`RETRY`]. Runs while
/// this replica leads; a new leader starts from what the cluster holds.
pub async fn run(
    controller: Arc<Controller>,
    stores: Stores,
    client: Client,
    versions: Arc<WrittenVersions>,
) {
    let mut changes = controller.changes.subscribe();
    let mut written = Written::default();
    // The records to compare with the cluster's: every one on the first pass (and after
    // changes were missed), then those that changed or whose write failed.
    let mut records: Option<HashSet<RecordId>> = None;
    loop {
        let now = Utc::now();
        let c = controller.clone();
        let wanted = records.take();
        let read = tokio::task::spawn_blocking(move || {
            let desired = Desired::read(&c, wanted.as_ref());
            (desired, wanted)
        })
        .await;
        match read {
            Ok((Ok(desired), _)) => {
                let writes = plan(&desired, &Cluster::of(&stores), &written, now);
                let executed = execute(&client, &mut written, writes, now).await;
                records = Some(executed.failed);
                push(&controller, &versions, executed.versions).await;
            }
            Ok((Err(e), wanted)) => {
                tracing::error!("cannot read the records to write back: {e}");
                records = wanted;
            }
            Err(e) => tracing::error!("reading the records to write back panicked: {e}"),
        }
        tokio::select! {
            change = changes.recv() => note(change, &mut records),
            _ = tokio::time::sleep(RETRY) => {}
        }
        // Changes that arrived together are written in one pass.
        loop {
            match changes.try_recv() {
                Ok(change) => note(Ok(change), &mut records),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    note(Err(broadcast::error::RecvError::Lagged(n)), &mut records)
                }
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
    }
}

/// Each host's version is in its Host status now: its agent may have it.
async fn push(
    controller: &Arc<Controller>,
    written: &WrittenVersions,
    versions: Vec<(HostKey, u64)>,
) {
    if versions.is_empty() {
        return;
    }
    for (host, version) in &versions {
        written.wrote(host, *version);
    }
    let c = controller.clone();
    let pushed = tokio::task::spawn_blocking(move || {
        for (host, _) in &versions {
            c.offer_schedule(host);
        }
    })
    .await;
    if let Err(e) = pushed {
        tracing::error!("pushing schedules panicked: {e}");
    }
}

/// Adds a changed Backup or Restore to those the next pass compares; a missed change means
/// every record.
fn note(
    change: Result<Arc<Change>, broadcast::error::RecvError>,
    records: &mut Option<HashSet<RecordId>>,
) {
    match change {
        Ok(change) if matches!(change.kind, Kind::Backup | Kind::Restore | Kind::Snapshot) => {
            if let Some(records) = records {
                let (namespace, name) = change.key();
                records.insert((change.kind, namespace.into(), name.into()));
            }
        }
        Ok(_) | Err(broadcast::error::RecvError::Closed) => {}
        Err(broadcast::error::RecvError::Lagged(_)) => *records = None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cluster::scripted;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_795_000_000 + minute * 60, 0).expect("a time")
    }

    fn object<K: serde::de::DeserializeOwned>(value: Value) -> K {
        serde_json::from_value(value).expect("a fixture object")
    }

    /// A Backup record as the read model holds it.
    fn record(name: &str, status: Value) -> Backup {
        object(json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "namespace": "fleet", "uid": "u-1", "resourceVersion": "7",
                         "labels": {"app.kubernetes.io/managed-by": "holdfast",
                                    "holdfast.dev/host": "web-1", "holdfast.dev/schedule": "nightly"}},
            "spec": {"host": "web-1", "schedule": "nightly"},
            "status": status,
        }))
    }

    fn schedule(limit: u32) -> Schedule {
        object(json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Schedule",
            "metadata": {"name": "nightly", "namespace": "fleet"},
            "spec": {"operation": "backup", "cron": "0 1 * * *", "hosts": ["web-1"],
                     "paths": ["/srv"], "successfulRunsHistoryLimit": limit},
        }))
    }

    fn empty() -> Cluster {
        Cluster {
            repos: vec![],
            hosts: vec![],
            schedules: vec![],
            backups: vec![],
            restores: vec![],
            notifiers: vec![],
            snapshots: vec![],
        }
    }

    fn model(backups: Vec<Backup>) -> Desired {
        let mut model = ReadModel::default();
        model.schedules = vec![Arc::new(schedule(10))];
        Desired {
            model: Arc::new(model),
            backups,
            restores: vec![],
            snapshots: vec![],
            snapshot_scope: None,
        }
    }

    fn running(percent: u32) -> Value {
        json!({"phase": "Running", "progress": {"percent": format!("{percent}%")}})
    }

    /// What `execute` records after the writes succeed, without an API server.
    fn succeed(written: &mut Written, writes: &[Write], now: DateTime<Utc>) {
        for w in writes {
            match w {
                Write::Create(b) => {
                    written
                        .created
                        .insert((namespace_of(&**b).into(), name_of(&**b).into()));
                }
                Write::Status {
                    kind,
                    namespace,
                    name,
                    status,
                    ..
                } => written
                    .statuses
                    .applied(&key(*kind, namespace, name), status.clone(), now),
                Write::CreateSnapshot(s) => {
                    written
                        .created_snapshots
                        .insert((namespace_of(&**s).into(), name_of(&**s).into()));
                }
                Write::Delete { .. } | Write::DeleteSnapshot { .. } => {}
            }
        }
    }

    fn snapshot(short: &str, forget_at: Option<&str>) -> Snapshot {
        snapshot_in("nas", short, forget_at)
    }

    fn snapshot_in(repo: &str, short: &str, forget_at: Option<&str>) -> Snapshot {
        object(json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Snapshot",
            "metadata": {"name": format!("web-1-{repo}-{short}"), "namespace": "fleet",
                         "uid": format!("u-{short}"), "generation": 1,
                         "labels": {"holdfast.dev/host": "web-1"}},
            "spec": {"host": "web-1", "repo": repo, "id": format!("{short}00000000"),
                     "shortId": short, "time": "2026-12-01T01:00:00Z", "hostname": "web-1"},
            "status": {"forgetAt": forget_at},
        }))
    }

    #[test]
    fn snapshots_are_created_owned_by_their_host_and_deleted_once_forgotten() {
        let desired = Desired {
            snapshots: vec![snapshot("aaaaaaaa", Some("2026-12-06T04:00:00Z"))],
            ..model(vec![])
        };
        let cluster = Cluster {
            hosts: vec![Arc::new(host(json!({})))],
            // One forgotten from the list the database holds, one of a list it has not heard.
            snapshots: vec![
                Arc::new(snapshot("bbbbbbbb", None)),
                Arc::new(snapshot_in("offsite", "cccccccc", None)),
            ],
            ..empty()
        };
        let mut written = Written::default();
        let writes = plan(&desired, &cluster, &written, at(0));
        assert_eq!(
            names(&writes),
            [
                "create snapshot web-1-nas-aaaaaaaa",
                "status Snapshot web-1-nas-aaaaaaaa",
                "delete snapshot web-1-nas-bbbbbbbb",
            ]
        );
        let Write::CreateSnapshot(created) = &writes[0] else {
            panic!("a create")
        };
        let owner = &created
            .metadata
            .owner_references
            .as_ref()
            .expect("an owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Host", "web-1")
        );
        assert_eq!(owner.uid, "u-web-1");
        assert!(created.status.is_none() && created.metadata.uid.is_none());
        succeed(&mut written, &writes, at(0));
        // Written: the next pass creates nothing again; a pass over other Snapshots deletes
        // none that it did not look at.
        let scoped = Desired {
            snapshot_scope: Some(HashSet::new()),
            ..model(vec![])
        };
        let writes = plan(&scoped, &cluster, &written, at(1));
        assert!(names(&writes).is_empty(), "{:?}", names(&writes));
        // Without the Host there is no owner: nothing is written yet.
        let writes = plan(&desired, &empty(), &Written::default(), at(0));
        assert!(names(&writes).is_empty(), "{:?}", names(&writes));
    }

    fn names(writes: &[Write]) -> Vec<String> {
        writes
            .iter()
            .map(|w| match w {
                Write::Create(b) => format!("create {}", name_of(&**b)),
                Write::Status { kind, name, .. } => format!("status {} {name}", kind.as_str()),
                Write::Delete { name, .. } => format!("delete {name}"),
                Write::CreateSnapshot(s) => format!("create snapshot {}", name_of(&**s)),
                Write::DeleteSnapshot { name, .. } => format!("delete snapshot {name}"),
            })
            .collect()
    }

    #[test]
    fn a_new_run_is_created_then_its_status_applied_and_progress_coalesced() {
        let mut written = Written::default();
        let m = model(vec![record("nightly-web-1-1", running(1))]);
        let writes = plan(&m, &empty(), &written, at(0));
        assert_eq!(
            names(&writes),
            ["create nightly-web-1-1", "status Backup nightly-web-1-1"]
        );
        let Write::Create(created) = &writes[0] else {
            panic!("a create first")
        };
        assert!(
            created.status.is_none(),
            "status goes through the subresource"
        );
        assert!(created.metadata.uid.is_none() && created.metadata.resource_version.is_none());
        succeed(&mut written, &writes, at(0));

        // The watch has not shown the object yet: not created twice, nothing to write.
        assert!(plan(&m, &empty(), &written, at(0)).is_empty());
        let m = model(vec![record("nightly-web-1-1", running(2))]);
        let soon = at(0) + chrono::Duration::seconds(2);
        assert!(
            plan(&m, &empty(), &written, soon).is_empty(),
            "progress alone waits"
        );
        let later = at(0) + chrono::Duration::seconds(6);
        assert_eq!(
            names(&plan(&m, &empty(), &written, later)),
            ["status Backup nightly-web-1-1"]
        );
    }

    #[test]
    fn what_the_cluster_holds_already_is_not_written_again() {
        let status = json!({"phase": "Succeeded", "message": "done"});
        let m = model(vec![record("nightly-web-1-1", status.clone())]);
        let mut cluster = empty();
        cluster.backups = vec![Arc::new(record("nightly-web-1-1", status))];
        assert!(plan(&m, &cluster, &Written::default(), at(0)).is_empty());
    }

    #[test]
    fn a_new_leader_does_not_set_a_request_going_on_back_until_the_agent_reports() {
        let mut request = record("by-hand", json!({"phase": "Pending"}));
        request.metadata.labels = None;
        let mut cluster = empty();
        let mut in_cluster = request.clone();
        in_cluster.status = object(running(40));
        cluster.backups = vec![Arc::new(in_cluster)];
        let written = Written::default();
        for phase in ["Pending", "Dispatched"] {
            request.status = object(json!({"phase": phase}));
            let m = model(vec![request.clone()]);
            assert!(
                plan(&m, &cluster, &written, at(0)).is_empty(),
                "{phase} is behind Running"
            );
        }
        request.status = object(json!({"phase": "Succeeded", "message": "done"}));
        let m = model(vec![request]);
        assert_eq!(
            names(&plan(&m, &cluster, &written, at(0))),
            ["status Backup by-hand"]
        );
    }

    #[test]
    fn after_the_first_pass_only_changed_records_are_compared_again() {
        use crate::server::changes::ChangeType;
        let change = |kind: Kind, name: &str| {
            let object = json!({"metadata": {"namespace": "fleet", "name": name}});
            Ok(Arc::new(Change::new(
                1,
                kind,
                ChangeType::Modified,
                &object,
                None,
            )))
        };
        let mut records = None;
        note(change(Kind::Backup, "a"), &mut records);
        assert_eq!(records, None, "the first pass compares every record anyway");
        let mut records = Some(HashSet::new());
        note(change(Kind::Backup, "a"), &mut records);
        note(change(Kind::Restore, "r"), &mut records);
        note(change(Kind::Host, "web-1"), &mut records);
        let mut noted: Vec<RecordId> = records.clone().unwrap_or_default().into_iter().collect();
        noted.sort();
        assert_eq!(
            noted,
            [
                (Kind::Backup, "fleet".to_string(), "a".to_string()),
                (Kind::Restore, "fleet".to_string(), "r".to_string())
            ]
        );
        note(Err(broadcast::error::RecvError::Lagged(3)), &mut records);
        assert_eq!(records, None, "changes were missed: every record again");
    }

    #[test]
    fn records_beyond_the_history_limit_are_deleted_oldest_first_and_requests_never() {
        let mut cluster = empty();
        cluster.schedules = vec![Arc::new(schedule(2))];
        let done =
            |minute: i64| json!({"phase": "Succeeded", "completionTime": at(minute).to_rfc3339()});
        cluster.backups = (0..4)
            .map(|i| Arc::new(record(&format!("nightly-web-1-{i}"), done(i))))
            .collect();
        let mut request = record("by-hand", done(-10));
        request.metadata.labels = None;
        cluster.backups.push(Arc::new(request));
        let nothing = Desired {
            model: Arc::new(ReadModel::default()),
            backups: vec![],
            restores: vec![],
            snapshots: vec![],
            snapshot_scope: None,
        };
        let mut deleted = names(&plan(&nothing, &cluster, &Written::default(), at(5)));
        deleted.sort();
        assert_eq!(
            deleted,
            ["delete nightly-web-1-0", "delete nightly-web-1-1"]
        );
    }

    #[tokio::test]
    async fn writes_are_a_create_by_holdfast_a_status_apply_and_a_delete() {
        let failed = record(
            "nightly-web-1-1",
            json!({"phase": "Failed", "message": "exit 1"}),
        );
        let writes = plan(
            &model(vec![failed.clone()]),
            &empty(),
            &Written::default(),
            at(0),
        );
        let mut writes: Vec<Write> = writes;
        writes.push(Write::Delete {
            namespace: "fleet".into(),
            name: "nightly-web-1-0".into(),
        });
        let created = serde_json::to_value(&failed).expect("serialises");
        let (client, server) = scripted::api(vec![
            (201, created.clone()),
            (200, created),
            (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
        ]);
        let mut written = Written::default();
        execute(&client, &mut written, writes, at(0)).await;
        let asked = server.await.expect("the server answered");
        let calls: Vec<(String, String)> = asked
            .iter()
            .map(|a| (a.method.clone(), a.uri.clone()))
            .collect();
        assert_eq!(
            calls,
            [
                ("POST".into(), "/apis/holdfast.dev/v1alpha1/namespaces/fleet/backups?&fieldManager=holdfast".into()),
                ("PATCH".into(), "/apis/holdfast.dev/v1alpha1/namespaces/fleet/backups/nightly-web-1-1/status?&force=true&fieldManager=holdfast".into()),
                ("DELETE".into(), "/apis/holdfast.dev/v1alpha1/namespaces/fleet/backups/nightly-web-1-0?".into()),
            ]
        );
        assert_eq!(
            asked[0].body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "holdfast"
        );
        assert_eq!(asked[1].body["status"]["phase"], "Failed");
        assert!(
            written
                .created
                .contains(&("fleet".into(), "nightly-web-1-1".into()))
        );
    }

    /// A Host as the read model holds it, or as the cluster does, with `status`.
    fn host(status: Value) -> Host {
        object(json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "namespace": "fleet", "uid": "u-web-1", "generation": 1},
            "spec": {"defaultRepo": "nas"},
            "status": status,
        }))
    }

    fn hosts(model_status: Value, cluster_status: Value) -> (Desired, Cluster) {
        let mut model = ReadModel::default();
        model.hosts = vec![Arc::new(host(model_status))];
        let desired = Desired {
            model: Arc::new(model),
            backups: vec![],
            restores: vec![],
            snapshots: vec![],
            snapshot_scope: None,
        };
        let cluster = Cluster {
            hosts: vec![Arc::new(host(cluster_status))],
            ..empty()
        };
        (desired, cluster)
    }

    #[test]
    fn host_status_is_written_like_any_other() {
        let (desired, cluster) = hosts(
            json!({"online": false, "desiredScheduleVersion": 2, "desiredScheduleDigest": "d2",
                   "lastBackup": {"backup": "nightly-web-1-7", "phase": "Succeeded",
                                  "time": "2026-11-30T01:00:00Z"}}),
            json!({"online": true, "desiredScheduleVersion": 1, "desiredScheduleDigest": "d1"}),
        );
        let writes = plan(&desired, &cluster, &Written::default(), at(0));
        assert_eq!(names(&writes), ["status Host web-1"]);
        let Write::Status { status, .. } = &writes[0] else {
            panic!("a status write")
        };
        assert_eq!(status["desiredScheduleVersion"], 2);
        assert_eq!(status["lastBackup"]["backup"], "nightly-web-1-7");

        // Already in the cluster: nothing to write.
        let (desired, cluster) = hosts(json!({"online": true}), json!({"online": true}));
        assert!(plan(&desired, &cluster, &Written::default(), at(0)).is_empty());
    }

    #[test]
    fn a_notifiers_status_is_written_like_any_other() {
        let notifier = |status: Value| -> Arc<crate::resources::Notifier> {
            Arc::new(object(json!({
                "apiVersion": "holdfast.dev/v1alpha1", "kind": "Notifier",
                "metadata": {"name": "ops", "namespace": "fleet", "uid": "u-ops", "generation": 1},
                "spec": {"ntfy": {"url": "https://ntfy.sh/fleet"}},
                "status": status,
            })))
        };
        let mut model = ReadModel::default();
        model.notifiers = vec![notifier(json!({"firing": 1, "queued": 0}))];
        let desired = Desired {
            model: Arc::new(model),
            backups: vec![],
            restores: vec![],
            snapshots: vec![],
            snapshot_scope: None,
        };
        let cluster = Cluster {
            notifiers: vec![notifier(json!({"firing": 0, "queued": 0}))],
            ..empty()
        };
        let writes = plan(&desired, &cluster, &Written::default(), at(0));
        assert_eq!(names(&writes), ["status Notifier ops"]);
        let Write::Status { status, .. } = &writes[0] else {
            panic!("a status write")
        };
        assert_eq!(status["firing"], 1);
    }

    #[tokio::test]
    async fn a_host_status_written_names_the_version_it_holds() {
        let (desired, cluster) = hosts(
            json!({"online": true, "desiredScheduleVersion": 3, "desiredScheduleDigest": "d3"}),
            json!({"online": true, "desiredScheduleVersion": 2, "desiredScheduleDigest": "d2"}),
        );
        let writes = plan(&desired, &cluster, &Written::default(), at(0));
        let applied =
            serde_json::to_value(host(json!({"desiredScheduleVersion": 3}))).expect("serialises");
        let (client, server) = scripted::api(vec![(200, applied)]);
        let mut written = Written::default();
        let executed = execute(&client, &mut written, writes, at(0)).await;
        let asked = server.await.expect("the server answered");
        assert_eq!(
            asked[0].uri,
            "/apis/holdfast.dev/v1alpha1/namespaces/fleet/hosts/web-1/status?&force=true&fieldManager=holdfast"
        );
        assert_eq!(executed.versions, [(HostKey::new("fleet", "web-1"), 3)]);
    }
}
