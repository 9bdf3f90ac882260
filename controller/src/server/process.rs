//! The controller's own process, read from `/proc` as Prometheus client libraries read it for
//! the standard `process_*` metrics.

use std::path::Path;

/// What `/proc` says of this process.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{path} has no {field}")]
    Missing {
        path: &'static str,
        field: &'static str,
    },
}

const STAT: &str = "/proc/self/stat";
const SYSTEM_STAT: &str = "/proc/stat";
const FDS: &str = "/proc/self/fd";

/// This process, now.
pub fn read() -> Result<Process, ProcError> {
    let read = |path: &'static str| {
        std::fs::read_to_string(path).map_err(|source| ProcError::Read { path, source })
    };
    let open_fds = std::fs::read_dir(Path::new(FDS))
        .map_err(|source| ProcError::Read { path: FDS, source })?
        .count() as u64;
    parse(
        &read(STAT)?,
        &read(SYSTEM_STAT)?,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
        open_fds,
    )
}

/// From `/proc/self/stat` and the `btime` line of `/proc/stat` (proc(5)).
fn parse(
    stat: &str,
    system_stat: &str,
    ticks_per_second: u64,
    page_size: u64,
    open_fds: u64,
) -> Result<Process, ProcError> {
    let missing = |path, field| ProcError::Missing { path, field };
    // The command name, field 2, is in parentheses and may itself hold spaces or `)`.
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or(missing(STAT, "command name"))?;
    // Field 3 (the state) is the first after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize, name: &'static str| {
        fields
            .get(number - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or(missing(STAT, name))
    };
    let ticks = ticks_per_second.max(1) as f64;
    let cpu_ticks = field(14, "utime")? + field(15, "stime")?;
    let start_ticks = field(22, "starttime")?;
    let rss_pages = field(24, "rss")?;
    let boot_time = system_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
        .ok_or(missing(SYSTEM_STAT, "btime"))?;
    Ok(Process {
        cpu_seconds: cpu_ticks as f64 / ticks,
        resident_bytes: rss_pages * page_size,
        open_fds,
        start_time_seconds: boot_time as f64 + start_ticks as f64 / ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line, with a command name holding a space and a parenthesis.
    const STAT_LINE: &str = "4242 (hold) fast) S 1 4242 4242 0 -1 4194560 2934 0 0 0 \
        250 130 0 0 20 0 9 0 123456 1126400000 5120 18446744073709551615 1 1 0 0 0 0 0 4096 \
        17663 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
    const SYSTEM: &str = "cpu  1 2 3 4\nbtime 1700000000\nprocesses 42\n";

    #[test]
    fn parses_cpu_memory_and_start_time() {
        let process = parse(STAT_LINE, SYSTEM, 100, 4096, 7).unwrap();
        assert_eq!(
            process,
            Process {
                cpu_seconds: 3.8,
                resident_bytes: 5120 * 4096,
                open_fds: 7,
                start_time_seconds: 1_700_001_234.56,
            }
        );
    }

    #[test]
    fn a_truncated_stat_is_an_error_not_a_zero() {
        let error = parse("4242 (holdfast) S 1 2 3", SYSTEM, 100, 4096, 7).unwrap_err();
        assert_eq!(error.to_string(), "/proc/self/stat has no utime");
        let error = parse(STAT_LINE, "cpu 1 2 3\n", 100, 4096, 7).unwrap_err();
        assert_eq!(error.to_string(), "/proc/stat has no btime");
    }

    #[test]
    fn reads_this_process() {
        let process = read().unwrap();
        assert!(process.resident_bytes > 0, "{process:?}");
        assert!(process.open_fds > 0, "{process:?}");
        assert!(process.start_time_seconds > 1_600_000_000.0, "{process:?}");
    }
}
