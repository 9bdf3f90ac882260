//! What each agent last said about itself: versions, platform, and the schedule it applied.

use std::collections::BTreeMap;

use rusqlite::params;

use super::{Store, StoreError};
use crate::compile::HostKey;

pub use holdfast_core::facts::AgentRecord;

impl Store {
    pub fn agents(&self) -> Result<BTreeMap<HostKey, AgentRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT namespace, host, applied_version, applied_digest, rejected, agent_version,
                        restic_version, protocol_version, os, arch, last_seen FROM agents",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    HostKey::new(&r.get::<_, String>(0)?, &r.get::<_, String>(1)?),
                    AgentRecord {
                        applied_version: r.get::<_, Option<i64>>(2)?.map(|v| v.max(0) as u64),
                        applied_digest: r.get(3)?,
                        rejected: r.get(4)?,
                        agent_version: r.get(5)?,
                        restic_version: r.get(6)?,
                        protocol_version: r.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u32),
                        os: r.get(8)?,
                        arch: r.get(9)?,
                        last_seen: r.get(10)?,
                    },
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    pub fn save_agent(&self, host: &HostKey, agent: &AgentRecord) -> Result<(), StoreError> {
        upsert(&self.conn, host, agent).map_err(|e| self.sqlite(e))
    }

    /// Stores many agents' records in one transaction.
    pub fn save_agents(&mut self, agents: &[(HostKey, AgentRecord)]) -> Result<(), StoreError> {
        let saved = self.conn.transaction().and_then(|tx| {
            agents
                .iter()
                .try_for_each(|(host, agent)| upsert(&tx, host, agent))?;
            tx.commit()
        });
        saved.map_err(|e| self.sqlite(e))
    }
}

fn upsert(
    conn: &rusqlite::Connection,
    host: &HostKey,
    agent: &AgentRecord,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO agents (namespace, host, applied_version, applied_digest, rejected,
             agent_version, restic_version, protocol_version, os, arch, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (namespace, host) DO UPDATE SET
             applied_version = excluded.applied_version,
             applied_digest = excluded.applied_digest, rejected = excluded.rejected,
             agent_version = excluded.agent_version,
             restic_version = excluded.restic_version,
             protocol_version = excluded.protocol_version, os = excluded.os,
             arch = excluded.arch, last_seen = excluded.last_seen",
    )?
    .execute(params![
        host.namespace,
        host.name,
        agent.applied_version.map(|v| v as i64),
        agent.applied_digest,
        agent.rejected,
        agent.agent_version,
        agent.restic_version,
        agent.protocol_version,
        agent.os,
        agent.arch,
        agent.last_seen,
    ])
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_saved_together_read_back_and_a_later_save_replaces_them() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut store = Store::open(dir.path()).expect("a store");
        let record = |version: u64| AgentRecord {
            applied_version: Some(version),
            agent_version: Some("0.1.0".into()),
            ..AgentRecord::default()
        };
        let (web, db) = (
            HostKey::new("fleet", "web-1"),
            HostKey::new("fleet", "db-1"),
        );
        store
            .save_agents(&[(web.clone(), record(3)), (db.clone(), record(4))])
            .expect("saved");
        store
            .save_agents(&[(web.clone(), record(5))])
            .expect("saved");
        let agents = store.agents().expect("read");
        assert_eq!(agents.len(), 2);
        assert_eq!(agents[&web].applied_version, Some(5));
        assert_eq!(agents[&db].applied_version, Some(4));
        assert_eq!(agents[&db].agent_version.as_deref(), Some("0.1.0"));
    }
}
