//! The controller as a daemon: one per data directory (an OS lock), and a log fit for files,
//! journald and log shippers (no colour codes off a terminal, one line per event, JSON lines
//! with `--log-format json`). Real `holdfast` processes on loopback.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{LONG, Proc, free_port, holdfast_bin};

fn examples() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fleet"))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Waits (up to [`LONG`]) until `check` holds; the failure says what was awaited.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn controller(config: &Path, data: &Path, port: u16) -> Command {
    let mut command = Command::new(holdfast_bin());
    command
        .arg("controller")
        .arg("--config-dir")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("RUST_LOG")
        .env_remove("HOLDFAST_LOG_FORMAT");
    command
}

fn revisions(data: &Path) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        data.join("holdfast.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT count(*) FROM revisions", [], |row| row.get(0))
        .unwrap()
}

fn serves(port: u16) -> bool {
    ureq::get(format!("http://127.0.0.1:{port}/healthz"))
        .call()
        .is_ok()
}

#[test]
fn a_second_controller_on_the_same_data_directory_exits_at_once_touching_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet");
    copy_dir(&examples(), &config);
    let data = dir.path().join("data");
    let port = free_port();
    let first = Proc::spawn(
        "first controller",
        &mut controller(&config, &data, port),
        &dir.path().join("first.log"),
    );
    wait_for("the first controller to serve", || serves(port));
    wait_for("the first revision", || revisions(&data) == 1);
    let lock = fs::read_to_string(data.join("controller.lock")).unwrap();

    // Another port, so that nothing but the lock stands in its way.
    let other = free_port();
    let mut second = controller(&config, &data, other)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_for("the second controller to exit", || {
        status = second.try_wait().unwrap();
        status.is_some()
    });
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "holdfast: another controller (pid {}, listening on 127.0.0.1:{port}) is using the data directory {}; stop it, or give this one its own --data-dir",
            first.child.id(),
            data.display()
        ),
        "lock file: {lock}"
    );
    assert!(!serves(other), "the second controller served");
    assert_eq!(
        revisions(&data),
        1,
        "the second controller recorded a revision"
    );
    assert_eq!(
        fs::read_to_string(data.join("controller.lock")).unwrap(),
        lock,
        "the holder's record changed"
    );
    assert!(serves(port), "the first controller stopped serving");

    // Once the holder is gone (even killed), the directory is free again.
    drop(first);
    let third_port = free_port();
    let _third = Proc::spawn(
        "third controller",
        &mut controller(&config, &data, third_port),
        &dir.path().join("third.log"),
    );
    wait_for("a controller after the first was killed", || {
        serves(third_port)
    });
}

/// A fleet with two errors, so that the controller logs a rejection listing both.
fn broken_fleet(dir: &Path) -> PathBuf {
    let config = dir.join("fleet");
    copy_dir(&examples(), &config);
    fs::write(
        config.join("broken.yaml"),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata:\n  name: Bad_Name\nspec:\n  colour: red\n",
    )
    .unwrap();
    config
}

/// Runs a controller on `config` with stderr to a file until its log mentions the rejection;
/// the log.
fn log_of_a_rejection(dir: &Path, config: &Path, format: Option<&str>) -> String {
    let port = free_port();
    let log = dir.join(format!("{}.log", format.unwrap_or("default")));
    let mut command = controller(config, &dir.join(format!("data-{port}")), port);
    if let Some(format) = format {
        command.args(["--log-format", format]);
    }
    // Proc writes a harness line first; the controller's own output follows it.
    let mut proc = Proc::spawn("controller", &mut command, &log);
    wait_for("the rejection in the log", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("rejected the config directory"))
    });
    proc.kill();
    let text = fs::read_to_string(&log).unwrap();
    text.lines()
        .skip_while(|l| l.starts_with("===== test harness"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn text_logs_in_a_file_have_no_colour_and_one_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let config = broken_fleet(dir.path());
    let log = log_of_a_rejection(dir.path(), &config, None);
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
    let rejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rejected the config directory"))
        .collect();
    assert_eq!(rejected.len(), 1, "{log}");
    // Both findings on the rejection's own line.
    assert!(
        rejected[0].contains("Bad_Name") && rejected[0].contains("colour"),
        "{log}"
    );
    assert!(
        log.lines().all(|l| l.contains(" INFO ")
            || l.contains(" WARN ")
            || l.contains(" ERROR ")
            || l.contains(" DEBUG ")),
        "a line that is not a record of its own:\n{log}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_level_fields_and_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = broken_fleet(dir.path());
    let log = log_of_a_rejection(dir.path(), &config, Some("json"));
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(records.len() >= 2, "{log}");
    for record in &records {
        assert!(record["level"].is_string(), "{record}");
        assert!(record["fields"]["message"].is_string(), "{record}");
        assert!(record["timestamp"].is_string(), "{record}");
    }
    let rejection = records
        .iter()
        .find(|r| {
            r["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("rejected the config directory"))
        })
        .unwrap();
    assert_eq!(rejection["level"], "ERROR");
    let message = rejection["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("Bad_Name") && message.contains("colour"),
        "{message}"
    );
}

#[test]
fn a_failure_to_start_is_a_json_record_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(holdfast_bin())
        .args(["--log-format", "json", "controller", "--config-dir"])
        .arg(dir.path().join("missing"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(last["level"], "ERROR", "{stderr}");
    assert!(
        last["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("is not a directory")),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a data directory was created for a controller that did not start"
    );
}
