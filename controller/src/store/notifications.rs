//! What the notifiers keep across restarts: the alerts each fired and has not resolved, the
//! messages not delivered yet (an outbox per notifier, oldest first, bounded), and how the last
//! delivery and the last failure went.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::alerts::Alert;
use crate::notices::{Deliveries, State};
use crate::routing::Fired;

/// A notifier, by namespace and name.
pub type NotifierId = (String, String);

/// Messages a notifier keeps at most; beyond, the oldest are dropped (and counted), so a
/// receiver that is gone for good cannot fill the disk.
pub const MAX_QUEUED: u64 = 1_000;

/// One message waiting in a notifier's outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    pub id: i64,
    pub state: State,
    pub alert: Alert,
    /// When the alert fired, repeated or resolved.
    pub at: DateTime<Utc>,
    pub attempts: u32,
    /// Not before then (backoff after a failure).
    pub next_attempt: DateTime<Utc>,
}

/// One message to put in an outbox, with the book's change that goes with it.
pub enum Enqueue<'a> {
    /// Fired or repeated: the alert as it was sent.
    Firing(&'a Fired),
    /// Resolved: the alert, forgotten as fired.
    Resolved(&'a Alert),
}

fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Store {
    /// Every notifier's fired alerts, by key.
    pub fn fired_alerts(
        &self,
    ) -> Result<BTreeMap<NotifierId, BTreeMap<String, Fired>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, notifier, key, fired FROM notifier_fired")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut out: BTreeMap<NotifierId, BTreeMap<String, Fired>> = BTreeMap::new();
        for row in rows {
            let (namespace, notifier, key, text) = row.map_err(|e| self.sqlite(e))?;
            // A row this version cannot read is an alert it does not know; it resolves by not
            // being there.
            if let Ok(fired) = serde_json::from_str(&text) {
                out.entry((namespace, notifier))
                    .or_default()
                    .insert(key, fired);
            }
        }
        Ok(out)
    }

    /// Records what one notifier's evaluation changed, and queues its messages, in one
    /// transaction; returns how many old messages were dropped to stay within [`MAX_QUEUED`].
    pub fn enqueue(
        &mut self,
        notifier: &NotifierId,
        messages: &[Enqueue],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let (namespace, name) = notifier;
        let written = self.conn.transaction().and_then(|tx| {
            for message in messages {
                let (state, alert) = match message {
                    Enqueue::Firing(fired) => {
                        tx.prepare_cached(
                            "INSERT INTO notifier_fired (namespace, notifier, key, fired)
                             VALUES (?1, ?2, ?3, ?4)
                             ON CONFLICT (namespace, notifier, key) DO UPDATE SET fired = excluded.fired",
                        )?
                        .execute(params![
                            namespace,
                            name,
                            fired.alert.key(),
                            serde_json::to_string(fired).map_err(json_error)?
                        ])?;
                        (State::Firing, &fired.alert)
                    }
                    Enqueue::Resolved(alert) => {
                        tx.prepare_cached(
                            "DELETE FROM notifier_fired WHERE namespace = ?1 AND notifier = ?2 AND key = ?3",
                        )?
                        .execute(params![namespace, name, alert.key()])?;
                        (State::Resolved, *alert)
                    }
                };
                tx.prepare_cached(
                    "INSERT INTO notifier_outbox (namespace, notifier, state, alert, at, next_attempt)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )?
                .execute(params![
                    namespace,
                    name,
                    state.as_str(),
                    serde_json::to_string(alert).map_err(json_error)?,
                    at
                ])?;
            }
            let dropped = tx
                .prepare_cached(
                    "DELETE FROM notifier_outbox WHERE namespace = ?1 AND notifier = ?2 AND id <= (
                         SELECT id FROM notifier_outbox WHERE namespace = ?1 AND notifier = ?2
                         ORDER BY id DESC LIMIT 1 OFFSET ?3)",
                )?
                .execute(params![namespace, name, MAX_QUEUED as i64])?;
            tx.commit()?;
            Ok(dropped as u64)
        });
        written.map_err(|e| self.sqlite(e))
    }

    /// The alerts one notifier fired and has not resolved.
    pub fn fired_of(&self, notifier: &NotifierId) -> Result<Vec<Fired>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT fired FROM notifier_fired WHERE namespace = ?1 AND notifier = ?2 ORDER BY key",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![notifier.0, notifier.1], |r| r.get::<_, String>(0))
            .map_err(|e| self.sqlite(e))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(fired) = serde_json::from_str(&row.map_err(|e| self.sqlite(e))?) {
                out.push(fired);
            }
        }
        Ok(out)
    }

    /// The oldest message in a notifier's outbox.
    pub fn next_message(&self, notifier: &NotifierId) -> Result<Option<Queued>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT id, state, alert, at, attempts, next_attempt FROM notifier_outbox
                 WHERE namespace = ?1 AND notifier = ?2 ORDER BY id LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![notifier.0, notifier.1], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, DateTime<Utc>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, DateTime<Utc>>(5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.sqlite(e))?;
        let Some((id, state, alert, at, attempts, next_attempt)) = row else {
            return Ok(None);
        };
        let state = if state == State::Resolved.as_str() {
            State::Resolved
        } else {
            State::Firing
        };
        match serde_json::from_str(&alert) {
            Ok(alert) => Ok(Some(Queued {
                id,
                state,
                alert,
                at,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                next_attempt,
            })),
            // Written by another version and unreadable: dropped, so it cannot block the rest.
            Err(_) => {
                self.conn
                    .execute("DELETE FROM notifier_outbox WHERE id = ?1", params![id])
                    .map_err(|e| self.sqlite(e))?;
                self.next_message(notifier)
            }
        }
    }

    /// A message was delivered: out of the outbox, and the notifier's last delivery. `id` is
    /// `None` for a delivery of no queued message (an Alertmanager refresh).
    pub fn delivered(
        &mut self,
        notifier: &NotifierId,
        id: Option<i64>,
        at: DateTime<Utc>,
        title: &str,
    ) -> Result<(), StoreError> {
        let done = self.conn.transaction().and_then(|tx| {
            if let Some(id) = id {
                tx.execute("DELETE FROM notifier_outbox WHERE id = ?1", params![id])?;
            }
            tx.execute(
                "INSERT INTO notifier_deliveries (namespace, notifier, delivered_at, delivered)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, notifier) DO UPDATE SET
                     delivered_at = excluded.delivered_at, delivered = excluded.delivered",
                params![notifier.0, notifier.1, at, title],
            )?;
            tx.commit()
        });
        done.map_err(|e| self.sqlite(e))
    }

    /// An attempt failed: the message stays, tried again at `next_attempt`; `id` is `None` for
    /// a failure that concerns no queued message (an Alertmanager refresh).
    pub fn failed(
        &mut self,
        notifier: &NotifierId,
        id: Option<i64>,
        at: DateTime<Utc>,
        error: &str,
        next_attempt: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = self.conn.transaction().and_then(|tx| {
            if let Some(id) = id {
                tx.execute(
                    "UPDATE notifier_outbox SET attempts = attempts + 1, next_attempt = ?2 WHERE id = ?1",
                    params![id, next_attempt],
                )?;
            }
            let attempts: i64 = match id {
                Some(id) => tx.query_row(
                    "SELECT attempts FROM notifier_outbox WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )?,
                None => 1,
            };
            tx.execute(
                "INSERT INTO notifier_deliveries (namespace, notifier, failed_at, error, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (namespace, notifier) DO UPDATE SET
                     failed_at = excluded.failed_at, error = excluded.error,
                     attempts = excluded.attempts",
                params![notifier.0, notifier.1, at, error, attempts],
            )?;
            tx.commit()
        });
        done.map_err(|e| self.sqlite(e))
    }

    /// How every notifier's deliveries stand (firing and queued counted from the tables).
    pub fn deliveries(&self) -> Result<BTreeMap<NotifierId, Deliveries>, StoreError> {
        let mut out: BTreeMap<NotifierId, Deliveries> = BTreeMap::new();
        let mut count = |sql: &str, set: fn(&mut Deliveries, u64)| -> rusqlite::Result<()> {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (namespace, notifier, n) = row?;
                set(
                    out.entry((namespace, notifier)).or_default(),
                    n.max(0) as u64,
                );
            }
            Ok(())
        };
        count(
            "SELECT namespace, notifier, count(*) FROM notifier_fired GROUP BY namespace, notifier",
            |d, n| d.firing = n,
        )
        .and_then(|()| {
            count(
                "SELECT namespace, notifier, count(*) FROM notifier_outbox GROUP BY namespace, notifier",
                |d, n| d.queued = n,
            )
        })
        .map_err(|e| self.sqlite(e))?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT namespace, notifier, delivered_at, delivered, failed_at, error, attempts
                 FROM notifier_deliveries",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                let delivered = match (r.get::<_, Option<DateTime<Utc>>>(2)?, r.get(3)?) {
                    (Some(at), Some(title)) => Some((at, title)),
                    _ => None,
                };
                let failed = match (r.get::<_, Option<DateTime<Utc>>>(4)?, r.get(5)?) {
                    (Some(at), Some(error)) => {
                        let attempts = r.get::<_, Option<i64>>(6)?.unwrap_or(1);
                        Some((at, error, u32::try_from(attempts).unwrap_or(u32::MAX)))
                    }
                    _ => None,
                };
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    delivered,
                    failed,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        for row in rows {
            let (namespace, notifier, delivered, failed) = row.map_err(|e| self.sqlite(e))?;
            let d = out.entry((namespace, notifier)).or_default();
            d.last_delivery = delivered;
            d.last_error = failed;
        }
        Ok(out)
    }

    /// Forgets a notifier no longer declared: what it fired, what it had queued, how it went.
    pub fn forget_notifier(&mut self, notifier: &NotifierId) -> Result<(), StoreError> {
        let done = self.conn.transaction().and_then(|tx| {
            for table in ["notifier_fired", "notifier_outbox", "notifier_deliveries"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE namespace = ?1 AND notifier = ?2"),
                    params![notifier.0, notifier.1],
                )?;
            }
            tx.commit()
        });
        done.map_err(|e| self.sqlite(e))
    }

    /// The notifiers that have anything stored.
    pub fn stored_notifiers(&self) -> Result<Vec<NotifierId>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT namespace, notifier FROM notifier_fired
                 UNION SELECT namespace, notifier FROM notifier_outbox
                 UNION SELECT namespace, notifier FROM notifier_deliveries",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::NotifierEvent;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).expect("a time")
    }

    fn alert(host: &str) -> Alert {
        Alert {
            event: NotifierEvent::AgentOffline,
            namespace: "default".into(),
            host: Some(host.into()),
            schedule: None,
            repo: None,
            since: at(0),
            reason: "the agent is not connected".into(),
            run: None,
            growth: None,
        }
    }

    #[test]
    fn an_outbox_keeps_its_order_and_its_fired_alerts_across_a_reopen() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ops: NotifierId = ("default".into(), "ops".into());
        let mut store = Store::open(dir.path()).expect("opens");
        let fired = Fired {
            alert: alert("web-1"),
            sent_at: at(1),
        };
        store
            .enqueue(&ops, &[Enqueue::Firing(&fired)], at(1))
            .expect("queued");
        store
            .enqueue(&ops, &[Enqueue::Resolved(&fired.alert)], at(2))
            .expect("queued");
        let first = store.next_message(&ops).expect("read").expect("a message");
        store
            .failed(&ops, Some(first.id), at(3), "connection refused", at(4))
            .expect("recorded");
        drop(store);

        let mut store = Store::open(dir.path()).expect("opens again");
        let again = store.next_message(&ops).expect("read").expect("a message");
        assert_eq!(
            (again.id, again.state, again.attempts),
            (first.id, State::Firing, 1)
        );
        assert_eq!(again.next_attempt, at(4));
        assert!(store.fired_alerts().expect("read").is_empty(), "resolved");
        let d = &store.deliveries().expect("read")[&ops];
        assert_eq!((d.queued, d.firing), (2, 0));
        assert_eq!(d.last_error.as_ref().map(|e| e.2), Some(1));

        store
            .delivered(&ops, Some(again.id), at(5), "[FIRING] x")
            .expect("recorded");
        let next = store.next_message(&ops).expect("read").expect("a message");
        assert_eq!(next.state, State::Resolved);
        assert_eq!(store.deliveries().expect("read")[&ops].queued, 1);
    }

    #[test]
    fn an_outbox_holds_at_most_its_bound_dropping_the_oldest() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ops: NotifierId = ("default".into(), "ops".into());
        let mut store = Store::open(dir.path()).expect("opens");
        let alerts: Vec<Alert> = (0..MAX_QUEUED + 5)
            .map(|i| alert(&format!("web-{i}")))
            .collect();
        let messages: Vec<Enqueue> = alerts.iter().map(Enqueue::Resolved).collect();
        let dropped = store.enqueue(&ops, &messages, at(0)).expect("queued");
        assert_eq!(dropped, 5);
        let oldest = store.next_message(&ops).expect("read").expect("a message");
        assert_eq!(oldest.alert.host.as_deref(), Some("web-5"));
        store.forget_notifier(&ops).expect("forgotten");
        assert_eq!(store.next_message(&ops).expect("read"), None);
        assert!(store.stored_notifiers().expect("read").is_empty());
    }
}
