//! The read model: every resource's identity, generation and last written status, and the
//! revisions read from the config directory.
//!
//! Every write takes the next value of one counter, the resource version, so a reader can ask
//! for what changed since a version it saw.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::diff::RevisionChanges;
use crate::resources::Kind;
use crate::revision::Revision;

/// One revision the controller read from the config directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRecord {
    /// Increasing number of the revision, counted by the controller.
    pub id: i64,
    /// The git commit of the config directory, when it is a git work tree.
    pub commit: Option<String>,
    /// The files read differ from that commit: edits not committed yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub uncommitted: bool,
    /// When the controller read it.
    pub at: DateTime<Utc>,
    /// Resource counts, such as `1 repo, 2 hosts, 3 schedules, 0 backups, 0 restores`.
    pub summary: String,
    /// Why it was rejected (each `file:line: message`); empty for an applied revision.
    pub errors: Vec<String>,
    /// What it changed against the revision in force when it was read; none for a revision
    /// recorded before this was kept, or one that did not read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<RevisionChanges>,
}

/// One revision in the list of those read, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionEntry {
    pub record: RevisionRecord,
    pub applied: bool,
}

/// The revision in force, and the newest rejected one when it came after it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Revisions {
    pub applied: Option<RevisionRecord>,
    pub rejected: Option<RevisionRecord>,
}

/// What Kubernetes would keep in an object's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub uid: String,
    /// Goes up by one when the spec changes.
    pub generation: i64,
    pub created_at: DateTime<Utc>,
    pub resource_version: i64,
}

/// One resource as last written.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObject {
    pub meta: ObjectMeta,
    pub spec_digest: String,
    /// Of the labels and annotations.
    pub meta_digest: String,
    /// The status as written, as JSON text: the next write compares with it and continues its
    /// conditions' transition times. Text takes a fraction of a parsed value's memory (a
    /// Schedule's status lists every host it runs on).
    pub status: Option<Box<str>>,
}

pub type ObjectId = (Kind, String, String);

/// A change to write: the object as stored and as served (JSON text), or `None` to delete it.
pub type ObjectWrite = (ObjectId, Option<(StoredObject, std::sync::Arc<str>)>);

fn stored_from_row(r: &rusqlite::Row, at: usize) -> rusqlite::Result<StoredObject> {
    Ok(StoredObject {
        meta: ObjectMeta {
            uid: r.get(at)?,
            generation: r.get(at + 1)?,
            created_at: r.get(at + 3)?,
            resource_version: r.get(at + 5)?,
        },
        spec_digest: r.get(at + 2)?,
        meta_digest: r.get(at + 6)?,
        status: r
            .get::<_, Option<String>>(at + 4)?
            .map(String::into_boxed_str),
    })
}

/// The condition that keeps a query of objects to the namespace in `?4`, if one is given (a
/// separate statement, so that the key index bounds the scan).
fn in_namespace(namespace: Option<&str>) -> &'static str {
    match namespace {
        Some(_) => "AND namespace = ?4",
        None => "",
    }
}

const STORED_COLUMNS: &str =
    "uid, generation, spec_digest, created_at, status, resource_version, meta_digest";

impl Store {
    /// The stored Repos, Hosts and Schedules: what the status writer holds in memory. Run
    /// records' objects stay here and are read when asked for.
    pub fn fleet_objects(&self) -> Result<BTreeMap<ObjectId, StoredObject>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT kind, namespace, name, {STORED_COLUMNS} FROM objects
                 WHERE kind IN ('Repo', 'Host', 'Schedule')"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                let kind: String = r.get(0)?;
                Ok((
                    kind,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    stored_from_row(r, 3)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut objects = BTreeMap::new();
        for row in rows {
            let (kind, namespace, name, object) = row.map_err(|e| self.sqlite(e))?;
            if let Some(kind) = Kind::from_name(&kind) {
                objects.insert((kind, namespace, name), object);
            }
        }
        Ok(objects)
    }

    /// One object as stored, and as last served.
    pub fn stored_object(
        &self,
        id: &ObjectId,
    ) -> Result<Option<(StoredObject, Option<serde_json::Value>)>, StoreError> {
        let (kind, namespace, name) = id;
        self.conn
            .prepare_cached(&format!(
                "SELECT object, {STORED_COLUMNS} FROM objects
                 WHERE kind = ?1 AND namespace = ?2 AND name = ?3"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(params![kind.as_str(), namespace, name], |r| {
                    let object = r
                        .get::<_, Option<String>>(0)?
                        .and_then(|s| serde_json::from_str(&s).ok());
                    Ok((stored_from_row(r, 1)?, object))
                })
                .optional()
            })
            .map_err(|e| self.sqlite(e))
    }

    /// One object as served.
    pub fn object_json(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        Ok(self
            .stored_object(&(kind, namespace.into(), name.into()))?
            .and_then(|(_, object)| object))
    }

    /// Objects of `kind` (of one namespace, or all) as served, in (namespace, name) order
    /// after `after`, that `selects` keeps: at most `limit`, and whether more remain. Reads
    /// only as far as the page needs.
    pub fn objects_page(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        limit: Option<usize>,
        selects: &mut dyn FnMut(&serde_json::Value) -> bool,
    ) -> Result<(Vec<serde_json::Value>, bool), StoreError> {
        // A namespace's objects start after the empty name in it.
        let after = after.unwrap_or((namespace.unwrap_or_default(), ""));
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT object FROM objects
                 WHERE kind = ?1 AND (namespace, name) > (?2, ?3) AND object IS NOT NULL {}
                 ORDER BY namespace, name",
                in_namespace(namespace)
            ))
            .map_err(|e| self.sqlite(e))?;
        let mut rows = match namespace {
            Some(ns) => stmt.query(params![kind.as_str(), after.0, after.1, ns]),
            None => stmt.query(params![kind.as_str(), after.0, after.1]),
        }
        .map_err(|e| self.sqlite(e))?;
        let mut page = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sqlite(e))? {
            let text: String = row.get(0).map_err(|e| self.sqlite(e))?;
            let Ok(object) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if !selects(&object) {
                continue;
            }
            if limit.is_some_and(|l| page.len() >= l) {
                return Ok((page, true));
            }
            page.push(object);
        }
        Ok((page, false))
    }

    /// How many objects of `kind` come after `after` in (namespace, name) order, from the key
    /// index alone, without reading the objects; `None` when there are more than `at_most`
    /// (counting the index of 750,000 records took most of the time of a page).
    pub fn count_after(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        after: (&str, &str),
        at_most: usize,
    ) -> Result<Option<usize>, StoreError> {
        let count = |r: &rusqlite::Row| r.get::<_, i64>(0);
        let limit = i64::try_from(at_most.saturating_add(1)).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM (SELECT 1 FROM objects
                 WHERE kind = ?1 AND (namespace, name) > (?2, ?3) {} LIMIT ?5)",
                in_namespace(namespace)
            ))
            .and_then(|mut stmt| match namespace {
                Some(ns) => {
                    stmt.query_row(params![kind.as_str(), after.0, after.1, ns, limit], count)
                }
                // `?4` unused: the parameters are numbered.
                None => stmt.query_row(
                    params![kind.as_str(), after.0, after.1, None::<String>, limit],
                    count,
                ),
            })
            .map(|n| usize::try_from(n).unwrap_or_default())
            .map(|n| (n <= at_most).then_some(n))
            .map_err(|e| self.sqlite(e))
    }

    /// Every stored Backup and Restore object.
    pub fn record_ids(&self) -> Result<Vec<ObjectId>, StoreError> {
        self.ids("SELECT kind, namespace, name FROM objects WHERE kind IN ('Backup', 'Restore')")
    }

    pub(super) fn ids(&self, sql: &str) -> Result<Vec<ObjectId>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                let kind: String = r.get(0)?;
                Ok((kind, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, namespace, name) = row.map_err(|e| self.sqlite(e))?;
            if let Some(kind) = Kind::from_name(&kind) {
                out.push((kind, namespace, name));
            }
        }
        Ok(out)
    }

    /// Backup and Restore objects whose run record is gone.
    pub fn orphaned_run_objects(&self) -> Result<Vec<ObjectId>, StoreError> {
        self.ids(
            "SELECT o.kind, o.namespace, o.name FROM objects o
             WHERE o.kind IN ('Backup', 'Restore') AND NOT EXISTS (
                 SELECT 1 FROM runs r
                 WHERE r.kind = o.kind AND r.namespace = o.namespace AND r.name = o.name)",
        )
    }

    /// The Backup objects of one host's runs, through the runs' (namespace, host) index.
    pub fn host_backups(
        &self,
        namespace: &str,
        host: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.served(
            "SELECT o.object FROM runs r JOIN objects o
               ON o.kind = r.kind AND o.namespace = r.namespace AND o.name = r.name
             WHERE r.namespace = ?1 AND r.host = ?2 AND r.kind = 'Backup'
               AND o.object IS NOT NULL",
            params![namespace, host],
        )
    }

    /// One host's Snapshot objects as served, through the snapshots' (namespace, host) key,
    /// by repo and newest first.
    pub fn host_snapshot_objects(
        &self,
        namespace: &str,
        host: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.served(
            "SELECT o.object FROM snapshots s JOIN objects o
               ON o.kind = 'Snapshot' AND o.namespace = s.namespace AND o.name = s.name
             WHERE s.namespace = ?1 AND s.host = ?2 AND o.object IS NOT NULL
             ORDER BY s.repo, s.time DESC",
            params![namespace, host],
        )
    }

    /// The Backups of a schedule's newest `limit` runs on any host, as served, newest first.
    pub fn schedule_backups(
        &self,
        namespace: &str,
        schedule: &str,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        self.served(
            "SELECT o.object FROM runs r JOIN objects o
               ON o.kind = r.kind AND o.namespace = r.namespace AND o.name = r.name
             WHERE r.namespace = ?1 AND r.schedule = ?2 AND r.kind = 'Backup'
               AND o.object IS NOT NULL
             ORDER BY r.created_at DESC LIMIT ?3",
            params![namespace, schedule, limit as i64],
        )
    }

    /// The objects as served that `sql` selects (one column); one that does not parse is left
    /// out.
    fn served(
        &self,
        sql: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(values, |r| r.get::<_, String>(0))
            .map_err(|e| self.sqlite(e))?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(object) = serde_json::from_str(&row.map_err(|e| self.sqlite(e))?) {
                out.push(object);
            }
        }
        Ok(out)
    }

    /// The last resource version handed out.
    pub fn resource_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row(
                "SELECT coalesce((SELECT value FROM counters WHERE name = 'resourceVersion'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sqlite(e))
    }

    /// Writes changed objects (`Some`) and deletes removed ones (`None`) in one transaction,
    /// and stores the resource version they were given.
    pub fn write_objects(
        &mut self,
        changes: &[ObjectWrite],
        resource_version: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            // Prepared once for the transaction: a pass may write 10,000 Hosts.
            let mut upsert = tx
                .prepare(
                    "INSERT INTO objects (kind, namespace, name, uid, generation, spec_digest,
                         created_at, status, resource_version, meta_digest, object)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (kind, namespace, name) DO UPDATE SET
                         uid = excluded.uid, generation = excluded.generation,
                         spec_digest = excluded.spec_digest, created_at = excluded.created_at,
                         status = excluded.status, resource_version = excluded.resource_version,
                         meta_digest = excluded.meta_digest, object = excluded.object",
                )
                .map_err(err)?;
            let mut delete = tx
                .prepare("DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")
                .map_err(err)?;
            for ((kind, namespace, name), object) in changes {
                match object {
                    Some((o, served)) => upsert.execute(params![
                        kind.as_str(),
                        namespace,
                        name,
                        o.meta.uid,
                        o.meta.generation,
                        o.spec_digest,
                        o.meta.created_at,
                        o.status.as_deref(),
                        o.meta.resource_version,
                        o.meta_digest,
                        &**served,
                    ]),
                    None => delete.execute(params![kind.as_str(), namespace, name]),
                }
                .map_err(err)?;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO counters (name, value) VALUES ('resourceVersion', ?1)",
            [resource_version],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Records a revision read from the config directory; returns its id. `applied` is the
    /// revision's resources when it was applied; they replace those kept for the previous one.
    pub fn record_revision(
        &mut self,
        commit: Option<&str>,
        uncommitted: bool,
        summary: &str,
        errors: &[String],
        applied: Option<&Revision>,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let errors = serde_json::to_string(errors).unwrap_or_default();
        let resources = applied
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| self.other(format!("cannot serialise the revision: {e}")))?;
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        if resources.is_some() {
            tx.execute(
                "UPDATE revisions SET resources = NULL WHERE resources IS NOT NULL",
                [],
            )
            .map_err(err)?;
        }
        tx.execute(
            "INSERT INTO revisions (at, git_commit, summary, errors, applied, resources, uncommitted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                at,
                commit,
                summary,
                errors,
                applied.is_some() as i64,
                resources,
                uncommitted as i64
            ],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(err)?;
        Ok(id)
    }

    /// The resources of the newest applied revision, when one was recorded with them.
    pub fn applied_revision(&self) -> Result<Option<Revision>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT resources FROM revisions WHERE applied = 1 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(self.sqlite(e)),
            })?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| self.other(format!("the stored applied revision does not read: {e}")))
        })
        .transpose()
    }

    /// Stores what revision `id` changed.
    pub fn set_revision_changes(
        &self,
        id: i64,
        changes: &RevisionChanges,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(changes).unwrap_or_default();
        self.conn
            .execute(
                "UPDATE revisions SET changes = ?2 WHERE id = ?1",
                params![id, text],
            )
            .map(|_| ())
            .map_err(|e| self.sqlite(e))
    }

    /// The newest applied revision, and the newest rejected one if it came later.
    pub fn revisions(&self) -> Result<Revisions, StoreError> {
        let newest = |applied: bool| {
            self.revision_rows(
                "WHERE applied = ?1 ORDER BY id DESC LIMIT 1",
                [applied as i64],
            )
            .map(|mut rows| rows.pop().map(|e| e.record))
        };
        let applied = newest(true)?;
        let rejected = newest(false)?.filter(|r| applied.as_ref().is_none_or(|a| r.id > a.id));
        Ok(Revisions { applied, rejected })
    }

    /// Up to `limit` revisions older than `before` (or the newest), newest first.
    pub fn revision_list(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RevisionEntry>, StoreError> {
        self.revision_rows(
            "WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
            params![before.unwrap_or(i64::MAX), limit as i64],
        )
    }

    fn revision_rows(
        &self,
        clause: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<RevisionEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, at, git_commit, summary, errors, uncommitted, applied, changes
                 FROM revisions {clause}"
            ))
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(values, |r| {
                Ok(RevisionEntry {
                    record: RevisionRecord {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        commit: r.get(2)?,
                        uncommitted: r.get::<_, i64>(5)? != 0,
                        summary: r.get(3)?,
                        errors: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                        changes: r
                            .get::<_, Option<String>>(7)?
                            .and_then(|c| serde_json::from_str(&c).ok()),
                    },
                    applied: r.get::<_, i64>(6)? != 0,
                })
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }
}

/// A Backup in namespace `fleet`, written for the first time and served as `served`: what
/// tests of the store's reads write.
#[cfg(test)]
pub(crate) fn first_backup_write(
    name: &str,
    resource_version: i64,
    served: serde_json::Value,
) -> ObjectWrite {
    let stored = StoredObject {
        meta: ObjectMeta {
            uid: name.to_string(),
            generation: 1,
            created_at: Utc::now(),
            resource_version,
        },
        spec_digest: String::new(),
        meta_digest: String::new(),
        status: None,
    };
    (
        (Kind::Backup, "fleet".to_string(), name.to_string()),
        Some((stored, served.to_string().into())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_after_a_page_stops_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let writes: Vec<ObjectWrite> = (0..5)
            .map(|i| {
                let name = format!("run-{i}");
                let served = serde_json::json!({"metadata": {"name": name, "namespace": "fleet"}});
                first_backup_write(&name, i + 1, served)
            })
            .collect();
        store.write_objects(&writes, 5).unwrap();
        let after = ("fleet", "run-1");
        assert_eq!(
            store.count_after(Kind::Backup, None, after, 10).unwrap(),
            Some(3)
        );
        assert_eq!(
            store
                .count_after(Kind::Backup, Some("fleet"), after, 3)
                .unwrap(),
            Some(3)
        );
        assert_eq!(
            store
                .count_after(Kind::Backup, Some("fleet"), after, 2)
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .count_after(Kind::Backup, Some("other"), after, 2)
                .unwrap(),
            Some(0)
        );
    }
}
