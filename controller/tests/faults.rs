//! Faults an unlucky or hostile operator meets, with the real controller, real agents and
//! Debian's restic: a repository shared by several hosts created by racing first runs, and a
//! controller restarted in front of a config directory it rejects.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::Timelike;
use common::fleet::*;
use serde_json::Value;

/// Hosts sharing every repository in the race test; [`HOST`] comes first, so it initialises.
const SHARERS: [&str; 3] = [HOST, "web-2", "web-3"];
/// Fresh repositories raced for at once. The old race damaged about half of them.
const REPOS: usize = 6;
/// Every schedule fires at these seconds of each minute, on every host at the same moment.
const EVERY: u32 = 20;

fn shared_repo_yaml(fleet: &Fleet, i: usize) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata:\n  name: shared-{i}\nspec:\n  url: {}\n  password:\n    file: {}\n  initialize: true\n",
        fleet.root.join(format!("shared-{i}")).display(),
        fleet.password.display()
    )
}

fn shared_schedule_yaml(fleet: &Fleet, i: usize) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: first-{i}\nspec:\n  operation: backup\n  cron: \"*/{EVERY} * * * * *\"\n  hosts: [{}]\n  repo: shared-{i}\n  paths:\n    - {}\n",
        SHARERS.join(", "),
        fleet.data.display()
    )
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The finished runs of the `first-*` schedules: `(schedule, host, phase, reason)`.
fn finished_runs(fleet: &Fleet) -> Result<Vec<(String, String, String, String)>, String> {
    let runs: Vec<_> = fleet
        .backups()?
        .iter()
        .filter(|b| text(b, "/spec/schedule").starts_with("first-"))
        .map(|b| {
            (
                text(b, "/spec/schedule").to_string(),
                text(b, "/spec/host").to_string(),
                text(b, "/status/phase").to_string(),
                text(b, "/status/reason").to_string(),
            )
        })
        .collect();
    Ok(runs
        .into_iter()
        .filter(|(_, _, phase, _)| !matches!(phase.as_str(), "" | "Pending" | "Running"))
        .collect())
}

fn key_files(repo: &Path) -> usize {
    fs::read_dir(repo.join("keys")).map_or(0, |d| d.count())
}

#[test]
fn hosts_sharing_a_new_repository_on_one_cron_initialise_it_once() {
    let mut fleet = Fleet::with_hosts(&SHARERS);
    for host in &SHARERS[1..] {
        fleet.start_agent_as(host);
    }
    for host in SHARERS {
        fleet.wait_in_sync(host);
    }

    // Declare every repository and schedule just after a firing second, so that every agent
    // has applied them before the next one: then all first runs start together.
    fleet.eventually(LONG, "a moment just after a firing second", || {
        let second = chrono::Utc::now().second();
        (second % EVERY == 1)
            .then_some(())
            .ok_or(format!("second {second}"))
    });
    let mut files = Vec::new();
    for i in 0..REPOS {
        files.push((
            format!("repos/shared-{i}.yaml"),
            shared_repo_yaml(&fleet, i),
        ));
        files.push((
            format!("schedules/first-{i}.yaml"),
            shared_schedule_yaml(&fleet, i),
        ));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    fleet.write_all(&files);

    // Wait until every host has a successful run on every repository: the first firing races,
    // a later one finds every repository in place.
    let runs = fleet.eventually(
        Duration::from_secs(240),
        "a successful first-* run on every host for every repository",
        || {
            let runs = finished_runs(&fleet)?;
            let succeeded: std::collections::BTreeSet<(&str, &str)> = runs
                .iter()
                .filter(|r| r.2 == "Succeeded")
                .map(|r| (r.0.as_str(), r.1.as_str()))
                .collect();
            (succeeded.len() == SHARERS.len() * REPOS)
                .then_some(runs.clone())
                .ok_or(format!(
                    "{} succeeded of {} runs: {runs:?}",
                    succeeded.len(),
                    runs.len()
                ))
        },
    );

    for (schedule, host, phase, reason) in &runs {
        // Under load a firing may still find the previous run going (concurrencyPolicy Forbid).
        let waited = phase == "Skipped"
            && (reason == "StillRunning" || (reason == "RepositoryNotInitialized" && host != HOST));
        assert!(
            phase == "Succeeded" || waited,
            "{schedule} on {host} ended {phase} ({reason}); every run: {runs:?}\n{}",
            fleet.log_tails()
        );
    }
    for i in 0..REPOS {
        let repo = fleet.root.join(format!("shared-{i}"));
        assert_eq!(
            key_files(&repo),
            1,
            "shared-{i} has one key: exactly one `restic init` ran"
        );
        let out = Command::new(RESTIC)
            .arg("-r")
            .arg(&repo)
            .arg("--password-file")
            .arg(&fleet.password)
            .args(["--no-cache", "snapshots", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "shared-{i} is usable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hosts: std::collections::BTreeSet<String> =
            serde_json::from_slice::<Vec<Value>>(&out.stdout)
                .unwrap()
                .iter()
                .map(|s| text(s, "/hostname").to_string())
                .collect();
        assert_eq!(
            hosts.len(),
            SHARERS.len(),
            "shared-{i} holds a snapshot of every host: {hosts:?}"
        );
    }
    let repo = fleet
        .api("/api/v1/repos")
        .ok()
        .and_then(|repos| {
            repos["items"]
                .as_array()?
                .iter()
                .find(|r| text(r, "/metadata/name") == "shared-0")
                .cloned()
        })
        .expect("the repo is listed");
    assert_eq!(
        repo.pointer("/status/initialized"),
        Some(&Value::Bool(true)),
        "{repo}"
    );
}

/// What people see of the fleet: host names from the API, per-host metric series, the page.
fn seen(fleet: &Fleet) -> (Vec<String>, usize, String) {
    let hosts: Vec<String> = fleet.api("/api/v1/hosts").unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| text(h, "/metadata/name").to_string())
        .collect();
    let (_, metrics) = fleet.get("/metrics").unwrap();
    let host_series = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&format!("host=\"{HOST}\"")))
        .count();
    let (_, page) = fleet.get("/").unwrap();
    (hosts, host_series, page)
}

#[test]
fn a_restart_in_front_of_a_rejected_directory_keeps_serving_the_fleet_in_force() {
    let mut fleet = Fleet::with_hosts(&[HOST, "db-1"]);
    let (hosts, host_series, _) = seen(&fleet);
    assert_eq!(hosts, ["db-1", HOST]);
    assert!(host_series > 0, "per-host series before the restart");
    let version = fleet.wait_in_sync(HOST);

    fleet.write("broken.yaml", "kind: Host\nmetadata: [\n");
    fleet.eventually(LONG, "the broken revision rejected", || {
        fleet
            .revisions()?
            .get("rejected")
            .filter(|r| !r.is_null())
            .map(|_| ())
            .ok_or_else(|| "no rejected revision yet".to_string())
    });
    fleet.restart_controller();

    let (status, why) = fleet.get("/readyz").unwrap();
    assert_eq!(status, 503, "{why}");
    assert!(why.starts_with("the config directory is rejected"), "{why}");
    let (hosts, after_series, page) = seen(&fleet);
    assert_eq!(hosts, ["db-1", HOST], "the API lists the fleet in force");
    assert_eq!(
        after_series, host_series,
        "/metrics keeps every per-host series"
    );
    assert!(!page.contains("No hosts declared"), "the page shows hosts");
    assert!(page.contains("db-1"), "the page lists db-1");
    // Nothing changed for the agent: same version, still in sync, nothing pushed again.
    assert_eq!(fleet.wait_in_sync(HOST), version);
    let metrics = fleet.get("/metrics").unwrap().1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("holdfast_config_errors ") && !l.ends_with(" 0")),
        "the config error metric says the directory is rejected"
    );

    // Fixing the directory makes the controller ready again.
    fleet.remove("broken.yaml");
    fleet.eventually(LONG, "/readyz 200 after the fix", || {
        match fleet.get("/readyz") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
fn tokens_are_only_for_hosts_declared_in_their_namespace() {
    let fleet = Fleet::with_hosts(&[HOST, "db-1"]);
    let create = |args: &[&str]| {
        let out = Command::new(holdfast_bin())
            .args(["token", "create"])
            .args(args)
            .arg("--data-dir")
            .arg(&fleet.controller_data)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stdout, stderr) = create(&["web-9"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "no token: {stdout}");
    assert!(
        stderr.contains("host web-9 is not declared in namespace default of the fleet in force (declared there: db-1, web-1)"),
        "{stderr}"
    );
    let (code, _, stderr) = create(&["db-1", "--namespace", "ops"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("host ops/db-1 is not declared in namespace ops"),
        "{stderr}"
    );
    let (code, stdout, stderr) = create(&["db-1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim().len(), 64, "a token for a declared host");

    // A token issued while its host was declared enrolls nothing once the host is removed.
    fleet.remove("hosts/db-1.yaml");
    fleet.eventually(LONG, "db-1 gone from the API", || {
        let hosts = fleet.api("/api/v1/hosts")?;
        (hosts["items"].as_array().map_or(0, Vec::len) == 1)
            .then_some(())
            .ok_or(format!("{hosts}"))
    });
    let (status, body) = fleet
        .post_json(
            "/agent/v1/enroll",
            &serde_json::json!({ "token": stdout.trim() }),
        )
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body,
        "host db-1 is no longer declared in the fleet; declare it again before enrolling its agent"
    );
}

/// `(soft, hard)` open-file limits of a process, from `/proc`.
fn open_file_limits(pid: u32) -> Result<(String, String), String> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).map_err(|e| e.to_string())?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or("no Max open files line")?;
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    Ok((fields[0].to_string(), fields[1].to_string()))
}

#[test]
fn the_controller_raises_its_open_file_limit_to_the_hard_limit() {
    let fleet = Fleet::start();
    let port = free_port();
    let data = fleet.root.join("second-controller");
    // A soft limit of 512 under whatever hard limit this machine has, as systemd's default
    // soft limit of 1,024 would be.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -S -n 512 && exec \"$0\" \"$@\"")
        .arg(holdfast_bin())
        .arg("controller")
        .arg("--config-dir")
        .arg(&fleet.config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let log = fleet.root.join("second-controller.log");
    let mut controller = Proc::spawn("a second controller", &mut command, &log);
    let pid = controller.child.id();
    let hard = open_file_limits(std::process::id()).unwrap().1;
    fleet.eventually(
        LONG,
        "the soft open-file limit raised to the hard one",
        || {
            assert!(!controller.has_exited(), "{}", tail(&log, 20));
            let (soft, hard_seen) = open_file_limits(pid)?;
            (soft == hard && hard_seen == hard)
                .then_some(())
                .ok_or(format!("soft {soft}, hard {hard_seen}; wanted {hard}"))
        },
    );
    fleet.eventually(LONG, "the limit logged with the agents it allows", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.contains(&format!("open-file limit {hard}: serving at most"))
            .then_some(())
            .ok_or(tail(&log, 5))
    });
}

#[test]
fn agents_beyond_the_maximum_are_refused_with_a_reason_until_one_leaves() {
    let mut fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    fleet.controller_args = vec!["--max-agents".into(), "1".into()];
    fleet.restart_controller();
    fleet.wait_in_sync(HOST);

    fleet.start_agent_as("web-2");
    let log = fleet.root.join("agent-web-2.log");
    fleet.eventually(LONG, "web-2's agent told why it is refused", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.contains("this controller serves its maximum of 1 agents")
            .then_some(())
            .ok_or(tail(&log, 5))
    });
    let web2 = fleet.host("web-2").unwrap();
    assert_ne!(web2.pointer("/status/online"), Some(&Value::Bool(true)));

    // Once web-1's agent is gone, web-2's gets in on its next try.
    fleet.kill_agent();
    fleet.wait_in_sync("web-2");
}

#[test]
fn a_run_now_request_that_meets_a_running_run_waits_for_it_and_then_runs() {
    let fleet = Fleet::start();
    let gate = fleet.root.join("gate");
    let gated = gated_schedule_yaml("gated", &fleet.data, &gate);
    fleet.write_all(&[
        ("schedules/gated.yaml", &gated),
        (
            "requests/first.yaml",
            &backup_request_yaml("first", "gated"),
        ),
    ]);
    fleet.eventually(LONG, "the first request running", || {
        let first = fleet.backup("first")?;
        (text(&first, "/status/phase") == "Running")
            .then_some(())
            .ok_or(format!("{first}"))
    });

    fleet.write(
        "requests/second.yaml",
        &backup_request_yaml("second", "gated"),
    );
    let second = fleet.eventually(LONG, "the second request told to wait", || {
        let second = fleet.backup("second")?;
        let log = second
            .pointer("/status/logTail")
            .cloned()
            .unwrap_or_default();
        log.to_string()
            .contains("waiting for the previous run")
            .then_some(second.clone())
            .ok_or(format!("{second}"))
    });
    assert_eq!(text(&second, "/status/phase"), "Dispatched", "{second}");

    fs::write(&gate, "").unwrap();
    for name in ["first", "second"] {
        fleet.eventually(LONG, &format!("{name} succeeded"), || {
            let run = fleet.backup(name)?;
            match text(&run, "/status/phase") {
                "Succeeded" => Ok(()),
                "Skipped" | "Failed" => panic!("{name} did not run: {run}"),
                _ => Err(format!("{run}")),
            }
        });
    }
}
