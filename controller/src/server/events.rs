//! The Events the controller records in files mode, where there is no API server to hold them:
//! in memory, as the API server's own are short-lived (an hour by default). At most
//! [`KEEP_EVENTS`], none older than [`EVENT_TTL`]; a decision repeated about the same object with
//! the same note within that time adds to its Event's count, as the API server's event
//! correlator does.
//!
//! In memory rather than SQLite: Events are an hour's account of what the controller did,
//! not state; a fleet-wide change makes one per host, which would be as many writes; and a
//! restart, which empties the log, is itself the kind of moment people read the log and page
//! for. Each change of the log takes the next value of its own resourceVersion counter, so a
//! watch resumes from a list's version, and learns (410) when that version is older than
//! what the log still holds or from before a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use tokio::sync::broadcast;

use crate::decisions::Decision;

/// How many Events are kept.
pub const KEEP_EVENTS: usize = 1_000;
/// How long an Event is kept after it last happened.
pub const EVENT_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// One Event as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// `<object name>.<hex of the first time in nanoseconds>`, as the API server's clients
    /// name Events; unique per object.
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The object the Event is about.
    pub regarding: ObjectReference,
    pub warning: bool,
    pub reason: String,
    pub note: String,
    /// How many times the decision was made, from `first` to `last`.
    pub count: u32,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub resource_version: i64,
    /// The resourceVersion that created it: a watch from before sees it ADDED, from after
    /// MODIFIED.
    pub created: i64,
}

/// What makes two decisions one Event: the same reason, note and type (Warning or Normal)
/// about the same object.
#[derive(PartialEq, Eq, Hash)]
struct Same {
    reason: String,
    note: String,
    warning: bool,
    regarding: [Option<String>; 7],
}

impl Same {
    fn new(r: &ObjectReference, reason: &str, note: &str, warning: bool) -> Same {
        Same {
            reason: reason.into(),
            note: note.into(),
            warning,
            regarding: [
                &r.api_version,
                &r.field_path,
                &r.kind,
                &r.name,
                &r.namespace,
                &r.resource_version,
                &r.uid,
            ]
            .map(Clone::clone),
        }
    }

    fn of(event: &RecordedEvent) -> Same {
        Same::new(&event.regarding, &event.reason, &event.note, event.warning)
    }
}

/// What a watch of the log has missed, and a receiver for what comes next.
pub type EventResume = (
    Vec<Arc<RecordedEvent>>,
    broadcast::Receiver<Arc<RecordedEvent>>,
);

pub struct EventLog {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<RecordedEvent>>,
}

#[derive(Default)]
struct Inner {
    /// By resourceVersion (a repeat moves its Event to the end).
    events: BTreeMap<i64, Arc<RecordedEvent>>,
    /// Where each decision about an object is, so that a repeat finds its Event without
    /// reading the log (a fleet-wide change records one Event per host).
    index: HashMap<Same, i64>,
    resource_version: i64,
    /// The newest resourceVersion dropped from the log: a watch from before it may have
    /// missed a change.
    dropped: i64,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog {
            inner: Mutex::default(),
            tx: broadcast::channel(KEEP_EVENTS).0,
        }
    }
}

impl EventLog {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `decision` about `regarding` at `now`.
    pub fn record(&self, regarding: ObjectReference, decision: Decision, now: DateTime<Utc>) {
        let mut inner = self.inner();
        inner.resource_version += 1;
        let resource_version = inner.resource_version;
        let same = Same::new(
            &regarding,
            decision.reason,
            &decision.note,
            decision.warning,
        );
        let before = inner.index.remove(&same);
        let event = match before.and_then(|rv| inner.events.remove(&rv)) {
            Some(before) => RecordedEvent {
                count: before.count.saturating_add(1),
                last: now,
                resource_version,
                ..(*before).clone()
            },
            None => {
                let name = regarding.name.clone().unwrap_or_default();
                let nanos = now.timestamp_nanos_opt().unwrap_or_default();
                RecordedEvent {
                    name: format!("{name}.{nanos:x}"),
                    namespace: regarding.namespace.clone().unwrap_or_default(),
                    uid: crate::store::new_uid(),
                    regarding,
                    warning: decision.warning,
                    reason: decision.reason.into(),
                    note: decision.note,
                    count: 1,
                    first: now,
                    last: now,
                    resource_version,
                    created: resource_version,
                }
            }
        };
        let event = Arc::new(event);
        inner.events.insert(resource_version, event.clone());
        inner.index.insert(same, resource_version);
        while let Some((_, oldest)) = inner.events.first_key_value() {
            if inner.events.len() <= KEEP_EVENTS && oldest.last + EVENT_TTL > now {
                break;
            }
            let Some((dropped, oldest)) = inner.events.pop_first() else {
                break;
            };
            inner.index.remove(&Same::of(&oldest));
            inner.dropped = inner.dropped.max(dropped);
        }
        // Sent under the lock, so a watch that subscribed under it sees each change once.
        let _ = self.tx.send(event);
    }

    /// Every Event kept, oldest change first, and the log's resourceVersion.
    pub fn list(&self, now: DateTime<Utc>) -> (Vec<Arc<RecordedEvent>>, i64) {
        let inner = self.inner();
        let kept = inner
            .events
            .values()
            .filter(|e| e.last + EVENT_TTL > now)
            .cloned()
            .collect();
        (kept, inner.resource_version)
    }

    /// The log's resourceVersion.
    pub fn resource_version(&self) -> i64 {
        self.inner().resource_version
    }

    /// The Events changed after `resource_version` (every one kept when `None`), and a
    /// receiver for the next changes; `None` when the log no longer holds everything after
    /// that version, or never reached it (a version from before a restart).
    pub fn since(&self, resource_version: Option<i64>) -> Option<EventResume> {
        let inner = self.inner();
        let after = resource_version.unwrap_or(i64::MIN);
        if resource_version.is_some_and(|rv| rv < inner.dropped || rv > inner.resource_version) {
            return None;
        }
        let missed = match after.checked_add(1) {
            Some(next) => inner.events.range(next..).map(|(_, e)| e.clone()).collect(),
            None => Vec::new(),
        };
        Some((missed, self.tx.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("holdfast.dev/v1alpha1".into()),
            kind: Some("Host".into()),
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    fn offline() -> Decision {
        Decision {
            warning: true,
            reason: "AgentOffline",
            note: "gone".into(),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn a_repeated_decision_counts_on_one_event() {
        let log = EventLog::default();
        log.record(host("web-1"), offline(), at(0));
        log.record(host("web-2"), offline(), at(1));
        log.record(host("web-1"), offline(), at(5));
        let (events, rv) = log.list(at(6));
        assert_eq!(rv, 3);
        let names: Vec<(&str, u32, i64)> = events
            .iter()
            .map(|e| {
                (
                    e.regarding.name.as_deref().unwrap_or_default(),
                    e.count,
                    e.resource_version,
                )
            })
            .collect();
        assert_eq!(names, [("web-2", 1, 2), ("web-1", 2, 3)]);
        let web_1 = &events[1];
        assert_eq!((web_1.first, web_1.last, web_1.created), (at(0), at(5), 1));
        assert!(web_1.name.starts_with("web-1."), "{}", web_1.name);
        assert_eq!(web_1.namespace, "default");
    }

    #[test]
    fn the_log_keeps_a_thousand_events_of_the_last_hour() {
        let log = EventLog::default();
        for i in 0..(KEEP_EVENTS as i64 + 5) {
            log.record(host(&format!("h-{i}")), offline(), at(i));
        }
        let (events, _) = log.list(at(2000));
        assert_eq!(events.len(), KEEP_EVENTS);
        assert_eq!(events[0].regarding.name.as_deref(), Some("h-5"));
        assert!(
            log.since(Some(3)).is_none(),
            "changes before the oldest kept are gone"
        );
        assert!(log.since(Some(5)).is_some());
        let (all, _) = log.since(None).expect("the whole log");
        assert_eq!(all.len(), KEEP_EVENTS);
        // An hour after the last one, the next decision finds the log empty of the old ones.
        log.record(host("late"), offline(), at(KEEP_EVENTS as i64 + 3600 * 2));
        let (events, _) = log.list(at(KEEP_EVENTS as i64 + 3600 * 2));
        assert_eq!(events.len(), 1);
        let (listed, _) = log.list(at(KEEP_EVENTS as i64 + 3600 * 4));
        assert!(listed.is_empty(), "expired events are not listed");
    }

    #[test]
    fn a_repeat_counts_on_its_event_while_kept_and_starts_a_new_one_once_dropped() {
        let log = EventLog::default();
        for i in 0..KEEP_EVENTS as i64 {
            log.record(host(&format!("h-{i}")), offline(), at(i));
        }
        log.record(host("h-1"), offline(), at(2000));
        // The log is full: each new Event drops the oldest (h-0, then h-2).
        log.record(host("h-new"), offline(), at(2001));
        log.record(host("h-0"), offline(), at(2002));
        let (events, rv) = log.list(at(2003));
        assert_eq!((events.len(), rv), (KEEP_EVENTS, KEEP_EVENTS as i64 + 3));
        let count = |name: &str| {
            events
                .iter()
                .filter(|e| e.regarding.name.as_deref() == Some(name))
                .map(|e| e.count)
                .collect::<Vec<_>>()
        };
        assert_eq!(count("h-1"), [2]);
        assert_eq!(count("h-0"), [1], "dropped, then new");
        assert_eq!(count("h-2"), Vec::<u32>::new());
        let last: Vec<_> = events[KEEP_EVENTS - 3..]
            .iter()
            .map(|e| e.regarding.name.as_deref().unwrap_or_default())
            .collect();
        assert_eq!(
            last,
            ["h-1", "h-new", "h-0"],
            "in the order they last changed"
        );
    }

    #[test]
    fn a_watch_resumes_after_a_version_and_gets_what_comes_next() {
        let log = EventLog::default();
        log.record(host("web-1"), offline(), at(0));
        let (missed, mut rx) = log
            .since(Some(0))
            .expect("the log holds everything after 0");
        assert_eq!(missed.len(), 1);
        log.record(host("web-1"), offline(), at(1));
        let next = rx.try_recv().expect("the repeat");
        assert_eq!((next.count, next.resource_version), (2, 2));
        assert!(
            log.since(Some(3)).is_none(),
            "a version the log never reached"
        );
        let (missed, _) = log.since(Some(2)).expect("current");
        assert!(missed.is_empty());
    }
}
