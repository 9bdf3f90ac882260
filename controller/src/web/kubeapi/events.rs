//! Kubernetes Events in files mode, from the controller's event log: `core/v1` (what
//! `kubectl describe`, `kubectl events` and `kubectl get events` read) and `events.k8s.io/v1`,
//! listed in pages, read one by one, and watched from a resourceVersion, with the field
//! selectors the API server supports for Events (`describe` selects on `involvedObject.*`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::EventSource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIResource, APIResourceList, GroupVersionForDiscovery, MicroTime, ObjectMeta,
    StatusDetails,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::table::{self, Column};
use super::{Open, Request, failure, json_response, not_found};
use crate::server::Controller;
use crate::server::events::{EventLog, RecordedEvent};

/// The group of the newer Events API.
pub const EVENTS_GROUP: &str = "events.k8s.io";
pub const EVENTS_GROUP_VERSION: &str = "events.k8s.io/v1";
/// Who records them, as `source.component` and `reportingController`.
const COMPONENT: &str = "holdfast";

/// The fields the API server lets Events be selected by, in both APIs.
const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "reason",
    "reportingComponent",
    "reportingController",
    "source",
    "type",
];

/// Which of the two Event APIs a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventApi {
    Core,
    Events,
}

impl EventApi {
    fn api_version(self) -> &'static str {
        match self {
            EventApi::Core => "v1",
            EventApi::Events => EVENTS_GROUP_VERSION,
        }
    }

    /// One Event as this API serves it.
    pub fn event_object(self, e: &RecordedEvent) -> Value {
        let metadata = ObjectMeta {
            name: Some(e.name.clone()),
            namespace: Some(e.namespace.clone()),
            uid: Some(e.uid.clone()),
            resource_version: Some(e.resource_version.to_string()),
            creation_timestamp: Some(crate::time::k8s(e.first)),
            ..ObjectMeta::default()
        };
        let type_ = Some(if e.warning { "Warning" } else { "Normal" }.to_string());
        let source = Some(EventSource {
            component: Some(COMPONENT.into()),
            host: None,
        });
        let micro = |t: DateTime<Utc>| MicroTime(crate::time::k8s(t).0);
        let value = match self {
            EventApi::Core => serde_json::to_value(k8s_openapi::api::core::v1::Event {
                metadata,
                involved_object: e.regarding.clone(),
                reason: Some(e.reason.clone()),
                message: Some(e.note.clone()),
                type_,
                count: Some(i32::try_from(e.count).unwrap_or(i32::MAX)),
                first_timestamp: Some(crate::time::k8s(e.first)),
                last_timestamp: Some(crate::time::k8s(e.last)),
                source,
                reporting_component: Some(COMPONENT.into()),
                action: Some("Reconcile".into()),
                ..Default::default()
            }),
            EventApi::Events => serde_json::to_value(k8s_openapi::api::events::v1::Event {
                metadata,
                event_time: Some(micro(e.first)),
                regarding: Some(e.regarding.clone()),
                reason: Some(e.reason.clone()),
                note: Some(e.note.clone()),
                type_,
                reporting_controller: Some(COMPONENT.into()),
                action: Some("Reconcile".into()),
                deprecated_count: Some(i32::try_from(e.count).unwrap_or(i32::MAX)),
                deprecated_first_timestamp: Some(crate::time::k8s(e.first)),
                deprecated_last_timestamp: Some(crate::time::k8s(e.last)),
                deprecated_source: source,
                series: (e.count > 1).then(|| k8s_openapi::api::events::v1::EventSeries {
                    count: i32::try_from(e.count).unwrap_or(i32::MAX),
                    last_observed_time: micro(e.last),
                }),
                ..Default::default()
            }),
        };
        // Serializing these types cannot fail.
        value.unwrap_or_default()
    }
}

/// What a field selector reads of an Event.
fn field(e: &RecordedEvent, name: &str) -> String {
    let r = &e.regarding;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match name {
        "metadata.name" => e.name.clone(),
        "metadata.namespace" => e.namespace.clone(),
        "involvedObject.kind" | "regarding.kind" => text(&r.kind),
        "involvedObject.namespace" | "regarding.namespace" => text(&r.namespace),
        "involvedObject.name" | "regarding.name" => text(&r.name),
        "involvedObject.uid" | "regarding.uid" => text(&r.uid),
        "involvedObject.apiVersion" | "regarding.apiVersion" => text(&r.api_version),
        "involvedObject.resourceVersion" => text(&r.resource_version),
        "involvedObject.fieldPath" => text(&r.field_path),
        "reason" => e.reason.clone(),
        "reportingComponent" | "reportingController" | "source" => COMPONENT.into(),
        "type" => if e.warning { "Warning" } else { "Normal" }.into(),
        _ => String::new(),
    }
}

/// Whether `request` asks for `e`. Events carry no labels: a label selector keeps them only
/// when it selects an object without labels.
fn selects(request: &Request, e: &RecordedEvent) -> bool {
    request
        .namespace
        .as_deref()
        .is_none_or(|ns| ns == e.namespace)
        && request.fields.matches_with(|f| field(e, f))
        && super::selector::matches(&request.labels, None)
}

/// `GET /api/v1`: the core group holds only Events here.
pub fn core_resource_list() -> APIResourceList {
    APIResourceList {
        group_version: "v1".into(),
        resources: vec![resource(&["ev"])],
    }
}

/// `GET /apis/events.k8s.io`.
pub fn events_group() -> APIGroup {
    let version = GroupVersionForDiscovery {
        group_version: EVENTS_GROUP_VERSION.into(),
        version: "v1".into(),
    };
    APIGroup {
        name: EVENTS_GROUP.into(),
        preferred_version: Some(version.clone()),
        server_address_by_client_cidrs: None,
        versions: vec![version],
    }
}

/// `GET /apis/events.k8s.io/v1`.
pub fn events_resource_list() -> APIResourceList {
    APIResourceList {
        group_version: EVENTS_GROUP_VERSION.into(),
        resources: vec![resource(&[])],
    }
}

fn resource(short_names: &[&str]) -> APIResource {
    APIResource {
        name: "events".into(),
        singular_name: "event".into(),
        namespaced: true,
        kind: "Event".into(),
        verbs: ["get", "list", "watch"].map(String::from).to_vec(),
        short_names: Some(short_names.iter().map(|s| s.to_string()).collect()),
        categories: None,
        group: None,
        version: None,
        storage_version_hash: None,
    }
}

/// The API server's columns for Events; the priority-1 ones are for `-o wide`.
fn columns() -> Vec<Column> {
    vec![
        Column::computed(
            "Last Seen",
            "string",
            0,
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        Column::computed("Type", "string", 0, "Type of this event (Normal, Warning)."),
        Column::computed(
            "Reason",
            "string",
            0,
            "A short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        Column::computed(
            "Object",
            "string",
            0,
            "The object that this event is about.",
        ),
        Column::computed(
            "Subobject",
            "string",
            1,
            "The part of the object this event is about.",
        ),
        Column::computed("Source", "string", 1, "The component reporting this event."),
        Column::computed(
            "Message",
            "string",
            0,
            "A human-readable description of the status of this operation.",
        ),
        Column::computed(
            "First Seen",
            "string",
            1,
            "The time at which the event was first recorded.",
        ),
        Column::computed(
            "Count",
            "integer",
            1,
            "The number of times this event has occurred.",
        ),
        Column::computed("Name", "string", 1, "The event's name."),
    ]
}

/// The cells of one Event, as the API server's event printer makes them.
fn cells(e: &RecordedEvent, now: DateTime<Utc>) -> Vec<Value> {
    let r = &e.regarding;
    let kind = r.kind.as_deref().unwrap_or_default().to_lowercase();
    let object = match r.name.as_deref() {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    vec![
        table::age(now - e.last).into(),
        if e.warning { "Warning" } else { "Normal" }.into(),
        e.reason.clone().into(),
        object.into(),
        r.field_path.clone().unwrap_or_default().into(),
        COMPONENT.into(),
        e.note.trim().into(),
        table::age(now - e.first).into(),
        e.count.into(),
        e.name.clone().into(),
    ]
}

/// Where a page of Events ends: the first page's resourceVersion and the last key served.
#[derive(Serialize, Deserialize)]
struct Continue {
    rv: i64,
    namespace: String,
    name: String,
}

fn continue_token(c: &Continue) -> String {
    hex::encode(serde_json::to_vec(c).unwrap_or_default())
}

fn parse_continue(text: &str) -> Option<Continue> {
    serde_json::from_slice(&hex::decode(text).ok()?).ok()
}

/// Kubernetes mode: the controller holds no Events.
fn on_the_api_server() -> Response {
    not_found(
        "Events are on the API server in Kubernetes mode: ask it (kubectl get events)",
        None,
    )
}

pub async fn events_in_all_namespaces(
    api: EventApi,
    State(c): State<Arc<Controller>>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    collection(api, &c, None, &params, &headers)
}

pub async fn events_in_namespace(
    api: EventApi,
    State(c): State<Arc<Controller>>,
    Path(namespace): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    collection(api, &c, Some(namespace), &params, &headers)
}

fn collection(
    api: EventApi,
    c: &Controller,
    namespace: Option<String>,
    params: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    let Some(log) = c.backend.events() else {
        return on_the_api_server();
    };
    let request = match Request::parse(namespace, params, headers, FIELDS) {
        Ok(r) => r,
        Err(e) => return super::bad_request(e.to_string()),
    };
    if request.watch {
        return watch(api, c, log, request);
    }
    let limit = match params.get("limit").map(String::as_str).unwrap_or_default() {
        "" => None,
        text => match text.parse::<i64>() {
            Ok(n) => usize::try_from(n).ok().filter(|&n| n > 0),
            Err(_) => {
                return super::bad_request(format!(
                    "invalid limit {text:?}: expected a whole number"
                ));
            }
        },
    };
    let after = match params
        .get("continue")
        .map(String::as_str)
        .unwrap_or_default()
    {
        "" => None,
        text => match parse_continue(text) {
            Some(c) => Some(c),
            None => {
                return super::bad_request(
                    "continue key is not valid: not a token; list again without continue".into(),
                );
            }
        },
    };
    let now = Utc::now();
    let (events, current) = log.list(now);
    let mut selected: Vec<&RecordedEvent> = events
        .iter()
        .map(|e| &**e)
        .filter(|e| selects(&request, e))
        .filter(|e| {
            after.as_ref().is_none_or(|a| {
                (e.namespace.as_str(), e.name.as_str()) > (a.namespace.as_str(), a.name.as_str())
            })
        })
        .collect();
    selected.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let resource_version = after.as_ref().map_or(current, |a| a.rv);
    let remaining = limit.map(|l| selected.len().saturating_sub(l)).unwrap_or(0);
    if let Some(limit) = limit {
        selected.truncate(limit);
    }
    let next = (remaining > 0)
        .then(|| selected.last())
        .flatten()
        .map(|last| {
            continue_token(&Continue {
                rv: resource_version,
                namespace: last.namespace.clone(),
                name: last.name.clone(),
            })
        });
    let objects: Vec<Value> = selected.iter().map(|e| api.event_object(e)).collect();
    let mut list = match request.table {
        Some(table_version) => table::table_of(
            table_version,
            &columns(),
            selected
                .iter()
                .zip(&objects)
                .map(|(e, o)| (cells(e, now), o))
                .collect(),
            request.include,
            Some(resource_version),
        ),
        None => json!({
            "apiVersion": api.api_version(),
            "kind": "EventList",
            "metadata": {"resourceVersion": resource_version.to_string()},
            "items": objects,
        }),
    };
    if let Some(token) = next {
        list["metadata"]["continue"] = token.into();
        list["metadata"]["remainingItemCount"] = remaining.into();
    }
    json_response(&list)
}

pub async fn event_item(
    api: EventApi,
    State(c): State<Arc<Controller>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let Some(log) = c.backend.events() else {
        return on_the_api_server();
    };
    let (events, _) = log.list(Utc::now());
    match events
        .iter()
        .find(|e| e.namespace == namespace && e.name == name)
    {
        Some(e) => json_response(&api.event_object(e)),
        None => not_found(
            &format!("events \"{name}\" not found"),
            Some(StatusDetails {
                name: Some(name),
                kind: Some("events".into()),
                ..StatusDetails::default()
            }),
        ),
    }
}

/// A watch of the log: from a resourceVersion, the Events changed after it; without one (or
/// 0), every Event kept as ADDED; then each change as it comes, until the client leaves or
/// `timeoutSeconds`.
fn watch(api: EventApi, c: &Controller, log: &EventLog, request: Request) -> Response {
    let from = request.resource_version.filter(|&rv| rv != 0);
    let Some((missed, receiver)) = log.since(from) else {
        return failure(
            StatusCode::GONE,
            "Expired",
            format!(
                "too old resource version: {} (the log is at {})",
                from.unwrap_or_default(),
                log.resource_version()
            ),
            None,
        );
    };
    let mut w = EventWatch {
        api,
        request,
        receiver,
        start: from.unwrap_or(i64::MIN),
        after: from.unwrap_or(i64::MIN),
        lines: Default::default(),
        done: false,
        _open: Open::count(&c.metrics.watches),
    };
    for e in missed {
        w.take(&e, false);
    }
    let deadline = w
        .request
        .timeout
        .and_then(|t| tokio::time::Instant::now().checked_add(t));
    let stream = futures_util::stream::unfold(w, move |mut w| async move {
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
                Ok(e) => w.take(&e, true),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let status = json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "reason": "Expired", "code": 410,
                        "message": "the watch fell behind the events; list again",
                    });
                    w.line(&json!({"type": "ERROR", "object": status}));
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

struct EventWatch {
    api: EventApi,
    request: Request,
    receiver: broadcast::Receiver<Arc<RecordedEvent>>,
    /// The resourceVersion the watch started from: the client knows the Events created by
    /// then.
    start: i64,
    /// Changes up to this resourceVersion were sent.
    after: i64,
    lines: std::collections::VecDeque<Bytes>,
    done: bool,
    _open: Open,
}

impl EventWatch {
    /// `e` as a change the client has not seen: what the log held at the start (`live`
    /// false, each Event once, as it is now) or a change as it happens.
    fn take(&mut self, e: &RecordedEvent, live: bool) {
        if e.resource_version <= self.after {
            return;
        }
        self.after = e.resource_version;
        if !selects(&self.request, e) {
            return;
        }
        // New to the client, or a repeat of one it has (its count went up).
        let new = match live {
            true => e.created == e.resource_version,
            false => e.created > self.start,
        };
        let change = if new { "ADDED" } else { "MODIFIED" };
        let object = self.api.event_object(e);
        let object = match self.request.table {
            Some(version) => table::table_of(
                version,
                &columns(),
                vec![(cells(e, Utc::now()), &object)],
                self.request.include,
                Some(e.resource_version),
            ),
            None => object,
        };
        self.line(&json!({"type": change, "object": object}));
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
    use k8s_openapi::api::core::v1::ObjectReference;

    fn repeated() -> RecordedEvent {
        let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).expect("a time");
        RecordedEvent {
            name: "web-1.1".into(),
            namespace: "default".into(),
            uid: "u-e".into(),
            regarding: ObjectReference {
                api_version: Some("holdfast.dev/v1alpha1".into()),
                kind: Some("Host".into()),
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                uid: Some("u-web-1".into()),
                ..ObjectReference::default()
            },
            warning: true,
            reason: "AgentOffline".into(),
            note: "gone".into(),
            count: 3,
            first: at(0),
            last: at(60),
            resource_version: 9,
            created: 4,
        }
    }

    #[test]
    fn an_event_renders_in_both_apis_with_its_count() {
        let e = repeated();
        let core = EventApi::Core.event_object(&e);
        assert_eq!(
            (core["apiVersion"].as_str(), core["kind"].as_str()),
            (Some("v1"), Some("Event"))
        );
        assert_eq!(core["involvedObject"]["uid"], "u-web-1");
        assert_eq!(core["count"], 3);
        assert_eq!(core["type"], "Warning");
        assert_eq!(core["source"]["component"], "holdfast");
        assert_eq!(core["metadata"]["resourceVersion"], "9");
        let newer = EventApi::Events.event_object(&e);
        assert_eq!(newer["apiVersion"], "events.k8s.io/v1");
        assert_eq!(newer["regarding"]["name"], "web-1");
        assert_eq!(newer["note"], "gone");
        assert_eq!(newer["series"]["count"], 3);
    }

    #[test]
    fn selectors_read_the_fields_describe_and_kubectl_events_send() {
        let e = repeated();
        for (selector, selected) in [
            (
                "involvedObject.kind=Host,involvedObject.name=web-1,involvedObject.namespace=default,involvedObject.uid=u-web-1",
                true,
            ),
            ("involvedObject.apiVersion=holdfast.dev/v1alpha1", true),
            ("regarding.name=web-2", false),
            ("type=Warning,reason=AgentOffline", true),
            ("reason!=AgentOffline", false),
        ] {
            let fields = super::super::selector::fields(selector, FIELDS).expect(selector);
            assert_eq!(
                fields.matches_with(|f| field(&e, f)),
                selected,
                "{selector}"
            );
        }
        assert!(super::super::selector::fields("spec.host=x", FIELDS).is_err());
    }

    #[test]
    fn a_row_has_the_api_servers_cells() {
        let e = repeated();
        let now = e.last + chrono::TimeDelta::seconds(30);
        let cells = cells(&e, now);
        assert_eq!(cells.len(), columns().len());
        assert_eq!(
            cells,
            [
                json!("30s"),
                json!("Warning"),
                json!("AgentOffline"),
                json!("host/web-1"),
                json!(""),
                json!("holdfast"),
                json!("gone"),
                json!("90s"),
                json!(3),
                json!("web-1.1"),
            ]
        );
    }
}
