//! `holdfast controller --kube`: on every replica, reflectors for the five kinds and the
//! Secrets Repos may name, and the same server as files mode (page, read API, metrics, agent
//! endpoints); on the replica that holds the Lease, the Host reconcile through `kube-runtime`'s
//! applier and the write-back of status. Followers refuse agents, so only the leader pushes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use kube::{Client, Resource};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::agents::ClusterHub;
use super::lease::Election;
use super::reconcile::{ApiSink, Context, Stores, error_policy, is_open_request, reconcile};
use crate::resources::{Backup, Host, Repo, Restore, Schedule};
use crate::server::{Controller, Mode};

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

pub async fn run(config: Config) -> Result<(), String> {
    let client = Client::try_default().await.map_err(|e| {
        format!(
            "cannot reach the Kubernetes API server: {e}; in a cluster the pod's service account is used, elsewhere KUBECONFIG or ~/.kube/config"
        )
    })?;
    let (repos, repo_writer) = reflector::store::<Repo>();
    let (hosts, host_writer) = reflector::store::<Host>();
    let (schedules, schedule_writer) = reflector::store::<Schedule>();
    let (backups, backup_writer) = reflector::store::<Backup>();
    let (restores, restore_writer) = reflector::store::<Restore>();
    let stores = Stores {
        repos,
        hosts: hosts.clone(),
        schedules,
        backups,
        restores,
    };
    let queue: Queue = Arc::new(Mutex::new(None));

    // Every replica keeps its stores warm, so a new leader starts from a full picture.
    let host_queue = queue.clone();
    tokio::spawn(follow(
        Api::all(client.clone()),
        host_writer,
        move |h: &Host| {
            enqueue(&host_queue, [ObjectRef::from_obj(h)]);
        },
    ));
    let everything = |queue: Queue, hosts: Store<Host>| {
        move || {
            enqueue(
                &queue,
                hosts.state().iter().map(|h| ObjectRef::from_obj(&**h)),
            )
        }
    };
    let all = everything(queue.clone(), hosts.clone());
    on_change(client.clone(), repo_writer, move |_: &Repo| all());
    let all = everything(queue.clone(), hosts.clone());
    on_change(client.clone(), schedule_writer, move |_: &Schedule| all());
    // Run requests join the revision; the records Holdfast writes itself do not.
    let all = everything(queue.clone(), hosts.clone());
    on_change(client.clone(), backup_writer, move |b: &Backup| {
        if is_open_request(&b.metadata, b.status.as_ref().and_then(|s| s.run.phase)) {
            all()
        }
    });
    let all = everything(queue.clone(), hosts.clone());
    on_change(client.clone(), restore_writer, move |r: &Restore| {
        if is_open_request(&r.metadata, r.status.as_ref().and_then(|s| s.run.phase)) {
            all()
        }
    });
    let mut secrets = Vec::new();
    let mut namespaces = vec![config.namespace.clone()];
    namespaces.extend(config.secret_namespaces.iter().cloned());
    namespaces.dedup();
    for namespace in namespaces {
        let (store, writer) = reflector::store::<Secret>();
        tokio::spawn(follow(
            Api::namespaced(client.clone(), &namespace),
            writer,
            |_: &Secret| {},
        ));
        secrets.push((namespace, store));
    }

    let (leading_tx, leading) = watch::channel(false);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &config.namespace);
    tokio::spawn(Election::new(LEASE, &config.identity).run(leases, leading_tx));

    let agent_queue = queue.clone();
    let hub = ClusterHub {
        stores: stores.clone(),
        credentials: Api::namespaced(client.clone(), &config.namespace),
        secrets,
        leading: leading.clone(),
        reconcile: Box::new(move |h| {
            enqueue(&agent_queue, [ObjectRef::new(&h.name).within(&h.namespace)]);
        }),
    };
    let controller =
        Controller::open(config.server, Mode::Cluster(Box::new(hub))).map_err(|e| e.to_string())?;
    let server = tokio::spawn(crate::server::serve(controller.clone()));

    // Reconciling before every store has listed would compile a partial fleet and bump
    // versions: wait for all of them. Until then `/readyz` says not ready.
    let _ = tokio::join!(
        stores.repos.wait_until_ready(),
        stores.hosts.wait_until_ready(),
        stores.schedules.wait_until_ready(),
        stores.backups.wait_until_ready(),
        stores.restores.wait_until_ready(),
    );
    tracing::info!("watching repos, hosts, schedules, backups and restores");
    crate::server::start_model(controller.clone());
    let sink = Arc::new(ApiSink::new(client.clone(), &config.identity));
    let ctx = Arc::new(Context::new(
        stores.clone(),
        controller.clone(),
        sink.clone(),
    ));
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
                // Logged by `error_policy`, at debug level.
                Err(kube::runtime::controller::Error::ReconcilerFailed(e, _)) if e.is_stale() => {}
                Err(e) => tracing::warn!("reconcile: {e}"),
            }
        });
        let writing = super::writeback::run(
            controller.clone(),
            stores.clone(),
            client.clone(),
            sink.clone(),
        );
        // Dropped when the lead is lost (the task is aborted): agents go to the new leader.
        let sessions = Sessions(controller.clone());
        async move {
            let _sessions = sessions;
            tokio::join!(reconciling, writing);
        }
    });
    tokio::select! {
        _ = leadership => Err("leader election stopped".into()),
        served = server => match served {
            Ok(result) => result,
            Err(e) => Err(format!("the server stopped: {e}")),
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

/// Keeps `writer`'s store in step with the API server, calling `changed` for every object
/// added, modified or deleted: the fleet compiles as a whole, so a fix (or a break) anywhere
/// concerns every host. Unchanged hosts compute the same status from the one cached compile
/// and write nothing.
fn on_change<K>(
    client: Client,
    writer: reflector::store::Writer<K>,
    changed: impl Fn(&K) + Send + 'static,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(Api::<K>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .touched_objects();
        drive(stream, changed).await;
    });
}

/// Keeps `writer`'s store in step with the API server, calling `changed` for every object
/// added or modified (a deleted Host needs no reconcile); watch errors are logged and retried
/// with backoff.
async fn follow<K>(api: Api<K>, writer: reflector::store::Writer<K>, changed: impl Fn(&K))
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    drive(stream, changed).await;
}

async fn drive<K>(stream: impl Stream<Item = Result<K, watcher::Error>>, changed: impl Fn(&K)) {
    let mut stream = std::pin::pin!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(object)) => changed(&object),
            Ok(None) => return,
            Err(e) => tracing::warn!("watch: {e}"),
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
