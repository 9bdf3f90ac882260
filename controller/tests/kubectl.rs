//! `kubectl` against the files-mode controller, with every `kubectl` this machine has: the one on
//! the PATH, the version-suffixed `kubectl.1.NN` the Google Cloud SDK installs beside it, and
//! Debian's kubectl 1.20 when `scripts/old-kubectl` could unpack it. Each runs with a kubeconfig
//! like the one in the user guide, against a real controller, agent and restic.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

use common::fleet::*;
use serde_json::Value;

/// The run-now Backup the agent runs before the checks.
const BACKUP: &str = "manual";

/// Every distinct kubectl binary found.
fn kubectls() -> Vec<PathBuf> {
    let mut found: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    // The SDK's kubectl on the PATH is a symlink; its versioned siblings are in its directory.
    let linked: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d.join("kubectl")).ok())
        .filter_map(|k| k.parent().map(Path::to_path_buf))
        .collect();
    dirs.extend(linked);
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let versioned = name
                .strip_prefix("kubectl.1.")
                .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
            if (name == "kubectl" || versioned)
                && let Ok(path) = std::fs::canonicalize(entry.path())
            {
                found.insert(path);
            }
        }
    }
    let debian = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/tools/kubernetes-client/usr/bin/kubectl");
    if let Ok(path) = std::fs::canonicalize(debian) {
        found.insert(path);
    }
    found.into_iter().collect()
}

/// A fleet whose agent has run the Backup [`BACKUP`], and a kubeconfig pointing at it.
fn fleet_with_a_backup() -> (Fleet, PathBuf) {
    let fleet = Fleet::start();
    fleet.write(
        &format!("backups/{BACKUP}.yaml"),
        &backup_request_yaml(BACKUP, "files"),
    );
    fleet.eventually(LONG, "the run-now backup to succeed", || {
        let b = fleet.backup(BACKUP)?;
        match b.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Ok(()),
            other => Err(format!("phase {other:?}")),
        }
    });
    let kubeconfig = fleet.root.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&fleet.url(""))).unwrap();
    (fleet, kubeconfig)
}

/// The user guide's kubeconfig for files mode, with the test's server.
fn kubeconfig_yaml(server: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Config
clusters:
  - name: holdfast
    cluster:
      server: {server}
contexts:
  - name: holdfast
    context:
      cluster: holdfast
      namespace: default
current-context: holdfast
users: []
"
    )
}

struct Kubectl<'a> {
    bin: &'a Path,
    kubeconfig: &'a Path,
    cache: PathBuf,
}

impl Kubectl<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin);
        c.arg("--kubeconfig")
            .arg(self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .env_remove("KUBECONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), LONG)
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {}: {}\n{}",
            self.bin.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and requires failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "{} {} succeeded: {}",
            self.bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn with_every_kubectl(kubeconfig: &Path, root: &Path, mut check: impl FnMut(&Kubectl)) -> bool {
    let bins = kubectls();
    if bins.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no kubectl on this machine (PATH, kubectl.1.NN, scripts/old-kubectl), and CI needs one"
        );
        eprintln!("SKIPPED: no kubectl on this machine (PATH, kubectl.1.NN, scripts/old-kubectl)");
        return false;
    }
    eprintln!("kubectl binaries: {bins:?}");
    for (i, bin) in bins.iter().enumerate() {
        let k = Kubectl {
            bin,
            kubeconfig,
            cache: root.join(format!("kubectl-cache-{i}")),
        };
        check(&k);
    }
    true
}

/// A table as `kubectl get` prints it: the column names, and each row as the text under each
/// column (empty for an empty cell). Columns start where the header has a word after at least
/// two spaces, which keeps `LAST BACKUP` one column.
fn parse_table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && &bytes[i - 2..i] == b"  ")))
        .collect();
    let cell = |line: &str, i: usize| {
        let from = starts[i].min(line.len());
        let to = starts.get(i + 1).map_or(line.len(), |&e| e.min(line.len()));
        line[from..to].trim().to_string()
    };
    let names = (0..starts.len()).map(|i| cell(header, i)).collect();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| (0..starts.len()).map(|i| cell(l, i)).collect())
        .collect();
    (names, rows)
}

/// The row whose column `key` is `value`, as column name → cell.
fn row_where(text: &str, key: &str, value: &str) -> std::collections::BTreeMap<String, String> {
    let (names, rows) = parse_table(text);
    let at = names
        .iter()
        .position(|n| n == key)
        .unwrap_or_else(|| panic!("no column {key} in:\n{text}"));
    let row = rows
        .into_iter()
        .find(|r| r[at] == value)
        .unwrap_or_else(|| panic!("no row with {key} {value} in:\n{text}"));
    names.into_iter().zip(row).collect()
}

#[test]
fn kubectl_gets_describes_and_is_refused_like_a_cluster() {
    let (fleet, kubeconfig) = fleet_with_a_backup();
    let backup = fleet.backup(BACKUP).unwrap();
    let snapshot = backup["status"]["snapshotId"].as_str().unwrap().to_string();
    let (desired, applied) = fleet.versions(HOST).unwrap();
    assert_eq!(desired, applied);

    let ran = with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display();

        // get backups: the CRD's columns without the wide ones, and the Succeeded row.
        let out = k.ok(&["get", "backups"]);
        assert_eq!(
            parse_table(&out).0,
            [
                "NAME",
                "HOST",
                "OPERATION",
                "SCHEDULE",
                "PHASE",
                "PROGRESS",
                "ADDED",
                "DURATION",
                "AGE"
            ],
            "{who}: get backups\n{out}"
        );
        let row = row_where(&out, "NAME", BACKUP);
        assert_eq!(
            [&row["HOST"], &row["SCHEDULE"], &row["PHASE"]],
            [HOST, "files", "Succeeded"],
            "{who}: get backups\n{out}"
        );
        assert!(row["ADDED"].ends_with("B"), "{who}: ADDED\n{out}");

        // -o wide adds the priority-1 columns: the snapshot's short id and the start.
        let out = k.ok(&["get", "backups", "-o", "wide"]);
        let row = row_where(&out, "NAME", BACKUP);
        assert_eq!(row["SNAPSHOT"], snapshot[..8], "{who}: -o wide\n{out}");
        assert!(!row["STARTED"].is_empty(), "{who}: -o wide\n{out}");
        assert_eq!(row["PHASE"], "Succeeded", "{who}: -o wide\n{out}");

        // -o yaml: the object as a cluster would hold it, with the full status.
        let out = k.ok(&["get", "hosts", "-o", "yaml"]);
        let list: Value = serde_yaml::from_str(&out).unwrap();
        let host = &list["items"][0];
        assert_eq!(host["kind"], "Host", "{who}: -o yaml\n{out}");
        assert_eq!(host["apiVersion"], "holdfast.dev/v1alpha1");
        assert_eq!(host["metadata"]["name"], HOST);
        assert_eq!(host["metadata"]["namespace"], "default");
        assert_eq!(host["metadata"]["generation"], 1);
        for field in ["uid", "resourceVersion", "creationTimestamp"] {
            assert!(
                host["metadata"][field].is_string(),
                "{who}: metadata.{field} in\n{out}"
            );
        }
        assert_eq!(host["status"]["desiredScheduleVersion"], desired);
        assert_eq!(host["status"]["appliedScheduleVersion"], applied);
        assert_eq!(host["status"]["online"], true);

        // The category: every kind with objects, by kind.
        let out = k.ok(&["get", "holdfast"]);
        for name in [
            "repo.holdfast.dev/local".to_string(),
            format!("host.holdfast.dev/{HOST}"),
            "schedule.holdfast.dev/files".to_string(),
            format!("backup.holdfast.dev/{BACKUP}"),
        ] {
            assert!(
                out.contains(&name),
                "{who}: get holdfast has no {name}:\n{out}"
            );
        }

        // Across namespaces: kubectl adds the NAMESPACE column from each row's metadata.
        let out = k.ok(&["get", "backups", "-A"]);
        assert_eq!(
            parse_table(&out).0[..2],
            ["NAMESPACE", "NAME"],
            "{who}: -A\n{out}"
        );
        assert_eq!(
            row_where(&out, "NAME", BACKUP)["NAMESPACE"],
            "default",
            "{who}: -A\n{out}"
        );

        // Selectors reach the server.
        let out = k.ok(&["get", "backups", "-l", &format!("holdfast.dev/host={HOST}")]);
        assert!(out.contains(BACKUP), "{who}: -l\n{out}");
        let out = k.run(&["get", "backups", "-l", "holdfast.dev/host=elsewhere"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !text.contains(BACKUP) && text.contains("No resources found"),
            "{who}: -l for another host\n{text}"
        );
        let out = k.ok(&[
            "get",
            "backups",
            "--field-selector",
            &format!("metadata.name={BACKUP}"),
        ]);
        assert!(out.contains(BACKUP), "{who}: --field-selector\n{out}");

        // describe: the generic describer prints metadata and status.
        let out = k.ok(&["describe", "host", HOST]);
        for line in [
            format!("Name:         {HOST}"),
            "Kind:         Host".to_string(),
            format!("Applied Schedule Version:  {applied}"),
        ] {
            assert!(
                out.contains(&line),
                "{who}: describe has no {line:?}:\n{out}"
            );
        }

        // A missing object, and a write.
        let err = k.fails(&["get", "backup", "missing"]);
        assert!(
            err.contains(
                "Error from server (NotFound): backups.holdfast.dev \"missing\" not found"
            ),
            "{who}: get backup missing\n{err}"
        );
        let err = k.fails(&["delete", "host", HOST]);
        assert!(
            err.contains("Error from server (MethodNotAllowed)") && err.contains("read-only"),
            "{who}: delete host\n{err}"
        );
    });
    if ran {
        fleet
            .host(HOST)
            .expect("the host is still there after delete");
    }
}

#[test]
fn kubectl_watch_prints_the_version_bump_of_a_schedule_edit() {
    let (fleet, kubeconfig) = fleet_with_a_backup();
    let mut round = 0;
    with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display().to_string();
        fleet.eventually(
            LONG,
            "the previous watch to close",
            || match open_watches(&fleet)? {
                0 => Ok(()),
                n => Err(format!("{n} open")),
            },
        );
        let (desired, _) = fleet.versions(HOST).unwrap();
        let mut child = k
            .command(&["get", "host", HOST, "-w"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Columns: NAME ONLINE APPLIED DESIRED IN-SYNC LAST-BACKUP AGE.
        let mut seen = Vec::new();
        let mut wait_for = |want: &dyn Fn(&[&str]) -> bool, what: &str| loop {
            match rx.recv_timeout(LONG) {
                Ok(line) => {
                    seen.push(line.clone());
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if words.first() == Some(&HOST) && want(&words) {
                        return;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("{who}: no line with {what}; printed:\n{}", seen.join("\n"));
                }
            }
        };
        let current = desired.to_string();
        wait_for(
            &|w| w.get(3) == Some(&current.as_str()),
            "the current version",
        );
        // kubectl prints the object, then opens its watch and drops the watch's first event (the
        // object again): an edit before the watch is open would be that dropped event.
        fleet.eventually(LONG, "kubectl's watch to be open", || {
            match open_watches(&fleet)? {
                1 => Ok(()),
                n => Err(format!("{n} open")),
            }
        });

        round += 1;
        fleet.write(
            "schedules/files.yaml",
            &fleet.files_schedule(&format!("0 4 {round} 1 *")),
        );
        // The push and the ack can land in one status write: wait for both versions at once.
        let bumped = (desired + 1).to_string();
        wait_for(
            &|w| w.get(2) == Some(&bumped.as_str()) && w.get(3) == Some(&bumped.as_str()),
            &format!("APPLIED and DESIRED {bumped} after the edit"),
        );
        let _ = child.kill();
        let _ = child.wait();
        // The next kubectl starts from a host in sync.
        fleet.wait_in_sync(HOST);
    });
}

/// `holdfast_api_watches` from `/metrics`.
fn open_watches(fleet: &Fleet) -> Result<u64, String> {
    let (_, text) = fleet.get("/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("holdfast_api_watches "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no holdfast_api_watches in /metrics:\n{text}"))
}

/// The watch also works below kubectl: from a resourceVersion, a Table or raw, selectors on the
/// first events too, and 410 when the version is older than the controller remembers or newer
/// than anything it wrote.
#[test]
fn the_watch_api_resumes_from_a_resource_version_and_expires_before_it() {
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    let hosts_path = "/apis/holdfast.dev/v1alpha1/namespaces/default/hosts";
    let list = fleet.api(hosts_path).unwrap();
    assert_eq!(list["kind"], "HostList");
    let rv: i64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let (status, body) = fleet
        .get(&format!(
            "{hosts_path}?watch=true&resourceVersion={}",
            rv - 1_000_000
        ))
        .unwrap();
    let expired: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, expired["kind"].as_str(), expired["reason"].as_str()),
        (410, Some("Status"), Some("Expired")),
        "{body}"
    );

    // Edit, then watch from the list's version: the change is replayed.
    let (desired, _) = fleet.versions(HOST).unwrap();
    fleet.write("schedules/files.yaml", &fleet.files_schedule("0 4 1 1 *"));
    fleet.eventually(LONG, "the desired version to go up", || {
        let (d, _) = fleet.versions(HOST)?;
        if d > desired {
            Ok(())
        } else {
            Err(format!("desired {d}"))
        }
    });
    let (status, body) = fleet
        .get(&format!(
            "{hosts_path}?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        ))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let events: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["type"] == "MODIFIED" && e["object"]["kind"] == "Host"),
        "{body}"
    );
    let last = events
        .last()
        .unwrap_or_else(|| panic!("no events:\n{body}"));
    assert_eq!(
        last["object"]["status"]["desiredScheduleVersion"],
        desired + 1
    );
    let versions: Vec<i64> = events
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]) && versions[0] > rv,
        "{versions:?} after {rv}"
    );

    // Without a version: the current state as ADDED, here as a Table.
    let (status, body) = fleet
        .get_with(
            &format!("{hosts_path}?watch=true&timeoutSeconds=1"),
            &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
        )
        .unwrap();
    assert_eq!(status, 200, "{body}");
    // The initial state comes first; a change within the watch's second (web-1's lastSeen
    // crossing a minute) may follow it.
    let first: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .take_while(|e| e["type"] == "ADDED")
        .collect();
    let names: Vec<&Value> = first
        .iter()
        .map(|e| &e["object"]["rows"][0]["cells"][0])
        .collect();
    assert_eq!(names, [HOST, "web-2"], "{body}");
    assert!(
        first
            .iter()
            .all(|e| e["type"] == "ADDED" && e["object"]["kind"] == "Table")
    );

    // kubectl's `get host NAME -w` watches from 0 with a field selector: only that host.
    let (_, body) = fleet
        .get(&format!(
            "{hosts_path}?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dweb-2&timeoutSeconds=1"
        ))
        .unwrap();
    let names: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["object"]["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, ["web-2"], "{body}");
}

/// Discovery and errors, as a client reads them.
#[test]
fn discovery_is_plain_json_and_errors_are_status_objects() {
    let fleet = Fleet::start();
    for path in ["/api", "/apis", "/apis/holdfast.dev/v1alpha1"] {
        let response = fleet
            .http_response(path, "GET")
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(response.0, 200, "{path}");
        assert_eq!(response.1, "application/json", "{path}: content type");
    }
    let resources = fleet.api("/apis/holdfast.dev/v1alpha1").unwrap();
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for name in [
        "repos",
        "hosts",
        "schedules",
        "backups",
        "restores",
        "hosts/status",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    let item = format!("/apis/holdfast.dev/v1alpha1/namespaces/default/hosts/{HOST}");
    let (status, content_type, body) = fleet.http_response(&item, "DELETE").unwrap();
    assert_eq!((status, content_type.as_str()), (405, "application/json"));
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["kind"], "Status");
    assert_eq!(refusal["reason"], "MethodNotAllowed");
    assert_eq!(refusal["code"], 405);

    for path in [
        "/apis/holdfast.dev/v1alpha1/namespaces/default/hosts/nowhere",
        "/apis/holdfast.dev/v1alpha1/namespaces/default/widgets",
        "/apis/other.example/v1",
    ] {
        let (status, body) = fleet.get(path).unwrap();
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, error["kind"].as_str(), error["reason"].as_str()),
            (404, Some("Status"), Some("NotFound")),
            "{path}: {body}"
        );
    }
    let (status, _) = fleet
        .get("/apis/holdfast.dev/v1alpha1/hosts?labelSelector=a%20in%20b")
        .unwrap();
    assert_eq!(status, 400);
    // The controller is unchanged by the refused write.
    assert!(fleet.host(HOST).is_ok());
}

#[test]
fn kubectl_version_exits_0_and_a_malformed_selector_is_a_bad_request() {
    let fleet = Fleet::start();

    let version = fleet.api("/version").unwrap();
    assert_eq!(version["major"], "1");
    let minor = version["minor"].as_str().unwrap();
    assert!(minor.parse::<u32>().is_ok(), "minor {minor:?}");
    let git_version = version["gitVersion"].as_str().unwrap();
    assert!(
        git_version.starts_with(&format!("v1.{minor}.0-holdfast.")),
        "{git_version}"
    );
    let platform = version["platform"].as_str().unwrap();
    assert!(platform.starts_with(std::env::consts::OS), "{platform}");

    let (status, body) = fleet
        .get("/apis/holdfast.dev/v1alpha1/hosts?labelSelector=bad%3D%3D%3D")
        .unwrap();
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, error["kind"].as_str(), error["reason"].as_str()),
        (400, Some("Status"), Some("BadRequest")),
        "{body}"
    );

    let kubeconfig = fleet.root.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&fleet.url(""))).unwrap();
    with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display();
        let out = k.ok(&["version", "-o", "json"]);
        let both: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{who}: {e}\n{out}"));
        assert_eq!(
            both["serverVersion"]["gitVersion"], git_version,
            "{who}\n{out}"
        );

        let err = k.fails(&["get", "hosts", "-l", "bad==="]);
        assert!(
            err.contains("Error from server (BadRequest)") && err.contains("invalid label value"),
            "{who}: get -l bad===\n{err}"
        );
        // A well-formed selector still lists.
        k.ok(&["get", "hosts", "-l", &format!("holdfast.dev/none={HOST}")]);
    });
}

/// Labels are metadata: editing them makes a new resourceVersion (so watches and `-l` see it)
/// but not a new generation, as in a cluster.
#[test]
fn a_label_edit_is_a_new_resource_version_not_a_new_generation() {
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    let path = "/apis/holdfast.dev/v1alpha1/namespaces/default/hosts/web-2";
    let before = fleet.api(path).unwrap();
    let rv = |o: &Value| -> i64 {
        o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    fleet.write(
        "hosts/web-2.yaml",
        &host_yaml("web-2").replace("  name: web-2\n", "  name: web-2\n  labels: {tier: edge}\n"),
    );
    let after = fleet.eventually(LONG, "the new label on web-2", || {
        let o = fleet.api(path)?;
        if o["metadata"]["labels"]["tier"] == "edge" {
            Ok(o)
        } else {
            Err(format!("metadata: {}", o["metadata"]))
        }
    });
    assert!(
        rv(&after) > rv(&before),
        "{} then {}",
        before["metadata"],
        after["metadata"]
    );
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    let (_, body) = fleet
        .get(&format!(
            "/apis/holdfast.dev/v1alpha1/namespaces/default/hosts?watch=true&resourceVersion={}&timeoutSeconds=1",
            rv(&before)
        ))
        .unwrap();
    assert!(
        body.lines()
            .any(|l| l.contains("\"tier\":\"edge\"") && l.contains("MODIFIED")),
        "the label edit is a watch event: {body}"
    );

    // Through a label selector, web-2 enters (ADDED) and, when the label goes, leaves (DELETED).
    let selected = |from: i64| -> Vec<(String, String)> {
        let (_, body) = fleet
            .get(&format!(
                "/apis/holdfast.dev/v1alpha1/namespaces/default/hosts?watch=true&resourceVersion={from}&labelSelector=tier%3Dedge&timeoutSeconds=1"
            ))
            .unwrap();
        body.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|e| {
                let name = e["object"]["metadata"]["name"].as_str().unwrap_or_default();
                (
                    e["type"].as_str().unwrap_or_default().to_string(),
                    name.to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        selected(rv(&before)),
        [("ADDED".to_string(), "web-2".to_string())]
    );
    fleet.write("hosts/web-2.yaml", &host_yaml("web-2"));
    fleet.eventually(LONG, "the label gone from web-2", || {
        let o = fleet.api(path)?;
        if o["metadata"]["labels"].get("tier").is_none() {
            Ok(())
        } else {
            Err(format!("metadata: {}", o["metadata"]))
        }
    });
    assert_eq!(
        selected(rv(&after)),
        [("DELETED".to_string(), "web-2".to_string())]
    );
}

/// Three run requests for the offline host `web-2`: Backups that stay Pending, named in list
/// order.
const PAGED: [&str; 3] = ["page-a", "page-b", "page-c"];

fn fleet_with_three_backups() -> Fleet {
    let fleet = Fleet::with_hosts(&[HOST, "web-2"]);
    write_requests(&fleet, &PAGED);
    fleet.eventually(LONG, "the three Backups", || {
        let names = names_of(&fleet.api(BACKUPS)?);
        if names == PAGED {
            Ok(())
        } else {
            Err(format!("backups {names:?}"))
        }
    });
    fleet
}

/// Run requests `names` for the offline host `web-2`: Backups that stay Pending.
fn write_requests(fleet: &Fleet, names: &[&str]) {
    let files: Vec<(String, String)> = names
        .iter()
        .map(|name| {
            (
                format!("backups/{name}.yaml"),
                format!(
                    "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata:\n  name: {name}\nspec:\n  host: web-2\n  operation: check\n"
                ),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    fleet.write_all(&files);
}

const BACKUPS: &str = "/apis/holdfast.dev/v1alpha1/namespaces/default/backups";

/// The names of a list's items, or of a Table's rows.
fn names_of(list: &Value) -> Vec<String> {
    let items = list["items"].as_array().or(list["rows"].as_array());
    items
        .into_iter()
        .flatten()
        .map(|o| {
            o.pointer("/metadata/name")
                .or(o.pointer("/cells/0"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// A list's `metadata.continue`, when it has one.
fn continue_of(list: &Value) -> Option<String> {
    list["metadata"]["continue"].as_str().map(str::to_string)
}

/// `kubectl get --chunk-size=1` asks for one object at a time and follows `continue` to the
/// end: every object is printed once, as a table and as names.
#[test]
fn kubectl_in_chunks_of_one_gets_every_object() {
    let fleet = fleet_with_three_backups();
    let kubeconfig = fleet.root.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&fleet.url(""))).unwrap();
    with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display();
        for args in [
            &["get", "backups", "--chunk-size=1", "-v=6"][..],
            &["get", "backups", "--chunk-size=1", "-A", "-v=6"][..],
        ] {
            let out = k.run(args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{who} {args:?}: {stderr}");
            // The table's rows: every object once (the first column is NAMESPACE with -A).
            let mut rows: Vec<&str> = stdout
                .lines()
                .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("page-")))
                .collect();
            rows.sort_unstable();
            assert_eq!(rows, PAGED, "{who} {args:?}:\n{stdout}");
            // It asked for pages and followed the tokens.
            assert!(
                stderr.contains("limit=1") && stderr.contains("continue="),
                "{who} {args:?}: no paged requests in\n{stderr}"
            );
        }
        let out = k.ok(&["get", "backups", "--chunk-size=1", "-o", "name"]);
        let names: Vec<&str> = out.lines().collect();
        assert_eq!(
            names,
            PAGED.map(|n| format!("backup.holdfast.dev/{n}")),
            "{who}: -o name\n{out}"
        );
    });
}

/// The pages below kubectl: `limit` and `continue` on the Kubernetes-compatible list (raw and
/// as a Table, after the selectors) and on `/api/v1/{plural}` with the same tokens; a token that
/// is not one is a 400 Status.
#[test]
fn lists_come_in_pages_with_a_continue_token() {
    let fleet = fleet_with_three_backups();

    // One object a page, in name order; the last page has no continue.
    let mut seen = Vec::new();
    let mut path = format!("{BACKUPS}?limit=1");
    let mut remaining = Vec::new();
    let mut versions = Vec::new();
    loop {
        let page = fleet.api(&path).unwrap();
        assert_eq!(page["kind"], "BackupList", "{page}");
        assert_eq!(names_of(&page).len(), 1, "{path}: {page}");
        seen.extend(names_of(&page));
        versions.push(page["metadata"]["resourceVersion"].clone());
        let Some(token) = continue_of(&page) else {
            assert!(
                page["metadata"].get("remainingItemCount").is_none(),
                "{page}"
            );
            break;
        };
        remaining.push(page["metadata"]["remainingItemCount"].clone());
        assert!(
            seen.len() < PAGED.len(),
            "a continue after the last: {page}"
        );
        path = format!("{BACKUPS}?limit=1&continue={token}");
    }
    assert_eq!(seen, PAGED);
    assert_eq!(remaining, [2, 1]);
    // Every page carries the first page's resourceVersion, as the API server's pages do.
    assert!(
        versions[0].is_string() && versions.iter().all(|v| *v == versions[0]),
        "{versions:?}"
    );

    // As a Table, two rows then one; the Table's metadata carries the token.
    let table = |path: &str| -> Value {
        let (status, body) = fleet
            .get_with(
                path,
                &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
            )
            .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let first = table(&format!("{BACKUPS}?limit=2"));
    assert_eq!(first["kind"], "Table");
    assert_eq!(names_of(&first), PAGED[..2], "{first}");
    let token = continue_of(&first).unwrap_or_else(|| panic!("no continue: {first}"));
    let rest = table(&format!("{BACKUPS}?limit=2&continue={token}"));
    assert_eq!(names_of(&rest), PAGED[2..], "{rest}");
    assert_eq!(continue_of(&rest), None, "{rest}");

    // Filter, then page: across namespaces, without page-b, one at a time.
    let all = "/apis/holdfast.dev/v1alpha1/backups";
    let selected = format!("{all}?fieldSelector=metadata.name%21%3Dpage-b&limit=1");
    let first = fleet.api(&selected).unwrap();
    assert_eq!(names_of(&first), ["page-a"], "{first}");
    let token = continue_of(&first).unwrap_or_else(|| panic!("no continue: {first}"));
    let rest = fleet.api(&format!("{selected}&continue={token}")).unwrap();
    assert_eq!(
        (names_of(&rest), continue_of(&rest)),
        (vec!["page-c".to_string()], None),
        "{rest}"
    );

    // The JSON API: unchanged without limit; pages with it, and the same tokens.
    let whole = fleet.api("/api/v1/backups").unwrap();
    assert_eq!(whole["kind"], "BackupList");
    let mut names = names_of(&whole);
    names.sort();
    assert_eq!(names, PAGED, "{whole}");
    let first = fleet.api("/api/v1/backups?limit=2").unwrap();
    assert_eq!(
        (first["kind"].as_str(), names_of(&first)),
        (
            Some("BackupList"),
            PAGED[..2].iter().map(|n| n.to_string()).collect()
        ),
        "{first}"
    );
    assert_eq!(first["metadata"]["remainingItemCount"], 1, "{first}");
    let token = continue_of(&first).unwrap_or_else(|| panic!("no continue: {first}"));
    let rest = fleet
        .api(&format!("/api/v1/backups?limit=2&continue={token}"))
        .unwrap();
    assert_eq!(
        (names_of(&rest), continue_of(&rest)),
        (vec!["page-c".to_string()], None),
        "{rest}"
    );
    let from_kubeapi = continue_of(&fleet.api(&format!("{BACKUPS}?limit=1")).unwrap()).unwrap();
    let rest = fleet
        .api(&format!("/api/v1/backups?continue={from_kubeapi}"))
        .unwrap();
    assert_eq!(names_of(&rest), PAGED[1..], "{rest}");

    // Not a token, or another kind's: 400 with a Status, on both APIs.
    let hosts_token = continue_of(
        &fleet
            .api("/apis/holdfast.dev/v1alpha1/namespaces/default/hosts?limit=1")
            .unwrap(),
    )
    .expect("two hosts, one a page");
    for path in [
        format!("{BACKUPS}?limit=1&continue=not-a-token"),
        format!("{BACKUPS}?continue={hosts_token}"),
        format!("{all}?limit=1&continue=abcd"),
        "/api/v1/backups?limit=1&continue=not-a-token".to_string(),
        format!("{BACKUPS}?limit=many"),
    ] {
        let (status, body) = fleet.get(&path).unwrap();
        let error: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        assert_eq!(
            (status, error["kind"].as_str(), error["reason"].as_str()),
            (400, Some("Status"), Some("BadRequest")),
            "{path}: {body}"
        );
    }

    // The model moves on between two pages: the next page is served from the objects as they
    // are now, after the last key served, and still carries the first page's resourceVersion,
    // from which a watch replays what the pages missed.
    let first = fleet.api(&format!("{BACKUPS}?limit=1")).unwrap();
    assert_eq!(names_of(&first), ["page-a"], "{first}");
    let token = continue_of(&first).unwrap_or_else(|| panic!("no continue: {first}"));
    let rv = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    write_requests(&fleet, &["page-0", "page-bb"]);
    fleet.eventually(LONG, "the two new Backups", || {
        let names = names_of(&fleet.api(BACKUPS)?);
        match names.len() {
            5 => Ok(()),
            _ => Err(format!("backups {names:?}")),
        }
    });
    let rest = fleet
        .api(&format!("{BACKUPS}?limit=10&continue={token}"))
        .unwrap();
    assert_eq!(
        (names_of(&rest), continue_of(&rest)),
        (
            ["page-b", "page-bb", "page-c"].map(String::from).to_vec(),
            None
        ),
        "page-0 sorts before the page served: {rest}"
    );
    assert_eq!(rest["metadata"]["resourceVersion"], rv.as_str(), "{rest}");
    let (_, body) = fleet
        .get(&format!(
            "{BACKUPS}?watch=true&resourceVersion={rv}&timeoutSeconds=1"
        ))
        .unwrap();
    assert!(
        body.lines().any(|l| {
            let e: Value = serde_json::from_str(l).unwrap_or_default();
            e["type"] == "ADDED" && e["object"]["metadata"]["name"] == "page-0"
        }),
        "the watch from the first page's version has page-0:\n{body}"
    );
}

/// A cell without a value, as kubectl prints one (releases differ).
fn unset(cell: &str) -> bool {
    cell.is_empty() || cell == "<none>"
}

/// Whether this kubectl has the `events` command (1.26 and later; 1.20 has not).
fn has_events_command(k: &Kubectl) -> bool {
    k.run(&["events", "--help"]).status.success()
}

/// `kubectl explain` reads the OpenAPI documents built from the CRDs: v3 from 1.27 on, v2 as
/// protocol buffers before (and as their fallback).
#[test]
fn kubectl_explains_every_kind_and_their_nested_fields() {
    let fleet = Fleet::start();
    let kubeconfig = fleet.root.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&fleet.url(""))).unwrap();
    // Every kind the API serves, from its discovery: a kind added later is explained too.
    let resources = fleet.api("/apis/holdfast.dev/v1alpha1").unwrap();
    let kinds: Vec<(String, String)> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["name"].as_str().unwrap().contains('/'))
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(kinds.len() >= 5, "{kinds:?}");

    with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display();
        for (plural, kind) in &kinds {
            let out = k.ok(&["explain", plural]);
            let words: Vec<&str> = out.split_whitespace().collect();
            assert!(
                words.windows(2).any(|w| w == ["KIND:", kind.as_str()]),
                "{who}: explain {plural}\n{out}"
            );
            for field in ["apiVersion", "metadata", "spec", "status"] {
                assert!(
                    out.lines().any(|l| l.trim_start().starts_with(field)),
                    "{who}: explain {plural} lists no {field}\n{out}"
                );
            }
        }
        let out = k.ok(&["explain", "host"]);
        assert!(
            out.contains("A machine running the Holdfast agent."),
            "{who}: explain host\n{out}"
        );
        // A field nested four levels down, and one of ObjectMeta.
        let out = k.ok(&["explain", "host.spec.defaults.hooks.pre"]);
        assert!(
            out.contains("pre") && out.contains("Run in order before the backup"),
            "{who}: explain host.spec.defaults.hooks.pre\n{out}"
        );
        let out = k.ok(&["explain", "schedules.spec.retention.keepDaily"]);
        assert!(
            out.contains("keepDaily"),
            "{who}: explain schedules.spec.retention.keepDaily\n{out}"
        );
        let out = k.ok(&["explain", "backup.metadata.labels"]);
        assert!(
            out.contains("labels") && out.contains("Map of string keys and values"),
            "{who}: explain backup.metadata.labels\n{out}"
        );
        let err = k.fails(&["explain", "host.spec.nonsense"]);
        assert!(
            err.contains("nonsense"),
            "{who}: explain host.spec.nonsense\n{err}"
        );

        // The documents themselves, as JSON.
        let v2: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
        assert_eq!(v2["swagger"], "2.0");
        assert_eq!(
            v2["definitions"]["dev.holdfast.v1alpha1.Host"]["x-kubernetes-group-version-kind"][0]["kind"],
            "Host"
        );
        let v3: Value = serde_json::from_str(&k.ok(&["get", "--raw", "/openapi/v3"])).unwrap();
        let url = v3["paths"]["apis/holdfast.dev/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: /openapi/v3\n{v3}"));
        let group: Value = serde_json::from_str(&k.ok(&["get", "--raw", url])).unwrap();
        assert!(
            group["components"]["schemas"]["dev.holdfast.v1alpha1.Schedule"].is_object(),
            "{who}: {url}"
        );
    });
}

/// The Events the controller records, as every kubectl reads them.
fn events(fleet: &Fleet) -> Result<Vec<Value>, String> {
    let list = fleet.api("/api/v1/namespaces/default/events")?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// Waits for an Event `reason` about `kind`/`name`.
fn wait_for_event(fleet: &Fleet, kind: &str, name: &str, reason: &str) -> Value {
    fleet.eventually(LONG, &format!("{reason} on {kind}/{name}"), || {
        let all = events(fleet)?;
        all.iter()
            .find(|e| {
                e["reason"] == reason
                    && e["involvedObject"]["kind"] == kind
                    && e["involvedObject"]["name"] == name
            })
            .cloned()
            .ok_or_else(|| {
                let seen: Vec<String> = all
                    .iter()
                    .map(|e| format!("{} {}", e["reason"], e["involvedObject"]["name"]))
                    .collect();
                format!("events {seen:?}")
            })
    })
}

#[test]
fn kubectl_describes_gets_and_watches_the_controllers_events() {
    let (fleet, kubeconfig) = fleet_with_a_backup();
    let (desired, _) = fleet.versions(HOST).unwrap();
    fleet.write("schedules/files.yaml", &fleet.files_schedule("0 4 2 1 *"));
    let bumped = wait_for_event(&fleet, "Host", HOST, "ScheduleVersionChanged");
    assert!(
        bumped["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{} (was {desired})", desired + 1)),
        "{bumped}"
    );
    let connected = wait_for_event(&fleet, "Host", HOST, "AgentConnected");
    let host = fleet.host(HOST).unwrap();
    assert_eq!(
        connected["involvedObject"]["uid"], host["metadata"]["uid"],
        "describe finds Events by the object's uid"
    );
    assert_eq!(connected["source"]["component"], "holdfast");
    assert_eq!(connected["type"], "Normal");
    wait_for_event(&fleet, "Backup", BACKUP, "Dispatched");

    // The same Events as events.k8s.io/v1.
    let newer = fleet
        .api("/apis/events.k8s.io/v1/namespaces/default/events")
        .unwrap();
    assert_eq!(newer["kind"], "EventList");
    assert!(
        newer["items"].as_array().unwrap().iter().any(|e| {
            e["apiVersion"] == "events.k8s.io/v1"
                && e["regarding"]["name"] == HOST
                && e["reason"] == "ScheduleVersionChanged"
                && e["reportingController"] == "holdfast"
        }),
        "{newer}"
    );

    // Pages, and a watch from the list's version that sees the next decision.
    let first = fleet.api("/api/v1/events?limit=1").unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 1, "{first}");
    let token = continue_of(&first).unwrap_or_else(|| panic!("no continue: {first}"));
    let rest = fleet
        .api(&format!("/api/v1/events?limit=100&continue={token}"))
        .unwrap();
    assert_eq!(
        rest["items"].as_array().unwrap().len() + 1,
        events(&fleet).unwrap().len(),
        "{rest}"
    );
    let rv = fleet.api("/api/v1/namespaces/default/events").unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    fleet.write("schedules/files.yaml", &fleet.files_schedule("0 4 3 1 *"));
    fleet.eventually(LONG, "a watch event for the next version", || {
        let (status, body) = fleet.get(&format!(
            "/api/v1/namespaces/default/events?watch=true&resourceVersion={rv}&timeoutSeconds=1&fieldSelector=involvedObject.name%3D{HOST},reason%3DScheduleVersionChanged"
        ))?;
        let lines: Vec<Value> = body
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        match lines.first() {
            Some(e) if status == 200 && e["type"] == "ADDED" => {
                assert!(e["object"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{} (was {})", desired + 2, desired + 1)));
                Ok(())
            }
            _ => Err(format!("{status}: {body}")),
        }
    });

    let ran = with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display();
        let out = k.ok(&["describe", "host", HOST]);
        let events_section = out
            .split("Events:")
            .nth(1)
            .unwrap_or_else(|| panic!("{who}: describe host has no Events\n{out}"));
        for reason in ["AgentConnected", "ScheduleVersionChanged"] {
            assert!(
                events_section.contains(reason) && events_section.contains("holdfast"),
                "{who}: describe host has no {reason} from holdfast\n{out}"
            );
        }
        let out = k.ok(&["describe", "backup", BACKUP]);
        assert!(
            out.split("Events:")
                .nth(1)
                .is_some_and(|e| e.contains("Dispatched")),
            "{who}: describe backup\n{out}"
        );

        let out = k.ok(&["get", "events"]);
        let (columns, _) = parse_table(&out);
        assert_eq!(
            columns,
            ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            "{who}: get events\n{out}"
        );
        let row = row_where(&out, "REASON", "AgentConnected");
        assert_eq!(
            row["OBJECT"],
            format!("host/{HOST}"),
            "{who}: get events\n{out}"
        );
        assert_eq!(row["TYPE"], "Normal");
        let out = k.ok(&["get", "events", "-o", "wide"]);
        let row = row_where(&out, "REASON", "AgentConnected");
        assert_eq!(
            [row["SOURCE"].as_str(), row["COUNT"].as_str()],
            ["holdfast", "1"],
            "{who}: get events -o wide\n{out}"
        );
        let out = k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=Backup",
        ]);
        let (_, rows) = parse_table(&out);
        assert!(
            !rows.is_empty() && rows.iter().all(|r| r[3].starts_with("backup/")),
            "{who}: --field-selector involvedObject.kind=Backup\n{out}"
        );
        let err = k.fails(&["get", "events", "--field-selector", "spec.nonsense=1"]);
        assert!(
            err.contains("BadRequest") && err.contains("spec.nonsense"),
            "{who}: a field Events have not\n{err}"
        );
        let out = k.ok(&["get", "events.v1.events.k8s.io", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).unwrap();
        assert!(
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["regarding"]["name"] == HOST),
            "{who}: get events.v1.events.k8s.io\n{out}"
        );

        if has_events_command(k) {
            let out = k.ok(&["events"]);
            assert!(
                out.contains("ScheduleVersionChanged") && out.contains(&format!("Host/{HOST}")),
                "{who}: kubectl events\n{out}"
            );
            let out = k.ok(&["events", "--for", &format!("backup/{BACKUP}")]);
            assert!(
                out.contains("Dispatched") && !out.contains("ScheduleVersionChanged"),
                "{who}: kubectl events --for backup/{BACKUP}\n{out}"
            );
        } else {
            eprintln!("{who} has no events command");
        }

        // -o wide adds the priority-1 columns of each kind.
        let out = k.ok(&["get", "hosts", "-o", "wide"]);
        let row = row_where(&out, "NAME", HOST);
        assert_eq!(
            row["OS"],
            std::env::consts::OS,
            "{who}: hosts -o wide\n{out}"
        );
        for column in ["AGENT", "ARCH", "LAST SEEN"] {
            assert!(
                !row[column].is_empty() && row[column] != "<none>",
                "{who}: {column}\n{out}"
            );
        }
        let out = k.ok(&["get", "schedules", "-o", "wide"]);
        let row = row_where(&out, "NAME", "files");
        assert!(
            row["NEXT RUN"].contains('T') && unset(&row["TIME ZONE"]),
            "{who}: schedules -o wide\n{out}"
        );
        let out = k.ok(&["get", "repos", "-o", "wide"]);
        let row = row_where(&out, "NAME", "local");
        assert!(
            row["INITIALIZED"] == "true" && unset(&row["CHECK PASSED"]),
            "{who}: repos -o wide\n{out}"
        );
        let out = k.ok(&["get", "hosts"]);
        assert!(
            !parse_table(&out).0.contains(&"AGENT".to_string()),
            "{who}: wide only\n{out}"
        );
    });
    if ran {
        // The counts kept: nothing above was recorded twice.
        assert!(events(&fleet).unwrap().iter().all(|e| e["count"] == 1));
    }
}

/// A schedule whose edit does not validate is `Stalled` and not `Ready` until it is fixed, in
/// files mode as in Kubernetes mode, and gets a `RevisionRejected` Event.
#[test]
fn a_rejected_edit_stalls_its_schedule_and_kubectl_wait_does_not_pass() {
    let fleet = Fleet::start();
    let kubeconfig = fleet.root.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_yaml(&fleet.url(""))).unwrap();
    let path = "/apis/holdfast.dev/v1alpha1/namespaces/default/schedules/files";
    let condition = |s: &Value, kind: &str| -> Option<String> {
        s["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .and_then(|c| c["status"].as_str().map(String::from))
    };
    fleet.eventually(LONG, "files Ready", || {
        let s = fleet.api(path)?;
        match condition(&s, "Ready").as_deref() {
            Some("True") => Ok(()),
            _ => Err(s["status"].to_string()),
        }
    });
    fleet.write("schedules/files.yaml", &fleet.files_schedule("61 4 * * *"));
    fleet.eventually(LONG, "files Stalled and not Ready", || {
        let s = fleet.api(path)?;
        match (condition(&s, "Stalled"), condition(&s, "Ready")) {
            (Some(stalled), Some(ready)) if stalled == "True" && ready == "False" => Ok(()),
            _ => Err(s["status"].to_string()),
        }
    });
    let rejected = wait_for_event(&fleet, "Schedule", "files", "RevisionRejected");
    assert_eq!(rejected["type"], "Warning");
    assert!(
        rejected["message"].as_str().unwrap().contains("spec.cron"),
        "{rejected}"
    );

    with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        let who = k.bin.display();
        let err = k.fails(&[
            "wait",
            "--for=condition=Ready",
            "schedule/files",
            "--timeout=1s",
        ]);
        assert!(err.contains("timed out"), "{who}: wait\n{err}");
        let out = k.ok(&["describe", "schedule", "files"]);
        assert!(
            out.contains("Stalled") && out.contains("RevisionRejected"),
            "{who}: describe schedule files\n{out}"
        );
    });

    fleet.write("schedules/files.yaml", &fleet.files_schedule(QUIET_CRON));
    with_every_kubectl(&kubeconfig, &fleet.root, |k| {
        k.ok(&[
            "wait",
            "--for=condition=Ready",
            "schedule/files",
            "--timeout=60s",
        ]);
    });
    let s = fleet.api(path).unwrap();
    assert_eq!(condition(&s, "Stalled"), None, "{s}");
}
