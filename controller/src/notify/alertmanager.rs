//! The `alertmanager` receiver: alerts POSTed to `/api/v2/alerts`, labelled as the shipped
//! Prometheus rules label theirs, so that the same routes, inhibitions and silences apply.
//! Alertmanager ends an alert it has not heard of for its `resolve_timeout`, so a firing alert
//! says when it ends ([`FIRING_FOR`]) and is sent again before then while it lasts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::http::{Client, HttpError};
use crate::alerts::Alert;
use crate::notices::{self, State};

/// How long Alertmanager holds a firing alert without hearing of it again.
pub const FIRING_FOR: Duration = Duration::from_secs(5 * 60);
/// How often the alerts still firing are sent again.
pub const REFRESH: Duration = Duration::from_secs(60);

/// One alert as Alertmanager's API takes it. `at`: when it resolved, or when it was sent.
pub fn alert(
    a: &Alert,
    state: State,
    at: DateTime<Utc>,
    link: Option<&str>,
    notifier: &str,
) -> Value {
    let mut labels = json!({
        "alertname": format!("Holdfast{}", a.event),
        "severity": a.severity(),
        "notifier": notifier,
    });
    for (name, value) in [
        ("namespace", Some(&a.namespace).filter(|n| !n.is_empty())),
        ("host", a.host.as_ref()),
        ("schedule", a.schedule.as_ref()),
        ("repo", a.repo.as_ref()),
    ] {
        if let Some(value) = value {
            labels[name] = json!(value);
        }
    }
    let ends = match state {
        State::Resolved => at,
        State::Firing => at + FIRING_FOR,
    };
    let mut alert = json!({
        "labels": labels,
        "annotations": {
            "summary": notices::title(a, State::Firing).trim_start_matches("[FIRING] "),
            "description": notices::summary(a),
        },
        "startsAt": a.since,
        "endsAt": ends,
    });
    if let Some(link) = link {
        alert["generatorURL"] = json!(link);
    }
    alert
}

/// POSTs `alerts` to the Alertmanager at `base`.
pub async fn send(
    client: &Client,
    base: &str,
    token: Option<&str>,
    alerts: &[Value],
) -> Result<(), HttpError> {
    let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(token) = token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    // A JSON value always serialises.
    let body = serde_json::to_vec(alerts).unwrap_or_default();
    client.post(&url, &headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::NotifierEvent;

    #[test]
    fn an_alert_carries_the_rules_labels_and_ends_when_resolved() {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("a time");
        let a = Alert {
            event: NotifierEvent::ScheduleStale,
            namespace: "default".into(),
            host: Some("web-1".into()),
            schedule: Some("nightly".into()),
            repo: None,
            since: at,
            reason: "no successful run since the schedule was created".into(),
            run: None,
            growth: None,
        };
        let firing = alert(
            &a,
            State::Firing,
            at,
            Some("http://h/hosts/default/web-1"),
            "ops",
        );
        assert_eq!(
            firing["labels"],
            json!({"alertname": "HoldfastScheduleStale", "severity": "critical", "notifier": "ops",
                   "namespace": "default", "host": "web-1", "schedule": "nightly"})
        );
        assert_eq!(
            firing["annotations"]["summary"],
            "ScheduleStale: nightly on web-1"
        );
        assert_eq!(firing["endsAt"], json!(at + FIRING_FOR));
        assert_eq!(firing["generatorURL"], "http://h/hosts/default/web-1");
        let resolved = alert(&a, State::Resolved, at, None, "ops");
        assert_eq!(resolved["endsAt"], json!(at));
        assert!(resolved.get("generatorURL").is_none());
    }
}
