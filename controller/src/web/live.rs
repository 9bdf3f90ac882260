//! Server-sent events for the pages that follow the fleet live.
//!
//! A run's page gets its status and log lines (`/runs/{namespace}/{name}/events`). The fleet
//! page (`/events`) and a host's page (`/hosts/{namespace}/{name}/events`) get `changed`
//! events naming what changed, taken from the read model's change window and gathered for a
//! second at a time; the page's script fetches what it shows of that. Nothing is rendered per
//! event, so the cost of a change does not grow with the fleet or with the clients watching.
//!
//! Each client has a bounded queue of events: one that does not read them as fast as they come
//! is dropped, and its browser reconnects and catches up, rather than being waited for.

use std::collections::{BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::Shared;
use crate::resources::Kind;
use crate::runs::is_final;
use crate::server::changes::Change;
use crate::server::{Controller, RunEvent};

/// Changes are gathered this long before they are sent as one event.
const GATHER: Duration = Duration::from_secs(1);
/// Events a client may have unread before it is dropped: this many seconds of changes.
const CLIENT_QUEUE: usize = 16;
/// Hosts named in one event; beyond, the event says `more` and the page reloads itself.
const MAX_HOSTS: usize = 100;
/// The label of a run's host on its Backup.
const LABEL_HOST: &str = "holdfast.dev/host";

/// What the events of one client are about.
#[derive(Clone, Debug)]
enum Scope {
    Fleet,
    Host { namespace: String, name: String },
}

/// What changed in the last second, as the page's script reads it.
#[derive(Debug, Default, Serialize)]
struct Changed {
    /// Hosts whose object changed, or one of whose runs did: `[namespace, name]`.
    hosts: BTreeSet<(String, String)>,
    /// More hosts changed than are named.
    more: bool,
    /// A run started, progressed or ended.
    running: bool,
    schedules: bool,
    repos: bool,
    /// Another revision was applied or rejected.
    revisions: bool,
    /// Changes were missed: everything shown may be out of date.
    reset: bool,
}

impl Changed {
    fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && !(self.more
                || self.running
                || self.schedules
                || self.repos
                || self.revisions
                || self.reset)
    }

    fn host(&mut self, namespace: &str, name: &str) {
        if self.hosts.len() < MAX_HOSTS {
            self.hosts.insert((namespace.to_string(), name.to_string()));
        } else if !self
            .hosts
            .contains(&(namespace.to_string(), name.to_string()))
        {
            self.more = true;
        }
    }

    /// Takes in one change of the read model, if the scope shows it.
    fn add(&mut self, scope: &Scope, change: &Change) {
        let (namespace, name) = change.key();
        let host_label = change.metadata["metadata"]["labels"][LABEL_HOST].as_str();
        let shown = match scope {
            Scope::Fleet => true,
            Scope::Host {
                namespace: ns,
                name: host,
            } => {
                ns == namespace
                    && match change.kind {
                        Kind::Host => host == name,
                        Kind::Backup | Kind::Restore | Kind::Snapshot => {
                            host_label == Some(host.as_str())
                        }
                        Kind::Schedule | Kind::Repo => true,
                        Kind::Notifier => false,
                    }
            }
        };
        if !shown {
            return;
        }
        match change.kind {
            Kind::Host => self.host(namespace, name),
            Kind::Backup | Kind::Restore => {
                self.running = true;
                if let Some(host) = host_label {
                    self.host(namespace, host);
                }
            }
            Kind::Schedule => self.schedules = true,
            Kind::Repo => self.repos = true,
            // Only a host's page shows its snapshots; the fleet's rows do not.
            Kind::Snapshot => {
                if let (Scope::Host { .. }, Some(host)) = (scope, host_label) {
                    self.host(namespace, host);
                }
            }
            // The page shows no Notifiers.
            Kind::Notifier => {}
        }
    }
}

/// The revisions in force and rejected, by id: when they differ, the page's banners do.
type RevisionIds = (Option<i64>, Option<i64>);

fn revision_ids(c: &Controller) -> RevisionIds {
    let model = c.model();
    let r = &model.revisions;
    (
        r.applied.as_ref().map(|a| a.id),
        r.rejected.as_ref().map(|r| r.id),
    )
}

/// Reads the change window for one client and queues an event for it each second something
/// it shows changed; ends when the client goes or falls [`CLIENT_QUEUE`] events behind.
async fn gather(
    mut changes: broadcast::Receiver<Arc<Change>>,
    revision_ids: impl Fn() -> RevisionIds,
    scope: Scope,
    tx: mpsc::Sender<Event>,
) {
    let mut revisions = revision_ids();
    let mut tick = tokio::time::interval(GATHER);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Changed::default();
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            change = changes.recv() => match change {
                Ok(change) => pending.add(&scope, &change),
                // The window moved on past what this client read: it must catch up whole.
                Err(broadcast::error::RecvError::Lagged(_)) => pending.reset = true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let now = revision_ids();
                if now != revisions {
                    revisions = now;
                    pending.revisions = true;
                }
                if pending.is_empty() {
                    continue;
                }
                let changed = std::mem::take(&mut pending);
                let event = match Event::default().event("changed").json_data(&changed) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::error!("cannot serialise a page event: {e}");
                        continue;
                    }
                };
                match tx.try_send(event) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::debug!(?scope, "a page's client reads its events too slowly; dropped");
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
    }
}

fn follow(c: Arc<Controller>, scope: Scope) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
    let changes = c.changes.subscribe();
    tokio::spawn(gather(changes, move || revision_ids(&c), scope, tx));
    Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// `GET /events`: what changed in the fleet.
pub(super) async fn fleet_events(
    State(c): Shared,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    follow(c, Scope::Fleet)
}

/// `GET /hosts/{namespace}/{name}/events`: what changed of one host, its runs, and the
/// schedules and repos of its namespace.
pub(super) async fn host_events(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    follow(c, Scope::Host { namespace, name })
}

/// What a run's event stream has sent and has yet to send.
struct Follow {
    controller: Arc<Controller>,
    namespace: String,
    name: String,
    events: broadcast::Receiver<RunEvent>,
    sent_version: Option<String>,
    lines: VecDeque<String>,
    done: bool,
}

/// Server-sent events for one run: `status` (its status as JSON) whenever it changes, `log`
/// for every new line; the stream ends once the run has finished.
pub(super) async fn run_events(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let follow = Follow {
        events: c.subscribe_runs(),
        controller: c,
        namespace,
        name,
        sent_version: None,
        lines: VecDeque::new(),
        done: false,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        loop {
            if let Some(line) = f.lines.pop_front() {
                return Some((Ok(Event::default().event("log").data(line)), f));
            }
            if f.done {
                return None;
            }
            if let Some(b) = super::pages::read_backup(&f.controller, &f.namespace, &f.name)
                && b.metadata.resource_version != f.sent_version
            {
                f.sent_version = b.metadata.resource_version.clone();
                f.done = b
                    .status
                    .as_ref()
                    .and_then(|s| s.run.phase)
                    .is_some_and(is_final);
                let data = serde_json::to_string(&b.status).unwrap_or_default();
                return Some((Ok(Event::default().event("status").data(data)), f));
            }
            tokio::select! {
                event = f.events.recv() => match event {
                    Ok(RunEvent::Log { namespace, name, lines })
                        if namespace == f.namespace && name == f.name => f.lines.extend(lines),
                    Err(broadcast::error::RecvError::Closed) => return None,
                    _ => {}
                },
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::changes::ChangeType;

    fn change(kind: Kind, namespace: &str, name: &str, host: Option<&str>) -> Change {
        let object = serde_json::json!({ "metadata": {
            "namespace": namespace, "name": name,
            "labels": host.map(|h| serde_json::json!({ LABEL_HOST: h })),
        } });
        Change::new(1, kind, ChangeType::Modified, &object, None)
    }

    #[test]
    fn the_fleet_hears_of_every_change_and_a_host_page_of_its_own() {
        let host = Scope::Host {
            namespace: "default".into(),
            name: "web-1".into(),
        };
        let changes = [
            change(Kind::Host, "default", "web-1", None),
            change(Kind::Host, "default", "web-2", None),
            change(Kind::Backup, "default", "nightly-web-2-1", Some("web-2")),
            change(Kind::Backup, "default", "nightly-web-1-1", Some("web-1")),
            change(Kind::Schedule, "other", "nightly", None),
        ];
        let mut fleet = Changed::default();
        let mut one = Changed::default();
        for c in &changes {
            fleet.add(&Scope::Fleet, c);
            one.add(&host, c);
        }
        let names = |c: &Changed| -> Vec<String> { c.hosts.iter().map(|h| h.1.clone()).collect() };
        assert_eq!(names(&fleet), ["web-1", "web-2"]);
        assert!(fleet.running && fleet.schedules && !fleet.repos && !fleet.more);
        assert_eq!(names(&one), ["web-1"]);
        assert!(one.running, "its own run");
        assert!(!one.schedules, "a schedule of another namespace");

        let quiet = change(Kind::Backup, "default", "nightly-web-2-2", Some("web-2"));
        let mut other = Changed::default();
        other.add(&host, &quiet);
        assert!(other.is_empty(), "another host's run: {other:?}");
    }

    #[test]
    fn an_event_names_at_most_its_share_of_hosts_and_says_there_were_more() {
        let mut changed = Changed::default();
        for i in 0..MAX_HOSTS + 3 {
            changed.add(
                &Scope::Fleet,
                &change(Kind::Host, "default", &format!("h-{i:04}"), None),
            );
        }
        assert_eq!(changed.hosts.len(), MAX_HOSTS);
        assert!(changed.more);
        let json = serde_json::to_value(&changed).expect("serialises");
        assert_eq!(json["hosts"][0], serde_json::json!(["default", "h-0000"]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_is_dropped_not_waited_for() {
        let changes = crate::server::changes::Changes::new(0);
        let (tx, mut rx) = mpsc::channel(CLIENT_QUEUE);
        let task = tokio::spawn(gather(
            changes.subscribe(),
            || (None, None),
            Scope::Fleet,
            tx,
        ));
        // One change a second, never read: the queue fills, then the client is let go. Two
        // changes may fall in one second's event, so more are sent than the queue holds.
        for i in 0..CLIENT_QUEUE * 2 {
            changes.publish(vec![change(Kind::Host, "default", &format!("h-{i}"), None)]);
            tokio::time::sleep(GATHER).await;
        }
        tokio::time::timeout(GATHER * 4, task)
            .await
            .expect("the slow client's task ends")
            .expect("it does not panic");
        let mut queued = 0;
        while rx.recv().await.is_some() {
            queued += 1;
        }
        assert_eq!(queued, CLIENT_QUEUE, "what was queued is all it gets");
    }

    #[tokio::test(start_paused = true)]
    async fn changes_of_one_second_make_one_event_and_quiet_makes_none() {
        let changes = crate::server::changes::Changes::new(0);
        let (tx, mut rx) = mpsc::channel(CLIENT_QUEUE);
        tokio::spawn(gather(
            changes.subscribe(),
            || (None, None),
            Scope::Fleet,
            tx,
        ));
        tokio::time::sleep(GATHER / 2).await;
        changes.publish(
            (0..50)
                .map(|i| change(Kind::Host, "default", &format!("h-{i}"), None))
                .collect(),
        );
        tokio::time::sleep(GATHER * 5).await;
        assert!(rx.try_recv().is_ok(), "one event for the burst");
        assert!(rx.try_recv().is_err(), "and no other while nothing changes");
    }
}
