//! The retention preview (`holdfast::retention::preview`) against the real restic as the
//! oracle: one repository with snapshots at generated times, written in several time zones,
//! for two hosts, two sets of paths and a few tags; then hundreds of generated policies, each
//! run as the agent runs it (`forget_args`, plus `--dry-run`), and the preview must keep and
//! remove exactly what restic says, for the same reasons, group by group.

mod common;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::fleet::{RESTIC, require_restic};
use holdfast::retention::{Group, preview};
use protocol::{ForgetParams, Retention, Snapshot};
use serde_json::Value;

const PASSWORD: &str = "retention oracle";
const SNAPSHOTS: usize = 70;
const POLICIES: usize = 250;

/// splitmix64: the same cases on every run, without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn restic(repo: &Path, zone: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(RESTIC)
        .args(args)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("TZ", zone)
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .output()
        .expect("restic runs");
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Times that cross the boundaries the buckets care about: years (2020 has an ISO week 53),
/// months of different lengths, DST changes, an hour's edge; and two in the future.
fn generated_times(random: &mut Random) -> Vec<DateTime<Utc>> {
    let anchors = [
        "2020-12-31T23:30:00Z",
        "2021-01-03T12:00:00Z",
        "2025-02-28T22:00:00Z",
        "2025-03-30T00:45:00Z",
        "2025-03-31T10:00:00Z",
        "2025-06-15T06:00:00Z",
        "2025-10-26T00:30:00Z",
        "2025-12-31T23:59:00Z",
        "2026-01-05T08:00:00Z",
        "2026-11-20T03:00:00Z",
    ];
    let mut times: Vec<DateTime<Utc>> = (0..SNAPSHOTS - 2)
        .map(|n| {
            let anchor: DateTime<Utc> = random.pick(&anchors).parse().unwrap();
            let spread = match random.below(4) {
                0 => Duration::minutes(random.below(120) as i64),
                1 => Duration::hours(random.below(72) as i64),
                2 => Duration::days(random.below(40) as i64),
                _ => Duration::days(random.below(400) as i64),
            };
            // Distinct seconds: restic orders equal times as it happens to read them.
            anchor - spread + Duration::seconds(n as i64)
        })
        .collect();
    let future = Utc::now() + Duration::days(90);
    times.push(future);
    times.push(future + Duration::hours(5));
    times
}

fn make_snapshots(repo: &Path, data: &Path, random: &mut Random) -> Vec<Snapshot> {
    let zones = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ];
    let (a, b) = (data.join("a"), data.join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("file"), dir.display().to_string()).unwrap();
    }
    for time in generated_times(random) {
        let zone = *random.pick(&zones);
        let tz: chrono_tz::Tz = zone.parse().unwrap();
        let local = tz
            .from_utc_datetime(&time.naive_utc())
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let host = if random.chance(80) { "web-1" } else { "web-2" };
        let mut args = vec!["backup", "--quiet", "--host", host, "--time", &local];
        for tag in ["nightly", "db", "keep"] {
            if random.chance(35) {
                args.extend(["--tag", tag]);
            }
        }
        let a = a.to_str().unwrap();
        let b = b.to_str().unwrap();
        match random.below(3) {
            0 => args.push(a),
            1 => args.push(b),
            _ => args.extend([b, a]),
        }
        restic(repo, zone, &args);
    }
    let out = restic(repo, "UTC", &["snapshots", "--json"]);
    serde_json::from_slice(&out.stdout).expect("restic's snapshot list")
}

fn generated_policy(random: &mut Random) -> (String, ForgetParams) {
    let count = |random: &mut Random| random.chance(35).then(|| 1 + random.below(8) as u32);
    loop {
        let retention = Retention {
            keep_last: count(random),
            keep_hourly: count(random),
            keep_daily: count(random),
            keep_weekly: count(random),
            keep_monthly: count(random),
            keep_yearly: count(random),
            keep_within: random
                .chance(30)
                .then(|| {
                    random
                        .pick(&["7d", "1m", "1y2m", "36h", "3d12h", "2y", "45d", "1m1d"])
                        .to_string()
                })
                .clone(),
            keep_tags: if random.chance(20) {
                vec![random.pick(&["keep", "nightly,db", "db"]).to_string()]
            } else {
                Vec::new()
            },
        };
        if retention.is_empty() {
            continue;
        }
        let tags = match random.below(4) {
            0 => vec!["nightly".to_string()],
            1 => vec!["nightly".to_string(), "db".to_string()],
            _ => Vec::new(),
        };
        let host = if random.chance(80) { "web-1" } else { "web-2" };
        return (
            host.to_string(),
            ForgetParams {
                retention,
                tags,
                prune: false,
            },
        );
    }
}

/// restic's answer, as the preview states it: per group, the kept ids with their reasons and
/// the removed ids, newest first; groups sorted by host and paths.
fn restic_groups(json: &[u8]) -> Vec<Group> {
    let groups: Vec<Value> = serde_json::from_slice(json).expect("forget's JSON");
    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|s| s["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<Group> = groups
        .iter()
        .map(|g| {
            let mut paths: Vec<String> = serde_json::from_value(g["paths"].clone()).unwrap();
            paths.sort();
            let reasons = g["reasons"].as_array().cloned().unwrap_or_default();
            let keep = ids(&g["keep"])
                .into_iter()
                .zip(reasons)
                .map(|(id, r)| holdfast::retention::Kept {
                    id,
                    reasons: serde_json::from_value(r["matches"].clone()).unwrap(),
                })
                .collect();
            Group {
                hostname: g["host"].as_str().unwrap().to_string(),
                paths,
                keep,
                remove: ids(&g["remove"]),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.hostname, &a.paths).cmp(&(&b.hostname, &b.paths)));
    out
}

#[test]
fn the_preview_keeps_and_removes_exactly_what_restic_forget_does() {
    require_restic();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    restic(&repo, "UTC", &["init", "--quiet"]);
    let mut random = Random(0x5eed_2026_1201);
    let snapshots = make_snapshots(&repo, &dir.path().join("data"), &mut random);
    assert_eq!(snapshots.len(), SNAPSHOTS);

    let mut removed_somewhere = 0;
    for case in 0..POLICIES {
        let (host, params) = generated_policy(&mut random);
        let mut args = holdfast_agent::runner::forget_args(&host, &params);
        args.push("--dry-run".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The agent's zone is UTC here: a newest snapshot written in the forget's own zone is
        // the one case where Go reckons `keepWithin` in that zone rather than the offset.
        let out = restic(&repo, "UTC", &args);
        let expected = restic_groups(&out.stdout);
        let previewed = preview(&snapshots, &host, &params, Utc::now()).unwrap();
        assert_eq!(
            previewed, expected,
            "case {case}: host {host}, {params:?}\nrestic forget {args:?}"
        );
        removed_somewhere += usize::from(expected.iter().any(|g| !g.remove.is_empty()));
    }
    // The cases are worth something only if many remove and many keep.
    assert!(
        removed_somewhere > POLICIES / 3 && removed_somewhere < POLICIES,
        "{removed_somewhere} of {POLICIES} policies removed snapshots"
    );
}
