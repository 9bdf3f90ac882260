//! Rotating checks at the hub: which reported part counts, and telling the agents that check a
//! repo in parts where its cycle goes on (`scrub.cursor`), after `welcome` and whenever a
//! check advances it. The cycle itself is `crate::scrub`; the store keeps it.

use protocol::{ControllerMessage, HostPlan, JobFinished, ScrubCursor, ScrubPart};

use super::Controller;
use crate::compile::HostKey;
use crate::scrub::ScrubCycle;

/// How many parts the host's desired plan reads `repo` in, by the check schedule `schedule`.
fn rotation(plan: &HostPlan, schedule: Option<&str>, repo: &str) -> Option<u32> {
    plan.schedules
        .iter()
        .filter(|s| s.repo.name == repo && schedule.is_none_or(|name| s.name == name))
        .find_map(|s| s.check.as_ref()?.read_data_rotate)
}

/// The part a finished check read, when it counts: the host's desired plan reads that repo in
/// that many parts by that schedule. A check of a plan replaced since (another number of parts)
/// is still recorded as a run, but does not move the cycle.
pub(super) fn counted_part(
    state: &super::State,
    host: &HostKey,
    finished: &JobFinished,
) -> Option<ScrubPart> {
    let part = finished.scrub_part?;
    let plan = &state.fleet.hosts.get(host)?.plan;
    let parts = rotation(plan, finished.schedule.as_deref(), &finished.repo);
    if parts == Some(part.parts) {
        Some(part)
    } else {
        tracing::warn!(
            host = %host,
            repo = %finished.repo,
            "a check read part {part} of the repository's data, but the plan no longer reads it in {} parts; the cycle stays where it is",
            part.parts
        );
        None
    }
}

/// Sends the host where the cycle of each repo its plan checks in parts goes on, for the repos
/// whose cycle the store knows (an agent with none starts at part 1, or where it left off).
pub(super) fn send_cursors(controller: &Controller, host: &HostKey) {
    let (tx, rotating) = {
        let state = controller.state();
        let (Some(session), Some(compiled)) =
            (state.sessions.get(host), state.fleet.hosts.get(host))
        else {
            return;
        };
        let rotating: Vec<(String, u32)> = compiled
            .plan
            .schedules
            .iter()
            .filter_map(|s| Some((s.repo.name.clone(), s.check.as_ref()?.read_data_rotate?)))
            .collect();
        (session.tx.clone(), rotating)
    };
    for (repo, parts) in rotating {
        let cycle = match controller.store().scrub_cycle(&host.namespace, &repo) {
            Ok(cycle) => cycle,
            Err(e) => {
                tracing::error!("cannot read where the checks of {repo} are: {e}");
                continue;
            }
        };
        if let Some(next) = cycle.next().filter(|next| next.parts == parts) {
            let _ = tx.send(super::hub::encoded(&cursor(&repo, next)));
        }
    }
}

/// After a check read part of `repo`: every connected host whose plan checks it in as many parts
/// learns the part the next check reads.
pub(super) fn advanced(controller: &Controller, namespace: &str, repo: &str, cycle: &ScrubCycle) {
    let Some(next) = cycle.next() else {
        return;
    };
    let message = super::hub::encoded(&cursor(repo, next));
    let state = controller.state();
    for (host, session) in &state.sessions {
        let checks = host.namespace == namespace
            && state
                .fleet
                .hosts
                .get(host)
                .is_some_and(|c| rotation(&c.plan, None, repo) == Some(next.parts));
        if checks {
            let _ = session.tx.send(message.clone());
        }
    }
}

fn cursor(repo: &str, next: ScrubPart) -> ControllerMessage {
    ControllerMessage::ScrubCursor(ScrubCursor {
        repo: repo.to_string(),
        next,
    })
}
