//! What status needs of the run records: for each host, schedule and repo, the newest runs of
//! each outcome. A summary is folded one record at a time, so a report costs one update and the
//! status writer never reads the history; its size follows the fleet, not how long it has run.
//!
//! Folding keeps what pruning would drop: a Schedule still knows its last missed run after the
//! record is gone, and a Repo that once worked stays initialised.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use protocol::JobOperation;

use crate::compile::HostKey;
use crate::resources::{LastDrill, LastRun, Phase, RepoCheck};
use crate::runs::RunRecord;

/// The runs of one schedule on one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleRuns {
    /// The outcome of the newest finished run, and when it finished.
    pub last: Option<(DateTime<Utc>, Phase)>,
    /// The newest run that ran to an end (see [`ended`]): a missed or skipped run does not
    /// count, so a schedule with only those is still waiting for its first run.
    pub last_ended: Option<(DateTime<Utc>, Phase)>,
    /// The record of `last_ended`, and what it said when it did not succeed: what an alert
    /// about it names and links.
    pub last_ended_run: Option<(String, Option<String>)>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_missed: Option<DateTime<Utc>>,
    /// The newest time a run was due (or, unscheduled, started).
    pub last_scheduled: Option<DateTime<Utc>>,
}

/// The newest finished run on a repo: what its `Ready` condition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRun {
    pub finished_at: DateTime<Utc>,
    pub name: String,
    pub phase: Phase,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// The runs on one repo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoRuns {
    pub last: Option<RepoRun>,
    pub last_check: Option<(DateTime<Utc>, RepoCheck)>,
    /// A run on it succeeded: it exists.
    pub succeeded: bool,
    /// A run found it missing.
    pub missing: bool,
}

/// Namespace and name of a Schedule or Repo.
type Named = (String, String);

/// The summaries of every host, schedule and repo that has runs.
#[derive(Clone, Debug, Default)]
pub struct RunSummaries {
    last_backup: HashMap<HostKey, (DateTime<Utc>, LastRun)>,
    last_drill: HashMap<HostKey, (DateTime<Utc>, LastDrill)>,
    last_drill_success: HashMap<HostKey, DateTime<Utc>>,
    schedules: HashMap<(Named, String), ScheduleRuns>,
    repos: HashMap<Named, RepoRuns>,
}

/// A run that ran to an end: it succeeded or failed in whole or in part. Missed, skipped and
/// cancelled runs never did the work, so they are never a host's "last backup".
pub fn ended(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Succeeded | Phase::PartiallyFailed | Phase::Failed
    )
}

/// Whether `at` is at least as new as what is held (ties go to the record seen last, as the
/// newest of a list oldest first).
fn newer<T>(held: &Option<(DateTime<Utc>, T)>, at: DateTime<Utc>) -> bool {
    held.as_ref().is_none_or(|(t, _)| at >= *t)
}

impl RunSummaries {
    /// Summaries of `runs`, oldest first.
    pub fn of<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> RunSummaries {
        let mut summaries = RunSummaries::default();
        for run in runs {
            summaries.observe(run);
        }
        summaries
    }

    /// Takes in a run record as it is now: a new run, or one that moved on.
    pub fn observe(&mut self, run: &RunRecord) {
        let due = run.scheduled_at.or(run.started_at);
        if let Some(schedule) = &run.schedule
            && (due.is_some() || run.finished_at.is_some())
        {
            let key = ((run.namespace.clone(), schedule.clone()), run.host.clone());
            let s = self.schedules.entry(key).or_default();
            s.last_scheduled = s.last_scheduled.max(due);
            if let Some(at) = run.finished_at {
                if newer(&s.last, at) {
                    s.last = Some((at, run.phase));
                }
                if ended(run.phase) && newer(&s.last_ended, at) {
                    s.last_ended = Some((at, run.phase));
                    let said = (run.phase != Phase::Succeeded)
                        .then(|| run.message.clone())
                        .flatten();
                    s.last_ended_run = Some((run.name.clone(), said));
                }
                if run.phase == Phase::Succeeded {
                    s.last_success = s.last_success.max(Some(at));
                }
                if run.phase == Phase::Missed {
                    s.last_missed = s.last_missed.max(Some(at));
                }
            }
        }
        if let Some(at) = run.finished_at
            && run.operation == JobOperation::Backup
            && ended(run.phase)
        {
            let held = self.last_backup.get(&run.host_key()).cloned();
            if newer(&held, at) {
                let last = LastRun {
                    time: crate::time::k8s(at),
                    phase: run.phase,
                    backup: run.name.clone(),
                };
                self.last_backup.insert(run.host_key(), (at, last));
            }
        }
        if let Some(at) = run.finished_at
            && run.operation == JobOperation::Drill
            && ended(run.phase)
        {
            let key = run.host_key();
            if run.phase == Phase::Succeeded {
                let best = self.last_drill_success.get(&key).copied().max(Some(at));
                self.last_drill_success
                    .extend(best.map(|t| (key.clone(), t)));
            }
            let held = self.last_drill.get(&key).cloned();
            if newer(&held, at) {
                let d = run.drill.clone().unwrap_or_default();
                let last = LastDrill {
                    time: crate::time::k8s(at),
                    phase: run.phase,
                    backup: run.name.clone(),
                    files_verified: d.files_verified,
                    bytes_verified: d.bytes_verified,
                    differences: Some(d.differences_total).filter(|n| *n > 0),
                    bytes_per_second: d.bytes_per_second,
                    last_success_time: None,
                };
                self.last_drill.insert(key, (at, last));
            }
        }
        if let Some(repo) = &run.repo {
            let r = self
                .repos
                .entry((run.namespace.clone(), repo.clone()))
                .or_default();
            r.succeeded |= run.phase == Phase::Succeeded;
            r.missing |= matches!(
                run.reason.as_deref(),
                Some("RepositoryNotInitialized" | "RepositoryNotFound")
            );
            if let Some(at) = run.finished_at {
                if r.last.as_ref().is_none_or(|l| at >= l.finished_at) {
                    r.last = Some(RepoRun {
                        finished_at: at,
                        name: run.name.clone(),
                        phase: run.phase,
                        reason: run.reason.clone(),
                        message: run.message.clone(),
                    });
                }
                if run.operation == JobOperation::Check && newer(&r.last_check, at) {
                    let check = RepoCheck {
                        time: crate::time::k8s(at),
                        passed: run.phase == Phase::Succeeded,
                        backup: Some(run.name.clone()),
                        message: run.message.clone(),
                    };
                    r.last_check = Some((at, check));
                }
            }
        }
    }

    /// The newest backup of a host that ran to an end.
    pub fn last_backup(&self, host: &HostKey) -> Option<&LastRun> {
        self.last_backup.get(host).map(|(_, last)| last)
    }

    /// The newest drill on a host that ran to an end, with when one last succeeded.
    pub fn last_drill(&self, host: &HostKey) -> Option<LastDrill> {
        let (_, last) = self.last_drill.get(host)?;
        Some(LastDrill {
            last_success_time: self
                .last_drill_success
                .get(host)
                .map(|t| crate::time::k8s(*t)),
            ..last.clone()
        })
    }

    /// The runs of a schedule on a host.
    pub fn schedule(&self, namespace: &str, schedule: &str, host: &str) -> Option<&ScheduleRuns> {
        self.schedules
            .get(&((namespace.into(), schedule.into()), host.into()))
    }

    /// The runs on a repo.
    pub fn repo(&self, namespace: &str, repo: &str) -> Option<&RepoRuns> {
        self.repos.get(&(namespace.into(), repo.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Kind;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).expect("a time")
    }

    fn run(name: &str, op: JobOperation, phase: Phase, finished: Option<i64>) -> RunRecord {
        let mut r = RunRecord::pending(
            Kind::Backup,
            &HostKey::new("default", "web-1"),
            name.into(),
            name.into(),
            op,
            at(0),
        );
        r.schedule = Some("nightly".into());
        r.repo = Some("nas".into());
        r.phase = phase;
        r.scheduled_at = finished.map(|m| at(m - 1));
        r.finished_at = finished.map(at);
        r
    }

    #[test]
    fn the_last_drill_keeps_its_result_and_when_one_last_succeeded() {
        let drill = |name: &str, phase: Phase, minute: i64, rate: u64| {
            let mut r = run(name, JobOperation::Drill, phase, Some(minute));
            r.drill = Some(protocol::DrillResult {
                files_verified: 20,
                bytes_verified: 1000,
                files_expected: 20,
                seconds: 1.0,
                bytes_per_second: rate,
                differences: vec![],
                differences_total: u64::from(phase != Phase::Succeeded),
            });
            r
        };
        let host = HostKey::new("default", "web-1");
        assert_eq!(RunSummaries::default().last_drill(&host), None);
        let runs = [
            drill("d-1", Phase::Succeeded, 10, 500),
            drill("d-2", Phase::Failed, 30, 400),
            run("backup", JobOperation::Backup, Phase::Succeeded, Some(40)),
            drill("d-3", Phase::Cancelled, 50, 0),
        ];
        let last = RunSummaries::of(&runs).last_drill(&host).unwrap();
        assert_eq!(
            (last.backup.as_str(), last.phase, last.bytes_per_second),
            ("d-2", Phase::Failed, 400),
            "a cancelled drill did not run to an end"
        );
        assert_eq!(last.differences, Some(1));
        assert_eq!(last.last_success_time, Some(crate::time::k8s(at(10))));
    }

    #[test]
    fn a_summary_holds_the_newest_run_of_each_outcome() {
        let runs = [
            run("ok-1", JobOperation::Backup, Phase::Succeeded, Some(10)),
            run("missed", JobOperation::Backup, Phase::Missed, Some(20)),
            run("ok-2", JobOperation::Backup, Phase::Succeeded, Some(30)),
            run("bad", JobOperation::Backup, Phase::Failed, Some(40)),
            run("check", JobOperation::Check, Phase::Succeeded, Some(35)),
            run("going", JobOperation::Backup, Phase::Running, None),
        ];
        let s = RunSummaries::of(&runs);
        let nightly = s.schedule("default", "nightly", "web-1").expect("runs");
        assert_eq!(nightly.last, Some((at(40), Phase::Failed)));
        assert_eq!(nightly.last_ended, Some((at(40), Phase::Failed)));
        assert_eq!(
            nightly
                .last_ended_run
                .as_ref()
                .map(|(name, _)| name.as_str()),
            Some("bad")
        );
        assert_eq!(nightly.last_success, Some(at(35)));
        assert_eq!(nightly.last_missed, Some(at(20)));
        assert_eq!(nightly.last_scheduled, Some(at(39)));
        let host = s
            .last_backup(&HostKey::new("default", "web-1"))
            .expect("a backup");
        assert_eq!((host.backup.as_str(), host.phase), ("bad", Phase::Failed));
        let repo = s.repo("default", "nas").expect("runs");
        assert_eq!(repo.last.as_ref().map(|l| l.name.as_str()), Some("bad"));
        assert_eq!(
            repo.last_check.as_ref().map(|(_, c)| c.passed),
            Some(true),
            "the check is the newest check, not the newest run"
        );
        assert!(repo.succeeded && !repo.missing);
    }

    #[test]
    fn folding_in_any_order_of_finish_gives_the_same_summary() {
        let a = run("a", JobOperation::Backup, Phase::Succeeded, Some(10));
        let b = run("b", JobOperation::Backup, Phase::Failed, Some(20));
        let forward = RunSummaries::of([&a, &b]);
        let backward = RunSummaries::of([&b, &a]);
        let key = HostKey::new("default", "web-1");
        assert_eq!(forward.last_backup(&key), backward.last_backup(&key));
        assert_eq!(
            forward.schedule("default", "nightly", "web-1"),
            backward.schedule("default", "nightly", "web-1")
        );
        assert_eq!(
            forward.repo("default", "nas"),
            backward.repo("default", "nas")
        );
    }

    #[test]
    fn a_run_that_moves_on_updates_its_summary() {
        let mut s = RunSummaries::default();
        let mut r = run("r", JobOperation::Backup, Phase::Running, None);
        s.observe(&r);
        assert_eq!(s.last_backup(&HostKey::new("default", "web-1")), None);
        r.phase = Phase::Succeeded;
        r.finished_at = Some(at(5));
        s.observe(&r);
        assert_eq!(
            s.last_backup(&HostKey::new("default", "web-1"))
                .map(|l| l.phase),
            Some(Phase::Succeeded)
        );
    }

    #[test]
    fn missed_and_skipped_runs_are_not_a_last_backup() {
        let runs = [
            run("ok", JobOperation::Backup, Phase::Succeeded, Some(10)),
            run("missed-1", JobOperation::Backup, Phase::Missed, Some(20)),
            run("missed-2", JobOperation::Backup, Phase::Missed, Some(30)),
            run("skipped", JobOperation::Backup, Phase::Skipped, Some(40)),
            run(
                "cancelled",
                JobOperation::Backup,
                Phase::Cancelled,
                Some(50),
            ),
        ];
        let s = RunSummaries::of(&runs);
        let last = s
            .last_backup(&HostKey::new("default", "web-1"))
            .expect("a backup");
        assert_eq!((last.backup.as_str(), last.phase), ("ok", Phase::Succeeded));
        let nightly = s.schedule("default", "nightly", "web-1").expect("runs");
        assert_eq!(nightly.last, Some((at(50), Phase::Cancelled)));
        assert_eq!(nightly.last_ended, Some((at(10), Phase::Succeeded)));
        assert_eq!(nightly.last_missed, Some(at(30)));

        let only_missed = RunSummaries::of(&runs[1..3]);
        assert_eq!(
            only_missed.last_backup(&HostKey::new("default", "web-1")),
            None
        );
        let nightly = only_missed
            .schedule("default", "nightly", "web-1")
            .expect("runs");
        assert_eq!(nightly.last_ended, None, "still waiting for a first run");
    }
}
