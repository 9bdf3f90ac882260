//! The seven kinds of `holdfast.dev/v1alpha1`, shared by files mode and Kubernetes mode.

// Each kind repeats `printcolumn(name = …, type_ = …)`, which clippy mistakes for duplicates.
mod common;
#[allow(clippy::duplicated_attributes)]
mod host;
#[allow(clippy::duplicated_attributes)]
mod notifier;
#[allow(clippy::duplicated_attributes)]
mod repo;
#[allow(clippy::duplicated_attributes)]
mod run;
#[allow(clippy::duplicated_attributes)]
mod schedule;
#[allow(clippy::duplicated_attributes)]
mod snapshot;

use std::fmt;

pub use common::*;
pub use host::*;
pub use notifier::*;
pub use repo::*;
pub use run::*;
pub use schedule::*;
pub use snapshot::*;

/// The kinds Holdfast defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Repo,
    Host,
    Schedule,
    Backup,
    Restore,
    Notifier,
    /// Read-only: made from what agents report, never read from files.
    Snapshot,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Repo,
        Kind::Host,
        Kind::Schedule,
        Kind::Backup,
        Kind::Restore,
        Kind::Notifier,
        Kind::Snapshot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Repo => "Repo",
            Kind::Host => "Host",
            Kind::Schedule => "Schedule",
            Kind::Backup => "Backup",
            Kind::Restore => "Restore",
            Kind::Notifier => "Notifier",
            Kind::Snapshot => "Snapshot",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one resource: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// `Kind/name` in the default namespace, `Kind/namespace/name` elsewhere.
impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace == DEFAULT_NAMESPACE {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}
