//! Every example in `examples/kubernetes/` is accepted by the CRDs the controller generates (as the
//! API server would check it) and by the project's own rules in Kubernetes mode.
//!
//! Only documents whose `apiVersion` is in the group `holdfast.dev` are checked; the Namespace and
//! the Secret of the examples belong to the API server. Documents count from 1 in messages, and
//! field paths are JSON pointers (`/spec/defaults/limits`) for the schema checks and the
//! project's own paths (`spec.hooks.pre[0].timeout`) for its rules.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use holdfast::crds::crd;
use holdfast::diagnostics::Severity;
use holdfast::resources::{GROUP, Kind, ObjectKey};
use holdfast::revision::Revision;
use holdfast::validate::{Mode, validate};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

const EXAMPLES: &str = "examples/kubernetes";

/// One example file: how messages name it, and its text.
struct Example {
    display: String,
    text: String,
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(EXAMPLES)
}

/// Every `.yaml`/`.yml` file of the examples, and every `.yaml.example` (such as the Secret's
/// placeholder file), sorted by name.
fn read_examples() -> Vec<Example> {
    let dir = examples_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .file_name()
                .into_string()
                .expect("example file names are UTF-8")
        })
        .filter(|name| {
            [".yaml", ".yml", ".yaml.example", ".yml.example"]
                .iter()
                .any(|ext| name.ends_with(ext))
        })
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no YAML files in {}", dir.display());
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            Example {
                display: format!("{EXAMPLES}/{name}"),
                text,
            }
        })
        .collect()
}

/// The example `name` with `from` replaced by `to` once; `from` must occur exactly once.
fn mutated(name: &str, from: &str, to: &str) -> Vec<Example> {
    let mut examples = read_examples();
    let display = format!("{EXAMPLES}/{name}");
    let example = examples
        .iter_mut()
        .find(|e| e.display == display)
        .unwrap_or_else(|| panic!("no example {display}"));
    assert_eq!(
        example.text.matches(from).count(),
        1,
        "{display} must contain `{from}` exactly once for this test"
    );
    example.text = example.text.replacen(from, to, 1);
    examples
}

/// Where a holdfast document came from, for messages.
#[derive(Clone)]
struct Place {
    file: String,
    /// Counts from 1.
    doc: usize,
    kind: String,
    name: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, document {} ({} {})",
            self.file, self.doc, self.kind, self.name
        )
    }
}

/// What the checks found; empty when every example is accepted.
#[derive(Default)]
struct Report {
    problems: Vec<String>,
    /// Holdfast documents checked, by kind.
    checked: HashMap<String, usize>,
}

/// Checks every holdfast document of `examples` against the generated CRDs, then all of them
/// together (they refer to each other across files) against the project's rules in Kubernetes
/// mode.
fn check(examples: &[Example]) -> Report {
    let crds: Vec<_> = Kind::ALL.into_iter().map(crd).collect();
    let mut report = Report::default();
    let mut revision = Revision::default();
    let mut places: HashMap<ObjectKey, Place> = HashMap::new();

    for example in examples {
        for (i, document) in serde_yaml::Deserializer::from_str(&example.text).enumerate() {
            let doc = i + 1;
            let at = format!("{}, document {doc}", example.display);
            let yaml = match serde_yaml::Value::deserialize(document) {
                Ok(yaml) => yaml,
                Err(e) => {
                    report.problems.push(format!("{at}: not YAML: {e}"));
                    // The rest of the stream cannot be trusted after a syntax error.
                    break;
                }
            };
            if yaml.is_null() {
                continue; // an empty document, such as after a trailing `---`
            }
            let value = match serde_json::to_value(&yaml) {
                Ok(value) => value,
                Err(e) => {
                    report
                        .problems
                        .push(format!("{at}: not JSON-compatible: {e}"));
                    continue;
                }
            };
            let Some(api_version) = value.get("apiVersion").and_then(Value::as_str) else {
                report.problems.push(format!("{at}: no apiVersion"));
                continue;
            };
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            if group != GROUP {
                continue; // core and other groups are the API server's to check
            }
            let place = Place {
                file: example.display.clone(),
                doc,
                kind: value
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("<no kind>")
                    .to_string(),
                name: value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("<no name>")
                    .to_string(),
            };
            *report.checked.entry(place.kind.clone()).or_default() += 1;

            // The CRD's schema, as the API server would apply it.
            let schema = crds
                .iter()
                .find(|c| c.spec.group == group && c.spec.names.kind == place.kind)
                .and_then(|c| c.spec.versions.iter().find(|v| v.name == version))
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref());
            let Some(schema) = schema else {
                report.problems.push(format!(
                    "{place}: no generated CRD serves kind `{}` in `{api_version}`",
                    place.kind
                ));
                continue;
            };
            let schema = serde_json::to_value(schema).expect("a CRD schema serialises to JSON");
            check_schema(&place, &schema, &value, &mut report.problems);
            let mut unknown = Vec::new();
            unknown_fields(&schema, &value, "", &mut unknown);
            for path in unknown {
                report.problems.push(format!(
                    "{place}: {path}: unknown field: the CRD schema does not declare it, so the API server would drop it"
                ));
            }

            // The typed resource, for the project's rules.
            let Some(kind) = Kind::from_name(&place.kind) else {
                continue; // reported above: no CRD has this kind
            };
            let key = match kind {
                Kind::Repo => typed(&place, &value, &mut revision.repos, kind),
                Kind::Host => typed(&place, &value, &mut revision.hosts, kind),
                Kind::Schedule => typed(&place, &value, &mut revision.schedules, kind),
                Kind::Backup => typed(&place, &value, &mut revision.backups, kind),
                Kind::Restore => typed(&place, &value, &mut revision.restores, kind),
                Kind::Notifier => typed(&place, &value, &mut revision.notifiers, kind),
                Kind::Snapshot => {
                    report.problems.push(format!(
                        "{place}: Snapshot is read-only: the controller makes them"
                    ));
                    continue;
                }
            };
            match key {
                Ok(key) => {
                    if let Some(first) = places.insert(key, place.clone()) {
                        report
                            .problems
                            .push(format!("{place}: declared before, at {first}"));
                    }
                }
                Err(problem) => report.problems.push(problem),
            }
        }
    }

    for finding in validate(&revision, Mode::Kubernetes) {
        if finding.severity != Severity::Error {
            continue;
        }
        let place = places
            .get(&finding.object)
            .map_or_else(|| finding.object.to_string(), Place::to_string);
        report.problems.push(format!(
            "{place}: {}: Kubernetes mode: {}",
            finding.field, finding.message
        ));
    }
    report
}

/// `schema` as JSON Schema: OpenAPI's `nullable: true` becomes a `null` in `type` (and `enum`),
/// which is what the API server makes of it. `x-kubernetes-*` keywords are left for JSON Schema to
/// ignore.
fn as_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), as_json_schema(v)))
                .collect();
            if map.get("nullable") == Some(&Value::Bool(true)) {
                out.remove("nullable");
                if let Some(Value::String(ty)) = out.get("type") {
                    let ty = Value::Array(vec![Value::String(ty.clone()), "null".into()]);
                    out.insert("type".into(), ty);
                }
                if let Some(Value::Array(values)) = out.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(as_json_schema).collect()),
        other => other.clone(),
    }
}

/// Types, formats, required fields, enums and minimums, by a JSON Schema validator. OpenAPI v3.0
/// schemas are close to draft 4 (`exclusiveMinimum` is a boolean there too).
fn check_schema(place: &Place, schema: &Value, document: &Value, problems: &mut Vec<String>) {
    let validator =
        jsonschema::draft4::new(&as_json_schema(schema)).expect("the CRD schema compiles");
    for error in validator.iter_errors(document) {
        let path = error.instance_path().to_string();
        let path = if path.is_empty() { "/".into() } else { path };
        problems.push(format!("{place}: {path}: {error}"));
    }
}

/// JSON pointer escaping of one key.
fn pointer_key(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Fields of `value` that `schema` does not declare, as JSON pointers: the fields the API server
/// prunes. A field is declared when it is in `properties`, or the object allows more through
/// `additionalProperties` or `x-kubernetes-preserve-unknown-fields: true`. At the root (and in an
/// embedded resource) `apiVersion`, `kind` and `metadata` are always allowed: the API server
/// checks them itself, and the generated schema does not declare them.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            // A resource: the root, or one embedded with `x-kubernetes-embedded-resource`.
            let resource = path.is_empty()
                || schema
                    .get("x-kubernetes-embedded-resource")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
            for (name, field) in fields {
                let here = format!("{path}/{}", pointer_key(name));
                if resource && ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
                    continue;
                }
                match (properties.and_then(|p| p.get(name)), additional) {
                    (Some(declared), _) => unknown_fields(declared, field, &here, out),
                    (None, Some(extra @ Value::Object(_))) => {
                        unknown_fields(extra, field, &here, out);
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if preserve => {}
                    (None, _) => out.push(here),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}/{i}"), out);
                }
            }
        }
        _ => {}
    }
}

/// Parses `value` as the typed resource `K`, adds it to `into` and returns its key.
fn typed<K>(
    place: &Place,
    value: &Value,
    into: &mut Vec<K>,
    kind: Kind,
) -> Result<ObjectKey, String>
where
    K: DeserializeOwned + kube::ResourceExt,
{
    let object: K = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        format!(
            "{place}: {}: does not parse as a {kind}: {}",
            e.path(),
            e.inner()
        )
    })?;
    let key = holdfast::revision::key_of(kind, &object);
    into.push(object);
    Ok(key)
}

/// Fails with every problem, one per line.
fn assert_clean(report: &Report) {
    assert!(
        report.problems.is_empty(),
        "{} problem(s) in {EXAMPLES}:\n{}",
        report.problems.len(),
        report.problems.join("\n")
    );
}

/// Fails unless some problem mentions every one of `parts`.
fn assert_reported(report: &Report, parts: &[&str]) {
    assert!(
        report
            .problems
            .iter()
            .any(|p| parts.iter().all(|part| p.contains(part))),
        "expected a problem mentioning {parts:?}, got:\n{}",
        report.problems.join("\n")
    );
}

#[test]
fn every_kubernetes_example_validates_against_the_generated_crds() {
    let report = check(&read_examples());
    assert_clean(&report);
    // A check that saw nothing would pass too.
    for kind in ["Repo", "Host", "Schedule"] {
        assert!(
            report.checked.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} among the examples was checked: {:?}",
            report.checked
        );
    }
}

#[test]
fn a_misspelt_field_is_reported_with_its_file_document_and_path() {
    let examples = mutated(
        "hosts.yaml",
        "uploadKibPerSecond: 20480",
        "uploadKibPerSec: 20480",
    );
    let report = check(&examples);
    assert_reported(
        &report,
        &[
            "examples/kubernetes/hosts.yaml, document 2 (Host db-1)",
            "/spec/defaults/limits/uploadKibPerSec: unknown field",
        ],
    );
}

#[test]
fn a_wrong_type_is_reported_with_its_file_document_and_path() {
    let examples = mutated("repos.yaml", "initialize: true", "initialize: \"yes\"");
    let report = check(&examples);
    assert_reported(
        &report,
        &[
            "examples/kubernetes/repos.yaml, document 1 (Repo nas)",
            "/spec/initialize: ",
            "is not of type \"boolean\"",
        ],
    );
}

#[test]
fn a_missing_required_field_is_reported() {
    let examples = mutated(
        "repos.yaml",
        "  url: s3:https://s3.eu-central-1.amazonaws.com/acme-backups/fleet\n",
        "",
    );
    let report = check(&examples);
    assert_reported(
        &report,
        &[
            "examples/kubernetes/repos.yaml, document 2 (Repo offsite)",
            "/spec: ",
            "\"url\" is a required property",
        ],
    );
}

#[test]
fn a_kubernetes_mode_rule_is_reported_with_its_file_document_and_field() {
    // Passes the schema (a string), fails the project's rules (a zero duration).
    let examples = mutated("schedules.yaml", "timeout: 2m", "timeout: 0s");
    let report = check(&examples);
    assert_reported(
        &report,
        &[
            "examples/kubernetes/schedules.yaml, document 1 (Schedule nightly)",
            "spec.hooks.pre[0].timeout: Kubernetes mode: `0s` is zero",
        ],
    );
}

#[test]
fn an_unserved_version_is_reported() {
    let examples = mutated(
        "hosts.yaml",
        "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: web-2",
        "apiVersion: holdfast.dev/v1beta1\nkind: Host\nmetadata:\n  name: web-2",
    );
    let report = check(&examples);
    assert_reported(
        &report,
        &[
            "examples/kubernetes/hosts.yaml, document 4 (Host web-2)",
            "no generated CRD serves kind `Host` in `holdfast.dev/v1beta1`",
        ],
    );
}
