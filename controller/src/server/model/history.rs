//! What the status writer keeps of the run records between passes: their summaries (what
//! status needs), the runs still going (whose duration moves with the clock), and which records
//! a pass must turn into objects. Run records themselves stay in SQLite: a pass reads the ones
//! that changed, never the whole history.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::compile::HostKey;
use crate::records::{RecordId, history_limits};
use crate::resources::Schedule;
use crate::revision::Revision;
use crate::runs::RunRecord;
use crate::store::{GroupSize, RunGroup, Store, StoreError};
use crate::summaries::RunSummaries;

fn id(run: &RunRecord) -> RecordId {
    (run.kind, run.namespace.clone(), run.name.clone())
}

#[derive(Default)]
pub struct History {
    /// Summaries and open runs were read from the store (again after following a leader).
    loaded: bool,
    pub summaries: RunSummaries,
    open: BTreeMap<RecordId, RunRecord>,
    /// The revision request objects were last settled against.
    revision: Option<Arc<Revision>>,
    following: bool,
    /// While following: the cluster's resourceVersion of each Backup and Restore mirrored.
    mirrored: HashMap<RecordId, String>,
}

/// One pass's work on the records.
#[derive(Default)]
pub struct Pass {
    /// Records to turn into objects, as they are now.
    pub settle: BTreeMap<RecordId, RunRecord>,
    /// Records deleted by history limits.
    pub deleted: Vec<RecordId>,
    /// Objects left from records that are gone (after an upgrade, or objects mirrored from the
    /// cluster while following).
    pub orphans: Vec<RecordId>,
    /// The host and schedule of each record saved since the last pass: what their status
    /// reads changed.
    pub observed: Vec<(HostKey, Option<String>)>,
    /// The summaries were read from the store again: every status reads them anew.
    pub reloaded: bool,
}

impl History {
    /// The records whose objects this pass writes, after pruning what the history limits
    /// drop. Work follows what changed: the runs saved since the last pass, the runs going
    /// on, and on a new revision the requests and the schedules whose limits it changed
    /// (every schedule at start).
    pub fn pass(
        &mut self,
        store: &mut Store,
        revision: &Arc<Revision>,
    ) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        if !self.loaded {
            self.following = false;
            self.mirrored.clear();
            self.summaries = RunSummaries::default();
            self.open.clear();
            store.for_each_run(|run| self.observe(&run))?;
            for run in store.runs_to_settle()? {
                pass.settle.insert(id(&run), run);
            }
            pass.orphans = store.orphaned_run_objects()?;
            pass.reloaded = true;
            self.loaded = true;
        }
        let revised = self
            .revision
            .as_ref()
            .is_none_or(|r| !Arc::ptr_eq(r, revision));
        let mut groups = HashSet::new();
        if revised {
            for run in store.requested_runs()? {
                pass.settle.insert(id(&run), run);
            }
            let before = self.revision.as_deref();
            groups.extend(
                store
                    .run_groups()?
                    .into_iter()
                    .filter(|g| before.is_none_or(|b| limits_changed(b, revision, &g.group)))
                    .filter(|g| beyond(g, &revision.schedules))
                    .map(|g| g.group),
            );
            self.revision = Some(revision.clone());
        }
        for run in store.take_saved_runs() {
            self.observe(&run);
            pass.observed.push((
                HostKey::new(&run.namespace, &run.host),
                run.schedule.clone(),
            ));
            if run.is_final() && !run.requested {
                groups.insert(RunGroup::of(&run));
            }
            pass.settle.insert(id(&run), run);
        }
        pass.deleted = beyond_limits(store, &groups, &revision.schedules)?;
        if !pass.deleted.is_empty() {
            store.delete_runs(&pass.deleted)?;
            for gone in &pass.deleted {
                pass.settle.remove(gone);
                self.open.remove(gone);
            }
        }
        for (id, run) in &self.open {
            pass.settle.entry(id.clone()).or_insert_with(|| run.clone());
        }
        Ok(pass)
    }

    /// Each pass while following: the cluster's objects are shown as they are, and everything
    /// is read again on becoming the leader. The first pass takes every stored record's object
    /// as mirrored, so those the cluster does not hold are deleted.
    pub fn follow(&mut self, store: &Store) -> Result<(), StoreError> {
        if !self.following {
            self.mirrored = store
                .record_ids()?
                .into_iter()
                .map(|id| (id, String::new()))
                .collect();
            self.following = true;
            self.loaded = false;
            self.revision = None;
        }
        Ok(())
    }

    /// Whether the cluster's copy of a record changed since it was last mirrored.
    pub fn mirror_changed(&mut self, id: &RecordId, resource_version: Option<&str>) -> bool {
        let version = resource_version.unwrap_or_default();
        if self.mirrored.get(id).is_some_and(|v| v == version) {
            return false;
        }
        self.mirrored.insert(id.clone(), version.to_string());
        true
    }

    /// Records mirrored before that the cluster no longer holds.
    pub fn mirror_gone(&mut self, seen: &HashSet<RecordId>) -> Vec<RecordId> {
        let gone: Vec<RecordId> = self
            .mirrored
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in &gone {
            self.mirrored.remove(id);
        }
        gone
    }

    fn observe(&mut self, run: &RunRecord) {
        self.summaries.observe(run);
        if run.is_final() {
            self.open.remove(&id(run));
        } else {
            self.open.insert(id(run), run.clone());
        }
    }
}

/// Whether a new revision changed the history limits of a group's schedule.
fn limits_changed(before: &Revision, after: &Revision, group: &RunGroup) -> bool {
    let limits =
        |r: &Revision| history_limits(&r.schedules, &group.namespace, group.schedule.as_deref());
    limits(before) != limits(after)
}

/// The records of `groups` beyond their schedule's history limits.
/// Whether a group holds more records than its history limits keep.
fn beyond(size: &GroupSize, schedules: &[Schedule]) -> bool {
    let group = &size.group;
    let (keep_ok, keep_failed) =
        history_limits(schedules, &group.namespace, group.schedule.as_deref());
    size.succeeded > keep_ok || size.other > keep_failed
}

fn beyond_limits(
    store: &Store,
    groups: &HashSet<RunGroup>,
    schedules: &[Schedule],
) -> Result<Vec<RecordId>, StoreError> {
    let mut doomed = Vec::new();
    for group in groups {
        let (keep_ok, keep_failed) =
            history_limits(schedules, &group.namespace, group.schedule.as_deref());
        doomed.extend(store.runs_beyond(group, true, keep_ok)?);
        doomed.extend(store.runs_beyond(group, false, keep_failed)?);
    }
    Ok(doomed)
}
