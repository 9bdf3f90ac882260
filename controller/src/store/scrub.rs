//! Rotating checks (`readDataRotate`): when each part of a repo's data was last read, which
//! decides the part the next check reads. At most one row per part of the current cycle of each
//! repo: a read in another number of parts replaces the repo's rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use protocol::ScrubPart;
use rusqlite::params;

use super::{Store, StoreError};
use crate::scrub::ScrubCycle;

impl Store {
    /// Every repo's cycle, by `(namespace, repo)`.
    pub fn scrub_cycles(&self) -> Result<BTreeMap<(String, String), ScrubCycle>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT namespace, repo, parts, part, read_at FROM scrub_parts")
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    ScrubPart {
                        parts: r.get(2)?,
                        part: r.get(3)?,
                    },
                    r.get::<_, DateTime<Utc>>(4)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut cycles: BTreeMap<(String, String), ScrubCycle> = BTreeMap::new();
        for row in rows {
            let (repo, part, at) = row.map_err(|e| self.sqlite(e))?;
            cycles.entry(repo).or_default().read(part, at);
        }
        Ok(cycles)
    }

    /// One repo's cycle (empty when no rotating check has read it).
    pub fn scrub_cycle(&self, namespace: &str, repo: &str) -> Result<ScrubCycle, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT parts, part, read_at FROM scrub_parts WHERE namespace = ?1 AND repo = ?2",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(params![namespace, repo], |r| {
                Ok((
                    ScrubPart {
                        parts: r.get(0)?,
                        part: r.get(1)?,
                    },
                    r.get::<_, DateTime<Utc>>(2)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        let mut cycle = ScrubCycle::default();
        for row in rows {
            let (part, at) = row.map_err(|e| self.sqlite(e))?;
            cycle.read(part, at);
        }
        Ok(cycle)
    }

    /// Records that `host` read `part` of the repo's data at `at`, and returns the repo's cycle
    /// as it is now.
    pub fn record_scrub(
        &mut self,
        namespace: &str,
        repo: &str,
        host: &str,
        part: ScrubPart,
        at: DateTime<Utc>,
    ) -> Result<ScrubCycle, StoreError> {
        let mut cycle = self.scrub_cycle(namespace, repo)?;
        cycle.read(part, at);
        if cycle.read.get(&part.part) != Some(&at) || cycle.parts != part.parts {
            // An older read than the one held, or an invalid part: nothing to write.
            return Ok(cycle);
        }
        let write = self.conn.transaction().and_then(|tx| {
            tx.execute(
                "DELETE FROM scrub_parts WHERE namespace = ?1 AND repo = ?2 AND parts <> ?3",
                params![namespace, repo, part.parts],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO scrub_parts (namespace, repo, parts, part, read_at, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![namespace, repo, part.parts, part.part, at, host],
            )?;
            tx.commit()
        });
        write.map_err(|e| self.sqlite(e))?;
        Ok(cycle)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, 3, 0, 0).unwrap()
    }

    #[test]
    fn a_repos_cycle_survives_reopening_and_keeps_one_row_per_part() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::open(dir.path()).unwrap();
            for (d, part) in [(1, 1), (2, 2), (3, 3), (4, 1)] {
                let part = ScrubPart { part, parts: 3 };
                store
                    .record_scrub("default", "main", "web-1", part, day(d))
                    .unwrap();
            }
            // A late report of an older read changes nothing.
            let cycle = store
                .record_scrub(
                    "default",
                    "main",
                    "web-2",
                    ScrubPart { part: 2, parts: 3 },
                    day(1),
                )
                .unwrap();
            assert_eq!(cycle.read[&2], day(2));
        }
        let store = Store::open(dir.path()).unwrap();
        let cycle = store.scrub_cycle("default", "main").unwrap();
        assert_eq!(cycle.next(), Some(ScrubPart { part: 2, parts: 3 }));
        assert_eq!(cycle.fully_read_since(), Some(day(2)));
        assert_eq!(
            store.scrub_cycles().unwrap()[&("default".into(), "main".into())],
            cycle
        );
        let rows: i64 = store
            .conn
            .query_row("SELECT count(*) FROM scrub_parts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3);
    }

    #[test]
    fn a_new_number_of_parts_replaces_the_old_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        for part in 1..=2 {
            let part = ScrubPart { part, parts: 2 };
            store
                .record_scrub("default", "main", "web-1", part, day(part.part))
                .unwrap();
        }
        store
            .record_scrub(
                "default",
                "main",
                "web-1",
                ScrubPart { part: 5, parts: 7 },
                day(3),
            )
            .unwrap();
        let cycle = store.scrub_cycle("default", "main").unwrap();
        assert_eq!((cycle.parts, cycle.read.len()), (7, 1));
        assert_eq!(cycle.next(), Some(ScrubPart { part: 6, parts: 7 }));
    }
}
