//! The controller's decisions worth an Event, read from how an object's status changed: a
//! Host's schedule version went up, its agent connected or went offline; a run request was
//! sent to its agent, a run failed or a scheduled run was missed; a revision was rejected.
//! Both modes record them the same way, from the same status changes.

use crate::resources::{HostStatus, Phase};

/// A decision worth an Event on the object it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// A `Warning` Event; `Normal` otherwise.
    pub warning: bool,
    /// The Event's reason, one CamelCase word.
    pub reason: &'static str,
    pub note: String,
}

impl Decision {
    fn normal(reason: &'static str, note: String) -> Decision {
        Decision {
            warning: false,
            reason,
            note,
        }
    }

    fn warning(reason: &'static str, note: String) -> Decision {
        Decision {
            warning: true,
            reason,
            note,
        }
    }
}

/// What a Host's status change decided. Nothing on first sight (`before` is `None`): the
/// controller has no earlier state to compare with.
pub fn host_status_changed(before: Option<&HostStatus>, after: &HostStatus) -> Vec<Decision> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let (Some(was), Some(is)) = (
        before.desired_schedule_version,
        after.desired_schedule_version,
    ) && is > was
    {
        out.push(Decision::normal(
            "ScheduleVersionChanged",
            format!("desired schedule version {is} (was {was}); the agent gets it when connected"),
        ));
    }
    match (before.online == Some(true), after.online == Some(true)) {
        (false, true) => out.push(Decision::normal(
            "AgentConnected",
            match &after.agent_version {
                Some(v) => format!("agent {v} connected"),
                None => "the agent connected".into(),
            },
        )),
        (true, false) => out.push(Decision::warning(
            "AgentOffline",
            "the agent is no longer connected; schedules already applied keep running on the host"
                .into(),
        )),
        _ => {}
    }
    out
}

/// How far a run has come: no phase, Pending, Dispatched, Running, finished.
fn stage(phase: Option<Phase>) -> u8 {
    match phase {
        None => 0,
        Some(Phase::Pending) => 1,
        Some(Phase::Dispatched) => 2,
        Some(Phase::Running) => 3,
        Some(_) => 4,
    }
}

/// What a run's phase change decided about the run itself: a person's request went to its
/// agent (`Dispatched`), or the run failed (`RunFailed`, with the run's message).
pub fn run_phase_changed(
    requested: bool,
    host: &str,
    before: Option<Phase>,
    after: Option<Phase>,
    message: Option<&str>,
) -> Vec<Decision> {
    let mut out = Vec::new();
    let dispatched = stage(Some(Phase::Dispatched));
    if requested && stage(before) < dispatched && stage(after) >= dispatched {
        out.push(Decision::normal(
            "Dispatched",
            format!("sent to the agent of host {host}"),
        ));
    }
    if matches!(after, Some(Phase::Failed | Phase::PartiallyFailed)) && before != after {
        out.push(Decision::warning(
            "RunFailed",
            message
                .unwrap_or("the run failed; see its log on the status page")
                .to_string(),
        ));
    }
    out
}

/// A scheduled run that turned `Missed`: a decision about its Schedule.
pub fn run_missed(
    before: Option<Phase>,
    after: Option<Phase>,
    host: &str,
    run: &str,
) -> Option<Decision> {
    (after == Some(Phase::Missed) && before != after).then(|| {
        Decision::warning(
            "ScheduleMissed",
            format!("did not run on {host} at its scheduled time (recorded as Backup {run})"),
        )
    })
}

/// An object that keeps the newest revision from validating, with what is wrong with it.
pub fn revision_rejected(problems: &[String]) -> Decision {
    Decision::warning(
        "RevisionRejected",
        format!(
            "the newest revision does not validate, so the previous one stays in force: {}",
            problems.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(online: bool, desired: u64) -> HostStatus {
        HostStatus {
            online: Some(online),
            desired_schedule_version: Some(desired),
            agent_version: Some("0.1.0".into()),
            ..HostStatus::default()
        }
    }

    fn reasons(decisions: &[Decision]) -> Vec<&'static str> {
        decisions.iter().map(|d| d.reason).collect()
    }

    #[test]
    fn a_host_decides_on_its_version_and_its_agent() {
        assert!(
            host_status_changed(None, &status(true, 3)).is_empty(),
            "first sight"
        );
        assert!(host_status_changed(Some(&status(true, 3)), &status(true, 3)).is_empty());
        let bumped = host_status_changed(Some(&status(true, 3)), &status(true, 4));
        assert_eq!(reasons(&bumped), ["ScheduleVersionChanged"]);
        assert!(bumped[0].note.contains("4 (was 3)"), "{}", bumped[0].note);
        assert!(!bumped[0].warning);
        let connected = host_status_changed(Some(&status(false, 3)), &status(true, 3));
        assert_eq!(reasons(&connected), ["AgentConnected"]);
        assert!(connected[0].note.contains("0.1.0"));
        let offline = host_status_changed(Some(&status(true, 3)), &status(false, 4));
        assert_eq!(
            reasons(&offline),
            ["ScheduleVersionChanged", "AgentOffline"]
        );
        assert!(offline[1].warning);
    }

    #[test]
    fn a_run_decides_on_dispatch_and_failure() {
        use Phase::*;
        let r = |requested, before, after| {
            reasons(&run_phase_changed(requested, "web-1", before, after, None))
        };
        assert_eq!(r(true, None, Some(Dispatched)), ["Dispatched"]);
        assert_eq!(
            r(true, Some(Pending), Some(Running)),
            ["Dispatched"],
            "a pass may skip Dispatched"
        );
        assert!(r(true, Some(Dispatched), Some(Running)).is_empty(), "once");
        assert!(
            r(false, None, Some(Running)).is_empty(),
            "scheduled runs are not dispatched"
        );
        assert_eq!(
            r(true, Some(Pending), Some(Failed)),
            ["Dispatched", "RunFailed"]
        );
        assert_eq!(
            r(false, Some(Running), Some(PartiallyFailed)),
            ["RunFailed"]
        );
        assert!(r(false, Some(Failed), Some(Failed)).is_empty());
        let failed = run_phase_changed(false, "web-1", Some(Running), Some(Failed), Some("exit 1"));
        assert_eq!(failed[0].note, "exit 1");
        assert!(run_missed(None, Some(Missed), "web-1", "nightly-web-1-1").is_some());
        assert!(run_missed(Some(Missed), Some(Missed), "web-1", "n").is_none());
        let rejected = revision_rejected(&["spec.cron: bad".into(), "spec.repo: none".into()]);
        assert!(rejected.note.ends_with("spec.cron: bad; spec.repo: none"));
    }
}
