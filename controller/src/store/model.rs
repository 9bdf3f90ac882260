//! The read model: every resource's identity, generation and last written status, and the
//! revisions read from the config directory.
//!
//! Every write takes the next value of one counter, the resource version, so a reader can ask
//! for what changed since a version it saw.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Store, StoreError};
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
    /// When the controller read it.
    pub at: DateTime<Utc>,
    /// Resource counts, such as `1 repo, 2 hosts, 3 schedules, 0 backups, 0 restores`.
    pub summary: String,
    /// Why it was rejected (each `file:line: message`); empty for an applied revision.
    pub errors: Vec<String>,
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
    pub status: Option<serde_json::Value>,
}

pub type ObjectId = (Kind, String, String);

impl Store {
    /// Every stored object.
    pub fn objects(&self) -> Result<BTreeMap<ObjectId, StoredObject>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT kind, namespace, name, uid, generation, spec_digest, created_at, status,
                        resource_version, meta_digest FROM objects",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                let kind: String = r.get(0)?;
                Ok((
                    kind,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    StoredObject {
                        meta: ObjectMeta {
                            uid: r.get(3)?,
                            generation: r.get(4)?,
                            created_at: r.get(6)?,
                            resource_version: r.get(8)?,
                        },
                        spec_digest: r.get(5)?,
                        meta_digest: r.get(9)?,
                        status: r
                            .get::<_, Option<String>>(7)?
                            .and_then(|s| serde_json::from_str(&s).ok()),
                    },
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
        changes: &[(ObjectId, Option<StoredObject>)],
        resource_version: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        for ((kind, namespace, name), object) in changes {
            match object {
                Some(o) => tx.execute(
                    "INSERT OR REPLACE INTO objects (kind, namespace, name, uid, generation,
                         spec_digest, created_at, status, resource_version, meta_digest)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        kind.as_str(),
                        namespace,
                        name,
                        o.meta.uid,
                        o.meta.generation,
                        o.spec_digest,
                        o.meta.created_at,
                        o.status.as_ref().map(|s| s.to_string()),
                        o.meta.resource_version,
                        o.meta_digest,
                    ],
                ),
                None => tx.execute(
                    "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
                    params![kind.as_str(), namespace, name],
                ),
            }
            .map_err(err)?;
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
            "INSERT INTO revisions (at, git_commit, summary, errors, applied, resources)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                at,
                commit,
                summary,
                errors,
                applied.is_some() as i64,
                resources
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

    /// The newest applied revision, and the newest rejected one if it came later.
    pub fn revisions(&self) -> Result<Revisions, StoreError> {
        let newest = |applied: bool| {
            self.conn
                .query_row(
                    "SELECT id, at, git_commit, summary, errors FROM revisions WHERE applied = ?1
                     ORDER BY id DESC LIMIT 1",
                    [applied as i64],
                    |r| {
                        Ok(RevisionRecord {
                            id: r.get(0)?,
                            at: r.get(1)?,
                            commit: r.get(2)?,
                            summary: r.get(3)?,
                            errors: serde_json::from_str(&r.get::<_, String>(4)?)
                                .unwrap_or_default(),
                        })
                    },
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(self.sqlite(e)),
                })
        };
        let applied = newest(true)?;
        let rejected = newest(false)?.filter(|r| applied.as_ref().is_none_or(|a| r.id > a.id));
        Ok(Revisions { applied, rejected })
    }
}
