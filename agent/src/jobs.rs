//! The job manager: which jobs run, under which concurrency policy, and who may use a
//! repository meanwhile. Each job runs in its own task; its start and end are written to the
//! outbox, and a marker on disk says it is running, so a killed agent reports it at next start.
//!
//! A run a `command.run` asked for runs once: its `job.finished` is remembered on disk
//! (`commands.json`), and the same job id asked for again is answered with that report. The
//! report goes to the outbox before it is remembered, and the running marker goes last, so a
//! crash never loses the report, and a crash before the record is written leaves the marker,
//! from which the next start remembers the run (as AgentRestarted) instead of forgetting it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use protocol::{
    ConcurrencyPolicy, JobFinished, JobId, JobLog, JobPhase, JobStarted, LogLine, ReportBody,
    Trigger,
};
use tokio::sync::{Notify, RwLock, watch};

use crate::restic::parse::Outcome;
use crate::runner::{Context, JobSpec, Run, Work, report_stats, rfc3339};
use crate::state::{CommandRuns, RunningJob, StateError};

#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    running: Mutex<HashMap<JobId, Entry>>,
    /// Requests waiting for a run of their schedule to end (concurrencyPolicy Forbid).
    queued: Mutex<HashSet<JobId>>,
    /// The results of finished command runs, as in `commands.json`. Locked after `running`.
    commands: Mutex<CommandRuns>,
    /// One lock per repository: backups and restores share it, forget/prune/check take it
    /// alone, as restic's own locks would demand.
    repos: Mutex<HashMap<String, Arc<RwLock<()>>>>,
    /// Woken whenever a job ends.
    ended: Notify,
}

struct Entry {
    schedule: Option<String>,
    cancel: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Jobs {
    pub fn new(ctx: Context) -> Jobs {
        // Without the record a repeated request would run again, which is what happened before
        // there was one; refusing to start would stop every backup of the host instead.
        let commands = ctx.state.load_commands().unwrap_or_else(|e| {
            tracing::error!("cannot read the finished command runs, starting without them: {e}");
            CommandRuns::default()
        });
        Jobs {
            inner: Arc::new(Inner {
                ctx,
                running: Mutex::new(HashMap::new()),
                queued: Mutex::new(HashSet::new()),
                commands: Mutex::new(commands),
                repos: Mutex::new(HashMap::new()),
                ended: Notify::new(),
            }),
        }
    }

    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    pub fn running(&self) -> Vec<JobId> {
        let mut ids: Vec<JobId> = lock(&self.inner.running).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Reports every job a previous agent process left running as Failed/AgentRestarted, and
    /// returns how many it reported.
    pub fn report_interrupted(&self) -> Result<usize, StateError> {
        let ctx = &self.inner.ctx;
        let jobs = ctx.state.interrupted_jobs()?;
        let mut reported = 0;
        for job in &jobs {
            let s = &job.started;
            if lock(&self.inner.commands).get(&s.job).is_some() {
                // Killed after remembering the run: its job.finished is in the outbox already.
                ctx.state.clear_running(&s.job)?;
                continue;
            }
            let finished = JobFinished {
                job: s.job.clone(),
                schedule: s.schedule.clone(),
                operation: s.operation,
                repo: s.repo.clone(),
                trigger: s.trigger,
                phase: JobPhase::Failed,
                reason: Some("AgentRestarted".into()),
                message: Some(
                    "the agent stopped while this run was in progress (it was killed or the host restarted)"
                        .into(),
                ),
                scheduled_at: s.scheduled_at.clone(),
                started_at: Some(s.started_at.clone()),
                finished_at: rfc3339(Utc::now()),
                exit_code: None,
                snapshot_id: None,
                summary: None,
                scrub_part: None,
                drill: None,
            };
            ctx.outbox.push(ReportBody::JobFinished(finished.clone()))?;
            self.remember(finished);
            ctx.state.clear_running(&s.job)?;
            reported += 1;
            tracing::warn!(job = %s.job, "reported a run interrupted by an agent restart");
        }
        Ok(reported)
    }

    /// Reports a run that did not happen (Missed, Skipped) without starting anything.
    pub fn report_not_run(&self, spec: &JobSpec, phase: JobPhase, reason: &str, message: String) {
        let outcome = Outcome {
            phase,
            reason: Some(reason.into()),
            message: Some(message),
        };
        self.report_finished(spec.finished(outcome, None));
    }

    /// Stores a job's `job.finished` in the outbox, then, for a command run, remembers it.
    pub fn report_finished(&self, finished: JobFinished) {
        if let Err(e) = self
            .inner
            .ctx
            .outbox
            .push(ReportBody::JobFinished(finished.clone()))
        {
            tracing::error!(job = %finished.job, "cannot store a report: {e}");
        }
        self.remember(finished);
    }

    /// Remembers the result of a command run, on disk, so that the request is never run twice.
    fn remember(&self, finished: JobFinished) {
        if finished.trigger != Trigger::Command {
            return;
        }
        let job = finished.job.clone();
        // Held while writing: the file is replaced through one temp file.
        let mut commands = lock(&self.inner.commands);
        if commands.remember(finished)
            && let Err(e) = self.inner.ctx.state.store_commands(&commands)
        {
            tracing::error!(%job, "cannot record the finished command run; the same request sent again after a restart would run again: {e}");
        }
    }

    /// Answers a `command.run` whose job is running, queued or finished, and says whether it
    /// did. A finished one gets its recorded `job.finished` again (the controller keeps the
    /// first): a new controller leader, or a lost ack, may send the same request twice.
    pub fn answer_repeat(&self, job: &str) -> bool {
        let running = lock(&self.inner.running);
        if running.contains_key(job) || lock(&self.inner.queued).contains(job) {
            tracing::info!(job, "already running; not started twice");
            return true;
        }
        // Looked up under the running lock: a run is remembered before it leaves `running`.
        let recorded = lock(&self.inner.commands).get(job).cloned();
        drop(running);
        let Some(finished) = recorded else {
            return false;
        };
        tracing::info!(job, phase = %finished.phase, "this run request already ran; sent its recorded result again instead of running it twice");
        if let Err(e) = self
            .inner
            .ctx
            .outbox
            .push(ReportBody::JobFinished(finished))
        {
            tracing::error!(job, "cannot store a report: {e}");
        }
        true
    }

    /// Starts a job, applying its schedule's concurrency policy.
    pub fn start(&self, spec: JobSpec) {
        let policy = match &spec.work {
            Work::Schedule(s) => s.concurrency_policy,
            Work::Restore(_) => ConcurrencyPolicy::Allow,
        };
        let cancel_rx = {
            let mut running = lock(&self.inner.running);
            if running.contains_key(&spec.id) {
                tracing::info!(job = %spec.id, "already running; not started twice");
                return;
            }
            let same: Vec<&JobId> = running
                .iter()
                .filter(|(_, e)| e.schedule.is_some() && e.schedule.as_deref() == spec.schedule())
                .map(|(id, _)| id)
                .collect();
            if !same.is_empty() {
                match policy {
                    // A request someone made runs after the run in its way, never instead.
                    ConcurrencyPolicy::Forbid if spec.trigger == Trigger::Command => {
                        let message = format!(
                            "waiting for the previous run {} of this schedule to finish (concurrencyPolicy Forbid); this request runs next",
                            same[0]
                        );
                        drop(running);
                        self.wait_then_start(spec, message);
                        return;
                    }
                    ConcurrencyPolicy::Forbid => {
                        let message = format!(
                            "the previous run {} of this schedule is still running (concurrencyPolicy Forbid)",
                            same[0]
                        );
                        drop(running);
                        self.report_not_run(&spec, JobPhase::Skipped, "StillRunning", message);
                        return;
                    }
                    ConcurrencyPolicy::Replace => {
                        for id in same {
                            tracing::info!(job = %id, replaced_by = %spec.id, "cancelling (concurrencyPolicy Replace)");
                            let _ = running[id].cancel.send(true);
                        }
                    }
                    ConcurrencyPolicy::Allow => {}
                }
            }
            let (cancel_tx, cancel_rx) = watch::channel(false);
            running.insert(
                spec.id.clone(),
                Entry {
                    schedule: spec.schedule().map(str::to_string),
                    cancel: cancel_tx,
                },
            );
            cancel_rx
        };
        let jobs = self.clone();
        tokio::spawn(async move { jobs.run(spec, cancel_rx).await });
    }

    /// Starts `spec` once no run of its schedule is running; says so in its log meanwhile.
    fn wait_then_start(&self, spec: JobSpec, message: String) {
        tracing::info!(job = %spec.id, "{message}");
        let log = ReportBody::JobLog(JobLog {
            job: spec.id.clone(),
            lines: vec![LogLine {
                source: "agent".into(),
                line: message,
            }],
        });
        if let Err(e) = self.inner.ctx.outbox.push(log) {
            tracing::error!(job = %spec.id, "cannot store a report: {e}");
        }
        lock(&self.inner.queued).insert(spec.id.clone());
        let jobs = self.clone();
        tokio::spawn(async move {
            loop {
                let ended = jobs.inner.ended.notified();
                let busy = lock(&jobs.inner.running)
                    .values()
                    .any(|e| e.schedule.is_some() && e.schedule.as_deref() == spec.schedule());
                if !busy {
                    break;
                }
                ended.await;
            }
            // No await from here into `start`: a repeat request sees the job queued or running.
            lock(&jobs.inner.queued).remove(&spec.id);
            jobs.start(spec);
        });
    }

    /// Asks a running job to stop; false when no such job runs.
    pub fn cancel(&self, job: &str) -> bool {
        match lock(&self.inner.running).get(job) {
            Some(entry) => entry.cancel.send(true).is_ok(),
            None => false,
        }
    }

    /// Resolves once no job is running.
    pub async fn idle(&self) {
        loop {
            let ended = self.inner.ended.notified();
            if lock(&self.inner.running).is_empty() {
                return;
            }
            ended.await;
        }
    }

    fn repo_lock(&self, repo: &str) -> Arc<RwLock<()>> {
        lock(&self.inner.repos)
            .entry(repo.to_string())
            .or_default()
            .clone()
    }

    async fn run(&self, spec: JobSpec, mut cancel: watch::Receiver<bool>) {
        let ctx = &self.inner.ctx;
        let started_at = rfc3339(Utc::now());
        let started = JobStarted {
            job: spec.id.clone(),
            schedule: spec.schedule().map(str::to_string),
            operation: spec.operation(),
            repo: spec.repo().name.clone(),
            trigger: spec.trigger,
            scheduled_at: spec.scheduled_at_text(),
            started_at: started_at.clone(),
        };
        if let Err(e) = ctx.state.mark_running(&RunningJob {
            started: started.clone(),
        }) {
            tracing::error!(job = %spec.id, "cannot mark the job running: {e}");
        }
        if let Err(e) = ctx.outbox.push(ReportBody::JobStarted(started)) {
            tracing::error!(job = %spec.id, "cannot store a report: {e}");
        }
        tracing::info!(job = %spec.id, operation = %spec.operation().as_str(), "job started");

        // By repository name, not URL: forget and prune may reach the same repository through
        // its privileged URL.
        let repo = self.repo_lock(&spec.repo().name);
        let guard = tokio::select! {
            guard = acquire(&repo, spec.exclusive()) => Some(guard),
            _ = cancel.wait_for(|c| *c) => None,
        };
        let finished = match &guard {
            None => spec.finished(
                Outcome {
                    phase: JobPhase::Cancelled,
                    reason: Some("Cancelled".into()),
                    message: Some("cancelled while waiting for the repository".into()),
                },
                Some(started_at),
            ),
            Some(_) => Run::new(ctx, &spec, cancel).execute(started_at).await,
        };
        let phase = finished.phase;
        tracing::info!(job = %spec.id, phase = %phase, reason = ?finished.reason, "job finished");
        // Finished is stored and remembered before the marker goes: a crash before the record
        // reports the run twice (the controller keeps the first), never zero times, and the
        // marker then has the next start remember it.
        self.report_finished(finished);
        if let Err(e) = ctx.state.clear_running(&spec.id) {
            tracing::error!(job = %spec.id, "cannot clear the running marker: {e}");
        }
        lock(&self.inner.running).remove(&spec.id);
        self.inner.ended.notify_waiters();
        if spec.operation() == protocol::JobOperation::Backup
            && matches!(phase, JobPhase::Succeeded | JobPhase::PartiallyFailed)
        {
            // Still under the shared lock, so a queued prune waits for the statistics too.
            report_stats(ctx, &spec).await;
        }
        drop(guard);
    }
}

/// Held for its `Drop`: the repository is free again when the guard goes.
type Guard = Box<dyn Send + Sync>;

async fn acquire(repo: &Arc<RwLock<()>>, exclusive: bool) -> Guard {
    if exclusive {
        Box::new(repo.clone().write_owned().await)
    } else {
        Box::new(repo.clone().read_owned().await)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use protocol::{JobOperation, Report};

    use super::*;
    use crate::outbox::Outbox;
    use crate::restic::Restic;
    use crate::restic::parse::{Capabilities, Version};
    use crate::state::StateDir;

    fn jobs(dir: &Path) -> (Jobs, Outbox) {
        let state = StateDir::open(dir).unwrap();
        let outbox = Outbox::open(state.outbox_dir()).unwrap();
        let restic = Restic {
            binary: "/nonexistent/restic".into(),
            version: None,
            capabilities: Capabilities::of(Version {
                major: 0,
                minor: 14,
                patch: 0,
            }),
        };
        let ctx = Context::new("web-1".into(), restic, state, outbox.clone());
        (Jobs::new(ctx), outbox)
    }

    fn started(job: &str, trigger: Trigger) -> RunningJob {
        RunningJob {
            started: JobStarted {
                job: job.into(),
                schedule: None,
                operation: JobOperation::Backup,
                repo: "nas".into(),
                trigger,
                scheduled_at: None,
                started_at: "2025-12-01T02:00:00Z".into(),
            },
        }
    }

    fn finished(reports: &[Report]) -> Vec<JobFinished> {
        reports
            .iter()
            .filter_map(|r| match &r.body {
                ReportBody::JobFinished(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_command_run_killed_before_it_was_remembered_is_remembered_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = jobs(dir.path());
        let state = first.context().state.clone();
        // Killed after job.started (marker written), or after job.finished was stored but
        // before it was remembered: the marker is still there.
        state
            .mark_running(&started("request-1", Trigger::Command))
            .unwrap();
        state
            .mark_running(&started("nightly-29409150", Trigger::Schedule))
            .unwrap();
        drop(first);

        let (jobs, outbox) = jobs(dir.path());
        assert_eq!(jobs.report_interrupted().unwrap(), 2);
        let reported = finished(&outbox.after(0));
        assert_eq!(reported.len(), 2);
        assert!(
            reported
                .iter()
                .all(|f| f.reason.as_deref() == Some("AgentRestarted"))
        );
        // The same request again is answered with that report, also after another restart;
        // a scheduled run is not a request and is not remembered.
        let (jobs, outbox) = self::jobs(dir.path());
        let before = outbox.after(0).len();
        assert!(jobs.answer_repeat("request-1"));
        assert!(!jobs.answer_repeat("nightly-29409150"));
        let again = finished(&outbox.after(0)[before..]);
        assert_eq!(again.len(), 1);
        assert_eq!(
            Some(&again[0]),
            reported.iter().find(|f| f.job == "request-1")
        );
    }

    #[test]
    fn a_command_run_killed_after_it_was_remembered_is_not_reported_again() {
        let dir = tempfile::tempdir().unwrap();
        let (first, outbox) = jobs(dir.path());
        let run = started("request-2", Trigger::Command);
        first.context().state.mark_running(&run).unwrap();
        let result = JobFinished {
            job: "request-2".into(),
            schedule: None,
            operation: JobOperation::Backup,
            repo: "nas".into(),
            trigger: Trigger::Command,
            phase: JobPhase::Succeeded,
            reason: None,
            message: None,
            scheduled_at: None,
            started_at: Some(run.started.started_at.clone()),
            finished_at: "2025-12-01T02:04:12Z".into(),
            exit_code: Some(0),
            snapshot_id: None,
            summary: None,
            scrub_part: None,
            drill: None,
        };
        // Stored and remembered; killed before the marker went.
        first.report_finished(result.clone());
        drop((first, outbox));

        let (jobs, outbox) = jobs(dir.path());
        assert_eq!(jobs.report_interrupted().unwrap(), 0);
        assert_eq!(
            finished(&outbox.after(0)),
            vec![result.clone()],
            "only the real result, no AgentRestarted"
        );
        assert!(jobs.context().state.interrupted_jobs().unwrap().is_empty());
        assert!(jobs.answer_repeat("request-2"));
        assert_eq!(finished(&outbox.after(0)), vec![result.clone(), result]);
    }
}
