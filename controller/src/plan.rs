//! What `holdfast plan` prints: for every host, the schedule version it would get and what
//! changes, field by field. Pure and deterministic, so the output can be posted on a pull
//! request and compared byte for byte.
//!
//! [`Plan`] is computed once and rendered as text (for people), JSON (for tools; its shape is
//! documented in the user guide, §13, and only ever grows) or Markdown (a pull request comment).
//! The retention preview ([`retention`]) is the exception: it reads the snapshots the store
//! holds and previews each forget at its next run, so it moves with the store and the clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use protocol::{HostPlan, ResolvedSchedule};
use serde::Serialize;
use serde_json::Value;

use crate::compile::{Fleet, HostKey};
use crate::cronspec;
use crate::revision::{Revision, plural};
use crate::store::{Store, StoreError, StoredPlan};
use crate::versions::{self, Versioned};

/// Bumped only if a field of the JSON form changes meaning or goes away.
const FORMAT_VERSION: u32 = 1;

/// The plan of a fleet against what a controller last applied.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub format_version: u32,
    /// Hosts of the fleet by namespace and name, then hosts it no longer declares.
    pub hosts: Vec<HostChange>,
    pub summary: Summary,
    /// With a data directory: what the next run of each forget schedule would remove and keep
    /// of the snapshots the controller knows, per host (every forget schedule with
    /// `--retention`, else those whose policy changes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<RetentionPreview>,
}

/// One forget schedule's next run on one host.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPreview {
    pub namespace: String,
    pub host: String,
    pub schedule: String,
    pub repo: String,
    /// When the preview is taken: the schedule's next run (RFC 3339), or now when it has none.
    pub at: String,
    pub remove: Vec<SnapshotRef>,
    pub keep: Vec<SnapshotRef>,
    /// Why the policy deserves a second look (it still applies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A snapshot as a plan names it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    pub short_id: String,
    pub time: String,
}

/// Why a retention preview cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] crate::retention::RetentionError),
}

/// The preview of each forget schedule of `fleet` on each host: every one (`all`), or those
/// whose forget parameters differ from the stored plan's (new ones included).
pub fn retention(
    fleet: &Fleet,
    stored: &BTreeMap<HostKey, StoredPlan>,
    store: &Store,
    all: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<RetentionPreview>, RetentionError> {
    let mut out = Vec::new();
    for (key, compiled) in &fleet.hosts {
        let before = stored.get(key).and_then(|s| s.plan.as_ref());
        for schedule in &compiled.plan.schedules {
            let Some(params) = schedule.forget.as_ref() else {
                continue;
            };
            let was = before
                .and_then(|b| b.schedules.iter().find(|s| s.name == schedule.name))
                .and_then(|s| s.forget.as_ref());
            if !all && was == Some(params) {
                continue;
            }
            let at = crate::status::next_run(schedule, now).unwrap_or(now);
            let snapshots: Vec<protocol::Snapshot> = store
                .snapshots(&key.namespace, &key.name, &schedule.repo.name)?
                .into_iter()
                .map(|k| k.snapshot)
                .collect();
            let last = store.last_success(&key.namespace, &key.name, &schedule.name)?;
            let (groups, warnings) =
                crate::snapshots::check_policy(&snapshots, &key.name, params, at, last)?;
            let by_id: HashMap<&str, &protocol::Snapshot> =
                snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
            let refs = |ids: &mut dyn Iterator<Item = &String>| -> Vec<SnapshotRef> {
                ids.map(|id| SnapshotRef {
                    short_id: crate::snapshots::short_id(id),
                    time: by_id
                        .get(id.as_str())
                        .map(|s| s.time.clone())
                        .unwrap_or_default(),
                })
                .collect()
            };
            out.push(RetentionPreview {
                namespace: key.namespace.clone(),
                host: key.name.clone(),
                schedule: schedule.name.clone(),
                repo: schedule.repo.name.clone(),
                at: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                remove: refs(&mut groups.iter().flat_map(|g| g.remove.iter())),
                keep: refs(&mut groups.iter().flat_map(|g| g.keep.iter().map(|k| &k.id))),
                warnings: warnings.iter().map(ToString::to_string).collect(),
            });
        }
    }
    Ok(out)
}

impl RetentionPreview {
    /// `web-1 forget-daily (repo nas) at …: removes 2, keeps 3`, then each snapshot and warning.
    fn text(&self) -> String {
        let mut out = format!(
            "  {} {} (repo {}) at {}: removes {}, keeps {}\n",
            HostKey::new(&self.namespace, &self.host),
            self.schedule,
            self.repo,
            self.at,
            self.remove.len(),
            self.keep.len()
        );
        for (mark, list) in [("-", &self.remove), ("=", &self.keep)] {
            for s in list {
                let _ = writeln!(out, "    {mark} {} {}", s.short_id, s.time);
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
        out
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Hosts the fleet declares (removed ones not counted).
    pub hosts: usize,
    pub new: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub removed: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    /// First seen: starts at a version.
    New,
    /// Gets a new version.
    Changed,
    /// Keeps its version.
    Unchanged,
    /// No longer declared; its agent keeps its last schedule.
    Removed,
}

/// One host: its version before and after, and what changes in its schedule.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostChange {
    pub namespace: String,
    pub name: String,
    pub status: HostStatus,
    /// The host was removed before and is declared again.
    pub returns: bool,
    /// The version its agent has now; `null` for a new host.
    pub from_version: Option<u64>,
    /// The version it gets (a removed host stays at its version).
    pub to_version: u64,
    /// `paused` when it changes, or when a new host starts paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<FieldChange>,
    /// Schedules removed, then schedules added or changed, by name.
    pub schedules: Vec<ScheduleChange>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleStatus {
    Added,
    Removed,
    Changed,
}

#[derive(Debug, Serialize)]
pub struct ScheduleChange {
    pub name: String,
    pub operation: String,
    pub status: ScheduleStatus,
    /// Every field of an added schedule; the fields that differ for a changed one; none for a
    /// removed one.
    pub fields: Vec<FieldChange>,
}

/// A field as a dotted path (`backup.paths`, `backup.preHooks[0].command`) and its JSON value
/// before and after; absent on the side where the field is not set.
#[derive(Debug, Serialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The cron text people wrote, by the namespace and name of its Schedule, so that a plan shows
/// `30 1 * * *` rather than the six-field form the agent gets.
#[derive(Debug, Default)]
pub struct WrittenCrons(HashMap<(String, String), String>);

impl WrittenCrons {
    pub fn of(revision: &Revision) -> Self {
        WrittenCrons(
            revision
                .schedules
                .iter()
                .map(|s| {
                    let key = (
                        s.metadata.namespace.clone().unwrap_or_default(),
                        s.metadata.name.clone().unwrap_or_default(),
                    );
                    (key, s.spec.cron.trim().to_string())
                })
                .collect(),
        )
    }

    /// What to show for `schedule`'s cron on a host in `namespace`: the text written, when it is
    /// what the plan carries; otherwise the plan's form, without its seconds field when zero.
    fn show(&self, namespace: &str, schedule: &ResolvedSchedule) -> String {
        let written = self
            .0
            .get(&(namespace.to_string(), schedule.name.clone()))
            .filter(|w| cronspec::parse(w).is_ok_and(|c| c.normalized == schedule.cron));
        match written {
            Some(w) => w.clone(),
            None => match schedule.cron.strip_prefix("0 ") {
                Some(five) if schedule.cron.split_whitespace().count() == 6 => five.to_string(),
                _ => schedule.cron.clone(),
            },
        }
    }
}

impl Plan {
    /// The plan of `fleet` against what the store holds (empty without a data directory);
    /// `before` and `after` are the cron texts of the applied revision and of the new one.
    pub fn new(
        fleet: &Fleet,
        stored: &BTreeMap<HostKey, StoredPlan>,
        before: &WrittenCrons,
        after: &WrittenCrons,
    ) -> Plan {
        let previous: BTreeMap<HostKey, Versioned> = stored
            .iter()
            .map(|(k, s)| (k.clone(), s.versioned.clone()))
            .collect();
        let next = versions::assign(&previous, fleet);
        let mut summary = Summary {
            hosts: fleet.hosts.len(),
            ..Summary::default()
        };
        let mut hosts = Vec::new();
        for (key, compiled) in &fleet.hosts {
            let to = next.get(key).map(|v| v.version).unwrap_or(1);
            let mut host = HostChange {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                status: HostStatus::New,
                returns: false,
                from_version: None,
                to_version: to,
                paused: None,
                schedules: Vec::new(),
            };
            let diff = Diff {
                namespace: &key.namespace,
                before,
                after,
            };
            match stored.get(key) {
                None => {
                    summary.new += 1;
                    host.paused = compiled.plan.paused.then(|| FieldChange {
                        field: "paused".into(),
                        before: None,
                        after: Some(Value::Bool(true)),
                    });
                    host.schedules = diff.schedules(None, &compiled.plan);
                }
                Some(prev) => {
                    host.returns = prev.removed;
                    host.from_version = Some(prev.versioned.version);
                    if prev.versioned.version == to {
                        summary.unchanged += 1;
                        host.status = HostStatus::Unchanged;
                    } else {
                        summary.changed += 1;
                        host.status = HostStatus::Changed;
                        let before = prev.plan.as_ref();
                        host.paused =
                            before
                                .filter(|b| b.paused != compiled.plan.paused)
                                .map(|b| FieldChange {
                                    field: "paused".into(),
                                    before: Some(Value::Bool(b.paused)),
                                    after: Some(Value::Bool(compiled.plan.paused)),
                                });
                        host.schedules = diff.schedules(before, &compiled.plan);
                    }
                }
            }
            hosts.push(host);
        }
        for (key, prev) in stored {
            if !prev.removed && !fleet.hosts.contains_key(key) {
                summary.removed += 1;
                hosts.push(HostChange {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    status: HostStatus::Removed,
                    returns: false,
                    from_version: Some(prev.versioned.version),
                    to_version: prev.versioned.version,
                    paused: None,
                    schedules: Vec::new(),
                });
            }
        }
        Plan {
            format_version: FORMAT_VERSION,
            hosts,
            summary,
            retention: Vec::new(),
        }
    }

    /// For people: one line per host, its changes indented below it, and a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for host in &self.hosts {
            let _ = writeln!(out, "Host {}: {}", host.display_name(), host.version_text());
            out.push_str(&host.details());
        }
        let _ = writeln!(out, "\n{}", self.summary_line());
        out.push_str(&self.retention_text());
        out
    }

    /// The retention previews (`-` removed, `=` kept), after a heading; nothing without any.
    fn retention_text(&self) -> String {
        if self.retention.is_empty() {
            return String::new();
        }
        let mut out = "\nRetention (the next forget run, on the snapshots the controller knows):\n"
            .to_string();
        for preview in &self.retention {
            out.push_str(&preview.text());
        }
        out
    }

    /// The JSON form, pretty-printed, with a final line break.
    pub fn json(&self) -> Result<String, serde_json::Error> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// A pull request comment: the summary, a table of the hosts whose version changes, and
    /// each one's changes in a collapsed `<details>` block.
    pub fn markdown(&self) -> String {
        let mut out = format!("### Holdfast plan\n\n{}\n", self.summary_line());
        let moving: Vec<&HostChange> = self
            .hosts
            .iter()
            .filter(|h| matches!(h.status, HostStatus::New | HostStatus::Changed))
            .collect();
        if moving.is_empty() {
            out.push_str("\nNo host's schedule version changes.\n");
        } else {
            out.push_str("\n| Host | Version | Schedules |\n| --- | --- | --- |\n");
            for host in &moving {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    table_cell(&host.display_name()),
                    table_cell(&host.version_text()),
                    table_cell(&host.schedule_counts())
                );
            }
        }
        let removed: Vec<&HostChange> = self
            .hosts
            .iter()
            .filter(|h| h.status == HostStatus::Removed)
            .collect();
        if !removed.is_empty() {
            out.push('\n');
            for host in removed {
                let _ = writeln!(out, "- `{}` {}", host.display_name(), host.version_text());
            }
        }
        for host in moving {
            let details = host.details();
            let fence = "`".repeat(longest_backtick_run(&details).max(2) + 1);
            let _ = write!(
                out,
                "\n<details>\n<summary>{}: {}</summary>\n\n{fence}text\n{details}{fence}\n\n</details>\n",
                html_escape(&host.display_name()),
                html_escape(&host.version_text()),
            );
        }
        let retention = self.retention_text();
        if !retention.is_empty() {
            let warned = self
                .retention
                .iter()
                .map(|r| r.warnings.len())
                .sum::<usize>();
            let fence = "`".repeat(longest_backtick_run(&retention).max(2) + 1);
            let _ = write!(
                out,
                "\n#### Retention\n\n{}\n\n{fence}text{retention}{fence}\n",
                match warned {
                    0 => "No warnings.".to_string(),
                    n => format!("**{}**", plural(n, "warning")),
                }
            );
        }
        out
    }

    fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{}: {} new, {} changed, {} unchanged, {} removed",
            plural(s.hosts, "host"),
            s.new,
            s.changed,
            s.unchanged,
            s.removed
        )
    }
}

impl HostChange {
    fn display_name(&self) -> String {
        HostKey::new(&self.namespace, &self.name).to_string()
    }

    /// `v1 (new)`, `v1 -> v2`, `v2 (unchanged)`, `removed (stays at v2; …)`.
    fn version_text(&self) -> String {
        let to = self.to_version;
        match (self.status, self.from_version) {
            (HostStatus::New, _) | (_, None) => format!("v{to} (new)"),
            (HostStatus::Unchanged, _) if self.returns => format!("v{to} (returns, unchanged)"),
            (HostStatus::Unchanged, _) => format!("v{to} (unchanged)"),
            (HostStatus::Changed, Some(from)) => {
                let note = if self.returns { " (returns)" } else { "" };
                format!("v{from} -> v{to}{note}")
            }
            (HostStatus::Removed, Some(from)) => {
                format!("removed (stays at v{from}; its agent keeps its last schedule)")
            }
        }
    }

    /// `2 added, 1 changed` for the Markdown table.
    fn schedule_counts(&self) -> String {
        let count = |status| self.schedules.iter().filter(|s| s.status == status).count();
        let mut parts: Vec<String> = [
            (ScheduleStatus::Added, "added"),
            (ScheduleStatus::Changed, "changed"),
            (ScheduleStatus::Removed, "removed"),
        ]
        .into_iter()
        .filter_map(|(status, word)| match count(status) {
            0 => None,
            n => Some(format!("{n} {word}")),
        })
        .collect();
        if let Some(p) = &self.paused {
            parts.push(format!("paused: {}", value_text(p.after.as_ref())));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// The indented lines under a host's line in the text form.
    fn details(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.paused {
            match &p.before {
                None => {
                    let _ = writeln!(out, "  paused: {}", value_text(p.after.as_ref()));
                }
                Some(before) => {
                    let _ = writeln!(
                        out,
                        "  paused: {before} -> {}",
                        value_text(p.after.as_ref())
                    );
                }
            }
        }
        for s in &self.schedules {
            let mark = match s.status {
                ScheduleStatus::Added => "+",
                ScheduleStatus::Removed => "-",
                ScheduleStatus::Changed => "~",
            };
            let _ = writeln!(out, "  {mark} schedule {} ({})", s.name, s.operation);
            for f in &s.fields {
                let field = &f.field;
                let _ = match (&f.before, &f.after, s.status) {
                    (_, Some(after), ScheduleStatus::Added) => {
                        writeln!(out, "      {field}: {after}")
                    }
                    (Some(before), Some(after), _) => {
                        writeln!(out, "      {field}: {before} -> {after}")
                    }
                    (Some(before), None, _) => writeln!(out, "      - {field}: {before}"),
                    (None, Some(after), _) => writeln!(out, "      + {field}: {after}"),
                    (None, None, _) => Ok(()),
                };
            }
        }
        out
    }
}

fn value_text(value: Option<&Value>) -> String {
    value.map(Value::to_string).unwrap_or_default()
}

/// Compares the schedules of one host, showing crons as written.
struct Diff<'a> {
    namespace: &'a str,
    before: &'a WrittenCrons,
    after: &'a WrittenCrons,
}

impl Diff<'_> {
    fn schedules(&self, before: Option<&HostPlan>, after: &HostPlan) -> Vec<ScheduleChange> {
        let old: BTreeMap<&str, &ResolvedSchedule> = before
            .map(|p| p.schedules.iter().map(|s| (s.name.as_str(), s)).collect())
            .unwrap_or_default();
        let new: BTreeMap<&str, &ResolvedSchedule> = after
            .schedules
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut out = Vec::new();
        for (name, schedule) in &old {
            if !new.contains_key(name) {
                out.push(ScheduleChange {
                    name: name.to_string(),
                    operation: schedule.operation.to_string(),
                    status: ScheduleStatus::Removed,
                    fields: Vec::new(),
                });
            }
        }
        for (name, schedule) in &new {
            // Compared in the form the agent gets; crons shown as written.
            let after_cron = self.after.show(self.namespace, schedule);
            let b = flatten(schedule);
            let (status, fields) = match old.get(name) {
                None => (
                    ScheduleStatus::Added,
                    b.into_iter()
                        .map(|(field, value)| FieldChange {
                            before: None,
                            after: Some(shown(&field, value, &after_cron)),
                            field,
                        })
                        .collect(),
                ),
                Some(prev) if prev != schedule => {
                    let before_cron = self.before.show(self.namespace, prev);
                    let a = flatten(prev);
                    let mut fields = Vec::new();
                    for (field, value) in &a {
                        match b.get(field) {
                            Some(v) if v == value => {}
                            other => fields.push(FieldChange {
                                field: field.clone(),
                                before: Some(shown(field, value.clone(), &before_cron)),
                                after: other.map(|v| shown(field, v.clone(), &after_cron)),
                            }),
                        }
                    }
                    for (field, value) in &b {
                        if !a.contains_key(field) {
                            fields.push(FieldChange {
                                field: field.clone(),
                                before: None,
                                after: Some(shown(field, value.clone(), &after_cron)),
                            });
                        }
                    }
                    (ScheduleStatus::Changed, fields)
                }
                Some(_) => continue,
            };
            out.push(ScheduleChange {
                name: name.to_string(),
                operation: schedule.operation.to_string(),
                status,
                fields,
            });
        }
        out
    }
}

/// `value`, or for the `cron` field the text to show for it.
fn shown(field: &str, value: Value, cron: &str) -> Value {
    if field == "cron" {
        Value::String(cron.to_string())
    } else {
        value
    }
}

/// A schedule's fields as `dotted.path -> JSON value`, lists of plain values kept whole.
fn flatten(schedule: &ResolvedSchedule) -> BTreeMap<String, Value> {
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

fn flatten_into(out: &mut BTreeMap<String, Value>, path: String, value: &Value) {
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
            out.insert(path, value.clone());
        }
    }
}

/// Text safe inside a Markdown table cell.
fn table_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Text safe inside HTML (a `<summary>`).
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The longest run of backticks, so that a code fence around `text` is longer.
fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(short_id: &str, time: &str) -> SnapshotRef {
        SnapshotRef {
            short_id: short_id.into(),
            time: time.into(),
        }
    }

    fn planned() -> Plan {
        let mut plan = Plan::new(
            &Fleet::default(),
            &BTreeMap::new(),
            &WrittenCrons::default(),
            &WrittenCrons::default(),
        );
        plan.retention = vec![RetentionPreview {
            namespace: "default".into(),
            host: "web-1".into(),
            schedule: "keep-one".into(),
            repo: "nas".into(),
            at: "2026-12-06T04:00:00Z".into(),
            remove: vec![snapshot("0b1c2d3e", "2026-11-20T01:31:07+01:00")],
            keep: vec![snapshot("1a2b3c4d", "2026-12-01T01:34:12+01:00")],
            warnings: vec!["the policy removes every snapshot but one (1 removed, 1 kept)".into()],
        }];
        plan
    }

    #[test]
    fn the_retention_preview_reads_in_text_and_markdown() {
        let text = planned().text();
        assert!(
            text.ends_with(
                "\nRetention (the next forget run, on the snapshots the controller knows):\n  \
                 web-1 keep-one (repo nas) at 2026-12-06T04:00:00Z: removes 1, keeps 1\n    \
                 - 0b1c2d3e 2026-11-20T01:31:07+01:00\n    \
                 = 1a2b3c4d 2026-12-01T01:34:12+01:00\n    \
                 warning: the policy removes every snapshot but one (1 removed, 1 kept)\n"
            ),
            "{text}"
        );
        let markdown = planned().markdown();
        assert!(
            markdown.contains("\n#### Retention\n\n**1 warning**\n"),
            "{markdown}"
        );
        assert!(markdown.contains("```text\nRetention"), "{markdown}");
        assert!(markdown.contains("- 0b1c2d3e"), "{markdown}");
        // Without previews, nothing about retention.
        let mut none = planned();
        none.retention.clear();
        assert!(!none.text().contains("Retention"));
        assert!(!none.markdown().contains("Retention"));
        assert!(!none.json().unwrap().contains("retention"));
    }
}
