//! The real agent binary against a fake controller on loopback: hello, schedule pushes and acks,
//! refusals, reports resent until acknowledged, SIGKILL during a backup, and life without a
//! controller.
// Debian's restic, `sh` hooks and file modes: Linux only. The Windows agent is tested under wine
// in controller/tests/platforms.rs, its platform code by its unit tests.
#![cfg(unix)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use protocol::*;

fn hello(messages: &[(usize, AgentMessage)], conn: usize) -> Option<Hello> {
    messages.iter().find_map(|(c, m)| match m {
        AgentMessage::Hello(h) if *c == conn => Some(h.clone()),
        _ => None,
    })
}

fn acks(messages: &[(usize, AgentMessage)]) -> Vec<ScheduleAck> {
    messages
        .iter()
        .filter_map(|(_, m)| match m {
            AgentMessage::ScheduleAck(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn finished_of(reports: &[(usize, Report)], job_prefix: &str) -> Vec<JobFinished> {
    reports
        .iter()
        .filter_map(|(_, r)| match &r.body {
            ReportBody::JobFinished(f) if f.job.starts_with(job_prefix) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn enroll_stores_the_credential_owner_only_and_a_token_works_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    controller
        .state
        .tokens
        .lock()
        .unwrap()
        .push("one-time-token".into());
    let state = dir.path().join("state");
    let enroll = |token: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_holdfast-agent"))
            .args(["enroll", "--server", &controller.url(), "--state-dir"])
            .arg(&state)
            .env("HOLDFAST_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = enroll("one-time-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("enrolled as host default/web-1"));
    let identity = state.join("identity.json");
    assert_eq!(
        std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&identity).unwrap()).unwrap();
    assert_eq!(stored["credential"], CREDENTIAL);
    assert_eq!(stored["host"], "web-1");

    let again = enroll("one-time-token");
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("refused the token (HTTP 401 Unauthorized: unknown or already used token)"),
        "{err}"
    );
    assert!(
        !err.contains("one-time-token"),
        "the token never appears in an error"
    );
    controller.shutdown();
}

#[test]
fn schedules_are_acked_lower_versions_refused_and_reports_resent_until_acked() {
    require_restic();
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    let state = enrolled_state(dir.path(), &controller.url());
    let agent = AgentProcess::start(&state, &controller.url());

    let h = controller.wait("hello", |m| hello(m, 1));
    assert_eq!(h.protocol_version, PROTOCOL_VERSION);
    assert_eq!((h.host.as_str(), h.applied_schedule_version), ("web-1", 0));
    assert!(
        h.restic_version
            .as_deref()
            .is_some_and(|v| v.starts_with("0.")),
        "{h:?}"
    );
    assert_eq!(
        (h.os.as_str(), h.arch.as_str()),
        (std::env::consts::OS, std::env::consts::ARCH)
    );

    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 5, 1000, 9);
    let sched = backup(
        "nightly",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    controller.send(ControllerMessage::ScheduleSet(plan_set(
        "web-1",
        3,
        vec![sched.clone()],
    )));
    let ack = controller.wait("schedule.ack 3", |m| {
        acks(m).into_iter().find(|a| a.version == 3)
    });
    assert_eq!((ack.applied_version, ack.rejected), (3, None));
    let stored: ScheduleSet =
        serde_json::from_slice(&std::fs::read(state.join("schedule.json")).unwrap()).unwrap();
    assert_eq!(stored.version, 3);

    controller.send(ControllerMessage::ScheduleSet(plan_set("web-1", 2, vec![])));
    let refused = controller.wait("schedule.ack 2", |m| {
        acks(m).into_iter().find(|a| a.version == 2)
    });
    assert_eq!(refused.applied_version, 3);
    assert!(
        refused
            .rejected
            .as_deref()
            .unwrap()
            .contains("older than the applied version 3")
    );
    let stored: ScheduleSet =
        serde_json::from_slice(&std::fs::read(state.join("schedule.json")).unwrap()).unwrap();
    assert_eq!(stored.version, 3, "a refused version is not stored");

    // Reports are resent after a dropped connection until acked, and never again after.
    controller.state.auto_ack.store(false, Ordering::SeqCst);
    controller.send(ControllerMessage::CommandRun(CommandRun {
        job: "run-now-1".into(),
        request: RunRequest::Schedule {
            schedule: "nightly".into(),
        },
        secrets: vec![],
    }));
    let finished = controller.wait("job.finished on connection 1", |_| {
        let r = controller.reports();
        r.iter()
            .any(|(c, r)| {
                *c == 1 && matches!(&r.body, ReportBody::JobFinished(f) if f.job == "run-now-1")
            })
            .then_some(r)
    });
    let first_seqs: Vec<u64> = finished.iter().map(|(_, r)| r.seq).collect();
    controller.state.auto_ack.store(true, Ordering::SeqCst);
    controller.drop_connection();
    controller.wait("hello on connection 2", |m| hello(m, 2));
    assert_eq!(
        hello(&controller.received(), 2)
            .unwrap()
            .applied_schedule_version,
        3
    );
    let resent = controller.wait("the reports resent on connection 2", |_| {
        let seqs: Vec<u64> = controller
            .reports()
            .iter()
            .filter(|(c, _)| *c == 2)
            .map(|(_, r)| r.seq)
            .collect();
        first_seqs.iter().all(|s| seqs.contains(s)).then_some(seqs)
    });
    assert_eq!(
        &resent[..first_seqs.len()],
        &first_seqs[..],
        "resent in order"
    );
    // Once the last report of the run (repo.stats) is acked and the outbox is empty, a new
    // connection carries nothing old.
    eventually(
        Duration::from_secs(30),
        "repo.stats and an empty outbox",
        || {
            let stats = controller
                .reports()
                .iter()
                .any(|(_, r)| matches!(r.body, ReportBody::RepoStats(_)));
            (stats && std::fs::read_dir(state.join("outbox")).unwrap().count() == 0).then_some(())
        },
    );
    controller.drop_connection();
    controller.wait("hello on connection 3", |m| hello(m, 3));
    std::thread::sleep(Duration::from_secs(2));
    let on_third: Vec<u64> = controller
        .reports()
        .iter()
        .filter(|(c, _)| *c == 3)
        .map(|(_, r)| r.seq)
        .collect();
    assert!(
        on_third.is_empty(),
        "acked reports were sent again: {on_third:?}"
    );
    let f = finished_of(&controller.reports(), "run-now-1");
    assert_eq!(f[0].phase, JobPhase::Succeeded);
    assert_eq!(f[0].trigger, Trigger::Command);
    drop(agent);
    controller.shutdown();
}

#[test]
fn a_refused_credential_is_one_clear_sentence_and_the_agent_does_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    let state = enrolled_state(dir.path(), &controller.url());
    let identity = state.join("identity.json");
    let text = std::fs::read_to_string(&identity)
        .unwrap()
        .replace(CREDENTIAL, "revoked");
    std::fs::write(&identity, text).unwrap();
    let agent = AgentProcess::start(&state, &controller.url());
    eventually(Duration::from_secs(30), "a refused upgrade", || {
        (controller.state.refused_upgrades.load(Ordering::SeqCst) > 0).then_some(())
    });
    let log = eventually(Duration::from_secs(30), "the refusal in the log", || {
        let log = agent.log_text();
        log.contains("refused this agent's credential")
            .then_some(log)
    });
    assert!(log.contains("run `holdfast-agent enroll` again"), "{log}");
    assert!(
        !log.contains("revoked"),
        "the credential never appears in the log"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        controller.state.refused_upgrades.load(Ordering::SeqCst),
        1,
        "retried at once"
    );
    drop(agent);
    controller.shutdown();
}

#[test]
fn a_protocol_mismatch_ends_the_session_with_what_to_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    *controller.state.refuse_hello.lock().unwrap() = Some(ErrorCode::ProtocolTooOld);
    let state = enrolled_state(dir.path(), &controller.url());
    let agent = AgentProcess::start(&state, &controller.url());
    let log = eventually(Duration::from_secs(30), "the refusal in the log", || {
        let log = agent.log_text();
        log.contains("ended the session").then_some(log)
    });
    assert!(
        log.contains("refused by the test (upgrade this agent)"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        controller.state.connections.load(Ordering::SeqCst),
        1,
        "reconnected at once"
    );
    drop(agent);
    controller.shutdown();

    // A controller older than this agent accepts is refused by the agent itself.
    let controller = FakeController::start();
    *controller.state.welcome_protocol.lock().unwrap() = Some(MIN_CONTROLLER_PROTOCOL - 1);
    let state = enrolled_state(&dir.path().join("second"), &controller.url());
    let agent = AgentProcess::start(&state, &controller.url());
    let log = eventually(Duration::from_secs(30), "the mismatch in the log", || {
        let log = agent.log_text();
        log.contains("upgrade the controller").then_some(log)
    });
    assert!(log.contains(&format!("the controller speaks protocol {} but this agent needs at least {MIN_CONTROLLER_PROTOCOL}", MIN_CONTROLLER_PROTOCOL - 1)), "{log}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        controller.state.connections.load(Ordering::SeqCst),
        1,
        "reconnected at once"
    );
    drop(agent);
    controller.shutdown();
}

#[test]
fn sigkill_during_a_backup_loses_no_report_and_the_next_run_happens() {
    require_restic();
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    controller.state.auto_ack.store(false, Ordering::SeqCst);
    let state = enrolled_state(dir.path(), &controller.url());
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    // A pre-hook that sleeps keeps the job running long enough to be killed mid-run.
    tree(&data, 5, 1000, 10);
    let mut slow = backup(
        "slow",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    slow.cron = "*/2 * * * * *".into();
    slow.backup.as_mut().unwrap().pre_hooks = vec![Hook {
        command: vec!["sleep".into(), "30".into()],
        timeout_seconds: 900,
    }];
    let mut agent = AgentProcess::start(&state, &controller.url());
    controller.wait("hello", |m| hello(m, 1));
    controller.send(ControllerMessage::ScheduleSet(plan_set(
        "web-1",
        1,
        vec![slow.clone()],
    )));
    let started = controller.wait("job.started", |_| {
        controller
            .reports()
            .into_iter()
            .find_map(|(_, r)| match r.body {
                ReportBody::JobStarted(s) => Some(s),
                _ => None,
            })
    });
    assert_eq!(started.trigger, Trigger::Schedule);
    let pending_before = std::fs::read_dir(state.join("outbox")).unwrap().count();
    assert!(pending_before >= 1);
    agent.kill();

    // The next start reports the killed run, with the unacked reports still in the outbox.
    let mut quick = backup(
        "quick",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    quick.cron = "*/2 * * * * *".into();
    controller.state.auto_ack.store(true, Ordering::SeqCst);
    let agent = AgentProcess::start(&state, &controller.url());
    let restarted = controller.wait("AgentRestarted", |_| {
        finished_of(&controller.reports(), &started.job)
            .into_iter()
            .find(|f| f.reason.as_deref() == Some("AgentRestarted"))
    });
    assert_eq!(restarted.phase, JobPhase::Failed);
    assert_eq!(
        restarted.started_at.as_deref(),
        Some(started.started_at.as_str())
    );
    // The job.started from before the kill was resent too (it was never acked).
    let starts = controller
        .reports()
        .iter()
        .filter(|(_, r)| matches!(&r.body, ReportBody::JobStarted(s) if s.job == started.job))
        .count();
    assert!(starts >= 2, "job.started resent after the restart");

    // The plan survived the restart; a new version without the slow hook runs to success.
    controller.send(ControllerMessage::ScheduleSet(plan_set(
        "web-1",
        2,
        vec![quick],
    )));
    let ok = controller.wait("a scheduled run succeeding", |_| {
        finished_of(&controller.reports(), "quick-")
            .into_iter()
            .find(|f| f.phase == JobPhase::Succeeded && f.trigger == Trigger::Schedule)
    });
    assert!(ok.snapshot_id.is_some());
    drop(agent);
    controller.shutdown();
}

#[test]
fn with_the_controller_gone_the_agent_keeps_running_the_last_schedule() {
    require_restic();
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    let addr = controller.addr;
    let state = enrolled_state(dir.path(), &controller.url());
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 3, 1000, 11);
    let mut sched = backup(
        "often",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    sched.cron = "*/3 * * * * *".into();
    let agent = AgentProcess::start(&state, &controller.url());
    controller.wait("hello", |m| hello(m, 1));
    controller.send(ControllerMessage::ScheduleSet(plan_set(
        "web-1",
        1,
        vec![sched],
    )));
    controller.wait("schedule.ack", |m| acks(m).into_iter().next());
    controller.shutdown();

    // No controller: backups go on, and their reports wait in the outbox.
    let before = repo.snapshots().len();
    eventually(
        Duration::from_secs(60),
        "two more snapshots without a controller",
        || (repo.snapshots().len() >= before + 2).then_some(()),
    );
    let pending = std::fs::read_dir(state.join("outbox")).unwrap().count();
    assert!(pending > 0, "reports kept for the controller");

    // The controller comes back on the same address and gets them all.
    let controller = FakeController::start_on(addr);
    let finished = controller.wait("the reports made while it was gone", |_| {
        let f = finished_of(&controller.reports(), "often-");
        (f.len() >= 2).then_some(f)
    });
    assert!(
        finished.iter().all(|f| f.phase == JobPhase::Succeeded),
        "{finished:?}"
    );
    drop(agent);
    controller.shutdown();
}

#[test]
fn a_report_longer_than_a_frame_arrives_whole_in_frames_a_controller_can_bound() {
    // A busy host's snapshot list, well over 25 frames long, most of it two-byte characters so
    // that frame boundaries fall inside characters.
    let snapshots: Vec<Snapshot> = (0..400)
        .map(|n| Snapshot {
            id: format!("{n:064x}"),
            time: "2026-12-01T00:00:00Z".into(),
            hostname: "web-1".into(),
            paths: vec![format!("/srv/{}", "ü".repeat(100))],
            tags: vec![format!("tag-{n}")],
        })
        .collect();
    let report = ReportBody::SnapshotsReport(SnapshotsReport {
        repo: "nas".into(),
        snapshots: snapshots.clone(),
    });
    assert!(protocol::encode(&report).len() > 25 * AGENT_FRAGMENT_BYTES);
    let dir = tempfile::tempdir().unwrap();
    // Refuses any frame longer than AGENT_FRAGMENT_BYTES.
    let controller = FakeController::start();
    let state = enrolled_state(dir.path(), &controller.url());
    let outbox = holdfast_agent::state::StateDir::open(&state)
        .and_then(|s| holdfast_agent::outbox::Outbox::open(s.outbox_dir()))
        .unwrap();
    outbox.push(report).unwrap();
    drop(outbox);

    let agent = AgentProcess::start(&state, &controller.url());
    let received = controller.wait("the snapshot list", |_| {
        controller
            .reports()
            .into_iter()
            .find_map(|(_, r)| match r.body {
                ReportBody::SnapshotsReport(s) => Some(s),
                _ => None,
            })
    });
    assert_eq!(received.snapshots, snapshots);
    assert_eq!(
        controller.state.connections.load(Ordering::SeqCst),
        1,
        "one session carried it: none was closed for a frame too long\n{}",
        agent.log_text()
    );
    drop(agent);
    controller.shutdown();
}

fn started_count(reports: &[(usize, Report)], job: &str) -> usize {
    reports
        .iter()
        .filter(|(_, r)| matches!(&r.body, ReportBody::JobStarted(s) if s.job == job))
        .count()
}

/// Sends the same run request twice, the second after the first run's work is done, with
/// `between` done in the middle. Checks that restic ran once and that the repeat was answered
/// on the connection it came on, and logged; returns the job.finished reports of the job.
fn same_request_twice(
    between: impl FnOnce(&FakeController, &std::path::Path, &mut AgentProcess),
) -> Vec<JobFinished> {
    require_restic();
    let dir = tempfile::tempdir().unwrap();
    let controller = FakeController::start();
    let state = enrolled_state(dir.path(), &controller.url());
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 5, 1000, 12);
    let job = "request-backup-default-before-upgrade";
    let request = || backup_request(job, repo.resolved("nas"), vec![data.display().to_string()]);
    let mut agent = AgentProcess::start(&state, &controller.url());
    controller.wait("hello", |m| hello(m, 1));
    controller.send(request());
    wait_backup_done(&controller, &state);
    assert_eq!(finished_of(&controller.reports(), job).len(), 1);

    between(&controller, &state, &mut agent);
    let connection = controller.state.connections.load(Ordering::SeqCst);
    controller.send(request());
    let finished = controller.wait("the second job.finished", |_| {
        let f = finished_of(&controller.reports(), job);
        (f.len() >= 2).then_some(f)
    });
    assert_eq!(repo.snapshots().len(), 1, "restic backed up once");
    assert_eq!(
        started_count(&controller.reports(), job),
        1,
        "one job.started"
    );
    let answered_on: Vec<usize> = controller
        .reports()
        .iter()
        .filter(|(_, r)| matches!(&r.body, ReportBody::JobFinished(f) if f.job == job))
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(
        answered_on.last(),
        Some(&connection),
        "answered on its connection"
    );
    let log = eventually(Duration::from_secs(30), "the repeat in the log", || {
        let log = agent.log_text();
        log.contains("this run request already ran").then_some(log)
    });
    assert!(log.contains(job), "{log}");
    drop(agent);
    controller.shutdown();
    finished
}

#[test]
fn a_run_request_sent_again_after_it_finished_is_answered_with_its_result_not_run_again() {
    let finished = same_request_twice(|_, _, _| {});
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert_eq!(finished[0].phase, JobPhase::Succeeded);
    assert!(finished[0].snapshot_id.is_some());
    // The very report of the first run, down to its finishedAt: nothing ran again.
    assert_eq!(finished[1], finished[0]);
}

#[test]
fn a_run_request_sent_again_after_an_agent_restart_is_not_run_again() {
    let finished = same_request_twice(|controller, state, agent| {
        // SIGKILL: only what is on disk survives.
        agent.kill();
        *agent = AgentProcess::start(state, &controller.url());
        controller.wait("hello on connection 2", |m| hello(m, 2));
    });
    assert_eq!(finished.len(), 2, "{finished:?}");
    assert_eq!(finished[0].phase, JobPhase::Succeeded);
    assert!(finished[0].snapshot_id.is_some());
    assert_eq!(finished[1], finished[0]);
}
