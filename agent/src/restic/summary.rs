//! restic's closing words on a backup, as it prints them without `--json`. The agent runs
//! restic with `--json`, whose summary is a JSON line that only the report carries; a run's
//! log would otherwise hold nothing for a backup that went well.

use protocol::BackupSummary;

/// The lines restic prints at the end of a backup; `snapshot_id` is empty when restic skipped
/// the snapshot (nothing changed and `--skip-if-unchanged`).
pub fn lines(summary: &BackupSummary, snapshot_id: &str) -> Vec<String> {
    let s = summary;
    vec![
        format!(
            "Files:       {:5} new, {:5} changed, {:5} unmodified",
            s.files_new, s.files_changed, s.files_unmodified
        ),
        format!(
            "Dirs:        {:5} new, {:5} changed, {:5} unmodified",
            s.dirs_new, s.dirs_changed, s.dirs_unmodified
        ),
        format!("Added to the repository: {}", bytes(s.data_added)),
        format!(
            "processed {} files, {} in {}",
            s.total_files_processed,
            bytes(s.total_bytes_processed),
            clock(s.total_duration_seconds)
        ),
        match snapshot_id {
            "" => "skipped creating snapshot".to_string(),
            id => format!("snapshot {} saved", id.get(..8).unwrap_or(id)),
        },
    ]
}

/// restic's sizes: `512 B`, `1.234 KiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.3} {}", UNITS[unit])
}

/// restic's durations: `0:03`, `1:02:03`.
fn clock(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_as_restic_prints_it() {
        let summary = BackupSummary {
            files_new: 3,
            files_changed: 1,
            files_unmodified: 120,
            dirs_new: 2,
            dirs_changed: 0,
            dirs_unmodified: 14,
            data_added: 1_263_616,
            total_files_processed: 124,
            total_bytes_processed: 52_428_800,
            total_duration_seconds: 3723.4,
            ..BackupSummary::default()
        };
        assert_eq!(
            lines(
                &summary,
                "5e2a0c1d9f8b7a6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e"
            ),
            [
                "Files:           3 new,     1 changed,   120 unmodified",
                "Dirs:            2 new,     0 changed,    14 unmodified",
                "Added to the repository: 1.205 MiB",
                "processed 124 files, 50.000 MiB in 1:02:03",
                "snapshot 5e2a0c1d saved",
            ]
        );
        let small = BackupSummary {
            data_added: 12,
            total_duration_seconds: 2.6,
            ..BackupSummary::default()
        };
        let quiet = lines(&small, "");
        assert_eq!(quiet[2], "Added to the repository: 12 B");
        assert!(quiet[3].ends_with("in 0:03"), "{quiet:?}");
        assert_eq!(quiet[4], "skipped creating snapshot");
    }
}
