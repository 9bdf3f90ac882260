//! What `holdfast plan` prints: for every host, the schedule version it would get and what
//! changes, field by field. Pure and deterministic, so the output can be posted on a pull
//! request and compared byte for byte.

use std::collections::BTreeMap;
use std::fmt::Write;

use protocol::{HostPlan, ResolvedSchedule};
use serde_json::Value;

use crate::compile::{Fleet, HostKey};
use crate::revision::plural;
use crate::store::StoredPlan;
use crate::versions::{self, Versioned};

/// Renders the plan of `fleet` against what the store holds (empty without a data directory).
pub fn render(fleet: &Fleet, stored: &BTreeMap<HostKey, StoredPlan>) -> String {
    let previous: BTreeMap<HostKey, Versioned> = stored
        .iter()
        .map(|(k, s)| (k.clone(), s.versioned.clone()))
        .collect();
    let next = versions::assign(&previous, fleet);
    let mut out = String::new();
    let (mut new, mut changed, mut unchanged, mut removed) = (0, 0, 0, 0);
    for (key, compiled) in &fleet.hosts {
        let to = next.get(key).map(|v| v.version).unwrap_or(1);
        let before = stored.get(key);
        match before {
            None => {
                new += 1;
                let _ = writeln!(out, "Host {key}: v{to} (new)");
                if compiled.plan.paused {
                    let _ = writeln!(out, "  paused: true");
                }
                describe_changes(&mut out, None, &compiled.plan);
            }
            Some(prev) if prev.versioned.version == to => {
                unchanged += 1;
                let note = if prev.removed {
                    "returns, unchanged"
                } else {
                    "unchanged"
                };
                let _ = writeln!(out, "Host {key}: v{to} ({note})");
            }
            Some(prev) => {
                changed += 1;
                let note = if prev.removed { " (returns)" } else { "" };
                let _ = writeln!(
                    out,
                    "Host {key}: v{} -> v{to}{note}",
                    prev.versioned.version
                );
                describe_changes(&mut out, prev.plan.as_ref(), &compiled.plan);
            }
        }
    }
    for (key, prev) in stored {
        if !prev.removed && !fleet.hosts.contains_key(key) {
            removed += 1;
            let _ = writeln!(
                out,
                "Host {key}: removed (stays at v{}; its agent keeps its last schedule)",
                prev.versioned.version
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{}: {new} new, {changed} changed, {unchanged} unchanged, {removed} removed",
        plural(fleet.hosts.len(), "host")
    );
    out
}

fn describe_changes(out: &mut String, before: Option<&HostPlan>, after: &HostPlan) {
    if let Some(before) = before
        && before.paused != after.paused
    {
        let _ = writeln!(out, "  paused: {} -> {}", before.paused, after.paused);
    }
    let old: BTreeMap<&str, &ResolvedSchedule> = before
        .map(|p| p.schedules.iter().map(|s| (s.name.as_str(), s)).collect())
        .unwrap_or_default();
    let new: BTreeMap<&str, &ResolvedSchedule> = after
        .schedules
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    for (name, schedule) in &old {
        if !new.contains_key(name) {
            let _ = writeln!(out, "  - schedule {name} ({})", schedule.operation);
        }
    }
    for (name, schedule) in &new {
        match old.get(name) {
            None => {
                let _ = writeln!(out, "  + schedule {name} ({})", schedule.operation);
                for (field, value) in flatten(schedule) {
                    let _ = writeln!(out, "      {field}: {value}");
                }
            }
            Some(prev) if prev != schedule => {
                let _ = writeln!(out, "  ~ schedule {name} ({})", schedule.operation);
                let (a, b) = (flatten(prev), flatten(schedule));
                for (field, value) in &a {
                    match b.get(field) {
                        None => {
                            let _ = writeln!(out, "      - {field}: {value}");
                        }
                        Some(v) if v != value => {
                            let _ = writeln!(out, "      {field}: {value} -> {v}");
                        }
                        Some(_) => {}
                    }
                }
                for (field, value) in &b {
                    if !a.contains_key(field) {
                        let _ = writeln!(out, "      + {field}: {value}");
                    }
                }
            }
            Some(_) => {}
        }
    }
}

/// A schedule's fields as `dotted.path -> JSON value`, lists of plain values kept whole.
fn flatten(schedule: &ResolvedSchedule) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(Value::Object(map)) = serde_json::to_value(schedule) {
        for (k, v) in map {
            if k != "name" {
                flatten_into(&mut out, k, &v);
            }
        }
    }
    out
}

fn flatten_into(out: &mut BTreeMap<String, String>, path: String, value: &Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                flatten_into(out, format!("{path}.{k}"), v);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(out, format!("{path}[{i}]"), v);
            }
        }
        _ => {
            out.insert(path, value.to_string());
        }
    }
}
