//! Kubernetes mode end to end: two `holdfast controller --kube` replicas and a `holdfast-agent`
//! as real processes, against the API-server stand-in (`common/apiserver.rs`) in this process,
//! through a load balancer (`common/balancer.rs`) as a Service would be; real restic backing up
//! to a local repository whose password is in a Secret.
//!
//! A Notifier in the cluster sends a failed run to a webhook signed with its Secret's key, and
//! the leader writes its deliveries to its status.
//!
//! Also: the stand-in itself answers kube-rs (typed `Api`, `watcher`, the events `Recorder`,
//! the leader election) as an API server does, so that what the end-to-end test shows is about
//! the controller, not the stand-in.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::apiserver::{
    ApiServer, BACKUPS, EVENTS, HOSTS, LEASES, NOTIFIERS, REPOS, SCHEDULES, SECRETS, SNAPSHOTS,
};
use common::balancer::Balancer;
use common::fleet::{PASSWORD, Proc, QUIET_CRON, RESTIC, agent_bin, free_port, holdfast_bin, tail};
use common::receiver::Receiver;
use serde_json::{Value, json};

/// A deadline for what should take seconds, on a slow machine; not a performance assertion.
const LONG: Duration = Duration::from_secs(120);
const NAMESPACE: &str = "fleet";
const CONTROLLER_NAMESPACE: &str = "holdfast-system";
const HOST: &str = "web-1";
const LEASE: &str = "holdfast-controller";

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

// ---- the stand-in, through kube-rs ------------------------------------------------------------

#[test]
fn the_stand_in_answers_kube_rs_as_an_api_server_does() {
    use futures_util::StreamExt;
    use holdfast::resources::{Backup, Host};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    use kube::runtime::watcher;

    let server = ApiServer::start();
    server.block_on(async {
        let config = kube::Config::new(server.url().parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let backups: Api<Backup> = Api::namespaced(client.clone(), NAMESPACE);
        let request: Backup = serde_json::from_value(json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": "now", "labels": {"team": "web"}},
            "spec": {"host": HOST, "schedule": "files"},
            "status": {"phase": "Succeeded"}
        }))
        .unwrap();

        // Create: metadata set by the server, status dropped (a status subresource).
        let created = backups
            .create(&PostParams::default(), &request)
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, Some(1));
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
        assert!(created.status.is_none(), "{created:?}");
        let again = backups.create(&PostParams::default(), &request).await;
        assert!(
            matches!(&again, Err(kube::Error::Api(s)) if s.is_already_exists()),
            "{again:?}"
        );

        // A watch from the list's resourceVersion sees what changes next.
        let watching = Api::<Backup>::all(client.clone());
        let mut events = Box::pin(watcher(watching, watcher::Config::default()));
        let mut init_done = false;
        while !init_done {
            match events.next().await.unwrap().unwrap() {
                watcher::Event::InitDone => init_done = true,
                watcher::Event::InitApply(b) => assert_eq!(b.metadata.name.as_deref(), Some("now")),
                _ => {}
            }
        }

        // Server-side apply on /status: only status changes, not the generation; a stale
        // resourceVersion in the patch is a conflict.
        let rv = created.metadata.resource_version.clone().unwrap();
        let status = json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": "now", "resourceVersion": rv},
            "status": {"phase": "Running"}
        });
        let applied = backups
            .patch_status(
                "now",
                &PatchParams::apply("holdfast").force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
        assert_eq!(applied.metadata.generation, Some(1));
        let phase = serde_json::to_value(&applied.status).unwrap();
        assert_eq!(phase["phase"], "Running");
        let stale = backups
            .patch_status(
                "now",
                &PatchParams::apply("holdfast").force(),
                &Patch::Apply(&status),
            )
            .await;
        assert!(
            matches!(&stale, Err(kube::Error::Api(s)) if s.is_conflict()),
            "{stale:?}"
        );
        match events.next().await.unwrap().unwrap() {
            watcher::Event::Apply(b) => {
                assert_eq!(serde_json::to_value(&b.status).unwrap()["phase"], "Running")
            }
            other => panic!("expected the status change, got {other:?}"),
        }

        // Replace: a stale resourceVersion conflicts; a spec change bumps the generation and
        // keeps the status.
        let mut edited = created.clone();
        edited.spec.schedule = Some("other".into());
        let stale = backups
            .replace("now", &PostParams::default(), &edited)
            .await;
        assert!(
            matches!(&stale, Err(kube::Error::Api(s)) if s.is_conflict()),
            "{stale:?}"
        );
        edited.metadata.resource_version = applied.metadata.resource_version.clone();
        let replaced = backups
            .replace("now", &PostParams::default(), &edited)
            .await
            .unwrap();
        assert_eq!(replaced.metadata.generation, Some(2));
        assert_eq!(
            serde_json::to_value(&replaced.status).unwrap()["phase"],
            "Running"
        );

        // Label selectors.
        let selected = |selector: &'static str| {
            let backups = backups.clone();
            async move {
                backups
                    .list(&ListParams::default().labels(selector))
                    .await
                    .unwrap()
                    .items
                    .len()
            }
        };
        assert_eq!(selected("team=web").await, 1);
        assert_eq!(selected("team!=web").await, 0);
        assert_eq!(selected("team in (db,web),!missing").await, 1);
        assert_eq!(selected("missing").await, 0);

        // Delete, seen by the watch.
        backups.delete("now", &Default::default()).await.unwrap();
        loop {
            match events.next().await.unwrap().unwrap() {
                watcher::Event::Delete(b) => {
                    assert_eq!(b.metadata.name.as_deref(), Some("now"));
                    break;
                }
                watcher::Event::Apply(_) => {}
                other => panic!("expected the deletion, got {other:?}"),
            }
        }
        let gone = backups.get_opt("now").await.unwrap();
        assert!(gone.is_none());

        // Secrets: stringData is folded into data.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"password": PASSWORD}
        }))
        .unwrap();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let read = secrets.get("s").await.unwrap();
        assert_eq!(read.data.unwrap()["password"].0, PASSWORD.as_bytes());

        // The leader election: one replica leads, the other stands by.
        let leases: Api<Lease> = Api::namespaced(client.clone(), CONTROLLER_NAMESPACE);
        let a = holdfast::cluster::lease::Election::new(LEASE, "replica-a");
        let b = holdfast::cluster::lease::Election::new(LEASE, "replica-b");
        assert!(a.try_lead(&leases, chrono::Utc::now()).await.unwrap());
        assert!(!b.try_lead(&leases, chrono::Utc::now()).await.unwrap());
        assert!(
            a.try_lead(&leases, chrono::Utc::now()).await.unwrap(),
            "renews"
        );

        // Events through kube-runtime's recorder (create, then a merge patch for a series).
        let host: Host = serde_json::from_value(json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": HOST, "namespace": NAMESPACE, "uid": "u-1"},
            "spec": {}
        }))
        .unwrap();
        let recorder = kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "holdfast".into(),
                instance: None,
            },
        );
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Normal,
            reason: "Tested".into(),
            note: Some("twice".into()),
            action: "Test".into(),
            secondary: None,
        };
        use kube::Resource;
        let reference = host.object_ref(&());
        recorder.publish(&event, &reference).await.unwrap();
        recorder.publish(&event, &reference).await.unwrap();
    });
    let events = server.list(&EVENTS, Some(NAMESPACE));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "Tested");
    assert_eq!(events[0]["regarding"]["name"], HOST);
    assert_eq!(events[0]["series"]["count"], 2, "{}", events[0]);
    let lease = server.get(&LEASES, CONTROLLER_NAMESPACE, LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("allowWatchBookmarks=true")),
        "{requests:#?}"
    );
}

// ---- what triggers a reconcile ----------------------------------------------------------------

/// `Changed name` or `Gone name`.
fn trigger<K: kube::Resource<DynamicType = ()>>(t: &holdfast::cluster::run::Trigger<K>) -> String {
    use holdfast::cluster::run::Trigger;
    match t {
        Trigger::Changed(r) => format!("Changed {}", r.name),
        Trigger::Gone(r) => format!("Gone {}", r.name),
    }
}

/// The controller's own status writes come back through its watches, as they do from an API
/// server, and trigger no reconcile; what a person changes does. Deterministic, without
/// timing: watch events arrive in order and each reaches the store before what it triggers is
/// yielded, so the first trigger after a run of status writes shows, in the store, the change
/// that followed them. Had a status write triggered, the store would show that write instead.
#[test]
fn the_controllers_status_writes_trigger_no_reconcile_and_a_persons_edits_do() {
    use futures_util::StreamExt;
    use holdfast::cluster::reconcile::{backup_inputs, desired_inputs};
    use holdfast::cluster::run::triggers;
    use holdfast::cluster::sink::apply_status;
    use holdfast::resources::{Backup, Host, Schedule};
    use kube::api::Api;
    use kube::runtime::reflector::{self, ObjectRef};

    let server = ApiServer::start();
    server.create_yaml(&format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {{name: {HOST}, namespace: {NAMESPACE}, labels: {{role: web}}}}
spec: {{defaultRepo: local}}
---
{}",
        schedule("files", Path::new("/srv"), "")
    ));
    server.block_on(async {
        let config = kube::Config::new(server.url().parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let condition = |status: &str| {
            json!({"observedGeneration": 1, "hostCount": 1, "conditions": [{
                "type": "Ready", "status": status, "reason": "R", "message": "m",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]})
        };

        // A Schedule: the leader writes its status three times, then a person edits it.
        let (schedules, writer) = reflector::store::<Schedule>();
        let mut triggered = Box::pin(triggers(
            Api::<Schedule>::all(client.clone()),
            writer,
            desired_inputs::<Schedule>,
        ));
        assert_eq!(trigger(&triggered.next().await.unwrap()), "Changed files");
        let api: Api<Schedule> = Api::namespaced(client.clone(), NAMESPACE);
        for status in ["False", "True", "Unknown"] {
            apply_status(&api, "files", &condition(status))
                .await
                .unwrap();
        }
        server
            .update(&SCHEDULES, NAMESPACE, "files", |o| {
                o["spec"]["tags"] = json!(["edited"])
            })
            .unwrap();
        assert_eq!(trigger(&triggered.next().await.unwrap()), "Changed files");
        let seen = schedules
            .get(&ObjectRef::new("files").within(NAMESPACE))
            .unwrap();
        assert_eq!(
            seen.metadata.generation,
            Some(2),
            "the edit, not a status write"
        );
        let status = serde_json::to_value(&seen.status).unwrap();
        assert_eq!(
            status["conditions"][0]["status"], "Unknown",
            "the store has every status write: {status}"
        );

        // A Host: the leader writes its status; then a person relabels it.
        let (hosts, writer) = reflector::store::<Host>();
        let mut triggered = Box::pin(triggers(
            Api::<Host>::all(client.clone()),
            writer,
            desired_inputs::<Host>,
        ));
        assert_eq!(trigger(&triggered.next().await.unwrap()), "Changed web-1");
        let api: Api<Host> = Api::namespaced(client.clone(), NAMESPACE);
        for version in 1..=3 {
            let status = json!({"observedGeneration": 1, "desiredScheduleVersion": version,
                "desiredScheduleDigest": format!("d{version}"), "online": true});
            apply_status(&api, HOST, &status).await.unwrap();
        }
        server
            .update(&HOSTS, NAMESPACE, HOST, |o| {
                o["metadata"]["labels"]["role"] = json!("db")
            })
            .unwrap();
        assert_eq!(trigger(&triggered.next().await.unwrap()), "Changed web-1");
        let seen = hosts.get(&ObjectRef::new(HOST).within(NAMESPACE)).unwrap();
        assert_eq!(seen.metadata.labels.as_ref().unwrap()["role"], "db");
        assert_eq!(
            seen.status.as_ref().unwrap().desired_schedule_version,
            Some(3)
        );

        // Backups: a record Holdfast writes (its status, its pruning) triggers nothing; a run
        // request does when it is created and when it finishes, not while it is dispatched
        // and running.
        let (backups, writer) = reflector::store::<Backup>();
        let mut triggered = Box::pin(triggers(
            Api::<Backup>::all(client.clone()),
            writer,
            backup_inputs,
        ));
        let api: Api<Backup> = Api::namespaced(client.clone(), NAMESPACE);
        server.create_yaml(&format!(
            "\
apiVersion: holdfast.dev/v1alpha1
kind: Backup
metadata:
  name: files-web-1-1
  namespace: {NAMESPACE}
  labels: {{app.kubernetes.io/managed-by: holdfast}}
spec: {{host: {HOST}, schedule: files}}
"
        ));
        for phase in ["Running", "Succeeded"] {
            apply_status(&api, "files-web-1-1", &json!({"phase": phase}))
                .await
                .unwrap();
        }
        server.delete(&BACKUPS, NAMESPACE, "files-web-1-1").unwrap();
        server.create_yaml(&request("now", "files"));
        assert_eq!(trigger(&triggered.next().await.unwrap()), "Changed now");
        for phase in ["Pending", "Dispatched", "Running", "Succeeded"] {
            apply_status(&api, "now", &json!({"phase": phase}))
                .await
                .unwrap();
        }
        assert_eq!(trigger(&triggered.next().await.unwrap()), "Gone now");
        let seen = backups
            .get(&ObjectRef::new("now").within(NAMESPACE))
            .unwrap();
        let status = serde_json::to_value(&seen.status).unwrap();
        assert_eq!(status["phase"], "Succeeded", "{status}");
    });
}

// ---- end to end -----------------------------------------------------------------------------

/// One controller replica: its name (the Lease holder it writes), port and process.
struct Replica {
    name: String,
    port: u16,
    proc: Option<Proc>,
}

/// The stand-in, two replicas, the balancer in front of them and one agent.
struct Cluster {
    root: PathBuf,
    tmp: Option<tempfile::TempDir>,
    server: ApiServer,
    kubeconfig: PathBuf,
    replicas: Vec<Replica>,
    balancer: Option<Balancer>,
    agent: Option<Proc>,
    data: PathBuf,
    repo: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        // A missing restic fails the test (with how to install it), in CI and elsewhere.
        common::fleet::require_restic();
        agent_bin();
        let tmp = tempfile::Builder::new()
            .prefix("holdfast-kube-")
            .tempdir()
            .unwrap();
        let root = tmp.path().to_path_buf();
        let server = ApiServer::start();
        let kubeconfig = root.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig);
        let data = root.join("data");
        fs::create_dir_all(data.join("sub")).unwrap();
        fs::write(data.join("a.txt"), "alpha\n").unwrap();
        fs::write(data.join("sub/b.txt"), "bravo\n").unwrap();
        fs::write(root.join("agent.yaml"), "").unwrap();
        Cluster {
            repo: root.join("repo"),
            root,
            tmp: Some(tmp),
            server,
            kubeconfig,
            replicas: Vec::new(),
            balancer: None,
            agent: None,
            data,
        }
    }

    fn start_replica(&mut self, name: &str) {
        let port = free_port();
        let data_dir = self.root.join(name);
        fs::create_dir_all(&data_dir).unwrap();
        let mut command = Command::new(holdfast_bin());
        command
            .args(["controller", "--kube", "--namespace", CONTROLLER_NAMESPACE])
            .args(["--secret-namespace", NAMESPACE])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--offline-after", "6s"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", name)
            .env_remove("POD_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let log = self.root.join(format!("{name}.log"));
        let proc = Proc::spawn(name, &mut command, &log);
        self.replicas.push(Replica {
            name: name.into(),
            port,
            proc: Some(proc),
        });
    }

    /// `holdfast token create HOST --namespace fleet --kube`, as an operator with a kubeconfig.
    fn token(&self) -> String {
        let out = Command::new(holdfast_bin())
            .args(["token", "create", HOST, "--namespace", NAMESPACE, "--kube"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "holdfast token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn agent_state(&self) -> PathBuf {
        self.root.join("agent")
    }

    fn agent_log(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    fn enroll(&self, server: &str, token: &str) {
        let out = Command::new(agent_bin())
            .args(["enroll", "--server", server, "--token", token])
            .arg("--state-dir")
            .arg(self.agent_state())
            .env_remove("HOLDFAST_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "holdfast-agent enroll: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tails()
        );
    }

    fn start_agent(&mut self, server: &str) {
        let mut command = Command::new(agent_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(self.root.join("agent.yaml"))
            .arg("--state-dir")
            .arg(self.agent_state())
            .args(["--server", server, "--restic", RESTIC, "--host", HOST])
            .env(
                "HOLDFAST_LOG",
                std::env::var("HOLDFAST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for var in [
            "HOLDFAST_CONFIG",
            "HOLDFAST_SERVER",
            "HOLDFAST_STATE_DIR",
            "HOLDFAST_RESTIC",
            "HOLDFAST_HOST",
            "HOLDFAST_CA_FILE",
        ] {
            command.env_remove(var);
        }
        self.agent = Some(Proc::spawn(
            "holdfast-agent",
            &mut command,
            &self.agent_log(),
        ));
    }

    fn holder(&self) -> Option<String> {
        let lease = self.server.get(&LEASES, CONTROLLER_NAMESPACE, LEASE)?;
        Some(text(&lease, "/spec/holderIdentity").to_string()).filter(|h| !h.is_empty())
    }

    fn replica(&mut self, name: &str) -> &mut Replica {
        self.replicas
            .iter_mut()
            .find(|r| r.name == name)
            .expect("a replica of that name")
    }

    fn get(&self, kind: &common::apiserver::Kind, name: &str) -> Result<Value, String> {
        self.server
            .get(kind, NAMESPACE, name)
            .ok_or_else(|| format!("no {} {NAMESPACE}/{name}", kind.kind))
    }

    fn log_tails(&self) -> String {
        let mut logs: Vec<PathBuf> = self
            .replicas
            .iter()
            .map(|r| self.root.join(format!("{}.log", r.name)))
            .collect();
        logs.push(self.agent_log());
        let mut out: String = logs
            .iter()
            .map(|p| {
                format!(
                    "----- last lines of {} -----\n{}\n",
                    p.display(),
                    tail(p, 60)
                )
            })
            .collect();
        let requests = self.server.requests();
        let last = &requests[requests.len().saturating_sub(40)..];
        out.push_str(&format!(
            "----- last requests to the stand-in -----\n{}\n",
            last.join("\n")
        ));
        out
    }

    /// Polls `f` until Ok; after `limit`, fails with what was last seen and the logs.
    fn eventually<T>(
        &self,
        limit: Duration,
        what: &str,
        mut f: impl FnMut() -> Result<T, String>,
    ) -> T {
        let start = Instant::now();
        loop {
            let last = match f() {
                Ok(v) => return v,
                Err(e) => e,
            };
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; last seen: {last}\n{}",
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The restic repository's snapshots (the password from the test, not from the cluster).
    fn snapshots(&self) -> Vec<Value> {
        if !self.repo.join("config").exists() {
            return Vec::new();
        }
        let password = self.root.join("password");
        fs::write(&password, PASSWORD).unwrap();
        let out = Command::new(RESTIC)
            .arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&password)
            .args(["--no-lock", "--no-cache", "snapshots", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "restic snapshots: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits for a Backup to end, and fails unless it Succeeded.
    fn wait_succeeded(&self, name: &str) -> Value {
        self.eventually(LONG, &format!("Backup {name} Succeeded"), || {
            let b = self.get(&BACKUPS, name)?;
            match text(&b, "/status/phase") {
                "Succeeded" => Ok(b),
                "Failed" | "PartiallyFailed" | "Skipped" | "Cancelled" | "Missed" => {
                    panic!(
                        "Backup {name} ended without success: {b}\n{}",
                        self.log_tails()
                    )
                }
                _ => Err(b.to_string()),
            }
        })
    }

    /// Waits until the Host's agent is online and has applied its desired version.
    fn wait_in_sync(&self) -> Value {
        self.eventually(LONG, "web-1 online and in sync", || {
            let h = self.get(&HOSTS, HOST)?;
            let desired = h
                .pointer("/status/desiredScheduleVersion")
                .and_then(Value::as_u64);
            let applied = h
                .pointer("/status/appliedScheduleVersion")
                .and_then(Value::as_u64);
            let online = h.pointer("/status/online") == Some(&Value::Bool(true));
            if online && desired.is_some() && desired == applied {
                Ok(h)
            } else {
                Err(h["status"].to_string())
            }
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill();
        }
        for replica in &mut self.replicas {
            if let Some(mut proc) = replica.proc.take() {
                proc.kill();
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
            if let Some(tmp) = self.tmp.take() {
                eprintln!("test files kept in {}", tmp.keep().display());
            }
        }
    }
}

fn schedule(name: &str, data: &Path, extra: &str) -> String {
    format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  operation: backup
  cron: \"{QUIET_CRON}\"
  hosts: [{HOST}]
  repo: local
  tags: [{name}]
  paths:
    - {}
{extra}",
        data.display()
    )
}

fn request(name: &str, schedule: &str) -> String {
    format!(
        "\
apiVersion: holdfast.dev/v1alpha1
kind: Backup
metadata:
  name: {name}
  namespace: {NAMESPACE}
spec:
  host: {HOST}
  schedule: {schedule}
"
    )
}

#[test]
fn two_replicas_and_an_agent_run_requests_and_survive_the_leaders_death() {
    let mut cluster = Cluster::new();
    let c = &mut cluster;

    // The fleet, as a person applies it: the password in a Secret, a Repo naming it, a Host,
    // a backup Schedule.
    c.server.create_yaml(&format!(
        "\
apiVersion: v1
kind: Secret
metadata: {{name: restic, namespace: {NAMESPACE}}}
stringData: {{password: '{PASSWORD}'}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Repo
metadata: {{name: local, namespace: {NAMESPACE}}}
spec:
  url: {}
  password:
    secretKeyRef: {{name: restic, key: password}}
  initialize: true
---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {{name: {HOST}, namespace: {NAMESPACE}}}
spec:
  defaultRepo: local
---
{}",
        c.repo.display(),
        schedule("files", &c.data, "")
    ));

    // Two replicas; one takes the Lease.
    c.start_replica("holdfast-a");
    c.start_replica("holdfast-b");
    let leader = c.eventually(LONG, "a replica holding the Lease", || {
        c.holder().ok_or_else(|| "no Lease holder".to_string())
    });
    assert!(leader == "holdfast-a" || leader == "holdfast-b", "{leader}");
    let ports: Vec<u16> = c.replicas.iter().map(|r| r.port).collect();
    c.balancer = Some(Balancer::start(&ports));
    let url = c.balancer.as_ref().unwrap().url();

    // Enrolled with a token from `holdfast token create --kube`; the Secret holds its hash.
    let token = c.token();
    let tokens: Vec<Value> = c
        .server
        .list(&SECRETS, Some(CONTROLLER_NAMESPACE))
        .into_iter()
        .filter(|s| s["type"] == "holdfast.dev/enrollment-token")
        .collect();
    assert_eq!(tokens.len(), 1);
    assert!(!tokens[0].to_string().contains(&token));
    c.enroll(&url, &token);
    c.start_agent(&url);
    let host = c.wait_in_sync();
    assert_eq!(text(&host, "/metadata/namespace"), NAMESPACE);

    // A run request made as a person would: it runs once and Succeeds.
    c.server.create_yaml(&request("now", "files"));
    let now = c.wait_succeeded("now");
    assert!(!text(&now, "/status/snapshotId").is_empty(), "{now}");
    // Its snapshot, as a Snapshot owned by the Host.
    let id = text(&now, "/status/snapshotId").to_string();
    let name = format!("{HOST}-local-{}", &id[..8]);
    let snapshot = c.eventually(LONG, "the backup's Snapshot", || c.get(&SNAPSHOTS, &name));
    assert_eq!(text(&snapshot, "/spec/id"), id, "{snapshot}");
    assert_eq!(text(&snapshot, "/spec/backup"), "now", "{snapshot}");
    assert_eq!(
        text(&snapshot, "/metadata/labels/holdfast.dev~1host"),
        HOST,
        "{snapshot}"
    );
    let owner = &snapshot["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Host"), Some(HOST)),
        "{snapshot}"
    );
    assert_eq!(
        owner["uid"],
        c.get(&HOSTS, HOST).unwrap()["metadata"]["uid"],
        "{snapshot}"
    );
    let host = c.eventually(LONG, "web-1's lastBackup", || {
        let h = c.get(&HOSTS, HOST)?;
        h.pointer("/status/lastBackup")
            .filter(|b| !b.is_null())
            .map(|_| h.clone())
            .ok_or_else(|| h["status"].to_string())
    });
    let status = &host["status"];
    assert_eq!(
        status["appliedScheduleVersion"], status["desiredScheduleVersion"],
        "{status}"
    );
    for (kind, name) in [(&REPOS, "local"), (&SCHEDULES, "files")] {
        c.eventually(LONG, &format!("{} {name} with status", kind.kind), || {
            let o = c.get(kind, name)?;
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready"));
            (ready && o.pointer("/status/observedGeneration").is_some())
                .then_some(())
                .ok_or_else(|| o.to_string())
        });
    }
    let files: Vec<Value> = c
        .snapshots()
        .into_iter()
        .filter(|s| s["tags"].to_string().contains("\"files\""))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // A gated schedule: its run waits in its pre-hook until the test lets it go on.
    let gate = c.root.join("gate");
    let hook = format!(
        "  hooks:\n    pre:\n      - command: [sh, -c, \"while [ ! -e {} ]; do sleep 0.1; done\"]\n        timeout: 10m\n",
        gate.display()
    );
    let before = host["status"]["desiredScheduleVersion"].as_u64().unwrap();
    c.server.create_yaml(&schedule("gated", &c.data, &hook));
    c.eventually(LONG, "the gated schedule applied", || {
        let h = c.wait_in_sync();
        let desired = h["status"]["desiredScheduleVersion"].as_u64().unwrap_or(0);
        (desired > before)
            .then_some(())
            .ok_or_else(|| h["status"].to_string())
    });
    c.server.create_yaml(&request("gated-now", "gated"));
    c.eventually(LONG, "gated-now Running", || {
        let b = c.get(&BACKUPS, "gated-now")?;
        (text(&b, "/status/phase") == "Running")
            .then_some(())
            .ok_or_else(|| b.to_string())
    });

    // The leader dies mid-run; the other replica takes the Lease and the agent finds it.
    let version = c.get(&HOSTS, HOST).unwrap()["status"]["desiredScheduleVersion"].clone();
    let old = leader.clone();
    c.replica(&old).proc.take().unwrap().kill();
    let new = c.eventually(LONG, "the other replica holding the Lease", || {
        match c.holder() {
            Some(h) if h != old => Ok(h),
            other => Err(format!("holder {other:?}")),
        }
    });
    fs::write(&gate, "").unwrap();
    let gated = c.wait_succeeded("gated-now");
    assert!(!text(&gated, "/status/snapshotId").is_empty(), "{gated}");
    let host = c.wait_in_sync();
    assert_eq!(
        host["status"]["desiredScheduleVersion"], version,
        "the new leader continues the version from Host status: {host}"
    );

    // It ran once: one snapshot of the gated schedule, one start in the agent's log.
    let snapshots: Vec<Value> = c
        .snapshots()
        .into_iter()
        .filter(|s| s["tags"].to_string().contains("\"gated\""))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let log = fs::read_to_string(c.agent_log()).unwrap();
    let job = text(&gated, "/status/jobId").to_string();
    assert!(!job.is_empty(), "{gated}");
    let starts = log
        .lines()
        .filter(|l| l.contains("job started") && l.contains(&job))
        .count();
    assert_eq!(starts, 1, "job {job:?} started once:\n{log}");
    // The requests are their own records: no Backup was created for them.
    let mut backups: Vec<String> = c
        .server
        .list(&BACKUPS, None)
        .iter()
        .map(|b| text(b, "/metadata/name").to_string())
        .collect();
    backups.sort();
    assert_eq!(backups, ["gated-now", "now"]);
    // The follower sent the agent away, and the agent found the leader through the balancer.
    assert!(log.contains("not the leader"), "{log}");
    let events = c.server.list(&EVENTS, Some(NAMESPACE));
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "ScheduleVersionChanged"),
        "{events:?}"
    );
    eprintln!("leader {old} killed; {new} took over");
}

#[test]
fn a_notifier_in_the_cluster_sends_a_failed_run_signed_with_its_secrets_key() {
    let mut cluster = Cluster::new();
    let c = &mut cluster;
    let port = free_port();
    let receiver = Receiver::on(port);
    c.server.create_yaml(&format!(
        "\
apiVersion: v1
kind: Secret
metadata: {{name: restic, namespace: {NAMESPACE}}}
stringData: {{password: '{PASSWORD}'}}
---
apiVersion: v1
kind: Secret
metadata: {{name: on-call, namespace: {NAMESPACE}}}
stringData: {{signing-key: cluster-signing-key}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Repo
metadata: {{name: local, namespace: {NAMESPACE}}}
spec:
  url: {}
  password:
    secretKeyRef: {{name: restic, key: password}}
  initialize: true
---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {{name: {HOST}, namespace: {NAMESPACE}}}
spec:
  defaultRepo: local
---
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata: {{name: on-call, namespace: {NAMESPACE}}}
spec:
  webhook:
    url: http://127.0.0.1:{port}/hook
    signingSecret:
      secretKeyRef: {{name: on-call, key: signing-key}}
  events: [RunFailed]
---
{}",
        c.repo.display(),
        schedule("broken", &c.root.join("nowhere"), "")
    ));
    c.start_replica("holdfast-a");
    let url = format!("http://127.0.0.1:{}", c.replicas[0].port);
    c.eventually(LONG, "the replica holding the Lease and serving", || {
        c.holder().ok_or_else(|| "no Lease holder".to_string())?;
        std::net::TcpStream::connect(("127.0.0.1", c.replicas[0].port))
            .map(drop)
            .map_err(|e| format!("not serving yet: {e}"))
    });
    let token = c.token();
    c.enroll(&url, &token);
    c.start_agent(&url);
    c.wait_in_sync();

    c.server.create_yaml(&request("now", "broken"));
    let hooks = c.eventually(LONG, "the webhook to fire", || {
        let got = receiver.at("/hook");
        if got.is_empty() {
            Err("nothing yet".into())
        } else {
            Ok(got)
        }
    });
    let body = hooks[0].json();
    assert_eq!(body["status"], "firing", "{body:#}");
    assert_eq!(body["event"], "RunFailed", "{body:#}");
    assert_eq!(body["namespace"], NAMESPACE, "{body:#}");
    assert_eq!(body["run"], "now", "{body:#}");
    assert_eq!(
        hooks[0].header("x-holdfast-signature"),
        hooks[0].signature("cluster-signing-key"),
        "signed with the key from the Secret"
    );

    // The leader writes the Notifier's status to the cluster like any other.
    let notifier = c.eventually(LONG, "the Notifier's status in the cluster", || {
        let n = c.get(&NOTIFIERS, "on-call")?;
        match text(&n, "/status/lastDelivery/message") {
            "[FIRING] RunFailed: broken on web-1" => Ok(n),
            _ => Err(n.to_string()),
        }
    });
    let status = &notifier["status"];
    assert_eq!(status["firing"], 1, "{status}");
    assert_eq!(status["queued"], 0, "{status}");
    assert!(
        !status.to_string().contains("cluster-signing-key"),
        "no secret in status: {status}"
    );
    assert!(status["observedGeneration"].is_number(), "{status}");
}
