//! One revision of desired state: every resource of every kind, as one source read it at one
//! moment. A revision is applied whole or not at all.

use std::collections::HashMap;

use kube::{Resource, ResourceExt};

use crate::resources::{
    Backup, DEFAULT_NAMESPACE, Host, Kind, Notifier, ObjectKey, Repo, Restore, Schedule,
};

/// Serialised as JSON when stored, so that the revision in force survives a restart.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Revision {
    pub repos: Vec<Repo>,
    pub hosts: Vec<Host>,
    pub schedules: Vec<Schedule>,
    pub backups: Vec<Backup>,
    pub restores: Vec<Restore>,
    /// A revision stored before Notifiers existed has none.
    #[serde(default)]
    pub notifiers: Vec<Notifier>,
}

impl Revision {
    /// Resource counts, as `validate` reports them.
    pub fn summary(&self) -> String {
        [
            (self.repos.len(), "repo"),
            (self.hosts.len(), "host"),
            (self.schedules.len(), "schedule"),
            (self.backups.len(), "backup"),
            (self.restores.len(), "restore"),
            (self.notifiers.len(), "notifier"),
        ]
        .iter()
        .map(|(n, what)| plural(*n, what))
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// Look-ups by namespace and name.
    pub fn index(&self) -> RevisionIndex<'_> {
        RevisionIndex {
            repos: by_name(&self.repos),
            hosts: by_name(&self.hosts),
            schedules: by_name(&self.schedules),
        }
    }
}

/// `1 host`, `2 hosts`.
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The namespace of a resource, `default` when it names none.
pub fn namespace_of<K: ResourceExt>(object: &K) -> &str {
    object
        .meta()
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// The name of a resource; every resource a source yields has one.
pub fn name_of<K: Resource>(object: &K) -> &str {
    object.meta().name.as_deref().unwrap_or_default()
}

pub fn key_of<K: ResourceExt>(kind: Kind, object: &K) -> ObjectKey {
    ObjectKey::new(kind, namespace_of(object), &object.name_any())
}

/// Resources of a revision by `(namespace, name)`.
pub struct RevisionIndex<'a> {
    pub repos: HashMap<(&'a str, &'a str), &'a Repo>,
    pub hosts: HashMap<(&'a str, &'a str), &'a Host>,
    pub schedules: HashMap<(&'a str, &'a str), &'a Schedule>,
}

fn by_name<K: ResourceExt>(objects: &[K]) -> HashMap<(&str, &str), &K> {
    objects
        .iter()
        .map(|o| ((namespace_of(o), name_of(o)), o))
        .collect()
}
