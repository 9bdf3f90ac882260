//! Run records: what the controller knows of one run, and how each agent report changes it.
//!
//! The transitions are pure: given the stored record (if any) and a report, they return the
//! record to store, or `None` when the report changes nothing. Reports are idempotent by job id,
//! and the first `job.finished` wins: an agent that crashed before seeing its ack resends it.

use chrono::{DateTime, Utc};
use protocol::{
    BackupSummary, DrillResult, JobFinished, JobOperation, JobPhase, JobProgress, JobStarted,
};

use crate::compile::HostKey;
use crate::resources::{Kind, Phase};

/// One run of one operation on one host: a Backup record, or the run of a Restore.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// `Backup` or `Restore`.
    pub kind: Kind,
    pub namespace: String,
    /// The record's name: a request's own name, or one derived from schedule, host and time.
    pub name: String,
    pub host: String,
    /// The agent's job id.
    pub job: String,
    pub schedule: Option<String>,
    pub operation: JobOperation,
    pub repo: Option<String>,
    pub phase: Phase,
    /// A person asked for it (a Backup or Restore file), rather than a schedule.
    pub requested: bool,
    pub created_at: DateTime<Utc>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub snapshot_id: Option<String>,
    pub summary: Option<BackupSummary>,
    /// What a drill restored and verified.
    pub drill: Option<DrillResult>,
    pub progress: Option<JobProgress>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// The last lines of its log.
    pub log_tail: Vec<String>,
}

impl RunRecord {
    /// A run that has not started yet: no times but `created_at`, no outcome.
    pub fn pending(
        kind: Kind,
        host: &HostKey,
        name: String,
        job: String,
        operation: JobOperation,
        now: DateTime<Utc>,
    ) -> RunRecord {
        RunRecord {
            kind,
            namespace: host.namespace.clone(),
            name,
            host: host.name.clone(),
            job,
            schedule: None,
            operation,
            repo: None,
            phase: Phase::Pending,
            requested: false,
            created_at: now,
            scheduled_at: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            snapshot_id: None,
            summary: None,
            drill: None,
            progress: None,
            reason: None,
            message: None,
            log_tail: Vec::new(),
        }
    }

    pub fn host_key(&self) -> HostKey {
        HostKey::new(&self.namespace, &self.host)
    }

    pub fn is_final(&self) -> bool {
        is_final(self.phase)
    }
}

pub fn is_final(phase: Phase) -> bool {
    !matches!(phase, Phase::Pending | Phase::Dispatched | Phase::Running)
}

pub fn phase_of(phase: JobPhase) -> Phase {
    match phase {
        JobPhase::Succeeded => Phase::Succeeded,
        JobPhase::PartiallyFailed => Phase::PartiallyFailed,
        JobPhase::Failed => Phase::Failed,
        JobPhase::Missed => Phase::Missed,
        JobPhase::Skipped => Phase::Skipped,
        JobPhase::Cancelled => Phase::Cancelled,
    }
}

pub fn operation_name(op: JobOperation) -> &'static str {
    match op {
        JobOperation::Backup => "backup",
        JobOperation::Forget => "forget",
        JobOperation::Prune => "prune",
        JobOperation::Check => "check",
        JobOperation::Restore => "restore",
        JobOperation::Drill => "drill",
    }
}

pub fn parse_operation(name: &str) -> Option<JobOperation> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// The name of the record for a run the agent started on its own (a scheduled run): like a
/// CronJob's Jobs, `<schedule>-<host>-<scheduled minute>`, so that the name alone says which run
/// it is and a resent report finds the same record.
pub fn record_name(host: &str, schedule: Option<&str>, job: &str) -> String {
    let raw = match schedule.and_then(|s| job.strip_prefix(&format!("{s}-")).map(|rest| (s, rest)))
    {
        Some((schedule, rest)) => format!("{schedule}-{host}-{rest}"),
        None => format!("{host}-{job}"),
    };
    dns_name(&raw)
}

/// Lower-case letters, digits and dashes, at most 253 characters, as Kubernetes names are.
fn dns_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    name.truncate(253);
    name.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// The job id the controller gives a request, unique per request.
pub fn request_job(kind: Kind, namespace: &str, name: &str) -> String {
    format!(
        "request-{}-{namespace}-{name}",
        kind.as_str().to_lowercase()
    )
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The record of a run first heard of in an agent's report.
fn reported(
    host: &HostKey,
    job: &str,
    schedule: Option<&str>,
    op: JobOperation,
    now: DateTime<Utc>,
) -> RunRecord {
    let kind = if op == JobOperation::Restore {
        Kind::Restore
    } else {
        Kind::Backup
    };
    let name = record_name(&host.name, schedule, job);
    RunRecord {
        schedule: schedule.map(str::to_string),
        ..RunRecord::pending(kind, host, name, job.to_string(), op, now)
    }
}

/// `job.started`: the run is Running, unless it already finished.
pub fn started(
    existing: Option<RunRecord>,
    host: &HostKey,
    report: &JobStarted,
    now: DateTime<Utc>,
) -> Option<RunRecord> {
    let mut record = existing.unwrap_or_else(|| {
        reported(
            host,
            &report.job,
            report.schedule.as_deref(),
            report.operation,
            now,
        )
    });
    if record.is_final() || record.phase == Phase::Running {
        return None;
    }
    record.phase = Phase::Running;
    record.repo = Some(report.repo.clone()).filter(|r| !r.is_empty());
    record.scheduled_at = report.scheduled_at.as_deref().and_then(time);
    record.started_at = time(&report.started_at).or(Some(now));
    Some(record)
}

/// `job.progress`: the latest progress of a run still going.
pub fn progress(existing: Option<RunRecord>, report: &JobProgress) -> Option<RunRecord> {
    let mut record = existing?;
    if record.is_final() {
        return None;
    }
    record.phase = Phase::Running;
    record.progress = Some(report.clone());
    Some(record)
}

/// `job.finished`: the outcome, recorded once.
pub fn finished(
    existing: Option<RunRecord>,
    host: &HostKey,
    report: &JobFinished,
    now: DateTime<Utc>,
) -> Option<RunRecord> {
    let mut record = existing.unwrap_or_else(|| {
        reported(
            host,
            &report.job,
            report.schedule.as_deref(),
            report.operation,
            now,
        )
    });
    if record.is_final() {
        return None;
    }
    record.phase = phase_of(report.phase);
    record.operation = report.operation;
    record.repo = Some(report.repo.clone())
        .filter(|r| !r.is_empty())
        .or(record.repo);
    record.scheduled_at = report
        .scheduled_at
        .as_deref()
        .and_then(time)
        .or(record.scheduled_at);
    record.started_at = report
        .started_at
        .as_deref()
        .and_then(time)
        .or(record.started_at);
    record.finished_at = time(&report.finished_at).or(Some(now));
    record.exit_code = report.exit_code;
    record.snapshot_id = report.snapshot_id.clone();
    record.summary = report.summary.clone();
    record.drill = report.drill.clone();
    record.reason = report.reason.clone();
    record.message = report.message.clone();
    record.progress = None;
    Some(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Trigger;

    fn host() -> HostKey {
        HostKey::new("default", "web-1")
    }

    fn start() -> JobStarted {
        serde_json::from_str(include_str!("../tests/fixtures/reports/job-started.json")).unwrap()
    }

    fn finish() -> JobFinished {
        serde_json::from_str(include_str!("../tests/fixtures/reports/job-finished.json")).unwrap()
    }

    #[test]
    fn a_scheduled_run_is_named_after_schedule_host_and_minute() {
        assert_eq!(
            record_name("web-1", Some("nightly"), "nightly-29413440"),
            "nightly-web-1-29413440"
        );
        assert_eq!(
            record_name("web-1", Some("nightly"), "nightly-29413440-30"),
            "nightly-web-1-29413440-30"
        );
        assert_eq!(record_name("Web_1", None, "odd job"), "web-1-odd-job");
    }

    #[test]
    fn started_progress_finished_make_one_record_and_the_first_finish_wins() {
        let now = Utc::now();
        let running = started(None, &host(), &start(), now).unwrap();
        assert_eq!(running.phase, Phase::Running);
        assert_eq!(running.name, "nightly-web-1-29413440");
        assert_eq!(
            started(Some(running.clone()), &host(), &start(), now),
            None,
            "a resent job.started changes nothing"
        );
        let report = JobProgress {
            job: running.job.clone(),
            percent_done: 0.5,
            files_done: 10,
            total_files: 20,
            bytes_done: 100,
            total_bytes: 200,
            seconds_elapsed: 3,
            seconds_remaining: Some(3),
            current_files: vec![],
        };
        let going = progress(Some(running), &report).unwrap();
        assert_eq!(going.progress.as_ref().map(|p| p.files_done), Some(10));

        let done = finished(Some(going), &host(), &finish(), now).unwrap();
        assert_eq!(done.phase, Phase::Succeeded);
        assert_eq!(done.progress, None);
        assert_eq!(done.snapshot_id.as_deref().map(str::len), Some(64));
        assert_eq!(done.summary.as_ref().map(|s| s.files_new), Some(300));

        let mut again = finish();
        again.phase = JobPhase::Failed;
        assert_eq!(finished(Some(done.clone()), &host(), &again, now), None);
        assert_eq!(progress(Some(done), &report), None);
    }

    #[test]
    fn a_missed_run_is_recorded_without_a_start() {
        let mut missed = finish();
        missed.phase = JobPhase::Missed;
        missed.trigger = Trigger::MissedRun;
        missed.started_at = None;
        let record = finished(None, &host(), &missed, Utc::now()).unwrap();
        assert_eq!(record.phase, Phase::Missed);
        assert_eq!(record.kind, Kind::Backup);
        assert_eq!(record.started_at, None);
    }
}
