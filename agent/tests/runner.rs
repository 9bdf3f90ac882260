//! The runner against Debian's real restic and real local repositories: every operation, hooks,
//! and the ways a run fails.
// Debian's restic, `sh` hooks and file modes: Linux only. The Windows agent is tested under wine
// in controller/tests/platforms.rs, its platform code by its unit tests.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use holdfast_agent::jobs::Jobs;
use holdfast_agent::outbox::Outbox;
use holdfast_agent::restic::Restic;
use holdfast_agent::runner::{Context, JobSpec, Work};
use holdfast_agent::state::StateDir;
use protocol::*;

struct Harness {
    jobs: Jobs,
    outbox: Outbox,
    seen: std::sync::Mutex<u64>,
}

impl Harness {
    async fn new(dir: &Path, host: &str) -> Harness {
        require_restic();
        let state = StateDir::open(&dir.join(format!("state-{host}"))).unwrap();
        let outbox = Outbox::open(state.outbox_dir()).unwrap();
        let restic = Restic::detect(Path::new(RESTIC)).await;
        assert!(restic.version.is_some(), "restic version not detected");
        let jobs = Jobs::new(Context::new(host.into(), restic, state, outbox.clone()));
        Harness {
            jobs,
            outbox,
            seen: std::sync::Mutex::new(0),
        }
    }

    /// Runs one job to the end and returns the reports added since the previous run.
    async fn run(&self, id: &str, work: Work) -> Vec<ReportBody> {
        self.jobs.start(JobSpec {
            id: id.into(),
            trigger: Trigger::Command,
            scheduled_at: None,
            work,
            secrets: vec![],
        });
        self.jobs.idle().await;
        let mut seen = self.seen.lock().unwrap();
        let reports = self.outbox.after(*seen);
        *seen = reports.last().map_or(*seen, |r| r.seq);
        reports.into_iter().map(|r| r.body).collect()
    }
}

fn finished(reports: &[ReportBody]) -> &JobFinished {
    reports
        .iter()
        .find_map(|r| match r {
            ReportBody::JobFinished(f) => Some(f),
            _ => None,
        })
        .expect("a job.finished report")
}

fn log_lines(reports: &[ReportBody]) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| match r {
            ReportBody::JobLog(l) => {
                Some(l.lines.iter().map(|l| format!("{}: {}", l.source, l.line)))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn run_schedule(s: ResolvedSchedule) -> Work {
    Work::Schedule(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_reports_progress_summary_and_full_snapshot_id_and_counts_changes() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 300, 64 * 1024, 1);
    let h = Harness::new(dir.path(), "web-1").await;
    let sched = backup(
        "nightly",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );

    let first = h.run("nightly-1", run_schedule(sched.clone())).await;
    assert!(matches!(first[0], ReportBody::JobStarted(ref s) if s.job == "nightly-1"));
    assert!(
        first
            .iter()
            .any(|r| matches!(r, ReportBody::JobProgress(p) if p.total_files > 0)),
        "no progress in {first:?}"
    );
    let f = finished(&first);
    assert_eq!(f.phase, JobPhase::Succeeded, "{f:?}");
    let summary = f.summary.as_ref().unwrap();
    assert_eq!((summary.files_new, summary.files_changed), (300, 0));
    assert!(summary.data_added >= 300 * 64 * 1024, "{summary:?}");
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 1);
    let id = f.snapshot_id.as_deref().unwrap();
    assert_eq!(
        id.len(),
        64,
        "restic 0.14's short id resolved to the full one"
    );
    assert_eq!(snapshots[0]["id"], id);
    assert_eq!(snapshots[0]["hostname"], "web-1");
    assert!(first.iter().any(|r| matches!(r, ReportBody::SnapshotsReport(s) if s.snapshots.len() == 1 && s.snapshots[0].id == id)));

    // Change two files, add one: the second run sees exactly that.
    std::fs::write(data.join("d0/f0.bin"), b"changed").unwrap();
    std::fs::write(data.join("d1/f1.bin"), b"changed too").unwrap();
    std::fs::write(data.join("new.txt"), b"new").unwrap();
    let second = h.run("nightly-2", run_schedule(sched)).await;
    let f = finished(&second);
    assert_eq!(f.phase, JobPhase::Succeeded);
    let s = f.summary.as_ref().unwrap();
    assert_eq!(
        (s.files_new, s.files_changed, s.files_unmodified),
        (1, 2, 298),
        "{s:?}"
    );
    assert!(s.data_added > 0 && s.data_added < 64 * 1024, "{s:?}");
    assert_ne!(f.snapshot_id.as_deref(), Some(id));

    // repo.stats follows the backup.
    let stats = eventually(
        Duration::from_secs(30),
        "repo.stats after the second backup",
        || {
            h.outbox.after(0).into_iter().find_map(|r| match r.body {
                ReportBody::RepoStats(s) if s.snapshots_count == 2 => Some(s),
                _ => None,
            })
        },
    );
    assert_eq!(stats.snapshots_count, 2);
    assert!(stats.total_size >= 300 * 64 * 1024, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_removes_exactly_the_expected_snapshots_of_this_host_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 3, 1024, 2);
    for host in ["web-1", "web-1", "web-1", "web-2", "web-2"] {
        let out = repo.restic(&[
            "backup",
            "--host",
            host,
            "--tag",
            "nightly",
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success());
    }
    let before = repo.snapshots();
    let web1: Vec<String> = before
        .iter()
        .filter(|s| s["hostname"] == "web-1")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let h = Harness::new(dir.path(), "web-1").await;
    let mut sched = schedule("weekly-forget", Operation::Forget, repo.resolved("nas"));
    sched.forget = Some(ForgetParams {
        retention: Retention {
            keep_last: Some(1),
            ..Retention::default()
        },
        tags: vec!["nightly".into()],
        prune: false,
    });
    let reports = h.run("forget-1", run_schedule(sched)).await;
    assert_eq!(
        finished(&reports).phase,
        JobPhase::Succeeded,
        "{:?}",
        log_lines(&reports)
    );
    let after = repo.snapshots();
    let left: Vec<(&str, &str)> = after
        .iter()
        .map(|s| (s["hostname"].as_str().unwrap(), s["id"].as_str().unwrap()))
        .collect();
    // The newest of web-1 stays; both of web-2 are untouched.
    assert_eq!(left.len(), 3, "{left:?}");
    assert_eq!(left.iter().filter(|(h, _)| *h == "web-2").count(), 2);
    let kept: Vec<&str> = left
        .iter()
        .filter(|(h, _)| *h == "web-1")
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(kept, vec![web1[2].as_str()]);
    let log = log_lines(&reports).join("\n");
    assert!(
        log.contains(&format!(
            "forget removed 2 snapshots: {}",
            web1[..2].join(", ")
        )) || log.contains(&format!(
            "forget removed 2 snapshots: {}, {}",
            web1[1], web1[0]
        )),
        "{log}"
    );
    assert!(
        reports
            .iter()
            .any(|r| matches!(r, ReportBody::SnapshotsReport(s) if s.snapshots.len() == 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_many_snapshots_reports_every_one_and_forget_names_all_it_removed() {
    // `restic snapshots --json` and `forget --json` print one line for the whole answer: with
    // 24 snapshots it is far longer than a log line.
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 2, 1024, 1);
    for n in 0..24 {
        let out = repo.restic(&[
            "backup",
            "--host",
            "web-1",
            "--tag",
            &format!("a-rather-long-tag-to-make-each-snapshot-longer-{n}"),
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success());
    }
    let h = Harness::new(dir.path(), "web-1").await;
    let sched = backup(
        "nightly",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    let reports = h.run("nightly-25", run_schedule(sched)).await;
    let f = finished(&reports);
    assert_eq!(f.phase, JobPhase::Succeeded, "{f:?}");
    let listed = reports.iter().find_map(|r| match r {
        ReportBody::SnapshotsReport(s) => Some(s.snapshots.len()),
        _ => None,
    });
    assert_eq!(listed, Some(25), "{:?}", log_lines(&reports));
    assert_eq!(
        f.snapshot_id.as_deref().map(str::len),
        Some(64),
        "the short id resolved from the list"
    );

    let mut sched = schedule("weekly-forget", Operation::Forget, repo.resolved("nas"));
    sched.forget = Some(ForgetParams {
        retention: Retention {
            keep_last: Some(1),
            ..Retention::default()
        },
        tags: Vec::new(),
        prune: false,
    });
    let reports = h.run("forget-1", run_schedule(sched)).await;
    assert_eq!(finished(&reports).phase, JobPhase::Succeeded);
    let log = log_lines(&reports).join("\n");
    assert!(log.contains("forget removed 24 snapshots: "), "{log}");
    assert_eq!(repo.snapshots().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_check_and_unlock_run_against_a_real_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 5, 4096, 3);
    assert!(
        repo.restic(&["backup", "--host", "web-1", data.to_str().unwrap()])
            .status
            .success()
    );
    let h = Harness::new(dir.path(), "web-1").await;

    let prune = h
        .run(
            "prune-1",
            run_schedule(schedule("prune", Operation::Prune, repo.resolved("nas"))),
        )
        .await;
    assert_eq!(
        finished(&prune).phase,
        JobPhase::Succeeded,
        "{:?}",
        log_lines(&prune)
    );

    let mut check = schedule("check", Operation::Check, repo.resolved("nas"));
    check.check = Some(CheckParams {
        read_data_subset: Some("1/2".into()),
        ..CheckParams::default()
    });
    let reports = h.run("check-1", run_schedule(check)).await;
    assert_eq!(finished(&reports).phase, JobPhase::Succeeded);
    assert!(
        log_lines(&reports)
            .iter()
            .any(|l| l.contains("no errors were found")),
        "{:?}",
        log_lines(&reports)
    );

    // A stale lock (left by a killed restic) blocks a forget until plain `restic unlock` clears it.
    assert_eq!(locks(&repo), 0);
    leave_stale_lock(&repo);
    assert_eq!(locks(&repo), 1);
    let forget = forget("forget", repo.resolved("nas"), 5);
    let reports = h.run("forget-1", run_schedule(forget)).await;
    let log = log_lines(&reports).join("\n");
    assert_eq!(finished(&reports).phase, JobPhase::Succeeded, "{log}");
    assert!(log.contains("running `restic unlock`"), "{log}");
    assert_eq!(locks(&repo), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_check_reads_the_part_it_was_told_then_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 20, 64 * 1024, 1);
    let h = Harness::new(dir.path(), "web-1").await;
    let paths = vec![data.display().to_string()];
    let made = h
        .run(
            "backup-1",
            run_schedule(backup("nightly", repo.resolved("nas"), paths)),
        )
        .await;
    assert_eq!(finished(&made).phase, JobPhase::Succeeded);

    let mut check = schedule("scrub", Operation::Check, repo.resolved("nas"));
    check.check = Some(CheckParams {
        read_data_rotate: Some(3),
        ..CheckParams::default()
    });
    let part = |part| Some(ScrubPart { part, parts: 3 });
    let read = |reports: &[ReportBody], part: u32| {
        let f = finished(reports);
        let log = log_lines(reports).join("\n");
        assert_eq!(f.phase, JobPhase::Succeeded, "{log}");
        assert!(log.contains(&format!("read group #{part} of")), "{log}");
        f.scrub_part
    };
    // Told nothing: the first part.
    let first = h.run("scrub-1", run_schedule(check.clone())).await;
    assert_eq!(read(&first, 1), part(1));
    // The controller says where the cycle goes on (another host read part 2).
    let state = StateDir::open(&dir.path().join("state-web-1")).unwrap();
    state
        .store_scrub_next("nas", ScrubPart { part: 3, parts: 3 })
        .unwrap();
    let told = h.run("scrub-2", run_schedule(check.clone())).await;
    assert_eq!(read(&told, 3), part(3));
    // After the last part, the first again, by itself.
    let again = h.run("scrub-3", run_schedule(check.clone())).await;
    assert_eq!(read(&again, 1), part(1));
    assert_eq!(state.scrub_next("nas", 3), ScrubPart { part: 2, parts: 3 });
    // A cursor for another number of parts (a plan since changed) starts the cycle again.
    assert_eq!(state.scrub_next("nas", 5), ScrubPart { part: 1, parts: 5 });
}

fn locks(repo: &Repo) -> usize {
    String::from_utf8_lossy(&repo.restic(&["list", "locks", "--no-lock"]).stdout)
        .lines()
        .count()
}

/// Leaves the lock of a restic process killed with SIGKILL, as a crash would: `backup --stdin`
/// holds its lock while it waits for input that never comes.
fn leave_stale_lock(repo: &Repo) {
    let mut child = std::process::Command::new(RESTIC)
        .args(["backup", "--stdin", "--host", "web-1"])
        .env("RESTIC_REPOSITORY", &repo.url)
        .env("RESTIC_PASSWORD_FILE", &repo.password_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), "restic's lock", || {
        (locks(repo) == 1).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_reproduces_the_tree_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 40, 10_000, 4);
    let h = Harness::new(dir.path(), "web-1").await;
    let b = h
        .run(
            "b-1",
            run_schedule(backup(
                "nightly",
                repo.resolved("nas"),
                vec![data.display().to_string()],
            )),
        )
        .await;
    let id = finished(&b).snapshot_id.clone().unwrap();
    let target = dir.path().join("restored");
    let r = h
        .run(
            "restore-1",
            Work::Restore(RestoreRequest {
                repo: repo.resolved("nas"),
                snapshot: id,
                source_host: None,
                target_path: target.display().to_string(),
                include: vec![],
                exclude: vec![],
            }),
        )
        .await;
    let f = finished(&r);
    assert_eq!(
        (f.phase, f.operation),
        (JobPhase::Succeeded, JobOperation::Restore),
        "{:?}",
        log_lines(&r)
    );
    let restored = target.join(data.strip_prefix("/").unwrap());
    let mut compared = 0;
    for entry in walk(&data) {
        let rel = entry.strip_prefix(&data).unwrap();
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            std::fs::read(restored.join(rel)).unwrap(),
            "{rel:?}"
        );
        compared += 1;
    }
    assert_eq!(compared, 40);
    assert_eq!(walk(&restored).len(), 40);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn hook(args: &[&str]) -> Hook {
    Hook {
        command: args.iter().map(|s| s.to_string()).collect(),
        timeout_seconds: 30,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_hook_aborts_the_backup_and_post_hooks_see_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 2, 100, 5);
    let status_file = dir.path().join("status");
    let h = Harness::new(dir.path(), "web-1").await;
    let post = hook(&[
        "sh",
        "-c",
        &format!(
            "echo \"$HOLDFAST_JOB_STATUS $HOLDFAST_SCHEDULE\" >> {}; echo post-hook-ran",
            status_file.display()
        ),
    ]);

    let mut sched = backup(
        "nightly",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    let params = sched.backup.as_mut().unwrap();
    params.pre_hooks = vec![hook(&[
        "sh",
        "-c",
        "echo dumping database; echo no space left >&2; exit 4",
    ])];
    params.post_hooks = vec![post.clone()];
    let reports = h.run("b-1", run_schedule(sched.clone())).await;
    let f = finished(&reports);
    assert_eq!(f.phase, JobPhase::Failed);
    assert_eq!(f.reason.as_deref(), Some("PreHookFailed"));
    assert!(
        f.message.as_deref().unwrap().contains("exited with code 4"),
        "{f:?}"
    );
    assert!(
        repo.snapshots().is_empty(),
        "no backup after a failed pre-hook"
    );
    let log = log_lines(&reports);
    assert!(
        log.contains(&"pre-hook: dumping database".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"pre-hook: no space left".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"post-hook: post-hook-ran".to_string()),
        "{log:?}"
    );

    let params = sched.backup.as_mut().unwrap();
    params.pre_hooks = vec![hook(&["true"])];
    let reports = h.run("b-2", run_schedule(sched)).await;
    assert_eq!(finished(&reports).phase, JobPhase::Succeeded);
    assert_eq!(
        std::fs::read_to_string(&status_file).unwrap(),
        "Failed nightly\nSucceeded nightly\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_is_partially_failed_and_a_wrong_password_failed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 2, 100, 6);
    let h = Harness::new(dir.path(), "web-1").await;
    // Reading /proc/self/mem fails with EIO even for root, which ignores file permissions.
    let sched = backup(
        "nightly",
        repo.resolved("nas"),
        vec![data.display().to_string(), "/proc/self/mem".into()],
    );
    let reports = h.run("b-1", run_schedule(sched)).await;
    let f = finished(&reports);
    assert_eq!(f.phase, JobPhase::PartiallyFailed, "{f:?}");
    assert_eq!(f.exit_code, Some(3));
    assert_eq!(f.reason.as_deref(), Some("UnreadableFiles"));
    assert_eq!(
        f.snapshot_id.as_ref().map(String::len),
        Some(64),
        "the snapshot was still made"
    );
    assert!(
        log_lines(&reports)
            .iter()
            .any(|l| l.contains("/proc/self/mem"))
    );

    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not the password").unwrap();
    let mut bad = repo.resolved("nas");
    bad.password = SecretRef::HostFile {
        path: wrong.display().to_string(),
    };
    let reports = h
        .run(
            "b-2",
            run_schedule(backup("nightly", bad, vec![data.display().to_string()])),
        )
        .await;
    let f = finished(&reports);
    assert_eq!(f.phase, JobPhase::Failed);
    assert_eq!(f.reason.as_deref(), Some("WrongPassword"));
    let message = f.message.as_deref().unwrap();
    assert!(message.contains("wrong password"), "{message}");
    assert!(!message.contains("not the password") && !message.contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_declared_for_initialisation_is_created_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("pw");
    std::fs::write(&password, PASSWORD).unwrap();
    let url = dir.path().join("new-repo").display().to_string();
    let data = dir.path().join("data");
    tree(&data, 2, 100, 7);
    let resolved = ResolvedRepo {
        name: "fresh".into(),
        url: url.clone(),
        password: SecretRef::ControllerFile {
            path: "/etc/holdfast/fresh.password".into(),
        },
        env: vec![],
        initialize: true,
        initialized_by: None,
    };
    let h = Harness::new(dir.path(), "web-1").await;
    h.jobs.start(JobSpec {
        id: "b-1".into(),
        trigger: Trigger::Command,
        scheduled_at: None,
        work: Work::Schedule(backup(
            "nightly",
            resolved,
            vec![data.display().to_string()],
        )),
        // The password comes from the controller, as for a controllerFile reference.
        secrets: vec![SecretValue {
            reference: SecretRef::ControllerFile {
                path: "/etc/holdfast/fresh.password".into(),
            },
            value: PASSWORD.into(),
        }],
    });
    h.jobs.idle().await;
    let reports: Vec<ReportBody> = h.outbox.after(0).into_iter().map(|r| r.body).collect();
    assert_eq!(
        finished(&reports).phase,
        JobPhase::Succeeded,
        "{:?}",
        log_lines(&reports)
    );
    let repo = Repo {
        url,
        password_file: password,
    };
    assert_eq!(repo.snapshots().len(), 1);
    // The temporary password files are gone once the job and its statistics are done.
    let tmp = dir.path().join("state-web-1/tmp");
    eventually(Duration::from_secs(30), "an empty tmp directory", || {
        (std::fs::read_dir(&tmp).unwrap().count() == 0).then_some(())
    });
}

const RCLONE: &str = "/usr/bin/rclone";

/// `rclone serve restic` on a loopback port chosen by the kernel, serving a local repository's
/// directory; killed when dropped.
struct RcloneServer {
    child: std::process::Child,
    url: String,
}

impl RcloneServer {
    /// A missing rclone fails the test: `scripts/test` installs it.
    fn start(dir: &str, append_only: bool) -> RcloneServer {
        use std::io::BufRead;
        assert!(
            Path::new(RCLONE).exists(),
            "{RCLONE} is missing: install Debian's rclone (apt-get install rclone)"
        );
        let mut cmd = std::process::Command::new(RCLONE);
        cmd.args(["serve", "restic", "--addr", "127.0.0.1:0"]);
        if append_only {
            cmd.arg("--append-only");
        }
        let mut child = cmd
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        // rclone logs the address it bound: "… Serving restic REST API on http://127.0.0.1:46007/".
        let mut url = None;
        let mut line = String::new();
        while url.is_none() && stderr.read_line(&mut line).unwrap() > 0 {
            url = line
                .split_once("Serving restic REST API on ")
                .map(|(_, u)| format!("rest:{}", u.trim()));
            line.clear();
        }
        let url = url.expect("rclone did not say where it serves");
        // Keep draining its log so that rclone never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        RcloneServer { child, url }
    }
}

impl Drop for RcloneServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const APPEND_ONLY_MESSAGE: &str = "the repository refused a delete — this access is append-only; give the Repo an admin access for forget and prune";

/// Issue 13: a forget (and a prune) through append-only access used to end with a Go
/// stack-trace line as its message after restic held its exclusive lock for 44 s of retries.
/// Now the first refused delete stops restic, which removes its lock, and the run says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_and_prune_through_append_only_access_stop_at_the_refusal_and_leave_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let server = RcloneServer::start(&repo.url, true);
    let data = dir.path().join("data");
    tree(&data, 3, 1024, 8);
    for n in 0..3 {
        std::fs::write(data.join("counter"), n.to_string()).unwrap();
        let out = repo.restic(&["backup", "--host", "web-1", data.to_str().unwrap()]);
        assert!(out.status.success());
    }
    let append_only = ResolvedRepo {
        url: server.url.clone(),
        ..repo.resolved("nas")
    };
    let h = Harness::new(dir.path(), "web-1").await;

    let forget = forget("forget", append_only.clone(), 1);
    let reports = h.run("forget-1", run_schedule(forget)).await;
    let log = log_lines(&reports);
    let f = finished(&reports);
    assert_eq!(
        (f.phase, f.reason.as_deref(), f.message.as_deref()),
        (
            JobPhase::Failed,
            Some("Forbidden"),
            Some(APPEND_ONLY_MESSAGE)
        ),
        "{log:#?}"
    );
    // The refusal is in the log, restic was interrupted at it and cleaned up, and it never got
    // as far as printing its stack trace.
    assert!(
        log.iter()
            .any(|l| l.starts_with("restic: Remove(<snapshot/")
                && l.ends_with("403 Forbidden (403)")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("agent: the repository refused a delete; stopping restic")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("signal interrupt received, cleaning up")),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains(".go:") || l.contains("asm_amd64")),
        "{log:#?}"
    );
    assert_eq!(locks(&repo), 0, "restic removed its lock");
    assert_eq!(
        repo.snapshots().len(),
        3,
        "append-only: nothing was deleted"
    );

    // Prune, with data to delete once an admin access (here the local path) forgot snapshots.
    let out = repo.restic(&["forget", "--keep-last", "1"]);
    assert!(out.status.success());
    let reports = h
        .run(
            "prune-1",
            run_schedule(schedule("prune", Operation::Prune, append_only)),
        )
        .await;
    let f = finished(&reports);
    assert_eq!(
        (f.phase, f.reason.as_deref(), f.message.as_deref()),
        (
            JobPhase::Failed,
            Some("Forbidden"),
            Some(APPEND_ONLY_MESSAGE)
        ),
        "{:#?}",
        log_lines(&reports)
    );
    assert!(
        log_lines(&reports)
            .iter()
            .any(|l| l.starts_with("agent: the repository refused a delete; stopping restic")),
        "{:#?}",
        log_lines(&reports)
    );
    assert_eq!(locks(&repo), 0, "restic removed its lock");
    // The repository is still sound for everyone else.
    let check = repo.restic(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

fn drill(name: &str, repo: ResolvedRepo, params: DrillParams) -> Work {
    Work::Schedule(ResolvedSchedule {
        drill: Some(params),
        ..schedule(name, Operation::Drill, repo)
    })
}

fn drill_params(source_host: &str) -> DrillParams {
    DrillParams {
        source_host: source_host.into(),
        tags: vec![],
        paths: vec![],
        include: vec![],
        sample_files: 0,
        max_bytes: 0,
    }
}

/// The drill directories left in the agent's temp directory: none once a drill has ended.
fn drill_dirs(dir: &Path, host: &str) -> usize {
    std::fs::read_dir(dir.join(format!("state-{host}")).join("tmp"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("drill-")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_a_sample_or_whole_paths_verifies_every_file_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 40, 10_000, 5);
    let h = Harness::new(dir.path(), "web-1").await;
    let mut nightly = backup(
        "nightly",
        repo.resolved("nas"),
        vec![data.display().to_string()],
    );
    if let Some(b) = nightly.backup.as_mut() {
        b.tags = vec!["nightly".into()];
    }
    let b = h.run("nightly-1", run_schedule(nightly)).await;
    let id = finished(&b).snapshot_id.clone().unwrap();
    // A newer snapshot of another path and tag: the drill of the schedule's snapshots skips it.
    let other = dir.path().join("other");
    tree(&other, 3, 100, 6);
    h.run(
        "other-1",
        run_schedule(backup(
            "other",
            repo.resolved("nas"),
            vec![other.display().to_string()],
        )),
    )
    .await;

    let sample = DrillParams {
        tags: vec!["nightly".into()],
        paths: vec![data.display().to_string()],
        sample_files: 5,
        max_bytes: 1 << 20,
        ..drill_params("web-1")
    };
    let reports = h
        .run("drill-1", drill("weekly", repo.resolved("nas"), sample))
        .await;
    let f = finished(&reports);
    assert_eq!(
        (f.phase, f.operation),
        (JobPhase::Succeeded, JobOperation::Drill),
        "{f:?} {:?}",
        log_lines(&reports)
    );
    assert_eq!(f.snapshot_id.as_deref(), Some(id.as_str()));
    let result = f.drill.as_ref().unwrap();
    assert_eq!(
        (
            result.files_expected,
            result.files_verified,
            result.bytes_verified
        ),
        (5, 5, 50_000)
    );
    assert!(result.differences.is_empty(), "{result:?}");
    assert!(
        result.bytes_per_second > 0 && result.seconds > 0.0,
        "{result:?}"
    );
    assert_eq!(drill_dirs(dir.path(), "web-1"), 0);

    // Whole paths: every file of one directory (files 1, 8, …, 36 are in d1).
    let whole = DrillParams {
        paths: vec![data.display().to_string()],
        include: vec![data.join("d1").display().to_string()],
        ..drill_params("web-1")
    };
    let reports = h
        .run("drill-2", drill("weekly", repo.resolved("nas"), whole))
        .await;
    let f = finished(&reports);
    assert_eq!(
        f.phase,
        JobPhase::Succeeded,
        "{f:?} {:?}",
        log_lines(&reports)
    );
    let result = f.drill.as_ref().unwrap();
    assert_eq!((result.files_verified, result.bytes_verified), (6, 60_000));

    // The host's latest snapshot, whatever made it, is the other path's: nothing under d1.
    let unscoped = DrillParams {
        include: vec![data.join("d1").display().to_string()],
        ..drill_params("web-1")
    };
    let reports = h
        .run("drill-3", drill("weekly", repo.resolved("nas"), unscoped))
        .await;
    let f = finished(&reports);
    assert_eq!(
        (f.phase, f.reason.as_deref()),
        (JobPhase::Failed, Some("NothingToVerify")),
        "{f:?}"
    );
    assert_eq!(drill_dirs(dir.path(), "web-1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_pack_fails_the_drill_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 20, 50_000, 9);
    let h = Harness::new(dir.path(), "web-1").await;
    let b = h
        .run(
            "nightly-1",
            run_schedule(backup(
                "nightly",
                repo.resolved("nas"),
                vec![data.display().to_string()],
            )),
        )
        .await;
    assert_eq!(finished(&b).phase, JobPhase::Succeeded);

    // Overwrite bytes in the middle of the data pack (the file contents; trees are in a small
    // pack of their own), as a failing disk or a tampering hand would.
    let mut packs: Vec<(u64, std::path::PathBuf)> = walk(&Path::new(&repo.url).join("data"))
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    packs.sort();
    let (size, pack) = packs.pop().unwrap();
    assert!(size > 500_000, "{packs:?}");
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    let mut perms = std::fs::metadata(&pack).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&pack, perms).unwrap();
    std::fs::write(&pack, bytes).unwrap();

    let whole = DrillParams {
        include: vec![data.display().to_string()],
        ..drill_params("web-1")
    };
    let reports = h
        .run("drill-1", drill("weekly", repo.resolved("nas"), whole))
        .await;
    let f = finished(&reports);
    let log = log_lines(&reports).join("\n");
    assert_eq!(f.phase, JobPhase::Failed, "{log}");
    assert_eq!(f.reason.as_deref(), Some("VerificationFailed"), "{log}");
    let result = f.drill.as_ref().unwrap();
    assert_eq!(result.files_expected, 20);
    assert!(
        (1..20).contains(&result.differences_total),
        "one damaged blob spoils one file or two: {result:?}"
    );
    assert_eq!(
        result.files_verified + result.differences_total,
        20,
        "{result:?}"
    );
    let first = &result.differences[0];
    assert!(
        first.path.starts_with(&data.display().to_string()) && first.path.ends_with(".bin"),
        "{first:?}"
    );
    assert!(
        first.reason.contains("ciphertext verification failed"),
        "restic's error says what is wrong: {first:?}"
    );
    let message = f.message.as_deref().unwrap();
    assert!(message.contains(&first.path), "{message}");
    assert_eq!(drill_dirs(dir.path(), "web-1"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_host_drill_restores_another_hosts_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::init(dir.path());
    let data = dir.path().join("data");
    tree(&data, 10, 2_000, 3);
    let source = Harness::new(dir.path(), "db-1").await;
    let b = source
        .run(
            "nightly-1",
            run_schedule(backup(
                "nightly",
                repo.resolved("nas"),
                vec![data.display().to_string()],
            )),
        )
        .await;
    let id = finished(&b).snapshot_id.clone().unwrap();

    let h = Harness::new(dir.path(), "standby-1").await;
    let reports = h
        .run(
            "drill-1",
            drill(
                "weekly",
                repo.resolved("nas"),
                DrillParams {
                    sample_files: 3,
                    max_bytes: 1 << 20,
                    ..drill_params("db-1")
                },
            ),
        )
        .await;
    let f = finished(&reports);
    assert_eq!(f.phase, JobPhase::Succeeded, "{:?}", log_lines(&reports));
    assert_eq!(f.snapshot_id.as_deref(), Some(id.as_str()));
    assert_eq!(f.drill.as_ref().map(|d| d.files_verified), Some(3));

    // Its own snapshots: it has none.
    let reports = h
        .run(
            "drill-2",
            drill(
                "weekly",
                repo.resolved("nas"),
                DrillParams {
                    sample_files: 3,
                    max_bytes: 1 << 20,
                    ..drill_params("standby-1")
                },
            ),
        )
        .await;
    let f = finished(&reports);
    assert_eq!(
        (f.phase, f.reason.as_deref()),
        (JobPhase::Failed, Some("NoSnapshot"))
    );
    assert!(
        f.message.as_deref().unwrap().contains("host standby-1"),
        "{f:?}"
    );
}
