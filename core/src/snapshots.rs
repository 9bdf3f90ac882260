//! Snapshot objects from what agents report, and what retention will do to them: which forget
//! run removes each snapshot and when, a host's next forget, and the warnings `holdfast plan`
//! gives about a policy. Values in, values out; the controller stores the lists.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, Utc};
use protocol::{ForgetParams, HostPlan, Operation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::records::{HOST_LABEL, REPO_LABEL, SCHEDULE_LABEL};
use crate::resources::{MANAGED_BY, Snapshot, SnapshotSpec, SnapshotStatus};
use crate::retention::{self, RetentionError};

/// The most snapshots kept per host and repo: the newest this many of each report.
pub const MAX_PER_HOST_REPO: usize = 1000;

/// The longest object name Kubernetes takes (a DNS subdomain).
const MAX_NAME: usize = 253;

/// What the controller knows of the Backup that made a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Origin {
    pub backup: Option<String>,
    pub schedule: Option<String>,
    /// The backup's `totalBytesProcessed`.
    pub size: Option<u64>,
}

/// One snapshot as the controller keeps it: as reported, with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub snapshot: protocol::Snapshot,
    pub origin: Origin,
}

/// restic's short id: the first eight characters.
/// The label a Snapshot carries with the value of one of its selectable fields (`spec.host`,
/// `spec.repo`, `spec.schedule`), so that a field selector is answered as a label selector.
pub fn label_of_field(field: &str) -> Option<&'static str> {
    match field {
        "spec.host" => Some(HOST_LABEL),
        "spec.repo" => Some(REPO_LABEL),
        "spec.schedule" => Some(SCHEDULE_LABEL),
        _ => None,
    }
}

pub fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// `<host>-<repo>-<short id>`: stable, and valid because host and repo names are. A name too
/// long for Kubernetes keeps its end and replaces host and repo by a digest of them.
pub fn object_name(host: &str, repo: &str, id: &str) -> String {
    let name = format!("{host}-{repo}-{}", short_id(id));
    if name.len() <= MAX_NAME {
        return name;
    }
    let digest = hex::encode(Sha256::digest(format!("{host}/{repo}")));
    format!("snapshot-{}-{}", &digest[..16], short_id(id))
}

fn parsed(snapshot: &protocol::Snapshot) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(&snapshot.time).ok()
}

/// The part of a report the controller keeps: the newest [`MAX_PER_HOST_REPO`], newest first
/// (a time that does not parse sorts last).
pub fn bounded(mut snapshots: Vec<protocol::Snapshot>) -> Vec<protocol::Snapshot> {
    snapshots.sort_by_key(|s| std::cmp::Reverse(parsed(s)));
    snapshots.truncate(MAX_PER_HOST_REPO);
    snapshots
}

/// One forget run to come on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForgetRun<'a> {
    pub schedule: &'a str,
    pub params: &'a ForgetParams,
    pub at: DateTime<Utc>,
}

/// The next run of each forget schedule `plan` runs on `repo` after `now`, soonest first; none
/// while the host is paused, none of a suspended schedule.
pub fn forget_runs<'a>(plan: &'a HostPlan, repo: &str, now: DateTime<Utc>) -> Vec<ForgetRun<'a>> {
    if plan.paused {
        return Vec::new();
    }
    let mut runs: Vec<ForgetRun> = plan
        .schedules
        .iter()
        .filter(|s| s.operation == Operation::Forget && !s.suspend && s.repo.name == repo)
        .filter_map(|s| {
            Some(ForgetRun {
                schedule: &s.name,
                params: s.forget.as_ref()?,
                at: crate::status::next_run(s, now)?,
            })
        })
        .collect();
    runs.sort_by(|a, b| (a.at, a.schedule).cmp(&(b.at, b.schedule)));
    runs
}

/// When a snapshot goes, and by which schedule's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    pub at: DateTime<Utc>,
    pub schedule: String,
}

/// What one forget run to come does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEffect {
    pub schedule: String,
    pub at: DateTime<Utc>,
    /// Ids it removes.
    pub removes: Vec<String>,
    /// How many of the host's snapshots in its scope it keeps.
    pub keeps: usize,
}

/// What the forget runs to come do to a host's snapshots in one repo.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    /// By snapshot id: the first run that removes it. A snapshot not here is kept.
    pub removals: BTreeMap<String, Removal>,
    /// Each run's effect, soonest first.
    pub runs: Vec<RunEffect>,
}

/// Each run of `runs` (soonest first) previewed at its time on what the runs before it leave,
/// as if no new snapshot came in between.
pub fn projection(
    snapshots: &[protocol::Snapshot],
    host: &str,
    runs: &[ForgetRun],
) -> Result<Projection, RetentionError> {
    let mut left: Vec<protocol::Snapshot> = snapshots.to_vec();
    let mut out = Projection::default();
    for run in runs {
        let groups = retention::preview(&left, host, run.params, run.at)?;
        let removes: Vec<String> = groups.iter().flat_map(|g| g.remove.clone()).collect();
        let keeps = groups.iter().map(|g| g.keep.len()).sum();
        for id in &removes {
            out.removals.entry(id.clone()).or_insert_with(|| Removal {
                at: run.at,
                schedule: run.schedule.to_string(),
            });
        }
        let gone: BTreeSet<&String> = removes.iter().collect();
        left.retain(|s| !gone.contains(&s.id));
        out.runs.push(RunEffect {
            schedule: run.schedule.to_string(),
            at: run.at,
            removes,
            keeps,
        });
    }
    Ok(out)
}

/// The Snapshot object of one known snapshot of `host` in `repo`.
pub fn object(
    namespace: &str,
    host: &str,
    repo: &str,
    known: &Known,
    removal: Option<&Removal>,
) -> Snapshot {
    let s = &known.snapshot;
    let mut object = Snapshot::new(
        &object_name(host, repo, &s.id),
        SnapshotSpec {
            host: host.to_string(),
            repo: repo.to_string(),
            id: s.id.clone(),
            short_id: short_id(&s.id),
            time: s.time.clone(),
            hostname: s.hostname.clone(),
            paths: s.paths.clone(),
            tags: s.tags.clone(),
            size: known.origin.size,
            backup: known.origin.backup.clone(),
            schedule: known.origin.schedule.clone(),
        },
    );
    object.metadata.namespace = Some(namespace.to_string());
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (HOST_LABEL.to_string(), host.to_string()),
        (REPO_LABEL.to_string(), repo.to_string()),
    ]);
    if let Some(schedule) = &known.origin.schedule {
        labels.insert(SCHEDULE_LABEL.to_string(), schedule.clone());
    }
    object.metadata.labels = Some(labels);
    object.status = Some(SnapshotStatus {
        forget_at: removal.map(|r| crate::time::k8s(r.at)),
        forget_schedule: removal.map(|r| r.schedule.clone()),
    });
    object
}

/// The Snapshot objects of a host's snapshots in one repo, with when each goes under `plan`'s
/// forget schedules (none without a plan).
pub fn objects(
    namespace: &str,
    host: &str,
    repo: &str,
    known: &[Known],
    plan: Option<&HostPlan>,
    now: DateTime<Utc>,
) -> Vec<Snapshot> {
    let runs = plan.map_or_else(Vec::new, |p| forget_runs(p, repo, now));
    let listed: Vec<protocol::Snapshot> = known.iter().map(|k| k.snapshot.clone()).collect();
    // A snapshot whose time does not read stops the preview: then nothing is projected.
    let projection = projection(&listed, host, &runs).unwrap_or_default();
    known
        .iter()
        .map(|k| {
            let removal = projection.removals.get(&k.snapshot.id);
            object(namespace, host, repo, k, removal)
        })
        .collect()
}

/// Why `holdfast plan` warns about a forget policy on a host's snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyWarning {
    /// It removes every snapshot in its scope but one.
    KeepsOnlyOne { removes: usize },
    /// It keeps fewer than the last successful run of the schedule kept.
    KeepsFewer { keeps: usize, kept: usize },
}

impl std::fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyWarning::KeepsOnlyOne { removes } => write!(
                f,
                "the policy removes every snapshot but one ({removes} removed, 1 kept)"
            ),
            PolicyWarning::KeepsFewer { keeps, kept } => write!(
                f,
                "the policy keeps {keeps} snapshots, fewer than the {kept} its last successful run kept"
            ),
        }
    }
}

/// What a forget run with `params` at `at` does to `snapshots` of `host`, and the warnings it
/// deserves. `last_success`: when the schedule's last successful run on the host finished; the
/// snapshots in scope taken before it are those it kept (no forget ran since).
pub fn check_policy(
    snapshots: &[protocol::Snapshot],
    host: &str,
    params: &ForgetParams,
    at: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
) -> Result<(Vec<retention::Group>, Vec<PolicyWarning>), RetentionError> {
    let groups = retention::preview(snapshots, host, params, at)?;
    let keeps: usize = groups.iter().map(|g| g.keep.len()).sum();
    let removes: usize = groups.iter().map(|g| g.remove.len()).sum();
    let mut warnings = Vec::new();
    if keeps == 1 && removes > 0 {
        warnings.push(PolicyWarning::KeepsOnlyOne { removes });
    }
    if let Some(finished) = last_success {
        let before: Vec<protocol::Snapshot> = snapshots
            .iter()
            .filter(|s| parsed(s).is_some_and(|t| t.to_utc() <= finished))
            .cloned()
            .collect();
        let kept: usize = retention::preview(&before, host, params, finished)?
            .iter()
            .map(|g| g.keep.len() + g.remove.len())
            .sum();
        if keeps < kept {
            warnings.push(PolicyWarning::KeepsFewer { keeps, kept });
        }
    }
    Ok((groups, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Retention;

    fn snap(id: &str, time: &str, tags: &[&str]) -> protocol::Snapshot {
        protocol::Snapshot {
            id: id.to_string(),
            time: time.to_string(),
            hostname: "web-1".into(),
            paths: vec!["/srv".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().to_utc()
    }

    fn keep_last(n: u32) -> ForgetParams {
        ForgetParams {
            retention: Retention {
                keep_last: Some(n),
                ..Retention::default()
            },
            tags: vec![],
            prune: false,
        }
    }

    /// Four daily snapshots of web-1, oldest first, ids a… to d….
    fn four() -> Vec<protocol::Snapshot> {
        ["a", "b", "c", "d"]
            .iter()
            .enumerate()
            .map(|(i, id)| {
                snap(
                    &format!("{id}0000000111122223333"),
                    &format!("2026-12-0{}T01:00:00+01:00", i + 1),
                    &[],
                )
            })
            .collect()
    }

    #[test]
    fn names_are_host_repo_and_short_id_and_stay_short_enough() {
        assert_eq!(
            object_name("web-1", "nas", "0123456789abcdef"),
            "web-1-nas-01234567"
        );
        let long = "h".repeat(250);
        let name = object_name(&long, "nas", "0123456789abcdef");
        assert!(name.len() <= MAX_NAME, "{name}");
        assert!(name.starts_with("snapshot-") && name.ends_with("-01234567"));
        assert_ne!(name, object_name(&long, "other", "0123456789abcdef"));
    }

    #[test]
    fn a_report_keeps_its_newest_snapshots_newest_first() {
        let many: Vec<_> = (0..MAX_PER_HOST_REPO + 5)
            .map(|i| {
                let t = at("2026-01-01T00:00:00Z") + chrono::Duration::hours(i as i64);
                snap(&format!("{i:08}"), &t.to_rfc3339(), &[])
            })
            .collect();
        let kept = bounded(many);
        assert_eq!(kept.len(), MAX_PER_HOST_REPO);
        assert_eq!(kept[0].id, format!("{:08}", MAX_PER_HOST_REPO + 4));
        assert_eq!(kept.last().unwrap().id, format!("{:08}", 5));
    }

    #[test]
    fn the_object_carries_the_snapshot_its_origin_labels_and_when_it_goes() {
        let known = Known {
            snapshot: snap(
                "0123456789abcdef",
                "2026-12-01T02:00:00+01:00",
                &["nightly"],
            ),
            origin: Origin {
                backup: Some("nightly-web-1-20261201-010000".into()),
                schedule: Some("nightly".into()),
                size: Some(4096),
            },
        };
        let removal = Removal {
            at: at("2026-12-08T03:00:00Z"),
            schedule: "prune-weekly".into(),
        };
        let o = object("fleet", "web-1", "nas", &known, Some(&removal));
        let json = serde_json::to_value(&o).unwrap();
        assert_eq!(json["metadata"]["name"], "web-1-nas-01234567");
        assert_eq!(json["metadata"]["namespace"], "fleet");
        assert_eq!(json["metadata"]["labels"]["holdfast.dev/host"], "web-1");
        assert_eq!(json["metadata"]["labels"]["holdfast.dev/repo"], "nas");
        assert_eq!(
            json["metadata"]["labels"]["holdfast.dev/schedule"],
            "nightly"
        );
        assert_eq!(json["spec"]["shortId"], "01234567");
        assert_eq!(json["spec"]["time"], "2026-12-01T02:00:00+01:00");
        assert_eq!(json["spec"]["size"], 4096);
        assert_eq!(json["spec"]["backup"], "nightly-web-1-20261201-010000");
        assert_eq!(json["spec"]["tags"], serde_json::json!(["nightly"]));
        assert_eq!(json["status"]["forgetAt"], "2026-12-08T03:00:00Z");
        assert_eq!(json["status"]["forgetSchedule"], "prune-weekly");

        let unknown = Known {
            origin: Origin::default(),
            ..known
        };
        let json = serde_json::to_value(object("fleet", "web-1", "nas", &unknown, None)).unwrap();
        assert!(
            json["metadata"]["labels"]
                .get("holdfast.dev/schedule")
                .is_none()
        );
        assert!(json["spec"].get("size").is_none());
        assert!(json["status"].get("forgetAt").is_none());
    }

    #[test]
    fn each_run_removes_from_what_the_runs_before_it_left() {
        let snapshots = four();
        let (three, two) = (keep_last(3), keep_last(2));
        let runs = [
            ForgetRun {
                schedule: "keep-3",
                params: &three,
                at: at("2026-12-05T02:00:00Z"),
            },
            ForgetRun {
                schedule: "keep-2",
                params: &two,
                at: at("2026-12-06T02:00:00Z"),
            },
        ];
        let p = projection(&snapshots, "web-1", &runs).unwrap();
        assert_eq!(p.runs[0].removes, vec![snapshots[0].id.clone()]);
        assert_eq!(p.runs[0].keeps, 3);
        assert_eq!(p.runs[1].removes, vec![snapshots[1].id.clone()]);
        assert_eq!(p.runs[1].keeps, 2);
        assert_eq!(p.removals[&snapshots[0].id].schedule, "keep-3");
        assert_eq!(p.removals[&snapshots[1].id].schedule, "keep-2");
        assert_eq!(p.removals[&snapshots[1].id].at, at("2026-12-06T02:00:00Z"));
        assert!(!p.removals.contains_key(&snapshots[2].id));
        assert!(!p.removals.contains_key(&snapshots[3].id));
    }

    fn plan(schedules: serde_json::Value, paused: bool) -> HostPlan {
        serde_json::from_value(serde_json::json!({
            "namespace": "fleet", "host": "web-1", "paused": paused, "schedules": schedules,
        }))
        .unwrap()
    }

    fn forget_schedule(name: &str, repo: &str, cron: &str, suspend: bool) -> serde_json::Value {
        serde_json::json!({
            "name": name, "operation": "forget", "cron": cron, "timeZone": "UTC",
            "repo": {"name": repo, "url": "/srv/repo", "password": {"controllerFile": {"path": "/p"}}},
            "forget": {"retention": {"keepLast": 2}},
            "concurrencyPolicy": "Forbid", "missedRunPolicy": "Skip", "suspend": suspend,
        })
    }

    #[test]
    fn forget_runs_are_the_repos_unsuspended_forget_schedules_soonest_first() {
        let p = plan(
            serde_json::json!([
                forget_schedule("daily", "nas", "0 0 3 * * *", false),
                forget_schedule("hourly", "nas", "0 30 * * * *", false),
                forget_schedule("elsewhere", "s3", "0 0 * * * *", false),
                forget_schedule("off", "nas", "0 0 * * * *", true),
            ]),
            false,
        );
        let now = at("2026-12-02T10:10:00Z");
        let runs = forget_runs(&p, "nas", now);
        let names: Vec<_> = runs.iter().map(|r| (r.schedule, r.at)).collect();
        assert_eq!(
            names,
            vec![
                ("hourly", at("2026-12-02T10:30:00Z")),
                ("daily", at("2026-12-03T03:00:00Z")),
            ]
        );
        let paused = plan(
            serde_json::json!([forget_schedule("daily", "nas", "0 0 3 * * *", false)]),
            true,
        );
        assert!(forget_runs(&paused, "nas", now).is_empty());
    }

    #[test]
    fn objects_project_the_plans_forget_onto_each_snapshot() {
        let p = plan(
            serde_json::json!([forget_schedule("daily", "nas", "0 0 3 * * *", false)]),
            false,
        );
        let known: Vec<Known> = four()
            .into_iter()
            .map(|snapshot| Known {
                snapshot,
                origin: Origin::default(),
            })
            .collect();
        let objects = objects(
            "fleet",
            "web-1",
            "nas",
            &known,
            Some(&p),
            at("2026-12-05T00:00:00Z"),
        );
        let going: Vec<bool> = objects
            .iter()
            .map(|o| o.status.as_ref().unwrap().forget_at.is_some())
            .collect();
        assert_eq!(going, vec![true, true, false, false], "keepLast 2 of 4");
        let first = objects[0].status.as_ref().unwrap();
        assert_eq!(
            first.forget_at.as_ref().map(crate::time::chrono),
            Some(at("2026-12-05T03:00:00Z"))
        );
        assert_eq!(first.forget_schedule.as_deref(), Some("daily"));
        let none = super::objects(
            "fleet",
            "web-1",
            "nas",
            &known,
            None,
            at("2026-12-05T00:00:00Z"),
        );
        assert!(
            none.iter()
                .all(|o| o.status.as_ref().unwrap().forget_at.is_none())
        );
    }

    #[test]
    fn a_policy_keeping_one_or_fewer_than_last_time_is_warned_about() {
        let snapshots = four();
        let now = at("2026-12-05T00:00:00Z");
        let (_, warnings) = check_policy(&snapshots, "web-1", &keep_last(1), now, None).unwrap();
        assert_eq!(warnings, vec![PolicyWarning::KeepsOnlyOne { removes: 3 }]);

        // The last run finished after the third snapshot: it kept three.
        let last = Some(at("2026-12-03T12:00:00Z"));
        let (groups, warnings) =
            check_policy(&snapshots, "web-1", &keep_last(2), now, last).unwrap();
        assert_eq!(groups[0].keep.len(), 2);
        assert_eq!(
            warnings,
            vec![PolicyWarning::KeepsFewer { keeps: 2, kept: 3 }]
        );
        assert_eq!(
            warnings[0].to_string(),
            "the policy keeps 2 snapshots, fewer than the 3 its last successful run kept"
        );

        let (_, warnings) = check_policy(&snapshots, "web-1", &keep_last(3), now, last).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // Only one snapshot at all: nothing removed, nothing to warn about.
        let (_, warnings) =
            check_policy(&snapshots[..1], "web-1", &keep_last(1), now, None).unwrap();
        assert!(warnings.is_empty());
    }
}
