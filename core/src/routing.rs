//! What one Notifier sends, given the alerts that hold for the subjects looked at (see
//! [`crate::alerts`]) and what it sent before: an alert fires once when its condition starts
//! (after the notifier's delay for it), repeats only with `repeatInterval`, and resolves when
//! its subject no longer shows it. Values in, values out: the caller keeps the [`Book`] and
//! stores what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, Subject};
use crate::resources::{LabelSelector, Notifier, NotifierEvent};
use crate::revision::namespace_of;

/// `agentOfflineAfter` when a Notifier names none, as the shipped rule's `for: 5m`.
pub const DEFAULT_AGENT_OFFLINE_AFTER: Duration = Duration::from_secs(5 * 60);
/// `driftStuckAfter` when a Notifier names none, as the shipped rule's `for: 15m`.
pub const DEFAULT_DRIFT_STUCK_AFTER: Duration = Duration::from_secs(15 * 60);
/// `repoGrowthFactor` when a Notifier names none.
pub const DEFAULT_REPO_GROWTH_FACTOR: f64 = 2.0;

/// A Notifier's choice of alerts, read once from its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    namespace: String,
    /// Empty: every event.
    events: Vec<NotifierEvent>,
    host_selector: Option<LabelSelector>,
    schedule_selector: Option<LabelSelector>,
    repeat: Option<TimeDelta>,
    offline_after: TimeDelta,
    drift_after: TimeDelta,
    growth_factor: f64,
}

/// A validated duration, or the default for a spec that validation would refuse.
fn duration(text: Option<&str>, default: Duration) -> TimeDelta {
    let parsed = text.and_then(|t| crate::validate::parse_duration(t).ok());
    TimeDelta::from_std(parsed.unwrap_or(default)).unwrap_or(TimeDelta::MAX)
}

impl Rules {
    pub fn of(notifier: &Notifier) -> Rules {
        let spec = &notifier.spec;
        Rules {
            namespace: namespace_of(notifier).into(),
            events: spec.events.clone(),
            host_selector: spec.host_selector.clone(),
            schedule_selector: spec.schedule_selector.clone(),
            repeat: spec
                .repeat_interval
                .as_deref()
                .and_then(|t| crate::validate::parse_duration(t).ok())
                .and_then(|d| TimeDelta::from_std(d).ok()),
            offline_after: duration(
                spec.agent_offline_after.as_deref(),
                DEFAULT_AGENT_OFFLINE_AFTER,
            ),
            drift_after: duration(spec.drift_stuck_after.as_deref(), DEFAULT_DRIFT_STUCK_AFTER),
            growth_factor: spec
                .repo_growth_factor
                .filter(|f| *f > 1.0)
                .unwrap_or(DEFAULT_REPO_GROWTH_FACTOR),
        }
    }

    /// Whether this notifier sends `alert`: an event it wants, in its namespace (or in none),
    /// about hosts and schedules its selectors pick, beyond its growth factor.
    pub fn wants(&self, alert: &Alert, labels: &dyn Labels) -> bool {
        let none = BTreeMap::new();
        let hosts_ok = match (&self.host_selector, &alert.host) {
            (Some(selector), Some(host)) => {
                selector.matches(labels.host(&alert.namespace, host).unwrap_or(&none))
            }
            _ => true,
        };
        let schedules_ok = match (&self.schedule_selector, &alert.schedule) {
            (Some(selector), Some(schedule)) => {
                selector.matches(labels.schedule(&alert.namespace, schedule).unwrap_or(&none))
            }
            _ => true,
        };
        (self.events.is_empty() || self.events.contains(&alert.event))
            && (alert.namespace.is_empty() || alert.namespace == self.namespace)
            && hosts_ok
            && schedules_ok
            && alert
                .growth
                .is_none_or(|g| alert.event != NotifierEvent::RepoGrowth || g > self.growth_factor)
    }

    /// When `alert` fires: once it has held for the delay of its event.
    pub fn due(&self, alert: &Alert) -> DateTime<Utc> {
        let delay = match alert.event {
            NotifierEvent::AgentOffline => self.offline_after,
            NotifierEvent::DriftStuck => self.drift_after,
            _ => TimeDelta::zero(),
        };
        alert.since.checked_add_signed(delay).unwrap_or(alert.since)
    }
}

/// The labels selectors read.
pub trait Labels {
    fn host(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>>;
    fn schedule(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>>;
}

/// An alert a notifier sent and has not resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fired {
    pub alert: Alert,
    /// When it was last sent (fired or repeated).
    pub sent_at: DateTime<Utc>,
}

/// What one notifier has going: the alerts it fired, by key, and the alerts that hold but
/// wait for their delay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Book {
    pub fired: BTreeMap<String, Fired>,
    pending: BTreeMap<String, Alert>,
    /// When a pending alert comes due or a fired one repeats, at the earliest.
    next: Option<DateTime<Utc>>,
}

/// What a notifier sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Fire(Alert),
    Repeat(Alert),
    Resolve(Alert),
}

/// The subjects looked at, each with every alert that holds for it; `complete` when that is
/// every subject there is, so that alerts of subjects gone (deleted objects) resolve.
pub struct Observed<'a> {
    pub subjects: &'a [(Subject, Vec<Alert>)],
    pub complete: bool,
}

impl Book {
    /// The book of a notifier that fired `fired` before (as stored); what waits for its delay
    /// comes back with the next complete evaluation.
    pub fn new(fired: BTreeMap<String, Fired>) -> Book {
        Book {
            fired,
            ..Book::default()
        }
    }

    /// When the clock alone next changes something.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.next
    }

    /// Takes in what holds for the subjects `observed`, and the clock at `now`. Work is
    /// proportional to the subjects looked at, and to the book only when complete or when a
    /// delay or repeat comes due.
    pub fn evaluate(
        &mut self,
        rules: &Rules,
        labels: &dyn Labels,
        observed: &Observed,
        now: DateTime<Utc>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut looked = BTreeSet::new();
        for (subject, alerts) in observed.subjects {
            let prefix = subject.prefix();
            let holding: BTreeMap<String, &Alert> = alerts
                .iter()
                .filter(|a| rules.wants(a, labels))
                .map(|a| (a.key(), a))
                .collect();
            for key in keys_under(&self.fired, &prefix) {
                if !holding.contains_key(&key)
                    && let Some(fired) = self.fired.remove(&key)
                {
                    changes.push(Change::Resolve(fired.alert));
                }
            }
            for key in keys_under(&self.pending, &prefix) {
                self.pending.remove(&key);
            }
            for (key, alert) in holding {
                if self.fired.contains_key(&key) {
                    continue;
                }
                let due = rules.due(alert);
                if due <= now {
                    self.fire(alert.clone(), now, rules, &mut changes);
                } else {
                    self.pending.insert(key, alert.clone());
                    self.next = earliest(self.next, Some(due));
                }
            }
            looked.insert(prefix);
        }
        if observed.complete {
            let gone: Vec<String> = self
                .fired
                .iter()
                .filter(|(_, f)| !looked.contains(&f.alert.subject().prefix()))
                .map(|(k, _)| k.clone())
                .collect();
            for key in gone {
                if let Some(fired) = self.fired.remove(&key) {
                    changes.push(Change::Resolve(fired.alert));
                }
            }
            self.pending
                .retain(|_, a| looked.contains(&a.subject().prefix()));
        }
        if observed.complete || self.next.is_some_and(|t| t <= now) {
            self.clock(rules, now, &mut changes);
        }
        changes
    }

    fn fire(&mut self, alert: Alert, now: DateTime<Utc>, rules: &Rules, changes: &mut Vec<Change>) {
        self.next = earliest(self.next, rules.repeat.map(|r| now + r));
        let fired = Fired {
            alert: alert.clone(),
            sent_at: now,
        };
        self.fired.insert(alert.key(), fired);
        changes.push(Change::Fire(alert));
    }

    /// Fires what came due, repeats what is to repeat, and finds the next time.
    fn clock(&mut self, rules: &Rules, now: DateTime<Utc>, changes: &mut Vec<Change>) {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, a)| rules.due(a) <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(alert) = self.pending.remove(&key) {
                self.fire(alert, now, rules, changes);
            }
        }
        let mut next = self.pending.values().map(|a| rules.due(a)).min();
        if let Some(repeat) = rules.repeat {
            for fired in self.fired.values_mut() {
                if fired.sent_at + repeat <= now {
                    fired.sent_at = now;
                    changes.push(Change::Repeat(fired.alert.clone()));
                }
                next = earliest(next, Some(fired.sent_at + repeat));
            }
        }
        self.next = next;
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The keys of `map` that begin with `prefix`, found by range rather than by a scan.
fn keys_under<V>(map: &BTreeMap<String, V>, prefix: &str) -> Vec<String> {
    map.range(prefix.to_string()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Notifier;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).expect("a time")
    }

    fn notifier(spec: serde_json::Value) -> Rules {
        let notifier: Notifier = serde_json::from_value(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Notifier",
            "metadata": {"name": "ops", "namespace": "fleet"},
            "spec": spec,
        }))
        .expect("a notifier");
        Rules::of(&notifier)
    }

    #[derive(Default)]
    struct Fixture {
        hosts: BTreeMap<String, BTreeMap<String, String>>,
    }

    impl Labels for Fixture {
        fn host(&self, _: &str, name: &str) -> Option<&BTreeMap<String, String>> {
            self.hosts.get(name)
        }
        fn schedule(&self, _: &str, _: &str) -> Option<&BTreeMap<String, String>> {
            None
        }
    }

    fn alert(event: NotifierEvent, host: &str, since: i64) -> Alert {
        Alert {
            event,
            namespace: "fleet".into(),
            host: Some(host.into()),
            schedule: (event == NotifierEvent::RunFailed).then(|| "nightly".into()),
            repo: None,
            since: at(since),
            reason: "why".into(),
            run: None,
            growth: None,
        }
    }

    fn host(name: &str) -> Subject {
        Subject::Host {
            namespace: "fleet".into(),
            name: name.into(),
        }
    }

    fn nightly() -> Subject {
        Subject::Schedule {
            namespace: "fleet".into(),
            name: "nightly".into(),
        }
    }

    fn step(
        book: &mut Book,
        rules: &Rules,
        subjects: &[(Subject, Vec<Alert>)],
        minute: i64,
    ) -> Vec<String> {
        let observed = Observed {
            subjects,
            complete: false,
        };
        book.evaluate(rules, &Fixture::default(), &observed, at(minute))
            .into_iter()
            .map(|c| match c {
                Change::Fire(a) => format!("fire {}", a.key()),
                Change::Repeat(a) => format!("repeat {}", a.key()),
                Change::Resolve(a) => format!("resolve {}", a.key()),
            })
            .collect()
    }

    #[test]
    fn an_alert_fires_once_while_it_holds_and_resolves_when_it_ends() {
        let rules = notifier(serde_json::json!({"webhook": {"url": "http://x"}}));
        let mut book = Book::default();
        let failed = vec![alert(NotifierEvent::RunFailed, "web-1", 0)];
        assert_eq!(
            step(&mut book, &rules, &[(nightly(), failed.clone())], 1),
            ["fire Schedule/fleet/nightly/web-1/RunFailed"]
        );
        // The schedule's status changes again (another failure): nothing new to say.
        assert!(step(&mut book, &rules, &[(nightly(), failed)], 2).is_empty());
        assert_eq!(book.next(), None, "no repeat, nothing waiting");
        assert_eq!(
            step(&mut book, &rules, &[(nightly(), vec![])], 3),
            ["resolve Schedule/fleet/nightly/web-1/RunFailed"]
        );
        assert!(book.fired.is_empty());
    }

    #[test]
    fn an_offline_agent_fires_after_its_delay_unless_it_comes_back() {
        let rules = notifier(
            serde_json::json!({"ntfy": {"url": "http://x/t"}, "agentOfflineAfter": "10m"}),
        );
        let mut book = Book::default();
        let offline = vec![alert(NotifierEvent::AgentOffline, "web-1", 0)];
        assert!(step(&mut book, &rules, &[(host("web-1"), offline.clone())], 1).is_empty());
        assert_eq!(book.next(), Some(at(10)));
        assert!(step(&mut book, &rules, &[], 9).is_empty(), "not yet");
        assert_eq!(
            step(&mut book, &rules, &[], 10),
            ["fire Host/fleet/web-1/AgentOffline"],
            "the clock alone fires it"
        );

        // web-2 goes offline and comes back within the delay: nothing is sent.
        let offline = vec![alert(NotifierEvent::AgentOffline, "web-2", 11)];
        assert!(step(&mut book, &rules, &[(host("web-2"), offline)], 11).is_empty());
        assert!(step(&mut book, &rules, &[(host("web-2"), vec![])], 12).is_empty());
        assert!(step(&mut book, &rules, &[], 30).is_empty());
    }

    #[test]
    fn repeat_interval_sends_a_firing_alert_again_on_the_clock() {
        let rules =
            notifier(serde_json::json!({"webhook": {"url": "http://x"}, "repeatInterval": "1h"}));
        let mut book = Book::default();
        let stale = vec![alert(NotifierEvent::RunFailed, "web-1", 0)];
        step(&mut book, &rules, &[(nightly(), stale)], 0);
        assert_eq!(book.next(), Some(at(60)));
        assert!(step(&mut book, &rules, &[], 59).is_empty());
        assert_eq!(
            step(&mut book, &rules, &[], 61),
            ["repeat Schedule/fleet/nightly/web-1/RunFailed"]
        );
        assert_eq!(book.next(), Some(at(121)));
    }

    #[test]
    fn a_complete_evaluation_resolves_the_alerts_of_subjects_gone() {
        let rules = notifier(serde_json::json!({"webhook": {"url": "http://x"}}));
        let mut book = Book::default();
        let failed = vec![alert(NotifierEvent::RunFailed, "web-1", 0)];
        step(&mut book, &rules, &[(nightly(), failed)], 0);
        let observed = Observed {
            subjects: &[(host("web-1"), vec![])],
            complete: true,
        };
        let changes = book.evaluate(&rules, &Fixture::default(), &observed, at(1));
        assert!(
            matches!(&changes[..], [Change::Resolve(a)] if a.event == NotifierEvent::RunFailed),
            "{changes:?}"
        );
    }

    #[test]
    fn events_namespaces_selectors_and_growth_decide_what_a_notifier_wants() {
        let rules = notifier(serde_json::json!({
            "email": {"host": "smtp", "from": "a@b", "to": ["c@d"]},
            "events": ["AgentOffline", "RepoGrowth", "RevisionRejected"],
            "hostSelector": {"matchLabels": {"role": "db"}},
            "repoGrowthFactor": 3,
        }));
        let mut labels = Fixture::default();
        labels.hosts.insert(
            "db-1".into(),
            [("role".to_string(), "db".to_string())].into(),
        );
        let wants = |a: &Alert| rules.wants(a, &labels);
        assert!(wants(&alert(NotifierEvent::AgentOffline, "db-1", 0)));
        assert!(
            !wants(&alert(NotifierEvent::AgentOffline, "web-1", 0)),
            "not selected"
        );
        assert!(
            !wants(&alert(NotifierEvent::RunFailed, "db-1", 0)),
            "not an event it wants"
        );
        let mut other = alert(NotifierEvent::AgentOffline, "db-1", 0);
        other.namespace = "elsewhere".into();
        assert!(!wants(&other), "another namespace");
        let mut growth = alert(NotifierEvent::RepoGrowth, "", 0);
        growth.host = None;
        growth.repo = Some("nas".into());
        growth.growth = Some(2.5);
        assert!(!wants(&growth), "below the factor of 3");
        growth.growth = Some(3.5);
        assert!(wants(&growth));
        let mut rejected = alert(NotifierEvent::RevisionRejected, "", 0);
        rejected.host = None;
        rejected.namespace = String::new();
        assert!(wants(&rejected), "files mode: every namespace");
    }
}
