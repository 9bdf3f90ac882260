//! `holdfast controller --kube`: reflectors for Repos, Hosts and Schedules on every replica;
//! on the replica that holds the Lease, the Host reconcile through `kube-runtime`'s applier.
//!
//! What runs so far: every Host's desired schedule version, digest and conditions are written to
//! its status. Not yet: the agent hub, the page and API, Backup records, Secrets and Events in
//! this mode (see the README).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures_util::{Stream, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use kube::{Client, Resource};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::lease::Election;
use super::reconcile::{ApiSink, Context, error_policy, reconcile};
use crate::resources::{Host, Repo, Schedule};

/// The Lease replicas compete for.
pub const LEASE: &str = "holdfast-controller";

pub struct Config {
    /// The controller's own namespace: where its Lease lives.
    pub namespace: String,
    /// This replica, as the Lease names its holder (the pod's name).
    pub identity: String,
    pub listen: SocketAddr,
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
    let queue: Queue = Arc::new(Mutex::new(None));

    // Every replica keeps its stores warm, so a new leader starts from a full picture.
    let host_queue = queue.clone();
    tokio::spawn(follow(client.clone(), host_writer, move |h: &Host| {
        enqueue(&host_queue, [ObjectRef::from_obj(h)]);
    }));
    on_fleet_change(client.clone(), repo_writer, hosts.clone(), queue.clone());
    on_fleet_change(
        client.clone(),
        schedule_writer,
        hosts.clone(),
        queue.clone(),
    );

    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    tracing::info!("serving health on http://{}", config.listen);
    tokio::spawn(serve_health(listener, ready.clone()));
    let (r, h, s) = (repos.clone(), hosts.clone(), schedules.clone());
    let ready_flag = ready.clone();
    let stores_ready = async move {
        let _ = tokio::join!(
            r.wait_until_ready(),
            h.wait_until_ready(),
            s.wait_until_ready()
        );
        ready_flag.store(true, Ordering::SeqCst);
        tracing::info!("watching repos, hosts and schedules");
    };

    let (leading_tx, leading) = watch::channel(false);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &config.namespace);
    tokio::spawn(Election::new(LEASE, &config.identity).run(leases, leading_tx));
    // Reconciling before every store has listed would compile a partial fleet and bump
    // versions: wait for all three.
    stores_ready.await;
    let ctx = Arc::new(Context::new(
        repos,
        hosts.clone(),
        schedules,
        Arc::new(ApiSink::new(client, &config.identity)),
    ));
    let identity = config.identity.clone();
    while_leading(leading, move || {
        tracing::info!(identity = %identity, "leading: reconciling hosts");
        let (tx, rx) = mpsc::unbounded_channel();
        *queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        enqueue(
            &queue,
            hosts.state().iter().map(|h| ObjectRef::from_obj(&**h)),
        );
        applier(
            reconcile,
            error_policy,
            ctx.clone(),
            hosts.clone(),
            UnboundedReceiverStream::new(rx).map(Ok::<_, Infallible>),
            kube::runtime::Config::default(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!("reconcile: {e}");
            }
        })
    })
    .await;
    Err("leader election stopped".into())
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

/// A Repo or Schedule change, deletions included, reconciles every host: the fleet compiles
/// as a whole, so a fix (or a break) anywhere concerns every host. Unchanged hosts compute
/// the same status from the one cached compile and write nothing.
fn on_fleet_change<K>(
    client: Client,
    writer: reflector::store::Writer<K>,
    hosts: Store<Host>,
    queue: Queue,
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
        drive(stream, |_: &K| {
            enqueue(
                &queue,
                hosts.state().iter().map(|h| ObjectRef::from_obj(&**h)),
            );
        })
        .await;
    });
}

/// Keeps `writer`'s store in step with the API server, calling `changed` for every object
/// added or modified (a deleted Host needs no reconcile); watch errors are logged and retried
/// with backoff.
async fn follow<K>(client: Client, writer: reflector::store::Writer<K>, changed: impl Fn(&K))
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(Api::<K>::all(client), watcher::Config::default())
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

/// `/healthz` always; `/readyz` once every store has listed.
async fn serve_health(listener: tokio::net::TcpListener, ready: Arc<AtomicBool>) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ok")
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "listing repos, hosts and schedules",
                    )
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("health endpoints failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

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
