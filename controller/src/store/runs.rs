//! Run records, their logs, and the history kept for charts after records are pruned.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{SnapshotTotals, Store, StoreError};
use crate::compile::HostKey;
use crate::resources::{Kind, Phase};
use crate::runs::{RunRecord, is_final, operation_name, parse_operation};

/// Lines of log kept per run; older lines are dropped first.
pub const LOG_LINES_KEPT: i64 = 1000;
/// Lines of log a run's status carries.
pub const LOG_TAIL_LINES: i64 = 10;

/// The scheduled records of one schedule on one host, which its history limits apply to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunGroup {
    pub namespace: String,
    pub host: String,
    pub schedule: Option<String>,
}

/// A group's finished records: how many succeeded, and how many did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSize {
    pub group: RunGroup,
    pub succeeded: u32,
    pub other: u32,
}

impl RunGroup {
    pub fn of(run: &RunRecord) -> RunGroup {
        RunGroup {
            namespace: run.namespace.clone(),
            host: run.host.clone(),
            schedule: run.schedule.clone(),
        }
    }
}

/// One finished run, as the 30-day timeline shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPoint {
    pub host: String,
    pub name: String,
    pub schedule: Option<String>,
    pub phase: Phase,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
}

pub use holdfast_core::facts::SizePoint;

/// A host's snapshots in one repo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoHost {
    pub host: String,
    pub snapshots: u64,
    pub latest: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "kind, namespace, name, host, job, schedule, operation, repo, phase,
    requested, created_at, scheduled_at, started_at, finished_at, exit_code, snapshot_id, summary,
    progress, reason, message, log_tail, drill";

fn phase_text(phase: Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn parse_phase(text: &str) -> Phase {
    serde_json::from_value(serde_json::Value::String(text.into())).unwrap_or(Phase::Failed)
}

fn run_from_row(r: &Row) -> rusqlite::Result<RunRecord> {
    let kind: String = r.get(0)?;
    let operation: String = r.get(6)?;
    Ok(RunRecord {
        kind: Kind::from_name(&kind).unwrap_or(Kind::Backup),
        namespace: r.get(1)?,
        name: r.get(2)?,
        host: r.get(3)?,
        job: r.get(4)?,
        schedule: r.get(5)?,
        operation: parse_operation(&operation).unwrap_or(protocol::JobOperation::Backup),
        repo: r.get(7)?,
        phase: parse_phase(&r.get::<_, String>(8)?),
        requested: r.get::<_, i64>(9)? != 0,
        created_at: r.get(10)?,
        scheduled_at: r.get(11)?,
        started_at: r.get(12)?,
        finished_at: r.get(13)?,
        exit_code: r.get(14)?,
        snapshot_id: r.get(15)?,
        summary: r
            .get::<_, Option<String>>(16)?
            .and_then(|s| serde_json::from_str(&s).ok()),
        progress: r
            .get::<_, Option<String>>(17)?
            .and_then(|s| serde_json::from_str(&s).ok()),
        reason: r.get(18)?,
        message: r.get(19)?,
        log_tail: r
            .get::<_, Option<String>>(20)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        drill: r
            .get::<_, Option<String>>(21)?
            .and_then(|s| serde_json::from_str(&s).ok()),
    })
}

impl Store {
    /// The record of `job` on `host`.
    pub fn run_by_job(&self, host: &HostKey, job: &str) -> Result<Option<RunRecord>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE namespace = ?1 AND host = ?2 AND job = ?3"
                ),
                params![host.namespace, host.name, job],
                run_from_row,
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// The record of a request (a Backup or Restore file) by its name.
    pub fn run_by_name(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE kind = ?1 AND namespace = ?2 AND name = ?3"
                ),
                params![kind.as_str(), namespace, name],
                run_from_row,
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }

    /// Calls `f` with every record, in no order, without holding them all: the status writer's
    /// summaries at start.
    pub fn for_each_run(&self, mut f: impl FnMut(RunRecord)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {RUN_COLUMNS} FROM runs"))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], run_from_row)
            .map_err(|e| self.sqlite(e))?;
        for row in rows {
            f(row.map_err(|e| self.sqlite(e))?);
        }
        Ok(())
    }

    /// Records whose object is missing or shows the run going on: after a restart (or the
    /// upgrade that began storing objects) the status writer brings these up to date. The
    /// records going on and those without an object come from the runs and the objects' key;
    /// the objects to settle again from their partial index: reading every stored object's
    /// JSON took 30 % of a start on 150,000 records.
    pub fn runs_to_settle(&self) -> Result<Vec<RunRecord>, StoreError> {
        let columns = RUN_COLUMNS.replace('\n', " ");
        let columns: Vec<String> = columns
            .split(',')
            .map(|c| format!("r.{}", c.trim()))
            .collect();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {columns} FROM runs r
                 WHERE r.phase IN ('Pending', 'Dispatched', 'Running')
                    OR NOT EXISTS (SELECT 1 FROM objects o
                        WHERE o.kind = r.kind AND o.namespace = r.namespace AND o.name = r.name)
                 UNION
                 SELECT {columns} FROM objects o INDEXED BY objects_to_settle JOIN runs r
                   ON r.kind = o.kind AND r.namespace = o.namespace AND r.name = o.name
                 WHERE o.kind IN ('Backup', 'Restore')
                   AND (o.object IS NULL
                    OR json_extract(o.object, '$.status.phase') IN ('Pending', 'Dispatched', 'Running'))",
                columns = columns.join(", ")
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], run_from_row)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The records of requests (Backup and Restore files and objects): their objects follow
    /// the files, so a new revision settles them again.
    pub fn requested_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_requested WHERE requested = 1"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], run_from_row)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The run records saved since the last call.
    pub fn take_saved_runs(&mut self) -> Vec<RunRecord> {
        std::mem::take(&mut self.saved)
    }

    /// Every (namespace, host, schedule) with finished scheduled records, and how many of them
    /// succeeded and did not: what history limits apply to. A group within its limits has
    /// nothing to prune, so a start reads none of its records.
    pub fn run_groups(&self) -> Result<Vec<GroupSize>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT namespace, host, schedule, sum(phase = 'Succeeded'), sum(phase <> 'Succeeded')
                 FROM runs
                 WHERE requested = 0 AND phase NOT IN ('Pending', 'Dispatched', 'Running')
                 GROUP BY namespace, host, schedule",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(GroupSize {
                    group: RunGroup {
                        namespace: r.get(0)?,
                        host: r.get(1)?,
                        schedule: r.get(2)?,
                    },
                    succeeded: r.get(3)?,
                    other: r.get(4)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The finished scheduled records of a group that succeeded (or did not), beyond the
    /// newest `keep`: what its history limit prunes. Reads the group alone, through its index.
    pub fn runs_beyond(
        &self,
        group: &RunGroup,
        succeeded: bool,
        keep: u32,
    ) -> Result<Vec<(Kind, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT kind, namespace, name FROM runs INDEXED BY runs_by_schedule
                 WHERE namespace = ?1 AND host = ?2 AND schedule IS ?3 AND requested = 0
                   AND phase NOT IN ('Pending', 'Dispatched', 'Running')
                   AND (phase = 'Succeeded') = ?4
                 ORDER BY finished_at DESC LIMIT -1 OFFSET ?5",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(
                params![group.namespace, group.host, group.schedule, succeeded, keep],
                |r| {
                    let kind: String = r.get(0)?;
                    Ok((
                        Kind::from_name(&kind).unwrap_or(Kind::Backup),
                        r.get(1)?,
                        r.get(2)?,
                    ))
                },
            )
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Every run record of one host (as many as its schedules' history limits keep).
    pub fn host_runs(&self, host: &HostKey) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE namespace = ?1 AND host = ?2
                 ORDER BY created_at, name"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![host.namespace, host.name], run_from_row)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The run requests of one host that have not finished, oldest first: what dispatch reads
    /// on every connect and push, through an index of open requests alone.
    pub fn open_requests(&self, host: &HostKey) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs INDEXED BY runs_open_requests
                 WHERE namespace = ?1 AND host = ?2 AND requested = 1
                   AND phase IN ('Pending', 'Dispatched', 'Running')
                 ORDER BY created_at, name"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![host.namespace, host.name], run_from_row)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The hosts with run requests that have not finished: those a new revision may have
    /// something to dispatch to, read from the index of open requests alone.
    pub fn hosts_with_open_requests(
        &self,
    ) -> Result<std::collections::HashSet<HostKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT namespace, host FROM runs INDEXED BY runs_open_requests
                 WHERE requested = 1 AND phase IN ('Pending', 'Dispatched', 'Running')",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(HostKey::new(
                    &r.get::<_, String>(0)?,
                    &r.get::<_, String>(1)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Inserts or replaces a record; a finished one also goes into the history.
    pub fn save_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            &format!(
                "INSERT OR REPLACE INTO runs ({RUN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17, ?18, ?19, ?20, ?21, ?22)"
            ),
            params![
                run.kind.as_str(),
                run.namespace,
                run.name,
                run.host,
                run.job,
                run.schedule,
                operation_name(run.operation),
                run.repo,
                phase_text(run.phase),
                run.requested as i64,
                run.created_at,
                run.scheduled_at,
                run.started_at,
                run.finished_at,
                run.exit_code,
                run.snapshot_id,
                run.summary
                    .as_ref()
                    .and_then(|s| serde_json::to_string(s).ok()),
                run.progress
                    .as_ref()
                    .and_then(|p| serde_json::to_string(p).ok()),
                run.reason,
                run.message,
                serde_json::to_string(&run.log_tail).ok(),
                run.drill
                    .as_ref()
                    .and_then(|d| serde_json::to_string(d).ok()),
            ],
        )
        .map_err(err)?;
        if let (true, Some(finished_at)) = (is_final(run.phase), run.finished_at) {
            tx.execute(
                "INSERT OR IGNORE INTO run_history
                     (namespace, host, name, schedule, operation, phase, started_at, finished_at,
                      data_added)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run.namespace,
                    run.host,
                    run.name,
                    run.schedule,
                    operation_name(run.operation),
                    phase_text(run.phase),
                    run.started_at,
                    finished_at,
                    run.summary.as_ref().map(|s| s.data_added as i64),
                ],
            )
            .map_err(err)?;
        }
        let origin_noted = Store::note_snapshot_origin(&tx, run).map_err(err)?;
        tx.commit().map_err(err)?;
        self.saved.push(run.clone());
        if let Some(set) = origin_noted {
            self.snapshot_changes.sets.insert(set);
        }
        Ok(())
    }

    /// Deletes records and their logs (history limits); the chart history stays.
    pub fn delete_runs(&mut self, runs: &[(Kind, String, String)]) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for (kind, namespace, name) in runs {
            for table in ["runs", "run_logs"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE kind = ?1 AND namespace = ?2 AND name = ?3"
                    ),
                    params![kind.as_str(), namespace, name],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Appends log lines of one report (`seq`), once: a resent report adds nothing. Keeps the
    /// newest [`LOG_LINES_KEPT`] lines.
    pub fn append_log(
        &mut self,
        run: &RunRecord,
        seq: u64,
        lines: &[String],
    ) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for (idx, line) in lines.iter().enumerate() {
            tx.execute(
                "INSERT OR IGNORE INTO run_logs (kind, namespace, name, seq, idx, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run.kind.as_str(),
                    run.namespace,
                    run.name,
                    seq as i64,
                    idx as i64,
                    line
                ],
            )
            .map_err(err)?;
        }
        tx.execute(
            "DELETE FROM run_logs WHERE kind = ?1 AND namespace = ?2 AND name = ?3 AND rowid NOT IN
                 (SELECT rowid FROM run_logs WHERE kind = ?1 AND namespace = ?2 AND name = ?3
                  ORDER BY seq DESC, idx DESC LIMIT ?4)",
            params![run.kind.as_str(), run.namespace, run.name, LOG_LINES_KEPT],
        )
        .map_err(err)?;
        let mut tail: Vec<String> = {
            let mut stmt = tx
                .prepare(
                    "SELECT line FROM run_logs WHERE kind = ?1 AND namespace = ?2 AND name = ?3
                     ORDER BY seq DESC, idx DESC LIMIT ?4",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map(
                    params![run.kind.as_str(), run.namespace, run.name, LOG_TAIL_LINES],
                    |r| r.get(0),
                )
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        tail.reverse();
        tx.execute(
            "UPDATE runs SET log_tail = ?4 WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![
                run.kind.as_str(),
                run.namespace,
                run.name,
                serde_json::to_string(&tail).ok()
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        // Its status carries the tail: the record changed.
        if let Some(now) = self.run_by_name(run.kind, &run.namespace, &run.name)? {
            self.saved.push(now);
        }
        Ok(())
    }

    /// A run's stored log, oldest line first.
    pub fn log(&self, kind: Kind, namespace: &str, name: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT line FROM run_logs WHERE kind = ?1 AND namespace = ?2 AND name = ?3
                 ORDER BY seq, idx",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![kind.as_str(), namespace, name], |r| r.get(0))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Finished runs of a host since `since`, oldest first.
    pub fn history(
        &self,
        host: &HostKey,
        since: DateTime<Utc>,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT host, name, schedule, phase, started_at, finished_at FROM run_history
                 WHERE namespace = ?1 AND host = ?2 AND finished_at >= ?3 ORDER BY finished_at",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![host.namespace, host.name, since], |r| {
                Ok(HistoryPoint {
                    host: r.get(0)?,
                    name: r.get(1)?,
                    schedule: r.get(2)?,
                    phase: parse_phase(&r.get::<_, String>(3)?),
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Records a repo's size from a `repo.stats` report.
    pub fn record_repo_size(
        &self,
        namespace: &str,
        repo: &str,
        point: &SizePoint,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO repo_sizes (namespace, repo, at, total_size, uncompressed_size, snapshots)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    namespace,
                    repo,
                    point.at,
                    point.total_size as i64,
                    point.uncompressed_size.map(|v| v as i64),
                    point.snapshots as i64
                ],
            )
            .map(|_| ())
            .map_err(|e| self.sqlite(e))
    }

    /// A repo's sizes since `since`, oldest first.
    pub fn repo_sizes(
        &self,
        namespace: &str,
        repo: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<SizePoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, total_size, uncompressed_size, snapshots FROM repo_sizes
                 WHERE namespace = ?1 AND repo = ?2 AND at >= ?3 ORDER BY at",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![namespace, repo, since], |r| {
                Ok(SizePoint {
                    at: r.get(0)?,
                    total_size: r.get::<_, i64>(1)?.max(0) as u64,
                    uncompressed_size: r.get::<_, Option<i64>>(2)?.map(|v| v.max(0) as u64),
                    snapshots: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Records how many snapshots one host has in a repo (`snapshots.report`), and keeps the
    /// repo's total (once [`Store::snapshot_counts`] has read them) by the difference.
    pub fn record_snapshots(
        &mut self,
        namespace: &str,
        repo: &str,
        host: &str,
        count: u64,
        latest: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let before: Option<i64> = match self.snapshot_totals {
            Some(_) => self
                .conn
                .prepare_cached(
                    "SELECT count FROM repo_snapshots
                     WHERE namespace = ?1 AND repo = ?2 AND host = ?3",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(params![namespace, repo, host], |r| r.get(0))
                        .optional()
                })
                .map_err(|e| self.sqlite(e))?,
            None => None,
        };
        self.conn
            .execute(
                "INSERT OR REPLACE INTO repo_snapshots (namespace, repo, host, count, latest)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![namespace, repo, host, count as i64, latest],
            )
            .map_err(|e| self.sqlite(e))?;
        if let Some(totals) = &mut self.snapshot_totals {
            let total = totals
                .entry((namespace.to_string(), repo.to_string()))
                .or_default();
            *total = total.saturating_sub(before.unwrap_or(0).max(0) as u64) + count;
        }
        Ok(())
    }

    /// The hosts with snapshots in one repo: each host's count and newest snapshot time, as
    /// their agents last reported them, by host name.
    pub fn repo_hosts(&self, namespace: &str, repo: &str) -> Result<Vec<RepoHost>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT host, count, latest FROM repo_snapshots
                 WHERE namespace = ?1 AND repo = ?2 ORDER BY host",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![namespace, repo], |r| {
                Ok(RepoHost {
                    host: r.get(0)?,
                    snapshots: r.get::<_, i64>(1)?.max(0) as u64,
                    latest: r.get(2)?,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Snapshot counts per `(namespace, repo)`, summed over hosts: grouped from the table
    /// once, then kept by [`Store::record_snapshots`] (the status writer asks on every pass).
    pub fn snapshot_counts(&mut self) -> Result<SnapshotTotals, StoreError> {
        if let Some(totals) = &self.snapshot_totals {
            return Ok(totals.clone());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT namespace, repo, sum(count) FROM repo_snapshots GROUP BY namespace, repo",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    r.get::<_, i64>(2)?.max(0) as u64,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let totals: SnapshotTotals = rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))?;
        drop(stmt);
        self.snapshot_totals = Some(totals.clone());
        Ok(totals)
    }

    /// The newest size of each of `repos` (namespace, name) that has one: one look-up in the
    /// index per repo, however many sizes the history holds (grouping every row took 153 ms per
    /// pass of the status writer at 530,000 rows).
    pub fn latest_repo_sizes<'a>(
        &self,
        repos: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<std::collections::BTreeMap<(String, String), SizePoint>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, total_size, uncompressed_size, snapshots FROM repo_sizes
                 INDEXED BY repo_sizes_by_repo
                 WHERE namespace = ?1 AND repo = ?2 ORDER BY at DESC LIMIT 1",
            )
            .map_err(|e| self.sqlite(e))?;
        let mut out = std::collections::BTreeMap::new();
        for (namespace, repo) in repos {
            let size = stmt
                .query_row(params![namespace, repo], |r| {
                    Ok(SizePoint {
                        at: r.get(0)?,
                        total_size: r.get::<_, i64>(1)?.max(0) as u64,
                        uncompressed_size: r.get::<_, Option<i64>>(2)?.map(|v| v.max(0) as u64),
                        snapshots: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })
                .optional()
                .map_err(|e| self.sqlite(e))?;
            if let Some(size) = size {
                out.insert((namespace.to_string(), repo.to_string()), size);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_count_their_finished_scheduled_records_by_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let run = |name: &str, host: &str, phase: Phase, requested: bool| RunRecord {
            schedule: Some("nightly".into()),
            phase,
            requested,
            finished_at: is_final(phase).then_some(now),
            ..RunRecord::pending(
                Kind::Backup,
                &HostKey::new("fleet", host),
                name.into(),
                name.into(),
                protocol::JobOperation::Backup,
                now,
            )
        };
        for record in [
            run("a", "web-1", Phase::Succeeded, false),
            run("b", "web-1", Phase::Succeeded, false),
            run("c", "web-1", Phase::Failed, false),
            run("d", "web-1", Phase::Running, false),
            run("e", "web-1", Phase::Succeeded, true),
            run("f", "db-1", Phase::PartiallyFailed, false),
        ] {
            store.save_run(&record).unwrap();
        }
        let mut sizes: Vec<(String, u32, u32)> = store
            .run_groups()
            .unwrap()
            .into_iter()
            .map(|g| (g.group.host, g.succeeded, g.other))
            .collect();
        sizes.sort();
        assert_eq!(
            sizes,
            [("db-1".to_string(), 0, 1), ("web-1".to_string(), 2, 1)],
            "runs going on and requests are not counted"
        );
    }

    #[test]
    fn a_start_settles_records_without_an_object_or_whose_object_shows_a_run_going_on() {
        use crate::store::ObjectWrite;
        use crate::store::model::first_backup_write;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let record = |name: &str, phase: Phase| RunRecord {
            schedule: Some("nightly".into()),
            phase,
            started_at: Some(now),
            finished_at: is_final(phase).then_some(now),
            ..RunRecord::pending(
                Kind::Backup,
                &HostKey::new("fleet", "web-1"),
                name.into(),
                name.into(),
                protocol::JobOperation::Backup,
                now,
            )
        };
        // (record's phase, the phase its stored object shows; None: no object)
        let cases = [
            ("settled", Phase::Succeeded, Some("Succeeded")),
            ("no-object", Phase::Succeeded, None),
            ("object-behind", Phase::Failed, Some("Running")),
            ("going-on", Phase::Running, Some("Running")),
        ];
        let mut writes: Vec<ObjectWrite> = Vec::new();
        for (i, (name, phase, shown)) in cases.iter().enumerate() {
            store.save_run(&record(name, *phase)).unwrap();
            let Some(shown) = shown else { continue };
            let served = serde_json::json!({
                "metadata": {"name": name, "namespace": "fleet"},
                "status": {"phase": shown},
            });
            writes.push(first_backup_write(name, i as i64 + 1, served));
        }
        store.write_objects(&writes, cases.len() as i64).unwrap();
        let mut names: Vec<String> = store
            .runs_to_settle()
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["going-on", "no-object", "object-behind"]);
    }

    #[test]
    fn snapshot_counts_read_once_follow_every_report_as_the_table_sums_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .record_snapshots("fleet", "nas", "web-1", 5, None)
            .unwrap();
        store
            .record_snapshots("fleet", "nas", "web-2", 3, None)
            .unwrap();
        let key = |repo: &str| ("fleet".to_string(), repo.to_string());
        assert_eq!(store.snapshot_counts().unwrap().get(&key("nas")), Some(&8));
        // After the first read: a host's count replaced, a new host, a new repo.
        store
            .record_snapshots("fleet", "nas", "web-1", 2, None)
            .unwrap();
        store
            .record_snapshots("fleet", "nas", "web-3", 4, None)
            .unwrap();
        store
            .record_snapshots("fleet", "s3", "web-1", 7, None)
            .unwrap();
        let kept = store.snapshot_counts().unwrap();
        assert_eq!(kept.get(&key("nas")), Some(&9));
        assert_eq!(kept.get(&key("s3")), Some(&7));
        let summed = Store::open(dir.path()).unwrap().snapshot_counts().unwrap();
        assert_eq!(kept, summed, "the kept totals are what the table sums");
    }

    #[test]
    fn the_latest_size_of_each_repo_asked_for_is_its_newest_point() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let point = |minutes_ago: i64, size: u64| SizePoint {
            at: now - chrono::Duration::minutes(minutes_ago),
            total_size: size,
            uncompressed_size: None,
            snapshots: size,
        };
        // Out of order: the newest is not the last written.
        for (repo, minutes_ago, size) in [
            ("nas", 5, 50),
            ("nas", 1, 10),
            ("nas", 9, 90),
            ("s3", 3, 30),
        ] {
            store
                .record_repo_size("default", repo, &point(minutes_ago, size))
                .unwrap();
        }
        let latest = store
            .latest_repo_sizes([("default", "nas"), ("default", "s3"), ("default", "gone")])
            .unwrap();
        let sizes: Vec<(&str, u64)> = latest
            .iter()
            .map(|((_, repo), p)| (repo.as_str(), p.total_size))
            .collect();
        assert_eq!(sizes, [("nas", 10), ("s3", 30)]);
        assert!(
            store
                .latest_repo_sizes([("other", "nas")])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn open_requests_are_a_hosts_unfinished_requests_through_their_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let web1 = HostKey::new("default", "web-1");
        let now = Utc::now();
        let record = |name: &str, host: &HostKey, requested: bool, phase: Phase| RunRecord {
            requested,
            phase,
            ..RunRecord::pending(
                Kind::Backup,
                host,
                name.into(),
                format!("job-{name}"),
                protocol::JobOperation::Backup,
                now,
            )
        };
        for run in [
            record("pending", &web1, true, Phase::Pending),
            record("dispatched", &web1, true, Phase::Dispatched),
            record("done", &web1, true, Phase::Succeeded),
            record("scheduled", &web1, false, Phase::Running),
            record(
                "elsewhere",
                &HostKey::new("default", "web-2"),
                true,
                Phase::Pending,
            ),
            record(
                "other-ns",
                &HostKey::new("ops", "web-1"),
                true,
                Phase::Pending,
            ),
        ] {
            store.save_run(&run).unwrap();
        }
        let names: Vec<String> = store
            .open_requests(&web1)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["dispatched", "pending"]);
        let mut requesting: Vec<String> = store
            .hosts_with_open_requests()
            .unwrap()
            .into_iter()
            .map(|h| h.to_string())
            .collect();
        requesting.sort();
        assert_eq!(requesting, ["ops/web-1", "web-1", "web-2"]);
        // A host whose only request finished has nothing to dispatch.
        let mut done = record(
            "other-done",
            &HostKey::new("default", "web-3"),
            true,
            Phase::Pending,
        );
        store.save_run(&done).unwrap();
        done.phase = Phase::Succeeded;
        store.save_run(&done).unwrap();
        assert!(
            !store
                .hosts_with_open_requests()
                .unwrap()
                .contains(&HostKey::new("default", "web-3"))
        );
    }
}
