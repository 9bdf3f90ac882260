use super::*;

/// One run at `/runs/{namespace}/{name}`, followed live while it is not finished.
pub fn run(view: &RunView) -> Markup {
    let now = view.now;
    let backup = view.backup;
    let name = name_of(backup);
    let namespace = namespace_of(backup);
    let status = backup.status.as_ref();
    let phase = status.and_then(|s| s.run.phase);
    let live = !phase.is_some_and(is_final);
    let log: &[String] = match (view.log.is_empty(), status) {
        (true, Some(status)) => &status.run.log_tail,
        _ => view.log,
    };
    let (value, text) = progress_state(phase, status.and_then(|s| s.run.progress.as_ref()));
    let declared = Declared::new(view.hosts, view.schedules, view.repos);
    layout(
        name,
        None,
        html! {
            article #run data-events=[live.then_some(&view.events_url)] {
                nav.crumbs {
                    a href="/" { "Holdfast" } " / "
                    (declared.host(namespace, &backup.spec.host))
                    " / runs / " (name)
                }
                header.page {
                    h1 { (name) }
                    span #phase class=(format!("badge {}", phase_tone(phase))) {
                        (phase_name(phase))
                    }
                    @if live { span #live .dim { "Live" } }
                }
                h2 { "Run" }
                (run_facts(now, backup, &declared))
                @if let Some(summary) = status.and_then(|s| s.summary.as_ref()) {
                    h2 { "Summary" }
                    (summary_facts(summary))
                }
                h2 { "Progress" }
                div.progress {
                    progress #progress max="100" value=[value.map(fixed)] {
                        (value.map(|v| format!("{v:.0}%")).unwrap_or_default())
                    }
                    span #progress-text { (text) }
                }
                h2 { "Log" }
                @if log.iter().any(|l| first_use(l)) {
                    p.note #first-use {
                        "restic's “unable to open config file” below is its normal message before "
                        "a repository's first use: the repository was not initialised yet, and "
                        "the agent initialises it."
                    }
                }
                @if log.is_empty() {
                    p #log-empty .empty {
                        @if live { "No output yet." } @else { "This run wrote no log lines." }
                    }
                }
                pre #log {
                    @for (line, expected) in log.iter().zip(expected_lines(log)) {
                        @if expected {
                            span.expected title="expected before the repository's first init" {
                                (line)
                            }
                            "\n"
                        } @else {
                            (line) "\n"
                        }
                    }
                }
            }
            @if live { script { (PreEscaped(live_script())) } }
        },
    )
}

pub(super) fn run_facts(now: DateTime<Utc>, backup: &Backup, declared: &Declared) -> Markup {
    let namespace = namespace_of(backup);
    let status = backup.status.as_ref();
    let run = status.map(|s| &s.run);
    let repo = backup
        .spec
        .repo
        .as_deref()
        .or_else(|| label(backup, LABEL_REPO));
    html! {
        dl.facts {
            dt { "Host" }
            dd { (declared.host(namespace, &backup.spec.host)) }
            dt { "Schedule" }
            dd {
                @match run_schedule(backup) {
                    Some(schedule) => { (declared.schedule(namespace, schedule)) }
                    None => { (dash()) }
                }
            }
            dt { "Operation" } dd { (opt_text(run_operation(backup))) }
            dt { "Repo" }
            dd {
                @match repo {
                    Some(repo) => { (declared.repo(namespace, repo)) }
                    None => { (dash()) }
                }
            }
            dt { "Scheduled" } dd { (when(now, run.and_then(|r| r.scheduled_time.as_ref()))) }
            dt { "Started" } dd { (when(now, run.and_then(|r| r.start_time.as_ref()))) }
            dt { "Finished" } dd { (when(now, run.and_then(|r| r.completion_time.as_ref()))) }
            dt { "Duration" } dd #duration { (opt_text(run_duration(backup).as_deref())) }
            dt { "Exit code" }
            dd #exit-code {
                @match run.and_then(|r| r.exit_code) {
                    Some(code) => { (code) }
                    None => { (dash()) }
                }
            }
            dt { "Snapshot" }
            dd #snapshot {
                @match status.and_then(|s| s.snapshot_id.as_deref()) {
                    Some(id) => { code title=(id) { (snapshot_short(backup).unwrap_or(id)) } }
                    None => { (opt_text(snapshot_short(backup))) }
                }
            }
            dt { "Data added" } dd #data-added { (opt_text(data_added(backup).as_deref())) }
            dt { "Reason" } dd #reason { (opt_text(run.and_then(|r| r.reason.as_deref()))) }
            dt { "Message" } dd #message { (opt_text(run.and_then(|r| r.message.as_deref()))) }
        }
    }
}

pub(super) fn summary_facts(summary: &BackupSummary) -> Markup {
    html! {
        dl.facts {
            dt { "Files" }
            dd {
                (count(summary.files_new)) " new · " (count(summary.files_changed)) " changed · "
                (count(summary.files_unmodified)) " unmodified"
            }
            dt { "Directories" }
            dd {
                (count(summary.dirs_new)) " new · " (count(summary.dirs_changed)) " changed · "
                (count(summary.dirs_unmodified)) " unmodified"
            }
            dt { "Data added" } dd { (bytes(summary.data_added)) }
            dt { "Processed" }
            dd {
                (count(summary.total_files_processed)) " files · "
                (bytes(summary.total_bytes_processed))
            }
        }
    }
}

/// The lines restic prints when its repository has no config file yet: before the agent's
/// first `init`, not a failure.
pub(super) fn first_use(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("Fatal: unable to open config file")
        || line.starts_with("Is there a repository at the following location?")
}

/// Which lines of a log are restic's first-use message: the two lines of [`first_use`] and
/// the repository's location, which restic prints on the line after them.
pub(super) fn expected_lines(log: &[String]) -> Vec<bool> {
    let mut after_question = false;
    log.iter()
        .map(|line| {
            let expected = first_use(line) || after_question;
            after_question = line
                .trim_start()
                .starts_with("Is there a repository at the following location?");
            expected
        })
        .collect()
}

/// The progress bar's value (none: indeterminate) and the text beside it.
pub(super) fn progress_state(
    phase: Option<Phase>,
    progress: Option<&Progress>,
) -> (Option<f64>, String) {
    match (phase, progress) {
        (Some(Phase::Succeeded), _) => (Some(100.0), "Done".into()),
        (_, Some(p)) => (percent(p), progress_text(p)),
        (Some(p), None) if is_final(p) => (Some(0.0), "No progress reported".into()),
        (Some(Phase::Running), None) => (None, "Starting…".into()),
        (_, None) => (None, "Waiting for the agent…".into()),
    }
}

pub(super) fn percent(p: &Progress) -> Option<f64> {
    let stated = p
        .percent
        .trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .ok();
    stated
        .or_else(|| {
            let total = p.total_bytes.filter(|t| *t > 0)?;
            Some(p.bytes_done as f64 / total as f64 * 100.0)
        })
        .filter(|v| v.is_finite())
        .map(|v| v.clamp(0.0, 100.0))
}

/// `42% · 1,234 / 5,000 files · 1.2 GiB / 3.4 GiB · about 3m05s left`; the live script says the
/// same in the same words.
pub(super) fn progress_text(p: &Progress) -> String {
    let mut parts = Vec::new();
    if !p.percent.is_empty() {
        parts.push(p.percent.clone());
    }
    parts.push(match p.total_files {
        Some(total) => format!("{} / {} files", count(p.files_done), count(total)),
        None => format!("{} files", count(p.files_done)),
    });
    parts.push(match p.total_bytes {
        Some(total) => format!("{} / {}", bytes(p.bytes_done), bytes(total)),
        None => bytes(p.bytes_done),
    });
    if let Some(left) = p.seconds_remaining {
        parts.push(format!("about {} left", format_seconds(left)));
    }
    parts.join(" · ")
}

/// The body of the run page's live script; `live_script` defines `TONES` and `FINAL` before it.
const SCRIPT: &str = include_str!("run.js");

/// The run page's live script, with the phase colours and final phases taken from this module.
pub(super) fn live_script() -> String {
    let tones: Vec<String> = PHASES
        .iter()
        .map(|p| format!("{}: \"{}\"", phase_name(Some(*p)), phase_tone(Some(*p))))
        .collect();
    let finals: Vec<String> = PHASES
        .iter()
        .filter(|p| is_final(**p))
        .map(|p| format!("\"{}\"", phase_name(Some(*p))))
        .collect();
    format!(
        "(function () {{\n\"use strict\";\nvar TONES = {{{}}};\nvar FINAL = [{}];\n{}}})();\n",
        tones.join(", "),
        finals.join(", "),
        SCRIPT
    )
}
