use super::*;

pub(super) fn badge(text: &str, tone: &str) -> Markup {
    html! { span.badge.(tone) { (text) } }
}

pub(super) fn phase_badge(phase: Option<Phase>) -> Markup {
    badge(phase_name(phase), phase_tone(phase))
}

/// A run without a phase is a request nobody has picked up yet: pending.
pub(super) fn phase_name(phase: Option<Phase>) -> &'static str {
    match phase.unwrap_or(Phase::Pending) {
        Phase::Pending => "Pending",
        Phase::Dispatched => "Dispatched",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::PartiallyFailed => "PartiallyFailed",
        Phase::Failed => "Failed",
        Phase::Missed => "Missed",
        Phase::Skipped => "Skipped",
        Phase::Cancelled => "Cancelled",
    }
}

/// The colour of a phase: the CSS class of its badge and timeline mark.
pub(super) fn phase_tone(phase: Option<Phase>) -> &'static str {
    match phase.unwrap_or(Phase::Pending) {
        Phase::Succeeded => "ok",
        Phase::PartiallyFailed => "warn",
        Phase::Failed => "bad",
        Phase::Missed | Phase::Skipped | Phase::Cancelled => "muted",
        Phase::Pending | Phase::Dispatched | Phase::Running => "info",
    }
}

pub(super) fn state_name(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

pub(super) fn state_badge(online: bool) -> Markup {
    let state = state_name(online);
    let tone = if online { "ok" } else { "bad" };
    html! { span.badge.(tone).(format!("state-{state}")) { (state) } }
}

pub(super) fn version(v: Option<u64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("v{v}"))
}

pub(super) fn dash() -> Markup {
    html! { span.dim { "—" } }
}

pub(super) fn opt_text(text: Option<&str>) -> Markup {
    match text {
        Some(text) => html! { (text) },
        None => dash(),
    }
}

/// The newest run's phase, and whether the host still waits for its first run.
pub(super) fn entry_result(entry: &ScheduleHostStatus) -> Markup {
    html! {
        @match entry.last_result {
            Some(phase) => { (phase_badge(Some(phase))) }
            None => { (dash()) }
        }
        @if entry.pending_first_run {
            " " (badge("pending first run", "info"))
        }
    }
}
