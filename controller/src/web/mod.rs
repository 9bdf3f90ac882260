//! The read-only HTTP surfaces: the status page (`pages`, `page`, live through `live`), the
//! JSON API, metrics and health. Nothing here changes state; the agent endpoints live in the
//! hub.

pub mod kubeapi;
mod live;
pub mod page;
mod pages;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::{Extension, Router};
use kube::Resource;
use serde::Serialize;

use crate::resources::Kind;
use crate::server::metrics::Format;
use crate::server::{Controller, ReadModel};

type Shared = State<Arc<Controller>>;

pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(pages::fleet_page))
        .route("/events", get(live::fleet_events))
        .route("/fragments/{part}", get(pages::fragment))
        .route("/hosts/{namespace}/{name}", get(pages::host_page))
        .route("/hosts/{namespace}/{name}/row", get(pages::host_row))
        .route("/hosts/{namespace}/{name}/events", get(live::host_events))
        .route("/runs/{namespace}/{name}", get(pages::run_page))
        .route("/runs/{namespace}/{name}/events", get(live::run_events))
        .route("/schedules/{namespace}/{name}", get(pages::schedule_page))
        .route("/repos/{namespace}/{name}", get(pages::repo_page))
        .route("/revisions", get(pages::revisions_page))
        .route("/api/v1/revisions", get(revisions))
        .route("/api/v1/{plural}", get(list))
        .route("/api/v1/{plural}/{namespace}/{name}", get(item))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(Extension(Arc::new(pages::TallyCache::default())))
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
    items: &[Arc<K>],
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
        Some((namespace, name)) => {
            match items.iter().find(|o| named(o.as_ref(), namespace, name)) {
                Some(object) => Json(object).into_response(),
                None => not_found(format!("{kind} {namespace}/{name} not found")),
            }
        }
    }
}

/// Backups, Restores or Snapshots from the store: every one, or one of them.
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
        "snapshots" => records(c, Kind::Snapshot, wanted),
        other => not_found(format!(
            "no kind `{other}`; use repos, hosts, schedules, backups, restores, notifiers or snapshots"
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
