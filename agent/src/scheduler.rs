//! The local scheduler: fires the schedules of the last accepted plan on their crons, in their
//! time zones, with the plan's jitter, whether or not the controller is reachable.
//!
//! For every schedule it keeps a *mark*, the latest cron time it has dealt with, on disk. Cron
//! times after the mark whose fire time has passed are due; more than one, or one long past,
//! means the agent was not running: the missed-run policy decides between one catch-up run and
//! a Missed report.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use protocol::{HostPlan, JobPhase, MissedRunPolicy, ResolvedSchedule, ScheduleSet, Trigger};
use tokio::sync::watch;

use crate::jobs::Jobs;
use crate::runner::{JobSpec, Work, rfc3339};
use crate::state::Marks;

/// A run whose fire time passed less than this long ago is on time, not missed.
const ON_TIME: Duration = Duration::seconds(60);
/// Wake at least this often, so a changed wall clock is noticed.
const MAX_SLEEP: StdDuration = StdDuration::from_secs(30);
/// Cron times counted when catching up, at most (an every-second cron down for a year).
const MAX_COUNTED: usize = 10_000;

/// Why a schedule's timing cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub enum TimingError {
    #[error("schedule {schedule}: cron {cron:?}: {source}")]
    Cron {
        schedule: String,
        cron: String,
        #[source]
        source: cron::error::Error,
    },
    #[error("schedule {schedule}: time zone {time_zone:?}: {source}")]
    TimeZone {
        schedule: String,
        time_zone: String,
        #[source]
        source: chrono_tz::ParseError,
    },
}

/// When one schedule fires.
pub struct Timing {
    cron: cron::Schedule,
    tz: Tz,
    jitter: Duration,
}

impl Timing {
    pub fn of(schedule: &ResolvedSchedule) -> Result<Timing, TimingError> {
        let cron =
            cron::Schedule::from_str(&schedule.cron).map_err(|source| TimingError::Cron {
                schedule: schedule.name.clone(),
                cron: schedule.cron.clone(),
                source,
            })?;
        let tz = Tz::from_str(&schedule.time_zone).map_err(|source| TimingError::TimeZone {
            schedule: schedule.name.clone(),
            time_zone: schedule.time_zone.clone(),
            source,
        })?;
        Ok(Timing {
            cron,
            tz,
            jitter: Duration::seconds(i64::from(schedule.jitter_seconds)),
        })
    }

    /// The first cron time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|n| n.with_timezone(&Utc))
    }

    /// When a run due at cron time `scheduled` actually starts.
    pub fn fire_time(&self, scheduled: DateTime<Utc>) -> DateTime<Utc> {
        scheduled + self.jitter
    }
}

/// What one schedule needs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet; the next fire time, if the cron ever fires again.
    Wait(Option<DateTime<Utc>>),
    /// Run for this cron time.
    Run {
        scheduled: DateTime<Utc>,
        trigger: Trigger,
    },
    /// `count` runs were missed, the latest at `latest`.
    Missed { latest: DateTime<Utc>, count: usize },
}

/// Decides what a schedule with this mark needs at `now`. Pure, so it is tested without waiting.
pub fn due(
    timing: &Timing,
    mark: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: MissedRunPolicy,
) -> Due {
    let mut passed = Vec::new();
    let mut cursor = mark;
    while let Some(t) = timing.next_after(cursor) {
        if timing.fire_time(t) > now {
            if passed.is_empty() {
                return Due::Wait(Some(timing.fire_time(t)));
            }
            break;
        }
        passed.push(t);
        cursor = t;
        if passed.len() == MAX_COUNTED {
            break;
        }
    }
    let Some(&latest) = passed.last() else {
        return Due::Wait(None);
    };
    let on_time = passed.len() == 1 && now - timing.fire_time(latest) <= ON_TIME;
    if on_time {
        return Due::Run {
            scheduled: latest,
            trigger: Trigger::Schedule,
        };
    }
    match policy {
        MissedRunPolicy::RunOnce => Due::Run {
            scheduled: latest,
            trigger: Trigger::MissedRun,
        },
        MissedRunPolicy::Skip => Due::Missed {
            latest,
            count: passed.len(),
        },
    }
}

/// The id of a scheduled run: the schedule and the scheduled minute since the epoch, like a
/// CronJob's Jobs, with the second appended for the rare cron that fires within a minute.
pub fn job_id(schedule: &str, scheduled: DateTime<Utc>) -> String {
    let secs = scheduled.timestamp();
    let (minutes, second) = (secs.div_euclid(60), secs.rem_euclid(60));
    if second == 0 {
        format!("{schedule}-{minutes}")
    } else {
        format!("{schedule}-{minutes}-{second:02}")
    }
}

/// Runs forever: fires the applied plan's schedules, following plan changes.
pub async fn run(jobs: Jobs, mut plan_rx: watch::Receiver<Option<ScheduleSet>>) {
    let state = jobs.context().state.clone();
    let mut marks = match state.load_marks() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("{e}; missed runs before now cannot be detected");
            Marks::new()
        }
    };
    loop {
        let applied = plan_rx.borrow_and_update().clone();
        let now = Utc::now();
        let mut next_wake = now + Duration::from_std(MAX_SLEEP).unwrap_or(Duration::seconds(30));
        if let Some(set) = &applied {
            let before = marks.clone();
            for (schedule, due) in evaluate(&set.plan, &mut marks, now) {
                match due {
                    Due::Wait(Some(at)) => next_wake = next_wake.min(at),
                    Due::Wait(None) => {}
                    Due::Run { scheduled, trigger } => {
                        marks.insert(schedule.name.clone(), scheduled);
                        jobs.start(spec(&schedule, set, scheduled, trigger));
                        next_wake = now;
                    }
                    Due::Missed { latest, count } => {
                        marks.insert(schedule.name.clone(), latest);
                        let message = match count {
                            1 => format!(
                                "the run due at {} was missed while the agent was not running",
                                rfc3339(latest)
                            ),
                            n => format!(
                                "{n} runs were missed while the agent was not running; the last was due at {}",
                                rfc3339(latest)
                            ),
                        };
                        let s = spec(&schedule, set, latest, Trigger::Schedule);
                        jobs.report_not_run(&s, JobPhase::Missed, "AgentDown", message);
                        next_wake = now;
                    }
                }
            }
            if marks != before
                && let Err(e) = state.store_marks(&marks)
            {
                tracing::error!("{e}");
            }
        }
        let sleep = (next_wake - Utc::now())
            .to_std()
            .unwrap_or_default()
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            changed = plan_rx.changed() => if changed.is_err() { return },
        }
    }
}

/// Brings marks in line with the plan and says what each active schedule needs. New schedules
/// start from now; suspended ones (and all of a paused host) keep their mark at now, so that
/// resuming does not report the suspension as missed runs.
fn evaluate(
    plan: &HostPlan,
    marks: &mut Marks,
    now: DateTime<Utc>,
) -> Vec<(ResolvedSchedule, Due)> {
    marks.retain(|name, _| plan.schedules.iter().any(|s| &s.name == name));
    let mut out = Vec::new();
    for schedule in &plan.schedules {
        let mark = *marks.entry(schedule.name.clone()).or_insert(now);
        if plan.paused || schedule.suspend {
            marks.insert(schedule.name.clone(), now);
            continue;
        }
        match Timing::of(schedule) {
            Ok(timing) => out.push((
                schedule.clone(),
                due(&timing, mark, now, schedule.missed_run_policy),
            )),
            Err(e) => tracing::error!("{e}; this schedule does not run"),
        }
    }
    out
}

fn spec(
    schedule: &ResolvedSchedule,
    set: &ScheduleSet,
    scheduled: DateTime<Utc>,
    trigger: Trigger,
) -> JobSpec {
    JobSpec {
        id: job_id(&schedule.name, scheduled),
        trigger,
        scheduled_at: Some(scheduled),
        work: Work::Schedule(schedule.clone()),
        secrets: set.secrets.clone(),
    }
}

/// The schedules of a plan by name, for `command.run`.
pub fn by_name(plan: &HostPlan) -> BTreeMap<&str, &ResolvedSchedule> {
    plan.schedules
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn timing(cron: &str, tz: &str, jitter: u32) -> Timing {
        Timing {
            cron: cron::Schedule::from_str(cron).unwrap(),
            tz: Tz::from_str(tz).unwrap(),
            jitter: Duration::seconds(i64::from(jitter)),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn crons_are_evaluated_in_their_time_zone_with_jitter() {
        // 01:30 in Berlin is 00:30 UTC in winter.
        let t = timing("0 30 1 * * *", "Europe/Berlin", 90);
        let next = t.next_after(utc(2026, 1, 10, 12, 0, 0)).unwrap();
        assert_eq!(next, utc(2026, 1, 11, 0, 30, 0));
        assert_eq!(t.fire_time(next), utc(2026, 1, 11, 0, 31, 30));
    }

    #[test]
    fn a_run_is_due_once_its_fire_time_passes() {
        let t = timing("0 0 * * * *", "UTC", 30);
        let mark = utc(2026, 1, 1, 10, 0, 0);
        assert_eq!(
            due(&t, mark, utc(2026, 1, 1, 11, 0, 10), MissedRunPolicy::Skip),
            Due::Wait(Some(utc(2026, 1, 1, 11, 0, 30)))
        );
        assert_eq!(
            due(&t, mark, utc(2026, 1, 1, 11, 0, 31), MissedRunPolicy::Skip),
            Due::Run {
                scheduled: utc(2026, 1, 1, 11, 0, 0),
                trigger: Trigger::Schedule
            }
        );
    }

    #[test]
    fn runs_passed_while_down_follow_the_missed_run_policy() {
        let t = timing("0 0 * * * *", "UTC", 0);
        let mark = utc(2026, 1, 1, 10, 0, 0);
        let now = utc(2026, 1, 1, 13, 30, 0);
        assert_eq!(
            due(&t, mark, now, MissedRunPolicy::Skip),
            Due::Missed {
                latest: utc(2026, 1, 1, 13, 0, 0),
                count: 3
            }
        );
        assert_eq!(
            due(&t, mark, now, MissedRunPolicy::RunOnce),
            Due::Run {
                scheduled: utc(2026, 1, 1, 13, 0, 0),
                trigger: Trigger::MissedRun
            }
        );
        // One run, but long past, is missed too.
        let one = due(&t, utc(2026, 1, 1, 12, 0, 0), now, MissedRunPolicy::Skip);
        assert_eq!(
            one,
            Due::Missed {
                latest: utc(2026, 1, 1, 13, 0, 0),
                count: 1
            }
        );
    }

    #[test]
    fn counting_missed_runs_is_bounded() {
        let t = timing("* * * * * *", "UTC", 0);
        let d = due(
            &t,
            utc(2025, 1, 1, 0, 0, 0),
            utc(2026, 1, 1, 0, 0, 0),
            MissedRunPolicy::Skip,
        );
        assert!(
            matches!(d, Due::Missed { count, .. } if count == MAX_COUNTED),
            "{d:?}"
        );
    }

    #[test]
    fn job_ids_name_the_schedule_and_the_scheduled_minute() {
        assert_eq!(
            job_id("nightly", utc(2026, 1, 1, 1, 30, 0)),
            "nightly-29453850"
        );
        assert_eq!(
            job_id("fast", utc(2026, 1, 1, 1, 30, 4)),
            "fast-29453850-04"
        );
    }

    #[test]
    fn suspended_schedules_and_paused_hosts_do_not_run_and_do_not_pile_up_misses() {
        let mut plan: HostPlan = serde_json::from_str(
            r#"{"namespace":"default","host":"h","schedules":[
              {"name":"a","operation":"prune","cron":"0 0 * * * *","timeZone":"UTC",
               "repo":{"name":"r","url":"/r","password":{"hostFile":{"path":"/p"}}},
               "concurrencyPolicy":"Forbid","missedRunPolicy":"Skip","suspend":true}]}"#,
        )
        .unwrap();
        let mut marks = Marks::new();
        marks.insert("a".into(), utc(2026, 1, 1, 0, 0, 0));
        marks.insert("gone".into(), utc(2026, 1, 1, 0, 0, 0));
        let now = utc(2026, 1, 2, 0, 0, 0);
        assert!(evaluate(&plan, &mut marks, now).is_empty());
        assert_eq!(marks.get("a"), Some(&now));
        assert!(!marks.contains_key("gone"));
        plan.schedules[0].suspend = false;
        let later = now + Duration::minutes(30);
        let d = evaluate(&plan, &mut marks, later);
        assert_eq!(d[0].1, Due::Wait(Some(utc(2026, 1, 2, 1, 0, 0))));
    }
}
