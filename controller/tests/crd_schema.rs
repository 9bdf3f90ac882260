//! The generated CRDs are what `kubectl explain` and `kubectl get` read: every field is described,
//! and every printer column points at a field that exists.

use holdfast::crds::crd;
use holdfast::resources::Kind;
use serde_json::Value;

fn schema(kind: Kind) -> Value {
    let crd = crd(kind);
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .unwrap(),
    )
    .unwrap()
}

/// Paths of properties that have no description.
fn undescribed(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let here = format!("{path}.{name}");
            let top_level_meta =
                path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
            if prop.get("description").is_none() && !top_level_meta {
                out.push(here.clone());
            }
            undescribed(prop, &here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undescribed(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description() {
    for kind in Kind::ALL {
        let mut missing = Vec::new();
        undescribed(&schema(kind), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind}: fields without a doc comment: {missing:?}"
        );
    }
}

/// Follows a printer column's JSONPath (`.status.lastCheck.time`,
/// `.status.conditions[?(@.type=="X")].status`) through the schema.
fn resolve<'a>(schema: &'a Value, json_path: &str) -> Option<&'a Value> {
    // Drop filter expressions, which contain dots of their own: `a[?(@.b=="c")]` -> `a[]`.
    let mut plain = String::new();
    let mut depth = 0;
    for c in json_path.chars() {
        match c {
            '[' => {
                depth += 1;
                if depth == 1 {
                    plain.push('[');
                }
            }
            ']' => depth -= 1,
            _ if depth > 0 => {}
            _ => plain.push(c),
        }
    }
    let mut node = schema;
    for part in plain.trim_start_matches('.').split('.') {
        let (name, filtered) = match part.split_once('[') {
            Some((name, _)) => (name, true),
            None => (part, false),
        };
        node = node.get("properties")?.get(name)?;
        if filtered {
            node = node.get("items")?;
        }
    }
    Some(node)
}

#[test]
fn every_printer_column_path_exists_with_its_type() {
    for kind in Kind::ALL {
        let crd = crd(kind);
        let schema = schema(kind);
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        assert!(!columns.is_empty(), "{kind} has no printer columns");
        for column in columns {
            if column.json_path == ".metadata.creationTimestamp" {
                continue; // metadata's schema is the API server's, not ours
            }
            let field = resolve(&schema, &column.json_path).unwrap_or_else(|| {
                panic!(
                    "{kind}: column {} points at missing {}",
                    column.name, column.json_path
                )
            });
            let expected = match (column.type_.as_str(), field.get("type")) {
                ("date", _) => "string",
                // A list in a string column: the API server prints it as JSON (`["/etc"]`).
                ("string", Some(t)) if t == "array" => "array",
                (other, _) => other,
            };
            assert_eq!(
                field.get("type").and_then(Value::as_str),
                Some(expected),
                "{kind}: column {} ({})",
                column.name,
                column.json_path
            );
        }
    }
}

#[test]
fn kinds_are_namespaced_in_the_holdfast_category_with_status() {
    for kind in Kind::ALL {
        let crd = crd(kind);
        assert_eq!(crd.spec.group, "holdfast.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["holdfast".to_string()][..])
        );
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        // A Snapshot's status says only when it goes: no conditions.
        if kind == Kind::Snapshot {
            continue;
        }
        let schema = schema(kind);
        let conditions = resolve(&schema, ".status.conditions").unwrap();
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
    }
}

#[test]
fn wide_output_adds_backup_columns() {
    let crd = crd(Kind::Backup);
    let columns = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap();
    let names: Vec<(&str, i32)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
        .collect();
    assert_eq!(
        names,
        [
            ("Host", 0),
            ("Operation", 0),
            ("Schedule", 0),
            ("Phase", 0),
            ("Progress", 0),
            ("Added", 0),
            ("Snapshot", 1),
            ("Started", 1),
            ("Duration", 0),
            ("Age", 0)
        ]
    );
}
