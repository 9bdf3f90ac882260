//! `meta.k8s.io/v1` Tables, the form `kubectl get` asks for: the CRD's printer columns, with
//! cells made the way the API server makes them for custom resources (a `date` column shows an
//! age such as `5m12s`, a missing value is null and prints as `<none>`).

use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};
use serde_json_path::JsonPath;

/// The description the API server gives the `Name` column.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// One column of a Table.
pub struct Column {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    /// Where the cell's value is in the object; `None` for the name column.
    path: Option<JsonPath>,
    /// The CRD's JSONPath, as written there.
    pub json_path: String,
}

impl Column {
    /// The first column of every Table.
    pub fn name() -> Column {
        Column {
            name: "Name".into(),
            type_: "string".into(),
            format: "name".into(),
            description: NAME_DESCRIPTION.into(),
            priority: 0,
            path: None,
            json_path: ".metadata.name".into(),
        }
    }

    /// A column whose cells the caller makes (the API server's columns of a built-in kind).
    pub fn computed(name: &str, type_: &str, priority: i32, description: &str) -> Column {
        Column {
            name: name.into(),
            type_: type_.into(),
            format: String::new(),
            description: description.into(),
            priority,
            path: None,
            json_path: String::new(),
        }
    }

    /// A printer column of a CRD. Its JSONPath (`.status.phase`, with filters such as
    /// `[?(@.type=="Ready")]`) is read as RFC 9535 after a leading `$`; a path that does not
    /// parse gives empty cells (a unit test keeps every column's path parsing).
    pub fn from_crd(c: &CustomResourceColumnDefinition) -> Column {
        Column {
            name: c.name.clone(),
            type_: c.type_.clone(),
            format: c.format.clone().unwrap_or_default(),
            description: c.description.clone().unwrap_or_default(),
            priority: c.priority.unwrap_or(0),
            path: JsonPath::parse(&format!("${}", c.json_path)).ok(),
            json_path: c.json_path.clone(),
        }
    }

    fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }

    /// The cell of `object` in this column.
    pub fn cell(&self, object: &Value, now: DateTime<Utc>) -> Value {
        let Some(path) = &self.path else {
            return object["metadata"]["name"].clone();
        };
        let Some(value) = path.query(object).first() else {
            return Value::Null;
        };
        match (self.type_.as_str(), value) {
            (_, Value::Null) => Value::Null,
            ("string", Value::String(_)) => value.clone(),
            ("string", other) => Value::String(other.to_string()),
            ("integer", Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Value::Null, Value::from),
            ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => value.clone(),
            ("date", Value::String(text)) => match DateTime::parse_from_rfc3339(text) {
                Ok(t) => Value::String(age(now - t.with_timezone(&Utc))),
                Err(_) => Value::String("<invalid>".into()),
            },
            _ => Value::Null,
        }
    }
}

/// How much of each object a row carries (`includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Include {
    None,
    /// A `PartialObjectMetadata`: what `kubectl get -A` and `--show-labels` read.
    #[default]
    Metadata,
    Object,
}

impl Include {
    pub fn parse(text: &str) -> Option<Include> {
        match text {
            "None" => Some(Include::None),
            "Metadata" => Some(Include::Metadata),
            "Object" => Some(Include::Object),
            _ => None,
        }
    }
}

/// A Table of `objects`. Watch events carry the column definitions too: the API server leaves
/// them out after the first event, but every `kubectl` release prints a table the same way
/// with them, and not every release without.
pub fn table(
    api_version: &str,
    columns: &[Column],
    objects: &[&Value],
    include: Include,
    resource_version: Option<i64>,
    now: DateTime<Utc>,
) -> Value {
    let rows = objects
        .iter()
        .map(|object| {
            (
                columns.iter().map(|c| c.cell(object, now)).collect(),
                *object,
            )
        })
        .collect();
    table_of(api_version, columns, rows, include, resource_version)
}

/// A Table of rows whose cells are made: each row's cells and the object it shows.
pub fn table_of(
    api_version: &str,
    columns: &[Column],
    rows: Vec<(Vec<Value>, &Value)>,
    include: Include,
    resource_version: Option<i64>,
) -> Value {
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|(cells, object)| {
            let mut row = json!({ "cells": cells });
            match include {
                Include::None => {}
                Include::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": api_version,
                        "metadata": object["metadata"],
                    })
                }
                Include::Object => row["object"] = object.clone(),
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = Value::String(rv.to_string());
    }
    let definitions: Vec<Value> = columns.iter().map(Column::definition).collect();
    json!({
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// An age as `kubectl` prints one (Kubernetes' `duration.HumanDuration`): `45s`, `5m12s`,
/// `3h20m`, `2d4h`, `400d`, `2y30d`.
pub fn age(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            days => format!("{}y{days}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;
    use crate::web::kubeapi::discovery;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn host() -> Value {
        json!({
            "apiVersion": "holdfast.dev/v1alpha1",
            "kind": "Host",
            "metadata": {
                "name": "web-1", "namespace": "default", "uid": "u-1",
                "creationTimestamp": "2026-11-22T11:54:48Z", "labels": {"role": "web"}
            },
            "spec": {"defaultRepo": "local"},
            "status": {
                "online": true,
                "appliedScheduleVersion": 3,
                "desiredScheduleVersion": 4,
                "conditions": [
                    {"type": "AgentConnected", "status": "True"},
                    {"type": "ScheduleInSync", "status": "False"}
                ],
                "lastBackup": {"time": "2026-11-20T09:00:00Z", "phase": "Succeeded", "backup": "b"},
                "agentVersion": "0.1.0",
                "os": "linux",
                "arch": "amd64",
                "lastSeen": "2026-11-22T11:59:00Z"
            }
        })
    }

    #[test]
    fn every_printer_column_path_parses() {
        for kind in Kind::ALL {
            for column in &discovery::of(kind).columns {
                assert!(
                    column.path.is_some() || column.name == "Name",
                    "{kind} column {} has a JSONPath that does not parse: {}",
                    column.name,
                    column.json_path
                );
            }
        }
    }

    #[test]
    fn host_cells_follow_the_column_types() {
        let columns = &discovery::of(Kind::Host).columns;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Online",
                "Applied",
                "Desired",
                "In sync",
                "Last backup",
                "Age",
                "Agent",
                "OS",
                "Arch",
                "Last seen"
            ]
        );
        let wide: Vec<&str> = columns
            .iter()
            .filter(|c| c.priority == 1)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(wide, ["Agent", "OS", "Arch", "Last seen"], "-o wide only");
        let host = host();
        let cells: Vec<Value> = columns.iter().map(|c| c.cell(&host, now())).collect();
        assert_eq!(
            cells,
            [
                json!("web-1"),
                json!(true),
                json!(3),
                json!(4),
                json!("False"),
                json!("2d3h"),
                json!("5m12s"),
                json!("0.1.0"),
                json!("linux"),
                json!("amd64"),
                json!("60s")
            ]
        );
    }

    #[test]
    fn a_missing_value_is_null_and_a_bad_date_is_invalid() {
        let columns = &discovery::of(Kind::Host).columns;
        let bare = json!({"metadata": {"name": "web-2", "creationTimestamp": "yesterday"}});
        let cells: Vec<Value> = columns.iter().map(|c| c.cell(&bare, now())).collect();
        assert_eq!(cells[1], Value::Null);
        assert_eq!(cells[4], Value::Null);
        assert_eq!(cells[6], json!("<invalid>"));
    }

    #[test]
    fn a_table_has_definitions_rows_and_partial_metadata() {
        let columns = &discovery::of(Kind::Host).columns;
        let host = host();
        let t = table(
            "meta.k8s.io/v1",
            columns,
            &[&host],
            Include::Metadata,
            Some(42),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
        assert_eq!(t["columnDefinitions"][0]["format"], "name");
        assert_eq!(t["columnDefinitions"][1]["type"], "boolean");
        assert_eq!(t["rows"][0]["cells"][0], "web-1");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "default");
        assert!(t["rows"][0]["object"].get("spec").is_none());

        let bare = table(
            "meta.k8s.io/v1",
            columns,
            &[&host],
            Include::None,
            None,
            now(),
        );
        assert!(bare["metadata"].get("resourceVersion").is_none());
        assert!(bare["rows"][0].get("object").is_none());
        let full = table(
            "meta.k8s.io/v1",
            columns,
            &[&host],
            Include::Object,
            None,
            now(),
        );
        assert_eq!(full["rows"][0]["object"]["spec"]["defaultRepo"], "local");
    }

    #[test]
    fn backup_wide_columns_have_a_priority() {
        let columns = &discovery::of(Kind::Backup).columns;
        let wide: Vec<&str> = columns
            .iter()
            .filter(|c| c.priority > 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(wide, ["Snapshot", "Started"]);
    }

    #[test]
    fn ages_read_like_kubectl() {
        let s = chrono::Duration::seconds;
        let cases = [
            (s(-5), "<invalid>"),
            (s(-1), "0s"),
            (s(0), "0s"),
            (s(119), "119s"),
            (s(120), "2m"),
            (s(312), "5m12s"),
            (s(600), "10m"),
            (s(179 * 60 + 59), "179m"),
            (s(3 * 3600), "3h"),
            (s(3 * 3600 + 20 * 60), "3h20m"),
            (s(8 * 3600 + 59), "8h"),
            (s(47 * 3600), "47h"),
            (s(48 * 3600), "2d"),
            (s(52 * 3600), "2d4h"),
            (s(400 * 86400), "400d"),
            (s(760 * 86400), "2y30d"),
            (s(730 * 86400), "2y"),
            (s(9 * 365 * 86400), "9y"),
        ];
        for (d, want) in cases {
            assert_eq!(age(d), want, "age of {d:?}");
        }
    }
}
