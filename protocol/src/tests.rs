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
            },
            backup: Some(BackupParams {
                paths: vec!["/etc".into()],
                ..BackupParams::default()
            }),
            forget: None,
            check: None,
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
