//! A Kubernetes API-server stand-in: enough of the real HTTP API for kube-rs (`Api`,
//! `watcher`, reflectors, the events `Recorder`) and for `holdfast controller --kube`, in memory,
//! on a loopback port, inside the test process. No real API server can run on these machines.
//!
//! What it serves, for the five Holdfast kinds (`holdfast.dev/v1alpha1`, with a status
//! subresource), core/v1 Secrets, `coordination.k8s.io/v1` Leases and Events (`events.k8s.io/v1`
//! and core/v1), all namespaced:
//!
//! - list, namespaced and across namespaces, with the collection's `resourceVersion`,
//!   `labelSelector` (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`) and `fieldSelector`
//!   (`=`, `==`, `!=` on any dotted path such as `metadata.name`); `limit` is ignored (one page);
//! - watch (`watch=true`): from the `resourceVersion` given (every change is kept, so none is
//!   ever too old), or, without one or with `0`, the current objects as `ADDED` first; JSON lines
//!   `{type, object}`; `BOOKMARK`s every few seconds with `allowWatchBookmarks=true`;
//!   `sendInitialEvents=true` (ADDED for every object, then the `k8s.io/initial-events-end`
//!   bookmark); the stream ends after `timeoutSeconds`;
//! - get, create (409 AlreadyExists; `generateName`; a created object's status dropped where
//!   the kind has a status subresource, as for CRDs), replace (PUT; a `resourceVersion` that is
//!   not the current one is 409 Conflict), delete;
//! - patch: server-side apply (`application/apply-patch+yaml`, `fieldManager` required,
//!   `force` accepted; a `metadata.resourceVersion` in the patch is a precondition), JSON merge
//!   patch (`application/merge-patch+json`), and strategic merge patch treated as a merge patch;
//! - the `/status` subresource for get, replace and patch: it changes only `.status`; the main
//!   resource never changes `.status`;
//! - `metadata`: `uid`, `creationTimestamp`, one `resourceVersion` counter for everything,
//!   `generation` (1 at creation, bumped when anything but metadata and status changes; only for
//!   kinds with a status subresource, as the API server does for CRDs); a write that changes
//!   nothing keeps the resourceVersion and sends no watch event; Secrets' `stringData` folded
//!   into `data` (base64);
//! - errors as `Status` objects with the API server's reasons and messages;
//! - `/version`, `/api`, `/apis` and the resource lists of each group version, for discovery.
//!
//! Not implemented: managed fields (server-side apply of the main resource merges the applied
//! fields into the object; applied to `/status` it replaces the whole status, which is what SSA
//! does when one manager owns all of status, as Holdfast does), JSON patch, paging (`continue`),
//! `resourceVersionMatch`, label-selector watches that turn an object leaving the selector into
//! DELETED, finalizers and graceful deletion, admission and schema validation, namespaces as
//! objects (every namespace exists), authentication (no TLS, anyone may do anything),
//! protobuf and Table output.
//!
//! The test reads and writes objects directly ([`ApiServer::create`], [`ApiServer::get`], …), as
//! a person with kubectl would, and every write a watcher sees. Set `HOLDFAST_APISERVER_LOG=1`
//! to print every request it answers; [`ApiServer::requests`] has them all.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A kind the stand-in serves. Every one is namespaced.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    /// Has a status subresource (`/status`), as the Holdfast CRDs do.
    pub status: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `backups.holdfast.dev`, `secrets`: as the API server names a resource in messages.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn holdfast(plural: &'static str, kind: &'static str) -> Kind {
    Kind {
        group: "holdfast.dev",
        version: "v1alpha1",
        plural,
        kind,
        status: true,
    }
}

pub const REPOS: Kind = holdfast("repos", "Repo");
pub const HOSTS: Kind = holdfast("hosts", "Host");
pub const SCHEDULES: Kind = holdfast("schedules", "Schedule");
pub const BACKUPS: Kind = holdfast("backups", "Backup");
pub const RESTORES: Kind = holdfast("restores", "Restore");
pub const NOTIFIERS: Kind = holdfast("notifiers", "Notifier");
pub const SNAPSHOTS: Kind = holdfast("snapshots", "Snapshot");
pub const SECRETS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "secrets",
    kind: "Secret",
    status: false,
};
pub const LEASES: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    plural: "leases",
    kind: "Lease",
    status: false,
};
pub const EVENTS: Kind = Kind {
    group: "events.k8s.io",
    version: "v1",
    plural: "events",
    kind: "Event",
    status: false,
};
pub const CORE_EVENTS: Kind = Kind {
    group: "",
    version: "v1",
    plural: "events",
    kind: "Event",
    status: false,
};

pub static KINDS: [&Kind; 11] = [
    &REPOS,
    &HOSTS,
    &SCHEDULES,
    &BACKUPS,
    &RESTORES,
    &NOTIFIERS,
    &SNAPSHOTS,
    &SECRETS,
    &LEASES,
    &EVENTS,
    &CORE_EVENTS,
];

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// The API server's default watch timeout.
const WATCH_TIMEOUT: u64 = 1800;

/// An error as the API server answers it: code, reason, message.
#[derive(Debug)]
pub struct Failure {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    details: Value,
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn about(mut self, kind: &Kind, name: &str) -> Failure {
        self.details = json!({"name": name, "group": kind.group, "kind": kind.plural});
        self
    }

    fn not_found(kind: &Kind, name: &str) -> Failure {
        Failure::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified()),
        )
        .about(kind, name)
    }

    fn conflict(kind: &Kind, name: &str) -> Failure {
        Failure::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.qualified()
            ),
        )
        .about(kind, name)
    }

    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(400, "BadRequest", message)
    }

    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}

/// One change, as a watch sends it.
struct Change {
    rv: u64,
    kind: &'static Kind,
    type_: &'static str,
    object: Value,
}

/// Everything the stand-in holds.
#[derive(Default)]
struct Db {
    /// The last resourceVersion handed out.
    rv: u64,
    uids: u64,
    objects: BTreeMap<(&'static str, &'static str, String, String), Value>,
    /// Every change, in resourceVersion order.
    log: Vec<Change>,
    /// Every request answered: `METHOD /path?query [content-type] -> code`.
    requests: Vec<String>,
}

type Key = (&'static str, &'static str, String, String);

fn key(kind: &Kind, namespace: &str, name: &str) -> Key {
    (kind.group, kind.plural, namespace.into(), name.into())
}

fn kind_of(kind: &Kind) -> &'static Kind {
    KINDS
        .iter()
        .find(|k| ***k == *kind)
        .copied()
        .expect("a kind the stand-in serves")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn rv_of(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
}

/// The object without what the API server sets itself, to tell a change from a no-op.
fn comparable(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

/// What a change of generation looks at: everything but metadata and status.
fn generational(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().expect("an object");
    for (k, v) in patch {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Server-side apply's approximation: the applied fields merged in (objects field by field,
/// everything else replaced); a null in the applied configuration is ignored.
fn apply_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(map), Some(applied)) => {
            for (k, v) in applied {
                if v.is_null() {
                    continue;
                }
                match map.get_mut(k) {
                    Some(existing) => apply_merge(existing, v),
                    None => {
                        map.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

impl Db {
    fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, Failure> {
        self.objects
            .get(&key(kind, namespace, name))
            .cloned()
            .ok_or_else(|| Failure::not_found(kind, name))
    }

    fn list(&self, kind: &Kind, namespace: Option<&str>, selector: &Selector) -> Value {
        let items: Vec<Value> = self
            .objects
            .iter()
            .filter(|((g, p, ns, _), o)| {
                (*g, *p) == (kind.group, kind.plural)
                    && namespace.is_none_or(|n| n == ns)
                    && selector.matches(o)
            })
            .map(|(_, o)| o.clone())
            .collect();
        json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }

    /// Stores `object` (or removes it, for DELETED) under a new resourceVersion and records the
    /// change for watches.
    fn commit(&mut self, kind: &'static Kind, type_: &'static str, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let k = key(
            kind,
            object["metadata"]["namespace"].as_str().unwrap_or_default(),
            name_of(&object),
        );
        if type_ == "DELETED" {
            self.objects.remove(&k);
        } else {
            self.objects.insert(k, object.clone());
        }
        self.log.push(Change {
            rv: self.rv,
            kind,
            type_,
            object: object.clone(),
        });
        object
    }

    /// The fields every stored object has; Secrets' `stringData` folded into `data`.
    fn normalise(kind: &Kind, namespace: &str, object: &mut Value) {
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        object["metadata"]["namespace"] = json!(namespace);
        if *kind == SECRETS
            && let Some(Value::Object(strings)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
        {
            for (k, v) in strings {
                let text = v.as_str().unwrap_or_default();
                object["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
            }
        }
    }

    fn create(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, Failure> {
        if !object.is_object() {
            return Err(Failure::bad_request("the body must be a JSON object"));
        }
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        if let Some(ns) = object["metadata"]["namespace"].as_str()
            && ns != namespace
        {
            return Err(Failure::bad_request(format!(
                "the namespace of the provided object ({ns}) does not match the namespace sent on the request ({namespace})"
            )));
        }
        let mut name = name_of(&object).to_string();
        if name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return Err(Failure::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        kind.kind
                    ),
                ));
            };
            name = format!("{prefix}{:05x}", self.uids + 1);
            object["metadata"]["name"] = json!(name);
        }
        if self.objects.contains_key(&key(kind, namespace, &name)) {
            return Err(Failure::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", kind.qualified()),
            )
            .about(kind, &name));
        }
        Db::normalise(kind, namespace, &mut object);
        if kind.status
            && let Some(o) = object.as_object_mut()
        {
            o.remove("status");
        }
        self.uids += 1;
        let meta = &mut object["metadata"];
        meta["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uids));
        meta["creationTimestamp"] = json!(now());
        if let Some(m) = meta.as_object_mut() {
            m.remove("managedFields");
            m.remove("deletionTimestamp");
            if kind.status {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        Ok(self.commit(kind, "ADDED", object))
    }

    /// Stores `new` in place of `old` (a no-op keeps everything as it is): what the server
    /// sets stays, the generation follows the spec.
    fn update(&mut self, kind: &'static Kind, old: Value, mut new: Value) -> Value {
        let namespace = old["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Db::normalise(kind, &namespace, &mut new);
        for field in ["name", "uid", "creationTimestamp", "generation"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        if kind.status && generational(&old) != generational(&new) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        if comparable(&old) == comparable(&new) {
            return old;
        }
        self.commit(kind, "MODIFIED", new)
    }

    fn replace(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        status: bool,
        body: Value,
    ) -> Result<Value, Failure> {
        let old = self.get(kind, namespace, name)?;
        if !body.is_object() {
            return Err(Failure::bad_request("the body must be a JSON object"));
        }
        if name_of(&body) != name {
            return Err(Failure::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&body)
            )));
        }
        if let Some(rv) = rv_of(&body)
            && Some(rv) != rv_of(&old)
        {
            return Err(Failure::conflict(kind, name));
        }
        let new = if status {
            let mut new = old.clone();
            new["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            new
        } else {
            let mut new = body;
            if kind.status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
            new
        };
        Ok(self.update(kind, old, new))
    }

    #[allow(clippy::too_many_arguments)]
    fn patch(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        status: bool,
        content_type: &str,
        query: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<(u16, Value), Failure> {
        let content_type = content_type.split(';').next().unwrap_or_default().trim();
        let patch: Value = match content_type {
            "application/apply-patch+yaml" => serde_yaml::from_slice(body)
                .map_err(|e| Failure::bad_request(format!("the apply patch is not YAML: {e}")))?,
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                serde_json::from_slice(body)
                    .map_err(|e| Failure::bad_request(format!("the patch is not JSON: {e}")))?
            }
            other => {
                return Err(Failure::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the stand-in does not support the patch type {other:?}"),
                ));
            }
        };
        if !patch.is_object() {
            return Err(Failure::bad_request("the patch must be an object"));
        }
        let apply = content_type == "application/apply-patch+yaml";
        if apply {
            if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(Failure::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            for (field, want) in [
                ("apiVersion", kind.api_version()),
                ("kind", kind.kind.to_string()),
            ] {
                if patch.get(field).and_then(Value::as_str) != Some(want.as_str()) {
                    return Err(Failure::bad_request(format!(
                        "the apply patch must say {field}: {want}"
                    )));
                }
            }
            if name_of(&patch) != name {
                return Err(Failure::bad_request(format!(
                    "the name in the apply patch ({}) does not match the name on the URL ({name})",
                    name_of(&patch)
                )));
            }
        }
        let old = match self.get(kind, namespace, name) {
            Ok(old) => old,
            // Server-side apply creates what does not exist (not through /status).
            Err(e) if e.code == 404 && apply && !status => {
                let mut object = patch.clone();
                if let Some(m) = object["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                return Ok((201, self.create(kind, namespace, object)?));
            }
            Err(e) => return Err(e),
        };
        if let Some(rv) = rv_of(&patch)
            && Some(rv) != rv_of(&old)
        {
            return Err(Failure::conflict(kind, name));
        }
        let mut new = old.clone();
        if apply && status {
            // One manager owns all of status: what it applies is the status.
            new["status"] = patch.get("status").cloned().unwrap_or(Value::Null);
        } else {
            let mut patch = patch.clone();
            if let Some(m) = patch["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            if apply {
                apply_merge(&mut new, &patch);
            } else {
                merge_patch(&mut new, &patch);
            }
            let kept = if status {
                // Only status changes through /status.
                let mut kept = old.clone();
                match new.get("status") {
                    Some(s) => kept["status"] = s.clone(),
                    None => {
                        kept.as_object_mut().map(|o| o.remove("status"));
                    }
                }
                kept
            } else if kind.status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                }
                new
            } else {
                new
            };
            new = kept;
        }
        if new.get("status").is_some_and(Value::is_null)
            && let Some(o) = new.as_object_mut()
        {
            o.remove("status");
        }
        Ok((200, self.update(kind, old, new)))
    }

    fn delete(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Value, Failure> {
        let old = self.get(kind, namespace, name)?;
        Ok(self.commit(kind, "DELETED", old))
    }
}

/// A label or field selector: requirements that must all hold.
#[derive(Debug, Default)]
pub struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<(String, bool, String)>,
}

#[derive(Debug)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, Failure> {
        let mut selector = Selector::default();
        for term in split_terms(labels.unwrap_or_default()) {
            let term = term.trim();
            let bad = || Failure::bad_request(format!("unable to parse requirement: {term:?}"));
            let requirement = if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotIn(k.trim().into(), vec![v.trim().into()])
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::In(k.trim().into(), vec![v.trim().into()])
            } else if let Some((k, set)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set_of(set).ok_or_else(bad)?)
            } else if let Some((k, set)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), set_of(set).ok_or_else(bad)?)
            } else if let Some(k) = term.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if !term.is_empty() && !term.contains(char::is_whitespace) {
                Requirement::Exists(term.into())
            } else {
                return Err(bad());
            };
            selector.labels.push(requirement);
        }
        for term in fields
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (path, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(Failure::bad_request(format!(
                    "invalid field selector: {term:?}"
                )));
            };
            selector
                .fields
                .push((path.trim().into(), equal, value.trim().into()));
        }
        Ok(selector)
    }

    fn matches(&self, object: &Value) -> bool {
        let label = |k: &str| {
            object
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
        };
        let labels = self.labels.iter().all(|r| match r {
            Requirement::In(k, set) => label(k).is_some_and(|v| set.iter().any(|s| s == v)),
            Requirement::NotIn(k, set) => label(k).is_none_or(|v| !set.iter().any(|s| s == v)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::NotExists(k) => label(k).is_none(),
        });
        labels
            && self.fields.iter().all(|(path, equal, value)| {
                let pointer = format!("/{}", path.replace('.', "/"));
                let actual = match object.pointer(&pointer) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == *value) == *equal
            })
    }
}

/// Splits a label selector at the commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < text.len() {
        terms.push(&text[start..]);
    }
    terms.into_iter().filter(|t| !t.trim().is_empty()).collect()
}

fn set_of(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).collect())
}

struct Shared {
    db: Mutex<Db>,
    /// The newest resourceVersion, for watches to wake on.
    changed: tokio::sync::watch::Sender<u64>,
    log_requests: bool,
}

impl Shared {
    fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a write and wakes the watches.
    fn write<T>(&self, f: impl FnOnce(&mut Db) -> T) -> T {
        let (out, rv) = {
            let mut db = self.db();
            let out = f(&mut db);
            (out, db.rv)
        };
        self.changed.send_replace(rv);
        out
    }
}

/// Where a request goes.
struct Route {
    kind: &'static Kind,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

enum Target {
    Resource(Route),
    Discovery(Value),
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["version"] => {
            return Some(Target::Discovery(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-holdfast-stand-in",
                "platform": "linux/amd64",
            })));
        }
        ["api"] => {
            return Some(Target::Discovery(json!({
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            })));
        }
        ["apis"] => {
            let mut groups: Vec<&str> = KINDS
                .iter()
                .map(|k| k.group)
                .filter(|g| !g.is_empty())
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|g| {
                    let version = KINDS
                        .iter()
                        .find(|k| k.group == *g)
                        .expect("a kind")
                        .version;
                    let gv = json!({"groupVersion": format!("{g}/{version}"), "version": version});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            return Some(Target::Discovery(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() {
        let resources: Vec<Value> = KINDS
            .iter()
            .filter(|k| (k.group, k.version) == (group, version))
            .flat_map(|k| {
                let main = json!({
                    "name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": true,
                    "kind": k.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                });
                let status = json!({
                    "name": format!("{}/status", k.plural), "singularName": "", "namespaced": true,
                    "kind": k.kind, "verbs": ["get", "patch", "update"],
                });
                if k.status {
                    vec![main, status]
                } else {
                    vec![main]
                }
            })
            .collect();
        if resources.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        return Some(Target::Discovery(json!({
            "kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": resources,
        })));
    }
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(*sub)),
        _ => return None,
    };
    let kind = KINDS
        .iter()
        .find(|k| (k.group, k.version, k.plural) == (group, version, plural))
        .copied()?;
    if name.is_some() && namespace.is_none() {
        return None;
    }
    let status = match sub {
        None => false,
        Some("status") if kind.status => true,
        Some(_) => return None,
    };
    Some(Target::Resource(Route {
        kind,
        namespace,
        name,
        status,
    }))
}

fn json_response(code: u16, value: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    (code, axum::Json(value.clone())).into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let response = answer(&shared, &method, uri.path(), &query, &content_type, &body);
    let line = format!(
        "{method} {uri}{} -> {}",
        if content_type.is_empty() {
            String::new()
        } else {
            format!(" [{content_type}]")
        },
        response.status().as_u16()
    );
    if shared.log_requests {
        eprintln!("apiserver: {line}");
    }
    shared.db().requests.push(line);
    response
}

fn answer(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Response {
    let Some(target) = route(path) else {
        return Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .into_response();
    };
    let route = match target {
        Target::Discovery(document) if method == Method::GET => {
            return json_response(200, &document);
        }
        Target::Discovery(_) => {
            return Failure::new(405, "MethodNotAllowed", "discovery is read-only").into_response();
        }
        Target::Resource(route) => route,
    };
    let kind = route.kind;
    let json_body = || -> Result<Value, Failure> {
        serde_json::from_slice(body)
            .map_err(|e| Failure::bad_request(format!("the body is not JSON: {e}")))
    };
    let result: Result<(u16, Value), Failure> = match (method.clone(), &route.name) {
        (Method::GET, None) => {
            let selector = match Selector::parse(
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            ) {
                Ok(s) => s,
                Err(e) => return e.into_response(),
            };
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(shared.clone(), route, query, selector);
            }
            Ok((
                200,
                shared
                    .db()
                    .list(kind, route.namespace.as_deref(), &selector),
            ))
        }
        (Method::POST, None) => match route.namespace.as_deref() {
            None => Err(Failure::new(
                405,
                "MethodNotAllowed",
                "create needs a namespace in the path",
            )),
            Some(ns) => json_body()
                .and_then(|b| shared.write(|db| db.create(kind, ns, b)).map(|o| (201, o))),
        },
        (_, None) => Err(Failure::new(
            405,
            "MethodNotAllowed",
            "the stand-in does not support this on a collection",
        )),
        (method, Some(name)) => {
            let ns = route.namespace.clone().unwrap_or_default();
            match method {
                Method::GET => shared.db().get(kind, &ns, name).map(|o| (200, o)),
                Method::PUT => json_body().and_then(|b| {
                    shared
                        .write(|db| db.replace(kind, &ns, name, route.status, b))
                        .map(|o| (200, o))
                }),
                Method::PATCH => shared
                    .write(|db| db.patch(kind, &ns, name, route.status, content_type, query, body)),
                Method::DELETE if !route.status => shared
                    .write(|db| db.delete(kind, &ns, name))
                    .map(|o| (200, o)),
                _ => Err(Failure::new(
                    405,
                    "MethodNotAllowed",
                    format!("{method} is not supported here"),
                )),
            }
        }
    };
    match result {
        Ok((code, object)) => json_response(code, &object),
        Err(failure) => failure.into_response(),
    }
}

/// A watch: JSON lines of `{type, object}` until `timeoutSeconds` or the client goes.
fn watch(
    shared: Arc<Shared>,
    route: Route,
    query: &HashMap<String, String>,
    selector: Selector,
) -> Response {
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(WATCH_TIMEOUT);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let initial_events = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let since = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .map(|rv| rv.parse::<u64>());
    let since = match since {
        Some(Err(_)) => {
            return Failure::bad_request("resourceVersion must be a number here").into_response();
        }
        Some(Ok(rv)) => Some(rv),
        None => None,
    };
    let kind = route.kind;
    let namespace = route.namespace;
    let matches = move |c_kind: &Kind, object: &Value| {
        *c_kind == *kind
            && namespace
                .as_deref()
                .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
            && selector.matches(object)
    };
    let bookmark = move |rv: u64, end_of_initial: bool| {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if end_of_initial {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({
            "type": "BOOKMARK",
            "object": {"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": metadata},
        })
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    let line = |event: &Value| {
        let mut bytes = serde_json::to_vec(event).expect("serialises");
        bytes.push(b'\n');
        Ok(Bytes::from(bytes))
    };
    let mut woken = shared.changed.subscribe();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        // Without a resourceVersion (or with 0, or asked for), the current objects come first.
        let (mut cursor, initial) = {
            let db = shared.db();
            match since {
                Some(rv) if !initial_events => (rv, Vec::new()),
                _ => {
                    let objects: Vec<Value> = db
                        .objects
                        .iter()
                        .filter(|((g, p, _, _), o)| {
                            (*g, *p) == (kind.group, kind.plural) && matches(kind, o)
                        })
                        .map(|(_, o)| json!({"type": "ADDED", "object": o}))
                        .collect();
                    (db.rv, objects)
                }
            }
        };
        for event in &initial {
            if tx.send(line(event)).await.is_err() {
                return;
            }
        }
        if initial_events && tx.send(line(&bookmark(cursor, true))).await.is_err() {
            return;
        }
        loop {
            let batch: Vec<Value> = {
                let db = shared.db();
                let from = db.log.partition_point(|c| c.rv <= cursor);
                let batch = db.log[from..]
                    .iter()
                    .filter(|c| matches(c.kind, &c.object))
                    .map(|c| json!({"type": c.type_, "object": c.object}))
                    .collect();
                cursor = cursor.max(db.rv);
                batch
            };
            for event in &batch {
                if tx.send(line(event)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = woken.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep(BOOKMARK_EVERY) => {
                    if bookmarks && tx.send(line(&bookmark(cursor, false))).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("a response")
}

/// The stand-in, serving on `127.0.0.1:`[`ApiServer::port`] from its own runtime until dropped.
pub struct ApiServer {
    pub port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl ApiServer {
    pub fn start() -> ApiServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("apiserver")
            .build()
            .expect("a runtime");
        let shared = Arc::new(Shared {
            db: Mutex::new(Db::default()),
            changed: tokio::sync::watch::channel(0).0,
            log_requests: std::env::var_os("HOLDFAST_APISERVER_LOG").is_some(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        runtime.spawn(async move { axum::serve(listener, app).await });
        ApiServer {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A kubeconfig whose current context is this stand-in (no credentials).
    pub fn write_kubeconfig(&self, path: &Path) {
        std::fs::write(
            path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: stand-in, cluster: {{server: '{}'}}}}]\ncontexts: [{{name: stand-in, context: {{cluster: stand-in, namespace: default}}}}]\ncurrent-context: stand-in\nusers: []\n",
                self.url()
            ),
        )
        .expect("the kubeconfig is written");
    }

    /// Runs `f` on the stand-in's runtime (a kube client made in `f` lives there).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    /// Creates an object as `kubectl create` would: its kind from `apiVersion` and `kind`,
    /// its namespace from `metadata.namespace` (default `default`).
    pub fn create(&self, object: Value) -> Result<Value, Failure> {
        let kind = KINDS
            .iter()
            .find(|k| {
                object["apiVersion"].as_str() == Some(k.api_version().as_str())
                    && object["kind"].as_str() == Some(k.kind)
            })
            .copied()
            .ok_or_else(|| {
                Failure::bad_request(format!(
                    "the stand-in does not serve {} {}",
                    object["apiVersion"], object["kind"]
                ))
            })?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        self.shared.write(|db| db.create(kind, &namespace, object))
    }

    /// Creates every document of a YAML text; panics on the first that is refused.
    pub fn create_yaml(&self, text: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|document| {
                let object = Value::deserialize(document).expect("YAML");
                self.create(object.clone())
                    .unwrap_or_else(|e| panic!("cannot create {object}: {}", e.message))
            })
            .collect()
    }

    pub fn get(&self, kind: &Kind, namespace: &str, name: &str) -> Option<Value> {
        self.shared.db().get(kind, namespace, name).ok()
    }

    /// The objects of `kind`, in `namespace` or everywhere.
    pub fn list(&self, kind: &Kind, namespace: Option<&str>) -> Vec<Value> {
        let list = self.shared.db().list(kind, namespace, &Selector::default());
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Changes an object as `kubectl edit` would (a replace; status is not changed).
    pub fn update(
        &self,
        kind: &Kind,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<Value, Failure> {
        let kind = kind_of(kind);
        self.shared.write(|db| {
            let mut object = db.get(kind, namespace, name)?;
            change(&mut object);
            db.replace(kind, namespace, name, false, object)
        })
    }

    pub fn delete(&self, kind: &Kind, namespace: &str, name: &str) -> Result<Value, Failure> {
        let kind = kind_of(kind);
        self.shared.write(|db| db.delete(kind, namespace, name))
    }

    /// Every request answered so far: `METHOD /path?query [content-type] -> code`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.db().requests.clone()
    }

    /// The newest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.db().rv
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
