//! The job manager: which jobs run, under which concurrency policy, and who may use a
//! repository meanwhile. Each job runs in its own task; its start and end are written to the
//! outbox, and a marker on disk says it is running, so a killed agent reports it at next start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use protocol::{
    ConcurrencyPolicy, JobFinished, JobId, JobLog, JobPhase, JobStarted, LogLine, ReportBody,
    Trigger,
};
use tokio::sync::{Notify, RwLock, watch};

use crate::restic::parse::Outcome;
use crate::runner::{Context, JobSpec, Run, Work, report_stats, rfc3339};
use crate::state::{RunningJob, StateError};

#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    running: Mutex<HashMap<JobId, Entry>>,
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
        Jobs {
            inner: Arc::new(Inner {
                ctx,
                running: Mutex::new(HashMap::new()),
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

    /// Reports every job a previous agent process left running as Failed/AgentRestarted.
    pub fn report_interrupted(&self) -> Result<usize, StateError> {
        let ctx = &self.inner.ctx;
        let jobs = ctx.state.interrupted_jobs()?;
        for job in &jobs {
            let s = &job.started;
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
            };
            ctx.outbox.push(ReportBody::JobFinished(finished))?;
            ctx.state.clear_running(&s.job)?;
            tracing::warn!(job = %s.job, "reported a run interrupted by an agent restart");
        }
        Ok(jobs.len())
    }

    /// Reports a run that did not happen (Missed, Skipped) without starting anything.
    pub fn report_not_run(&self, spec: &JobSpec, phase: JobPhase, reason: &str, message: String) {
        let outcome = Outcome {
            phase,
            reason: Some(reason.into()),
            message: Some(message),
        };
        let finished = spec.finished(outcome, None);
        if let Err(e) = self
            .inner
            .ctx
            .outbox
            .push(ReportBody::JobFinished(finished))
        {
            tracing::error!(job = %spec.id, "cannot store a report: {e}");
        }
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
        // Finished is stored before the marker goes: a crash in between reports the run twice
        // (the controller keeps the first), never zero times.
        if let Err(e) = ctx.outbox.push(ReportBody::JobFinished(finished)) {
            tracing::error!(job = %spec.id, "cannot store a report: {e}");
        }
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
