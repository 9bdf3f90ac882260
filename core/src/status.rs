//! Status computation: a pure function from desired state, what agents said and the run records
//! to the status of every resource. Both status sinks write what this returns.
//!
//! `observedGeneration` and the conditions' `lastTransitionTime` depend on what was written
//! before; the sink fills them in with [`finish_conditions`].

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use protocol::ResolvedSchedule;

use crate::compile::{Fleet, HostKey};
use crate::facts::{AgentRecord, SizePoint};
use crate::resources::{
    Host, HostStatus, Phase, RepoStatus, Schedule, ScheduleHostStatus, ScheduleStatus,
};
use crate::revision::{Revision, name_of, namespace_of};
use crate::scrub::ScrubCycle;
use crate::summaries::{RepoRuns, RunSummaries, ScheduleRuns};
use crate::validate::parse_duration;
use crate::versions::Versioned;

/// Everything status is computed from.
pub struct Inputs<'a> {
    pub now: DateTime<Utc>,
    pub revision: &'a Revision,
    pub fleet: &'a Fleet,
    pub versions: &'a BTreeMap<HostKey, Versioned>,
    pub agents: &'a BTreeMap<HostKey, AgentRecord>,
    /// Hosts whose agent is connected and heard from within the offline grace.
    pub online: &'a dyn Fn(&HostKey) -> bool,
    /// What the run records say of each host, schedule and repo.
    pub runs: &'a RunSummaries,
    pub repo_sizes: &'a BTreeMap<(String, String), SizePoint>,
    pub snapshot_counts: &'a BTreeMap<(String, String), u64>,
    /// Each repo's cycle of rotating checks.
    pub scrub: &'a BTreeMap<(String, String), ScrubCycle>,
    /// When each Schedule was first seen, the start of its staleness clock.
    pub schedule_created: &'a dyn Fn(&str, &str) -> Option<DateTime<Utc>>,
}

fn condition(kind: &str, ok: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Default::default()),
    }
}

/// Sets every condition's `observedGeneration`, and its `lastTransitionTime` to `now` unless
/// the previous status had the same condition with the same status.
pub fn finish_conditions(
    conditions: &mut [Condition],
    previous: &[Condition],
    generation: i64,
    now: DateTime<Utc>,
) {
    for c in conditions {
        c.observed_generation = Some(generation);
        c.last_transition_time = previous
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .map(|p| p.last_transition_time.clone())
            .unwrap_or(crate::time::k8s(now));
    }
}

/// Status of every Host, by key.
pub fn hosts(inputs: &Inputs) -> BTreeMap<HostKey, HostStatus> {
    inputs
        .revision
        .hosts
        .iter()
        .map(|h| (HostKey::new(namespace_of(h), name_of(h)), host(inputs, h)))
        .collect()
}

/// How precisely Host status tells when an agent was last heard: while it is connected, its
/// `online` says more, and a coarser step rewrites each host's status once in five minutes
/// instead of every minute.
pub fn last_seen_step(online: bool) -> chrono::Duration {
    chrono::Duration::minutes(if online { 5 } else { 1 })
}

/// Whether an online host's `lastSeen` as status shows it moves when it is heard at `now`.
pub fn last_seen_moved(before: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let step = last_seen_step(true);
    before.is_none_or(|t| t.duration_trunc(step).ok() != now.duration_trunc(step).ok())
}

/// Status of one Host.
pub fn host(inputs: &Inputs, host: &Host) -> HostStatus {
    let key = HostKey::new(namespace_of(host), name_of(host));
    let agent = inputs.agents.get(&key).cloned().unwrap_or_default();
    let online = (inputs.online)(&key);
    let desired = inputs.versions.get(&key).map(|v| v.version);
    let applied = agent.applied_version;
    let in_sync = desired.is_some() && desired == applied;
    let drift = (!in_sync).then(|| drift_reason(online, &agent, desired));
    let mut conditions = vec![
        match (online, agent.last_seen) {
            (true, _) => condition(
                "AgentConnected",
                true,
                "Connected",
                "the agent is connected",
            ),
            (false, None) => condition(
                "AgentConnected",
                false,
                "NeverConnected",
                format!(
                    "no agent has connected yet; enroll one with `holdfast token create {key}`"
                ),
            ),
            (false, Some(_)) => condition(
                "AgentConnected",
                false,
                "Disconnected",
                "the agent is not connected",
            ),
        },
        match &drift {
            None => condition(
                "ScheduleInSync",
                true,
                "InSync",
                format!(
                    "the agent runs schedule version {}",
                    applied.unwrap_or_default()
                ),
            ),
            Some((reason, message)) => condition("ScheduleInSync", false, reason, message.clone()),
        },
    ];
    let awaiting = online && !in_sync && agent.rejected.is_none();
    conditions.push(condition(
        "Reconciling",
        awaiting,
        if awaiting { "AwaitingAck" } else { "Idle" },
        if awaiting {
            "schedule sent; waiting for the agent to acknowledge it"
        } else {
            "nothing to push"
        },
    ));
    if let Some(rejected) = &agent.rejected {
        conditions.push(condition(
            "Stalled",
            true,
            "AgentRejected",
            rejected.clone(),
        ));
    }
    let ready = online && in_sync;
    conditions.push(condition(
        "Ready",
        ready,
        if ready {
            "Ready"
        } else if !online {
            "AgentOffline"
        } else {
            "Drift"
        },
        if ready {
            "the agent is connected and runs the desired schedule".to_string()
        } else if !online {
            "the agent is not connected".to_string()
        } else {
            "the agent does not run the desired schedule yet".to_string()
        },
    ));
    HostStatus {
        observed_generation: None,
        conditions,
        online: Some(online),
        // A heartbeat must not rewrite every host's status.
        last_seen: agent
            .last_seen
            .and_then(|t| t.duration_trunc(last_seen_step(online)).ok())
            .map(crate::time::k8s),
        agent_version: agent.agent_version.clone(),
        restic_version: agent.restic_version.clone(),
        protocol_version: agent.protocol_version,
        os: agent.os.clone(),
        arch: agent.arch.clone(),
        desired_schedule_version: desired,
        desired_schedule_digest: inputs
            .versions
            .get(&HostKey::new(namespace_of(host), name_of(host)))
            .map(|v| v.digest.clone()),
        applied_schedule_version: applied,
        drift_reason: drift.map(|(_, message)| message),
        last_backup: inputs.runs.last_backup(&key).cloned(),
        last_drill: inputs.runs.last_drill(&key),
    }
}

fn drift_reason(online: bool, agent: &AgentRecord, desired: Option<u64>) -> (&'static str, String) {
    let desired = desired.unwrap_or_default();
    let applied = agent.applied_version.unwrap_or_default();
    if !online {
        (
            "AgentOffline",
            format!(
                "the agent is offline; it runs version {applied} and gets version {desired} when it reconnects"
            ),
        )
    } else if let Some(rejected) = &agent.rejected {
        (
            "AgentRejected",
            format!("the agent rejected version {desired}: {rejected}"),
        )
    } else {
        (
            "AwaitingAck",
            format!("version {desired} was sent; the agent runs version {applied}"),
        )
    }
}

/// The longest gap between two runs of a cron, sampled over its next runs: the default
/// `staleAfter` is twice this.
pub fn longest_gap(cron: &str) -> Option<Duration> {
    let schedule = cron::Schedule::from_str(cron).ok()?;
    let start = DateTime::<Utc>::from_timestamp(946_684_800, 0)?;
    let times: Vec<DateTime<Utc>> = schedule.after(&start).take(400).collect();
    times
        .windows(2)
        .filter_map(|w| (w[1] - w[0]).to_std().ok())
        .max()
}

/// How long a host may go without a successful run before it is stale.
pub fn stale_after(schedule: &Schedule, resolved: Option<&ResolvedSchedule>) -> Option<Duration> {
    Crons::default().stale_after(schedule, resolved?)
}

/// The next time a resolved schedule fires, jitter included.
pub fn next_run(schedule: &ResolvedSchedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Crons::default().next_run(schedule, now)
}

/// Cron work done once per cron expression and time zone, not once per host: every host of a
/// schedule shares its cron and differs only in jitter.
#[derive(Default)]
struct Crons {
    parsed: HashMap<String, Option<cron::Schedule>>,
    zones: HashMap<String, Option<chrono_tz::Tz>>,
    gaps: HashMap<String, Option<Duration>>,
}

impl Crons {
    fn stale_after(
        &mut self,
        schedule: &Schedule,
        resolved: &ResolvedSchedule,
    ) -> Option<Duration> {
        if let Some(text) = &schedule.spec.stale_after {
            return parse_duration(text).ok();
        }
        let gap = *self
            .gaps
            .entry(resolved.cron.clone())
            .or_insert_with(|| longest_gap(&resolved.cron));
        Some(gap? * 2 + Duration::from_secs(u64::from(resolved.jitter_seconds)))
    }

    fn next_run(
        &mut self,
        schedule: &ResolvedSchedule,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let cron = self
            .parsed
            .entry(schedule.cron.clone())
            .or_insert_with(|| cron::Schedule::from_str(&schedule.cron).ok())
            .as_ref()?;
        let tz = (*self
            .zones
            .entry(schedule.time_zone.clone())
            .or_insert_with(|| chrono_tz::Tz::from_str(&schedule.time_zone).ok()))?;
        let jitter = chrono::Duration::seconds(i64::from(schedule.jitter_seconds));
        cron.after(&(now - jitter).with_timezone(&tz))
            .next()
            .map(|t| t.with_timezone(&Utc) + jitter)
    }
}

/// Which hosts run each Schedule, in host order, with the index of the schedule in each host's
/// plan: made once per compiled fleet, so that one Schedule's status is computed from its own
/// hosts without reading every plan.
#[derive(Default)]
pub struct Runners(HashMap<(String, String), Vec<(HostKey, usize)>>);

impl Runners {
    pub fn of(fleet: &Fleet) -> Runners {
        let mut runners: HashMap<(String, String), Vec<(HostKey, usize)>> = HashMap::new();
        for (key, compiled) in &fleet.hosts {
            for (i, resolved) in compiled.plan.schedules.iter().enumerate() {
                runners
                    .entry((key.namespace.clone(), resolved.name.clone()))
                    .or_default()
                    .push((key.clone(), i));
            }
        }
        Runners(runners)
    }
}

/// Schedule statuses by `(namespace, name)`.
pub type ScheduleStatuses = BTreeMap<(String, String), ScheduleStatus>;

/// Status of every Schedule, by `(namespace, name)`.
pub fn schedules(inputs: &Inputs) -> ScheduleStatuses {
    schedules_until(inputs).0
}

/// Status of every Schedule, and the first time after `now` at which the clock alone changes
/// one: a host's next run comes, or a host turns stale. Until then, with nothing else
/// changed, the statuses stay as they are.
pub fn schedules_until(inputs: &Inputs) -> (ScheduleStatuses, Option<DateTime<Utc>>) {
    let runners = Runners::of(inputs.fleet);
    let mut crons = CronCache::default();
    let mut out = BTreeMap::new();
    let mut until: Option<DateTime<Utc>> = None;
    for schedule in &inputs.revision.schedules {
        let (status, at) = schedule_until(inputs, &runners, &mut crons, schedule);
        until = [until, at].into_iter().flatten().min();
        out.insert(
            (namespace_of(schedule).into(), name_of(schedule).into()),
            status,
        );
    }
    (out, until)
}

/// Cron work shared by the Schedules of one pass (see [`Crons`]).
#[derive(Default)]
pub struct CronCache(Crons);

/// Status of one Schedule, and the first time after `now` at which the clock alone changes
/// it.
pub fn schedule_until(
    inputs: &Inputs,
    runners: &Runners,
    crons: &mut CronCache,
    schedule: &Schedule,
) -> (ScheduleStatus, Option<DateTime<Utc>>) {
    let crons = &mut crons.0;
    let (namespace, name) = (namespace_of(schedule), name_of(schedule));
    let mut until: Option<DateTime<Utc>> = None;
    let mut upto = |at: DateTime<Utc>| {
        until = Some(until.map_or(at, |u| u.min(at)));
    };
    let created = (inputs.schedule_created)(namespace, name).unwrap_or(inputs.now);
    let mut status = ScheduleStatus::default();
    let mut stale_hosts = Vec::new();
    let hosts = runners
        .0
        .get(&(namespace.to_string(), name.to_string()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (key, i) in hosts {
        let Some(compiled) = inputs.fleet.hosts.get(key) else {
            continue;
        };
        let Some(resolved) = compiled.plan.schedules.get(*i) else {
            continue;
        };
        let paused = compiled.plan.paused;
        let none = ScheduleRuns::default();
        let mine = inputs
            .runs
            .schedule(namespace, name, &key.name)
            .unwrap_or(&none);
        let idle = schedule.spec.suspend || paused;
        let stale_at = (!idle)
            .then(|| crons.stale_after(schedule, resolved))
            .flatten()
            .and_then(|limit| chrono::Duration::from_std(limit).ok())
            .map(|limit| mine.last_success.unwrap_or(created) + limit);
        let stale = stale_at.is_some_and(|at| at < inputs.now);
        if let Some(at) = stale_at.filter(|_| !stale) {
            upto(at);
        }
        let next_run = (!idle)
            .then(|| crons.next_run(resolved, inputs.now))
            .flatten();
        if let Some(at) = next_run {
            upto(at);
        }
        if stale {
            stale_hosts.push(key.name.clone());
        }
        // Missed and skipped runs did no work: they neither make a host healthy nor end
        // its wait for a first run.
        let pending = !stale && mine.last_ended.is_none();
        let healthy = !stale
            && mine
                .last_ended
                .is_some_and(|(_, phase)| phase == Phase::Succeeded);
        status.host_count = Some(status.host_count.unwrap_or_default() + 1);
        status.healthy_hosts = Some(status.healthy_hosts.unwrap_or_default() + u32::from(healthy));
        status.pending_hosts = Some(status.pending_hosts.unwrap_or_default() + u32::from(pending));
        status.stale_hosts = Some(status.stale_hosts.unwrap_or_default() + u32::from(stale));
        let last_success_time = mine.last_success;
        let last_scheduled = mine.last_scheduled;
        status.last_schedule_time = status
            .last_schedule_time
            .max(last_scheduled.map(crate::time::k8s));
        status.last_successful_time = status
            .last_successful_time
            .max(last_success_time.map(crate::time::k8s));
        if let Some(at) = next_run.map(crate::time::k8s) {
            status.next_schedule_time = Some(match status.next_schedule_time.take() {
                Some(earlier) => earlier.min(at),
                None => at,
            });
        }
        status.hosts.push(ScheduleHostStatus {
            host: key.name.clone(),
            last_schedule_time: last_scheduled.map(crate::time::k8s),
            last_successful_time: last_success_time.map(crate::time::k8s),
            next_schedule_time: next_run.map(crate::time::k8s),
            last_result: mine.last.map(|(_, phase)| phase),
            last_missed_time: mine.last_missed.map(crate::time::k8s),
            stale,
            pending_first_run: pending,
        });
    }
    let ready = stale_hosts.is_empty();
    status.conditions.push(condition(
        "Ready",
        ready,
        if ready { "Healthy" } else { "HostsStale" },
        if ready {
            "every host has succeeded within staleAfter".to_string()
        } else {
            format!(
                "no successful run within staleAfter on {}",
                stale_hosts.join(", ")
            )
        },
    ));
    (status, until)
}

/// Status of every Repo, by `(namespace, name)`.
pub fn repos(inputs: &Inputs) -> BTreeMap<(String, String), RepoStatus> {
    let mut out = BTreeMap::new();
    for repo in &inputs.revision.repos {
        let id = (namespace_of(repo).to_string(), name_of(repo).to_string());
        let none = RepoRuns::default();
        let runs = inputs.runs.repo(&id.0, &id.1).unwrap_or(&none);
        let size = inputs.repo_sizes.get(&id);
        let last = runs.last.as_ref();
        let reachable = last.map(|r| r.phase == Phase::Succeeded);
        let mut status = RepoStatus {
            // Known missing only when a run said so; otherwise not known yet.
            initialized: if runs.succeeded {
                Some(true)
            } else {
                runs.missing.then_some(false)
            },
            snapshot_count: inputs.snapshot_counts.get(&id).copied(),
            size_bytes: size.map(|s| s.total_size),
            size: size.map(|s| human_bytes(s.total_size)),
            dedup_ratio: size.and_then(|s| {
                let raw = s.uncompressed_size? as f64;
                (s.total_size > 0).then(|| (raw / s.total_size as f64 * 100.0).round() / 100.0)
            }),
            last_check: runs.last_check.as_ref().map(|(_, check)| check.clone()),
            scrub: inputs.scrub.get(&id).and_then(ScrubCycle::status),
            last_updated: size.map(|s| crate::time::k8s(s.at)),
            ..RepoStatus::default()
        };
        status.conditions.push(match (reachable, last) {
            (Some(true), _) => {
                condition("Ready", true, "Reachable", "the last run on it succeeded")
            }
            (Some(false), Some(run)) => condition(
                "Ready",
                false,
                run.reason.as_deref().unwrap_or("RunFailed"),
                format!(
                    "the last run on it ({}) ended {:?}{}",
                    run.name,
                    run.phase,
                    run.message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ),
            _ => condition("Ready", false, "Unknown", "no run has used it yet"),
        });
        out.insert(id, status);
    }
    out
}

/// `12.3 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `1m23s`.
/// Seconds to restore `bytes` at a drill's rate: the recovery time a drill predicts. `None`
/// without a rate.
pub fn restore_estimate(bytes: u64, bytes_per_second: u64) -> Option<i64> {
    (bytes_per_second > 0)
        .then(|| i64::try_from(bytes.div_ceil(bytes_per_second)).unwrap_or(i64::MAX))
}

pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::RunRecord;
    use protocol::JobOperation;

    #[test]
    fn a_drill_rate_turns_a_data_size_into_a_restore_time() {
        assert_eq!(restore_estimate(10 << 30, 100 << 20), Some(103));
        assert_eq!(restore_estimate(1, 1000), Some(1));
        assert_eq!(restore_estimate(1 << 30, 0), None);
    }

    #[test]
    fn gaps_and_next_runs_follow_the_cron_and_jitter() {
        assert_eq!(
            longest_gap("0 0 3 * * *"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(longest_gap("*/5 * * * * *"), Some(Duration::from_secs(5)));
        // Weekdays only: the weekend makes the longest gap three days.
        assert_eq!(
            longest_gap("0 0 3 * * Mon-Fri"),
            Some(Duration::from_secs(3 * 86_400))
        );
        let schedule: ResolvedSchedule = serde_json::from_value(serde_json::json!({
            "name": "nightly", "operation": "backup", "cron": "0 0 3 * * *",
            "timeZone": "Europe/Berlin", "jitterSeconds": 90,
            "repo": {"name": "r", "url": "/r", "password": {"hostFile": {"path": "/p"}}},
            "concurrencyPolicy": "Forbid", "missedRunPolicy": "Skip"
        }))
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z")
            .unwrap()
            .to_utc();
        // 03:00 in Berlin in winter is 02:00 UTC, plus 90 s.
        assert_eq!(
            next_run(&schedule, now).map(|t| t.to_rfc3339()),
            Some("2026-01-11T02:01:30+00:00".to_string())
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let then = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let now = then + chrono::Duration::hours(1);
        let mut previous = vec![
            condition("Ready", true, "Ready", "ok"),
            condition("AgentConnected", true, "Connected", ""),
        ];
        finish_conditions(&mut previous, &[], 1, then);
        let mut next = vec![
            condition("Ready", true, "Ready", "still ok"),
            condition("AgentConnected", false, "Disconnected", ""),
        ];
        finish_conditions(&mut next, &previous, 2, now);
        assert_eq!(next[0].last_transition_time, crate::time::k8s(then));
        assert_eq!(next[1].last_transition_time, crate::time::k8s(now));
        assert_eq!(next[0].observed_generation, Some(2));
    }

    #[test]
    fn sizes_and_durations_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_258_291), "1.2 MiB");
        assert_eq!(human_duration(83), "1m23s");
        assert_eq!(human_duration(7_500), "2h5m");
    }

    fn object<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn every_hosts_status_at_once_equals_each_host_alone() {
        let revision = Revision {
            repos: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: nas}\nspec: {url: /srv/nas, password: {hostFile: /p}}\n",
            )],
            hosts: ["web-1", "web-2", "web-3"]
                .map(|h| {
                    object(&format!(
                        "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {{name: {h}}}\nspec: {{defaultRepo: nas}}\n"
                    ))
                })
                .to_vec(),
            schedules: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {name: nightly}\nspec: {operation: backup, cron: '0 1 * * *', hosts: [web-1, web-2, web-3], paths: [/srv]}\n",
            )],
            ..Revision::default()
        };
        let fleet = crate::compile::compile(&revision).unwrap();
        let now = Utc::now();
        let run = |host: &str, name: &str, op: JobOperation, minutes_ago: Option<i64>| RunRecord {
            phase: Phase::Succeeded,
            finished_at: minutes_ago.map(|m| now - chrono::Duration::minutes(m)),
            ..RunRecord::pending(
                crate::resources::Kind::Backup,
                &HostKey::new("default", host),
                name.into(),
                name.into(),
                op,
                now,
            )
        };
        let runs = vec![
            run("web-1", "old", JobOperation::Backup, Some(60)),
            run("web-1", "new", JobOperation::Backup, Some(5)),
            run("web-1", "forget", JobOperation::Forget, Some(1)),
            run("web-1", "running", JobOperation::Backup, None),
            run("web-2", "only", JobOperation::Backup, Some(30)),
        ];
        let online = |_: &HostKey| true;
        let created = |_: &str, _: &str| None;
        let (versions, agents, sizes, counts) = Default::default();
        let inputs = Inputs {
            now,
            revision: &revision,
            fleet: &fleet,
            versions: &versions,
            agents: &agents,
            online: &online,
            runs: &RunSummaries::of(&runs),
            repo_sizes: &sizes,
            snapshot_counts: &counts,
            scrub: &BTreeMap::new(),
            schedule_created: &created,
        };
        let all = hosts(&inputs);
        for h in &revision.hosts {
            let key = HostKey::new("default", name_of(h));
            assert_eq!(all[&key], host(&inputs, h), "{key}");
        }
        let last = |h: &str| {
            all[&HostKey::new("default", h)]
                .last_backup
                .as_ref()
                .map(|l| l.backup.clone())
        };
        assert_eq!(last("web-1").as_deref(), Some("new"));
        assert_eq!(last("web-2").as_deref(), Some("only"));
        assert_eq!(last("web-3"), None);
    }

    #[test]
    fn schedule_status_holds_until_a_next_run_or_a_host_turning_stale() {
        let revision = Revision {
            repos: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: nas}\nspec: {url: /srv/nas, password: {hostFile: /p}}\n",
            )],
            hosts: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {name: web-1}\nspec: {defaultRepo: nas}\n",
            )],
            schedules: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {name: nightly}\nspec: {operation: backup, cron: '0 1 * * *', hosts: [web-1], paths: [/srv], staleAfter: 30m}\n",
            )],
            ..Revision::default()
        };
        let fleet = crate::compile::compile(&revision).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let online = |_: &HostKey| true;
        let created = |_: &str, _: &str| Some(now - chrono::Duration::minutes(10));
        let (versions, agents, sizes, counts, runs) = Default::default();
        let inputs = Inputs {
            now,
            revision: &revision,
            fleet: &fleet,
            versions: &versions,
            agents: &agents,
            online: &online,
            runs: &runs,
            repo_sizes: &sizes,
            snapshot_counts: &counts,
            scrub: &BTreeMap::new(),
            schedule_created: &created,
        };
        let (statuses, until) = schedules_until(&inputs);
        // One schedule alone, as an incremental pass computes it, is the same.
        let (alone, alone_until) = schedule_until(
            &inputs,
            &Runners::of(&fleet),
            &mut CronCache::default(),
            &revision.schedules[0],
        );
        assert_eq!(
            serde_json::to_value(&alone).unwrap(),
            serde_json::to_value(&statuses[&("default".into(), "nightly".into())]).unwrap()
        );
        assert_eq!(alone_until, until);
        // Created 10 minutes ago with staleAfter 30m: stale in 20 minutes, before 01:00.
        assert_eq!(until, Some(now + chrono::Duration::minutes(20)));
        assert!(!statuses[&("default".into(), "nightly".into())].hosts[0].stale);
        let later = Inputs {
            now: now + chrono::Duration::minutes(21),
            ..inputs
        };
        let (statuses, until) = schedules_until(&later);
        assert!(statuses[&("default".into(), "nightly".into())].hosts[0].stale);
        let next = statuses[&("default".into(), "nightly".into())].hosts[0]
            .next_schedule_time
            .clone();
        assert_eq!(until.map(crate::time::k8s), next, "then the next run");
    }

    #[test]
    fn last_seen_moves_in_five_minute_steps_while_connected_and_to_the_minute_once_offline() {
        let revision = Revision {
            repos: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: nas}\nspec: {url: /srv/nas, password: {hostFile: /p}}\n",
            )],
            hosts: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {name: web-1}\nspec: {defaultRepo: nas}\n",
            )],
            ..Revision::default()
        };
        let fleet = crate::compile::compile(&revision).unwrap();
        let heard = DateTime::parse_from_rfc3339("2026-11-20T10:08:42Z")
            .unwrap()
            .to_utc();
        let agents = BTreeMap::from([(
            HostKey::new("default", "web-1"),
            crate::facts::AgentRecord {
                last_seen: Some(heard),
                ..Default::default()
            },
        )]);
        let created = |_: &str, _: &str| None;
        let (versions, sizes, counts, runs) = Default::default();
        let last_seen = |online: bool| {
            let is_online = move |_: &HostKey| online;
            let inputs = Inputs {
                now: heard,
                revision: &revision,
                fleet: &fleet,
                versions: &versions,
                agents: &agents,
                online: &is_online,
                runs: &runs,
                repo_sizes: &sizes,
                snapshot_counts: &counts,
                scrub: &BTreeMap::new(),
                schedule_created: &created,
            };
            host(&inputs, &revision.hosts[0])
                .last_seen
                .map(|t| t.0.to_string())
        };
        assert_eq!(last_seen(true).as_deref(), Some("2026-11-20T10:05:00Z"));
        assert_eq!(last_seen(false).as_deref(), Some("2026-11-20T10:08:00Z"));
        // What tells the status writer to recompute a heard host: a heartbeat that moves it.
        let at = |m: i64| heard + chrono::Duration::seconds(m);
        assert!(
            !last_seen_moved(Some(heard), at(30)),
            "10:09:12, the same step"
        );
        assert!(
            last_seen_moved(Some(heard), at(78)),
            "10:10:00, the next step"
        );
        assert!(last_seen_moved(None, heard), "never heard before");
    }

    /// A host `web-1` running a nightly backup and a weekly forget, with `runs` recorded.
    fn two_schedules(runs: &[RunRecord], now: DateTime<Utc>) -> (ScheduleStatuses, HostStatus) {
        let revision = Revision {
            repos: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: nas}\nspec: {url: /srv/nas, password: {hostFile: /p}}\n",
            )],
            hosts: vec![object(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {name: web-1}\nspec: {defaultRepo: nas}\n",
            )],
            schedules: vec![
                object(
                    "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {name: nightly}\nspec: {operation: backup, cron: '0 1 * * *', hosts: [web-1], paths: [/srv]}\n",
                ),
                object(
                    "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {name: weekly-forget}\nspec: {operation: forget, cron: '0 3 * * 0', hosts: [web-1], retention: {keepLast: 10}}\n",
                ),
            ],
            ..Revision::default()
        };
        let fleet = crate::compile::compile(&revision).unwrap();
        let online = |_: &HostKey| true;
        let created = |_: &str, _: &str| Some(now - chrono::Duration::hours(2));
        let summaries = RunSummaries::of(runs);
        let (versions, agents, sizes, counts) = Default::default();
        let inputs = Inputs {
            now,
            revision: &revision,
            fleet: &fleet,
            versions: &versions,
            agents: &agents,
            online: &online,
            runs: &summaries,
            repo_sizes: &sizes,
            snapshot_counts: &counts,
            scrub: &BTreeMap::new(),
            schedule_created: &created,
        };
        (schedules(&inputs), host(&inputs, &revision.hosts[0]))
    }

    fn nightly_run(name: &str, phase: Phase, finished: DateTime<Utc>) -> RunRecord {
        let mut run = RunRecord::pending(
            crate::resources::Kind::Backup,
            &HostKey::new("default", "web-1"),
            name.into(),
            name.into(),
            JobOperation::Backup,
            finished,
        );
        run.schedule = Some("nightly".into());
        run.phase = phase;
        run.scheduled_at = Some(finished);
        run.finished_at = Some(finished);
        run
    }

    #[test]
    fn missed_runs_are_not_the_last_backup_and_a_schedule_that_never_ran_is_pending() {
        let now = DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
            .unwrap()
            .to_utc();
        let minutes = |m: i64| now - chrono::Duration::minutes(m);
        let runs = [
            nightly_run("ok", Phase::Succeeded, minutes(90)),
            nightly_run("missed-1", Phase::Missed, minutes(30)),
            nightly_run("missed-2", Phase::Missed, minutes(20)),
            nightly_run("missed-3", Phase::Missed, minutes(10)),
        ];
        let (statuses, host) = two_schedules(&runs, now);
        let last = host.last_backup.expect("a last backup");
        assert_eq!(
            (last.backup.as_str(), last.phase),
            ("ok", Phase::Succeeded),
            "three missed runs are not the last backup"
        );

        let nightly = &statuses[&("default".into(), "nightly".into())];
        assert_eq!(
            (
                nightly.healthy_hosts,
                nightly.pending_hosts,
                nightly.stale_hosts
            ),
            (Some(1), Some(0), Some(0))
        );
        assert_eq!(nightly.hosts[0].last_result, Some(Phase::Missed));
        assert!(!nightly.hosts[0].pending_first_run);

        let forget = &statuses[&("default".into(), "weekly-forget".into())];
        assert_eq!(
            (
                forget.host_count,
                forget.healthy_hosts,
                forget.pending_hosts,
                forget.stale_hosts
            ),
            (Some(1), Some(0), Some(1), Some(0)),
            "a schedule that never ran is pending its first run"
        );
        assert!(forget.hosts[0].pending_first_run);

        // Only missed runs: still pending, and no last backup at all.
        let (statuses, host) = two_schedules(&runs[1..], now);
        assert_eq!(host.last_backup, None);
        let nightly = &statuses[&("default".into(), "nightly".into())];
        assert_eq!(
            (nightly.healthy_hosts, nightly.pending_hosts),
            (Some(0), Some(1))
        );
    }
}
