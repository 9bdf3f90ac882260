//! The agent's log in a file (as under systemd or a shipper): no colour codes, one line per
//! event, and JSON lines with `--log-format json`. The agent is enrolled against a controller
//! that is not there, so it logs its start and its failed connections.

mod common;

use std::fs::{self, File};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the agent with stderr to a file until it has logged a failed connection; the log.
fn log_of_a_failed_connection(dir: &Path, format: Option<&str>) -> String {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = common::enrolled_state(dir, &format!("http://127.0.0.1:{port}"));
    let log = dir.join("agent.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_holdfast-agent"));
    if let Some(format) = format {
        command.args(["--log-format", format]);
    }
    let mut child = command
        .arg("run")
        .arg("--state-dir")
        .arg(&state)
        .args(["--restic", common::RESTIC])
        .env_remove("HOLDFAST_LOG_FORMAT")
        .env_remove("HOLDFAST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("WARN") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no warning about the connection in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    text
}

#[test]
fn text_log_in_a_file_has_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of_a_failed_connection(dir.path(), None);
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    assert!(
        log.lines()
            .all(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.contains(" ERROR ")),
        "a line that is not a record of its own:\n{log}"
    );
}

#[test]
fn json_log_is_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of_a_failed_connection(dir.path(), Some("json"));
    let mut levels = Vec::new();
    for line in log.lines() {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(record["fields"]["message"].is_string(), "{record}");
        levels.push(record["level"].as_str().unwrap().to_string());
    }
    assert!(levels.iter().any(|l| l == "WARN"), "{log}");
}
