//! A read-only Kubernetes API for files mode, so that an unmodified `kubectl` can
//! `get`, `describe` and `watch` Holdfast's resources from the read model the page shows.
//!
//! Discovery, lists and items (raw, or as a Table when the `Accept` header asks for one), label
//! and field selectors, watches from a resourceVersion, and `Status` errors. Every write is
//! refused with 405: in files mode the YAML in the config directory is the only way in.

pub mod discovery;
pub mod events;
pub mod gnostic;
pub mod openapi;
pub mod page;
pub mod selector;
pub mod table;

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, StatusDetails};
use kube::core::Selector;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::Kind;
use crate::server::Controller;
use crate::server::changes::{Change, ChangeType};
use discovery::{GROUP, GROUP_VERSION, Served};
use table::Include;

type Shared = State<Arc<Controller>>;
type Params = Query<BTreeMap<String, String>>;

const READ_ONLY: &str =
    "the Holdfast API is read-only in files mode: change the YAML in the config directory instead";

pub fn router(controller: Arc<Controller>) -> Router {
    let v = "/apis/holdfast.dev/v1alpha1";
    Router::new()
        .route(
            "/version",
            read(|| async { json_response(&discovery::version()) }),
        )
        .route(
            "/api",
            read(|| async { json_response(&discovery::api_versions()) }),
        )
        .route(
            "/api/v1",
            read(|| async { json_response(&events::core_resource_list()) }),
        )
        .route(
            "/api/v1/events",
            read(|s, q, h| events::events_in_all_namespaces(events::EventApi::Core, s, q, h)),
        )
        .route(
            "/api/v1/namespaces/{namespace}/events",
            read(|s, p, q, h| events::events_in_namespace(events::EventApi::Core, s, p, q, h)),
        )
        .route(
            "/api/v1/namespaces/{namespace}/events/{name}",
            read(|s, p| events::event_item(events::EventApi::Core, s, p)),
        )
        .route(
            "/apis/events.k8s.io",
            read(|| async { json_response(&events::events_group()) }),
        )
        .route(
            "/apis/events.k8s.io/v1",
            read(|| async { json_response(&events::events_resource_list()) }),
        )
        .route(
            "/apis/events.k8s.io/v1/events",
            read(|s, q, h| events::events_in_all_namespaces(events::EventApi::Events, s, q, h)),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events",
            read(|s, p, q, h| events::events_in_namespace(events::EventApi::Events, s, p, q, h)),
        )
        .route(
            "/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}",
            read(|s, p| events::event_item(events::EventApi::Events, s, p)),
        )
        .route(
            "/apis",
            read(|| async { json_response(&discovery::group_list()) }),
        )
        .route(
            "/apis/holdfast.dev",
            read(|| async { json_response(&discovery::group()) }),
        )
        .route(
            v,
            read(|| async { json_response(&discovery::resource_list()) }),
        )
        .route(&format!("{v}/{{plural}}"), read(all_namespaces))
        .route(
            &format!("{v}/namespaces/{{namespace}}/{{plural}}"),
            read(namespaced),
        )
        .route(
            &format!("{v}/namespaces/{{namespace}}/{{plural}}/{{name}}"),
            read(item),
        )
        .route(
            &format!("{v}/namespaces/{{namespace}}/{{plural}}/{{name}}/status"),
            read(item),
        )
        .route("/openapi/v2", read(openapi_v2))
        .route(
            "/openapi/v3",
            read(|| async {
                bytes_response(
                    "application/json",
                    &openapi::openapi_documents().v3_discovery,
                )
            }),
        )
        .route("/openapi/v3/{*path}", read(openapi_v3))
        .route(
            "/apis/{*rest}",
            read(|| async { not_found("the server could not find the requested resource", None) }),
        )
        .with_state(controller)
}

/// GET (and HEAD) serve; every other method is told the API is read-only.
fn read<H, T>(handler: H) -> MethodRouter<Arc<Controller>>
where
    H: axum::handler::Handler<T, Arc<Controller>>,
    T: 'static,
{
    get(handler).fallback(|| async {
        failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            READ_ONLY.into(),
            None,
        )
    })
}

/// JSON with the content type exactly `application/json`: some `kubectl` releases refuse a
/// discovery document with a charset.
fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("cannot encode the response: {e}"),
            None,
        ),
    }
}

fn bytes_response(content_type: &'static str, body: &'static [u8]) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// `GET /openapi/v2`: protocol buffers when asked for them (client-go always does), else JSON.
async fn openapi_v2(headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let documents = openapi::openapi_documents();
    if accept.contains(gnostic::MEDIA_TYPE) || accept.contains(gnostic::CONTENT_TYPE) {
        bytes_response(gnostic::CONTENT_TYPE, &documents.v2_protobuf)
    } else {
        bytes_response("application/json", &documents.v2)
    }
}

/// `GET /openapi/v3/apis/holdfast.dev/v1alpha1` (whatever its `hash`): the group's document.
async fn openapi_v3(Path(path): Path<String>) -> Response {
    match path == openapi::V3_GROUP_PATH {
        true => bytes_response("application/json", &openapi::openapi_documents().v3_group),
        false => not_found(&format!("no OpenAPI v3 document for {path}"), None),
    }
}

/// A `Status` object, the API server's form for every error.
pub fn failure(
    code: StatusCode,
    reason: &str,
    message: String,
    details: Option<StatusDetails>,
) -> Response {
    let status = k8s_openapi::apimachinery::pkg::apis::meta::v1::Status {
        code: Some(i32::from(code.as_u16())),
        details,
        message: Some(message),
        metadata: ListMeta::default(),
        reason: Some(reason.into()),
        status: Some("Failure".into()),
    };
    let mut response = json_response(&status);
    *response.status_mut() = code;
    response
}

pub fn not_found(message: &str, details: Option<StatusDetails>) -> Response {
    failure(StatusCode::NOT_FOUND, "NotFound", message.into(), details)
}

pub fn bad_request(message: String) -> Response {
    failure(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// Why a list, get or watch request's parameters cannot be read.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("includeObject must be None, Metadata or Object, not {0:?}")]
    IncludeObject(String),
    #[error("invalid resourceVersion {0:?}: expected a number")]
    ResourceVersion(String),
    #[error("invalid timeoutSeconds {0:?}: expected a number")]
    TimeoutSeconds(String),
    #[error(transparent)]
    Selector(#[from] selector::SelectorError),
}

/// What a list, get or watch request asks for.
struct Request {
    namespace: Option<String>,
    labels: Selector,
    fields: selector::Fields,
    /// `Some(api version of Table)` when the `Accept` header asks for a Table.
    table: Option<&'static str>,
    include: Include,
    watch: bool,
    resource_version: Option<i64>,
    timeout: Option<std::time::Duration>,
}

impl Request {
    /// `fields`: the fields the kind may be selected by.
    fn parse(
        namespace: Option<String>,
        params: &BTreeMap<String, String>,
        headers: &HeaderMap,
        fields: &[&str],
    ) -> Result<Request, RequestError> {
        let param = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
        let include = match param("includeObject") {
            "" => Include::default(),
            text => {
                Include::parse(text).ok_or_else(|| RequestError::IncludeObject(text.to_string()))?
            }
        };
        let resource_version = match param("resourceVersion") {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .map_err(|_| RequestError::ResourceVersion(text.to_string()))?,
            ),
        };
        // 0 means no timeout, as for the API server (whose own limit is 30 to 60 minutes).
        let timeout = match param("timeoutSeconds") {
            "" | "0" => None,
            text => Some(std::time::Duration::from_secs(
                text.parse()
                    .map_err(|_| RequestError::TimeoutSeconds(text.to_string()))?,
            )),
        };
        let mut labels = selector::labels(param("labelSelector"))?;
        let mut fields = selector::fields(param("fieldSelector"), fields)?;
        labels.extend(fields.take_labelled(crate::snapshots::label_of_field));
        Ok(Request {
            namespace,
            labels,
            fields,
            table: table_version(headers),
            include,
            watch: matches!(param("watch"), "true" | "1"),
            resource_version,
            timeout,
        })
    }

    /// Whether `object` is in what was asked for.
    fn selects(&self, object: &Value) -> bool {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let labels: Option<BTreeMap<String, String>> =
            serde_json::from_value(object["metadata"]["labels"].clone()).ok();
        self.selects_key(namespace, name, labels.as_ref())
    }

    /// [`Request::selects`] on an object's metadata, before it is serialized.
    fn selects_meta(&self, meta: &ObjectMeta) -> bool {
        self.selects_key(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
            meta.labels.as_ref(),
        )
    }

    fn selects_key(
        &self,
        namespace: &str,
        name: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
            && self.fields.matches(namespace, name)
            && selector::matches(&self.labels, labels)
    }
}

/// The Table version an `Accept` header asks for, in its own order of preference:
/// `application/json;as=Table;v=v1;g=meta.k8s.io, …, application/json`.
fn table_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        if !matches!(parts.next(), Some("application/json" | "*/*")) {
            continue;
        }
        let params: BTreeMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        match (params.get("as"), params.get("g"), params.get("v")) {
            (None, _, _) => return None,
            (Some(&"Table"), Some(&"meta.k8s.io"), Some(&"v1")) => return Some("meta.k8s.io/v1"),
            (Some(&"Table"), Some(&"meta.k8s.io"), Some(&"v1beta1")) => {
                return Some("meta.k8s.io/v1beta1");
            }
            _ => {}
        }
    }
    None
}

fn unknown_kind(plural: &str) -> Response {
    not_found(
        &format!("the server doesn't have a resource type \"{plural}\""),
        Some(StatusDetails {
            group: Some(GROUP.into()),
            kind: Some(plural.into()),
            ..StatusDetails::default()
        }),
    )
}

async fn all_namespaces(
    State(c): Shared,
    Path(plural): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    collection(c, None, &plural, &params, &headers)
}

async fn namespaced(
    State(c): Shared,
    Path((namespace, plural)): Path<(String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    collection(c, Some(namespace), &plural, &params, &headers)
}

fn collection(
    c: Arc<Controller>,
    namespace: Option<String>,
    plural: &str,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let Some(served) = discovery::by_plural(plural) else {
        return unknown_kind(plural);
    };
    let fields: Vec<&str> = served.fields.iter().map(String::as_str).collect();
    let request = match Request::parse(namespace, params, headers, &fields) {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()),
    };
    if request.watch {
        return watch(&c, served, request);
    }
    let paging = match page::Paging::parse(
        params.get("limit").map(String::as_str),
        params.get("continue").map(String::as_str),
        served.kind,
    ) {
        Ok(p) => p,
        Err(e) => return bad_request(e.to_string()),
    };
    let model = c.model();
    // Filter, then page: `limit` counts the objects the selectors keep.
    let scope = (
        request.namespace.as_deref(),
        request.labels.selects_all() && request.fields.is_empty(),
    );
    let selects = |m: &ObjectMeta| request.selects_meta(m);
    let mut page = match page::of_kind(&c, &model, served.kind, &paging, scope, selects) {
        Ok(page) => page,
        Err(e) => return internal_error(&e),
    };
    let resource_version = paging.resource_version(model.resource_version);
    let mut list = match request.table {
        Some(api_version) => table::table(
            api_version,
            &served.columns,
            &page.items.iter().collect::<Vec<_>>(),
            request.include,
            Some(resource_version),
            Utc::now(),
        ),
        None => json!({
            "apiVersion": GROUP_VERSION,
            "kind": format!("{}List", served.kind),
            "metadata": { "resourceVersion": resource_version.to_string() },
            "items": std::mem::take(&mut page.items),
        }),
    };
    page.annotate(&mut list["metadata"]);
    json_response(&list)
}

async fn item(
    State(c): Shared,
    Path((namespace, plural, name)): Path<(String, String, String)>,
    Query(params): Params,
    headers: HeaderMap,
) -> Response {
    let Some(served) = discovery::by_plural(&plural) else {
        return unknown_kind(&plural);
    };
    let request = match Request::parse(
        Some(namespace.clone()),
        &params,
        &headers,
        selector::NAME_AND_NAMESPACE,
    ) {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()),
    };
    let model = c.model();
    // Only the object asked for is serialized.
    let found = match served.kind {
        Kind::Backup | Kind::Restore | Kind::Snapshot => {
            match c.record(served.kind, &namespace, &name) {
                Ok(found) => found,
                Err(e) => return internal_error(&e),
            }
        }
        kind => page::page_of_model(&model, kind, &page::Paging::default(), |m| {
            m.namespace.as_deref() == Some(namespace.as_str()) && m.name.as_deref() == Some(&name)
        })
        .items
        .into_iter()
        .next(),
    };
    let Some(object) = found else {
        return not_found(
            &format!("{plural}.{GROUP} \"{name}\" not found"),
            Some(StatusDetails {
                name: Some(name),
                group: Some(GROUP.into()),
                kind: Some(plural),
                ..StatusDetails::default()
            }),
        );
    };
    match request.table {
        Some(api_version) => {
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok());
            json_response(&table::table(
                api_version,
                &served.columns,
                &[&object],
                request.include,
                rv,
                Utc::now(),
            ))
        }
        None => json_response(&object),
    }
}

/// 500 with what the store said: a read the client can retry.
fn internal_error(e: &crate::store::StoreError) -> Response {
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        e.to_string(),
        None,
    )
}

/// A watch: `{"type": …, "object": …}` lines, held open until the client leaves (or
/// `timeoutSeconds`). Without a resourceVersion (or with 0) it starts with an ADDED event for
/// every object there is, as the API server does; from a resourceVersion, with the changes
/// after it, or 410 Expired when it is older than the controller remembers.
fn watch(c: &Controller, served: &'static Served, request: Request) -> Response {
    let model = c.model();
    let from = match request.resource_version {
        None | Some(0) => model.resource_version,
        Some(rv) => rv,
    };
    // Newer than anything written: the client saw another store (a restored or reset data
    // directory). Like a version too old, it has to list again.
    if from > model.resource_version {
        return failure(
            StatusCode::GONE,
            "Expired",
            format!(
                "too large resource version: {from}, current: {}",
                model.resource_version
            ),
            None,
        );
    }
    let Some((past, receiver)) = c.changes.since(from) else {
        return failure(
            StatusCode::GONE,
            "Expired",
            format!("too old resource version: {from}"),
            None,
        );
    };
    let mut watching = Watching {
        served,
        request,
        receiver,
        after: from,
        lines: VecDeque::new(),
        done: false,
        _open: Open::count(&c.metrics.watches),
    };
    if matches!(watching.request.resource_version, None | Some(0)) {
        let objects = match served.kind {
            Kind::Backup | Kind::Restore | Kind::Snapshot => {
                let selects = &mut |o: &Value| watching.request.selects(o);
                let namespace = watching.request.namespace.clone();
                match c.records_page(served.kind, namespace.as_deref(), None, None, selects) {
                    Ok((objects, _)) => objects,
                    Err(e) => return internal_error(&e),
                }
            }
            kind => model.objects_json(kind),
        };
        for object in objects {
            if watching.request.selects(&object) {
                watching.add(ChangeType::Added, &object);
            }
        }
    }
    for change in past {
        watching.take(&change);
    }
    // A timeout too large for the clock is no timeout.
    let deadline = watching
        .request
        .timeout
        .and_then(|t| tokio::time::Instant::now().checked_add(t));
    let stream = futures_util::stream::unfold(watching, move |mut w| async move {
        loop {
            if let Some(line) = w.lines.pop_front() {
                return Some((Ok::<Bytes, Infallible>(line), w));
            }
            if w.done {
                return None;
            }
            let next = match deadline {
                Some(at) => tokio::time::timeout_at(at, w.receiver.recv()).await.ok()?,
                None => w.receiver.recv().await,
            };
            match next {
                Ok(change) => w.take(&change),
                // The watch fell too far behind: the client has to list again.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    w.expired();
                    w.done = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One watch's state: what it selects and the lines not yet sent.
struct Watching {
    served: &'static Served,
    request: Request,
    receiver: broadcast::Receiver<Arc<Change>>,
    /// Changes up to this resourceVersion were sent (or are in the initial state).
    after: i64,
    lines: VecDeque<Bytes>,
    done: bool,
    _open: Open,
}

/// Counts a watch in `holdfast_api_watches` for as long as its stream lives.
struct Open(prometheus_client::metrics::gauge::Gauge);

impl Open {
    fn count(gauge: &prometheus_client::metrics::gauge::Gauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Watching {
    fn take(&mut self, change: &Change) {
        if change.resource_version <= self.after || change.kind != self.served.kind {
            return;
        }
        self.after = change.resource_version;
        // As the API server does for a watch with selectors: an object that starts matching
        // is ADDED for this client, one that stops matching is DELETED.
        // Without a record of before (the first write after a restart), an object that existed
        // is taken to have had the labels it has.
        let before = match (&change.before, change.change) {
            (Some(before), _) => Some(before),
            (None, ChangeType::Added) => None,
            (None, _) => Some(&change.metadata),
        };
        let was = before.is_some_and(|b| self.request.selects(b));
        let is = change.change != ChangeType::Deleted && self.request.selects(&change.metadata);
        let event = match (was, is) {
            (false, true) => ChangeType::Added,
            (true, true) => ChangeType::Modified,
            (true, false) => ChangeType::Deleted,
            (false, false) => return,
        };
        self.add(event, &change.object());
    }

    fn add(&mut self, change: ChangeType, object: &Value) {
        let object = match self.request.table {
            Some(api_version) => table::table(
                api_version,
                &self.served.columns,
                &[object],
                self.request.include,
                object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse().ok()),
                Utc::now(),
            ),
            None => object.clone(),
        };
        self.line(&json!({ "type": change, "object": object }));
    }

    fn expired(&mut self) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "reason": "Expired", "code": 410,
            "message": "the watch fell behind the changes; list again",
        });
        self.line(&json!({ "type": "ERROR", "object": status }));
    }

    fn line(&mut self, event: &Value) {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        self.lines.push_back(Bytes::from(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("a header"),
        );
        h
    }

    #[test]
    fn the_accept_header_decides_table_or_object() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(table_version(&accept(kubectl)), Some("meta.k8s.io/v1"));
        assert_eq!(
            table_version(&accept("application/json;as=Table;v=v1beta1;g=meta.k8s.io")),
            Some("meta.k8s.io/v1beta1")
        );
        assert_eq!(table_version(&accept("application/json")), None);
        assert_eq!(
            table_version(&accept(
                "application/json, application/json;as=Table;v=v1;g=meta.k8s.io"
            )),
            None,
            "the client's first choice wins"
        );
        assert_eq!(
            table_version(&accept(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
            )),
            None
        );
        assert_eq!(table_version(&HeaderMap::new()), None);
    }

    #[test]
    fn a_request_selects_by_namespace_labels_and_name() {
        let params: BTreeMap<String, String> = [
            ("labelSelector", "holdfast.dev/host=web-1"),
            ("fieldSelector", "metadata.name!=old"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = Request::parse(
            Some("default".into()),
            &params,
            &HeaderMap::new(),
            selector::NAME_AND_NAMESPACE,
        )
        .expect("parses");
        let object = |ns: &str, name: &str, host: &str| json!({"metadata": {"namespace": ns, "name": name, "labels": {"holdfast.dev/host": host}}});
        assert!(r.selects(&object("default", "new", "web-1")));
        assert!(!r.selects(&object("default", "old", "web-1")));
        assert!(!r.selects(&object("default", "new", "web-2")));
        assert!(!r.selects(&object("prod", "new", "web-1")));
    }

    #[test]
    fn snapshots_are_selected_by_their_selectable_fields_and_backups_are_not() {
        let served = discovery::of(Kind::Snapshot);
        assert_eq!(
            served.fields,
            [
                "metadata.name",
                "metadata.namespace",
                "spec.host",
                "spec.repo",
                "spec.schedule"
            ]
        );
        let fields: Vec<&str> = served.fields.iter().map(String::as_str).collect();
        let params = BTreeMap::from([(
            "fieldSelector".to_string(),
            "spec.host=web-1,spec.schedule!=hourly".to_string(),
        )]);
        let r = Request::parse(None, &params, &HeaderMap::new(), &fields).expect("parses");
        let object = |host: &str, schedule: Option<&str>| {
            let mut labels = json!({"holdfast.dev/host": host});
            if let Some(s) = schedule {
                labels["holdfast.dev/schedule"] = json!(s);
            }
            json!({"metadata": {"namespace": "default", "name": "x", "labels": labels}})
        };
        assert!(r.selects(&object("web-1", Some("nightly"))));
        assert!(
            r.selects(&object("web-1", None)),
            "no schedule is not `hourly`"
        );
        assert!(!r.selects(&object("web-1", Some("hourly"))));
        assert!(!r.selects(&object("web-2", Some("nightly"))));

        let backups: Vec<&str> = discovery::of(Kind::Backup)
            .fields
            .iter()
            .map(String::as_str)
            .collect();
        let params = BTreeMap::from([("fieldSelector".to_string(), "spec.host=web-1".to_string())]);
        assert!(Request::parse(None, &params, &HeaderMap::new(), &backups).is_err());
    }

    #[test]
    fn bad_parameters_are_refused_with_the_reason() {
        for (k, v, says) in [
            ("resourceVersion", "abc", "invalid resourceVersion"),
            ("includeObject", "Everything", "includeObject"),
            ("labelSelector", "a in b", "in (...)"),
            ("fieldSelector", "spec.host=x", "spec.host"),
            ("timeoutSeconds", "-1", "invalid timeoutSeconds"),
        ] {
            let params = BTreeMap::from([(k.to_string(), v.to_string())]);
            let e = Request::parse(
                None,
                &params,
                &HeaderMap::new(),
                selector::NAME_AND_NAMESPACE,
            )
            .err()
            .unwrap_or_else(|| panic!("{k}={v} was accepted"))
            .to_string();
            assert!(e.contains(says), "{k}={v}: {e}");
        }
    }
}
