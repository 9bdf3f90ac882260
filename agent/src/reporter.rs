//! What one job tells the controller while it runs: log lines in batches and progress, both
//! throttled to at most one report a second, and bounded so a chatty hook cannot fill the disk.

use std::time::{Duration, Instant};

use protocol::{JobLog, JobProgress, LogLine, ReportBody};

use crate::outbox::Outbox;

const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Lines a job sends at most; after that only their count is reported.
const MAX_LINES: usize = 5000;
/// Lines kept for one batch before it is flushed regardless of time.
const BATCH: usize = 200;

pub struct Reporter {
    job: String,
    outbox: Outbox,
    pending: Vec<LogLine>,
    sent_lines: usize,
    dropped_lines: usize,
    last_log: Option<Instant>,
    last_progress: Option<Instant>,
}

impl Reporter {
    pub fn new(job: &str, outbox: Outbox) -> Reporter {
        Reporter {
            job: job.to_string(),
            outbox,
            pending: Vec::new(),
            sent_lines: 0,
            dropped_lines: 0,
            last_log: None,
            last_progress: None,
        }
    }

    /// Queues one line of output; sends a batch when a second has passed since the last one.
    pub fn line(&mut self, source: &str, line: String) {
        if self.sent_lines + self.pending.len() >= MAX_LINES {
            self.dropped_lines += 1;
            return;
        }
        self.pending.push(LogLine {
            source: source.to_string(),
            line: crate::restic::bound(line),
        });
        let due = self.last_log.is_none_or(|t| t.elapsed() >= FLUSH_EVERY);
        if due || self.pending.len() >= BATCH {
            self.flush();
        }
    }

    /// Sends queued lines now (at the end of a step, so the log is complete before the result).
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending);
        self.sent_lines += lines.len();
        self.last_log = Some(Instant::now());
        self.push(ReportBody::JobLog(JobLog {
            job: self.job.clone(),
            lines,
        }));
    }

    /// Flushes, noting how many lines were left out.
    pub fn finish(&mut self) {
        if self.dropped_lines > 0 {
            self.pending.push(LogLine {
                source: "agent".into(),
                line: format!("{} more lines were not sent", self.dropped_lines),
            });
            self.dropped_lines = 0;
        }
        self.flush();
    }

    /// Sends progress, at most once a second (the first one at once).
    pub fn progress(&mut self, progress: JobProgress) {
        if self
            .last_progress
            .is_some_and(|t| t.elapsed() < FLUSH_EVERY)
        {
            return;
        }
        self.last_progress = Some(Instant::now());
        self.push(ReportBody::JobProgress(progress));
    }

    pub fn push(&self, body: ReportBody) {
        if let Err(e) = self.outbox.push(body) {
            // The disk is gone or full; the run goes on and the log says why reports are missing.
            tracing::error!(job = %self.job, "cannot store a report: {e}");
        }
    }
}
