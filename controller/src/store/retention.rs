//! How long the history tables keep what they hold. Run records and their logs are bounded by
//! the schedules' history limits (the read model deletes them); agents, credentials, plans and
//! objects by the fleet. What is left grows with time, so it is pruned by age or count, a
//! bounded batch at a time, so that a first prune of a long-grown table never holds the
//! database for long.

use chrono::{DateTime, Duration, Utc};
use rusqlite::params;

use super::{Store, StoreError};

/// Finished runs for the timeline, and repo sizes for the size chart (the page shows 30 days);
/// enrollment tokens this long after they expired.
pub const HISTORY_DAYS: i64 = 90;
/// Revisions read from the config directory, newest first; the newest applied one is always
/// kept, since it holds the resources in force.
pub const REVISIONS_KEPT: i64 = 1_000;
/// Rows deleted from one table in one go.
pub const BATCH: i64 = 5_000;

/// What one pass deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub run_history: usize,
    pub repo_sizes: usize,
    pub revisions: usize,
    pub tokens: usize,
}

impl Pruned {
    /// Whether a table had more to delete than one batch.
    pub fn more(&self) -> bool {
        [
            self.run_history,
            self.repo_sizes,
            self.revisions,
            self.tokens,
        ]
        .iter()
        .any(|n| *n as i64 >= BATCH)
    }
}

impl Store {
    /// Deletes up to [`BATCH`] rows of each table beyond its retention.
    pub fn prune_history(&self, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let cutoff = now - Duration::days(HISTORY_DAYS);
        let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
            self.conn.execute(sql, p).map_err(|e| self.sqlite(e))
        };
        Ok(Pruned {
            run_history: run(
                "DELETE FROM run_history WHERE rowid IN
                     (SELECT rowid FROM run_history WHERE finished_at < ?1 LIMIT ?2)",
                params![cutoff, BATCH],
            )?,
            repo_sizes: run(
                "DELETE FROM repo_sizes WHERE rowid IN
                     (SELECT rowid FROM repo_sizes WHERE at < ?1 LIMIT ?2)",
                params![cutoff, BATCH],
            )?,
            revisions: run(
                "DELETE FROM revisions WHERE id IN
                     (SELECT id FROM revisions
                      WHERE id <= (SELECT max(id) FROM revisions) - ?1
                        AND id IS NOT (SELECT max(id) FROM revisions WHERE applied = 1)
                      LIMIT ?2)",
                params![REVISIONS_KEPT, BATCH],
            )?,
            tokens: run(
                "DELETE FROM tokens WHERE rowid IN
                     (SELECT rowid FROM tokens WHERE expires_at < ?1 LIMIT ?2)",
                params![cutoff, BATCH],
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SizePoint;

    fn count(store: &Store, table: &str) -> i64 {
        store
            .conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn history_beyond_its_retention_goes_in_batches_and_the_revision_in_force_stays() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let now = Utc::now();
        let old = now - Duration::days(HISTORY_DAYS + 1);
        let recent = now - Duration::days(HISTORY_DAYS - 1);
        for (i, at) in [(0, old), (1, recent)] {
            store
                .conn
                .execute(
                    "INSERT INTO run_history (namespace, host, name, operation, phase, finished_at)
                     VALUES ('default', 'web-1', ?1, 'backup', 'Succeeded', ?2)",
                    params![format!("run-{i}"), at],
                )
                .unwrap();
            let point = SizePoint {
                at,
                total_size: 1,
                uncompressed_size: None,
                snapshots: 1,
            };
            store.record_repo_size("default", "nas", &point).unwrap();
        }
        // The applied revision first, then more rejected ones than are kept.
        let revision = crate::revision::Revision::default();
        let applied = store
            .record_revision(None, false, "", &[], Some(&revision), old)
            .unwrap();
        store
            .create_token(&crate::compile::HostKey::new("default", "gone"), old)
            .unwrap();
        store
            .create_token(&crate::compile::HostKey::new("default", "web-1"), recent)
            .unwrap();
        for _ in 0..REVISIONS_KEPT + 2 {
            store
                .record_revision(None, false, "", &["broken".into()], None, now)
                .unwrap();
        }

        let pruned = store.prune_history(now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                run_history: 1,
                repo_sizes: 1,
                revisions: 2,
                tokens: 1,
            }
        );
        assert!(!pruned.more());
        assert_eq!(count(&store, "run_history"), 1);
        assert_eq!(count(&store, "repo_sizes"), 1);
        assert_eq!(count(&store, "tokens"), 1);
        assert_eq!(count(&store, "revisions"), REVISIONS_KEPT + 1);
        assert!(store.applied_revision().unwrap().is_some());
        let kept: i64 = store
            .conn
            .query_row("SELECT min(id) FROM revisions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, applied, "the revision in force is kept");
        assert_eq!(store.prune_history(now).unwrap(), Pruned::default());
    }
}
