//! What a notification says, short enough for a phone: a title naming the event and what it
//! is about, a line saying why, and a link to the page that explains it; and the status a
//! Notifier shows of its deliveries.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::alerts::Alert;
use crate::resources::{Delivery, DeliveryError, NotifierEvent, NotifierStatus};

/// Whether a notification says an alert began (or still holds) or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// `[FIRING] RunFailed: nightly on web-1`.
pub fn title(alert: &Alert, state: State) -> String {
    let tag = match state {
        State::Firing => "FIRING",
        State::Resolved => "RESOLVED",
    };
    format!("[{tag}] {}: {}", alert.event, alert.about())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One sentence: what holds (or held), of which object, and why.
pub fn summary(alert: &Alert) -> String {
    let host = alert.host.as_deref().unwrap_or_default();
    let schedule = alert.schedule.as_deref().unwrap_or_default();
    let repo = alert.repo.as_deref().unwrap_or_default();
    let ns = if alert.namespace.is_empty() {
        String::new()
    } else {
        format!(" (namespace {})", alert.namespace)
    };
    let reason = &alert.reason;
    match alert.event {
        NotifierEvent::RunFailed => {
            format!("The last run of schedule {schedule} on host {host}{ns} failed: {reason}")
        }
        NotifierEvent::RunPartiallyFailed => format!(
            "The last run of schedule {schedule} on host {host}{ns} partially failed: {reason}"
        ),
        NotifierEvent::ScheduleStale => {
            format!("Schedule {schedule} is stale on host {host}{ns}: {reason}")
        }
        NotifierEvent::AgentOffline => format!("The agent of host {host}{ns} is offline: {reason}"),
        NotifierEvent::DriftStuck => {
            format!("Host {host}{ns} does not run its desired schedule version: {reason}")
        }
        NotifierEvent::CheckFailed => {
            format!("restic check found errors in repo {repo}{ns}: {reason}")
        }
        NotifierEvent::RevisionRejected => format!(
            "The newest revision of the desired state{ns} is rejected, and the one before stays in force: {reason}"
        ),
        NotifierEvent::RepoGrowth => format!("Repo {repo}{ns} {reason}"),
    }
}

/// The page that explains an alert, under the controller's external URL: its run, else its
/// host, else the fleet.
pub fn link(alert: &Alert, base: &str) -> String {
    let base = base.trim_end_matches('/');
    match (&alert.run, &alert.host) {
        (Some(run), _) => format!("{base}/runs/{}/{run}", alert.namespace),
        (None, Some(host)) => format!("{base}/hosts/{}/{host}", alert.namespace),
        _ => format!("{base}/"),
    }
}

/// The text of a mail (or any message with room for a few lines).
pub fn body(alert: &Alert, state: State, at: DateTime<Utc>, link: Option<&str>) -> String {
    let mut text = summary(alert);
    text.push_str(&format!("\nSince: {}", time(alert.since)));
    if state == State::Resolved {
        text.push_str(&format!("\nResolved: {}", time(at)));
    }
    if let Some(link) = link {
        text.push_str(&format!("\nDetails: {link}"));
    }
    text.push('\n');
    text
}

/// How a notifier's deliveries stand, as the controller keeps them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deliveries {
    /// Alerts fired and not resolved.
    pub firing: u64,
    /// Messages not delivered yet.
    pub queued: u64,
    pub last_delivery: Option<(DateTime<Utc>, String)>,
    /// The last failure: when, why and the attempts of its message so far.
    pub last_error: Option<(DateTime<Utc>, String, u32)>,
}

/// A Notifier's status: its counts, its last delivery and error, and `Ready` while its
/// deliveries work.
pub fn status(d: &Deliveries) -> NotifierStatus {
    let failing = match (&d.last_error, &d.last_delivery) {
        (Some((failed, ..)), Some((delivered, _))) => failed > delivered,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let (ok, reason, message) = match (&d.last_error, &d.last_delivery) {
        (Some((_, error, attempts)), _) if failing => (
            false,
            "DeliveryFailing",
            format!("delivery failed ({attempts} attempts so far; retried with backoff): {error}"),
        ),
        (_, Some(_)) => (true, "Delivered", "the last delivery worked".to_string()),
        _ => (true, "NothingSent", "nothing has been sent yet".to_string()),
    };
    NotifierStatus {
        observed_generation: None,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message,
            observed_generation: None,
            last_transition_time: crate::time::k8s(DateTime::<Utc>::UNIX_EPOCH),
        }],
        firing: Some(d.firing),
        queued: Some(d.queued),
        last_delivery: d.last_delivery.as_ref().map(|(t, m)| Delivery {
            time: crate::time::k8s(*t),
            message: m.clone(),
        }),
        last_error: d
            .last_error
            .as_ref()
            .filter(|_| failing)
            .map(|(t, m, attempts)| DeliveryError {
                time: crate::time::k8s(*t),
                message: m.clone(),
                attempts: *attempts,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).expect("a time")
    }

    fn failed() -> Alert {
        Alert {
            event: NotifierEvent::RunFailed,
            namespace: "default".into(),
            host: Some("web-1".into()),
            schedule: Some("nightly".into()),
            repo: None,
            since: at(0),
            reason: "restic exited 1: Fatal: unable to open repository".into(),
            run: Some("nightly-web-1-28333334".into()),
            growth: None,
        }
    }

    #[test]
    fn a_message_names_host_schedule_and_reason_and_links_the_run() {
        let alert = failed();
        assert_eq!(
            title(&alert, State::Firing),
            "[FIRING] RunFailed: nightly on web-1"
        );
        let link = link(&alert, "https://holdfast.example.com/");
        assert_eq!(
            link,
            "https://holdfast.example.com/runs/default/nightly-web-1-28333334"
        );
        let text = body(&alert, State::Resolved, at(5), Some(&link));
        assert_eq!(
            text,
            "The last run of schedule nightly on host web-1 (namespace default) failed: restic exited 1: Fatal: unable to open repository\n\
             Since: 2023-11-14T22:13:20Z\n\
             Resolved: 2023-11-14T22:18:20Z\n\
             Details: https://holdfast.example.com/runs/default/nightly-web-1-28333334\n"
        );
    }

    #[test]
    fn ready_follows_the_newest_of_delivery_and_error() {
        let mut d = Deliveries::default();
        assert_eq!(status(&d).conditions[0].reason, "NothingSent");
        d.last_error = Some((at(1), "connection refused".into(), 3));
        let s = status(&d);
        assert_eq!(s.conditions[0].status, "False");
        assert!(s.conditions[0].message.contains("3 attempts"));
        assert_eq!(s.last_error.map(|e| e.attempts), Some(3));
        d.last_delivery = Some((at(2), "[FIRING] x".into()));
        let s = status(&d);
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(
            s.last_error, None,
            "an error older than the last delivery is over"
        );
    }
}
