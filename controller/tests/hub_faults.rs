//! The agent endpoint at its trust boundary and under a failing database, with the real
//! controller binary: a raw WebSocket client holding a real enrolled credential speaks the
//! protocol wrongly on purpose, and a real agent reports a run while the controller's disk is
//! full (a loop-mounted ext4 image).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fleet::*;
use futures_util::{SinkExt, StreamExt};
use protocol::{
    AgentMessage, ControllerMessage, ErrorCode, Hello, JobFinished, JobOperation, JobPhase,
    JobStarted, RepoStats, Report, ReportBody, ScheduleAck, Trigger,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The host the raw client acts as; declared, enrolled, but no real agent runs for it.
const RAW: &str = "db-1";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking to the real controller as [`RAW`], driven synchronously so that
/// it mixes with the harness' blocking HTTP calls.
struct RawAgent {
    rt: tokio::runtime::Runtime,
    socket: Socket,
}

impl RawAgent {
    fn connect(fleet: &Fleet, credential: &str) -> RawAgent {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut request = format!("ws://127.0.0.1:{}{}", fleet.port, protocol::CONNECT_PATH)
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().expect("a header"),
        );
        let (socket, _) = rt
            .block_on(tokio_tungstenite::connect_async(request))
            .unwrap_or_else(|e| panic!("the controller accepts the upgrade: {e}"));
        RawAgent { rt, socket }
    }

    /// Sends a frame; Err when the connection broke meanwhile.
    fn send_frame(&mut self, frame: Message) -> Result<(), String> {
        self.rt
            .block_on(self.socket.send(frame))
            .map_err(|e| e.to_string())
    }

    fn send(&mut self, message: &AgentMessage) {
        self.send_frame(Message::text(protocol::encode(message)))
            .expect("the frame is sent");
    }

    fn hello(&mut self, protocol_version: u32) {
        self.send(&AgentMessage::Hello(Hello {
            protocol_version,
            host: RAW.into(),
            agent_version: "raw-test-client".into(),
            restic_version: None,
            os: "linux".into(),
            arch: "x86_64".into(),
            applied_schedule_version: 0,
            applied_schedule_digest: None,
            running: vec![],
        }));
    }

    /// The next frame other than ping and pong; None when the connection ended (or broke).
    fn next_frame(&mut self) -> Option<Message> {
        loop {
            let next = self
                .rt
                .block_on(async { tokio::time::timeout(LONG, self.socket.next()).await })
                .expect("a frame or the end of the connection in time");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(frame)) => return Some(frame),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next controller message that is not a push (`schedule.set`, `command.*`), which the
    /// controller sends whenever it likes; the versions pushed are kept in `pushed`.
    fn reply(&mut self, pushed: &mut Vec<u64>) -> ControllerMessage {
        loop {
            let frame = self.next_frame().expect("the session is still open");
            let Message::Text(text) = frame else {
                panic!("expected a text frame, got {frame:?}");
            };
            match protocol::decode::<ControllerMessage>(&text).expect("a controller message") {
                ControllerMessage::ScheduleSet(set) => pushed.push(set.version),
                ControllerMessage::CommandRun(_) | ControllerMessage::CommandCancel(_) => {}
                other => return other,
            }
        }
    }

    /// Reads until a `schedule.set` arrives: its version.
    fn pushed(&mut self) -> u64 {
        loop {
            let frame = self.next_frame().expect("the session is still open");
            if let Message::Text(text) = frame
                && let Ok(ControllerMessage::ScheduleSet(set)) = protocol::decode(&text)
            {
                return set.version;
            }
        }
    }

    /// Says hello and expects `welcome`.
    fn welcomed(fleet: &Fleet, credential: &str, pushed: &mut Vec<u64>) -> RawAgent {
        let mut agent = RawAgent::connect(fleet, credential);
        agent.hello(protocol::PROTOCOL_VERSION);
        match agent.reply(pushed) {
            ControllerMessage::Welcome(_) => agent,
            other => panic!("expected welcome, got {other:?}\n{}", fleet.log_tails()),
        }
    }
}

/// Enrolls [`RAW`] over HTTP, as `holdfast-agent enroll` would: its credential.
fn enroll_raw(fleet: &Fleet) -> String {
    let token = fleet.create_token(RAW, None);
    let (status, body) = fleet
        .post_json(protocol::ENROLL_PATH, &json!({ "token": token }))
        .expect("an answer to the enrollment");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    answer["credential"]
        .as_str()
        .expect("a credential")
        .to_string()
}

/// A fleet with [`HOST`] (real agent) and [`RAW`], whose plan has the one schedule
/// `db-nightly` into the repo `local`; returns [`RAW`]'s desired version.
fn fleet_with_raw_host() -> (Fleet, u64) {
    let fleet = Fleet::with_hosts(&[HOST, RAW]);
    let (before, _) = fleet.versions(RAW).expect("db-1's versions");
    fleet.write(
        "schedules/db-nightly.yaml",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: db-nightly\nspec:\n  operation: backup\n  cron: \"{QUIET_CRON}\"\n  hosts: [{RAW}]\n  repo: local\n  paths:\n    - /var/lib/db\n"
        ),
    );
    let desired = fleet.eventually(LONG, "db-1's plan with db-nightly", || {
        let (desired, _) = fleet.versions(RAW)?;
        if desired > before {
            Ok(desired)
        } else {
            Err(format!("desired version {desired}"))
        }
    });
    (fleet, desired)
}

fn error_of(message: ControllerMessage) -> (ErrorCode, String) {
    match message {
        ControllerMessage::Error(e) => (e.code, e.message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn hello_from_a_newer_protocol_binary_frames_and_oversized_frames_are_answered_as_documented() {
    let (fleet, _) = fleet_with_raw_host();
    let credential = enroll_raw(&fleet);
    let mut pushed = Vec::new();

    // A newer agent: refused with protocol_too_new and what to upgrade, then the end.
    for version in [protocol::PROTOCOL_VERSION + 1, 99] {
        let mut agent = RawAgent::connect(&fleet, &credential);
        agent.hello(version);
        let (code, message) = error_of(agent.reply(&mut pushed));
        assert_eq!(code, ErrorCode::ProtocolTooNew, "{message}");
        assert!(
            message.contains(&format!("protocol {version}"))
                && message.contains("upgrade the Holdfast controller"),
            "{message}"
        );
        assert!(
            matches!(agent.next_frame(), None | Some(Message::Close(_))),
            "the session ends after the refusal"
        );
    }

    // A binary frame: bad_message, and the session goes on.
    let mut agent = RawAgent::welcomed(&fleet, &credential, &mut pushed);
    agent
        .send_frame(Message::binary(b"{\"type\":\"heartbeat\"}".to_vec()))
        .expect("sent");
    let (code, message) = error_of(agent.reply(&mut pushed));
    assert_eq!(code, ErrorCode::BadMessage);
    assert_eq!(
        message,
        "binary frames are not part of the protocol; send JSON text frames"
    );
    agent.send(&AgentMessage::Report(Report {
        seq: 1,
        body: ReportBody::RepoStats(stats("local")),
    }));
    assert_eq!(
        agent.reply(&mut pushed),
        ControllerMessage::Ack(protocol::Ack { seq: 1 }),
        "the session goes on after a binary frame"
    );

    // Frames over MAX_FRAME_BYTES: a Close frame with 1009 (Message Too Big) and the reason,
    // both for one a little too big (read whole) and for one far too big (refused from its
    // header).
    let over = protocol::MAX_FRAME_BYTES + 1;
    for (size, reason) in [
        (
            over,
            format!(
                "frame of {over} bytes is larger than the {}-byte limit",
                protocol::MAX_FRAME_BYTES
            ),
        ),
        (
            20 * 1024 * 1024,
            format!(
                "frame is larger than the {}-byte limit",
                protocol::MAX_FRAME_BYTES
            ),
        ),
    ] {
        let mut agent = RawAgent::welcomed(&fleet, &credential, &mut pushed);
        // The controller may close while the frame is still being written.
        let _ = agent.send_frame(Message::text("x".repeat(size)));
        let close = loop {
            match agent.next_frame() {
                Some(Message::Close(close)) => break close,
                Some(Message::Text(_)) => continue,
                other => panic!(
                    "expected a Close frame for a frame of {size} bytes, got {other:?}\n{}",
                    fleet.log_tails()
                ),
            }
        };
        let close = close.expect("the Close frame has a code and a reason");
        assert_eq!(u16::from(close.code), 1009, "{close:?}");
        assert_eq!(close.reason.as_str(), reason);
    }
}

fn stats(repo: &str) -> RepoStats {
    RepoStats {
        repo: repo.into(),
        total_size: 1024,
        total_uncompressed_size: None,
        snapshots_count: 1,
        blob_count: 3,
    }
}

fn started(job: &str, schedule: &str, repo: &str, trigger: Trigger) -> JobStarted {
    JobStarted {
        job: job.into(),
        schedule: Some(schedule.into()),
        operation: JobOperation::Backup,
        repo: repo.into(),
        trigger,
        scheduled_at: None,
        started_at: "2026-01-01T03:00:00Z".into(),
    }
}

fn finished(job: &str, schedule: &str, started_at: &str, finished_at: &str) -> JobFinished {
    JobFinished {
        job: job.into(),
        schedule: Some(schedule.into()),
        operation: JobOperation::Backup,
        repo: "local".into(),
        trigger: Trigger::Schedule,
        phase: JobPhase::Succeeded,
        reason: None,
        message: None,
        scheduled_at: None,
        started_at: Some(started_at.into()),
        finished_at: finished_at.into(),
        exit_code: Some(0),
        snapshot_id: None,
        summary: None,
        scrub_part: None,
        drill: None,
    }
}

/// `SELECT count(*)` on the controller's database, read-only next to the running controller.
fn count(fleet: &Fleet, sql: &str) -> i64 {
    let db = rusqlite::Connection::open_with_flags(
        fleet.controller_data.join("holdfast.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the database opens");
    db.query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The value of one sample in `/metrics`, 0 when absent.
fn metric(fleet: &Fleet, sample: &str) -> f64 {
    let (status, text) = fleet.get("/metrics").expect("metrics");
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn reports_outside_the_senders_plan_are_refused_acked_and_not_stored() {
    let (fleet, desired) = fleet_with_raw_host();
    let credential = enroll_raw(&fleet);
    let mut pushed = Vec::new();
    let mut agent = RawAgent::welcomed(&fleet, &credential, &mut pushed);

    // Legitimate: applying the plan pushed, stats of its repo, a run of its schedule.
    let offered = agent.pushed();
    assert_eq!(offered, desired);
    agent.send(&AgentMessage::ScheduleAck(ScheduleAck {
        version: desired,
        applied_version: desired,
        rejected: None,
    }));
    let good_job = "db-nightly-29409150";
    let good: [ReportBody; 3] = [
        ReportBody::RepoStats(stats("local")),
        ReportBody::JobStarted(started(good_job, "db-nightly", "local", Trigger::Schedule)),
        ReportBody::JobFinished(finished(
            good_job,
            "db-nightly",
            "2026-01-01T03:00:00Z",
            "2026-01-01T03:00:05Z",
        )),
    ];
    let mut seq = 0;
    for body in good {
        seq += 1;
        agent.send(&AgentMessage::Report(Report { seq, body }));
        assert_eq!(
            agent.reply(&mut pushed),
            ControllerMessage::Ack(protocol::Ack { seq }),
            "a report within the plan is acked without an error"
        );
    }

    // Outside the plan, or malformed: an error naming the seq, then the ack.
    let long_job = "j".repeat(protocol::MAX_JOB_ID_BYTES + 1);
    let refused: Vec<(ReportBody, &str)> = vec![
        (
            ReportBody::RepoStats(stats("elsewhere")),
            "repository elsewhere",
        ),
        (
            // web-1's schedule, not db-1's.
            ReportBody::JobStarted(started(
                "files-29409150",
                "files",
                "local",
                Trigger::Schedule,
            )),
            "schedule files is not in the plan",
        ),
        (
            ReportBody::JobStarted(started(
                "db-nightly-29409151",
                "db-nightly",
                "elsewhere",
                Trigger::Schedule,
            )),
            "uses repository local",
        ),
        (
            ReportBody::JobStarted(started(
                "request-backup-default-never-sent",
                "db-nightly",
                "local",
                Trigger::Command,
            )),
            "no run request",
        ),
        (
            ReportBody::JobFinished(finished(
                "db-nightly-29409152",
                "db-nightly",
                "2026-01-01T03:00:05Z",
                "2026-01-01T03:00:00Z",
            )),
            "before it started",
        ),
        (
            ReportBody::JobStarted(started(&long_job, "db-nightly", "local", Trigger::Schedule)),
            "job is 257 bytes",
        ),
        (
            // Only a check reads parts of the data.
            ReportBody::JobFinished(JobFinished {
                scrub_part: Some(protocol::ScrubPart { part: 1, parts: 7 }),
                ..finished(
                    "db-nightly-29409153",
                    "db-nightly",
                    "2026-01-01T03:00:00Z",
                    "2026-01-01T03:00:05Z",
                )
            }),
            "a backup cannot have read part 1/7",
        ),
        (
            ReportBody::JobFinished(JobFinished {
                operation: JobOperation::Check,
                scrub_part: Some(protocol::ScrubPart { part: 8, parts: 7 }),
                ..finished(
                    "db-nightly-29409154",
                    "db-nightly",
                    "2026-01-01T03:00:00Z",
                    "2026-01-01T03:00:05Z",
                )
            }),
            "a check cannot have read part 8/7",
        ),
    ];
    for (body, why) in refused {
        seq += 1;
        agent.send(&AgentMessage::Report(Report { seq, body }));
        let (code, message) = error_of(agent.reply(&mut pushed));
        assert_eq!(code, ErrorCode::Refused, "{message}");
        assert!(
            message.starts_with(&format!("report {seq} (")) && message.contains(why),
            "{message}"
        );
        assert_eq!(
            agent.reply(&mut pushed),
            ControllerMessage::Ack(protocol::Ack { seq }),
            "a refused report is acked so that it leaves the outbox"
        );
    }

    // A schedule.ack for a version never offered: refused, not recorded.
    agent.send(&AgentMessage::ScheduleAck(ScheduleAck {
        version: desired + 7,
        applied_version: desired + 7,
        rejected: None,
    }));
    let (code, message) = error_of(agent.reply(&mut pushed));
    assert_eq!(code, ErrorCode::Refused);
    assert!(message.contains("at most version"), "{message}");
    // The session still works, and everything before this ack is done with.
    seq += 1;
    agent.send(&AgentMessage::Report(Report {
        seq,
        body: ReportBody::RepoStats(stats("local")),
    }));
    assert_eq!(
        agent.reply(&mut pushed),
        ControllerMessage::Ack(protocol::Ack { seq })
    );

    // Only the legitimate reports are in the database.
    assert_eq!(
        count(
            &fleet,
            "SELECT count(*) FROM repo_sizes WHERE repo = 'elsewhere'"
        ),
        0
    );
    assert_eq!(
        count(
            &fleet,
            "SELECT count(*) FROM repo_sizes WHERE repo = 'local'"
        ),
        2
    );
    assert_eq!(
        count(
            &fleet,
            &format!("SELECT count(*) FROM runs WHERE host = '{RAW}'")
        ),
        1,
        "only db-nightly-29409150 is recorded"
    );
    assert_eq!(
        count(
            &fleet,
            &format!("SELECT applied_version FROM agents WHERE host = '{RAW}'")
        ),
        desired as i64
    );
    let run = fleet.eventually(LONG, "the legitimate run in the API", || {
        fleet.backup(&format!("db-nightly-{RAW}-29409150"))
    });
    assert_eq!(run["status"]["phase"], "Succeeded", "{run}");

    // Counted by reason; logged once per session and reason.
    for (reason, n) in [
        ("repo_not_in_plan", 2.0),
        ("schedule_not_in_plan", 1.0),
        ("unknown_job", 1.0),
        ("finished_before_started", 1.0),
        ("oversize", 1.0),
        ("unoffered_version", 1.0),
        ("bad_scrub_part", 2.0),
    ] {
        assert_eq!(
            metric(
                &fleet,
                &format!("holdfast_reports_refused_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
    let log = fs::read_to_string(fleet.root.join("controller.log")).expect("the log");
    let logged = log
        .lines()
        .filter(|l| {
            l.contains("refused a message from the agent") && l.contains("repo_not_in_plan")
        })
        .count();
    assert_eq!(logged, 1, "two repo refusals, one log line:\n{log}");
}

// ---- a full disk under the controller's database ---------------------------------------------

/// A small ext4 image mounted on a directory; unmounted (lazily) when dropped.
struct LoopMount {
    dir: PathBuf,
}

impl LoopMount {
    /// Needs root and loop devices; Err says what is missing.
    fn new(image: &Path, dir: &Path) -> Result<LoopMount, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let out = Command::new(program)
                .args(args)
                .output()
                .map_err(|e| format!("cannot run {program}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{program} {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(
            "truncate",
            &["-s".as_ref(), "32M".as_ref(), image.as_os_str()],
        )?;
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        )?;
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                dir.as_os_str(),
            ],
        )?;
        Ok(LoopMount { dir: dir.into() })
    }

    /// Writes a file until the filesystem has no space left.
    fn fill(&self) -> PathBuf {
        let filler = self.dir.join("filler");
        let out = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .arg("bs=4096")
            .output()
            .expect("dd runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("No space left"),
            "dd should stop at a full disk: {stderr}"
        );
        filler
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn agent_connections(fleet: &Fleet) -> usize {
    fs::read_to_string(fleet.root.join("agent.log"))
        .unwrap_or_default()
        .matches("connected to the controller")
        .count()
}

/// Reports in the agent's outbox (not yet acked).
fn outbox(fleet: &Fleet) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(fleet.agent_state.join("outbox")) {
        for entry in entries.flatten() {
            if let Ok(text) = fs::read_to_string(entry.path()) {
                out.push(text);
            }
        }
    }
    out
}

#[test]
fn reports_that_cannot_be_stored_are_held_and_stored_once_the_disk_has_room_again() {
    let mut fleet = Fleet::start();
    let mount = LoopMount::new(&fleet.root.join("store.img"), &fleet.root.join("store"))
        .unwrap_or_else(|why| {
            panic!("this test needs root, e2fsprogs and loop devices (mount -o loop): {why}")
        });

    // The controller's database moves onto the small filesystem.
    fleet.kill_controller();
    for entry in fs::read_dir(&fleet.controller_data).expect("the data dir") {
        let entry = entry.expect("an entry");
        fs::copy(entry.path(), mount.dir.join(entry.file_name())).expect("copied");
    }
    // Opening and closing it folds the write-ahead log in: the new controller's log starts
    // empty and only grows (a few hundred KiB here, far from the 1,000 pages after which
    // SQLite would checkpoint and reuse the file), so every write needs new blocks and a full
    // disk fails it.
    drop(rusqlite::Connection::open(mount.dir.join("holdfast.db")).expect("the copy opens"));
    fleet.controller_data = mount.dir.clone();
    fleet.start_controller();
    fleet.wait_in_sync(HOST);
    let connections = agent_connections(&fleet);

    // A run request whose pre-hook waits for a flag file: it is Running (stored) before the
    // disk fills, and reports the rest after.
    let flag = fleet.root.join("go");
    let gated = gated_schedule_yaml("gated", &fleet.data, &flag);
    fleet.write_all(&[
        ("schedules/gated.yaml", &gated),
        (
            "requests/by-hand.yaml",
            &backup_request_yaml("by-hand", "gated"),
        ),
    ]);
    fleet.eventually(LONG, "Backup by-hand Running", || {
        let b = fleet.backup("by-hand")?;
        match b["status"]["phase"].as_str() {
            Some("Running") => Ok(()),
            _ => Err(b["status"].to_string()),
        }
    });

    let filler = mount.fill();
    fs::write(&flag, "").expect("the flag");

    // The run's reports cannot be stored: not acked, and it shows.
    let why = fleet.eventually(
        LONG,
        "GET /readyz answering 503 for the database",
        || match fleet.get("/readyz")? {
            (503, body) if body.contains("cannot write its database") => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        },
    );
    assert!(why.contains("held and retried"), "{why}");
    assert_eq!(metric(&fleet, "holdfast_store_write_failing"), 1.0);
    assert!(metric(&fleet, "holdfast_store_write_errors_total") >= 1.0);
    assert_eq!(fleet.get("/healthz").expect("healthz").0, 200);
    let page = fleet.get("/").expect("the page").1;
    assert!(
        page.contains("Reports are not being stored") && page.contains("cannot write its database"),
        "the page says the store cannot write"
    );
    fleet.eventually(LONG, "job.finished waiting in the agent's outbox", || {
        let waiting = outbox(&fleet);
        if waiting.iter().any(|r| r.contains("job.finished")) {
            Ok(())
        } else {
            Err(format!("outbox: {waiting:?}"))
        }
    });
    let b = fleet.backup("by-hand").expect("the Backup");
    assert_eq!(
        b["status"]["phase"], "Running",
        "not stored while the disk is full: {b}"
    );

    // Room again: the held reports are stored and acked in the same session.
    fs::remove_file(&filler).expect("the filler is removed");
    let b = fleet.eventually(LONG, "Backup by-hand Succeeded", || {
        let b = fleet.backup("by-hand")?;
        match b["status"]["phase"].as_str() {
            Some("Succeeded") => Ok(b),
            _ => Err(b["status"].to_string()),
        }
    });
    let snapshot = b["status"]["snapshotId"].as_str().unwrap_or_default();
    assert!(
        fleet.snapshot_ids().iter().any(|id| id == snapshot),
        "the snapshot reported is in the repository: {b}"
    );
    fleet.eventually(LONG, "GET /readyz answering 200 again", || {
        match fleet.get("/readyz")? {
            (200, _) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    });
    assert_eq!(metric(&fleet, "holdfast_store_write_failing"), 0.0);
    let page = fleet.get("/").expect("the page").1;
    assert!(
        !page.contains("Reports are not being stored"),
        "the banner is gone"
    );
    fleet.eventually(LONG, "the agent's outbox empty", || {
        let waiting = outbox(&fleet);
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("outbox: {waiting:?}"))
        }
    });
    assert_eq!(
        agent_connections(&fleet),
        connections,
        "the agent did not reconnect: the controller retried within the session\n{}",
        fleet.log_tails()
    );
    drop(mount);
}

#[test]
fn a_plan_an_older_agent_cannot_read_is_not_offered_and_shows_why() {
    let (fleet, desired) = fleet_with_raw_host();
    fleet.write(
        "schedules/scrub.yaml",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: scrub\nspec:\n  operation: check\n  cron: \"{QUIET_CRON}\"\n  hosts: [{RAW}]\n  repo: local\n  readDataRotate: 7\n"
        ),
    );
    let rotating = fleet.eventually(LONG, "db-1's plan with the rotating check", || {
        let (version, _) = fleet.versions(RAW)?;
        (version > desired)
            .then_some(version)
            .ok_or_else(|| format!("desired version {version}"))
    });
    let credential = enroll_raw(&fleet);
    let mut agent = RawAgent::connect(&fleet, &credential);
    agent.hello(1);
    let mut pushed = Vec::new();
    assert!(
        matches!(agent.reply(&mut pushed), ControllerMessage::Welcome(_)),
        "a protocol 1 agent is still served"
    );
    let host = fleet.eventually(LONG, "db-1's drift to name the field", || {
        let host = fleet.host(RAW)?;
        let message = host["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Stalled"))
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_string();
        message
            .contains("check.readDataRotate")
            .then_some(host)
            .ok_or(message)
    });
    let stalled = host["status"]["conditions"].to_string();
    assert!(
        stalled.contains(&format!("version {rotating}"))
            && stalled.contains("upgrade holdfast-agent on"),
        "{stalled}"
    );
    // The session goes on, and the plan was never sent.
    agent.send(&AgentMessage::Report(Report {
        seq: 1,
        body: ReportBody::RepoStats(stats("local")),
    }));
    assert_eq!(
        agent.reply(&mut pushed),
        ControllerMessage::Ack(protocol::Ack { seq: 1 })
    );
    assert!(
        pushed.is_empty(),
        "no schedule.set for a protocol 1 agent: {pushed:?}"
    );
}
