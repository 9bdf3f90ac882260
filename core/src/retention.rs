//! What a forget run will remove, before it runs: restic's `forget` policy as restic 0.14
//! applies it (`internal/restic/snapshot_policy.go`), on the snapshot lists agents report.
//!
//! The rules that matter, all restic's own: snapshots are scoped to the host and the schedule's
//! tags (as the agent calls `forget`), grouped by host and paths, and sorted newest first;
//! each `keep*` count walks that list and keeps the newest snapshot of each new hour, day, ISO
//! week, month or year, reckoned in the offset the snapshot's time was written with (a
//! snapshot taken at 00:30+02:00 belongs to that day, not to the day before in UTC);
//! `keepWithin` is counted back from the newest snapshot that is not in the future, by calendar
//! years, months and days (Go's `AddDate`, which rolls 31 March minus a month over to 3 March)
//! and then hours. Snapshots with the same time keep the order they were listed in, as restic
//! keeps the order it read them in.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Timelike, Utc};
use protocol::{ForgetParams, Retention, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("`{0}` is not a restic duration such as `2y5m7d3h`")]
    Duration(String),
    #[error("snapshot {id} has a time that is not RFC 3339: `{time}`")]
    Time { id: String, time: String },
}

/// restic's duration (`--keep-within 2y5m7d3h`): calendar years, months and days, then hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Within {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

/// As restic prints it: `2y5m7d3h`, zero parts left out.
impl std::fmt::Display for Within {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Within {
    /// Numbers each followed by `y`, `m`, `d` or `h`; a unit given twice counts its last value,
    /// as in restic.
    pub fn parse(text: &str) -> Result<Within, RetentionError> {
        let bad = || RetentionError::Duration(text.to_string());
        let mut within = Within::default();
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let number: i32 = rest[..digits].parse().map_err(|_| bad())?;
            let field = match rest[digits..].chars().next() {
                Some('y') => &mut within.years,
                Some('m') => &mut within.months,
                Some('d') => &mut within.days,
                Some('h') => &mut within.hours,
                _ => return Err(bad()),
            };
            *field = number;
            rest = &rest[digits + 1..];
        }
        Ok(within)
    }

    fn is_zero(&self) -> bool {
        *self == Within::default()
    }

    /// `at` moved back by this duration, as Go's `t.AddDate(-y, -m, -d).Add(-h hours)`.
    fn before(&self, at: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
        let months = i64::from(at.year()) * 12 + i64::from(at.month0())
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let first = NaiveDate::from_ymd_opt(
            i32::try_from(months.div_euclid(12)).unwrap_or(i32::MIN),
            months.rem_euclid(12) as u32 + 1,
            1,
        );
        // The day of the month may overflow the month (31 February is 3 March), as in Go.
        let date = first.and_then(|f| {
            f.checked_add_signed(Duration::days(
                i64::from(at.day()) - 1 - i64::from(self.days),
            ))
        });
        let Some(local) = date.map(|d| d.and_time(at.time())) else {
            return DateTime::<Utc>::MIN_UTC.fixed_offset();
        };
        let moved = local
            .and_local_timezone(*at.offset())
            .single()
            .unwrap_or_else(|| DateTime::<Utc>::MIN_UTC.fixed_offset());
        moved - Duration::hours(i64::from(self.hours))
    }
}

/// One snapshot the policy keeps, and why (restic's words: `daily snapshot`, `within 7d`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<String>,
}

/// The snapshots of one host and set of paths, newest first, split as `forget` splits them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub hostname: String,
    /// Sorted.
    pub paths: Vec<String>,
    pub keep: Vec<Kept>,
    /// Ids of the snapshots the run would remove.
    pub remove: Vec<String>,
}

/// What `restic forget` as the agent runs it for `host` with `params` would keep and remove of
/// `snapshots` (the repository's, as the agent listed them) at `now`. Groups come sorted by
/// host and paths.
pub fn preview(
    snapshots: &[Snapshot],
    host: &str,
    params: &ForgetParams,
    now: DateTime<Utc>,
) -> Result<Vec<Group>, RetentionError> {
    let policy = Policy::of(&params.retention)?;
    let mut groups: BTreeMap<(String, Vec<String>), Vec<Dated>> = BTreeMap::new();
    for snapshot in snapshots {
        if snapshot.hostname != host || !has_tags(snapshot, &params.tags) {
            continue;
        }
        let time =
            DateTime::parse_from_rfc3339(&snapshot.time).map_err(|_| RetentionError::Time {
                id: snapshot.id.clone(),
                time: snapshot.time.clone(),
            })?;
        let mut paths = snapshot.paths.clone();
        paths.sort();
        groups
            .entry((snapshot.hostname.clone(), paths))
            .or_default()
            .push(Dated { snapshot, time });
    }
    Ok(groups
        .into_iter()
        .map(|((hostname, paths), mut list)| {
            // Stable: the same time keeps the listed order.
            list.sort_by_key(|d| std::cmp::Reverse(d.time));
            let (keep, remove) = policy.apply(&list, now);
            Group {
                hostname,
                paths,
                keep,
                remove,
            }
        })
        .collect())
}

struct Dated<'a> {
    snapshot: &'a Snapshot,
    time: DateTime<FixedOffset>,
}

/// restic's `--tag a,b` and `--keep-tag a,b`: the snapshot carries every tag of the list; an
/// empty tag matches a snapshot without tags.
fn has_tags(snapshot: &Snapshot, list: &[String]) -> bool {
    for tag in list {
        let tag = tag.trim();
        if tag.is_empty() && snapshot.tags.is_empty() {
            return true;
        }
        if !snapshot.tags.iter().any(|t| t == tag) {
            return false;
        }
    }
    true
}

/// A bucket: which hour, day, week, month or year a snapshot's time falls in, in the offset it
/// was written with; `Last` gives every snapshot its own.
#[derive(Clone, Copy)]
enum Bucket {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Bucket {
    fn of(self, time: DateTime<FixedOffset>, position: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(time.year()),
            i64::from(time.month()),
            i64::from(time.day()),
            i64::from(time.hour()),
        );
        match self {
            Bucket::Last => position as i64,
            Bucket::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Bucket::Day => (y * 100 + m) * 100 + d,
            Bucket::Week => {
                let week = time.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Bucket::Month => y * 100 + m,
            Bucket::Year => y,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Bucket::Last => "last snapshot",
            Bucket::Hour => "hourly snapshot",
            Bucket::Day => "daily snapshot",
            Bucket::Week => "weekly snapshot",
            Bucket::Month => "monthly snapshot",
            Bucket::Year => "yearly snapshot",
        }
    }
}

struct Policy {
    counts: Vec<(Bucket, u32)>,
    within: Option<Within>,
    tags: Vec<Vec<String>>,
}

impl Policy {
    fn of(retention: &Retention) -> Result<Policy, RetentionError> {
        let counts = [
            (Bucket::Last, retention.keep_last),
            (Bucket::Hour, retention.keep_hourly),
            (Bucket::Day, retention.keep_daily),
            (Bucket::Week, retention.keep_weekly),
            (Bucket::Month, retention.keep_monthly),
            (Bucket::Year, retention.keep_yearly),
        ]
        .into_iter()
        .filter_map(|(bucket, n)| n.filter(|n| *n > 0).map(|n| (bucket, n)))
        .collect();
        // restic ignores a duration of zero, as if none was given.
        let within = match &retention.keep_within {
            Some(text) => Some(Within::parse(text)?).filter(|w| !w.is_zero()),
            None => None,
        };
        let tags = retention
            .keep_tags
            .iter()
            .map(|list| list.split(',').map(|t| t.trim().to_string()).collect())
            .collect();
        Ok(Policy {
            counts,
            within,
            tags,
        })
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.within.is_none() && self.tags.is_empty()
    }

    /// `list` is one group, newest first.
    fn apply(&self, list: &[Dated], now: DateTime<Utc>) -> (Vec<Kept>, Vec<String>) {
        if self.is_empty() {
            let keep = list
                .iter()
                .map(|d| Kept {
                    id: d.snapshot.id.clone(),
                    reasons: vec!["policy is empty".to_string()],
                })
                .collect();
            return (keep, Vec::new());
        }
        // The newest snapshot not in the future; none leaves every snapshot within.
        let latest = list.iter().map(|d| d.time).find(|t| *t < now);
        let within_since = self.within.map(|w| (latest.map(|l| w.before(l)), w));
        let mut counts: Vec<(Bucket, u32, Option<i64>)> =
            self.counts.iter().map(|&(b, n)| (b, n, None)).collect();
        let (mut keep, mut remove) = (Vec::new(), Vec::new());
        for (position, dated) in list.iter().enumerate() {
            let mut reasons = Vec::new();
            for list in &self.tags {
                if has_tags(dated.snapshot, list) {
                    reasons.push(format!("has tags [{}]", list.join(", ")));
                }
            }
            if let Some((since, within)) = &within_since
                && since.is_none_or(|since| dated.time > since)
            {
                reasons.push(format!("within {within}"));
            }
            for (bucket, left, last) in &mut counts {
                if *left == 0 {
                    continue;
                }
                let value = bucket.of(dated.time, position);
                if *last != Some(value) {
                    *last = Some(value);
                    *left -= 1;
                    reasons.push(bucket.reason().to_string());
                }
            }
            if reasons.is_empty() {
                remove.push(dated.snapshot.id.clone());
            } else {
                keep.push(Kept {
                    id: dated.snapshot.id.clone(),
                    reasons,
                });
            }
        }
        (keep, remove)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: &str, time: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            id: id.into(),
            time: time.into(),
            hostname: "web-1".into(),
            paths: vec!["/srv".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn params(retention: Retention) -> ForgetParams {
        ForgetParams {
            retention,
            tags: Vec::new(),
            prune: false,
        }
    }

    fn kept(groups: &[Group]) -> Vec<&str> {
        groups
            .iter()
            .flat_map(|g| g.keep.iter().map(|k| k.id.as_str()))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn durations_parse_as_restic_parses_them() {
        assert_eq!(
            Within::parse("2y5m7d3h"),
            Ok(Within {
                years: 2,
                months: 5,
                days: 7,
                hours: 3
            })
        );
        assert_eq!(Within::parse(" 7d ").map(|w| w.days), Ok(7));
        assert_eq!(Within::parse("3h1y").unwrap().to_string(), "1y3h");
        for bad in ["", "7", "d", "7w", "1.5d", "-", "7d3"] {
            assert!(Within::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_month_back_from_the_31st_rolls_over_as_go_does() {
        let at = DateTime::parse_from_rfc3339("2025-03-31T12:00:00+02:00").unwrap();
        let month = Within::parse("1m").unwrap().before(at);
        assert_eq!(month.to_rfc3339(), "2025-03-03T12:00:00+02:00");
        let mixed = Within::parse("1y2d5h").unwrap().before(at);
        assert_eq!(mixed.to_rfc3339(), "2024-03-29T07:00:00+02:00");
    }

    #[test]
    fn days_are_counted_in_the_offset_each_snapshot_was_written_with() {
        // 22:30 UTC on the 1st and 00:30+02:00 on the 2nd are the same instant's neighbours
        // but different days for restic.
        let list = [
            snapshot("a", "2025-06-01T22:00:00Z", &[]),
            snapshot("b", "2025-06-02T00:30:00+02:00", &[]),
            snapshot("c", "2025-06-01T10:00:00Z", &[]),
        ];
        let p = params(Retention {
            keep_daily: Some(2),
            ..Retention::default()
        });
        let groups = preview(&list, "web-1", &p, now()).unwrap();
        // Newest first: b (22:30Z, day 2 in its offset), a (22:00Z, day 1); c is day 1 again.
        assert_eq!(kept(&groups), ["b", "a"]);
        assert_eq!(groups[0].remove, ["c"]);
    }

    #[test]
    fn other_hosts_and_untagged_snapshots_are_left_alone_and_groups_split_by_paths() {
        let mut other = snapshot("other", "2025-06-01T10:00:00Z", &["nightly"]);
        other.hostname = "web-2".into();
        let mut etc = snapshot("etc", "2025-06-01T11:00:00Z", &["nightly"]);
        etc.paths = vec!["/etc".into()];
        let list = [
            other,
            etc,
            snapshot("old", "2025-05-01T10:00:00Z", &["nightly"]),
            snapshot("new", "2025-06-01T10:00:00Z", &["nightly"]),
            snapshot("manual", "2025-04-01T10:00:00Z", &[]),
        ];
        let mut p = params(Retention {
            keep_last: Some(1),
            ..Retention::default()
        });
        p.tags = vec!["nightly".into()];
        let groups = preview(&list, "web-1", &p, now()).unwrap();
        let split: Vec<(&[String], Vec<&str>, &[String])> = groups
            .iter()
            .map(|g| {
                (
                    g.paths.as_slice(),
                    g.keep.iter().map(|k| k.id.as_str()).collect(),
                    g.remove.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            split,
            [
                (&["/etc".to_string()][..], vec!["etc"], &[][..]),
                (
                    &["/srv".to_string()][..],
                    vec!["new"],
                    &["old".to_string()][..]
                ),
            ]
        );
    }

    #[test]
    fn within_counts_from_the_newest_snapshot_not_in_the_future_and_tags_keep_regardless() {
        let list = [
            snapshot("future", "2027-01-01T00:00:00Z", &[]),
            snapshot("newest", "2026-11-20T00:00:00Z", &[]),
            snapshot("inside", "2026-11-14T00:00:01Z", &[]),
            snapshot("edge", "2026-11-13T00:00:00Z", &[]),
            snapshot("tagged", "2020-01-01T00:00:00Z", &["keep"]),
        ];
        let p = params(Retention {
            keep_within: Some("7d".into()),
            keep_tags: vec!["keep".into()],
            ..Retention::default()
        });
        let groups = preview(&list, "web-1", &p, now()).unwrap();
        // "edge" is exactly 7 days before the newest: restic keeps only what is after.
        assert_eq!(kept(&groups), ["future", "newest", "inside", "tagged"]);
        assert_eq!(groups[0].remove, ["edge"]);
        assert_eq!(groups[0].keep[3].reasons, ["has tags [keep]"]);
    }

    #[test]
    fn a_time_restic_did_not_write_is_an_error_naming_the_snapshot() {
        let list = [snapshot("abc", "yesterday", &[])];
        let p = params(Retention {
            keep_last: Some(1),
            ..Retention::default()
        });
        assert_eq!(
            preview(&list, "web-1", &p, now()),
            Err(RetentionError::Time {
                id: "abc".into(),
                time: "yesterday".into()
            })
        );
    }
}
