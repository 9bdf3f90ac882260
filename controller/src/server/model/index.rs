//! What the status writer keeps between passes so that a pass recomputes only what something
//! touched: the hosts whose agent, session, schedule version or runs changed, and the Schedules
//! whose runs changed or whose time came (a host's next run, or its turning stale). A new or
//! rejected revision, objects that change without telling (the cluster's), run summaries read
//! again or a failed pass make the next pass recompute everything.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::compile::{Fleet, HostKey};
use crate::resources::ObjectKey;
use crate::revision::{Revision, name_of, namespace_of};
use crate::status::Runners;

/// What changed since the status writer's last pass, as the hub and the desired-state source
/// say it.
#[derive(Debug, Default)]
pub struct Touched {
    /// Recompute everything (every session ended at once).
    pub all: bool,
    /// Hosts whose agent record, session or schedule version changed.
    pub hosts: HashSet<HostKey>,
}

/// What one pass recomputes.
#[derive(Debug, PartialEq)]
pub enum Scope {
    Everything,
    Touched {
        hosts: BTreeSet<HostKey>,
        schedules: BTreeSet<(String, String)>,
    },
}

impl Scope {
    pub fn everything(&self) -> bool {
        matches!(self, Scope::Everything)
    }

    /// Whether this pass recomputes a Schedule's status.
    pub fn has_schedule(&self, namespace: &str, name: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Touched { schedules, .. } => {
                schedules.contains(&(namespace.to_string(), name.to_string()))
            }
        }
    }
}

/// What the pass found besides what the hub touched.
pub struct Found<'a> {
    /// The host and schedule of each run record saved since the last pass.
    pub runs: &'a [(HostKey, Option<String>)],
    /// The objects status is written to change without telling (the cluster's).
    pub observed: bool,
    /// The run summaries were read again from the store.
    pub reloaded: bool,
}

/// The status writer's index of the fleet in force.
#[derive(Default)]
pub struct Index {
    /// What statuses were last computed from.
    revision: Option<Arc<Revision>>,
    fleet: Option<Arc<Fleet>>,
    rejected: BTreeMap<ObjectKey, Vec<String>>,
    /// Which hosts run each Schedule.
    pub runners: Runners,
    /// Each host's place in the revision's hosts, which is its place in the read model's.
    places: HashMap<HostKey, usize>,
    /// A hash of each host's status as computed (before settling): a host whose status
    /// hashes the same is kept as it is.
    pub host_status: HashMap<HostKey, u64>,
    /// When the clock alone next changes each Schedule's status.
    until: HashMap<(String, String), DateTime<Utc>>,
    /// A hash of each host's forget schedules as its Snapshots were projected with (see
    /// `forget_hashes`).
    pub forgets: HashMap<HostKey, u64>,
    /// What the last pass recomputed.
    pub recomputed: Recomputed,
}

/// How many statuses a pass recomputed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Recomputed {
    pub hosts: usize,
    pub schedules: usize,
}

impl Index {
    /// Whether no pass has settled the fleet yet.
    pub fn is_new(&self) -> bool {
        self.revision.is_none()
    }

    /// Forgets what was computed: the next pass recomputes everything, as the first does
    /// (after a pass failed, or the read model was written another way, as a follower's).
    pub fn reset(&mut self) {
        *self = Index::default();
    }

    /// What this pass recomputes: everything when the revision or the rejected objects
    /// changed, `touched` says all, or `found` has objects that change without telling or
    /// summaries read again; otherwise the hosts `touched` names and those of the runs found,
    /// and the Schedules of those runs and those whose time came by `now`.
    pub fn scope(
        &mut self,
        revision: &Arc<Revision>,
        fleet: &Arc<Fleet>,
        rejected: &BTreeMap<ObjectKey, Vec<String>>,
        touched: &Touched,
        found: Found,
        now: DateTime<Utc>,
    ) -> Scope {
        let same = self
            .revision
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, revision))
            && self.fleet.as_ref().is_some_and(|f| Arc::ptr_eq(f, fleet))
            && self.rejected == *rejected;
        if !same {
            self.revision = Some(revision.clone());
            self.fleet = Some(fleet.clone());
            self.rejected = rejected.clone();
            self.runners = Runners::of(fleet);
            self.places = revision
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (HostKey::new(namespace_of(h), name_of(h)), i))
                .collect();
            self.until.clear();
            self.host_status.clear();
        }
        if !same || touched.all || found.observed || found.reloaded {
            return Scope::Everything;
        }
        let mut hosts: BTreeSet<HostKey> = touched.hosts.iter().cloned().collect();
        let mut schedules: BTreeSet<(String, String)> = self
            .until
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for (host, schedule) in found.runs {
            if let Some(schedule) = schedule {
                schedules.insert((host.namespace.clone(), schedule.clone()));
            }
            hosts.insert(host.clone());
        }
        Scope::Touched { hosts, schedules }
    }

    /// A host's place in the revision's hosts, if the revision has it.
    pub fn place(&self, host: &HostKey) -> Option<usize> {
        self.places.get(host).copied()
    }

    /// Records when the clock alone next changes a Schedule's status.
    pub fn set_until(&mut self, schedule: (String, String), at: Option<DateTime<Utc>>) {
        match at {
            Some(at) => self.until.insert(schedule, at),
            None => self.until.remove(&schedule),
        };
    }

    /// When the clock alone next changes any Schedule's status.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        self.until.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).expect("a time").to_utc()
    }

    fn quiet(runs: &[(HostKey, Option<String>)]) -> Found<'_> {
        Found {
            runs,
            observed: false,
            reloaded: false,
        }
    }

    #[test]
    fn a_pass_recomputes_what_was_touched_and_everything_for_a_new_revision() {
        let revision = Arc::new(Revision::default());
        let fleet = Arc::new(Fleet::default());
        let none = BTreeMap::new();
        let mut index = Index::default();
        let now = at("2026-12-01T10:00:00Z");
        let nothing = Touched::default();
        assert!(index.is_new());
        assert_eq!(
            index.scope(&revision, &fleet, &none, &nothing, quiet(&[]), now),
            Scope::Everything,
            "the first pass"
        );
        index.set_until(
            ("fleet".into(), "nightly".into()),
            Some(at("2026-12-01T10:00:30Z")),
        );
        index.set_until(
            ("fleet".into(), "hourly".into()),
            Some(at("2026-12-01T11:00:00Z")),
        );
        assert_eq!(index.until(), Some(at("2026-12-01T10:00:30Z")));

        let web_1 = HostKey::new("fleet", "web-1");
        let web_2 = HostKey::new("fleet", "web-2");
        let touched = Touched {
            all: false,
            hosts: [web_1.clone()].into(),
        };
        let runs = [(web_2.clone(), Some("weekly".to_string()))];
        assert_eq!(
            index.scope(&revision, &fleet, &none, &touched, quiet(&runs), now),
            Scope::Touched {
                hosts: [web_1.clone(), web_2.clone()].into(),
                schedules: [("fleet".to_string(), "weekly".to_string())].into(),
            },
            "the touched host, and the host and schedule of a run"
        );
        let later = at("2026-12-01T10:00:30Z");
        assert_eq!(
            index.scope(&revision, &fleet, &none, &nothing, quiet(&[]), later),
            Scope::Touched {
                hosts: BTreeSet::new(),
                schedules: [("fleet".to_string(), "nightly".to_string())].into(),
            },
            "a schedule whose time came"
        );

        let found = |observed, reloaded| Found {
            runs: &[],
            observed,
            reloaded,
        };
        let all = Touched {
            all: true,
            hosts: HashSet::new(),
        };
        for (touched, found, why) in [
            (all, found(false, false), "every session ended"),
            (
                Touched::default(),
                found(true, false),
                "the cluster's objects",
            ),
            (
                Touched::default(),
                found(false, true),
                "summaries read again",
            ),
        ] {
            assert_eq!(
                index.scope(&revision, &fleet, &none, &touched, found, now),
                Scope::Everything,
                "{why}"
            );
        }
        let rejected: BTreeMap<ObjectKey, Vec<String>> = [(
            ObjectKey::new(crate::resources::Kind::Schedule, "fleet", "nightly"),
            vec!["bad cron".to_string()],
        )]
        .into();
        assert_eq!(
            index.scope(&revision, &fleet, &rejected, &nothing, quiet(&[]), now),
            Scope::Everything,
            "a rejected revision"
        );
        let next = Arc::new(Revision::default());
        assert_eq!(
            index.scope(&next, &fleet, &rejected, &nothing, quiet(&[]), now),
            Scope::Everything,
            "a new revision"
        );
        assert_eq!(
            index.until(),
            None,
            "a new revision's schedules have no time yet"
        );
        assert!(matches!(
            index.scope(&next, &fleet, &rejected, &nothing, quiet(&[]), now),
            Scope::Touched { .. }
        ));
        index.reset();
        assert!(index.is_new());
    }
}
