//! Which alert conditions hold, read from the status of one object at a time (and, for a
//! schedule, its run summaries; for a repo, its sizes of the last day). Each object is a
//! [`Subject`]: its status decides every alert about it, so an object whose status did not
//! change need not be looked at again. Values in, values out; which of them a Notifier sends,
//! and when, is decided elsewhere.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

use crate::facts::SizePoint;
use crate::resources::{Host, NotifierEvent, Phase, Repo, Schedule};
use crate::revision::{name_of, namespace_of};
use crate::summaries::RunSummaries;

/// The object whose status decides an alert.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    Host {
        namespace: String,
        name: String,
    },
    Schedule {
        namespace: String,
        name: String,
    },
    Repo {
        namespace: String,
        name: String,
    },
    /// The desired state as a whole: whether its newest revision was rejected.
    Revision,
}

impl Subject {
    /// What the keys of its alerts begin with, so that they sort together.
    pub fn prefix(&self) -> String {
        match self {
            Subject::Host { namespace, name } => format!("Host/{namespace}/{name}/"),
            Subject::Schedule { namespace, name } => format!("Schedule/{namespace}/{name}/"),
            Subject::Repo { namespace, name } => format!("Repo/{namespace}/{name}/"),
            Subject::Revision => "Revision/".into(),
        }
    }
}

/// How urgent an alert is, as the shipped Prometheus rules rate the same conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

/// One condition that holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub event: NotifierEvent,
    /// Empty for a rejected revision of files mode, which concerns every namespace.
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// When the condition began.
    pub since: DateTime<Utc>,
    /// Why, in one line.
    pub reason: String,
    /// The Backup record whose page explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// For `RepoGrowth`: the size now over the smallest size in the day before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<f64>,
}

impl Alert {
    fn new(event: NotifierEvent, namespace: &str, since: DateTime<Utc>, reason: String) -> Alert {
        Alert {
            event,
            namespace: namespace.into(),
            host: None,
            schedule: None,
            repo: None,
            since,
            reason,
            run: None,
            growth: None,
        }
    }

    pub fn subject(&self) -> Subject {
        let namespace = self.namespace.clone();
        let name = |n: &Option<String>| n.clone().unwrap_or_default();
        match self.event {
            NotifierEvent::AgentOffline | NotifierEvent::DriftStuck => Subject::Host {
                namespace,
                name: name(&self.host),
            },
            NotifierEvent::RunFailed
            | NotifierEvent::RunPartiallyFailed
            | NotifierEvent::ScheduleStale => Subject::Schedule {
                namespace,
                name: name(&self.schedule),
            },
            NotifierEvent::CheckFailed | NotifierEvent::RepoGrowth => Subject::Repo {
                namespace,
                name: name(&self.repo),
            },
            NotifierEvent::RevisionRejected => Subject::Revision,
        }
    }

    /// Names the alert among all others: its subject's prefix, the host (of a schedule) and
    /// the event.
    pub fn key(&self) -> String {
        let mut key = self.subject().prefix();
        match self.event {
            NotifierEvent::RunFailed
            | NotifierEvent::RunPartiallyFailed
            | NotifierEvent::ScheduleStale => {
                key.push_str(self.host.as_deref().unwrap_or_default());
                key.push('/');
            }
            NotifierEvent::RevisionRejected => {
                key.push_str(&self.namespace);
                key.push('/');
            }
            _ => {}
        }
        key.push_str(self.event.as_str());
        key
    }

    pub fn severity(&self) -> Severity {
        match self.event {
            NotifierEvent::ScheduleStale | NotifierEvent::CheckFailed => Severity::Critical,
            _ => Severity::Warning,
        }
    }

    /// What it is about, in a few words: `nightly on web-1`, `host web-1`, `repo nas`.
    pub fn about(&self) -> String {
        match (&self.schedule, &self.host, &self.repo) {
            (Some(schedule), Some(host), _) => format!("{schedule} on {host}"),
            (None, Some(host), _) => format!("host {host}"),
            (_, _, Some(repo)) => format!("repo {repo}"),
            _ => "the desired state".into(),
        }
    }
}

/// The condition of `kind` in a status, if it has one.
fn condition<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == kind)
}

/// `AgentOffline` and `DriftStuck` from a Host's status, each since its condition last changed:
/// offline since `AgentConnected` turned False, drifting since `ScheduleInSync` turned False
/// or the agent connected, whichever came later (an agent that just reconnected gets its
/// version within moments).
pub fn of_host(host: &Host) -> Vec<Alert> {
    let Some(status) = &host.status else {
        return Vec::new();
    };
    let (namespace, name) = (namespace_of(host), name_of(host));
    let connected = condition(&status.conditions, "AgentConnected");
    let since = |c: &Condition| crate::time::chrono(&c.last_transition_time);
    let mut out = Vec::new();
    match (status.online, connected) {
        (Some(false), Some(c)) => {
            let reason = match &status.last_seen {
                Some(seen) => format!(
                    "{}; last seen {}",
                    c.message,
                    crate::time::chrono(seen).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => c.message.clone(),
            };
            let mut alert = Alert::new(NotifierEvent::AgentOffline, namespace, since(c), reason);
            alert.host = Some(name.into());
            out.push(alert);
        }
        (Some(true), Some(c)) => {
            if let Some(sync) =
                condition(&status.conditions, "ScheduleInSync").filter(|s| s.status == "False")
            {
                let reason = status
                    .drift_reason
                    .clone()
                    .unwrap_or_else(|| sync.message.clone());
                let from = since(sync).max(since(c));
                let mut alert = Alert::new(NotifierEvent::DriftStuck, namespace, from, reason);
                alert.host = Some(name.into());
                out.push(alert);
            }
        }
        _ => {}
    }
    out
}

/// `ScheduleStale`, `RunFailed` and `RunPartiallyFailed` of every host a Schedule runs on, from
/// its status and the newest run on each host that ran to an end.
pub fn of_schedule(schedule: &Schedule, runs: &RunSummaries, now: DateTime<Utc>) -> Vec<Alert> {
    let Some(status) = &schedule.status else {
        return Vec::new();
    };
    let (namespace, name) = (namespace_of(schedule), name_of(schedule));
    let mut out = Vec::new();
    for host in &status.hosts {
        let about = |mut alert: Alert| {
            alert.schedule = Some(name.into());
            alert.host = Some(host.host.clone());
            alert
        };
        if host.stale {
            let reason = match &host.last_successful_time {
                Some(t) => format!(
                    "no successful run since {}",
                    crate::time::chrono(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                None => "no successful run since the schedule was created".into(),
            };
            out.push(about(Alert::new(
                NotifierEvent::ScheduleStale,
                namespace,
                now,
                reason,
            )));
        }
        let Some(summary) = runs.schedule(namespace, name, &host.host) else {
            continue;
        };
        let event = match summary.last_ended {
            Some((_, Phase::Failed)) => NotifierEvent::RunFailed,
            Some((_, Phase::PartiallyFailed)) => NotifierEvent::RunPartiallyFailed,
            _ => continue,
        };
        let (at, _) = summary.last_ended.unwrap_or((now, Phase::Failed));
        let (record, said) = summary.last_ended_run.clone().unwrap_or_default();
        let reason = said.unwrap_or_else(|| match event {
            NotifierEvent::RunFailed => "the run failed".into(),
            _ => "the snapshot lacks files that could not be read".into(),
        });
        let mut alert = about(Alert::new(event, namespace, at, reason));
        alert.run = (!record.is_empty()).then_some(record);
        out.push(alert);
    }
    out
}

/// A day, the window repo growth is measured over.
const DAY: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// `CheckFailed` from a Repo's last check, and `RepoGrowth` from its `sizes` (oldest first):
/// the newest size over the smallest one in the day before it, whenever it grew.
pub fn of_repo(repo: &Repo, sizes: &[SizePoint]) -> Vec<Alert> {
    let (namespace, name) = (namespace_of(repo), name_of(repo));
    let mut out = Vec::new();
    let about = |mut alert: Alert| {
        alert.repo = Some(name.into());
        alert
    };
    if let Some(check) = repo.status.as_ref().and_then(|s| s.last_check.as_ref())
        && !check.passed
    {
        let reason = check
            .message
            .clone()
            .unwrap_or_else(|| "restic check found errors".into());
        let mut alert = about(Alert::new(
            NotifierEvent::CheckFailed,
            namespace,
            crate::time::chrono(&check.time),
            reason,
        ));
        alert.run = check.backup.clone();
        out.push(alert);
    }
    if let Some(newest) = sizes.last() {
        let smallest = sizes
            .iter()
            .filter(|p| p.at >= newest.at - DAY)
            .map(|p| p.total_size)
            .min()
            .unwrap_or(newest.total_size);
        if smallest > 0 && newest.total_size > smallest {
            let growth = newest.total_size as f64 / smallest as f64;
            let reason = format!(
                "grew from {} to {} within a day ({:.1}×)",
                crate::status::human_bytes(smallest),
                crate::status::human_bytes(newest.total_size),
                growth
            );
            let mut alert = about(Alert::new(
                NotifierEvent::RepoGrowth,
                namespace,
                newest.at,
                reason,
            ));
            alert.growth = Some(growth);
            out.push(alert);
        }
    }
    out
}

/// A revision that was rejected: in files mode the directory as a whole (no namespace), in
/// Kubernetes mode the objects at fault in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub namespace: Option<String>,
    pub at: DateTime<Utc>,
    pub errors: Vec<String>,
}

/// `RevisionRejected`, one per rejection.
pub fn of_rejections(rejections: &[Rejection]) -> Vec<Alert> {
    rejections
        .iter()
        .map(|r| {
            let first = r.errors.first().map(String::as_str).unwrap_or("invalid");
            let reason = match r.errors.len() {
                0 | 1 => first.to_string(),
                n => format!("{first} (and {} more)", n - 1),
            };
            Alert::new(
                NotifierEvent::RevisionRejected,
                r.namespace.as_deref().unwrap_or_default(),
                r.at,
                reason,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).expect("a time")
    }

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("a fixture object")
    }

    fn time(minute: i64) -> String {
        at(minute).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn host(online: bool, in_sync: bool) -> Host {
        object(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "namespace": "fleet"},
            "spec": {},
            "status": {
                "online": online,
                "lastSeen": time(3),
                "driftReason": if in_sync { None } else { Some("version 4 was sent; the agent runs version 3") },
                "conditions": [
                    {"type": "AgentConnected", "status": if online { "True" } else { "False" },
                     "reason": "x", "message": if online { "the agent is connected" } else { "the agent is not connected" },
                     "lastTransitionTime": time(5)},
                    {"type": "ScheduleInSync", "status": if in_sync { "True" } else { "False" },
                     "reason": "x", "message": "m", "lastTransitionTime": time(1)},
                ],
            },
        }))
    }

    #[test]
    fn an_offline_host_is_offline_since_its_agent_disconnected() {
        let alerts = of_host(&host(false, false));
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.event, NotifierEvent::AgentOffline);
        assert_eq!(a.since, at(5));
        assert_eq!(a.key(), "Host/fleet/web-1/AgentOffline");
        assert!(
            a.reason.contains("not connected") && a.reason.contains(&time(3)),
            "{}",
            a.reason
        );
    }

    #[test]
    fn a_connected_host_drifts_since_it_connected_when_that_came_later() {
        let alerts = of_host(&host(true, false));
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].event, NotifierEvent::DriftStuck);
        assert_eq!(alerts[0].since, at(5), "connected at 5, drifting since 1");
        assert!(alerts[0].reason.contains("version 4 was sent"));
        assert!(of_host(&host(true, true)).is_empty());
    }

    fn schedule(hosts: serde_json::Value) -> Schedule {
        object(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Schedule",
            "metadata": {"name": "nightly", "namespace": "fleet"},
            "spec": {"operation": "backup", "cron": "0 1 * * *", "hosts": ["web-1", "web-2"], "paths": ["/srv"]},
            "status": {"hosts": hosts},
        }))
    }

    fn run(
        name: &str,
        host: &str,
        phase: Phase,
        minute: i64,
        message: &str,
    ) -> crate::runs::RunRecord {
        let mut r = crate::runs::RunRecord::pending(
            crate::resources::Kind::Backup,
            &crate::compile::HostKey::new("fleet", host),
            name.into(),
            name.into(),
            protocol::JobOperation::Backup,
            at(minute - 1),
        );
        r.schedule = Some("nightly".into());
        r.phase = phase;
        r.scheduled_at = Some(at(minute - 1));
        r.finished_at = Some(at(minute));
        r.message = Some(message.into());
        r
    }

    #[test]
    fn a_schedule_names_each_stale_or_failing_host_with_its_last_ended_run() {
        let runs = RunSummaries::of(&[
            run(
                "nightly-web-1-a",
                "web-1",
                Phase::Failed,
                10,
                "restic exited 1: repository is locked",
            ),
            run("nightly-web-1-b", "web-1", Phase::Missed, 20, "missed"),
            run(
                "nightly-web-2-a",
                "web-2",
                Phase::PartiallyFailed,
                10,
                "2 files could not be read",
            ),
            run("nightly-web-2-b", "web-2", Phase::Succeeded, 30, "ok"),
        ]);
        let s = schedule(serde_json::json!([
            {"host": "web-1", "stale": true, "lastSuccessfulTime": time(0)},
            {"host": "web-2", "stale": false},
        ]));
        let alerts = of_schedule(&s, &runs, at(40));
        let got: Vec<(String, Option<&str>, &str)> = alerts
            .iter()
            .map(|a| (a.key(), a.run.as_deref(), a.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Schedule/fleet/nightly/web-1/ScheduleStale".to_string(),
                    None,
                    format!("no successful run since {}", time(0)).as_str()
                ),
                (
                    "Schedule/fleet/nightly/web-1/RunFailed".to_string(),
                    Some("nightly-web-1-a"),
                    "restic exited 1: repository is locked"
                ),
            ],
            "a missed run does not end a failure; a success does"
        );
        assert_eq!(alerts[0].severity(), Severity::Critical);
        assert_eq!(alerts[1].since, at(10));
        assert_eq!(alerts[1].about(), "nightly on web-1");
    }

    fn size(minute: i64, bytes: u64) -> SizePoint {
        SizePoint {
            at: at(minute),
            total_size: bytes,
            uncompressed_size: None,
            snapshots: 1,
        }
    }

    #[test]
    fn growth_is_the_newest_size_over_the_smallest_of_the_day_before_it() {
        let repo: Repo = object(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Repo",
            "metadata": {"name": "nas", "namespace": "fleet"},
            "spec": {"url": "/srv/nas", "password": {"file": "/p"}},
            "status": {"lastCheck": {"time": time(5), "passed": false, "backup": "check-1", "message": "pack 1234 is damaged"}},
        }));
        // 100 bytes two days ago does not count; 400 within the day does.
        let sizes = [size(-2 * 24 * 60, 100), size(-60, 400), size(0, 1000)];
        let alerts = of_repo(&repo, &sizes);
        let keys: Vec<String> = alerts.iter().map(Alert::key).collect();
        assert_eq!(
            keys,
            ["Repo/fleet/nas/CheckFailed", "Repo/fleet/nas/RepoGrowth"]
        );
        assert_eq!(alerts[0].run.as_deref(), Some("check-1"));
        assert_eq!(alerts[0].reason, "pack 1234 is damaged");
        assert_eq!(alerts[1].growth, Some(2.5));
        assert!(alerts[1].reason.contains("(2.5×)"), "{}", alerts[1].reason);
        assert!(
            of_repo(&repo, &[size(0, 10), size(5, 10)]).len() == 1,
            "no growth"
        );
    }

    #[test]
    fn a_rejection_names_its_first_error_and_counts_the_rest() {
        let alerts = of_rejections(&[Rejection {
            namespace: None,
            at: at(0),
            errors: vec!["a.yaml:3:1: bad".into(), "b.yaml:1:1: worse".into()],
        }]);
        assert_eq!(alerts[0].reason, "a.yaml:3:1: bad (and 1 more)");
        assert_eq!(alerts[0].key(), "Revision//RevisionRejected");
        assert_eq!(alerts[0].subject(), Subject::Revision);
    }
}
