//! The log of both binaries (`holdfast` and `holdfast-agent`) on standard error: text for
//! people or JSON lines for Loki and Elastic, one line per event either way, and colour only
//! when a person is watching.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

/// `--log-format`: `text`, a line of text per event (coloured on a terminal), or `json`, an
/// object per line with `timestamp`, `level`, `fields` (with `message`) and `target`. The
/// variants carry no doc comments, so that `--help` lists them on one line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The `--log-format` flag, the same on both binaries: `#[command(flatten)]` it into the
/// top-level arguments (it is global, so it may also follow the subcommand).
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct LogArgs {
    /// How to write the log on standard error: `text` (coloured only on a terminal) or `json`
    /// (one object per line, for Loki or Elastic).
    #[arg(
        long,
        global = true,
        env = "HOLDFAST_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

/// Sends `tracing` events to standard error in `format`, filtered by `filter`.
pub fn init(format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OneLine(std::io::stderr()));
    match format {
        // Escape codes in a file or in journald are noise, not colour.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Reports the error that ends the program: `PROGRAM: error` in a text log, as the commands
/// always printed it; an ERROR record in a JSON log, so that its last line is JSON too.
pub fn report_failure(format: LogFormat, program: &str, error: &dyn std::fmt::Display) {
    match format {
        LogFormat::Text => eprintln!("{program}: {error}"),
        LogFormat::Json => tracing::error!("{error}"),
    }
}

/// Writes one formatted event with its inner line breaks escaped (`\n`), so that a message
/// carrying a program's output or a list stays one record for journald and log shippers.
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let mut line = Vec::with_capacity(buf.len());
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(byte),
            }
        }
        line.extend_from_slice(end);
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_line_breaks_are_escaped_and_the_last_kept() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"rejected: a\n  b\r\n").unwrap();
        assert_eq!(out.0, b"rejected: a\\n  b\\r\n");
    }
}
