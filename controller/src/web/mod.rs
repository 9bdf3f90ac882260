//! The read-only HTTP surfaces: the status page, the JSON API, metrics and health. Nothing here
//! changes state; the agent endpoints live in the hub.

pub mod kubeapi;
pub mod page;
pub mod view;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::Utc;
use futures_util::Stream;
use kube::Resource;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::compile::HostKey;
use crate::resources::{Backup, BackupSpec, BackupStatus, Kind, RunStatus};
use crate::runs::is_final;
use crate::server::metrics::Format;
use crate::server::{Controller, ReadModel, RunEvent};
use view::{FleetQuery, FleetView, HostView, RepoSeries, RunView};

type Shared = State<Arc<Controller>>;

const TIMELINE_DAYS: i64 = 30;

pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(fleet_page))
        .route("/hosts/{namespace}/{name}", get(host_page))
        .route("/runs/{namespace}/{name}", get(run_page))
        .route("/runs/{namespace}/{name}/events", get(run_events))
        .route("/api/v1/revisions", get(revisions))
        .route("/api/v1/{plural}", get(list))
        .route("/api/v1/{plural}/{namespace}/{name}", get(item))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(controller.clone())
        .merge(kubeapi::router(controller))
}

/// Not ready until the first revision is read, and while the newest one is rejected: the
/// fleet is then served from the previous revision, which is not what the directory says.
async fn readyz(State(c): Shared) -> Response {
    if !c.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "reading the config directory",
        )
            .into_response();
    }
    // The database cannot be written: reports are held, not stored. `/healthz` stays 200,
    // since a restart would not make the disk writable.
    if let Some(failing) = c.store_failing() {
        return (StatusCode::SERVICE_UNAVAILABLE, failing).into_response();
    }
    let model = c.model();
    match &model.revisions.rejected {
        Some(rejected) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the config directory is rejected (revision {}, {} errors); {} stays in force: see /api/v1/revisions",
                rejected.id,
                rejected.errors.len(),
                model
                    .revisions
                    .applied
                    .as_ref()
                    .map_or("no revision".to_string(), |a| format!("revision {}", a.id)),
            ),
        )
            .into_response(),
        None => "ok".into_response(),
    }
}

async fn metrics(State(c): Shared, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    let text = c.metrics.render(&c.model(), &c.fleet(), format);
    ([(header::CONTENT_TYPE, format.content_type())], text).into_response()
}

async fn revisions(State(c): Shared) -> Response {
    Json(c.model().revisions.clone()).into_response()
}

fn not_found(message: String) -> Response {
    kubeapi::not_found(&message, None)
}

fn named<K: Resource>(object: &K, namespace: &str, name: &str) -> bool {
    object.meta().namespace.as_deref() == Some(namespace)
        && object.meta().name.as_deref() == Some(name)
}

/// A list as JSON, or one item of it.
fn select<K: Resource + Serialize>(
    items: &[K],
    kind: Kind,
    wanted: Option<(&str, &str)>,
) -> Response {
    /// Serialised straight to the body, without a JSON value of every object in between.
    #[derive(Serialize)]
    struct List<'a, K> {
        kind: String,
        items: &'a [K],
    }
    match wanted {
        None => Json(List {
            kind: format!("{kind}List"),
            items,
        })
        .into_response(),
        Some((namespace, name)) => match items.iter().find(|o| named(*o, namespace, name)) {
            Some(object) => Json(object).into_response(),
            None => not_found(format!("{kind} {namespace}/{name} not found")),
        },
    }
}

/// Backups or Restores from the store: every one, or one of them.
fn records(c: &Controller, kind: Kind, wanted: Option<(&str, &str)>) -> Response {
    let read = match wanted {
        None => c
            .records_page(kind, None, None, None, &mut |_| true)
            .map(|(items, _)| {
                Json(serde_json::json!({ "kind": format!("{kind}List"), "items": items }))
            }),
        Some((namespace, name)) => match c.record(kind, namespace, name) {
            Ok(Some(object)) => Ok(Json(object)),
            Ok(None) => return not_found(format!("{kind} {namespace}/{name} not found")),
            Err(e) => Err(e),
        },
    };
    match read {
        Ok(json) => json.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn respond(
    c: &Controller,
    model: &ReadModel,
    plural: &str,
    wanted: Option<(&str, &str)>,
) -> Response {
    match plural {
        "repos" => select(&model.repos, Kind::Repo, wanted),
        "hosts" => select(&model.hosts, Kind::Host, wanted),
        "schedules" => select(&model.schedules, Kind::Schedule, wanted),
        "backups" => records(c, Kind::Backup, wanted),
        "restores" => records(c, Kind::Restore, wanted),
        "notifiers" => select(&model.notifiers, Kind::Notifier, wanted),
        other => not_found(format!(
            "no kind `{other}`; use repos, hosts, schedules, backups, restores or notifiers"
        )),
    }
}

/// A kind's objects. Without `limit` and `continue`, every object in the read model's order,
/// as always; with them, a page in (namespace, name) order with `metadata.continue` while more
/// remain, the same pages and tokens as the Kubernetes-compatible list.
async fn list(
    State(c): Shared,
    Path(plural): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let model = c.model();
    let Some(served) = kubeapi::discovery::by_plural(&plural) else {
        return respond(&c, &model, &plural, None);
    };
    let paging = match kubeapi::page::Paging::parse(
        params.get("limit").map(String::as_str),
        params.get("continue").map(String::as_str),
        served.kind,
    ) {
        Ok(p) => p,
        Err(e) => return kubeapi::bad_request(e.to_string()),
    };
    if !paging.pages() {
        return respond(&c, &model, &plural, None);
    }
    let page =
        match kubeapi::page::of_kind(&c, &model, served.kind, &paging, (None, true), |_| true) {
            Ok(page) => page,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
    let resource_version = paging.resource_version(model.resource_version);
    let mut metadata = serde_json::json!({ "resourceVersion": resource_version.to_string() });
    page.annotate(&mut metadata);
    Json(serde_json::json!({
        "kind": format!("{}List", served.kind),
        "metadata": metadata,
        "items": page.items,
    }))
    .into_response()
}

async fn item(
    State(c): Shared,
    Path((plural, namespace, name)): Path<(String, String, String)>,
) -> Response {
    respond(&c, &c.model(), &plural, Some((&namespace, &name)))
}

/// `GET /?page=N&show=failed`. The overview never answers 400: values are read leniently
/// (`FleetQuery`), and a query axum cannot read at all (a key given twice) counts as none.
async fn fleet_page(
    State(c): Shared,
    query: Result<Query<FleetQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let model = c.model();
    let active: Vec<&Backup> = model.active.iter().collect();
    page::fleet(&FleetView {
        now: Utc::now(),
        revisions: &model.revisions,
        hosts: &model.hosts,
        schedules: &model.schedules,
        repos: &model.repos,
        active,
        store_failing: c.store_failing(),
        page: query.page(),
        show: query.show(),
        release: env!("CARGO_PKG_VERSION"),
    })
    .into_response()
}

fn phase(backup: &Backup) -> Option<crate::resources::Phase> {
    backup.status.as_ref().and_then(|s| s.run.phase)
}

async fn host_page(State(c): Shared, Path((namespace, name)): Path<(String, String)>) -> Response {
    let model = c.model();
    let Some(host) = model.hosts.iter().find(|h| named(*h, &namespace, &name)) else {
        return (
            StatusCode::NOT_FOUND,
            page::not_found(&format!("host {namespace}/{name}")),
        )
            .into_response();
    };
    let now = Utc::now();
    let since = now - chrono::Duration::days(TIMELINE_DAYS);
    let key = HostKey::new(&namespace, &name);
    let records: Vec<Backup> = match c.host_backups(&namespace, &name) {
        Ok(objects) => objects
            .into_iter()
            .filter_map(|o| serde_json::from_value(o).ok())
            .collect(),
        Err(e) => {
            tracing::error!("cannot read the runs of {key}: {e}");
            Vec::new()
        }
    };
    // Records are pruned by history limits; the timeline also shows older runs from history.
    let history: Vec<Backup> = match c.history(&key, since) {
        Ok(points) => points
            .into_iter()
            .filter(|p| {
                !records
                    .iter()
                    .any(|r| r.metadata.name.as_ref() == Some(&p.name))
            })
            .map(|p| {
                let mut b = Backup::new(
                    &p.name,
                    BackupSpec {
                        host: p.host,
                        schedule: p.schedule,
                        operation: None,
                        repo: None,
                    },
                );
                b.metadata.namespace = Some(namespace.clone());
                b.status = Some(BackupStatus {
                    run: RunStatus {
                        phase: Some(p.phase),
                        start_time: p.started_at.map(crate::time::k8s),
                        completion_time: Some(crate::time::k8s(p.finished_at)),
                        ..RunStatus::default()
                    },
                    ..BackupStatus::default()
                });
                b
            })
            .collect(),
        Err(e) => {
            tracing::error!("cannot read run history: {e}");
            Vec::new()
        }
    };
    let mut runs: Vec<&Backup> = records.iter().chain(history.iter()).collect();
    runs.sort_by_key(|b| {
        std::cmp::Reverse(
            b.status
                .as_ref()
                .and_then(|s| s.run.start_time.clone().or(s.run.completion_time.clone())),
        )
    });
    let schedules = model
        .schedules
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|s| {
            s.status
                .iter()
                .flat_map(|st| &st.hosts)
                .any(|h| h.host == name)
        })
        .collect();
    let mut repo_names: Vec<String> = runs
        .iter()
        .filter_map(|b| {
            b.metadata
                .labels
                .as_ref()?
                .get("holdfast.dev/repo")
                .cloned()
        })
        .collect();
    repo_names.sort();
    repo_names.dedup();
    let repo_sizes = repo_names
        .into_iter()
        .map(|repo| RepoSeries {
            points: c
                .repo_sizes(&namespace, &repo, since)
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.at, p.total_size))
                .collect(),
            repo,
        })
        .collect();
    page::host(&HostView {
        now,
        host,
        release: env!("CARGO_PKG_VERSION"),
        schedules,
        runs,
        repo_sizes,
    })
    .into_response()
}

async fn run_page(State(c): Shared, Path((namespace, name)): Path<(String, String)>) -> Response {
    let Some(backup) = read_backup(&c, &namespace, &name) else {
        return (
            StatusCode::NOT_FOUND,
            page::not_found(&format!("run {namespace}/{name}")),
        )
            .into_response();
    };
    let log = c.log(Kind::Backup, &namespace, &name).unwrap_or_default();
    page::run(&RunView {
        now: Utc::now(),
        backup: &backup,
        log: &log,
        events_url: format!("/runs/{namespace}/{name}/events"),
    })
    .into_response()
}

/// A Backup from the store; a read that fails is logged and shows as not found.
fn read_backup(c: &Controller, namespace: &str, name: &str) -> Option<Backup> {
    match c.record(Kind::Backup, namespace, name) {
        Ok(found) => found.and_then(|o| serde_json::from_value(o).ok()),
        Err(e) => {
            tracing::error!("cannot read Backup {namespace}/{name}: {e}");
            None
        }
    }
}

/// What a run's event stream has sent and has yet to send.
struct Follow {
    controller: Arc<Controller>,
    namespace: String,
    name: String,
    events: broadcast::Receiver<RunEvent>,
    sent_version: Option<String>,
    lines: VecDeque<String>,
    done: bool,
}

/// Server-sent events for one run: `status` (its status as JSON) whenever it changes, `log`
/// for every new line; the stream ends once the run has finished.
async fn run_events(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let follow = Follow {
        events: c.subscribe_runs(),
        controller: c,
        namespace,
        name,
        sent_version: None,
        lines: VecDeque::new(),
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(line) = f.lines.pop_front() {
                return Some((Ok(Event::default().event("log").data(line)), f));
            }
            if f.done {
                return None;
            }
            if let Some(b) = read_backup(&f.controller, &f.namespace, &f.name)
                && b.metadata.resource_version != f.sent_version
            {
                f.sent_version = b.metadata.resource_version.clone();
                f.done = phase(&b).is_some_and(is_final);
                let data = serde_json::to_string(&b.status).unwrap_or_default();
                return Some((Ok(Event::default().event("status").data(data)), f));
            }
            tokio::select! {
                event = f.events.recv() => match event {
                    Ok(RunEvent::Log { namespace, name, lines })
                        if namespace == f.namespace && name == f.name => f.lines.extend(lines),
                    Err(broadcast::error::RecvError::Closed) => return None,
                    _ => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Why the server stopped or never started.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load TLS certificate {} and key {}: {source}", cert.display(), key.display())]
    LoadTls {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    HttpFailed(#[source] std::io::Error),
    #[error("server failed on {address}: {source}")]
    HttpsFailed {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Serves the page, the APIs and the agent endpoints until the server fails.
pub async fn serve(controller: Arc<Controller>) -> Result<(), ServeError> {
    let config = controller.config.clone();
    let app = router(controller.clone()).merge(crate::server::agent_router(controller.clone()));
    let app = app.into_make_service();
    match &config.tls {
        None => {
            let listener =
                tokio::net::TcpListener::bind(config.listen)
                    .await
                    .map_err(|source| ServeError::Listen {
                        address: config.listen,
                        source,
                    })?;
            tracing::info!("serving on http://{}", config.listen);
            axum::serve(listener, app)
                .await
                .map_err(ServeError::HttpFailed)
        }
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::LoadTls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            tracing::info!("serving on https://{}", config.listen);
            axum_server::bind_rustls(config.listen, tls)
                .serve(app)
                .await
                .map_err(|source| ServeError::HttpsFailed {
                    address: config.listen,
                    source,
                })
        }
    }
}
