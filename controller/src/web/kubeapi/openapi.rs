//! OpenAPI v2 and v3 documents of the served kinds, built from their CRDs' schemas as the API
//! server builds them for custom resources: each kind a definition named after its reversed
//! group (`dev.holdfast.v1alpha1.Host`) with `apiVersion`, `kind`, `metadata` (a reference to
//! `ObjectMeta`) and `x-kubernetes-group-version-kind`, and paths whose `get` names the kind.
//! `kubectl explain` reads them: v3 by default since 1.27, v2 (as protocol buffers, see
//! [`gnostic`](super::gnostic)) before and as a fallback.
//!
//! Kinds come from [`served`], so a kind added to the CRDs appears here without more code.

use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::discovery::{GROUP, GROUP_VERSION, Served, VERSION, served};
use super::gnostic;
use crate::crds::crd;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The API server's descriptions of the fields every object has.
const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The path of the group's v3 document below `/openapi/v3/`, as the v3 discovery names it.
pub const V3_GROUP_PATH: &str = "apis/holdfast.dev/v1alpha1";

/// Every document, built once.
pub struct OpenApiDocuments {
    pub v2: Vec<u8>,
    pub v2_protobuf: Vec<u8>,
    /// `GET /openapi/v3`: where each group version's document is.
    pub v3_discovery: Vec<u8>,
    /// `GET /openapi/v3/apis/holdfast.dev/v1alpha1`.
    pub v3_group: Vec<u8>,
}

pub fn openapi_documents() -> &'static OpenApiDocuments {
    static DOCUMENTS: OnceLock<OpenApiDocuments> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let v2 = v2();
        let v3 = v3();
        // Serializing a JSON value cannot fail.
        let v3_group = serde_json::to_vec(&v3).unwrap_or_default();
        // The hash lets clients cache the document until it changes, as the API server's does.
        let hash = hex::encode_upper(Sha256::digest(&v3_group));
        let discovery = json!({
            "paths": {
                V3_GROUP_PATH: {
                    "serverRelativeURL": format!("/openapi/v3/{V3_GROUP_PATH}?hash={hash}"),
                },
            },
        });
        OpenApiDocuments {
            v2_protobuf: gnostic::encode(&v2),
            v2: serde_json::to_vec(&v2).unwrap_or_default(),
            v3_discovery: serde_json::to_vec(&discovery).unwrap_or_default(),
            v3_group,
        }
    })
}

/// `holdfast.dev` reversed, as the API server names definitions: `dev.holdfast`.
fn definition_name(kind: &str) -> String {
    let group: Vec<&str> = GROUP.split('.').rev().collect();
    format!("{}.{VERSION}.{kind}", group.join("."))
}

fn gvk(kind: &str) -> Value {
    json!({"group": GROUP, "kind": kind, "version": VERSION})
}

/// A kind's schema from its CRD, with the fields every object has and its group, version and
/// kind; `metadata` is the `metadata` field's schema (a reference to `ObjectMeta`).
fn kind_schema(served: &Served, metadata: &Value) -> Value {
    let crd = crd(served.kind);
    let schema = crd
        .spec
        .versions
        .into_iter()
        .find(|v| v.name == VERSION)
        .and_then(|v| v.schema?.open_api_v3_schema)
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| json!({}));
    let mut schema = match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    schema.insert("type".into(), "object".into());
    let properties = schema
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(properties) = properties {
        properties.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": API_VERSION_DESCRIPTION}),
        );
        properties.insert(
            "kind".into(),
            json!({"type": "string", "description": KIND_DESCRIPTION}),
        );
        properties.insert("metadata".into(), metadata.clone());
    }
    let kind = served.kind.as_str();
    schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(kind)]));
    Value::Object(schema)
}

/// `ObjectMeta` as k8s-openapi describes it, with every nested type inline.
fn object_meta() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<ObjectMeta>())
        .unwrap_or_else(|_| json!({"type": "object"}));
    if let Some(map) = schema.as_object_mut() {
        map.retain(|k, _| !k.starts_with('$') && k != "title" && k != "definitions");
        map.insert("type".into(), "object".into());
    }
    schema
}

/// The paths of one kind: its lists (in every namespace and in one) and its items, each
/// `get` naming the kind; `reference` points at the kind's definition.
fn paths(served: &Served, reference: &str) -> Vec<(String, Value)> {
    let base = format!("/apis/{GROUP_VERSION}");
    let plural = &served.plural;
    let kind = served.kind.as_str();
    let get = |list: bool| {
        let schema = match list {
            true => {
                json!({"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": reference}}}})
            }
            false => json!({"$ref": reference}),
        };
        json!({"get": {
            "description": format!("{} {kind}", if list { "list" } else { "read the specified" }),
            "operationId": format!("{}{kind}", if list { "list" } else { "read" }),
            "x-kubernetes-action": if list { "list" } else { "get" },
            "x-kubernetes-group-version-kind": gvk(kind),
            "responses": {"200": {"description": "OK", "schema": schema}},
        }})
    };
    vec![
        (format!("{base}/{plural}"), get(true)),
        (
            format!("{base}/namespaces/{{namespace}}/{plural}"),
            get(true),
        ),
        (
            format!("{base}/namespaces/{{namespace}}/{plural}/{{name}}"),
            get(false),
        ),
    ]
}

/// The OpenAPI v2 document: definitions under `#/definitions/`, without what v2 cannot say.
fn v2() -> Value {
    let meta_ref = format!("#/definitions/{OBJECT_META}");
    let metadata = json!({"$ref": meta_ref, "description": METADATA_DESCRIPTION});
    let mut definitions = Map::new();
    let mut all_paths = Map::new();
    definitions.insert(OBJECT_META.into(), object_meta());
    for s in served() {
        let name = definition_name(s.kind.as_str());
        for (path, item) in paths(s, &format!("#/definitions/{name}")) {
            all_paths.insert(path, item);
        }
        definitions.insert(name, kind_schema(s, &metadata));
    }
    let mut definitions = Value::Object(definitions);
    to_v2(&mut definitions);
    json!({
        "swagger": "2.0",
        "info": {"title": "Holdfast", "version": env!("CARGO_PKG_VERSION")},
        "paths": all_paths,
        "definitions": definitions,
    })
}

/// The OpenAPI v3 document of the group: schemas under `#/components/schemas/`.
fn v3() -> Value {
    let meta_ref = format!("#/components/schemas/{OBJECT_META}");
    let metadata = json!({
        "allOf": [{"$ref": meta_ref}],
        "default": {},
        "description": METADATA_DESCRIPTION,
    });
    let mut schemas = Map::new();
    let mut all_paths = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta());
    for s in served() {
        let name = definition_name(s.kind.as_str());
        for (path, mut item) in paths(s, &format!("#/components/schemas/{name}")) {
            // v3 puts a response's schema under its media type.
            let response = &mut item["get"]["responses"]["200"];
            let schema = response["schema"].take();
            if let Some(r) = response.as_object_mut() {
                r.remove("schema");
                r.insert(
                    "content".into(),
                    json!({"application/json": {"schema": schema}}),
                );
            }
            all_paths.insert(path, item);
        }
        schemas.insert(name, kind_schema(s, &metadata));
    }
    let mut schemas = Value::Object(schemas);
    to_v3(&mut schemas);
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Holdfast", "version": env!("CARGO_PKG_VERSION")},
        "paths": all_paths,
        "components": {"schemas": schemas},
    })
}

/// Every schema below `value` (properties, items, additional properties, allOf), each once.
fn each_schema(value: &mut Value, change: &mut impl FnMut(&mut Map<String, Value>)) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    change(map);
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for p in properties.values_mut() {
            each_schema(p, change);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = map.get_mut(key) {
            each_schema(v, change);
        }
    }
    if let Some(Value::Array(all)) = map.get_mut("allOf") {
        for a in all {
            each_schema(a, change);
        }
    }
}

/// Applies `change` to each definition and every schema in it.
fn each_definition(definitions: &mut Value, change: &mut impl FnMut(&mut Map<String, Value>)) {
    if let Some(map) = definitions.as_object_mut() {
        for d in map.values_mut() {
            each_schema(d, change);
        }
    }
}

/// What OpenAPI v2 and kubectl's v2 parser cannot read: `nullable` (a v3 word; the type
/// stays, so that `explain` walks into the field: writes are refused, so no client
/// validates a null against it), the v3 combinators, several types, and an array without
/// items.
fn to_v2(definitions: &mut Value) {
    each_definition(definitions, &mut |s| {
        for key in ["nullable", "oneOf", "anyOf", "not", "default", "example"] {
            s.remove(key);
        }
        let several = !matches!(s.get("type"), None | Some(Value::String(_)));
        let array_without_items =
            s.get("type") == Some(&json!("array")) && !s.contains_key("items");
        if several || array_without_items {
            s.remove("type");
        }
        // A reference stands alone in kubectl's v2 parser.
        if s.contains_key("$ref") {
            s.retain(|k, _| k == "$ref" || k == "description");
        }
    });
}

/// A boolean `additionalProperties` breaks `kubectl explain` before 1.31; it says nothing a
/// reader needs.
fn to_v3(schemas: &mut Value) {
    each_definition(schemas, &mut |s| {
        if matches!(s.get("additionalProperties"), Some(Value::Bool(_))) {
            s.remove("additionalProperties");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;

    fn json(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("JSON")
    }

    /// Follows `$ref` and `allOf` (to a definition of `definitions`) as `kubectl explain`
    /// does, down `fields`.
    fn field<'a>(definitions: &'a Value, mut schema: &'a Value, fields: &[&str]) -> &'a Value {
        for f in fields {
            while let Some(r) = schema["$ref"]
                .as_str()
                .or(schema["allOf"][0]["$ref"].as_str())
            {
                schema = &definitions[r.rsplit('/').next().expect("a name")];
            }
            schema = &schema["properties"][*f];
            assert!(!schema.is_null(), "no field {f} in {fields:?}");
        }
        schema
    }

    #[test]
    fn every_kind_has_a_definition_with_its_group_version_kind_in_both_versions() {
        let d = openapi_documents();
        let v2 = json(&d.v2);
        let v3 = json(&d.v3_group);
        for s in served() {
            let kind = s.kind.as_str();
            let name = definition_name(kind);
            let expected = json!([{"group": "holdfast.dev", "kind": kind, "version": "v1alpha1"}]);
            assert_eq!(
                v2["definitions"][&name]["x-kubernetes-group-version-kind"],
                expected
            );
            let schema = &v3["components"]["schemas"][&name];
            assert_eq!(schema["x-kubernetes-group-version-kind"], expected);
            let list = format!("/apis/holdfast.dev/v1alpha1/{}", s.plural);
            assert_eq!(
                v3["paths"][&list]["get"]["x-kubernetes-group-version-kind"]["kind"],
                kind
            );
            assert_eq!(
                v2["paths"][&list]["get"]["x-kubernetes-group-version-kind"]["kind"],
                kind
            );
        }
        assert_eq!(definition_name("Host"), "dev.holdfast.v1alpha1.Host");
    }

    #[test]
    fn nested_fields_and_metadata_are_reachable() {
        let d = openapi_documents();
        let v3 = json(&d.v3_group);
        let schemas = &v3["components"]["schemas"];
        let host = &schemas["dev.holdfast.v1alpha1.Host"];
        let hooks = field(schemas, host, &["spec", "defaults", "hooks", "pre"]);
        assert_eq!(hooks["type"], "array");
        let labels = field(schemas, host, &["metadata", "labels"]);
        assert_eq!(labels["type"], "object");
        assert!(!field(schemas, host, &["status", "lastSeen"])["description"].is_null());

        let v2 = json(&d.v2);
        let definitions = &v2["definitions"];
        let host = &definitions["dev.holdfast.v1alpha1.Host"];
        let hooks = field(definitions, host, &["spec", "defaults", "hooks"]);
        assert_eq!(
            hooks["type"], "object",
            "a nullable field keeps its type in v2"
        );
        assert!(hooks.get("nullable").is_none());
        let name = field(definitions, host, &["metadata", "name"]);
        assert_eq!(name["type"], "string");
    }

    #[test]
    fn the_v2_protobuf_holds_every_definition() {
        let d = openapi_documents();
        let names = gnostic::definition_names(&d.v2_protobuf);
        assert!(names.contains(&OBJECT_META.to_string()));
        for kind in Kind::ALL {
            assert!(names.contains(&definition_name(kind.as_str())), "{kind:?}");
        }
    }

    #[test]
    fn v3_discovery_points_at_the_group_document_with_its_hash() {
        let discovery = json(&openapi_documents().v3_discovery);
        let url = discovery["paths"][V3_GROUP_PATH]["serverRelativeURL"]
            .as_str()
            .expect("a URL");
        let hash = hex::encode_upper(Sha256::digest(&openapi_documents().v3_group));
        assert_eq!(
            url,
            format!("/openapi/v3/apis/holdfast.dev/v1alpha1?hash={hash}")
        );
    }
}
