//! What a revision changes against the one in force before it: the objects added, changed
//! (spec, labels or annotations) and removed, and the hosts whose schedule version goes up.
//! The revisions page shows it; the controller stores it beside each revision it reads.

use std::collections::HashMap;

use kube::Resource;
use kube::core::object::HasSpec;
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

/// Whether a person wrote the same of both: labels, annotations and spec.
fn written_alike<K: Resource + HasSpec>(a: &K, b: &K) -> bool
where
    K::Spec: PartialEq,
{
    a.meta().labels == b.meta().labels
        && a.meta().annotations == b.meta().annotations
        && a.spec() == b.spec()
}

/// The objects of one kind added, changed and removed, onto `lists` (unsorted).
fn compare<K: Resource + HasSpec>(
    kind: Kind,
    before: &[K],
    after: &[K],
    lists: &mut [Vec<ObjectKey>; 3],
) where
    K::Spec: PartialEq,
{
    let [added, changed, removed] = lists;
    let mut old: HashMap<ObjectKey, &K> = before.iter().map(|o| (key_of(kind, o), o)).collect();
    for object in after {
        let key = key_of(kind, object);
        match old.remove(&key) {
            None => added.push(key),
            Some(previous) if !written_alike(previous, object) => changed.push(key),
            Some(_) => {}
        }
    }
    removed.extend(old.into_keys());
}

/// The objects `after` adds, changes and removes against `before`, each list in kind,
/// namespace and name order. `new_versions` is left empty: only versioning knows it.
pub fn changes(before: &Revision, after: &Revision) -> RevisionChanges {
    let mut lists: [Vec<ObjectKey>; 3] = Default::default();
    compare(Kind::Repo, &before.repos, &after.repos, &mut lists);
    compare(Kind::Host, &before.hosts, &after.hosts, &mut lists);
    compare(
        Kind::Schedule,
        &before.schedules,
        &after.schedules,
        &mut lists,
    );
    compare(Kind::Backup, &before.backups, &after.backups, &mut lists);
    compare(Kind::Restore, &before.restores, &after.restores, &mut lists);
    let names = |mut keys: Vec<ObjectKey>| {
        keys.sort();
        let mut names = Names::default();
        for key in keys {
            names.push(key.to_string());
        }
        names
    };
    let [added, changed, removed] = lists;
    RevisionChanges {
        added: names(added),
        changed: names(changed),
        removed: names(removed),
        new_versions: Names::default(),
    }
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
    fn only_what_a_person_writes_counts_as_a_change() {
        let before = Revision {
            hosts: vec![host("web-1", None), host("web-2", None)],
            ..Revision::default()
        };
        let mut after = before.clone();
        // Written by the controller, not a person: status and the server's metadata.
        after.hosts[0].status = Some(Default::default());
        after.hosts[0].metadata.resource_version = Some("7".into());
        assert!(changes(&before, &after).is_empty());
        after.hosts[1].metadata.annotations =
            Some([("owner".to_string(), "ops".to_string())].into());
        assert_eq!(changes(&before, &after).changed.names, ["Host/web-2"]);
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
