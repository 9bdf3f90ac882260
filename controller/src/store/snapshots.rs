//! Each host's snapshots per repo as its agent last reported them (the newest
//! [`crate::snapshots::MAX_PER_HOST_REPO`]), with what is known of the Backup that made each; and which of them
//! changed since the status writer last asked, so that it settles only their Snapshot objects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rusqlite::{Row, params};

use super::{ObjectId, Store, StoreError};
use crate::resources::Kind;
use crate::runs::RunRecord;
use crate::snapshots::{Known, Origin, bounded, object_name};

/// One host's snapshots in one repo: (namespace, host, repo).
pub type SnapshotSet = (String, String, String);

/// What changed since the status writer last asked.
#[derive(Debug, Default)]
pub struct SnapshotChanges {
    /// Sets whose snapshots (or their origins) changed.
    pub sets: BTreeSet<SnapshotSet>,
    /// Snapshot objects whose snapshot is no longer reported.
    pub forgotten: Vec<ObjectId>,
}

const COLUMNS: &str = "id, time, hostname, paths, tags, backup, schedule, size";

/// A [`Known`] from the columns of [`COLUMNS`], starting at column `at`.
fn known_from_row(r: &Row, at: usize) -> rusqlite::Result<Known> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        Ok(serde_json::from_str(&r.get::<_, String>(at + i)?).unwrap_or_default())
    };
    Ok(Known {
        snapshot: protocol::Snapshot {
            id: r.get(at)?,
            time: r.get(at + 1)?,
            hostname: r.get(at + 2)?,
            paths: list(3)?,
            tags: list(4)?,
        },
        origin: Origin {
            backup: r.get(at + 5)?,
            schedule: r.get(at + 6)?,
            size: r.get::<_, Option<i64>>(at + 7)?.map(|s| s.max(0) as u64),
        },
    })
}

impl Store {
    /// Replaces one host's snapshots in a repo with those of a report (its newest
    /// [`crate::snapshots::MAX_PER_HOST_REPO`]), each with the Backup that made it when a run record says so.
    pub fn replace_snapshots(
        &mut self,
        namespace: &str,
        host: &str,
        repo: &str,
        snapshots: Vec<protocol::Snapshot>,
    ) -> Result<(), StoreError> {
        let kept = bounded(snapshots);
        let mut origins = self.backup_origins(namespace, host)?;
        let before: BTreeMap<String, Known> = self
            .snapshots(namespace, host, repo)?
            .into_iter()
            .map(|k| (k.snapshot.id.clone(), k))
            .collect();
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM snapshots WHERE namespace = ?1 AND host = ?2 AND repo = ?3",
            params![namespace, host, repo],
        )
        .map_err(err)?;
        for s in &kept {
            // The record may be pruned since: what was known stays known.
            let origin = origins
                .remove(&s.id)
                .or_else(|| before.get(&s.id).map(|k| k.origin.clone()))
                .unwrap_or_default();
            tx.execute(
                "INSERT OR REPLACE INTO snapshots (namespace, host, repo, id, name, time, hostname,
                     paths, tags, backup, schedule, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    namespace,
                    host,
                    repo,
                    s.id,
                    object_name(host, repo, &s.id),
                    s.time,
                    s.hostname,
                    serde_json::to_string(&s.paths).unwrap_or_default(),
                    serde_json::to_string(&s.tags).unwrap_or_default(),
                    origin.backup,
                    origin.schedule,
                    origin.size.map(|n| n as i64),
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        let now: BTreeSet<&str> = kept.iter().map(|s| s.id.as_str()).collect();
        for id in before.keys().filter(|id| !now.contains(id.as_str())) {
            let name = object_name(host, repo, id);
            self.snapshot_changes
                .forgotten
                .push((Kind::Snapshot, namespace.to_string(), name));
        }
        self.snapshot_changes
            .sets
            .insert((namespace.into(), host.into(), repo.into()));
        Ok(())
    }

    /// The snapshot a finished backup made gets its Backup, schedule and size, when the
    /// snapshot was reported before the run's record came.
    pub(super) fn note_snapshot_origin(
        tx: &rusqlite::Transaction,
        run: &RunRecord,
    ) -> rusqlite::Result<Option<SnapshotSet>> {
        // A drill names the snapshot it restored, which it did not make.
        let (Some(id), Some(repo), protocol::JobOperation::Backup) =
            (&run.snapshot_id, &run.repo, run.operation)
        else {
            return Ok(None);
        };
        let changed = tx.execute(
            "UPDATE snapshots SET backup = ?5, schedule = ?6, size = coalesce(?7, size)
             WHERE namespace = ?1 AND host = ?2 AND repo = ?3 AND id = ?4
               AND backup IS NOT ?5",
            params![
                run.namespace,
                run.host,
                repo,
                id,
                run.name,
                run.schedule,
                run.summary.as_ref().map(|s| s.total_bytes_processed as i64),
            ],
        )?;
        Ok((changed > 0).then(|| (run.namespace.clone(), run.host.clone(), repo.clone())))
    }

    /// What the Backup records of one host say made each snapshot, by snapshot id.
    fn backup_origins(
        &self,
        namespace: &str,
        host: &str,
    ) -> Result<HashMap<String, Origin>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT snapshot_id, name, schedule, summary FROM runs
                 WHERE namespace = ?1 AND host = ?2 AND kind = 'Backup'
                   AND operation = 'backup' AND snapshot_id IS NOT NULL",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![namespace, host], |r| {
                let summary = r
                    .get::<_, Option<String>>(3)?
                    .and_then(|s| serde_json::from_str::<protocol::BackupSummary>(&s).ok());
                Ok((
                    r.get::<_, String>(0)?,
                    Origin {
                        backup: Some(r.get(1)?),
                        schedule: r.get(2)?,
                        size: summary.map(|s| s.total_bytes_processed),
                    },
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// One host's snapshots in one repo, newest first.
    pub fn snapshots(
        &self,
        namespace: &str,
        host: &str,
        repo: &str,
    ) -> Result<Vec<Known>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM snapshots
                 WHERE namespace = ?1 AND host = ?2 AND repo = ?3"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![namespace, host, repo], |r| known_from_row(r, 0))
            .map_err(|e| self.sqlite(e))?;
        let known: Vec<Known> = rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))?;
        Ok(newest_first(known))
    }

    /// One host's snapshots in every repo, by repo, newest first.
    pub fn host_snapshots(
        &self,
        namespace: &str,
        host: &str,
    ) -> Result<BTreeMap<String, Vec<Known>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT repo, {COLUMNS} FROM snapshots WHERE namespace = ?1 AND host = ?2"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![namespace, host], |r| {
                Ok((r.get::<_, String>(0)?, known_from_row(r, 1)?))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut out: BTreeMap<String, Vec<Known>> = BTreeMap::new();
        for row in rows {
            let (repo, known) = row.map_err(|e| self.sqlite(e))?;
            out.entry(repo).or_default().push(known);
        }
        Ok(out
            .into_iter()
            .map(|(repo, known)| (repo, newest_first(known)))
            .collect())
    }

    /// When the last successful run of a schedule on a host finished, as far as its records
    /// go back.
    pub fn last_success(
        &self,
        namespace: &str,
        host: &str,
        schedule: &str,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        self.conn
            .query_row(
                "SELECT max(finished_at) FROM runs
                 WHERE namespace = ?1 AND host = ?2 AND schedule = ?3 AND phase = 'Succeeded'",
                params![namespace, host, schedule],
                |r| r.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// Every (namespace, host, repo) the store holds snapshots of.
    pub fn snapshot_sets(&self) -> Result<Vec<SnapshotSet>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT namespace, host, repo FROM snapshots")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The snapshot changes since the last call.
    pub fn take_snapshot_changes(&mut self) -> SnapshotChanges {
        std::mem::take(&mut self.snapshot_changes)
    }

    /// Snapshot objects whose snapshot the store no longer holds (forgotten while the
    /// controller was not running to delete them).
    pub fn orphaned_snapshot_objects(&self) -> Result<Vec<ObjectId>, StoreError> {
        self.ids(
            "SELECT o.kind, o.namespace, o.name FROM objects o
             WHERE o.kind = 'Snapshot' AND NOT EXISTS (
                 SELECT 1 FROM snapshots s WHERE s.namespace = o.namespace AND s.name = o.name)",
        )
    }
}

fn newest_first(known: Vec<Known>) -> Vec<Known> {
    let mut listed: Vec<protocol::Snapshot> = Vec::with_capacity(known.len());
    let mut origins: HashMap<String, Origin> = HashMap::with_capacity(known.len());
    for k in known {
        origins.insert(k.snapshot.id.clone(), k.origin);
        listed.push(k.snapshot);
    }
    bounded(listed)
        .into_iter()
        .map(|snapshot| Known {
            origin: origins.remove(&snapshot.id).unwrap_or_default(),
            snapshot,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::HostKey;
    use crate::runs::RunRecord;

    fn snap(id: &str, hour: u32) -> protocol::Snapshot {
        protocol::Snapshot {
            id: id.to_string(),
            time: format!("2026-12-01T{hour:02}:00:00Z"),
            hostname: "web-1".into(),
            paths: vec!["/srv".into()],
            tags: vec![],
        }
    }

    #[test]
    fn a_report_replaces_the_list_keeps_origins_and_names_what_was_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        // The backup that made `b…` finished before the report came.
        let mut run = RunRecord::pending(
            Kind::Backup,
            &HostKey::new("fleet", "web-1"),
            "nightly-web-1-1".into(),
            "job-1".into(),
            protocol::JobOperation::Backup,
            chrono::Utc::now(),
        );
        run.repo = Some("nas".into());
        run.schedule = Some("nightly".into());
        run.snapshot_id = Some("bbbbbbbb1111".into());
        store.save_run(&run).unwrap();
        store
            .replace_snapshots(
                "fleet",
                "web-1",
                "nas",
                vec![snap("aaaaaaaa1111", 1), snap("bbbbbbbb1111", 2)],
            )
            .unwrap();
        let known = store.snapshots("fleet", "web-1", "nas").unwrap();
        let ids: Vec<&str> = known.iter().map(|k| k.snapshot.id.as_str()).collect();
        assert_eq!(ids, ["bbbbbbbb1111", "aaaaaaaa1111"], "newest first");
        assert_eq!(known[0].origin.backup.as_deref(), Some("nightly-web-1-1"));
        assert_eq!(known[0].origin.schedule.as_deref(), Some("nightly"));
        assert_eq!(known[1].origin, Origin::default());
        let changes = store.take_snapshot_changes();
        assert!(
            changes
                .sets
                .contains(&("fleet".into(), "web-1".into(), "nas".into()))
        );
        assert!(changes.forgotten.is_empty());

        // A forget removed `a…`; the record of `b…` is gone, what it said stays.
        store.conn.execute("DELETE FROM runs", []).unwrap();
        store
            .replace_snapshots(
                "fleet",
                "web-1",
                "nas",
                vec![snap("bbbbbbbb1111", 2), snap("cccccccc1111", 3)],
            )
            .unwrap();
        let known = store.snapshots("fleet", "web-1", "nas").unwrap();
        assert_eq!(known.len(), 2);
        assert_eq!(known[1].origin.backup.as_deref(), Some("nightly-web-1-1"));
        let changes = store.take_snapshot_changes();
        assert_eq!(
            changes.forgotten,
            vec![(
                Kind::Snapshot,
                "fleet".to_string(),
                "web-1-nas-aaaaaaaa".to_string()
            )]
        );
        assert_eq!(
            store.host_snapshots("fleet", "web-1").unwrap()["nas"].len(),
            2
        );
        assert_eq!(store.snapshot_sets().unwrap().len(), 1);
    }

    #[test]
    fn a_backup_recorded_after_the_report_fills_in_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .replace_snapshots("fleet", "web-1", "nas", vec![snap("aaaaaaaa1111", 1)])
            .unwrap();
        store.take_snapshot_changes();
        let mut run = RunRecord::pending(
            Kind::Backup,
            &HostKey::new("fleet", "web-1"),
            "nightly-web-1-1".into(),
            "job-1".into(),
            protocol::JobOperation::Backup,
            chrono::Utc::now(),
        );
        run.repo = Some("nas".into());
        run.snapshot_id = Some("aaaaaaaa1111".into());
        store.save_run(&run).unwrap();
        let known = store.snapshots("fleet", "web-1", "nas").unwrap();
        assert_eq!(known[0].origin.backup.as_deref(), Some("nightly-web-1-1"));
        assert_eq!(store.take_snapshot_changes().sets.len(), 1);
    }

    #[test]
    fn a_drill_of_a_snapshot_does_not_claim_to_have_made_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut drill = RunRecord::pending(
            Kind::Backup,
            &HostKey::new("fleet", "web-1"),
            "weekly-drill-web-1-1".into(),
            "job-1".into(),
            protocol::JobOperation::Drill,
            chrono::Utc::now(),
        );
        drill.repo = Some("nas".into());
        drill.snapshot_id = Some("aaaaaaaa1111".into());
        store.save_run(&drill).unwrap();
        store
            .replace_snapshots("fleet", "web-1", "nas", vec![snap("aaaaaaaa1111", 1)])
            .unwrap();
        // Recorded after the report too.
        drill.name = "weekly-drill-web-1-2".into();
        drill.job = "job-2".into();
        store.save_run(&drill).unwrap();
        let known = store.snapshots("fleet", "web-1", "nas").unwrap();
        assert_eq!(known[0].origin, Origin::default());
    }

    #[test]
    fn a_report_keeps_the_newest_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let many: Vec<protocol::Snapshot> = (0..1005)
            .map(|i| protocol::Snapshot {
                time: (chrono::DateTime::UNIX_EPOCH + chrono::Duration::hours(i)).to_rfc3339(),
                ..snap(&format!("{i:012}"), 0)
            })
            .collect();
        store
            .replace_snapshots("fleet", "web-1", "nas", many)
            .unwrap();
        let known = store.snapshots("fleet", "web-1", "nas").unwrap();
        assert_eq!(known.len(), crate::snapshots::MAX_PER_HOST_REPO);
        assert_eq!(known[0].snapshot.id, format!("{:012}", 1004));
    }
}
