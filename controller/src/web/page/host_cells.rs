use super::*;

/// `seen 3 min ago`, or `never connected`.
pub(super) fn last_seen(now: DateTime<Utc>, status: Option<&HostStatus>) -> Markup {
    match status.and_then(|s| s.last_seen.as_ref()) {
        Some(t) => html! { "seen " (when(now, Some(t))) },
        None => html! { "never connected" },
    }
}

/// The next run. An offline host's agent still runs its schedules on its own clock: saying
/// so keeps an operator from reading the time as a promise the controller makes.
pub(super) fn next_run(now: DateTime<Utc>, online: bool, next: Option<&Time>) -> Markup {
    let at = next.map(time::chrono);
    html! {
        @if online {
            @match at { Some(t) => { (time_el(now, t)) }, None => { (dash()) } }
        } @else {
            @if let Some(t) = at {
                span.dim { "on the host: " } (time_el(now, t))
            } @else {
                (dash())
            }
            div.note { "runs on the host regardless; results arrive when it reconnects" }
        }
    }
}

/// The agent's release, flagged when it is older than the controller's or speaks an older
/// protocol.
pub(super) fn agent_cell(status: Option<&HostStatus>, release: &str) -> Markup {
    let agent = status.and_then(|s| s.agent_version.as_deref());
    let protocol = status.and_then(|s| s.protocol_version);
    let old_release = agent.is_some_and(|a| older(a, release));
    let old_protocol = protocol.is_some_and(|p| p < protocol::PROTOCOL_VERSION);
    html! {
        @match agent {
            Some(agent) => { span.mono { (agent) } }
            None => { (dash()) }
        }
        @if old_release || old_protocol {
            " " span.badge.warn title=(format!(
                "the controller is {release} (protocol {}); upgrade the agent",
                protocol::PROTOCOL_VERSION
            )) { "older" }
        }
    }
}

/// Whether release `a` is older than `b`, comparing their dotted numbers (`0.9.1` < `0.10.0`);
/// a release that does not start with a number is not compared.
pub(super) fn older(a: &str, b: &str) -> bool {
    fn numbers(v: &str) -> Option<Vec<u64>> {
        let core = v.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        core.split('.').map(|n| n.parse().ok()).collect()
    }
    match (numbers(a), numbers(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

pub(super) fn versions_cell(status: Option<&HostStatus>) -> Markup {
    let applied = status.and_then(|s| s.applied_schedule_version);
    let desired = status.and_then(|s| s.desired_schedule_version);
    html! {
        @if drifting(status) {
            span.mono { (version(applied)) " → " (version(desired)) }
            " " (badge("drift", "warn"))
            @if let Some(reason) = status.and_then(|s| s.drift_reason.as_deref()) {
                div.note { (reason) }
            }
        } @else {
            @match desired.or(applied) {
                Some(v) => { span.mono { "v" (v) } }
                None => { (dash()) }
            }
        }
    }
}
