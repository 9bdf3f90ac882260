//! A full scrub over time (`readDataRotate`): real controller, agents and restic. Each check
//! reads the next part of the repository's data, the cycle goes on across the hosts that share
//! the repo and across a controller restart, and the Repo's status says when every pack was
//! last read.

mod common;

use common::fleet::{Fleet, HOST, LONG, QUIET_CRON, backup_request_yaml};
use serde_json::Value;

const PARTS: u64 = 3;

/// A check of the repo `local` by every host, in [`PARTS`] parts.
fn scrub_schedule(hosts: &[&str]) -> String {
    format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: scrub
spec:
  operation: check
  cron: \"{QUIET_CRON}\"
  hosts: [{}]
  repo: local
  readDataRotate: {PARTS}
",
        hosts.join(", ")
    )
}

/// A run-now request of `schedule` on `host`.
fn request(name: &str, host: &str, schedule: &str) -> String {
    backup_request_yaml(name, schedule).replace(&format!("host: {HOST}"), &format!("host: {host}"))
}

fn scrub_status(fleet: &Fleet) -> Result<Value, String> {
    let repos = fleet.api("/api/v1/repos")?;
    repos["items"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .find(|r| r.pointer("/metadata/name") == Some(&Value::from("local")))
        })
        .and_then(|r| r.pointer("/status/scrub").cloned())
        .ok_or_else(|| format!("no scrub in the status of Repo local: {repos}"))
}

/// Runs the check on `host` and waits until it succeeded and the Repo's cycle counts `read`
/// parts; returns the Repo's scrub status and the end of the check's log.
fn check_on(fleet: &Fleet, name: &str, host: &str, read: u64) -> (Value, String) {
    fleet.write(
        &format!("requests/{name}.yaml"),
        &request(name, host, "scrub"),
    );
    let run = fleet.eventually(LONG, &format!("check {name} on {host} to succeed"), || {
        let run = fleet.backup(name)?;
        match run.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Ok(run),
            Some(phase @ ("Failed" | "PartiallyFailed" | "Skipped" | "Cancelled")) => {
                panic!("check {name} ended {phase}: {run:#}\n{}", fleet.log_tails())
            }
            _ => Err(format!("{}", run["status"])),
        }
    });
    let scrub = fleet.eventually(LONG, "the Repo's scrub status to count the read", || {
        let scrub = scrub_status(fleet)?;
        if scrub["partsRead"].as_u64() == Some(read) {
            Ok(scrub)
        } else {
            Err(scrub.to_string())
        }
    });
    (scrub, run["status"]["logTail"].to_string())
}

#[test]
fn a_rotating_check_reads_the_next_part_on_every_host_and_after_a_restart() {
    let hosts = [HOST, "web-2", "web-3"];
    let mut fleet = Fleet::with_hosts(&hosts);
    // The repository exists once the first backup ran.
    fleet.write(
        "requests/first.yaml",
        &backup_request_yaml("first", "files"),
    );
    fleet.eventually(LONG, "the first backup", || {
        let run = fleet.backup("first")?;
        (run.pointer("/status/phase") == Some(&Value::from("Succeeded")))
            .then_some(())
            .ok_or_else(|| run["status"].to_string())
    });
    fleet.write("schedules/scrub.yaml", &scrub_schedule(&hosts));
    fleet.start_agent_as("web-2");
    fleet.wait_in_sync(HOST);
    fleet.wait_in_sync("web-2");

    let (scrub, log) = check_on(&fleet, "scrub-1", HOST, 1);
    assert_eq!(scrub["parts"], PARTS, "{scrub}");
    assert_eq!(scrub["nextPart"], 2, "{scrub}");
    assert!(scrub.get("fullyReadSince").is_none(), "{scrub}");
    assert!(log.contains("read group #1 of"), "web-1 read part 1: {log}");

    // Another host sharing the repo goes on with the cycle rather than start its own.
    let (scrub, log) = check_on(&fleet, "scrub-2", "web-2", 2);
    assert_eq!(scrub["nextPart"], 3, "{scrub}");
    assert!(log.contains("read group #2 of"), "web-2 read part 2: {log}");

    // A restarted controller remembers where the cycle is, and tells a host that never
    // checked the repo.
    fleet.restart_controller();
    fleet.start_agent_as("web-3");
    fleet.wait_in_sync("web-3");
    let (scrub, log) = check_on(&fleet, "scrub-3", "web-3", 3);
    assert!(log.contains("read group #3 of"), "web-3 read part 3: {log}");
    assert_eq!(
        scrub["nextPart"], 1,
        "after the last part, the first: {scrub}"
    );
    let since = scrub["fullyReadSince"].as_str().unwrap_or_default();
    let first = fleet.backup("scrub-1").unwrap();
    assert_eq!(
        Some(since),
        first
            .pointer("/status/completionTime")
            .and_then(Value::as_str),
        "every pack was read since the first part was: {scrub}"
    );
}
