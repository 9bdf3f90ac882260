//! Feeds arbitrary output to every parser of restic's output. restic's output is not ours: a
//! new release, a truncated line or a hostile repository may put anything there, and the agent
//! must report it, never panic.
#![no_main]

use holdfast_agent::restic::{bound, parse};
use libfuzzer_sys::fuzz_target;
use protocol::{JobOperation, JobPhase};

const OPERATIONS: [JobOperation; 6] = [
    JobOperation::Backup,
    JobOperation::Forget,
    JobOperation::Prune,
    JobOperation::Check,
    JobOperation::Restore,
    JobOperation::Drill,
];
/// Exit codes that mean something to `outcome`, and some that do not.
const EXIT_CODES: [Option<i32>; 10] = [
    None,
    Some(0),
    Some(1),
    Some(3),
    Some(10),
    Some(11),
    Some(12),
    Some(130),
    Some(-1),
    Some(i32::MAX),
];

fuzz_target!(|data: &[u8]| {
    // The agent reads restic's output lossily: a file name need not be UTF-8.
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    if let Some(v) = parse::version(text) {
        assert_eq!(parse::version(&format!("restic {v}")), Some(v), "{text:?}");
        let _ = parse::Capabilities::of(v);
    }

    for line in text.lines() {
        let _ = parse::backup_line(line);
        let _ = parse::restore_line(line);
        let _ = parse::ls_file(line);
        let _ = parse::item_error(line);
        let _ = bound(line.to_string());
    }

    if let Ok(snapshots) = parse::snapshots(text) {
        for short in text.lines().chain(snapshots.iter().map(|s| s.id.as_str())) {
            if let Some(id) = parse::resolve_snapshot_id(short, &snapshots) {
                let short = short.trim();
                assert!(
                    short.len() == 64
                        || (id.starts_with(short) && snapshots.iter().any(|s| s.id == id)),
                    "{short:?} resolved to {id:?}"
                );
            }
        }
    }
    let _ = parse::stats(text);
    let _ = parse::forget(text);

    // The first byte picks the operation and exit code; the text is stderr, or exit_error.
    let pick = data.first().copied().unwrap_or(0) as usize;
    let operation = OPERATIONS[pick % OPERATIONS.len()];
    let exit_code = EXIT_CODES[(pick / OPERATIONS.len()) % EXIT_CODES.len()];
    let tail: Vec<String> = text.lines().map(str::to_string).collect();
    for (exit_error, stderr) in [
        (None, &tail[..]),
        (Some(text), &[][..]),
        (Some(text), &tail[..]),
    ] {
        let o = parse::outcome(operation, exit_code, exit_error, stderr);
        if exit_code == Some(0) {
            assert_eq!(o.phase, JobPhase::Succeeded);
            continue;
        }
        assert_ne!(o.phase, JobPhase::Succeeded, "{o:?}");
        assert!(o.reason.is_some(), "{o:?}");
        let message = o.message.as_deref().unwrap_or_default();
        assert!(!message.trim().is_empty(), "{o:?}");
        // Every message is cut at 300 characters, restic's text with what comes before it.
        assert!(message.chars().count() <= 300, "{o:?}");
        // stderr may echo the repository URL's settings; a password must not reach a report.
        assert!(!message.to_lowercase().contains("password="), "{o:?}");
    }
});
