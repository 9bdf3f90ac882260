//! End to end: the real controller (`holdfast controller`), the real agent and Debian's restic,
//! as separate processes on loopback. Schedule edits reach the agent, bad revisions are refused
//! whole, runs become Backup records with restic's snapshot ids, nothing runs twice across
//! controller crashes, and the status page shows the fleet in a real browser.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::*;
use serde_json::{Value, json};

fn phase(backup: &Value) -> &str {
    backup
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn job_id(backup: &Value) -> &str {
    backup
        .pointer("/status/jobId")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn drift_reason(host: &Value) -> Option<&str> {
    host.pointer("/status/driftReason")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
}

fn online(host: &Value) -> bool {
    host.pointer("/status/online") == Some(&Value::Bool(true))
}

/// Waits for the Backup `name` to reach a final phase and returns it; fails unless Succeeded.
fn wait_succeeded(fleet: &Fleet, name: &str, limit: Duration) -> Value {
    let backup = fleet.eventually(limit, &format!("Backup {name} to finish"), || {
        let b = fleet.backup(name)?;
        match phase(&b) {
            "Pending" | "Dispatched" | "Running" | "" => Err(format!("status: {}", b["status"])),
            _ => Ok(b),
        }
    });
    assert_eq!(
        phase(&backup),
        "Succeeded",
        "expected Backup {name} to succeed: {backup:#}\n{}",
        fleet.log_tails()
    );
    backup
}

#[test]
fn a_schedule_edit_reaches_the_agent_within_two_seconds_and_a_comment_changes_nothing() {
    let fleet = Fleet::start();
    let (before, _) = fleet.versions(HOST).unwrap();

    let written = Instant::now();
    fleet.write("schedules/files.yaml", &fleet.files_schedule("0 4 1 1 *"));
    // The issue's requirement: applied on the host within 2 s of the write.
    let limit = Duration::from_secs(2).saturating_sub(written.elapsed());
    let version = fleet.eventually(
        limit,
        "desired version +1, acknowledged by the agent, within 2 s of the write",
        || {
            let (desired, applied) = fleet.versions(HOST)?;
            if desired == before + 1 && applied == desired {
                Ok(desired)
            } else {
                Err(format!(
                    "desired {desired}, applied {applied} (was {before})"
                ))
            }
        },
    );

    fleet.append("schedules/files.yaml", "# note\n");
    // Longer than the controller's debounce: the edit has been read by now.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        fleet.versions(HOST).unwrap(),
        (version, version),
        "a comment-only edit must not change the schedule version\n{}",
        fleet.log_tails()
    );
    let revisions = fleet.revisions().unwrap();
    assert!(
        revisions["rejected"].is_null(),
        "nothing was rejected: {revisions:#}"
    );

    // Nothing changes now, so nothing is read again: reading the directory must not itself
    // count as a change.
    let id = revisions["applied"]["id"].clone();
    std::thread::sleep(Duration::from_secs(1));
    let later = fleet.revisions().unwrap();
    assert_eq!(
        later["applied"]["id"], id,
        "the controller keeps re-reading an unchanged config directory: {later:#}"
    );
}

#[test]
fn a_broken_revision_is_rejected_whole_shown_with_its_errors_and_fixing_it_applies() {
    let fleet = Fleet::start();
    let (before, _) = fleet.versions(HOST).unwrap();
    let revisions = fleet.revisions().unwrap();
    let commit_before = revisions["applied"]["commit"].clone();
    assert!(
        commit_before.is_string(),
        "expected an applied revision with a commit: {revisions:#}"
    );

    // One commit: a valid change to `files` (which must not be applied on its own) and a
    // schedule whose cron does not parse.
    let broken = "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: broken
spec:
  operation: backup
  cron: \"not a cron\"
  hosts: [web-1]
  paths: [/srv]
";
    let edited = fleet.files_schedule("0 4 1 1 *");
    fleet.write_all(&[
        ("schedules/broken.yaml", broken),
        ("schedules/files.yaml", &edited),
    ]);

    let errors: Vec<String> = fleet.eventually(LONG, "a rejected revision", || {
        let r = fleet.revisions()?;
        match r["rejected"]["errors"].as_array() {
            Some(errors) if !errors.is_empty() => Ok(errors
                .iter()
                .map(|e| e.as_str().unwrap_or_default().to_string())
                .collect()),
            _ => Err(format!("revisions: {r}")),
        }
    });
    // `file:line: message`; the cron is on line 7.
    assert!(
        errors
            .iter()
            .any(|e| e.contains("schedules/broken.yaml:7") && e.contains("not a cron")),
        "expected an error naming schedules/broken.yaml, line 7 and the cron, got {errors:#?}"
    );
    let revisions = fleet.revisions().unwrap();
    assert_eq!(
        revisions["applied"]["commit"], commit_before,
        "the revision in force must stay the one before: {revisions:#}"
    );

    let (status, page) = fleet.get("/").unwrap();
    assert_eq!(status, 200, "GET /: {page}");
    let text = unescape_html(&page);
    for error in &errors {
        assert!(
            text.contains(error.as_str()),
            "expected the status page to show the error {error:?} verbatim:\n{page}"
        );
    }

    fleet.holds(
        Duration::from_millis(1500),
        "the host's versions to stay as they were",
        || match fleet.versions(HOST)? {
            (d, a) if d == before && a == before => Ok(()),
            (d, a) => Err(format!("desired {d}, applied {a} (was {before})")),
        },
    );

    fleet.remove("schedules/broken.yaml");
    fleet.eventually(
        LONG,
        "the fixed revision applied: rejected cleared, files edit pushed and acknowledged",
        || {
            let r = fleet.revisions()?;
            let (desired, applied) = fleet.versions(HOST)?;
            if r["rejected"].is_null() && desired == before + 1 && applied == desired {
                Ok(())
            } else {
                Err(format!(
                    "desired {desired}, applied {applied}, revisions {r}"
                ))
            }
        },
    );
    let revisions = fleet.revisions().unwrap();
    assert_eq!(
        revisions["applied"]["errors"],
        json!([]),
        "an applied revision has no errors: {revisions:#}"
    );
}

#[test]
fn deleting_a_schedule_file_removes_the_schedule_from_the_agents_plan() {
    let fleet = Fleet::start();
    let (before, _) = fleet.versions(HOST).unwrap();

    fleet.remove("schedules/files.yaml");
    let version = fleet.eventually(LONG, "desired version +1, acknowledged", || {
        let (desired, applied) = fleet.versions(HOST)?;
        if desired == before + 1 && applied == desired {
            Ok(desired)
        } else {
            Err(format!(
                "desired {desired}, applied {applied} (was {before})"
            ))
        }
    });

    let path = fleet.agent_state.join("schedule.json");
    let stored: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        stored["version"], version,
        "the agent stores the acknowledged version"
    );
    let schedules = stored
        .pointer("/plan/schedules")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no plan.schedules in {}: {stored:#}", path.display()));
    assert!(
        schedules.iter().all(|s| s["name"] != "files"),
        "expected no schedule `files` in the agent's plan any more: {schedules:#?}"
    );
}

#[test]
fn a_seconds_cron_runs_and_its_backup_record_carries_restics_snapshot() {
    let fleet = Fleet::start();
    fleet.write(
        "schedules/fast.yaml",
        &schedule_yaml(
            "fast",
            "*/5 * * * * *",
            &fleet.data,
            "  concurrencyPolicy: Forbid\n",
        ),
    );

    let backup = fleet.eventually(LONG, "a Succeeded Backup of schedule fast", || {
        let backups = fleet.backups()?;
        backups
            .iter()
            .find(|b| {
                b.pointer("/spec/schedule") == Some(&json!("fast")) && phase(b) == "Succeeded"
            })
            .cloned()
            .ok_or_else(|| format!("backups: {backups:?}"))
    });

    let name = backup
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap();
    assert!(
        name.starts_with("fast-web-1-"),
        "a scheduled run record is named <schedule>-<host>-<time>: {name}"
    );
    assert_eq!(backup["kind"], "Backup");
    assert_eq!(backup.pointer("/spec/host"), Some(&json!(HOST)));
    assert_eq!(backup.pointer("/spec/operation"), Some(&json!("backup")));
    assert_eq!(backup.pointer("/spec/repo"), Some(&json!("local")));
    assert!(!job_id(&backup).is_empty(), "expected a jobId: {backup:#}");
    for field in ["startTime", "completionTime"] {
        assert!(
            backup["status"][field].is_string(),
            "expected status.{field}: {backup:#}"
        );
    }

    let snapshot = backup
        .pointer("/status/snapshotId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        snapshot.len() == 64 && snapshot.chars().all(|c| c.is_ascii_hexdigit()),
        "expected a 64-hex-character snapshotId: {backup:#}"
    );
    let ids = fleet.snapshot_ids();
    assert!(
        ids.iter().any(|id| id == snapshot),
        "expected snapshot {snapshot} in the repository, which has {ids:?}"
    );

    let summary = &backup["status"]["summary"];
    let count = |field: &str| {
        summary[field]
            .as_u64()
            .unwrap_or_else(|| panic!("expected summary.{field}: {backup:#}"))
    };
    assert_eq!(
        count("filesNew") + count("filesChanged") + count("filesUnmodified"),
        DATA_FILES,
        "new + changed + unmodified must count every file in {}: {summary:#}",
        fleet.data.display()
    );
    assert!(
        summary["dataAdded"].is_u64(),
        "expected summary.dataAdded: {summary:#}"
    );
    assert_eq!(
        count("totalFilesProcessed"),
        DATA_FILES,
        "summary: {summary:#}"
    );
}

#[test]
fn a_run_now_backup_runs_exactly_once_even_across_a_controller_restart() {
    let mut fleet = Fleet::start();
    assert!(
        fleet.snapshots().is_empty(),
        "no snapshot before the request"
    );

    fleet.write(
        "requests/run-now-1.yaml",
        &backup_request_yaml("run-now-1", "files"),
    );
    let done = wait_succeeded(&fleet, "run-now-1", LONG);
    let job = job_id(&done).to_string();
    assert!(!job.is_empty(), "expected a jobId: {done:#}");
    assert_eq!(done.pointer("/spec/schedule"), Some(&json!("files")));
    assert_eq!(
        fleet.snapshots().len(),
        1,
        "the request made exactly one snapshot"
    );

    fleet.restart_controller();
    fleet.wait_in_sync(HOST);
    // Time for a wrongly repeated request to be dispatched and run.
    std::thread::sleep(Duration::from_secs(4));

    assert_eq!(
        fleet.snapshots().len(),
        1,
        "the request must not run again after a restart\n{}",
        fleet.log_tails()
    );
    let after = fleet.backup("run-now-1").unwrap();
    assert_eq!(phase(&after), "Succeeded", "{after:#}");
    assert_eq!(job_id(&after), job, "the same run: {after:#}");
    let backups = fleet.backups().unwrap();
    assert_eq!(backups.len(), 1, "one run, one Backup record: {backups:#?}");
}

#[test]
fn a_drill_request_restores_verifies_and_shows_on_the_record_status_metrics_and_page() {
    let fleet = Fleet::start();
    fleet.write(
        "requests/run-now-1.yaml",
        &backup_request_yaml("run-now-1", "files"),
    );
    let backup = wait_succeeded(&fleet, "run-now-1", LONG);
    // No schedule: the host's latest snapshot, 20 random files (all 3 here).
    fleet.write(
        "requests/drill-now.yaml",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: drill-now\nspec:\n  host: {HOST}\n  operation: drill\n"
        ),
    );
    let drill = wait_succeeded(&fleet, "drill-now", LONG);
    assert_eq!(drill.pointer("/spec/operation"), Some(&json!("drill")));
    assert_eq!(
        drill.pointer("/status/snapshotId"),
        backup.pointer("/status/snapshotId"),
        "the drill restored the latest snapshot: {drill:#}"
    );
    let result = &drill["status"]["drill"];
    assert_eq!(result["filesVerified"], json!(DATA_FILES), "{drill:#}");
    assert_eq!(result["filesExpected"], json!(DATA_FILES), "{drill:#}");
    assert!(result["bytesPerSecond"].as_u64() > Some(0), "{drill:#}");
    assert!(
        result["rate"].as_str().is_some_and(|r| r.ends_with("/s")),
        "{drill:#}"
    );

    let host = fleet.eventually(LONG, "the host's last drill", || {
        let host = fleet.host(HOST)?;
        match host.pointer("/status/lastDrill/backup") {
            Some(name) if name == "drill-now" => Ok(host),
            _ => Err(format!("status: {}", host["status"])),
        }
    });
    let last = &host["status"]["lastDrill"];
    assert_eq!(last["phase"], "Succeeded", "{host:#}");
    assert_eq!(last["filesVerified"], json!(DATA_FILES), "{host:#}");
    assert!(last["lastSuccessTime"].is_string(), "{host:#}");

    let (_, metrics) = fleet.get("/metrics").unwrap();
    let line = format!("holdfast_drill_last_succeeded{{namespace=\"default\",host=\"{HOST}\"}} 1");
    assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    assert!(
        metrics.contains("holdfast_drill_last_bytes_per_second{"),
        "{metrics}"
    );

    let (_, page) = fleet.get(&format!("/hosts/default/{HOST}")).unwrap();
    assert!(
        page.contains("Restore drill") && page.contains("RTO estimate"),
        "{page}"
    );
    assert!(page.contains("drill-now"), "{page}");
}

#[test]
fn a_controller_killed_during_a_backup_ends_with_one_succeeded_record() {
    let mut fleet = Fleet::start();
    // 100 MB that does not compress or deduplicate, uploaded at 10 MiB/s: about ten seconds.
    random_files(&fleet.data.join("big"), 10, 10 << 20);
    let slow = schedule_yaml(
        "slow",
        QUIET_CRON,
        &fleet.data,
        "  limits:\n    uploadKibPerSecond: 10240\n",
    );
    let request = backup_request_yaml("slow-1", "slow");
    fleet.write_all(&[
        ("schedules/slow.yaml", &slow),
        ("requests/slow-1.yaml", &request),
    ]);

    let running = fleet.eventually(LONG, "Backup slow-1 Running", || {
        let b = fleet.backup("slow-1")?;
        match phase(&b) {
            "Running" => Ok(b),
            "Pending" | "Dispatched" | "" => Err(format!("status: {}", b["status"])),
            other => panic!(
                "Backup slow-1 became {other} before it could be seen Running; the backup is \
                 too fast for this test: {b:#}\n{}",
                fleet.log_tails()
            ),
        }
    });
    let job = job_id(&running).to_string();

    fleet.restart_controller();

    let done = wait_succeeded(&fleet, "slow-1", Duration::from_secs(120));
    if !job.is_empty() {
        assert_eq!(job_id(&done), job, "the same run: {done:#}");
    }
    let job = job_id(&done).to_string();
    let backups = fleet.backups().unwrap();
    let records: Vec<&Value> = backups.iter().filter(|b| job_id(b) == job).collect();
    assert_eq!(
        records.len(),
        1,
        "exactly one Backup record for job {job}: {backups:#?}"
    );
    assert_eq!(
        backups.len(),
        1,
        "no other record was created: {backups:#?}"
    );
    assert_eq!(
        fleet.snapshots().len(),
        1,
        "the run made exactly one snapshot"
    );
}

#[test]
fn a_stopped_agent_goes_offline_shows_drift_and_catches_up_when_back() {
    let mut fleet = Fleet::start();
    let (before, _) = fleet.versions(HOST).unwrap();

    fleet.kill_agent();
    fleet.eventually(LONG, "web-1 offline", || {
        let h = fleet.host(HOST)?;
        if h.pointer("/status/online") == Some(&Value::Bool(false)) {
            Ok(())
        } else {
            Err(format!("status: {}", h["status"]))
        }
    });

    fleet.write("schedules/files.yaml", &fleet.files_schedule("0 4 1 1 *"));
    let drifted = |h: &Value| -> Result<(), String> {
        let (desired, applied) = versions_of(h)?;
        if desired == before + 1 && applied == before && drift_reason(h).is_some() && !online(h) {
            Ok(())
        } else {
            Err(format!("status: {}", h["status"]))
        }
    };
    fleet.eventually(
        LONG,
        "desired version +1, applied unchanged, with a driftReason",
        || drifted(&fleet.host(HOST)?),
    );
    fleet.holds(Duration::from_secs(2), "the drift to persist", || {
        drifted(&fleet.host(HOST)?)
    });

    fleet.start_agent();
    let version = fleet.wait_in_sync(HOST);
    assert_eq!(version, before + 1);
    let host = fleet.host(HOST).unwrap();
    assert_eq!(drift_reason(&host), None, "no drift once in sync: {host:#}");
}

#[test]
fn an_agent_back_at_the_version_it_applied_is_online_again() {
    let mut fleet = Fleet::start();
    let applied = fleet.wait_in_sync(HOST);
    // Twice: the second time the host's status is as the first return left it.
    for round in 1..=2 {
        fleet.kill_agent();
        fleet.eventually(LONG, &format!("web-1 offline ({round})"), || {
            let h = fleet.host(HOST)?;
            match online(&h) {
                false => Ok(()),
                true => Err(format!("status: {}", h["status"])),
            }
        });
        fleet.start_agent();
        fleet.eventually(LONG, &format!("web-1 online again ({round})"), || {
            let h = fleet.host(HOST)?;
            match online(&h) && versions_of(&h)? == (applied, applied) {
                true => Ok(()),
                false => Err(format!("status: {}", h["status"])),
            }
        });
    }
}

#[test]
fn refused_enrollments_and_credentials_change_nothing() {
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    let enroll = |token: &str| {
        fleet
            .post_json("/agent/v1/enroll", &json!({ "token": token }))
            .unwrap()
    };
    let refused = |what: &str, (status, body): (u16, String)| {
        assert_eq!(status, 401, "{what}: expected 401, got {status} {body}");
        assert!(
            !body.trim().is_empty() && !body.trim_start().starts_with('{'),
            "{what}: expected a plain-text reason, got {body:?}"
        );
    };

    // A token works once: the first use enrolls web-2 (whose agent then never connects).
    let token = fleet.create_token("web-2", None);
    let expiring = fleet.create_token("web-2", Some("1s"));
    let (status, body) = enroll(&token);
    assert_eq!(status, 200, "the first use of a token: {body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["host"], "web-2", "{answer}");
    assert_eq!(answer["namespace"], "default", "{answer}");
    let credential = answer["credential"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!credential.is_empty(), "expected a credential: {answer}");

    // What the refusals below must leave alone. web-1's heartbeats move its lastSeen (and with
    // it its resourceVersion), so web-1 is compared without those two fields.
    let web2_before = fleet.host("web-2").unwrap();
    let web1_before = without_heartbeat(fleet.host(HOST).unwrap());
    assert!(
        web2_before["metadata"]["resourceVersion"].is_string(),
        "expected metadata.resourceVersion: {web2_before:#}"
    );

    refused("an unknown token", enroll("not-a-token"));
    refused("a token used twice", enroll(&token));
    std::thread::sleep(Duration::from_secs(2));
    refused("an expired token", enroll(&expiring));

    for bad in ["not-a-credential".to_string(), format!("{credential}x")] {
        let bearer = format!("Bearer {bad}");
        let (status, body) = fleet
            .get_with("/agent/v1/connect", &[("Authorization", &bearer)])
            .unwrap();
        assert_eq!(status, 401, "GET /agent/v1/connect with {bearer:?}: {body}");

        // A real WebSocket handshake with that credential.
        use tokio_tungstenite::tungstenite;
        use tungstenite::client::IntoClientRequest;
        let url = format!("ws://127.0.0.1:{}/agent/v1/connect", fleet.port);
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("Authorization", bearer.parse().unwrap());
        match tungstenite::connect(request) {
            Err(tungstenite::Error::Http(response)) => assert_eq!(
                response.status().as_u16(),
                401,
                "WebSocket upgrade with {bearer:?}"
            ),
            Err(e) => panic!("WebSocket upgrade with {bearer:?}: expected 401, got {e}"),
            Ok(_) => panic!("WebSocket upgrade with {bearer:?} was accepted"),
        }
    }
    let (status, body) = fleet.get("/agent/v1/connect").unwrap();
    assert_eq!(
        status, 401,
        "GET /agent/v1/connect without a credential: {body}"
    );

    let web2 = fleet.host("web-2").unwrap();
    assert!(!online(&web2), "web-2 never connected: {web2:#}");
    assert_eq!(
        web2["metadata"]["resourceVersion"], web2_before["metadata"]["resourceVersion"],
        "refused attempts must write nothing to web-2: before {web2_before:#}, after {web2:#}"
    );
    let web1 = fleet.host(HOST).unwrap();
    assert!(online(&web1), "web-1 stays online: {web1:#}");
    assert_eq!(
        without_heartbeat(web1),
        web1_before,
        "refused attempts must write nothing to web-1"
    );
}

/// A Host without what every heartbeat changes.
fn without_heartbeat(mut host: Value) -> Value {
    if let Some(metadata) = host["metadata"].as_object_mut() {
        metadata.remove("resourceVersion");
    }
    if let Some(status) = host["status"].as_object_mut() {
        status.remove("lastSeen");
    }
    host
}

/// Debian's chromium. scripts/test installs it; a missing browser fails a test rather than
/// skipping it.
fn chromium() -> &'static Path {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "/usr/bin/chromium is missing: install Debian's chromium (apt-get install chromium)"
    );
    chromium
}

/// Where screenshots are kept for a person to look at.
fn artefacts() -> &'static Path {
    let artefacts = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artefacts"
    ));
    std::fs::create_dir_all(artefacts).unwrap();
    artefacts
}

#[test]
fn the_status_page_shows_online_and_offline_hosts_in_chromium() {
    let chromium = chromium();
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);

    // The same through plain HTTP first: a failure here is easier to read.
    fleet.eventually(LONG, "the page's rows: web-1 online, web-2 offline", || {
        let (status, page) = fleet.get("/")?;
        let states = (row_state(&page, HOST), row_state(&page, "web-2"));
        if status == 200 && states == (Some("online".into()), Some("offline".into())) {
            Ok(())
        } else {
            Err(format!("{status}, rows {states:?}:\n{page}"))
        }
    });

    let profile = fleet.root.join("chromium");
    let browser = |extra: &[&str]| {
        let mut command = Command::new(chromium);
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(fleet.url("/"));
        let out = output_within(&mut command, LONG);
        assert!(
            out.status.success(),
            "chromium {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };

    let dom = String::from_utf8(browser(&["--dump-dom"]).stdout).unwrap();
    assert_eq!(
        row_state(&dom, HOST).as_deref(),
        Some("online"),
        "expected <tr data-host=\"web-1\" data-state=\"online\"> in the DOM:\n{dom}"
    );
    assert_eq!(
        row_state(&dom, "web-2").as_deref(),
        Some("offline"),
        "expected <tr data-host=\"web-2\" data-state=\"offline\"> in the DOM:\n{dom}"
    );

    let png = artefacts().join("status-page.png");
    let _ = std::fs::remove_file(&png);
    browser(&[
        &format!("--screenshot={}", png.display()),
        "--window-size=1400,900",
    ]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "expected a screenshot at {}", png.display());
}

/// A headless Debian chromium driven over the DevTools protocol, one tab at a time.
fn browser(profile: &Path) -> headless_chrome::Browser {
    let options = headless_chrome::LaunchOptions::default_builder()
        .path(Some(chromium().to_path_buf()))
        .sandbox(false)
        .user_data_dir(Some(profile.to_path_buf()))
        .window_size(Some((1400, 900)))
        .idle_browser_timeout(LONG * 3)
        .build()
        .unwrap();
    headless_chrome::Browser::new(options).unwrap()
}

/// Lays the tab out `width` CSS pixels wide, as a window of that width would.
fn set_width(tab: &headless_chrome::Tab, width: u32) {
    use headless_chrome::protocol::cdp::Emulation::SetDeviceMetricsOverride;
    tab.call_method(SetDeviceMetricsOverride {
        width,
        height: 900,
        device_scale_factor: 1.0,
        mobile: false,
        scale: None,
        screen_width: None,
        screen_height: None,
        position_x: None,
        position_y: None,
        dont_set_visible_size: None,
        screen_orientation: None,
        viewport: None,
        display_feature: None,
        device_posture: None,
    })
    .unwrap();
}

/// Loads `path` in the tab. The page has loaded when the document is complete and is not the
/// one marked before: the pages keep a connection open for live updates, so waiting for the
/// network to fall idle would wait on them.
fn open(fleet: &Fleet, tab: &headless_chrome::Tab, path: &str) {
    tab.evaluate("window.holdfastLeaving = true", false)
        .unwrap();
    tab.navigate_to(&fleet.url(path)).unwrap();
    fleet.eventually(LONG, &format!("{path} loaded in chromium"), || {
        let loaded = tab
            .evaluate(
                "JSON.stringify(!window.holdfastLeaving && document.readyState === 'complete')",
                false,
            )
            .ok()
            .and_then(|r| r.value);
        match loaded.as_ref().and_then(Value::as_str) {
            Some("true") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

/// A script's value, which the script gives as JSON text.
fn evaluate(tab: &headless_chrome::Tab, script: &str) -> Value {
    let result = tab.evaluate(script, false).unwrap();
    let text = result
        .value
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{script} gave no JSON text: {result:?}"));
    serde_json::from_str(text).unwrap()
}

/// The whole page as a PNG, in the test artefacts.
fn screenshot(tab: &headless_chrome::Tab, width: u32, file: &Path) {
    use base64::Engine;
    use headless_chrome::protocol::cdp::Page;
    let height = evaluate(tab, "JSON.stringify(document.documentElement.scrollHeight)")
        .as_f64()
        .unwrap_or(900.0)
        .min(8000.0);
    let shot = tab
        .call_method(Page::CaptureScreenshot {
            format: Some(Page::CaptureScreenshotFormatOption::Png),
            quality: None,
            clip: Some(Page::Viewport {
                x: 0.0,
                y: 0.0,
                width: f64::from(width),
                height,
                scale: 1.0,
            }),
            from_surface: Some(true),
            capture_beyond_viewport: Some(true),
            optimize_for_speed: None,
        })
        .unwrap();
    let png = base64::prelude::BASE64_STANDARD.decode(shot.data).unwrap();
    std::fs::write(file, png).unwrap();
}

/// `/hosts/default/web-1?page=2` as a file name: `hosts-default-web-1-page-2`.
fn slug(path: &str) -> String {
    let slug: String = path
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let slug = slug.trim_matches('-').to_string();
    if slug.is_empty() {
        "fleet".into()
    } else {
        slug
    }
}

/// What the browser shows of the fleet page's row of `host`, its "Last backup" cell, and a
/// mark set on the page before (which a reload would lose), as JSON text.
const LAST_BACKUP: &str = "JSON.stringify({\
    cell: (document.querySelector('tr[data-host=\"web-1\"] td[data-label=\"Last backup\"]') \
        || {}).textContent || null, \
    live: (document.getElementById('live') || {}).textContent || null, \
    mark: window.holdfastMark || null})";

/// The host page's "Last backup", its live indicator and the mark, as JSON text.
const HOST_LAST_BACKUP: &str = "JSON.stringify({\
    last: Array.from(document.querySelectorAll('dl.facts dt')).filter(dt => \
        dt.textContent === 'Last backup').map(dt => dt.nextElementSibling.textContent)[0] \
        || null, \
    live: (document.getElementById('live') || {}).textContent || null, \
    mark: window.holdfastMark || null})";

#[test]
fn the_fleet_page_follows_a_run_live_and_every_page_fits_1400_and_400_px_with_no_dead_link() {
    // web-2 never connects: the pages carry an offline host's notes and reasons.
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    let browser = browser(&fleet.root.join("chromium-live"));
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(LONG);
    set_width(&tab, 1400);
    open(&fleet, &tab, "/");
    let before = evaluate(
        &tab,
        &format!("window.holdfastMark = 'loaded once'; {LAST_BACKUP}"),
    );
    assert_eq!(before["cell"], "never", "no backup yet: {before}");
    fleet.eventually(LONG, "the page's script connected to /events", || {
        let seen = evaluate(&tab, LAST_BACKUP);
        (seen["live"] == "Live")
            .then_some(())
            .ok_or(format!("{seen}"))
    });

    // The agent runs a backup and reports it; the open page shows it without a reload.
    fleet.write(
        "requests/run-now-1.yaml",
        &backup_request_yaml("run-now-1", "files"),
    );
    let seen = fleet.eventually(LONG, "the run's phase in web-1's row, live", || {
        let seen = evaluate(&tab, LAST_BACKUP);
        match seen["cell"].as_str() {
            Some(cell) if cell.contains("Succeeded") => Ok(seen),
            _ => Err(format!("{seen}")),
        }
    });
    assert_eq!(
        seen["mark"], "loaded once",
        "the row changed by a reload, not live: {seen}"
    );
    let row_link = evaluate(
        &tab,
        "JSON.stringify(document.querySelector('tr[data-host=\"web-1\"] td[data-label=\"Last \
         backup\"] a').getAttribute('href'))",
    );
    assert_eq!(row_link, "/runs/default/run-now-1");
    wait_succeeded(&fleet, "run-now-1", LONG);

    // The host's page follows it too: a later run shows up as its last backup, unreloaded.
    open(&fleet, &tab, &format!("/hosts/default/{HOST}"));
    fleet.eventually(LONG, "the host page's script connected", || {
        let seen = evaluate(&tab, HOST_LAST_BACKUP);
        (seen["live"] == "Live")
            .then_some(())
            .ok_or(format!("{seen}"))
    });
    evaluate(
        &tab,
        "window.holdfastMark = 'loaded once'; JSON.stringify(null)",
    );
    // A later run, into the repository the first one initialised, shows its output too, and
    // nothing of restic's first-use message.
    fleet.write(
        "requests/run-now-2.yaml",
        &backup_request_yaml("run-now-2", "files"),
    );
    let seen = fleet.eventually(LONG, "run-now-2 as the host page's last backup", || {
        let seen = evaluate(&tab, HOST_LAST_BACKUP);
        match seen["last"].as_str() {
            Some(last) if last.contains("run-now-2") && last.contains("Succeeded") => Ok(seen),
            _ => Err(format!("{seen}")),
        }
    });
    assert_eq!(seen["mark"], "loaded once", "reloaded, not live: {seen}");
    wait_succeeded(&fleet, "run-now-2", LONG);
    let (status, later) = fleet.get("/runs/default/run-now-2").unwrap();
    assert_eq!(status, 200, "{later}");
    let log = &later[later.find(r#"<pre id="log">"#).expect("a log")..];
    let log = &log[..log.find("</pre>").expect("the log ends")];
    assert!(
        log.contains("Files:") && log.contains(" saved\n"),
        "the later run's log holds restic's summary: {log}"
    );
    for absent in [
        "No output yet",
        "wrote no log lines",
        "first-use",
        "unable to open config",
    ] {
        assert!(
            !later.contains(absent),
            "{absent:?} on a later run's page:\n{later}"
        );
    }
    let (_, first) = fleet.get("/runs/default/run-now-1").unwrap();
    assert!(
        first.contains(r#"id="first-use""#) && first.contains(r#"<span class="expected""#),
        "the first run labels restic's first-use message:\n{first}"
    );

    // Every page reachable from the fleet page: it answers 200, fits 1400 px and 400 px
    // without scrolling sideways, and every link on it leads to such a page.
    let mut queue = std::collections::VecDeque::from([("/".to_string(), "/".to_string())]);
    let mut seen = std::collections::BTreeSet::from(["/".to_string()]);
    let mut kinds = std::collections::BTreeSet::new();
    while let Some((path, from)) = queue.pop_front() {
        assert!(seen.len() < 200, "the crawl does not end: {seen:?}");
        let (status, body) = fleet.get(&path).unwrap();
        assert_eq!(
            status, 200,
            "{path}, linked from {from}, answers {status}: {body}"
        );
        kinds.insert(path.split('/').nth(1).unwrap_or_default().to_string());
        for width in [1400, 400] {
            set_width(&tab, width);
            open(&fleet, &tab, &path);
            let page = evaluate(
                &tab,
                "JSON.stringify({inner: window.innerWidth, \
                 scroll: document.documentElement.scrollWidth, \
                 links: Array.from(document.querySelectorAll('a[href]'), \
                     a => a.getAttribute('href'))})",
            );
            let png = artefacts().join(format!("page-{}-{width}px.png", slug(&path)));
            screenshot(&tab, width, &png);
            assert_eq!(
                page["inner"], width,
                "{path}: the window is {width} px wide"
            );
            assert!(
                page["scroll"]
                    .as_u64()
                    .is_some_and(|s| s <= u64::from(width)),
                "{path} scrolls sideways at {width} px: content {} px wide; see {}",
                page["scroll"],
                png.display()
            );
            for link in page["links"].as_array().into_iter().flatten() {
                let link = link.as_str().unwrap_or_default();
                let target = link.split('#').next().unwrap_or_default().to_string();
                assert!(
                    target.starts_with('/') || target.is_empty(),
                    "{path} links outside the controller: {link}"
                );
                if !target.is_empty() && seen.insert(target.clone()) {
                    queue.push_back((target, path.clone()));
                }
            }
        }
    }
    for kind in ["", "hosts", "runs", "schedules", "repos", "revisions"] {
        assert!(
            kinds.contains(kind),
            "no /{kind} page was reached from the fleet page: {seen:?}"
        );
    }
}
