//! OpenAPI v2 as protocol buffers: the subset of gnostic's `openapi_v2.Document` (field numbers
//! from `openapiv2/OpenAPIv2.proto` of github.com/google/gnostic-models) that `kubectl explain`
//! reads, and its encoding from the JSON document. client-go asks `/openapi/v2` for this form
//! only (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and parses the bytes
//! with `proto.Unmarshal`; there is no JSON fallback.

use prost::Message;
use serde_json::Value;

/// The media type client-go asks `/openapi/v2` for; `@` is not allowed in a media type, so
/// the API server answers with [`CONTENT_TYPE`] (Go's `mime` refuses the other).
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The newer name of the same type, which the API server also accepts and always answers with.
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

/// No paths: `kubectl explain` reads only the definitions.
#[derive(Clone, PartialEq, Message)]
struct Paths {}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, tag = "3")]
    title: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct AdditionalPropertiesItem {
    #[prost(oneof = "Additional", tags = "1, 2")]
    oneof: Option<Additional>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Additional {
    #[prost(message, boxed, tag = "1")]
    Schema(Box<Schema>),
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

/// A value given as YAML text (gnostic's `Any`; its `google.protobuf.Any` form is not used).
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}

/// The protocol-buffer form of a JSON OpenAPI v2 document (`swagger`, `info`, `definitions`).
pub fn encode(document: &Value) -> Vec<u8> {
    let definitions = document["definitions"]
        .as_object()
        .map(|d| named(d.iter()))
        .unwrap_or_default();
    Document {
        swagger: text(&document["swagger"]),
        info: Some(Info {
            title: text(&document["info"]["title"]),
            version: text(&document["info"]["version"]),
        }),
        paths: Some(Paths {}),
        definitions: Some(Definitions {
            additional_properties: definitions,
        }),
    }
    .encode_to_vec()
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

fn named<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>) -> Vec<NamedSchema> {
    entries
        .map(|(name, value)| NamedSchema {
            name: name.clone(),
            value: Some(schema(value)),
        })
        .collect()
}

/// YAML text of a JSON value (JSON is YAML); empty if it cannot be written.
fn yaml(value: &Value) -> Any {
    Any {
        yaml: serde_json::to_string(value).unwrap_or_default(),
    }
}

fn schema(value: &Value) -> Schema {
    let types = match &value["type"] {
        Value::String(t) => vec![t.clone()],
        _ => Vec::new(),
    };
    Schema {
        r#ref: text(&value["$ref"]),
        format: text(&value["format"]),
        title: text(&value["title"]),
        description: text(&value["description"]),
        required: value["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        r#enum: value["enum"]
            .as_array()
            .map(|e| e.iter().map(yaml).collect())
            .unwrap_or_default(),
        additional_properties: match &value["additionalProperties"] {
            Value::Bool(b) => Some(Additional::Boolean(*b)),
            v @ Value::Object(_) => Some(Additional::Schema(Box::new(schema(v)))),
            _ => None,
        }
        .map(|a| AdditionalPropertiesItem { oneof: Some(a) }),
        r#type: (!types.is_empty()).then_some(TypeItem { value: types }),
        items: value
            .get("items")
            .filter(|i| i.is_object())
            .map(|i| ItemsItem {
                schema: vec![schema(i)],
            }),
        properties: value["properties"].as_object().map(|p| Properties {
            additional_properties: named(p.iter()),
        }),
        vendor_extension: value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("x-"))
            .map(|(k, v)| NamedAny {
                name: k.clone(),
                value: Some(yaml(v)),
            })
            .collect(),
    }
}

/// The names of the definitions in an encoded document.
#[cfg(test)]
pub fn definition_names(bytes: &[u8]) -> Vec<String> {
    Document::decode(bytes)
        .ok()
        .and_then(|d| d.definitions)
        .map(|d| {
            d.additional_properties
                .into_iter()
                .map(|n| n.name)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_decodes_to_what_was_encoded() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "Holdfast", "version": "v1"},
            "definitions": {
                "dev.holdfast.v1alpha1.Host": {
                    "type": "object",
                    "description": "A machine.",
                    "required": ["spec"],
                    "properties": {
                        "metadata": {"$ref": "#/definitions/meta", "description": "Standard."},
                        "spec": {"type": "object", "properties": {}},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "phase": {"type": "string", "enum": ["A", "B"]},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "holdfast.dev", "kind": "Host", "version": "v1alpha1"}],
                },
            },
        });
        let bytes = encode(&document);
        let decoded = Document::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded.swagger, "2.0");
        let definitions = decoded
            .definitions
            .expect("definitions")
            .additional_properties;
        assert_eq!(definitions.len(), 1);
        assert_eq!(definitions[0].name, "dev.holdfast.v1alpha1.Host");
        let host = definitions[0].value.as_ref().expect("a schema");
        assert_eq!(
            host.r#type.as_ref().map(|t| t.value.clone()),
            Some(vec!["object".to_string()])
        );
        assert_eq!(host.required, ["spec"]);
        let gvk = &host.vendor_extension[0];
        assert_eq!(gvk.name, "x-kubernetes-group-version-kind");
        let yaml: Value =
            serde_yaml::from_str(&gvk.value.as_ref().expect("a value").yaml).expect("YAML");
        assert_eq!(yaml[0]["kind"], "Host");
        let properties = &host
            .properties
            .as_ref()
            .expect("properties")
            .additional_properties;
        let find = |name: &str| {
            properties
                .iter()
                .find(|p| p.name == name)
                .and_then(|p| p.value.clone())
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(find("metadata").r#ref, "#/definitions/meta");
        assert!(find("metadata").r#type.is_none());
        assert_eq!(
            find("spec").properties,
            Some(Properties::default()),
            "empty properties are still properties: an object, not a map"
        );
        assert_eq!(find("tags").items.map(|i| i.schema.len()), Some(1));
        match find("labels").additional_properties.and_then(|a| a.oneof) {
            Some(Additional::Schema(s)) => {
                assert_eq!(s.r#type.map(|t| t.value), Some(vec!["string".to_string()]))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(find("phase").r#enum.len(), 2);
    }
}
