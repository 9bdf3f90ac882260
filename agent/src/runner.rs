//! One job from start to finish: hooks, restic, and what to report. The job manager decides
//! *whether* and *when* a job runs; this module only runs it.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{
    BackupParams, DrillParams, ForgetParams, JobFinished, JobId, JobOperation, JobPhase,
    JobProgress, RepoStats, ReportBody, ResolvedRepo, ResolvedSchedule, RestoreRequest, ScrubPart,
    SecretValue, SnapshotsReport, Trigger,
};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::drill;
use crate::hooks;
use crate::outbox::Outbox;
use crate::reporter::Reporter;
use crate::restic::parse::{self, BackupLine, Outcome, RestoreLine};
use crate::restic::{Flow, RepoAccess, Restic, Stream, run_streaming, run_streaming_until};
use crate::state::StateDir;

/// Lines of restic's stderr kept to explain a failure.
const TAIL: usize = 20;

/// A job to run.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub id: JobId,
    pub trigger: Trigger,
    /// The cron time it was due (without jitter); `None` for commands.
    pub scheduled_at: Option<DateTime<Utc>>,
    pub work: Work,
    /// Secret values from the controller that the repository references.
    pub secrets: Vec<SecretValue>,
}

// A job holds one of these for its whole run; boxing would save nothing worth having.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Work {
    Schedule(ResolvedSchedule),
    Restore(RestoreRequest),
}

impl JobSpec {
    pub fn schedule(&self) -> Option<&str> {
        match &self.work {
            Work::Schedule(s) => Some(&s.name),
            Work::Restore(_) => None,
        }
    }

    pub fn operation(&self) -> JobOperation {
        match &self.work {
            Work::Schedule(s) => s.operation.into(),
            Work::Restore(_) => JobOperation::Restore,
        }
    }

    pub fn repo(&self) -> &ResolvedRepo {
        match &self.work {
            Work::Schedule(s) => &s.repo,
            Work::Restore(r) => &r.repo,
        }
    }

    /// Whether restic takes an exclusive lock for this operation: then nothing else may use the
    /// repository meanwhile.
    pub fn exclusive(&self) -> bool {
        matches!(
            self.operation(),
            JobOperation::Forget | JobOperation::Prune | JobOperation::Check
        )
    }

    pub fn scheduled_at_text(&self) -> Option<String> {
        self.scheduled_at.map(rfc3339)
    }

    /// A `job.finished` for this job with everything but the result filled in.
    pub fn finished(&self, outcome: Outcome, started_at: Option<String>) -> JobFinished {
        JobFinished {
            job: self.id.clone(),
            schedule: self.schedule().map(str::to_string),
            operation: self.operation(),
            repo: self.repo().name.clone(),
            trigger: self.trigger,
            phase: outcome.phase,
            reason: outcome.reason,
            message: outcome.message,
            scheduled_at: self.scheduled_at_text(),
            started_at,
            finished_at: rfc3339(Utc::now()),
            exit_code: None,
            snapshot_id: None,
            summary: None,
            scrub_part: None,
            drill: None,
        }
    }
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn failed(reason: &str, message: String) -> Outcome {
    Outcome {
        phase: JobPhase::Failed,
        reason: Some(reason.to_string()),
        message: Some(message),
    }
}

/// What every job shares.
pub struct Context {
    pub host: String,
    pub restic: Restic,
    pub state: StateDir,
    pub outbox: Outbox,
    /// Repositories known to exist, so `initialize` checks once per agent run.
    initialized: Mutex<HashSet<String>>,
    /// Held while a repository is probed and initialised: two jobs of this host that share a
    /// repo must not both run `restic init`.
    initializing: tokio::sync::Mutex<()>,
}

impl Context {
    pub fn new(host: String, restic: Restic, state: StateDir, outbox: Outbox) -> Context {
        Context {
            host,
            restic,
            state,
            outbox,
            initialized: Mutex::new(HashSet::new()),
            initializing: tokio::sync::Mutex::new(()),
        }
    }
}

/// The result of one restic process.
struct ResticRun {
    exit: crate::restic::Exit,
    exit_error: Option<String>,
    tail: VecDeque<String>,
    /// The line that showed the repository refusing a delete, at which restic was stopped.
    refusal: Option<String>,
    /// Files restic reported it could not handle, with its message (the first
    /// [`MAX_ITEM_ERRORS`]).
    item_errors: Vec<(String, String)>,
}

/// Files with errors kept from one restic run.
const MAX_ITEM_ERRORS: usize = 1000;

impl ResticRun {
    fn outcome(&self, op: JobOperation) -> Outcome {
        // The refusal stopped restic; a cancel arriving during its cleanup changes nothing.
        if let Some(line) = &self.refusal {
            return parse::outcome(op, self.exit.code, None, std::slice::from_ref(line));
        }
        if self.exit.cancelled {
            return cancelled();
        }
        let tail: Vec<String> = self.tail.iter().cloned().collect();
        parse::outcome(op, self.exit.code, self.exit_error.as_deref(), &tail)
    }
}

/// One job's run: the context, its reporter and its cancel signal.
pub struct Run<'a> {
    ctx: &'a Context,
    spec: &'a JobSpec,
    reporter: Reporter,
    cancel: watch::Receiver<bool>,
}

impl<'a> Run<'a> {
    pub fn new(ctx: &'a Context, spec: &'a JobSpec, cancel: watch::Receiver<bool>) -> Run<'a> {
        Run {
            ctx,
            spec,
            reporter: Reporter::new(&spec.id, ctx.outbox.clone()),
            cancel,
        }
    }

    /// Runs the job and returns its `job.finished`; other reports go out as it runs.
    pub async fn execute(mut self, started_at: String) -> JobFinished {
        let access = match RepoAccess::resolve(
            self.spec.repo(),
            &self.spec.secrets,
            &self.ctx.state.tmp_dir(),
        ) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .spec
                    .finished(failed("SecretUnavailable", e.to_string()), Some(started_at));
            }
        };
        let finished = match self.ensure_initialized(&access).await {
            Err(outcome) => self.spec.finished(outcome, Some(started_at)),
            Ok(()) => {
                let spec = self.spec;
                match &spec.work {
                    Work::Schedule(s) => match (s.operation, &s.backup, &s.forget, &s.drill) {
                        (protocol::Operation::Backup, Some(b), _, _) => {
                            self.backup(s, b, &access, started_at).await
                        }
                        (protocol::Operation::Drill, _, _, Some(d)) => {
                            self.drill(d, &access, started_at).await
                        }
                        (protocol::Operation::Forget, _, Some(f), _) => {
                            let args = forget_args(&self.ctx.host, f);
                            let outcome = self.forget(&access, args).await;
                            spec.finished(outcome, Some(started_at))
                        }
                        (protocol::Operation::Prune, _, _, _) => {
                            let outcome = self.plain(&access, vec!["prune".into()]).await;
                            spec.finished(outcome, Some(started_at))
                        }
                        (protocol::Operation::Check, _, _, _) => {
                            let part = s
                                .check
                                .as_ref()
                                .and_then(|c| c.read_data_rotate)
                                .map(|parts| self.ctx.state.scrub_next(&s.repo.name, parts));
                            let json = self.ctx.restic.capabilities.check_json;
                            let outcome = self.plain(&access, check_args(s, part, json)).await;
                            if let Some(part) = part
                                && outcome.phase == JobPhase::Succeeded
                                && let Err(e) = self
                                    .ctx
                                    .state
                                    .store_scrub_next(&s.repo.name, part.following())
                            {
                                tracing::warn!("{e}; the next check reads part {part} again");
                            }
                            let mut finished = spec.finished(outcome, Some(started_at));
                            finished.scrub_part = part;
                            finished
                        }
                        (op, _, _, _) => spec.finished(
                            failed(
                                "InvalidPlan",
                                format!("schedule {} is a {op} without its parameters", s.name),
                            ),
                            Some(started_at),
                        ),
                    },
                    Work::Restore(r) => {
                        let outcome = self.restore(r, &access).await;
                        spec.finished(outcome, Some(started_at))
                    }
                }
            }
        };
        self.reporter.finish();
        finished
    }

    /// Runs restic; on a lock held by a dead process, clears stale locks with plain
    /// `restic unlock` and tries once more.
    async fn restic(
        &mut self,
        access: &RepoAccess,
        args: &[String],
        on_stdout: &mut (dyn FnMut(&mut Reporter, String) -> Option<String> + Send),
    ) -> ResticRun {
        let op = self.spec.operation();
        let mut run = self.restic_once(access, args, on_stdout).await;
        if run.refusal.is_some() && run.exit.code.is_none() {
            // restic outlived the grace after SIGINT and was killed holding its lock. That lock
            // is stale now (its process is gone from this host), which plain unlock removes.
            self.reporter.line(
                "agent",
                "restic was killed before it removed its lock; running `restic unlock`".into(),
            );
            self.restic_once(access, &["unlock".to_string()], &mut |r, l| {
                r.line("restic", l);
                None
            })
            .await;
            return run;
        }
        if run.outcome(op).reason.as_deref() == Some("RepositoryLocked") {
            self.reporter.line(
                "agent",
                "the repository is locked; running `restic unlock` to clear stale locks".into(),
            );
            let unlock = self
                .restic_once(access, &["unlock".to_string()], &mut |r, l| {
                    r.line("restic", l);
                    None
                })
                .await;
            if unlock.exit.code == Some(0) {
                run = self.restic_once(access, args, on_stdout).await;
            }
        }
        run
    }

    async fn restic_once(
        &mut self,
        access: &RepoAccess,
        args: &[String],
        on_stdout: &mut (dyn FnMut(&mut Reporter, String) -> Option<String> + Send),
    ) -> ResticRun {
        let cmd = self.ctx.restic.command(access, args);
        let mut tail = VecDeque::new();
        let mut exit_error = None;
        let mut refusal = None;
        let mut item_errors = Vec::new();
        // A forget or prune through append-only access cannot delete, and restic would retry
        // each refused delete for about 45 s while holding its exclusive lock, keeping every
        // other host's backup out. The first refusal decides the run.
        let deletes = matches!(
            self.spec.operation(),
            JobOperation::Forget | JobOperation::Prune
        );
        let reporter = &mut self.reporter;
        let exit = run_streaming_until(cmd, &mut self.cancel, |stream, line| match stream {
            Stream::Stdout => {
                if let Some(e) = on_stdout(reporter, line) {
                    exit_error = Some(crate::restic::bound(e));
                }
                Flow::Continue
            }
            // restic writes its errors to stderr, as JSON lines when run with --json.
            Stream::Stderr => {
                // What is kept or reported of a line is cut like a log line.
                let line = crate::restic::bound(line);
                if item_errors.len() < MAX_ITEM_ERRORS
                    && let Some(error) = parse::item_error(&line)
                {
                    item_errors.push(error);
                }
                let line = match parse::backup_line(&line) {
                    BackupLine::Error { message, .. } => message,
                    BackupLine::ExitError { message, .. } => {
                        exit_error = Some(message.clone());
                        message
                    }
                    _ => line,
                };
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
                let stop = deletes && refusal.is_none() && parse::refused_delete(&line);
                if stop {
                    refusal = Some(line.clone());
                }
                reporter.line("restic", line);
                if stop {
                    reporter.line(
                        "agent",
                        "the repository refused a delete; stopping restic so that it releases \
                         its lock now instead of retrying"
                            .into(),
                    );
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
        })
        .await;
        self.reporter.flush();
        match exit {
            Ok(exit) => ResticRun {
                exit,
                exit_error,
                tail,
                refusal,
                item_errors,
            },
            Err(e) => ResticRun {
                exit: crate::restic::Exit {
                    code: Some(127),
                    cancelled: false,
                },
                exit_error: Some(format!(
                    "cannot run restic at {}: {e}",
                    self.ctx.restic.binary.display()
                )),
                tail,
                refusal,
                item_errors,
            },
        }
    }

    /// `restic init` when the repository is declared to be initialised on first use and does
    /// not exist yet. When another host initialises a shared repository, a run that finds it
    /// missing skips: a second `init` racing the first would leave it unusable.
    async fn ensure_initialized(&mut self, access: &RepoAccess) -> Result<(), Outcome> {
        let repo = self.spec.repo();
        let known = |ctx: &Context| {
            ctx.initialized
                .lock()
                .map(|s| s.contains(&repo.url))
                .unwrap_or(false)
        };
        if !(repo.initialize || repo.initialized_by.is_some()) || known(self.ctx) {
            return Ok(());
        }
        let _initializing = self.ctx.initializing.lock().await;
        if known(self.ctx) {
            return Ok(());
        }
        let probe = self
            .restic_once(access, &["cat".into(), "config".into()], &mut |_, _| None)
            .await;
        let probe_outcome = probe.outcome(JobOperation::Check);
        let missing = probe_outcome.reason.as_deref() == Some("RepositoryNotFound");
        if let (true, Some(initializer)) = (missing, &repo.initialized_by) {
            return Err(Outcome {
                phase: JobPhase::Skipped,
                reason: Some("RepositoryNotInitialized".into()),
                message: Some(format!(
                    "repository {} does not exist yet; host {initializer} initialises it on its first run, and runs here wait until it has",
                    repo.name
                )),
            });
        }
        if missing {
            self.reporter.line(
                "agent",
                format!(
                    "repository {} does not exist yet; initialising it",
                    repo.name
                ),
            );
            let init = self
                .restic_once(access, &["init".into()], &mut |r, l| {
                    r.line("restic", l);
                    None
                })
                .await;
            let outcome = init.outcome(JobOperation::Check);
            if outcome.phase != JobPhase::Succeeded {
                return Err(outcome);
            }
        } else if probe_outcome.phase != JobPhase::Succeeded {
            return Err(probe_outcome);
        }
        if let Ok(mut set) = self.ctx.initialized.lock() {
            set.insert(repo.url.clone());
        }
        Ok(())
    }

    async fn backup(
        &mut self,
        schedule: &ResolvedSchedule,
        params: &BackupParams,
        access: &RepoAccess,
        started_at: String,
    ) -> JobFinished {
        let job = self.spec.id.clone();
        let env = [
            ("HOLDFAST_JOB_ID", job.as_str()),
            ("HOLDFAST_SCHEDULE", schedule.name.as_str()),
        ];
        let pre = hooks::run_all(&params.pre_hooks, "pre-hook", &env, &mut self.reporter).await;
        let mut summary = None;
        let (outcome, exit_code) = match pre {
            Err(e) => (failed("PreHookFailed", e.to_string()), None),
            Ok(()) => {
                let args = backup_args(&self.ctx.host, params);
                let job_id = job.clone();
                let run = self
                    .restic(access, &args, &mut |reporter, line| {
                        match parse::backup_line(&line) {
                            BackupLine::Status(p) => reporter.progress(progress(&job_id, p)),
                            BackupLine::Summary {
                                summary: s,
                                snapshot_id,
                            } => {
                                // The log of a run that went well says what it did.
                                for line in crate::restic::summary::lines(&s, &snapshot_id) {
                                    reporter.line("restic", line);
                                }
                                summary = Some((s, snapshot_id));
                            }
                            BackupLine::Error { message, .. } => reporter.line("restic", message),
                            BackupLine::ExitError { message, .. } => {
                                reporter.line("restic", message.clone());
                                return Some(message);
                            }
                            BackupLine::Other(text) => reporter.line("restic", text),
                        }
                        None
                    })
                    .await;
                (run.outcome(JobOperation::Backup), run.exit.code)
            }
        };
        let status = outcome.phase.as_str();
        let post_env = [env[0], env[1], ("HOLDFAST_JOB_STATUS", status)];
        if let Err(e) = hooks::run_all(
            &params.post_hooks,
            "post-hook",
            &post_env,
            &mut self.reporter,
        )
        .await
        {
            self.reporter.line("agent", e.to_string());
        }
        // The run ends here; listing snapshots below is bookkeeping, not part of its duration.
        let finished_at = rfc3339(Utc::now());
        let mut snapshot_id = summary.as_ref().map(|(_, id)| id.clone());
        if let Some(short) = snapshot_id.clone() {
            // restic 0.14 prints 8 characters; the snapshot list has the full id.
            if let Some(snapshots) = self.report_snapshots(access).await {
                snapshot_id = parse::resolve_snapshot_id(&short, &snapshots).or(Some(short));
            }
        }
        let mut finished = self.spec.finished(outcome, Some(started_at));
        finished.finished_at = finished_at;
        finished.exit_code = exit_code;
        finished.snapshot_id = snapshot_id;
        finished.summary = summary.map(|(s, _)| s);
        finished
    }

    async fn forget(&mut self, access: &RepoAccess, args: Vec<String>) -> Outcome {
        let mut removed = Vec::new();
        let run = self
            .restic(access, &args, &mut |reporter, line| {
                if line.starts_with('[') {
                    match parse::forget(&line) {
                        Ok(result) => removed.extend(result.removed),
                        Err(e) => reporter.line("agent", e.to_string()),
                    }
                } else {
                    reporter.line("restic", line);
                }
                None
            })
            .await;
        self.reporter.line(
            "agent",
            match removed.len() {
                0 => "forget removed no snapshots".to_string(),
                n => format!("forget removed {n} snapshots: {}", removed.join(", ")),
            },
        );
        let outcome = run.outcome(JobOperation::Forget);
        if outcome.phase == JobPhase::Succeeded {
            self.report_snapshots(access).await;
        }
        outcome
    }

    /// A command whose output is only logged (prune, check, unlock).
    async fn plain(&mut self, access: &RepoAccess, args: Vec<String>) -> Outcome {
        let run = self
            .restic(access, &args, &mut |reporter, line| {
                match parse::backup_line(&line) {
                    BackupLine::ExitError { message, .. } => {
                        reporter.line("restic", message.clone());
                        return Some(message);
                    }
                    BackupLine::Other(text) => reporter.line("restic", text),
                    // Other JSON (check's summary) is kept verbatim in the log.
                    _ => reporter.line("restic", line),
                }
                None
            })
            .await;
        run.outcome(self.spec.operation())
    }

    async fn restore(&mut self, request: &RestoreRequest, access: &RepoAccess) -> Outcome {
        let json = self.ctx.restic.capabilities.restore_json;
        let args = restore_args(request, json);
        let job_id = self.spec.id.clone();
        let run = self
            .restic(access, &args, &mut |reporter, line| {
                restore_output(json, &job_id, reporter, line)
            })
            .await;
        run.outcome(JobOperation::Restore)
    }

    /// A restore drill: find the snapshot, choose its files, restore them into a private
    /// directory, compare each with the snapshot's content, and remove the directory.
    async fn drill(
        &mut self,
        params: &DrillParams,
        access: &RepoAccess,
        started_at: String,
    ) -> JobFinished {
        let spec = self.spec;
        let end = |outcome: Outcome| spec.finished(outcome, Some(started_at.clone()));

        // The snapshot.
        let mut out = String::new();
        let run = self
            .restic(access, &drill::snapshots_args(params), &mut |_, line| {
                out.push_str(&line);
                None
            })
            .await;
        let outcome = run.outcome(JobOperation::Drill);
        if outcome.phase != JobPhase::Succeeded {
            return end(outcome);
        }
        let snapshots = match parse::snapshots(&out) {
            Ok(s) => s,
            Err(e) => return end(failed("ResticFailed", e.to_string())),
        };
        let Some(snapshot) = drill::latest(&snapshots, &params.paths) else {
            return end(failed("NoSnapshot", no_snapshot(params, &spec.repo().name)));
        };
        let id = snapshot.id.clone();
        self.reporter.line(
            "agent",
            format!(
                "drilling snapshot {} of host {} from {}",
                short(&id),
                params.source_host,
                snapshot.time
            ),
        );

        // Its files: the whole paths, or a sample.
        let include = !params.include.is_empty();
        let mut sampler =
            drill::Sampler::new(params.sample_files, params.max_bytes, drill::seed(&spec.id));
        let mut files = Vec::new();
        let args: Vec<String> = vec!["ls".into(), "--json".into(), id.clone()];
        let run = self
            .restic(access, &args, &mut |_, line| {
                match parse::ls_file(&line) {
                    Some(f) if include && drill::under(&f.path, &params.include) => files.push(f),
                    Some(f) if !include => sampler.offer(f),
                    _ => {}
                }
                None
            })
            .await;
        let outcome = run.outcome(JobOperation::Drill);
        if outcome.phase != JobPhase::Succeeded {
            return end(outcome);
        }
        if !include {
            files = sampler.finish();
        }
        if files.is_empty() {
            return end(failed(
                "NothingToVerify",
                match include {
                    true => format!(
                        "snapshot {} has no files under {}",
                        short(&id),
                        params.include.join(", ")
                    ),
                    false => format!(
                        "snapshot {} has no file of at most {} bytes to sample",
                        short(&id),
                        params.max_bytes
                    ),
                },
            ));
        }
        self.reporter.line(
            "agent",
            format!("restoring and verifying {} files", files.len()),
        );

        // The restore, timed.
        let scratch = match drill::Scratch::new(&self.ctx.state.tmp_dir()) {
            Ok(s) => s,
            Err(e) => {
                return end(failed(
                    "DrillDirectoryUnavailable",
                    format!("cannot create a private directory for the drill: {e}"),
                ));
            }
        };
        let patterns: Vec<String> = match include {
            true => params
                .include
                .iter()
                .map(|p| drill::exact_pattern(p))
                .collect(),
            false => files
                .iter()
                .map(|f| drill::exact_pattern(&f.path))
                .collect(),
        };
        let json = self.ctx.restic.capabilities.restore_json;
        let args = drill::restore_args(&id, scratch.path(), &patterns, json);
        let job_id = spec.id.clone();
        let clock = std::time::Instant::now();
        let restore = self
            .restic(access, &args, &mut |reporter, line| {
                restore_output(json, &job_id, reporter, line)
            })
            .await;
        let seconds = clock.elapsed().as_secs_f64();
        let restored = restore.outcome(JobOperation::Drill);
        if restored.phase == JobPhase::Cancelled {
            return end(restored);
        }

        // Every file against the snapshot.
        let mut tally = drill::Tally::new(files.len());
        let mut restored_bytes = 0u64;
        for file in &files {
            if *self.cancel.borrow() {
                return end(cancelled());
            }
            let local = drill::restored_path(scratch.path(), &file.path);
            let meta = std::fs::symlink_metadata(&local);
            if let Ok(m) = &meta
                && m.is_file()
            {
                restored_bytes += m.len();
            }
            let error = restore.item_errors.iter().find(|(p, _)| *p == file.path);
            let problem = match (error, meta) {
                (Some((_, message)), _) => Some(format!("restic could not restore it: {message}")),
                (None, Err(_)) => Some("not restored".to_string()),
                (None, Ok(m)) if !m.is_file() => {
                    Some("restored as something other than a regular file".to_string())
                }
                (None, Ok(m)) if m.len() != file.size => Some(format!(
                    "restored {} bytes; the snapshot has {}",
                    m.len(),
                    file.size
                )),
                (None, Ok(_)) => self.verify(access, &id, &file.path, &local).await.err(),
            };
            match problem {
                None => tally.verified(file.size),
                Some(reason) => tally.differs(&file.path, reason),
            }
        }
        drop(scratch);
        if *self.cancel.borrow() {
            return end(cancelled());
        }

        // restic failing as a whole (a lock, a password) says more than every file missing; when
        // it named the files it could not restore, the files say what failed.
        let restic_failed = restored.phase != JobPhase::Succeeded && restore.item_errors.is_empty();
        let outcome = match tally.differences().first() {
            Some(first) if !restic_failed => failed(
                "VerificationFailed",
                format!(
                    "{} of {} files did not verify against snapshot {}; first {}: {}",
                    tally.differences_total(),
                    files.len(),
                    short(&id),
                    first.path,
                    first.reason
                ),
            ),
            _ => restored,
        };
        let result = tally.result(seconds, restored_bytes);
        self.reporter.line(
            "agent",
            format!(
                "verified {} of {} files ({} bytes); restore took {:.1} s at {} bytes/s",
                result.files_verified,
                result.files_expected,
                result.bytes_verified,
                result.seconds,
                result.bytes_per_second
            ),
        );
        for d in &result.differences {
            self.reporter
                .line("agent", format!("differs: {}: {}", d.path, d.reason));
        }
        let mut finished = end(outcome);
        finished.snapshot_id = Some(id);
        finished.drill = Some(result);
        finished
    }

    /// Compares a restored file with `restic dump` of its path, both streamed. The error is
    /// why they differ, naming restic's own error when it could not read the snapshot.
    async fn verify(
        &self,
        access: &RepoAccess,
        snapshot: &str,
        path: &str,
        local: &std::path::Path,
    ) -> Result<(), String> {
        let args: Vec<String> = vec!["dump".into(), snapshot.into(), path.into()];
        let mut cmd = self.ctx.restic.command(access, &args);
        crate::platform::isolate(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run restic at {}: {e}",
                self.ctx.restic.binary.display()
            )
        })?;
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| format!("cannot read the restored file: {e}"))?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("restic dump has no output to read".into());
        };
        let errors = async {
            let mut text = String::new();
            // Bounded: restic's message is one line; the rest is read and dropped.
            let _ = (&mut stderr).take(8192).read_to_string(&mut text).await;
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            text
        };
        let mut cancel = self.cancel.clone();
        let cancelled = async {
            while !*cancel.borrow() {
                if cancel.changed().await.is_err() {
                    break;
                }
            }
        };
        let (compared, errors) = tokio::select! {
            done = async { tokio::join!(drill::compare(stdout, file), errors) } => done,
            () = cancelled => {
                // As for every restic run: an interrupt so that it removes its lock.
                crate::platform::interrupt(&child);
                let grace = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait());
                if grace.await.is_err() {
                    let _ = crate::platform::kill(&mut child);
                }
                return Err("the run was cancelled".into());
            }
        };
        let status = child.wait().await;
        let code = status.as_ref().ok().and_then(|s| s.code());
        if code != Some(0) {
            let line = errors
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim()
                .to_string();
            return Err(format!("restic dump failed: {line}"));
        }
        compared.map(|_| ()).map_err(|m| m.to_string())
    }

    /// Sends `snapshots.report` for this host and returns the snapshots.
    async fn report_snapshots(&mut self, access: &RepoAccess) -> Option<Vec<protocol::Snapshot>> {
        let args: Vec<String> = vec![
            "snapshots".into(),
            "--json".into(),
            "--host".into(),
            self.ctx.host.clone(),
        ];
        let mut out = String::new();
        let run = self
            .restic_once(access, &args, &mut |_, line| {
                out.push_str(&line);
                None
            })
            .await;
        if run.exit.code != Some(0) {
            return None;
        }
        match parse::snapshots(&out) {
            Ok(snapshots) => {
                self.reporter
                    .push(ReportBody::SnapshotsReport(SnapshotsReport {
                        repo: self.spec.repo().name.clone(),
                        snapshots: snapshots.clone(),
                    }));
                Some(snapshots)
            }
            Err(e) => {
                self.reporter.line("agent", e.to_string());
                None
            }
        }
    }
}

/// A line of `restic restore`: progress and summary when restic writes JSON, else the text.
fn restore_output(
    json: bool,
    job_id: &str,
    reporter: &mut Reporter,
    line: String,
) -> Option<String> {
    if !json {
        reporter.line("restic", line);
        return None;
    }
    match parse::restore_line(&line) {
        RestoreLine::Status(p) => reporter.progress(progress(job_id, p)),
        RestoreLine::Summary {
            files_restored,
            bytes_restored,
        } => reporter.line(
            "restic",
            format!("restored {files_restored} files, {bytes_restored} bytes"),
        ),
        RestoreLine::Error { message, .. } => reporter.line("restic", message),
        RestoreLine::ExitError { message, .. } => {
            reporter.line("restic", message.clone());
            return Some(message);
        }
        RestoreLine::Other(text) => reporter.line("restic", text),
    }
    None
}

fn cancelled() -> Outcome {
    Outcome {
        phase: JobPhase::Cancelled,
        reason: Some("Cancelled".into()),
        message: Some("the run was cancelled".into()),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Why no snapshot was found, naming what a snapshot had to match.
fn no_snapshot(params: &DrillParams, repo: &str) -> String {
    let mut scope = format!("host {}", params.source_host);
    if !params.tags.is_empty() {
        scope.push_str(&format!(", tags {}", params.tags.join(",")));
    }
    if !params.paths.is_empty() {
        scope.push_str(&format!(", paths {}", params.paths.join(" ")));
    }
    format!("repo {repo} has no snapshot to drill ({scope})")
}

/// After a backup: `repo.stats` from `restic stats --mode raw-data`. Runs after `job.finished`
/// so that the run's reported duration is restic's, not the statistics'.
pub async fn report_stats(ctx: &Context, spec: &JobSpec) {
    let Ok(access) = RepoAccess::resolve(spec.repo(), &spec.secrets, &ctx.state.tmp_dir()) else {
        return;
    };
    let args: Vec<String> = ["stats", "--json", "--mode", "raw-data"]
        .map(String::from)
        .to_vec();
    let cmd = ctx.restic.command(&access, &args);
    let (_never, mut cancel) = watch::channel(false);
    let mut out = String::new();
    let exit = run_streaming(cmd, &mut cancel, |stream, line| {
        if stream == Stream::Stdout {
            out.push_str(&line);
        }
    })
    .await;
    if !matches!(exit, Ok(ref e) if e.code == Some(0)) {
        tracing::warn!(job = %spec.id, "restic stats failed; no repo.stats this time");
        return;
    }
    match parse::stats(&out) {
        Ok(stats) => {
            let report = ReportBody::RepoStats(RepoStats {
                repo: spec.repo().name.clone(),
                total_size: stats.total_size,
                total_uncompressed_size: stats.total_uncompressed_size,
                snapshots_count: stats.snapshots_count,
                blob_count: stats.blob_count,
            });
            if let Err(e) = ctx.outbox.push(report) {
                tracing::error!("cannot store a report: {e}");
            }
        }
        Err(e) => tracing::warn!(job = %spec.id, "{e}"),
    }
}

fn progress(job: &str, p: parse::Progress) -> JobProgress {
    JobProgress {
        job: job.to_string(),
        percent_done: p.percent_done,
        files_done: p.files_done,
        total_files: p.total_files,
        bytes_done: p.bytes_done,
        total_bytes: p.total_bytes,
        seconds_elapsed: p.seconds_elapsed,
        seconds_remaining: p.seconds_remaining,
        current_files: p.current_files,
    }
}

pub fn backup_args(host: &str, params: &BackupParams) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--json".into(),
        "--host".into(),
        host.into(),
    ];
    for tag in &params.tags {
        args.extend(["--tag".into(), tag.clone()]);
    }
    for exclude in &params.excludes {
        args.extend(["--exclude".into(), exclude.clone()]);
    }
    if let Some(kib) = params.limits.upload_kib_per_second {
        args.extend(["--limit-upload".into(), kib.to_string()]);
    }
    if let Some(kib) = params.limits.download_kib_per_second {
        args.extend(["--limit-download".into(), kib.to_string()]);
    }
    args.push("--".into());
    args.extend(params.paths.iter().cloned());
    args
}

/// Forget is always scoped to this host, and to the schedule's tags when it has some, so one
/// host's retention never removes another host's snapshots.
pub fn forget_args(host: &str, params: &ForgetParams) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "forget".into(),
        "--json".into(),
        "--host".into(),
        host.into(),
    ];
    if !params.tags.is_empty() {
        args.extend(["--tag".into(), params.tags.join(",")]);
    }
    let r = &params.retention;
    let counts = [
        ("--keep-last", r.keep_last),
        ("--keep-hourly", r.keep_hourly),
        ("--keep-daily", r.keep_daily),
        ("--keep-weekly", r.keep_weekly),
        ("--keep-monthly", r.keep_monthly),
        ("--keep-yearly", r.keep_yearly),
    ];
    for (flag, n) in counts {
        if let Some(n) = n {
            args.extend([flag.into(), n.to_string()]);
        }
    }
    if let Some(within) = &r.keep_within {
        args.extend(["--keep-within".into(), within.clone()]);
    }
    for tag in &r.keep_tags {
        args.extend(["--keep-tag".into(), tag.clone()]);
    }
    if params.prune {
        args.push("--prune".into());
    }
    args
}

/// `restic check`, reading `part` of the data when the schedule rotates through parts.
fn check_args(schedule: &ResolvedSchedule, part: Option<ScrubPart>, json: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["check".into()];
    if json {
        args.push("--json".into());
    }
    let subset = part.map(|p| p.to_string()).or_else(|| {
        schedule
            .check
            .as_ref()
            .and_then(|c| c.read_data_subset.clone())
    });
    if let Some(subset) = subset {
        args.extend(["--read-data-subset".into(), subset]);
    }
    args
}

pub fn restore_args(request: &RestoreRequest, json: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["restore".into()];
    if json {
        args.push("--json".into());
    }
    args.extend([
        request.snapshot.clone(),
        "--target".into(),
        request.target_path.clone(),
    ]);
    if let Some(host) = &request.source_host {
        args.extend(["--host".into(), host.clone()]);
    }
    for include in &request.include {
        args.extend(["--include".into(), include.clone()]);
    }
    for exclude in &request.exclude {
        args.extend(["--exclude".into(), exclude.clone()]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{Limits, Retention};

    #[test]
    fn backup_arguments_carry_host_tags_excludes_and_limits() {
        let params = BackupParams {
            paths: vec!["/etc".into(), "/srv".into()],
            excludes: vec!["*.tmp".into()],
            tags: vec!["nightly".into()],
            limits: Limits {
                upload_kib_per_second: Some(512),
                download_kib_per_second: Some(1024),
            },
            ..BackupParams::default()
        };
        assert_eq!(
            backup_args("web-1", &params).join(" "),
            "backup --json --host web-1 --tag nightly --exclude *.tmp --limit-upload 512 --limit-download 1024 -- /etc /srv"
        );
    }

    #[test]
    fn forget_is_always_scoped_to_the_host_and_the_schedule_tags() {
        let params = ForgetParams {
            retention: Retention {
                keep_daily: Some(7),
                keep_within: Some("2y".into()),
                keep_tags: vec!["keep".into()],
                ..Retention::default()
            },
            tags: vec!["nightly".into(), "db".into()],
            prune: true,
        };
        assert_eq!(
            forget_args("web-1", &params).join(" "),
            "forget --json --host web-1 --tag nightly,db --keep-daily 7 --keep-within 2y --keep-tag keep --prune"
        );
    }

    #[test]
    fn restore_uses_json_only_where_restic_has_it() {
        let request = RestoreRequest {
            repo: ResolvedRepo {
                name: "nas".into(),
                url: "/r".into(),
                password: protocol::SecretRef::HostFile { path: "/p".into() },
                env: vec![],
                initialize: false,
                initialized_by: None,
            },
            snapshot: "latest".into(),
            source_host: Some("web-2".into()),
            target_path: "/srv/restore".into(),
            include: vec!["/etc".into()],
            exclude: vec![],
        };
        assert_eq!(
            restore_args(&request, false).join(" "),
            "restore latest --target /srv/restore --host web-2 --include /etc"
        );
        assert!(restore_args(&request, true).starts_with(&["restore".into(), "--json".into()]));
    }
}
