//! `holdfast controller --kube`: on every replica, reflectors for the six kinds and the
//! Secrets Repos may name, and the same server as files mode (page, read API, metrics, agent
//! endpoints); on the replica that holds the Lease, the Host reconcile through `kube-runtime`'s
//! applier and the write-back of status. Followers refuse agents, so only the leader pushes.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use kube::{Client, Resource};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::agents::{ClusterHub, WrittenVersions};
use super::events::ApiEvents;
use super::lease::Election;
use super::reconcile::{
    Context, Stores, backup_inputs, desired_inputs, error_policy, reconcile, restore_inputs,
};
use crate::resources::{Backup, Host, Notifier, Repo, Restore, Schedule, Snapshot};
use crate::server::Controller;
use crate::store::StoreError;
use crate::web::ServeError;

/// The Lease replicas compete for.
pub const LEASE: &str = "holdfast-controller";

pub struct Config {
    /// The controller's own namespace: its Lease, enrollment tokens and credentials.
    pub namespace: String,
    /// Further namespaces whose Secrets Repos may name.
    pub secret_namespaces: Vec<String>,
    /// This replica, as the Lease names its holder (the pod's name).
    pub identity: String,
    pub server: crate::server::Config,
}

/// Where reflectors send the Hosts to reconcile: the applier of the current leadership, if any.
type Queue = Arc<Mutex<Option<mpsc::UnboundedSender<ObjectRef<Host>>>>>;

/// Why the Kubernetes-mode controller stopped or never started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "cannot reach the Kubernetes API server: {0}; in a cluster the pod's service account is used, elsewhere KUBECONFIG or ~/.kube/config"
    )]
    NoApiServer(#[source] kube::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Open(#[from] crate::server::OpenError),
    #[error("leader election stopped")]
    ElectionStopped,
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("the server stopped: {0}")]
    ServerStopped(#[source] tokio::task::JoinError),
}

pub async fn run(config: Config) -> Result<(), RunError> {
    let client = Client::try_default().await.map_err(RunError::NoApiServer)?;
    let (repos, repo_writer) = reflector::store::<Repo>();
    let (hosts, host_writer) = reflector::store::<Host>();
    let (schedules, schedule_writer) = reflector::store::<Schedule>();
    let (backups, backup_writer) = reflector::store::<Backup>();
    let (restores, restore_writer) = reflector::store::<Restore>();
    let (notifiers, notifier_writer) = reflector::store::<Notifier>();
    let (snapshots, snapshot_writer) = reflector::store::<Snapshot>();
    let stores = Stores {
        repos,
        hosts: hosts.clone(),
        schedules,
        backups,
        restores,
        notifiers,
        snapshots,
    };
    let queue: Queue = Arc::new(Mutex::new(None));

    // Every replica keeps its stores warm, so a new leader starts from a full picture. The
    // stores see every event, status included (a follower's page shows the status the leader
    // wrote); only what a reconcile reads triggers one (`Triggers`), so the leader's own status
    // writes, coming back through these watches, trigger nothing.
    let host_queue = queue.clone();
    tokio::spawn(follow(
        Api::all(client.clone()),
        host_writer,
        desired_inputs,
        move |trigger| {
            // A Host changed where its reconcile reads; a deleted one needs no reconcile.
            if let Trigger::Changed(host) = trigger {
                enqueue(&host_queue, [host]);
            }
        },
    ));
    // The fleet compiles as a whole, so a fix (or a break) anywhere concerns every host.
    // Unchanged hosts compute the same status from the one cached compile and write nothing.
    let everything = |queue: Queue, hosts: Store<Host>| {
        move || {
            enqueue(
                &queue,
                hosts.state().iter().map(|h| ObjectRef::from_obj(&**h)),
            )
        }
    };
    let all = everything(queue.clone(), hosts.clone());
    tokio::spawn(follow(
        Api::all(client.clone()),
        repo_writer,
        desired_inputs::<Repo>,
        move |_| all(),
    ));
    let all = everything(queue.clone(), hosts.clone());
    tokio::spawn(follow(
        Api::all(client.clone()),
        schedule_writer,
        desired_inputs::<Schedule>,
        move |_| all(),
    ));
    // Unfinished run requests join the revision; the records Holdfast writes itself do not.
    let all = everything(queue.clone(), hosts.clone());
    tokio::spawn(follow(
        Api::all(client.clone()),
        backup_writer,
        backup_inputs,
        move |_| all(),
    ));
    let all = everything(queue.clone(), hosts.clone());
    tokio::spawn(follow(
        Api::all(client.clone()),
        restore_writer,
        restore_inputs,
        move |_| all(),
    ));
    // Notifiers compile into no plan, but they validate with the fleet, and the revision in
    // force is what the status writer reads them from.
    let all = everything(queue.clone(), hosts.clone());
    tokio::spawn(follow(
        Api::all(client.clone()),
        notifier_writer,
        desired_inputs::<Notifier>,
        move |_| all(),
    ));
    // Snapshots are the leader's own writes: what it compares with, never a reconcile's input.
    tokio::spawn(follow(
        Api::all(client.clone()),
        snapshot_writer,
        |_: &Snapshot| None,
        |_| {},
    ));
    let mut secrets = Vec::new();
    let mut namespaces = vec![config.namespace.clone()];
    namespaces.extend(config.secret_namespaces.iter().cloned());
    namespaces.dedup();
    for namespace in namespaces {
        let (store, writer) = reflector::store::<Secret>();
        tokio::spawn(follow(
            Api::namespaced(client.clone(), &namespace),
            writer,
            |_: &Secret| None,
            |_| {},
        ));
        secrets.push((namespace, store));
    }

    let (leading_tx, leading) = watch::channel(false);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &config.namespace);
    tokio::spawn(Election::new(LEASE, &config.identity).run(leases, leading_tx));

    let agent_queue = queue.clone();
    let written = Arc::new(WrittenVersions::default());
    let hub = ClusterHub {
        stores: stores.clone(),
        credentials: Api::namespaced(client.clone(), &config.namespace),
        secrets,
        leading: leading.clone(),
        reconcile: Box::new(move |h| {
            enqueue(&agent_queue, [ObjectRef::new(&h.name).within(&h.namespace)]);
        }),
        written: written.clone(),
        record: {
            let events = ApiEvents::new(client.clone(), &config.identity);
            Box::new(move |regarding, decision| events.send(regarding, decision))
        },
    };
    let controller = Controller::open(config.server, Box::new(hub))?;
    let server = tokio::spawn(crate::web::serve(controller.clone()));

    // Reconciling before every store has listed would compile a partial fleet and bump
    // versions: wait for all of them. Until then `/readyz` says not ready.
    let _ = tokio::join!(
        stores.repos.wait_until_ready(),
        stores.hosts.wait_until_ready(),
        stores.schedules.wait_until_ready(),
        stores.backups.wait_until_ready(),
        stores.restores.wait_until_ready(),
        stores.notifiers.wait_until_ready(),
        stores.snapshots.wait_until_ready(),
    );
    tracing::info!("watching repos, hosts, schedules, backups, restores, notifiers and snapshots");
    crate::server::start_model(controller.clone());
    let ctx = Arc::new(Context::new(stores.clone(), controller.clone()));
    let identity = config.identity.clone();
    let leadership = while_leading(leading, move || {
        tracing::info!(identity = %identity, "leading: reconciling hosts, accepting agents");
        let (tx, rx) = mpsc::unbounded_channel();
        *queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        enqueue(
            &queue,
            hosts.state().iter().map(|h| ObjectRef::from_obj(&**h)),
        );
        let reconciling = applier(
            reconcile,
            error_policy,
            ctx.clone(),
            hosts.clone(),
            UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>),
            kube::runtime::Config::default(),
        )
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Logged by `error_policy`.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        });
        let writing = super::writeback::run(
            controller.clone(),
            stores.clone(),
            client.clone(),
            written.clone(),
        );
        // Dropped when the lead is lost (the task is aborted): agents go to the new leader.
        let sessions = Sessions(controller.clone());
        async move {
            let _sessions = sessions;
            tokio::join!(reconciling, writing);
        }
    });
    tokio::select! {
        _ = leadership => Err(RunError::ElectionStopped),
        served = server => match served {
            Ok(result) => Ok(result?),
            Err(e) => Err(RunError::ServerStopped(e)),
        },
    }
}

/// The agent sessions of one stretch of leadership.
struct Sessions(Arc<Controller>);

impl Drop for Sessions {
    fn drop(&mut self) {
        self.0.disconnect_agents();
    }
}

/// Runs `work` for every stretch of time this replica leads, and stops it the moment the lead
/// is lost (agents refuse lower versions anyway, but a former leader must not push at all).
/// Returns when the election ends.
pub async fn while_leading<W, F>(mut leading: watch::Receiver<bool>, mut work: W)
where
    W: FnMut() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        let task = tokio::spawn(work());
        let ended = leading.wait_for(|l| !*l).await.is_err();
        task.abort();
        if ended {
            return;
        }
        tracing::warn!("lost the lease: stopped reconciling");
    }
}

fn enqueue(queue: &Queue, refs: impl IntoIterator<Item = ObjectRef<Host>>) {
    if let Some(tx) = queue.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        for r in refs {
            // A closed queue means leadership just ended; the next leader reconciles all.
            let _ = tx.send(r);
        }
    }
}

/// Keeps `writer`'s store in step with the API server, every event included, and calls
/// `triggered` with what [`triggers`] makes of them.
async fn follow<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    key: fn(&K) -> Option<u64>,
    mut triggered: impl FnMut(Trigger<K>),
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let mut stream = std::pin::pin!(triggers(api, writer, key));
    while let Some(trigger) = stream.next().await {
        triggered(trigger);
    }
}

/// Watches `api` into `writer`'s store and yields the objects worth a reconcile: those whose
/// `key` ([`Triggers`]) changed. Every event reaches the store before what it triggers is
/// yielded, so a reconcile reads at least that change. Watch errors are logged and retried with
/// backoff.
pub fn triggers<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    key: fn(&K) -> Option<u64>,
) -> impl Stream<Item = Trigger<K>> + Send
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let mut triggers = Triggers::new(key);
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(move |event| match event {
            Ok(event) => triggers.observe(&event),
            Err(e) => {
                tracing::warn!("watch: {e}");
                Vec::new()
            }
        })
        .flat_map(futures_util::stream::iter)
}

/// An object worth a reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger<K: Resource<DynamicType = ()>> {
    /// Created, or changed where a reconcile reads.
    Changed(ObjectRef<K>),
    /// Deleted, or no longer read by any reconcile (a run request that finished).
    Gone(ObjectRef<K>),
}

/// Which watch events are worth a reconcile. `key` is what a reconcile reads of an object, as
/// a digest (`None`: nothing, such as the Backup records Holdfast writes): generation, labels
/// and identity ([`inputs`](super::reconcile::inputs)), never status. An event whose object's
/// key is the one seen before triggers nothing; so the leader's own status writes, which come
/// back through the watches, trigger no reconcile, while a spec or label change, a creation
/// and a deletion do.
///
/// A watch that restarts lists everything again: what is listed unchanged triggers nothing,
/// and what is no longer listed was deleted meanwhile.
pub struct Triggers<K: Resource<DynamicType = ()>> {
    key: fn(&K) -> Option<u64>,
    /// The key of every object seen whose key is `Some`.
    seen: HashMap<ObjectRef<K>, u64>,
    /// While a watch (re)lists: the objects listed so far.
    listing: Option<HashSet<ObjectRef<K>>>,
}

impl<K: Resource<DynamicType = ()>> Triggers<K> {
    pub fn new(key: fn(&K) -> Option<u64>) -> Triggers<K> {
        Triggers {
            key,
            seen: HashMap::new(),
            listing: None,
        }
    }

    /// What `event` triggers.
    pub fn observe(&mut self, event: &watcher::Event<K>) -> Vec<Trigger<K>> {
        match event {
            watcher::Event::Apply(object) => self.applied(object).into_iter().collect(),
            watcher::Event::InitApply(object) => {
                if let Some(listing) = &mut self.listing {
                    listing.insert(ObjectRef::from_obj(object));
                }
                self.applied(object).into_iter().collect()
            }
            watcher::Event::Delete(object) => {
                let r = ObjectRef::from_obj(object);
                self.seen
                    .remove(&r)
                    .map(|_| Trigger::Gone(r))
                    .into_iter()
                    .collect()
            }
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitDone => {
                let Some(listed) = self.listing.take() else {
                    return Vec::new();
                };
                let gone: Vec<ObjectRef<K>> = self
                    .seen
                    .keys()
                    .filter(|r| !listed.contains(*r))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .map(|r| {
                        self.seen.remove(&r);
                        Trigger::Gone(r)
                    })
                    .collect()
            }
        }
    }

    fn applied(&mut self, object: &K) -> Option<Trigger<K>> {
        let r = ObjectRef::from_obj(object);
        let after = (self.key)(object);
        let before = match after {
            Some(key) => self.seen.insert(r.clone(), key),
            None => self.seen.remove(&r),
        };
        if before == after {
            None
        } else if after.is_some() {
            Some(Trigger::Changed(r))
        } else {
            Some(Trigger::Gone(r))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Set when the work it belongs to is dropped (aborted).
    struct Stopped(Arc<AtomicBool>);

    impl Drop for Stopped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Yields until `done`; a deadline so that a broken election fails instead of hanging.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let wait = async {
            while !done() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
    }

    /// An object as the API server returns it: `generation`, `resourceVersion` and `uid` set,
    /// `extra` merged into `metadata`, and `status` when given.
    fn object<K: serde::de::DeserializeOwned>(
        kind: &str,
        name: &str,
        generation: i64,
        rv: u64,
        metadata: serde_json::Value,
        spec: serde_json::Value,
        status: Option<serde_json::Value>,
    ) -> K {
        let mut meta = serde_json::json!({
            "name": name, "namespace": "fleet", "uid": format!("uid-{name}"),
            "generation": generation, "resourceVersion": rv.to_string(),
        });
        for (k, v) in metadata.as_object().into_iter().flatten() {
            meta[k] = v.clone();
        }
        let mut value = serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec,
        });
        if let Some(status) = status {
            value["status"] = status;
        }
        serde_json::from_value(value).expect("a fixture object")
    }

    fn schedule(
        generation: i64,
        rv: u64,
        labels: &str,
        status: Option<serde_json::Value>,
    ) -> Schedule {
        object(
            "Schedule",
            "nightly",
            generation,
            rv,
            serde_json::json!({"labels": {"team": labels}}),
            serde_json::json!({"operation": "backup", "cron": "0 1 * * *", "hosts": ["web-1"], "paths": [format!("/srv/{generation}")]}),
            status,
        )
    }

    fn schedule_status(ready: &str) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "observedGeneration": 1, "hostCount": 1,
            "conditions": [{"type": "Ready", "status": ready, "reason": "R", "message": "m",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        }))
    }

    fn host(rv: u64, status: Option<serde_json::Value>) -> Host {
        object(
            "Host",
            "web-1",
            1,
            rv,
            serde_json::json!({"labels": {"role": "web"}}),
            serde_json::json!({"defaultRepo": "nas"}),
            status,
        )
    }

    fn backup(name: &str, rv: u64, record: bool, phase: Option<&str>) -> Backup {
        let labels = if record {
            serde_json::json!({"labels": {"app.kubernetes.io/managed-by": "holdfast"}})
        } else {
            serde_json::json!({})
        };
        object(
            "Backup",
            name,
            1,
            rv,
            labels,
            serde_json::json!({"host": "web-1", "schedule": "nightly"}),
            phase.map(|p| serde_json::json!({"phase": p})),
        )
    }

    /// What `events` trigger, in order, as `Changed name` or `Gone name`.
    fn fed<K: Resource<DynamicType = ()>>(
        triggers: &mut Triggers<K>,
        events: Vec<watcher::Event<K>>,
    ) -> Vec<String> {
        events
            .iter()
            .flat_map(|e| triggers.observe(e))
            .map(|t| match t {
                Trigger::Changed(r) => format!("Changed {}", r.name),
                Trigger::Gone(r) => format!("Gone {}", r.name),
            })
            .collect()
    }

    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};

    #[test]
    fn status_writes_trigger_nothing_and_spec_labels_creation_and_deletion_do() {
        let mut t = Triggers::new(desired_inputs::<Schedule>);
        assert_eq!(
            fed(
                &mut t,
                vec![Init, InitApply(schedule(1, 10, "web", None)), InitDone]
            ),
            ["Changed nightly"],
            "listed for the first time"
        );
        // The leader's status writes come back through the watch: a new resourceVersion and
        // status each time, the same generation and labels.
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Apply(schedule(1, 11, "web", schedule_status("False"))),
                    Apply(schedule(1, 12, "web", schedule_status("True"))),
                    Apply(schedule(1, 13, "web", schedule_status("True"))),
                ]
            ),
            Vec::<String>::new(),
            "status-only updates trigger no reconcile"
        );
        assert_eq!(
            fed(
                &mut t,
                vec![Apply(schedule(2, 14, "web", schedule_status("True")))]
            ),
            ["Changed nightly"],
            "a spec change (the generation) does"
        );
        assert_eq!(
            fed(
                &mut t,
                vec![Apply(schedule(2, 15, "db", schedule_status("True")))]
            ),
            ["Changed nightly"],
            "a label change does"
        );
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Apply(schedule(2, 16, "db", schedule_status("False"))),
                    Delete(schedule(2, 17, "db", schedule_status("False"))),
                ]
            ),
            ["Gone nightly"],
            "a deletion does"
        );
        let mut again = schedule(1, 18, "db", None);
        again.metadata.uid = Some("uid-nightly-2".into());
        assert_eq!(
            fed(&mut t, vec![Apply(again.clone())]),
            ["Changed nightly"],
            "created again"
        );
        // Created again under the same name while the watch was down: a new uid.
        again.metadata.uid = Some("uid-nightly-3".into());
        assert_eq!(
            fed(&mut t, vec![Init, InitApply(again), InitDone]),
            ["Changed nightly"]
        );
    }

    #[test]
    fn a_hosts_own_status_write_does_not_trigger_its_reconcile() {
        let mut t = Triggers::new(desired_inputs::<Host>);
        assert_eq!(fed(&mut t, vec![Apply(host(1, None))]), ["Changed web-1"]);
        let written = serde_json::json!({"observedGeneration": 1, "desiredScheduleVersion": 1,
            "desiredScheduleDigest": "d1", "online": true});
        let acked = serde_json::json!({"observedGeneration": 1, "desiredScheduleVersion": 1,
            "desiredScheduleDigest": "d1", "appliedScheduleVersion": 1, "online": true});
        assert_eq!(
            fed(
                &mut t,
                vec![Apply(host(2, Some(written))), Apply(host(3, Some(acked)))]
            ),
            Vec::<String>::new()
        );
        let mut relabelled = host(4, None);
        relabelled.metadata.labels = Some([("role".to_string(), "db".to_string())].into());
        assert_eq!(fed(&mut t, vec![Apply(relabelled)]), ["Changed web-1"]);
    }

    #[test]
    fn run_requests_trigger_while_in_the_revision_and_records_never() {
        let mut t = Triggers::new(backup_inputs);
        // A record Holdfast writes for a run, its status, its pruning: nothing.
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Apply(backup("nightly-web-1-1", 1, true, None)),
                    Apply(backup("nightly-web-1-1", 2, true, Some("Running"))),
                    Apply(backup("nightly-web-1-1", 3, true, Some("Succeeded"))),
                    Delete(backup("nightly-web-1-1", 4, true, Some("Succeeded"))),
                ]
            ),
            Vec::<String>::new(),
            "records are in no revision"
        );
        // A request: created, dispatched and run (the leader's status writes), finished.
        assert_eq!(
            fed(&mut t, vec![Apply(backup("now", 5, false, None))]),
            ["Changed now"],
            "a new request joins the revision"
        );
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Apply(backup("now", 6, false, Some("Pending"))),
                    Apply(backup("now", 7, false, Some("Dispatched"))),
                    Apply(backup("now", 8, false, Some("Running"))),
                ]
            ),
            Vec::<String>::new(),
            "its phase moving on while unfinished changes nothing a reconcile reads"
        );
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Apply(backup("now", 9, false, Some("Succeeded"))),
                    Apply(backup("now", 10, false, Some("Succeeded"))),
                    Delete(backup("now", 11, false, Some("Succeeded"))),
                ]
            ),
            ["Gone now"],
            "finishing leaves the revision once; a finished request's deletion is nothing"
        );
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Apply(backup("later", 12, false, None)),
                    Delete(backup("later", 13, false, Some("Pending"))),
                ]
            ),
            ["Changed later", "Gone later"],
            "an unfinished request deleted leaves the revision"
        );
    }

    #[test]
    fn a_relisted_watch_triggers_only_what_changed_or_went_meanwhile() {
        let mut t = Triggers::new(desired_inputs::<Schedule>);
        let other = |generation, rv| {
            let mut s = schedule(generation, rv, "web", None);
            s.metadata.name = Some("weekly".into());
            s.metadata.uid = Some("uid-weekly".into());
            s
        };
        let mut third = schedule(1, 3, "web", None);
        third.metadata.name = Some("hourly".into());
        third.metadata.uid = Some("uid-hourly".into());
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Init,
                    InitApply(schedule(1, 1, "web", None)),
                    InitApply(other(1, 2)),
                    InitApply(third),
                    InitDone
                ]
            ),
            ["Changed nightly", "Changed weekly", "Changed hourly"]
        );
        // The watch restarts: `nightly` only got a status, `weekly` a new spec, `hourly` was
        // deleted meanwhile.
        assert_eq!(
            fed(
                &mut t,
                vec![
                    Init,
                    InitApply(schedule(1, 9, "web", schedule_status("True"))),
                    InitApply(other(2, 10)),
                    InitDone
                ]
            ),
            ["Changed weekly", "Gone hourly"]
        );
    }

    #[tokio::test]
    async fn work_runs_only_while_leading_and_stops_when_the_lead_is_lost() {
        let (tx, rx) = watch::channel(false);
        let started = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let (s, t) = (started.clone(), stopped.clone());
        let elector = tokio::spawn(while_leading(rx, move || {
            s.fetch_add(1, Ordering::SeqCst);
            let guard = Stopped(t.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }
        }));
        tokio::task::yield_now().await;
        assert_eq!(started.load(Ordering::SeqCst), 0, "a follower does no work");

        tx.send(true).expect("the elector listens");
        until("the leader works", || started.load(Ordering::SeqCst) == 1).await;
        assert!(!stopped.load(Ordering::SeqCst), "the leader works");

        tx.send(false).expect("the elector listens");
        until("the work stops", || stopped.load(Ordering::SeqCst)).await;

        tx.send(true).expect("the elector listens");
        until("the work starts again", || {
            started.load(Ordering::SeqCst) == 2
        })
        .await;
        drop(tx);
        elector.await.expect("returns when the election ends");
    }
}
