use super::*;

pub(super) fn label<'a>(backup: &'a Backup, key: &str) -> Option<&'a str> {
    backup
        .metadata
        .labels
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub(super) fn run_schedule(backup: &Backup) -> Option<&str> {
    backup
        .spec
        .schedule
        .as_deref()
        .or_else(|| label(backup, LABEL_SCHEDULE))
}

pub(super) fn run_operation(backup: &Backup) -> Option<&str> {
    backup
        .spec
        .operation
        .map(|op| op.as_str())
        .or_else(|| label(backup, LABEL_OPERATION))
}

/// `nightly`, or `run-now · prune` for a request that names no schedule.
pub(super) fn run_label(backup: &Backup) -> String {
    match (run_schedule(backup), run_operation(backup)) {
        (Some(schedule), _) => schedule.to_string(),
        (None, Some(op)) => format!("run-now · {op}"),
        (None, None) => "run-now".to_string(),
    }
}

/// When a run started, else when it was due, else when it finished, else when it was recorded.
pub(super) fn run_time(backup: &Backup) -> Option<DateTime<Utc>> {
    let run = backup.status.as_ref().map(|s| &s.run);
    run.and_then(|r| {
        r.start_time
            .as_ref()
            .or(r.scheduled_time.as_ref())
            .or(r.completion_time.as_ref())
    })
    .or(backup.metadata.creation_timestamp.as_ref())
    .map(time::chrono)
}

pub(super) fn run_duration(backup: &Backup) -> Option<String> {
    let run = &backup.status.as_ref()?.run;
    if let Some(d) = &run.duration {
        return Some(d.clone());
    }
    let start = run.start_time.as_ref().map(time::chrono)?;
    let end = run.completion_time.as_ref().map(time::chrono)?;
    u64::try_from((end - start).num_seconds())
        .ok()
        .map(format_seconds)
}

pub(super) fn data_added(backup: &Backup) -> Option<String> {
    let status = backup.status.as_ref()?;
    status
        .data_added
        .clone()
        .or_else(|| status.summary.as_ref().map(|s| bytes(s.data_added)))
}

pub(super) fn snapshot_short(backup: &Backup) -> Option<&str> {
    let status = backup.status.as_ref()?;
    status.snapshot_short_id.as_deref().or_else(|| {
        status
            .snapshot_id
            .as_deref()
            .map(|id| id.get(..8).unwrap_or(id))
    })
}
