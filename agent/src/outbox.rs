//! The persistent outbox: every report is written to disk before it is sent and deleted only when
//! the controller acknowledges it, so neither a dropped connection nor a killed agent loses one.
//!
//! One file per report, named by its sequence number, so that appending and acknowledging touch
//! one small file each and the order survives a restart.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::{Report, ReportBody};
use tokio::sync::Notify;

use crate::state::{StateError, read_json, sync_dir, write_json};

#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    pending: Mutex<Pending>,
    /// Woken whenever a report is added.
    added: Notify,
}

struct Pending {
    next_seq: u64,
    reports: BTreeMap<u64, ReportBody>,
}

impl Outbox {
    /// Loads the reports a previous run left unacknowledged.
    pub fn open(dir: PathBuf) -> Result<Outbox, StateError> {
        let mut reports = BTreeMap::new();
        let entries = fs::read_dir(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| StateError::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            let Some(seq) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue; // temp files of an interrupted write
            };
            if let Some(report) = read_json::<Report>(&path)? {
                reports.insert(seq, report.body);
            }
        }
        let next_seq = reports.keys().next_back().map_or(1, |last| last + 1);
        Ok(Outbox {
            inner: Arc::new(Inner {
                dir,
                pending: Mutex::new(Pending { next_seq, reports }),
                added: Notify::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock cannot leave the map half-updated: recover it.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.inner.dir.join(format!("{seq:020}.json"))
    }

    /// Persists a report, then makes it available to send. An unsent progress report of the same
    /// job is superseded, so an agent offline during a long backup does not pile them up.
    pub fn push(&self, body: ReportBody) -> Result<u64, StateError> {
        let mut pending = self.lock();
        let seq = pending.next_seq;
        write_json(
            &self.path(seq),
            &Report {
                seq,
                body: body.clone(),
            },
        )?;
        pending.next_seq += 1;
        if let ReportBody::JobProgress(p) = &body {
            let stale: Vec<u64> = pending
                .reports
                .iter()
                .filter(|(_, r)| matches!(r, ReportBody::JobProgress(old) if old.job == p.job))
                .map(|(seq, _)| *seq)
                .collect();
            for old in stale {
                pending.reports.remove(&old);
                self.remove_file(old)?;
            }
        }
        pending.reports.insert(seq, body);
        drop(pending);
        self.inner.added.notify_waiters();
        Ok(seq)
    }

    /// The controller stored the report: forget it. Unknown sequence numbers are ignored (a
    /// superseded progress report, or a duplicate ack).
    pub fn ack(&self, seq: u64) -> Result<(), StateError> {
        let mut pending = self.lock();
        if pending.reports.remove(&seq).is_some() {
            self.remove_file(seq)?;
        }
        Ok(())
    }

    fn remove_file(&self, seq: u64) -> Result<(), StateError> {
        let path = self.path(seq);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::Io { path, source: e })
            }
            _ => sync_dir(&self.inner.dir),
        }
    }

    /// Reports with a sequence number above `after`, in order.
    pub fn after(&self, after: u64) -> Vec<Report> {
        self.lock()
            .reports
            .range(after + 1..)
            .map(|(seq, body)| Report {
                seq: *seq,
                body: body.clone(),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().reports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves when a report is pushed after this call.
    pub fn added(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.added.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{JobLog, JobProgress};

    fn progress(job: &str, done: u64) -> ReportBody {
        ReportBody::JobProgress(JobProgress {
            job: job.into(),
            files_done: done,
            ..JobProgress::default()
        })
    }

    fn log(job: &str) -> ReportBody {
        ReportBody::JobLog(JobLog {
            job: job.into(),
            lines: vec![],
        })
    }

    #[test]
    fn reports_survive_a_reopen_in_order_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().to_path_buf()).unwrap();
        assert_eq!(outbox.push(log("a")).unwrap(), 1);
        assert_eq!(outbox.push(log("b")).unwrap(), 2);
        assert_eq!(outbox.push(log("c")).unwrap(), 3);
        outbox.ack(2).unwrap();
        drop(outbox);

        let reopened = Outbox::open(dir.path().to_path_buf()).unwrap();
        let seqs: Vec<u64> = reopened.after(0).iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![1, 3]);
        // Numbering goes on after the highest pending report, never reusing an acked one.
        assert_eq!(reopened.push(log("d")).unwrap(), 4);
        assert_eq!(reopened.after(3).len(), 1);
    }

    #[test]
    fn newer_progress_replaces_unacked_progress_of_the_same_job() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().to_path_buf()).unwrap();
        outbox.push(progress("a", 1)).unwrap();
        outbox.push(log("a")).unwrap();
        outbox.push(progress("b", 1)).unwrap();
        outbox.push(progress("a", 2)).unwrap();
        let left: Vec<(u64, Option<u64>)> = outbox
            .after(0)
            .into_iter()
            .map(|r| match r.body {
                ReportBody::JobProgress(p) => (r.seq, Some(p.files_done)),
                _ => (r.seq, None),
            })
            .collect();
        assert_eq!(left, vec![(2, None), (3, Some(1)), (4, Some(2))]);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn acking_an_unknown_report_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path().to_path_buf()).unwrap();
        outbox.push(log("a")).unwrap();
        outbox.ack(99).unwrap();
        outbox.ack(1).unwrap();
        outbox.ack(1).unwrap();
        assert!(outbox.is_empty());
    }
}
