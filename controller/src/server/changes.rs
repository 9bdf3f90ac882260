//! The recent changes of the read model, so that a watch can resume from a resourceVersion.
//!
//! Like the API server's watch cache, the window lives in memory: it starts empty at the stored
//! resourceVersion when the controller starts, keeps the last [`KEEP`] changes up to
//! [`KEEP_BYTES`] of object text, and a watch from a resourceVersion older than the window is
//! told so (410 Expired) and lists again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::resources::Kind;

/// How many changes a watch can resume across.
const KEEP: usize = 10_000;
/// How much object text the window holds at most: in a large fleet one pass rewrites thousands
/// of Hosts of a few KiB each, and a window of [`KEEP`] of them would be the largest thing the
/// controller holds. A watch that falls this far behind lists again, as it would after an API
/// server's watch cache moved on.
const KEEP_BYTES: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One object written or deleted, with the resourceVersion of that write.
#[derive(Debug)]
pub struct Change {
    pub resource_version: i64,
    pub kind: Kind,
    pub change: ChangeType,
    /// The object as written (for a deletion, as it was last), as JSON text: the window holds
    /// thousands, and text takes a fraction of the memory of a parsed value. The store writes
    /// the same text.
    object: Arc<str>,
    /// What selectors read of it: `{"metadata": {namespace, name, labels}}`.
    pub metadata: serde_json::Value,
    /// The metadata (namespace, name, labels) it had before, as `{"metadata": …}`; `None`
    /// when it is new. A watch with selectors tells from it whether the object enters its
    /// selection (ADDED), stays (MODIFIED) or leaves it (DELETED).
    pub before: Option<serde_json::Value>,
}

impl Change {
    pub fn new(
        resource_version: i64,
        kind: Kind,
        change: ChangeType,
        object: &serde_json::Value,
        before: Option<serde_json::Value>,
    ) -> Change {
        let m = &object["metadata"];
        Change {
            resource_version,
            kind,
            change,
            object: object.to_string().into(),
            metadata: serde_json::json!({"metadata": {
                "namespace": m["namespace"], "name": m["name"], "labels": m["labels"],
            }}),
            before,
        }
    }

    /// A change of a typed object, serialised straight to text (no JSON value in between: a
    /// pass may write thousands).
    pub fn of<K: kube::Resource + serde::Serialize>(
        resource_version: i64,
        kind: Kind,
        change: ChangeType,
        object: &K,
        before: Option<serde_json::Value>,
    ) -> Change {
        let m = object.meta();
        Change {
            resource_version,
            kind,
            change,
            object: serde_json::to_string(object).unwrap_or_default().into(),
            metadata: serde_json::json!({"metadata": {
                "namespace": m.namespace, "name": m.name, "labels": m.labels,
            }}),
            before,
        }
    }

    /// The object as JSON text.
    pub fn text(&self) -> Arc<str> {
        self.object.clone()
    }

    /// The object, parsed again.
    pub fn object(&self) -> serde_json::Value {
        serde_json::from_str(&self.object).unwrap_or_default()
    }

    /// Its namespace and name.
    pub fn key(&self) -> (&str, &str) {
        let m = &self.metadata["metadata"];
        (
            m["namespace"].as_str().unwrap_or_default(),
            m["name"].as_str().unwrap_or_default(),
        )
    }
}

/// Where a watch starts: the changes it missed, and a receiver for the ones to come.
pub type Resume = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

pub struct Changes {
    window: Mutex<Window>,
    tx: broadcast::Sender<Arc<Change>>,
}

struct Window {
    /// Every change after this resourceVersion is in `recent`.
    after: i64,
    recent: VecDeque<Arc<Change>>,
    /// The length of the object text in `recent`.
    bytes: usize,
}

impl Changes {
    pub fn new(resource_version: i64) -> Changes {
        Changes {
            window: Mutex::new(Window {
                after: resource_version,
                recent: VecDeque::new(),
                bytes: 0,
            }),
            tx: broadcast::channel(KEEP).0,
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records changes (in resourceVersion order) and sends them to every watch.
    pub fn publish(&self, changes: Vec<Change>) {
        let mut window = self.window();
        for change in changes {
            let change = Arc::new(change);
            window.bytes += change.object.len();
            window.recent.push_back(change.clone());
            while window.recent.len() > KEEP || window.bytes > KEEP_BYTES {
                let Some(oldest) = window.recent.pop_front() else {
                    break;
                };
                window.bytes -= oldest.object.len();
                window.after = oldest.resource_version;
            }
            // No receiver is not an error: nobody is watching.
            let _ = self.tx.send(change);
        }
    }

    /// A receiver for the changes to come.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// The changes after `resource_version` and a receiver for the ones to come, or `None`
    /// when that version is older than the window.
    pub fn since(&self, resource_version: i64) -> Option<Resume> {
        let window = self.window();
        if resource_version < window.after {
            return None;
        }
        let past = window
            .recent
            .iter()
            .filter(|c| c.resource_version > resource_version)
            .cloned()
            .collect();
        Some((past, self.tx.subscribe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(rv: i64) -> Change {
        let object = serde_json::json!({ "metadata": { "name": format!("h-{rv}") } });
        Change::new(rv, Kind::Host, ChangeType::Modified, &object, None)
    }

    #[test]
    fn a_watch_resumes_inside_the_window_and_expires_before_it() {
        let changes = Changes::new(10);
        assert!(changes.since(9).is_none(), "before the start is expired");
        let (past, mut rx) = changes.since(10).expect("the start is in the window");
        assert!(past.is_empty());
        changes.publish(vec![change(11), change(12)]);
        assert_eq!(rx.try_recv().expect("sent").resource_version, 11);
        let (past, _) = changes.since(11).expect("in the window");
        let versions: Vec<i64> = past.iter().map(|c| c.resource_version).collect();
        assert_eq!(versions, [12]);

        changes.publish((13..13 + KEEP as i64).map(change).collect());
        assert!(changes.since(11).is_none(), "pushed out of the window");
        let (past, _) = changes.since(12).expect("the oldest kept starts after 12");
        assert_eq!(past.len(), KEEP);
    }

    #[test]
    fn the_window_holds_at_most_its_bytes_of_object_text() {
        let changes = Changes::new(0);
        let big = |rv: i64| {
            let object = serde_json::json!({
                "metadata": { "name": format!("h-{rv}") },
                "status": { "text": "x".repeat(64 << 10) },
            });
            Change::new(rv, Kind::Host, ChangeType::Modified, &object, None)
        };
        let per_change = big(1).object.len();
        let fit = KEEP_BYTES / per_change;
        changes.publish((1..=fit as i64 + 10).map(big).collect());
        assert!(changes.since(9).is_none(), "the oldest were let go");
        let newest = fit as i64 + 10;
        let (past, _) = changes
            .since(newest - fit as i64)
            .expect("the last changes that fit are kept");
        assert_eq!(past.len(), fit);
        assert!(past.iter().map(|c| c.object.len()).sum::<usize>() <= KEEP_BYTES);
    }

    #[test]
    fn change_types_serialise_like_watch_events() {
        assert_eq!(
            serde_json::to_value(ChangeType::Added).expect("serialises"),
            "ADDED"
        );
        assert_eq!(
            serde_json::to_value(ChangeType::Deleted).expect("serialises"),
            "DELETED"
        );
    }
}
