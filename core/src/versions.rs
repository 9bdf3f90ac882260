//! Schedule versions: a host's version goes up by one exactly when its plan's digest changes.

use std::collections::BTreeMap;

use crate::compile::{Fleet, HostKey};

/// A host's schedule version and the digest it was given for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub version: u64,
    pub digest: String,
}

/// The versions `fleet` gets, given what each host had before. `previous` should include hosts
/// that were removed: a host that comes back continues from its old version, because an agent
/// never accepts a version lower than one it has applied.
pub fn assign(
    previous: &BTreeMap<HostKey, Versioned>,
    fleet: &Fleet,
) -> BTreeMap<HostKey, Versioned> {
    fleet
        .hosts
        .iter()
        .map(|(key, compiled)| {
            (
                key.clone(),
                continue_from(previous.get(key), &compiled.digest),
            )
        })
        .collect()
}

/// One host's version for a plan with `digest`, given what it had before.
pub fn continue_from(previous: Option<&Versioned>, digest: &str) -> Versioned {
    let version = match previous {
        Some(prev) if prev.digest == digest => prev.version,
        Some(prev) => prev.version + 1,
        None => 1,
    };
    Versioned {
        version,
        digest: digest.to_string(),
    }
}

/// The schedule version a Host's status holds, with its digest: what the next version
/// continues from.
pub fn held(status: &crate::resources::HostStatus) -> Option<Versioned> {
    Some(Versioned {
        version: status.desired_schedule_version?,
        digest: status.desired_schedule_digest.clone()?,
    })
}
