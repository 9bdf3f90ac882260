//! What a revision changes against the one in force before it: the objects added, changed
//! (spec, labels or annotations) and removed, and the hosts whose schedule version goes up.
//! The revisions page shows it; the controller stores it beside each revision it reads.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};

use crate::resources::{Kind, ObjectKey};
use crate::revision::{Revision, key_of};

/// At most this many names are kept of each list; the counts say how many there were. A
/// change to every host of a large fleet would otherwise store thousands of names per revision.
pub const NAMES_KEPT: usize = 100;

/// One list of names, the first [`NAMES_KEPT`] of them, and how many there were.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    pub names: Vec<String>,
    pub total: usize,
}

impl Names {
    pub fn push(&mut self, name: String) {
        if self.names.len() < NAMES_KEPT {
            self.names.push(name);
        }
        self.total += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// What a revision changes. Objects are named as findings name them (`Schedule/nightly`,
/// `Host/team-a/web-1`); hosts as `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionChanges {
    pub added: Names,
    pub changed: Names,
    pub removed: Names,
    /// Hosts given a new schedule version (applied revisions only).
    pub new_versions: Names,
}

impl RevisionChanges {
    /// Nothing added, changed or removed, and no new version.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.new_versions.is_empty()
    }
}

/// What a person wrote of an object: its labels, annotations and spec, compared as JSON.
fn written<K: Resource + Serialize>(object: &K) -> serde_json::Value {
    let value = serde_json::to_value(object).unwrap_or_default();
    serde_json::json!({
        "labels": value["metadata"]["labels"],
        "annotations": value["metadata"]["annotations"],
        "spec": value["spec"],
    })
}

fn objects<K: ResourceExt + Serialize>(
    kind: Kind,
    items: &[K],
    out: &mut BTreeMap<ObjectKey, serde_json::Value>,
) {
    for item in items {
        out.insert(key_of(kind, item), written(item));
    }
}

fn every_object(revision: &Revision) -> BTreeMap<ObjectKey, serde_json::Value> {
    let mut out = BTreeMap::new();
    objects(Kind::Repo, &revision.repos, &mut out);
    objects(Kind::Host, &revision.hosts, &mut out);
    objects(Kind::Schedule, &revision.schedules, &mut out);
    objects(Kind::Backup, &revision.backups, &mut out);
    objects(Kind::Restore, &revision.restores, &mut out);
    out
}

/// The objects `after` adds, changes and removes against `before`, each list in kind,
/// namespace and name order. `new_versions` is left empty: only versioning knows it.
pub fn changes(before: &Revision, after: &Revision) -> RevisionChanges {
    let old = every_object(before);
    let new = every_object(after);
    let mut out = RevisionChanges::default();
    for (key, value) in &new {
        match old.get(key) {
            None => out.added.push(key.to_string()),
            Some(previous) if previous != value => out.changed.push(key.to_string()),
            Some(_) => {}
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        out.removed.push(key.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Host, HostSpec};

    fn host(name: &str, repo: Option<&str>) -> Host {
        let mut host = Host::new(
            name,
            HostSpec {
                default_repo: repo.map(str::to_string),
                ..HostSpec::default()
            },
        );
        host.metadata.namespace = Some("default".into());
        host
    }

    #[test]
    fn objects_added_changed_and_removed_are_named_in_order() {
        let before = Revision {
            hosts: vec![
                host("web-0", None),
                host("web-1", None),
                host("web-2", None),
            ],
            ..Revision::default()
        };
        let mut labelled = host("web-2", None);
        labelled.metadata.labels = Some([("tier".to_string(), "db".to_string())].into());
        let after = Revision {
            hosts: vec![host("web-1", Some("nas")), labelled, host("web-3", None)],
            ..Revision::default()
        };
        let diff = changes(&before, &after);
        assert_eq!(diff.added.names, ["Host/web-3"]);
        assert_eq!(diff.changed.names, ["Host/web-1", "Host/web-2"]);
        assert_eq!(diff.removed.names, ["Host/web-0"]);
        assert!(diff.new_versions.is_empty());
        assert!(changes(&after, &after.clone()).is_empty());
    }

    #[test]
    fn long_lists_keep_their_first_names_and_count_them_all() {
        let before = Revision::default();
        let after = Revision {
            hosts: (0..NAMES_KEPT + 5)
                .map(|i| host(&format!("h-{i:04}"), None))
                .collect(),
            ..Revision::default()
        };
        let diff = changes(&before, &after);
        assert_eq!(diff.added.total, NAMES_KEPT + 5);
        assert_eq!(diff.added.names.len(), NAMES_KEPT);
        assert_eq!(diff.added.names[0], "Host/h-0000");
    }
}
