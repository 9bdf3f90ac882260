//! The records of runs as Kubernetes objects: the Backup or Restore a run record becomes, its
//! labels and run status; and which records a Schedule's history limits prune.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::resources::{
    Backup, BackupSpec, BackupStatus, BackupSummary, DrillDifference, DrillStatus, Kind, Phase,
    Progress, Restore, RestoreSpec, RestoreStatus, RunStatus, Schedule,
};
use crate::revision::{name_of, namespace_of};
use crate::runs::{RunRecord, is_final, operation_name};
use crate::status::{human_bytes, human_duration};

/// A record's identity: kind, namespace and name.
pub type RecordId = (Kind, String, String);

pub const HOST_LABEL: &str = "holdfast.dev/host";
pub const SCHEDULE_LABEL: &str = "holdfast.dev/schedule";
pub const REPO_LABEL: &str = "holdfast.dev/repo";
pub const OPERATION_LABEL: &str = "holdfast.dev/operation";
pub const SCHEDULED_TIME_ANNOTATION: &str = "holdfast.dev/scheduled-time";

pub fn run_status(run: &RunRecord, now: DateTime<Utc>) -> RunStatus {
    // A run going on is as long as its last progress report says, not the clock: a status
    // that moved each second would rewrite every running record each second.
    let duration = match (run.started_at, run.finished_at) {
        (Some(start), Some(end)) => Some((end - start).num_seconds()),
        (Some(_), None) => run
            .progress
            .as_ref()
            .map(|p| i64::try_from(p.seconds_elapsed).unwrap_or(i64::MAX)),
        (None, _) => None,
    }
    .map(human_duration);
    let phase = run.phase;
    let word = serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let condition = |kind: &str, on: bool, message: String| Condition {
        type_: kind.into(),
        status: if on { "True" } else { "False" }.into(),
        reason: word.clone(),
        message,
        observed_generation: None,
        last_transition_time: crate::time::k8s(now),
    };
    let outcome = run.message.clone().unwrap_or_else(|| match phase {
        Phase::Pending => "waiting for the host's agent to connect".into(),
        Phase::Dispatched => "sent to the agent".into(),
        Phase::Running => "running".into(),
        _ => format!("the run ended {word}"),
    });
    let mut conditions = vec![condition(
        "Ready",
        phase == Phase::Succeeded,
        outcome.clone(),
    )];
    if !is_final(phase) {
        conditions.push(condition("Reconciling", true, outcome.clone()));
    } else if matches!(phase, Phase::Failed | Phase::PartiallyFailed) {
        conditions.push(condition("Stalled", true, outcome));
    }
    RunStatus {
        observed_generation: None,
        conditions,
        phase: Some(phase),
        job_id: Some(run.job.clone()),
        scheduled_time: run.scheduled_at.map(crate::time::k8s),
        start_time: run.started_at.map(crate::time::k8s),
        completion_time: run.finished_at.map(crate::time::k8s),
        duration,
        progress: run.progress.as_ref().map(|p| Progress {
            percent: format!("{:.0}%", (p.percent_done * 100.0).clamp(0.0, 100.0)),
            files_done: p.files_done,
            total_files: Some(p.total_files).filter(|n| *n > 0),
            bytes_done: p.bytes_done,
            total_bytes: Some(p.total_bytes).filter(|n| *n > 0),
            seconds_remaining: p.seconds_remaining,
        }),
        exit_code: run.exit_code,
        reason: run.reason.clone(),
        message: run.message.clone(),
        log_tail: run.log_tail.clone(),
    }
}

pub fn labels(run: &RunRecord) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (HOST_LABEL.to_string(), run.host.clone()),
        (
            OPERATION_LABEL.to_string(),
            operation_name(run.operation).to_string(),
        ),
    ]);
    if let Some(schedule) = &run.schedule {
        labels.insert(SCHEDULE_LABEL.into(), schedule.clone());
    }
    if let Some(repo) = &run.repo {
        labels.insert(REPO_LABEL.into(), repo.clone());
    }
    labels
}

/// A Backup: the file a person wrote, or one made from the run record.
pub fn backup_object(run: &RunRecord, file: Option<&Backup>, now: DateTime<Utc>) -> Backup {
    let mut backup = file.cloned().unwrap_or_else(|| {
        let operation = match run.operation {
            protocol::JobOperation::Backup => Some(protocol::Operation::Backup),
            protocol::JobOperation::Forget => Some(protocol::Operation::Forget),
            protocol::JobOperation::Prune => Some(protocol::Operation::Prune),
            protocol::JobOperation::Check => Some(protocol::Operation::Check),
            protocol::JobOperation::Drill => Some(protocol::Operation::Drill),
            protocol::JobOperation::Restore => None,
        };
        let mut b = Backup::new(
            &run.name,
            BackupSpec {
                host: run.host.clone(),
                schedule: run.schedule.clone(),
                operation,
                repo: run.repo.clone(),
            },
        );
        b.metadata.namespace = Some(run.namespace.clone());
        // A record of a scheduled run; a request (its file or object gone) is a person's.
        if !run.requested {
            let (label, value) = crate::resources::MANAGED_BY;
            b.metadata.labels = Some(BTreeMap::from([(label.into(), value.into())]));
        }
        b
    });
    backup
        .metadata
        .labels
        .get_or_insert_default()
        .extend(labels(run));
    if let Some(at) = run.scheduled_at {
        backup
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(SCHEDULED_TIME_ANNOTATION.into(), at.to_rfc3339());
    }
    backup.status = Some(BackupStatus {
        run: run_status(run, now),
        snapshot_id: run.snapshot_id.clone(),
        snapshot_short_id: run
            .snapshot_id
            .as_ref()
            .map(|id| id.chars().take(8).collect()),
        data_added: run.summary.as_ref().map(|s| human_bytes(s.data_added)),
        summary: run.summary.as_ref().map(|s| BackupSummary {
            files_new: s.files_new,
            files_changed: s.files_changed,
            files_unmodified: s.files_unmodified,
            dirs_new: s.dirs_new,
            dirs_changed: s.dirs_changed,
            dirs_unmodified: s.dirs_unmodified,
            data_added: s.data_added,
            total_files_processed: s.total_files_processed,
            total_bytes_processed: s.total_bytes_processed,
        }),
        drill: run.drill.as_ref().map(drill_status),
    });
    backup
}

fn drill_status(d: &protocol::DrillResult) -> DrillStatus {
    DrillStatus {
        files_verified: d.files_verified,
        bytes_verified: d.bytes_verified,
        files_expected: d.files_expected,
        seconds: d.seconds,
        bytes_per_second: d.bytes_per_second,
        rate: format!("{}/s", human_bytes(d.bytes_per_second)),
        differences: d
            .differences
            .iter()
            .map(|x| DrillDifference {
                path: x.path.clone(),
                reason: x.reason.clone(),
            })
            .collect(),
        differences_total: Some(d.differences_total).filter(|n| *n > 0),
    }
}

/// A Restore: the file, with the status of its run.
pub fn restore_object(run: &RunRecord, file: Option<&Restore>, now: DateTime<Utc>) -> Restore {
    let mut restore = file.cloned().unwrap_or_else(|| {
        let mut r = Restore::new(
            &run.name,
            RestoreSpec {
                host: run.host.clone(),
                repo: run.repo.clone(),
                snapshot: run.snapshot_id.clone(),
                backup: None,
                schedule: run.schedule.clone(),
                target_host: run.host.clone(),
                target_path: String::new(),
                include: vec![],
                exclude: vec![],
            },
        );
        r.metadata.namespace = Some(run.namespace.clone());
        r
    });
    restore.status = Some(RestoreStatus {
        run: run_status(run, now),
        snapshot_id: run.snapshot_id.clone(),
        files_restored: None,
        bytes_restored: None,
    });
    restore
}

const DEFAULT_SUCCESSFUL_HISTORY: u32 = 10;
const DEFAULT_FAILED_HISTORY: u32 = 5;

/// How many finished records of a schedule on one host are kept: successful, and not. A run
/// of no schedule (or one no longer declared) keeps the defaults.
pub fn history_limits(
    schedules: &[Schedule],
    namespace: &str,
    schedule: Option<&str>,
) -> (u32, u32) {
    let spec = schedule.and_then(|name| {
        schedules
            .iter()
            .find(|s| namespace_of(*s) == namespace && name_of(*s) == name)
            .map(|s| &s.spec)
    });
    (
        spec.and_then(|s| s.successful_runs_history_limit)
            .unwrap_or(DEFAULT_SUCCESSFUL_HISTORY),
        spec.and_then(|s| s.failed_runs_history_limit)
            .unwrap_or(DEFAULT_FAILED_HISTORY),
    )
}

/// Scheduled run records beyond their schedule's history limits, oldest first to go. Requests
/// (files in git) are never pruned, nor are runs still going.
pub fn pruned(runs: &[RunRecord], schedules: &[Schedule]) -> Vec<RecordId> {
    let mut groups: BTreeMap<(&str, Option<&str>, &str, bool), Vec<&RunRecord>> = BTreeMap::new();
    for run in runs.iter().filter(|r| !r.requested && r.is_final()) {
        groups
            .entry((
                &run.namespace,
                run.schedule.as_deref(),
                &run.host,
                run.phase == Phase::Succeeded,
            ))
            .or_default()
            .push(run);
    }
    let mut doomed = Vec::new();
    for ((namespace, schedule, _, succeeded), mut group) in groups {
        let (keep_ok, keep_failed) = history_limits(schedules, namespace, schedule);
        let keep = if succeeded { keep_ok } else { keep_failed } as usize;
        group.sort_by_key(|r| std::cmp::Reverse(r.finished_at));
        doomed.extend(
            group
                .into_iter()
                .skip(keep)
                .map(|r| (r.kind, r.namespace.clone(), r.name.clone())),
        );
    }
    doomed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::HostKey;

    fn run(name: &str, phase: Phase, minute: i64) -> RunRecord {
        let at = DateTime::<Utc>::from_timestamp(1_700_000_000 + minute * 60, 0).unwrap();
        let mut record: RunRecord = crate::runs::finished(
            None,
            &HostKey::new("default", "web-1"),
            &serde_json::from_str(include_str!("../tests/fixtures/reports/job-finished.json"))
                .unwrap(),
            at,
        )
        .unwrap();
        record.name = name.into();
        record.phase = phase;
        record.started_at = Some(at - chrono::Duration::seconds(2));
        record.finished_at = Some(at);
        record
    }

    #[test]
    fn a_drill_record_shows_what_it_verified_and_its_rate() {
        let mut drill = run("weekly-drill-web-1-1", Phase::Failed, 0);
        drill.operation = protocol::JobOperation::Drill;
        drill.summary = None;
        drill.drill = Some(protocol::DrillResult {
            files_verified: 19,
            bytes_verified: 19_000,
            files_expected: 20,
            seconds: 2.0,
            bytes_per_second: 3 << 20,
            differences: vec![protocol::DrillDifference {
                path: "/srv/a".into(),
                reason: "not restored".into(),
            }],
            differences_total: 1,
        });
        let backup = backup_object(&drill, None, Utc::now());
        assert_eq!(backup.spec.operation, Some(protocol::Operation::Drill));
        let status = backup.status.unwrap().drill.unwrap();
        assert_eq!((status.files_verified, status.files_expected), (19, 20));
        assert_eq!(status.rate, "3.0 MiB/s");
        assert_eq!(status.differences[0].path, "/srv/a");
        assert_eq!(status.differences_total, Some(1));
    }

    #[test]
    fn history_limits_keep_the_newest_runs_of_each_outcome() {
        let mut runs: Vec<RunRecord> = (0..12)
            .map(|i| run(&format!("ok-{i}"), Phase::Succeeded, i))
            .collect();
        runs.extend((0..7).map(|i| run(&format!("bad-{i}"), Phase::Failed, i)));
        let mut request = run("by-hand", Phase::Succeeded, -100);
        request.requested = true;
        runs.push(request);
        let mut doomed: Vec<String> = pruned(&runs, &[]).into_iter().map(|(_, _, n)| n).collect();
        doomed.sort();
        assert_eq!(doomed, ["bad-0", "bad-1", "ok-0", "ok-1"]);
    }

    #[test]
    fn a_backup_record_carries_labels_summary_and_short_id() {
        let record = run("nightly-web-1-29413440", Phase::Succeeded, 0);
        let backup = backup_object(&record, None, Utc::now());
        let labels = backup.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(HOST_LABEL).map(String::as_str), Some("web-1"));
        assert_eq!(
            labels
                .get(crate::resources::MANAGED_BY.0)
                .map(String::as_str),
            Some("holdfast"),
            "a scheduled run's record is Holdfast's"
        );
        let mut request = record.clone();
        request.requested = true;
        let request_labels = backup_object(&request, None, Utc::now()).metadata.labels;
        assert!(
            request_labels.is_some_and(|l| !l.contains_key(crate::resources::MANAGED_BY.0)),
            "a request stays a person's, so it is never created again once deleted"
        );
        assert_eq!(
            labels.get(SCHEDULE_LABEL).map(String::as_str),
            Some("nightly")
        );
        assert_eq!(labels.get(REPO_LABEL).map(String::as_str), Some("local"));
        let status = backup.status.unwrap();
        assert_eq!(status.snapshot_short_id.as_deref(), Some("3f2a9c1d"));
        assert_eq!(status.data_added.as_deref(), Some("1.2 MiB"));
        assert_eq!(status.run.duration.as_deref(), Some("2s"));
        assert_eq!(status.run.conditions[0].status, "True");
    }

    #[test]
    fn a_run_going_on_is_as_long_as_its_last_progress_says_whatever_the_clock() {
        let now = Utc::now();
        let mut run = RunRecord::pending(
            Kind::Backup,
            &HostKey::new("default", "web-1"),
            "nightly-web-1".into(),
            "job-1".into(),
            protocol::JobOperation::Backup,
            now,
        );
        run.phase = Phase::Running;
        run.started_at = Some(now);
        let later = now + chrono::Duration::minutes(3);
        assert_eq!(run_status(&run, later).duration, None, "no progress yet");
        run.progress = Some(protocol::JobProgress {
            job: "job-1".into(),
            percent_done: 0.5,
            files_done: 1,
            total_files: 2,
            bytes_done: 10,
            total_bytes: 20,
            seconds_elapsed: 95,
            seconds_remaining: Some(95),
            current_files: Vec::new(),
        });
        let first = run_status(&run, later);
        assert_eq!(first.duration.as_deref(), Some("1m35s"));
        assert_eq!(
            run_status(&run, later + chrono::Duration::seconds(7)).duration,
            first.duration
        );
    }
}
