use super::*;

fn plan() -> HostPlan {
    HostPlan {
        namespace: "default".into(),
        host: "web-1".into(),
        paused: false,
        schedules: vec![ResolvedSchedule {
            name: "nightly".into(),
            operation: Operation::Backup,
            cron: "0 30 1 * * *".into(),
            time_zone: "UTC".into(),
            jitter_seconds: 0,
            repo: ResolvedRepo {
                name: "nas".into(),
                url: "/srv/restic".into(),
                password: SecretRef::HostFile {
                    path: "/etc/holdfast/nas.password".into(),
                },
                env: vec![],
                initialize: false,
                initialized_by: None,
            },
            backup: Some(BackupParams {
                paths: vec!["/etc".into()],
                ..BackupParams::default()
            }),
            forget: None,
            check: None,
            drill: None,
            concurrency_policy: ConcurrencyPolicy::Forbid,
            missed_run_policy: MissedRunPolicy::Skip,
            suspend: false,
        }],
    }
}

#[test]
fn plans_round_trip_through_json() {
    let p = plan();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<HostPlan>(&json).unwrap(), p);
}

#[test]
fn empty_and_default_fields_are_left_out_of_the_canonical_form() {
    let json = serde_json::to_string(&plan()).unwrap();
    assert_eq!(
        json,
        r#"{"namespace":"default","host":"web-1","schedules":[{"name":"nightly","operation":"backup","cron":"0 30 1 * * *","timeZone":"UTC","repo":{"name":"nas","url":"/srv/restic","password":{"hostFile":{"path":"/etc/holdfast/nas.password"}}},"backup":{"paths":["/etc"]},"concurrencyPolicy":"Forbid","missedRunPolicy":"Skip"}]}"#
    );
}

#[test]
fn unknown_fields_are_refused() {
    let json = r#"{"namespace":"default","host":"h","schedules":[],"surprise":1}"#;
    let err = serde_json::from_str::<HostPlan>(json).unwrap_err();
    assert!(
        err.to_string().starts_with("unknown field `surprise`"),
        "{err}"
    );
}

#[test]
fn an_empty_retention_keeps_nothing() {
    assert!(Retention::default().is_empty());
    let r = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    assert!(!r.is_empty());
}

fn every_agent_message() -> Vec<AgentMessage> {
    let report = |seq, body| AgentMessage::Report(Report { seq, body });
    vec![
        AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            host: "web-1".into(),
            agent_version: "0.1.0".into(),
            restic_version: Some("0.14.0".into()),
            os: "linux".into(),
            arch: "x86_64".into(),
            applied_schedule_version: 4,
            applied_schedule_digest: Some("sha256:ab".into()),
            running: vec!["nightly-1".into()],
        }),
        AgentMessage::Heartbeat(Heartbeat {
            running: vec!["nightly-1".into()],
        }),
        AgentMessage::ScheduleAck(ScheduleAck {
            version: 3,
            applied_version: 4,
            rejected: Some("older".into()),
        }),
        report(
            1,
            ReportBody::JobStarted(JobStarted {
                job: "nightly-1".into(),
                schedule: Some("nightly".into()),
                operation: JobOperation::Backup,
                repo: "nas".into(),
                trigger: Trigger::MissedRun,
                scheduled_at: Some("2026-01-01T01:30:00Z".into()),
                started_at: "2026-01-01T01:31:00Z".into(),
            }),
        ),
        report(
            2,
            ReportBody::JobProgress(JobProgress {
                job: "nightly-1".into(),
                percent_done: 0.5,
                files_done: 1,
                total_files: 2,
                bytes_done: 3,
                total_bytes: 4,
                seconds_elapsed: 5,
                seconds_remaining: Some(6),
                current_files: vec!["/etc/hosts".into()],
            }),
        ),
        report(
            3,
            ReportBody::JobLog(JobLog {
                job: "nightly-1".into(),
                lines: vec![LogLine {
                    source: "restic".into(),
                    line: "scanned".into(),
                }],
            }),
        ),
        report(
            4,
            ReportBody::JobFinished(JobFinished {
                job: "nightly-1".into(),
                schedule: Some("nightly".into()),
                operation: JobOperation::Backup,
                repo: "nas".into(),
                trigger: Trigger::Schedule,
                phase: JobPhase::PartiallyFailed,
                reason: Some("UnreadableFiles".into()),
                message: Some("some files could not be read".into()),
                scheduled_at: None,
                started_at: Some("2026-01-01T01:31:00Z".into()),
                finished_at: "2026-01-01T01:32:00Z".into(),
                exit_code: Some(3),
                snapshot_id: Some("a".repeat(64)),
                summary: Some(BackupSummary {
                    files_new: 1,
                    data_added: 10,
                    total_duration_seconds: 1.5,
                    ..BackupSummary::default()
                }),
                scrub_part: None,
                drill: None,
            }),
        ),
        report(
            5,
            ReportBody::SnapshotsReport(SnapshotsReport {
                repo: "nas".into(),
                snapshots: vec![Snapshot {
                    id: "b".repeat(64),
                    time: "2026-01-01T01:31:02.5+01:00".into(),
                    hostname: "web-1".into(),
                    paths: vec!["/etc".into()],
                    tags: vec!["nightly".into()],
                }],
            }),
        ),
        report(
            6,
            ReportBody::RepoStats(RepoStats {
                repo: "nas".into(),
                total_size: 100,
                total_uncompressed_size: Some(200),
                snapshots_count: 1,
                blob_count: 7,
            }),
        ),
    ]
}

fn every_controller_message() -> Vec<ControllerMessage> {
    vec![
        ControllerMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            controller_version: "0.1.0".into(),
            heartbeat_seconds: 15,
        }),
        ControllerMessage::ScheduleSet(ScheduleSet {
            version: 4,
            digest: "sha256:ab".into(),
            plan: plan(),
            secrets: vec![SecretValue {
                reference: SecretRef::ControllerFile {
                    path: "/etc/holdfast/nas".into(),
                },
                value: "hunter2".into(),
            }],
        }),
        ControllerMessage::CommandRun(CommandRun {
            job: "run-now-1".into(),
            request: RunRequest::Schedule {
                schedule: "nightly".into(),
            },
            secrets: vec![],
        }),
        ControllerMessage::CommandRun(CommandRun {
            job: "prune-now-1".into(),
            request: RunRequest::Resolved(plan().schedules[0].clone()),
            secrets: vec![],
        }),
        ControllerMessage::CommandRun(CommandRun {
            job: "restore-1".into(),
            request: RunRequest::Restore(RestoreRequest {
                repo: plan().schedules[0].repo.clone(),
                snapshot: "latest".into(),
                source_host: Some("web-2".into()),
                target_path: "/srv/restore".into(),
                include: vec!["/etc".into()],
                exclude: vec!["*.tmp".into()],
            }),
            secrets: vec![],
        }),
        ControllerMessage::CommandCancel(CommandCancel {
            job: "run-now-1".into(),
        }),
        ControllerMessage::Ack(Ack { seq: 9 }),
        ControllerMessage::Error(ErrorMessage {
            code: ErrorCode::ProtocolTooOld,
            message: "upgrade".into(),
        }),
    ]
}

#[test]
fn every_message_round_trips_with_its_type_tag() {
    let tags = [
        "hello",
        "heartbeat",
        "schedule.ack",
        "job.started",
        "job.progress",
        "job.log",
        "job.finished",
        "snapshots.report",
        "repo.stats",
    ];
    for (message, tag) in every_agent_message().into_iter().zip(tags) {
        let frame = encode(&message);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["type"], tag, "{frame}");
        assert_eq!(decode::<AgentMessage>(&frame).unwrap(), message);
    }
    let tags = [
        "welcome",
        "schedule.set",
        "command.run",
        "command.run",
        "command.run",
        "command.cancel",
        "ack",
        "error",
    ];
    for (message, tag) in every_controller_message().into_iter().zip(tags) {
        let frame = encode(&message);
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["type"], tag, "{frame}");
        assert_eq!(decode::<ControllerMessage>(&frame).unwrap(), message);
    }
}

#[test]
fn reports_carry_their_sequence_number_next_to_the_type() {
    let frame = encode(&every_agent_message()[5]);
    assert_eq!(
        frame,
        r#"{"seq":3,"type":"job.log","job":"nightly-1","lines":[{"source":"restic","line":"scanned"}]}"#
    );
}

#[test]
fn garbage_truncated_and_oversized_frames_are_errors_not_panics() {
    for frame in [
        "",
        "null",
        "{",
        "[1,2]",
        r#"{"type":"bogus"}"#,
        r#"{"type":"hello"}"#,
        r#"{"type":"ack","seq":-1}"#,
        "\u{0}\u{1}binary",
    ] {
        assert!(decode::<AgentMessage>(frame).is_err(), "{frame:?}");
        assert!(decode::<ControllerMessage>(frame).is_err(), "{frame:?}");
    }
    // Every truncation of every real frame is refused.
    for message in every_agent_message() {
        let frame = encode(&message);
        for cut in 0..frame.len() {
            if frame.is_char_boundary(cut) {
                assert!(decode::<AgentMessage>(&frame[..cut]).is_err());
            }
        }
    }
    let huge = format!(
        r#"{{"type":"heartbeat","running":["{}"]}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    let err = decode::<AgentMessage>(&huge).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }));
    assert!(
        err.to_string()
            .contains("larger than the 4194304-byte limit")
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let set = &every_controller_message()[1];
    assert!(!format!("{set:?}").contains("hunter2"));
    let enroll = EnrollResponse {
        host: "h".into(),
        namespace: "default".into(),
        credential: "s3cret-credential".into(),
    };
    assert!(!format!("{enroll:?}").contains("s3cret"));
    let request = EnrollRequest {
        token: "one-time".into(),
    };
    assert!(!format!("{request:?}").contains("one-time"));
}

#[test]
fn unknown_error_codes_from_a_newer_peer_still_decode() {
    let m: ControllerMessage =
        decode(r#"{"type":"error","code":"rate_limited","message":"slow down"}"#).unwrap();
    assert!(matches!(
        m,
        ControllerMessage::Error(ErrorMessage {
            code: ErrorCode::Other,
            ..
        })
    ));
    assert!(ErrorCode::ProtocolTooOld.is_fatal() && !ErrorCode::BadMessage.is_fatal());
}
