//! A full scrub over time: a check schedule with `readDataRotate: N` reads one part of the
//! repository's data per run (`--read-data-subset n/N`), the next part each time, so that every
//! pack is read once per cycle of N runs. The controller keeps, per repo, when each part was last
//! read (from the checks agents report) and tells the agents where the cycle goes on; this module
//! holds what that record means: the part read next, and since when every pack has been read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use protocol::ScrubPart;

use crate::resources::RepoScrub;

/// One repo's cycle of rotating checks: when each part was last read, in the number of parts
/// the newest check used (reads in another number of parts belong to an older cycle).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubCycle {
    pub parts: u32,
    /// Part → when a check last read it successfully.
    pub read: BTreeMap<u32, DateTime<Utc>>,
    /// The newest successful read, which decides the next part.
    pub newest: Option<(u32, DateTime<Utc>)>,
}

impl ScrubCycle {
    /// Folds in one successful read. A read in a different number of parts starts a new cycle
    /// (the schedule's `readDataRotate` changed), forgetting the old one's parts; a read older
    /// than what is held for its part changes nothing.
    pub fn read(&mut self, part: ScrubPart, at: DateTime<Utc>) {
        if !part.is_valid() {
            return;
        }
        if part.parts != self.parts {
            *self = ScrubCycle {
                parts: part.parts,
                ..ScrubCycle::default()
            };
        }
        let held = self.read.entry(part.part).or_insert(at);
        *held = (*held).max(at);
        if self.newest.is_none_or(|(_, t)| at >= t) {
            self.newest = Some((part.part, at));
        }
    }

    /// The part the next check reads: the one after the newest read.
    pub fn next(&self) -> Option<ScrubPart> {
        let (part, _) = self.newest?;
        Some(
            ScrubPart {
                part,
                parts: self.parts,
            }
            .following(),
        )
    }

    /// Every pack has been read at least once since this time: the oldest of each part's newest
    /// read, once every part has been read.
    pub fn fully_read_since(&self) -> Option<DateTime<Utc>> {
        if self.parts == 0 || self.read.len() < self.parts as usize {
            return None;
        }
        self.read.values().min().copied()
    }

    /// What the Repo's status says of it.
    pub fn status(&self) -> Option<RepoScrub> {
        let next = self.next()?;
        Some(RepoScrub {
            parts: self.parts,
            next_part: next.part,
            parts_read: self.read.len() as u32,
            last_read: self.newest.map(|(_, t)| crate::time::k8s(t)),
            fully_read_since: self.fully_read_since().map(crate::time::k8s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, 2, 0, 0).unwrap()
    }

    fn part(part: u32, parts: u32) -> ScrubPart {
        ScrubPart { part, parts }
    }

    #[test]
    fn a_cycle_goes_round_and_is_full_once_every_part_was_read() {
        let mut cycle = ScrubCycle::default();
        assert_eq!(
            cycle.next(),
            None,
            "nothing read: the agents start at part 1"
        );
        for d in 1..=2 {
            cycle.read(part(d, 3), day(d));
            assert_eq!(cycle.fully_read_since(), None);
        }
        assert_eq!(cycle.next(), Some(part(3, 3)));
        cycle.read(part(3, 3), day(3));
        assert_eq!(
            cycle.next(),
            Some(part(1, 3)),
            "after the last part, the first"
        );
        assert_eq!(cycle.fully_read_since(), Some(day(1)));
        cycle.read(part(1, 3), day(4));
        assert_eq!(
            cycle.fully_read_since(),
            Some(day(2)),
            "part 2 is now the oldest read"
        );
        let status = cycle.status().unwrap();
        assert_eq!(
            (status.parts, status.next_part, status.parts_read),
            (3, 2, 3)
        );
        assert_eq!(status.last_read, Some(crate::time::k8s(day(4))));
    }

    #[test]
    fn another_number_of_parts_starts_a_new_cycle() {
        let mut cycle = ScrubCycle::default();
        cycle.read(part(1, 2), day(1));
        cycle.read(part(2, 2), day(2));
        assert!(cycle.fully_read_since().is_some());
        cycle.read(part(4, 7), day(3));
        assert_eq!(cycle.parts, 7);
        assert_eq!(cycle.read.len(), 1);
        assert_eq!(cycle.fully_read_since(), None);
        assert_eq!(cycle.next(), Some(part(5, 7)));
    }

    #[test]
    fn a_late_report_of_an_old_read_does_not_move_the_cycle_back() {
        let mut cycle = ScrubCycle::default();
        cycle.read(part(2, 4), day(5));
        cycle.read(part(1, 4), day(1));
        assert_eq!(cycle.next(), Some(part(3, 4)));
        cycle.read(part(2, 4), day(3));
        assert_eq!(cycle.read[&2], day(5));
    }

    #[test]
    fn parts_outside_the_cycle_are_ignored() {
        let mut cycle = ScrubCycle::default();
        cycle.read(part(0, 3), day(1));
        cycle.read(part(4, 3), day(1));
        assert_eq!(cycle, ScrubCycle::default());
    }
}
