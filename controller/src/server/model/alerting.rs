//! What a pass of the status writer tells the notifiers: the alerts that hold for each Repo,
//! Host and Schedule whose status this pass changed (for a new revision, for every one), and
//! whether the newest revision was rejected. Objects whose status did not change are not
//! looked at; the books keep time for what waits (an agent offline for a while).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::Resource;

use super::Controller;
use crate::alerts::{self, Alert, Rejection, Subject};
use crate::notify::Needs;
use crate::resources::{Host, Kind, ObjectKey, Repo, Schedule};
use crate::revision::{Revision, name_of, namespace_of};
use crate::server::changes::Change;
use crate::store::Revisions;

/// How far back a repo's sizes are read: the day before its newest size, which may be a
/// little old.
const SIZES: chrono::TimeDelta = chrono::TimeDelta::days(2);

/// The objects a pass settled.
pub struct Settled<'a> {
    pub repos: &'a [Arc<Repo>],
    pub hosts: &'a [Arc<Host>],
    pub schedules: &'a [Arc<Schedule>],
    /// What the pass wrote; its Repos, Hosts and Schedules are the ones to look at.
    pub events: &'a [Change],
}

/// Hands the notifiers what holds now; returns when the clock alone next changes what they
/// send.
pub fn observe(
    controller: &Controller,
    revision: &Arc<Revision>,
    settled: &Settled,
    revisions: &Revisions,
    rejected: &BTreeMap<ObjectKey, Vec<String>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let alerting = &controller.alerting;
    let complete = match alerting.needs(revision) {
        Needs::Nothing => return None,
        Needs::Changes => false,
        Needs::Everything => true,
    };
    let changed: HashSet<(Kind, &str, &str)> = settled
        .events
        .iter()
        .map(|e| {
            let (namespace, name) = e.key();
            (e.kind, namespace, name)
        })
        .collect();
    let looks_at = |kind: Kind, (namespace, name): (&str, &str)| {
        complete || changed.contains(&(kind, namespace, name))
    };
    let mut subjects = vec![(Subject::Revision, rejections(revisions, rejected, now))];
    if complete || !changed.is_empty() {
        for host in settled.hosts.iter().map(Arc::as_ref) {
            if looks_at(Kind::Host, names(host)) {
                subjects.push((subject(Kind::Host, host), alerts::of_host(host)));
            }
        }
        let runs = controller.records();
        for schedule in settled.schedules.iter().map(Arc::as_ref) {
            if looks_at(Kind::Schedule, names(schedule)) {
                let holding = alerts::of_schedule(schedule, &runs.summaries, now);
                subjects.push((subject(Kind::Schedule, schedule), holding));
            }
        }
        drop(runs);
        for repo in settled.repos.iter().map(Arc::as_ref) {
            if looks_at(Kind::Repo, names(repo)) {
                let (namespace, name) = names(repo);
                let sizes = controller
                    .store()
                    .repo_sizes(namespace, name, now - SIZES)
                    .unwrap_or_else(|e| {
                        tracing::error!("cannot read the sizes of repo {namespace}/{name}: {e}");
                        Vec::new()
                    });
                subjects.push((subject(Kind::Repo, repo), alerts::of_repo(repo, &sizes)));
            }
        }
    }
    alerting.observe(revision, &subjects, complete, now)
}

fn names<K: Resource>(object: &K) -> (&str, &str) {
    (namespace_of(object), name_of(object))
}

fn subject<K: Resource>(kind: Kind, object: &K) -> Subject {
    let (namespace, name) = (namespace_of(object).into(), name_of(object).into());
    match kind {
        Kind::Host => Subject::Host { namespace, name },
        Kind::Schedule => Subject::Schedule { namespace, name },
        _ => Subject::Repo { namespace, name },
    }
}

/// The rejections in force: the directory's newest revision (files), or the objects at fault
/// per namespace (Kubernetes), whose time is not known and counts from `now`.
fn rejections(
    revisions: &Revisions,
    rejected: &BTreeMap<ObjectKey, Vec<String>>,
    now: DateTime<Utc>,
) -> Vec<Alert> {
    let mut out: Vec<Rejection> = revisions
        .rejected
        .iter()
        .map(|r| Rejection {
            namespace: None,
            at: r.at,
            errors: r.errors.clone(),
        })
        .collect();
    let mut by_namespace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (object, problems) in rejected {
        by_namespace
            .entry(&object.namespace)
            .or_default()
            .extend(problems.iter().map(|p| format!("{object}: {p}")));
    }
    out.extend(
        by_namespace
            .into_iter()
            .map(|(namespace, errors)| Rejection {
                namespace: Some(namespace.to_string()),
                at: now,
                errors,
            }),
    );
    alerts::of_rejections(&out)
}
