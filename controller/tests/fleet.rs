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
    // The requirement: applied on the host within 2 s of the write.
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

/// Writes what the browser laid out at the framed page's width into the top document, which
/// `--dump-dom` prints. Headless chromium's window is at least 500 px wide, so the page is
/// framed at 400 px; a `srcdoc` frame is the parent's origin and may write to it.
const MEASURE: &str = "<script>parent.document.body.setAttribute('data-scroll-width', \
    document.documentElement.scrollWidth); parent.document.body.setAttribute('data-inner-width', \
    window.innerWidth);</script>";

/// The value of `name="…"` in the first tag that has it.
fn attribute(html: &str, name: &str) -> Option<u32> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    html[start..].split('"').next()?.parse().ok()
}

/// A page showing `page` in a frame 400 px wide, measured by [`MEASURE`].
fn framed_at_400_px(page: &str) -> String {
    let inner = page
        .replace("</body>", &format!("{MEASURE}</body>"))
        .replace('&', "&amp;")
        .replace('"', "&quot;");
    format!(
        "<!DOCTYPE html><html><body style=\"margin:0\"><iframe style=\"width:400px;\
         height:900px;border:0\" srcdoc=\"{inner}\"></iframe></body></html>"
    )
}

#[test]
fn the_fleet_host_and_run_pages_fit_a_400_px_phone_in_chromium() {
    let chromium = chromium();
    // web-2 never connects: the fleet page carries an offline host's notes and reasons.
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    fleet.write(
        "requests/run-now-1.yaml",
        &backup_request_yaml("run-now-1", "files"),
    );
    let done = wait_succeeded(&fleet, "run-now-1", LONG);
    let namespace = done
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let profile = fleet.root.join("chromium-narrow");
    for (what, path) in [
        ("fleet", "/".to_string()),
        ("host", format!("/hosts/{namespace}/{HOST}")),
        ("offline-host", format!("/hosts/{namespace}/web-2")),
        ("run", format!("/runs/{namespace}/run-now-1")),
    ] {
        let (status, page) = fleet.get(&path).unwrap();
        assert_eq!(status, 200, "{path}: {page}");
        // The page as served, plus the measuring script: every page is one standalone file.
        assert!(
            what == "run" || page.contains("data-label="),
            "{what}: table cells carry the labels of their stacked rows"
        );
        let file = fleet.root.join(format!("narrow-{what}.html"));
        std::fs::write(&file, framed_at_400_px(&page)).unwrap();
        let browse = |extra: &[&str]| {
            let mut command = Command::new(chromium);
            command
                .args(["--headless", "--no-sandbox", "--disable-gpu"])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("--window-size=500,900")
                .args(extra)
                .arg(format!("file://{}", file.display()));
            let out = output_within(&mut command, LONG);
            assert!(
                out.status.success(),
                "chromium {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        let dom = String::from_utf8(browse(&["--dump-dom"]).stdout).unwrap();
        let inner = attribute(&dom, "data-inner-width");
        let scroll = attribute(&dom, "data-scroll-width");
        assert_eq!(inner, Some(400), "{what}: the frame is 400 px wide:\n{dom}");
        let png = artefacts().join(format!("status-{what}-400px.png"));
        let _ = std::fs::remove_file(&png);
        browse(&[&format!("--screenshot={}", png.display())]);
        assert!(
            scroll.is_some_and(|s| s <= 400),
            "{what} ({path}) scrolls sideways at 400 px: content {scroll:?} px wide; see {}",
            png.display()
        );
    }
}
