//! The agent on other platforms, against the real controller on loopback: built for Windows and
//! run under wine, with a stand-in for restic (`tools/restic-standin`; there is no restic for
//! Windows here), and built for arm64 Linux and run under qemu-user with Debian's arm64 restic.
//! Each enrolls, connects, applies and stores its schedule, runs a backup with hooks and reports
//! it, and keeps its unsent reports across a SIGKILL; the Windows one also runs as a service
//! under wine's Service Control Manager.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::cross::{self, ARM64, WINDOWS, Wine};
use common::fleet::*;
use serde_json::Value;

/// Emulated agents are slower; a deadline for a test that would otherwise hang.
const SLOW: Duration = Duration::from_secs(180);

fn phase(backup: &Value) -> &str {
    backup
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn wait_succeeded(fleet: &Fleet, name: &str) -> Value {
    let backup = fleet.eventually(SLOW, &format!("Backup {name} to finish"), || {
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

/// Waits until the agent has applied a schedule version above `before`; returns it.
fn wait_applied_after(fleet: &Fleet, before: u64) -> u64 {
    fleet.eventually(
        SLOW,
        &format!("a schedule version above {before} applied"),
        || match fleet.versions(HOST)? {
            (desired, applied) if desired > before && applied == desired => Ok(applied),
            seen => Err(format!("(desired, applied) = {seen:?}")),
        },
    )
}

/// The reports in the agent's outbox: `(file name, report)`, each report `{"seq": N, "type":
/// ..., fields of its type}`.
fn outbox(fleet: &Fleet) -> Vec<(String, Value)> {
    let Ok(entries) = fs::read_dir(fleet.agent_state.join("outbox")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // `.NAME.tmp` is a report being written; it is renamed once whole.
            if name.starts_with('.') {
                return None;
            }
            let report = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            Some((name, report))
        })
        .collect()
}

/// Everything both platforms must do. `hook` is a program the agent can start that takes
/// `hook FILE ARGS...` (the restic stand-in); `in_repo` says whether a snapshot id is in the
/// repository.
fn enroll_back_up_and_keep_reports(
    runner: AgentRunner,
    hook: &str,
    in_repo: impl Fn(&Fleet, &str) -> bool,
) -> Fleet {
    // Enrolled with a token, connected, schedule applied.
    let mut fleet = Fleet::with_runner(runner);
    let version = fleet.wait_in_sync(HOST);
    assert!(
        fleet.agent_state.join("identity.json").exists(),
        "enroll stores the credential"
    );
    let stored: Value =
        serde_json::from_slice(&fs::read(fleet.agent_state.join("schedule.json")).unwrap())
            .unwrap();
    assert_eq!(stored["version"], version, "the applied schedule is stored");

    // A backup with hooks, run on request. The hooks' arguments reach them as given, without a
    // shell in between.
    let pre = fleet.root.join("pre-hook.txt");
    let post = fleet.root.join("post-hook.txt");
    let r = &fleet.runner;
    let hooks = format!(
        "  hooks:\n    pre:\n      - command: ['{hook}', hook, '{}', 'two words', 'a;b|c $HOME']\n    post:\n      - command: ['{hook}', hook, '{}']\n",
        r.path(&pre),
        r.path(&post)
    );
    let data = r.path(&fleet.data);
    fleet.write(
        "schedules/hooked.yaml",
        &schedule_yaml("hooked", QUIET_CRON, Path::new(&data), &hooks),
    );
    let version = wait_applied_after(&fleet, version);
    fleet.write("backups/now.yaml", &backup_request_yaml("now", "hooked"));
    let backup = wait_succeeded(&fleet, "now");
    let snapshot = backup
        .pointer("/status/snapshotId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        snapshot.len() == 64 && snapshot.chars().all(|c| c.is_ascii_hexdigit()),
        "expected restic's 64-hex-character snapshot id: {backup:#}"
    );
    assert!(
        in_repo(&fleet, snapshot),
        "snapshot {snapshot} is in the repository"
    );
    assert_eq!(
        backup.pointer("/status/summary/totalFilesProcessed"),
        Some(&Value::from(DATA_FILES)),
        "{backup:#}"
    );
    let job = backup["status"]["jobId"].as_str().unwrap();
    assert_eq!(
        fs::read_to_string(&pre).unwrap(),
        format!("two words\na;b|c $HOME\nHOLDFAST_JOB_ID={job}\nHOLDFAST_SCHEDULE=hooked\n")
    );
    assert_eq!(
        fs::read_to_string(&post).unwrap(),
        format!("HOLDFAST_JOB_ID={job}\nHOLDFAST_SCHEDULE=hooked\nHOLDFAST_JOB_STATUS=Succeeded\n")
    );

    // With the controller gone the agent runs its schedule on its own and keeps the reports;
    // killed, it loses none of them, and sends them when the controller is back.
    fleet.write(
        "schedules/fast.yaml",
        &schedule_yaml("fast", "*/2 * * * * *", Path::new(&data), ""),
    );
    wait_applied_after(&fleet, version);
    fleet.kill_controller();
    let (file, finished) = fleet.eventually(SLOW, "a finished run of fast in the outbox", || {
        let reports = outbox(&fleet);
        reports
            .iter()
            .find(|(_, r)| {
                r["type"] == "job.finished" && r["schedule"] == "fast" && r["phase"] == "Succeeded"
            })
            .cloned()
            .ok_or_else(|| format!("outbox: {reports:?}"))
    });
    fleet.kill_agent();
    assert!(
        fleet.agent_state.join("outbox").join(&file).exists(),
        "the report of a finished run survives SIGKILL"
    );
    let job = finished["job"].as_str().unwrap().to_string();
    fleet.start_controller();
    fleet.start_agent();
    fleet.eventually(SLOW, &format!("a Succeeded Backup with job {job}"), || {
        let backups = fleet.backups()?;
        backups
            .iter()
            .find(|b| b["status"]["jobId"] == job.as_str() && phase(b) == "Succeeded")
            .map(|_| ())
            .ok_or_else(|| format!("{} backups", backups.len()))
    });
    fleet
}

fn online(fleet: &Fleet) -> Result<bool, String> {
    Ok(fleet.host(HOST)?.pointer("/status/online") == Some(&Value::Bool(true)))
}

/// `sc.exe ARGS` in the wine prefix: exit status and output.
fn sc(wine: &Wine, args: &[&str]) -> (bool, String) {
    let out = output_within(wine.command().arg("sc").args(args), SLOW);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The agent as a Windows service under wine's Service Control Manager: `service install`
/// registers it whole or not at all, `service run` started by the SCM connects and runs
/// backups, stops on the SCM's stop and logs to the state directory, `service uninstall`
/// removes it.
fn windows_service(fleet: &mut Fleet, wine: &Wine, agent: &Path) {
    let r = fleet.runner.clone();
    let _session = wine.hold_session();
    fleet.kill_agent();
    fleet.eventually(SLOW, "the host offline", || match online(fleet)? {
        false => Ok(()),
        true => Err("online".into()),
    });
    let flags = [
        "--config".to_string(),
        r.path(&fleet.root.join("agent.yaml")),
        "--state-dir".to_string(),
        r.path(&fleet.agent_state),
        "--server".to_string(),
        fleet.url(""),
        "--restic".to_string(),
        r.restic.clone(),
    ];
    let install = output_within(r.command().args(["service", "install"]).args(&flags), SLOW);
    let said = String::from_utf8_lossy(&install.stderr).to_string();
    let (known, query) = sc(wine, &["qc", "holdfast-agent"]);
    if install.status.success() {
        assert!(
            known && query.contains("AUTO_START") && query.contains("service run --config"),
            "{query}"
        );
        let (_, failure) = sc(wine, &["qfailure", "holdfast-agent"]);
        assert!(failure.contains("RESTART"), "{failure}");
        let out = output_within(r.command().args(["service", "uninstall"]), SLOW);
        assert!(out.status.success(), "{out:?}");
    } else {
        // Wine 8 has no recovery actions (ChangeServiceConfig2W answers ERROR_INVALID_LEVEL):
        // install says which step failed and leaves no service without them behind.
        assert!(
            said.contains("setting the recovery actions") && !known,
            "install failed: {said}
sc qc: {query}"
        );
    }

    // Registered as install registers it, by wine's sc.exe.
    let agent = r.path(agent);
    let command_line = format!("{agent} service run {}", flags.join(" "));
    let (created, text) = sc(
        wine,
        &[
            "create",
            "holdfast-agent",
            "binPath=",
            &command_line,
            "start=",
            "auto",
        ],
    );
    assert!(created, "sc create: {text}");
    // Wine's sc.exe sometimes gives up waiting for the start before the agent reports running
    // (it exits non-zero and prints nothing); what counts is the agent coming online.
    let (_, start) = sc(wine, &["start", "holdfast-agent"]);
    fleet.eventually(SLOW, "the service's agent online", || {
        match online(fleet)? {
            true => Ok(()),
            false => {
                let log = fs::read_to_string(fleet.agent_state.join("agent.log"));
                Err(format!(
                    "offline; sc start said: {start:?}; the service's agent.log:\n{}",
                    log.unwrap_or_else(|e| e.to_string())
                ))
            }
        }
    });
    fleet.write(
        "backups/by-service.yaml",
        &backup_request_yaml("by-service", "hooked"),
    );
    wait_succeeded(fleet, "by-service");

    let (stopped, text) = sc(wine, &["stop", "holdfast-agent"]);
    assert!(stopped, "sc stop: {text}");
    fleet.eventually(SLOW, "the service stopped", || {
        let (_, state) = sc(wine, &["query", "holdfast-agent"]);
        match state.contains("STOPPED") {
            true => Ok(()),
            false => Err(state),
        }
    });
    let log = fs::read_to_string(fleet.agent_state.join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("connected to the controller")
            && log.contains("the Service Control Manager asked the agent to stop"),
        "agent.log:\n{log}"
    );
    let out = output_within(r.command().args(["service", "uninstall"]), SLOW);
    assert!(
        out.status.success(),
        "service uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (known, query) = sc(wine, &["qc", "holdfast-agent"]);
    assert!(!known, "the service is gone: {query}");
}

#[test]
fn the_windows_agent_under_wine_enrolls_backs_up_runs_hooks_keeps_its_reports_and_serves() {
    let bin = cross::build(WINDOWS, &["holdfast-agent", "restic-standin"]);
    let wine = Wine::start();
    let agent = bin.join("holdfast-agent.exe");
    let standin = bin.join("restic-standin.exe");
    let runner = wine.runner(&agent, &standin);
    let version = output_within(runner.command().arg("--version"), SLOW);
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!(
            "holdfast-agent {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            env!("HOLDFAST_COMMIT")
        ),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    let hook = runner.path(&standin);
    let mut fleet = enroll_back_up_and_keep_reports(runner, &hook, |fleet, snapshot| {
        fs::read_to_string(fleet.repo.join("snapshots.jsonl"))
            .unwrap_or_default()
            .contains(&format!("\"id\":\"{snapshot}\""))
    });
    windows_service(&mut fleet, &wine, &agent);
}

#[test]
fn the_arm64_agent_under_qemu_enrolls_backs_up_with_arm64_restic_and_keeps_its_reports() {
    require_restic();
    let bin = cross::build(ARM64, &["holdfast-agent"]);
    // Hooks run through the kernel, which starts this machine's programs: the native stand-in.
    let hook = cross::build_native("restic-standin").join("restic-standin");
    let (qemu, sysroot) = cross::qemu();
    let restic = cross::arm64_restic();
    let runner = AgentRunner {
        program: qemu,
        args: vec![
            "-L".into(),
            sysroot.into(),
            bin.join("holdfast-agent").into(),
        ],
        env: Vec::new(),
        restic: restic.display().to_string(),
        windows_paths: false,
    };
    let hook = hook.display().to_string();
    enroll_back_up_and_keep_reports(runner, &hook, |fleet, snapshot| {
        fleet.snapshot_ids().iter().any(|id| id == snapshot)
    });
}

/// The agent's own unit tests, built for Windows and run under wine: the Windows side of the
/// platform module (owner-only ACLs as far as wine keeps them, Ctrl-Break and termination of
/// children, default paths) and everything else in the library.
#[test]
fn the_agents_unit_tests_pass_on_windows_under_wine() {
    let tests = cross::build_unit_tests(WINDOWS, "holdfast-agent");
    let wine = Wine::start();
    let out = output_within(
        wine.command()
            .arg(&tests)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../agent")),
        SLOW,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok."),
        "{} under wine failed:\n{stdout}\n{}",
        tests.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
