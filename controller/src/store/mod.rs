//! The files-mode store: SQLite under the data directory.
//!
//! It holds every host's schedule version, digest and plan (removed hosts included, so that
//! versions never go backwards), enrollment tokens and agent credentials (hashes only), what each
//! agent applied, run records with bounded logs, history for charts, the revisions read, the
//! read model (every resource's generation and last written status), and what notifiers fired
//! and have still to deliver.

mod agents;
mod auth;
mod model;
mod notifications;
pub mod retention;
mod runs;
mod scrub;
mod snapshots;

pub use agents::AgentRecord;
pub use auth::{AuthError, Enrolled, NoRandomness, hash as secret_hash, random_secret};
pub use model::{
    ObjectId, ObjectMeta, ObjectWrite, RevisionEntry, RevisionRecord, Revisions, StoredObject,
};
pub use notifications::{Enqueue, NotifierId, Queued};
pub use runs::{GroupSize, HistoryPoint, RepoHost, RunGroup, SizePoint};
pub use snapshots::{SnapshotChanges, SnapshotSet};

/// A random identifier shaped like a Kubernetes uid.
pub fn new_uid() -> String {
    let hex = auth::random_secret().unwrap_or_default();
    let h = |a: usize, b: usize| hex.get(a..b).unwrap_or("0");
    format!(
        "{}-{}-{}-{}-{}",
        h(0, 8),
        h(8, 12),
        h(12, 16),
        h(16, 20),
        h(20, 32)
    )
}

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use protocol::HostPlan;
use rusqlite::{Connection, OpenFlags, params};

use crate::compile::{Fleet, HostKey};
use crate::versions::Versioned;

const FILE_NAME: &str = "holdfast.db";

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE host_plans (
        namespace TEXT NOT NULL,
        host TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,
        plan TEXT NOT NULL,
        removed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (namespace, host)
    )",
    include_str!("schema_2.sql"),
    // Labels and annotations: a change to them is a new resourceVersion, not a new generation.
    "ALTER TABLE objects ADD COLUMN meta_digest TEXT NOT NULL DEFAULT ''",
    // The resources of the newest applied revision (JSON), so that a restart in front of a
    // rejected directory serves the fleet in force rather than none.
    "ALTER TABLE revisions ADD COLUMN resources TEXT",
    // A host's open run requests, read on every connect and push, without a scan of all runs.
    "CREATE INDEX runs_open_requests ON runs (namespace, host)
        WHERE requested = 1 AND phase IN ('Pending', 'Dispatched', 'Running')",
    // Objects as served (JSON), so run records are read page by page rather than held in
    // memory; and the records of one schedule on one host, newest first, for its history limits.
    "ALTER TABLE objects ADD COLUMN object TEXT;
     CREATE INDEX runs_by_schedule ON runs (namespace, host, schedule, finished_at);
     CREATE INDEX runs_requested ON runs (kind, namespace, name) WHERE requested = 1;",
    // The objects a start settles again (none served yet, or one showing a run going on),
    // found without reading every stored object.
    "CREATE INDEX objects_to_settle ON objects (kind, namespace, name)
        WHERE object IS NULL OR json_extract(object, '$.status.phase') IN ('Pending', 'Dispatched', 'Running')",
    // Whether a revision was read from files edited since its commit.
    "ALTER TABLE revisions ADD COLUMN uncommitted INTEGER NOT NULL DEFAULT 0",
    // What each revision changed (JSON), for the revisions page; and a schedule's recent runs
    // on every host, newest first, for its page.
    "ALTER TABLE revisions ADD COLUMN changes TEXT;
     CREATE INDEX runs_by_schedule_created ON runs (namespace, schedule, created_at);",
    // Notifiers: the alerts each fired and has not resolved, its messages not delivered yet
    // (oldest first), and how its last delivery and failure went.
    "CREATE TABLE notifier_fired (
        namespace TEXT NOT NULL,
        notifier TEXT NOT NULL,
        key TEXT NOT NULL,
        fired TEXT NOT NULL,
        PRIMARY KEY (namespace, notifier, key)
     );
     CREATE TABLE notifier_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        notifier TEXT NOT NULL,
        state TEXT NOT NULL,
        alert TEXT NOT NULL,
        at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt TEXT NOT NULL
     );
     CREATE INDEX notifier_outbox_order ON notifier_outbox (namespace, notifier, id);
     CREATE TABLE notifier_deliveries (
        namespace TEXT NOT NULL,
        notifier TEXT NOT NULL,
        delivered_at TEXT,
        delivered TEXT,
        failed_at TEXT,
        error TEXT,
        attempts INTEGER,
        PRIMARY KEY (namespace, notifier)
     );",
    // Rotating checks: when each part of a repo's data was last read (store/scrub.rs).
    "CREATE TABLE scrub_parts (
        namespace TEXT NOT NULL,
        repo TEXT NOT NULL,
        parts INTEGER NOT NULL,
        part INTEGER NOT NULL,
        read_at TEXT NOT NULL,
        host TEXT NOT NULL,
        PRIMARY KEY (namespace, repo, part)
     );",
    // What a drill restored and verified (JSON).
    "ALTER TABLE runs ADD COLUMN drill TEXT",
    // Each host's snapshots per repo as last reported (bounded), and what made each; found by
    // object name when their objects are checked for orphans.
    "CREATE TABLE snapshots (
        namespace TEXT NOT NULL,
        host TEXT NOT NULL,
        repo TEXT NOT NULL,
        id TEXT NOT NULL,
        name TEXT NOT NULL,
        time TEXT NOT NULL,
        hostname TEXT NOT NULL,
        paths TEXT NOT NULL,
        tags TEXT NOT NULL,
        backup TEXT,
        schedule TEXT,
        size INTEGER,
        PRIMARY KEY (namespace, host, repo, id)
     );
     CREATE INDEX snapshots_by_name ON snapshots (namespace, name);",
    // Only run records are settled again at a start: writing a Host, a Schedule or a Snapshot
    // no longer reads its JSON to keep the index.
    "DROP INDEX objects_to_settle;
     CREATE INDEX objects_to_settle ON objects (kind, namespace, name)
        WHERE kind IN ('Backup', 'Restore')
          AND (object IS NULL OR json_extract(object, '$.status.phase') IN ('Pending', 'Dispatched', 'Running'))",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database {path}: {message}")]
    Other { path: String, message: String },
    #[error("database {path}: {source}")]
    NoRandomness { path: String, source: NoRandomness },
    #[error(
        "database {path} was written by a newer Holdfast (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: String,
        found: usize,
        known: usize,
    },
    #[error(
        "database {path} has an older schema ({found}; this Holdfast writes {known}); start the controller once to upgrade it"
    )]
    TooOld {
        path: String,
        found: usize,
        known: usize,
    },
}

/// What the store holds for one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPlan {
    pub versioned: Versioned,
    /// `None` when the stored plan cannot be read by this version of Holdfast.
    pub plan: Option<HostPlan>,
    /// The host is no longer in the desired state.
    pub removed: bool,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Run records saved since the status writer last asked ([`Store::take_saved_runs`]).
    saved: Vec<crate::runs::RunRecord>,
    /// Snapshots changed since the status writer last asked ([`Store::take_snapshot_changes`]).
    snapshot_changes: SnapshotChanges,
    /// Each repo's snapshots summed over hosts, once read ([`Store::snapshot_counts`]).
    snapshot_totals: Option<SnapshotTotals>,
}

/// Snapshot counts per `(namespace, repo)`.
pub type SnapshotTotals = std::collections::BTreeMap<(String, String), u64>;

impl Store {
    /// Opens the store in `data_dir`, creating both when missing.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let mut store = Store {
            conn,
            path,
            saved: Vec::new(),
            snapshot_changes: SnapshotChanges::default(),
            snapshot_totals: None,
        };
        // WAL keeps readers (`holdfast plan`, `token create`) from blocking the controller.
        store
            .conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .map_err(|e| store.sqlite(e))?;
        // Other connections write too (the credentials', `token create`'s): a transaction takes
        // the write lock when it begins, and waits its turn (busy_timeout), instead of reading
        // first and failing at once ("database is locked") when another wrote in between.
        store
            .conn
            .set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing store without writing to it; `None` when `data_dir` holds none.
    pub fn open_read_only(data_dir: &Path) -> Result<Option<Store>, StoreError> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Sqlite {
                path: path.display().to_string(),
                source,
            },
        )?;
        let store = Store {
            conn,
            path,
            saved: Vec::new(),
            snapshot_changes: SnapshotChanges::default(),
            snapshot_totals: None,
        };
        let (found, known) = (store.schema_version()?, MIGRATIONS.len());
        let path = store.path.display().to_string();
        match found.cmp(&known) {
            std::cmp::Ordering::Less => Err(StoreError::TooOld { path, found, known }),
            std::cmp::Ordering::Greater => Err(StoreError::TooNew { path, found, known }),
            std::cmp::Ordering::Equal => Ok(Some(store)),
        }
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn other(&self, message: String) -> StoreError {
        StoreError::Other {
            path: self.path.display().to_string(),
            message,
        }
    }

    fn schema_version(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
            .map_err(|e| self.sqlite(e))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let applied = self.schema_version()?;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                path: self.path.display().to_string(),
                found: applied,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = self.conn.transaction().map_err(|e| StoreError::Sqlite {
                path: self.path.display().to_string(),
                source: e,
            })?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", (i + 1) as i64))
                .and_then(|_| tx.commit())
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.display().to_string(),
                    source: e,
                })?;
        }
        Ok(())
    }

    /// Every host the store knows, removed ones included.
    pub fn host_plans(&self) -> Result<BTreeMap<HostKey, StoredPlan>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, host, version, digest, plan, removed FROM host_plans")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |row| {
                let (key, versioned) = versioned_row(row)?;
                let plan = serde_json::from_str(&row.get::<_, String>(4)?).ok();
                let removed = row.get::<_, i64>(5)? != 0;
                Ok((
                    key,
                    StoredPlan {
                        versioned,
                        plan,
                        removed,
                    },
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Every host the store knows, with whether it was removed, without reading the plans.
    pub fn known_hosts(&self) -> Result<BTreeMap<HostKey, bool>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, host, removed FROM host_plans")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |row| {
                let key = HostKey::new(&row.get::<_, String>(0)?, &row.get::<_, String>(1)?);
                Ok((key, row.get::<_, i64>(2)? != 0))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Every host's schedule version, removed hosts' included, without reading the plans: what
    /// the next versions continue from.
    pub fn plan_versions(&self) -> Result<BTreeMap<HostKey, Versioned>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, host, version, digest FROM host_plans")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], versioned_row)
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// Records a compiled fleet at its versions, in one transaction; hosts it no longer has are
    /// marked removed and keep their version. Only rows this changes are written: a new version
    /// (a new plan, since a version moves exactly with its digest), a host added or back, a
    /// host removed.
    pub fn record(
        &mut self,
        fleet: &Fleet,
        versions: &BTreeMap<HostKey, Versioned>,
    ) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let rows: HashMap<HostKey, (i64, bool)> = {
            let mut stmt = tx
                .prepare("SELECT namespace, host, version, removed FROM host_plans")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |row| {
                    let key = HostKey::new(&row.get::<_, String>(0)?, &row.get::<_, String>(1)?);
                    Ok((key, (row.get::<_, i64>(2)?, row.get::<_, i64>(3)? != 0)))
                })
                .map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        {
            let mut remove = tx
                .prepare("UPDATE host_plans SET removed = 1 WHERE namespace = ?1 AND host = ?2")
                .map_err(err)?;
            for (key, _) in rows
                .iter()
                .filter(|(k, (_, removed))| !removed && !fleet.hosts.contains_key(*k))
            {
                remove
                    .execute(params![key.namespace, key.name])
                    .map_err(err)?;
            }
            let mut upsert = tx
                .prepare(
                    "INSERT INTO host_plans (namespace, host, version, digest, plan, removed)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0)
                     ON CONFLICT (namespace, host) DO UPDATE SET
                       version = excluded.version, digest = excluded.digest,
                       plan = excluded.plan, removed = 0",
                )
                .map_err(err)?;
            for (key, compiled) in &fleet.hosts {
                let Some(v) = versions.get(key) else { continue };
                if rows.get(key) == Some(&(v.version as i64, false)) {
                    continue;
                }
                let plan = String::from_utf8(crate::compile::canonical(&compiled.plan))
                    .unwrap_or_default();
                upsert
                    .execute(params![
                        key.namespace,
                        key.name,
                        v.version as i64,
                        v.digest,
                        plan
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

/// A `host_plans` row's host and version: namespace, host, version and digest, in that order.
fn versioned_row(row: &rusqlite::Row) -> rusqlite::Result<(HostKey, Versioned)> {
    let key = HostKey::new(&row.get::<_, String>(0)?, &row.get::<_, String>(1)?);
    let versioned = Versioned {
        version: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        digest: row.get(3)?,
    };
    Ok((key, versioned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(hosts: &[&str]) -> Fleet {
        let object = |kind: &str, name: &str, spec: serde_json::Value| {
            serde_json::json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": kind,
                               "metadata": {"name": name}, "spec": spec})
        };
        let revision = crate::revision::Revision {
            repos: vec![
                serde_json::from_value(object(
                    "Repo",
                    "nas",
                    serde_json::json!({"url": "/srv/restic", "password": {"hostFile": "/p"}}),
                ))
                .unwrap(),
            ],
            hosts: hosts
                .iter()
                .map(|h| {
                    serde_json::from_value(object(
                        "Host",
                        h,
                        serde_json::json!({"defaultRepo": "nas"}),
                    ))
                    .unwrap()
                })
                .collect(),
            ..Default::default()
        };
        crate::compile::compile(&revision).expect("compiles")
    }

    #[test]
    fn plan_versions_keep_removed_hosts_so_a_host_added_again_continues_above_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let both = fleet(&["web-1", "web-2"]);
        let versions = crate::versions::assign(&BTreeMap::new(), &both);
        store.record(&both, &versions).unwrap();
        assert_eq!(store.plan_versions().unwrap(), versions);

        let one = fleet(&["web-1"]);
        let next = crate::versions::assign(&store.plan_versions().unwrap(), &one);
        store.record(&one, &next).unwrap();
        let kept = store.plan_versions().unwrap();
        assert_eq!(kept.len(), 2, "web-2 is removed but keeps its version");
        assert_eq!(kept, versions);
        assert!(store.host_plans().unwrap()[&HostKey::new("default", "web-2")].removed);
        let known = store.known_hosts().unwrap();
        assert!(known[&HostKey::new("default", "web-2")], "removed");
        assert!(!known[&HostKey::new("default", "web-1")], "declared");

        // Back with the plan it had: the same version, declared again, its plan kept.
        let again = crate::versions::assign(&store.plan_versions().unwrap(), &both);
        assert_eq!(again, versions);
        store.record(&both, &again).unwrap();
        let plans = store.host_plans().unwrap();
        let web_2 = &plans[&HostKey::new("default", "web-2")];
        assert!(!web_2.removed, "declared again");
        assert_eq!(
            web_2.plan.as_ref(),
            Some(&both.hosts[&HostKey::new("default", "web-2")].plan)
        );
    }
}
