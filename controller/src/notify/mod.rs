//! Notifications, for operators without Prometheus. The status writer hands over the alerts
//! that hold for the objects whose status changed ([`Alerting::observe`]); each Notifier's
//! book (the core's `routing`) says what fires, repeats and resolves; those messages are
//! stored in SQLite with the book's change, in one transaction; and one task per Notifier
//! delivers its messages in order, retrying with backoff. A slow or dead receiver holds up
//! only its own task: every request has a timeout, the queue is bounded, and nothing else
//! waits for a delivery.

mod alertmanager;
mod email;
mod http;
mod ntfy;
mod secrets;
mod webhook;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;

pub use secrets::{KeyError, SecretKeys};

use crate::alerts::{Alert, Subject};
use crate::notices::{Deliveries, State};
use crate::resources::NotifierSpec;
use crate::revision::{Revision, name_of, namespace_of};
use crate::routing::{Book, Change, Labels, Observed, Rules};
use crate::store::{Enqueue, NotifierId, Store, StoreError};

/// One message on its way to a receiver.
pub struct Outgoing<'a> {
    /// Its number in the outbox, sent along so that a receiver can tell a retry.
    pub id: i64,
    pub notifier: &'a NotifierId,
    pub state: State,
    pub alert: &'a Alert,
    /// When it fired, repeated or resolved.
    pub at: DateTime<Utc>,
    /// The page that explains it, when the controller knows its external URL.
    pub link: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifierLabels {
    pub namespace: String,
    pub notifier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SentLabels {
    pub namespace: String,
    pub notifier: String,
    pub status: String,
}

/// What `/metrics` counts of deliveries.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Messages a receiver accepted, by status (firing, resolved).
    pub sent: Family<SentLabels, Counter>,
    /// Attempts that failed (each is retried).
    pub failed: Family<NotifierLabels, Counter>,
    /// Messages dropped from a full outbox.
    pub dropped: Family<NotifierLabels, Counter>,
}

fn labels_of(id: &NotifierId) -> NotifierLabels {
    NotifierLabels {
        namespace: id.0.clone(),
        notifier: id.1.clone(),
    }
}

/// What the delivery tasks share.
struct Shared {
    /// A connection of its own, beside the controller's.
    store: Mutex<Store>,
    keys: Arc<dyn SecretKeys>,
    external_url: Option<String>,
    client: http::Client,
    counters: Counters,
    /// Wakes the status writer: a Notifier's status changed.
    writer: Arc<Notify>,
    /// How deliveries stood when last read; `None` once something changed them.
    deliveries: Mutex<Option<BTreeMap<NotifierId, Deliveries>>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliveries changed: the writer reads them again and settles the Notifier's status.
    fn changed(&self) {
        *self.deliveries.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.writer.notify_one();
    }
}

/// Why notifications cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up TLS for receivers: {0}")]
    Tls(#[from] rustls::Error),
}

/// The labels of the hosts and schedules of the revision the books follow.
#[derive(Default)]
struct LabelIndex {
    hosts: HashMap<(String, String), BTreeMap<String, String>>,
    schedules: HashMap<(String, String), BTreeMap<String, String>>,
}

impl LabelIndex {
    fn of(revision: &Revision) -> LabelIndex {
        fn index<K: kube::Resource>(
            objects: &[K],
        ) -> HashMap<(String, String), BTreeMap<String, String>> {
            objects
                .iter()
                .map(|o| {
                    let key = (namespace_of(o).to_string(), name_of(o).to_string());
                    (key, o.meta().labels.clone().unwrap_or_default())
                })
                .collect()
        }
        LabelIndex {
            hosts: index(&revision.hosts),
            schedules: index(&revision.schedules),
        }
    }
}

impl Labels for LabelIndex {
    fn host(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.hosts.get(&(namespace.to_string(), name.to_string()))
    }

    fn schedule(&self, namespace: &str, name: &str) -> Option<&BTreeMap<String, String>> {
        self.schedules
            .get(&(namespace.to_string(), name.to_string()))
    }
}

/// One Notifier in force.
struct Tracked {
    spec: NotifierSpec,
    rules: Rules,
    book: Book,
    worker: Option<worker::Handle>,
}

#[derive(Default)]
struct Books {
    /// The revision whose Notifiers and labels the books follow; another one calls for a
    /// complete evaluation.
    revision: Option<Arc<Revision>>,
    notifiers: BTreeMap<NotifierId, Tracked>,
    labels: LabelIndex,
    /// Set when storing a change failed: the books are read back from the store.
    reload: bool,
}

/// What an evaluation looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    Changes,
    Everything,
}

/// Every Notifier's book and delivery task.
pub struct Alerting {
    shared: Arc<Shared>,
    books: Mutex<Books>,
}

impl Alerting {
    /// Notifications on their own connection to the database in `data_dir`. `writer` is woken
    /// when a Notifier's status changes; `external_url` is where links in messages point.
    pub fn open(
        data_dir: &Path,
        external_url: Option<String>,
        keys: Arc<dyn SecretKeys>,
        writer: Arc<Notify>,
        counters: Counters,
    ) -> Result<Alerting, OpenError> {
        Ok(Alerting {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::open(data_dir)?),
                keys,
                external_url,
                client: http::Client::new()?,
                counters,
                writer,
                deliveries: Mutex::new(None),
            }),
            books: Mutex::new(Books::default()),
        })
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the next evaluation must look at: nothing while no Notifier is declared or
    /// followed (nothing could be sent; what the store holds stays until a revision declares
    /// Notifiers again), every object when the books follow another revision (or none yet, or
    /// must be read back), else the objects that changed.
    pub fn needs(&self, revision: &Arc<Revision>) -> Needs {
        let books = self.books();
        if revision.notifiers.is_empty() && books.notifiers.is_empty() {
            Needs::Nothing
        } else if books.reload
            || books
                .revision
                .as_ref()
                .is_none_or(|r| !Arc::ptr_eq(r, revision))
        {
            Needs::Everything
        } else {
            Needs::Changes
        }
    }

    /// Takes in the alerts that hold for `subjects` (every subject there is when `complete`,
    /// which also follows `revision`'s Notifiers), stores and queues what each Notifier sends,
    /// and returns when the clock alone next changes a book.
    pub fn observe(
        &self,
        revision: &Arc<Revision>,
        subjects: &[(Subject, Vec<Alert>)],
        complete: bool,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut books = self.books();
        if complete && let Err(e) = self.follow(&mut books, revision) {
            tracing::error!("cannot read what notifiers fired: {e}");
            books.reload = true;
            return None;
        }
        let Books {
            notifiers,
            labels,
            reload,
            ..
        } = &mut *books;
        let observed = Observed { subjects, complete };
        let mut next: Option<DateTime<Utc>> = None;
        for (id, tracked) in notifiers.iter_mut() {
            let changes = tracked
                .book
                .evaluate(&tracked.rules, &*labels, &observed, now);
            if !changes.is_empty() {
                let messages: Vec<Enqueue> = changes
                    .iter()
                    .filter_map(|change| match change {
                        Change::Fire(a) | Change::Repeat(a) => {
                            tracked.book.fired.get(&a.key()).map(Enqueue::Firing)
                        }
                        Change::Resolve(a) => Some(Enqueue::Resolved(a)),
                    })
                    .collect();
                match self.shared.store().enqueue(id, &messages, now) {
                    Ok(dropped) => {
                        if dropped > 0 {
                            tracing::warn!(
                                notifier = %format!("{}/{}", id.0, id.1),
                                dropped,
                                "the outbox is full: dropped its oldest messages"
                            );
                            self.shared
                                .counters
                                .dropped
                                .get_or_create(&labels_of(id))
                                .inc_by(dropped);
                        }
                        if let Some(worker) = &tracked.worker {
                            worker.wake();
                        }
                        self.shared.changed();
                    }
                    Err(e) => {
                        tracing::error!("cannot store what notifier {}/{} sends: {e}", id.0, id.1);
                        *reload = true;
                    }
                }
            }
            next = match (next, tracked.book.next()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }

    /// Follows `revision`'s Notifiers: new ones get their book (what they fired before, from
    /// the store) and a delivery task, changed ones their new rules, removed ones are
    /// forgotten with what they had stored.
    fn follow(&self, books: &mut Books, revision: &Arc<Revision>) -> Result<(), StoreError> {
        let mut store = self.shared.store();
        let mut fired = if books.reload || books.revision.is_none() {
            store.fired_alerts()?
        } else {
            BTreeMap::new()
        };
        if books.reload {
            for (id, tracked) in books.notifiers.iter_mut() {
                tracked.book = Book::new(fired.remove(id).unwrap_or_default());
            }
        }
        let mut declared = BTreeMap::new();
        for notifier in &revision.notifiers {
            let id: NotifierId = (namespace_of(notifier).into(), name_of(notifier).into());
            let rules = Rules::of(notifier);
            let tracked = books.notifiers.remove(&id);
            let tracked = match tracked {
                Some(mut t) => {
                    if t.spec != notifier.spec || t.worker.is_none() {
                        t.worker = worker::spawn(self.shared.clone(), &id, &notifier.spec);
                        t.spec = notifier.spec.clone();
                    }
                    t.rules = rules;
                    t
                }
                None => Tracked {
                    worker: worker::spawn(self.shared.clone(), &id, &notifier.spec),
                    spec: notifier.spec.clone(),
                    rules,
                    book: Book::new(fired.remove(&id).unwrap_or_default()),
                },
            };
            declared.insert(id, tracked);
        }
        // Notifiers no longer declared, here or (removed while the controller was down) in
        // the store: their tasks end (dropped) and what they stored goes.
        books.notifiers = declared;
        for id in store.stored_notifiers()? {
            if !books.notifiers.contains_key(&id) {
                store.forget_notifier(&id)?;
            }
        }
        drop(store);
        books.labels = LabelIndex::of(revision);
        books.revision = Some(revision.clone());
        books.reload = false;
        self.shared.changed();
        Ok(())
    }

    /// How each Notifier's deliveries stand, read again only after they changed.
    pub fn deliveries(&self) -> Result<BTreeMap<NotifierId, Deliveries>, StoreError> {
        let mut cached = self
            .shared
            .deliveries
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(d) = cached.as_ref() {
            return Ok(d.clone());
        }
        let read = self.shared.store().deliveries()?;
        *cached = Some(read.clone());
        Ok(read)
    }

    /// This replica stopped leading: the delivery tasks end (what is queued stays stored) and
    /// the books start again with the next evaluation.
    pub fn stop(&self) {
        let mut books = self.books();
        if books.revision.is_some() {
            tracing::info!("not leading: notifications stop");
        }
        *books = Books::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::NotifierEvent;

    struct NoKeys;

    impl SecretKeys for NoKeys {
        fn secret_key(&self, namespace: &str, name: &str, _: &str) -> Result<String, KeyError> {
            Err(KeyError::NoSecrets {
                namespace: namespace.into(),
                secret: name.into(),
            })
        }
    }

    fn open(dir: &Path) -> Alerting {
        Alerting::open(
            dir,
            None,
            Arc::new(NoKeys),
            Arc::new(Notify::new()),
            Counters::default(),
        )
        .expect("opens")
    }

    fn revision(notifiers: &[&str]) -> Arc<Revision> {
        let notifiers = notifiers
            .iter()
            .map(|name| {
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "holdfast.dev/v1alpha1", "kind": "Notifier",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"webhook": {"url": "http://127.0.0.1:9/hook"}},
                }))
                .expect("a notifier")
            })
            .collect();
        Arc::new(Revision {
            notifiers,
            ..Revision::default()
        })
    }

    fn web_1() -> Subject {
        Subject::Host {
            namespace: "default".into(),
            name: "web-1".into(),
        }
    }

    fn drifting() -> Alert {
        Alert {
            event: NotifierEvent::DriftStuck,
            namespace: "default".into(),
            host: Some("web-1".into()),
            schedule: None,
            repo: None,
            since: DateTime::<Utc>::UNIX_EPOCH,
            reason: "version 2 was sent; the agent runs version 1".into(),
            run: None,
            growth: None,
        }
    }

    fn counts(alerting: &Alerting, name: &str) -> (u64, u64) {
        let d = alerting.deliveries().expect("read");
        let d = d
            .get(&("default".to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default();
        (d.firing, d.queued)
    }

    #[test]
    fn what_fired_survives_a_restart_and_is_not_sent_again() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let now = Utc::now();
        let rev = revision(&["ops"]);
        let holds = [(web_1(), vec![drifting()])];
        let alerting = open(dir.path());
        assert_eq!(alerting.needs(&rev), Needs::Everything);
        alerting.observe(&rev, &holds, true, now);
        assert_eq!(alerting.needs(&rev), Needs::Changes);
        assert_eq!(
            counts(&alerting, "ops"),
            (1, 1),
            "fired, and its message queued"
        );
        drop(alerting);

        let again = open(dir.path());
        again.observe(&rev, &holds, true, now);
        assert_eq!(counts(&again, "ops"), (1, 1), "not fired a second time");
        again.observe(&rev, &[(web_1(), vec![])], false, now);
        assert_eq!(
            counts(&again, "ops"),
            (0, 2),
            "resolved, its message queued"
        );
    }

    #[test]
    fn a_notifier_that_is_gone_is_forgotten_with_what_it_stored() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let now = Utc::now();
        let alerting = open(dir.path());
        let holds = [(web_1(), vec![drifting()])];
        alerting.observe(&revision(&["ops", "dba"]), &holds, true, now);
        assert_eq!(counts(&alerting, "dba"), (1, 1));
        let fewer = revision(&["ops"]);
        assert_eq!(alerting.needs(&fewer), Needs::Everything);
        alerting.observe(&fewer, &holds, true, now);
        assert_eq!(counts(&alerting, "dba"), (0, 0));
        assert_eq!(counts(&alerting, "ops"), (1, 1));

        // With no Notifier declared or followed there is nothing to look at.
        let none = revision(&[]);
        alerting.observe(&none, &holds, true, now);
        assert_eq!(counts(&alerting, "ops"), (0, 0));
        assert_eq!(alerting.needs(&none), Needs::Nothing);
    }
}
