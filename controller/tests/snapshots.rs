//! Snapshots end to end: the real controller, agent and restic. Two backups make two
//! snapshots, which `/api/v1/snapshots`, the files-mode Kubernetes API and the real `kubectl`
//! list with their short ids and the Backups that made them; `holdfast plan --retention`
//! previews a `keepLast: 1` forget on them, warning that it keeps only one; after the forget
//! runs, the forgotten snapshot is gone everywhere.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::fleet::*;
use serde_json::Value;

/// A forget schedule keeping the newest snapshot of [`HOST`] in the `local` repo; it runs only
/// when asked.
const FORGET: &str = "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: keep-one
spec:
  operation: forget
  cron: \"0 3 1 1 *\"
  hosts: [web-1]
  repo: local
  retention:
    keepLast: 1
";

/// Runs the `files` backup once, as the request `name`, and returns its snapshot's full id.
fn back_up(fleet: &Fleet, name: &str) -> String {
    fleet.write(
        &format!("backups/{name}.yaml"),
        &backup_request_yaml(name, "files"),
    );
    let backup = fleet.eventually(LONG, &format!("Backup {name} to succeed"), || {
        let b = fleet.backup(name)?;
        match b.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Ok(b),
            other => Err(format!("phase {other:?}")),
        }
    });
    backup["status"]["snapshotId"]
        .as_str()
        .expect("a snapshot id")
        .to_string()
}

/// The Snapshots `/api/v1/snapshots` lists.
fn listed(fleet: &Fleet) -> Result<Vec<Value>, String> {
    let list = fleet.api("/api/v1/snapshots")?;
    list["items"]
        .as_array()
        .cloned()
        .ok_or_else(|| format!("no items in {list}"))
}

/// The short ids of the listed Snapshots, sorted.
fn short_ids(items: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .filter_map(|s| s["spec"]["shortId"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

/// `kubectl get snapshots ARGS` against the files-mode API; its stdout.
fn kubectl_get(bin: &PathBuf, fleet: &Fleet, args: &[&str]) -> String {
    let kubeconfig = fleet.root.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n  - name: h\n    cluster:\n      server: {}\ncontexts:\n  - name: h\n    context:\n      cluster: h\n      namespace: default\ncurrent-context: h\nusers: []\n",
            fleet.url("")
        ),
    )
    .unwrap();
    let out = Command::new(bin)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(fleet.root.join("kubectl-cache"))
        .arg("get")
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl get {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn snapshots_are_listed_previewed_and_gone_once_forgotten() {
    let kubectl = kubectl();
    assert!(
        kubectl.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "no kubectl on the PATH, and CI needs one"
    );
    let fleet = Fleet::start();
    let first = back_up(&fleet, "first");
    let second = back_up(&fleet, "second");
    let (old, new) = (first[..8].to_string(), second[..8].to_string());
    let mut both = vec![old.clone(), new.clone()];
    both.sort();

    let items = fleet.eventually(LONG, "two Snapshots in /api/v1/snapshots", || {
        let items = listed(&fleet)?;
        match short_ids(&items) == both {
            true => Ok(items),
            false => Err(format!("listed: {items:?}")),
        }
    });
    let snapshot = items
        .iter()
        .find(|s| s["spec"]["id"] == first.as_str())
        .unwrap();
    assert_eq!(snapshot["kind"], "Snapshot");
    assert_eq!(
        snapshot["metadata"]["name"],
        format!("{HOST}-local-{old}"),
        "{snapshot:#}"
    );
    assert_eq!(snapshot["metadata"]["labels"]["holdfast.dev/host"], HOST);
    assert_eq!(snapshot["metadata"]["labels"]["holdfast.dev/repo"], "local");
    assert_eq!(snapshot["spec"]["hostname"], HOST);
    assert_eq!(snapshot["spec"]["backup"], "first", "{snapshot:#}");
    assert!(
        snapshot["spec"]["size"].as_u64().is_some_and(|s| s > 0),
        "the size of the backup that made it: {snapshot:#}"
    );
    assert_eq!(
        snapshot["spec"]["paths"][0],
        fleet.data.display().to_string()
    );
    // The Kubernetes-compatible list filters by label, and pages like the others.
    let selected = fleet
        .api("/apis/holdfast.dev/v1alpha1/namespaces/default/snapshots?labelSelector=holdfast.dev/host%3Dweb-1&limit=1")
        .unwrap();
    assert_eq!(selected["items"].as_array().map(Vec::len), Some(1));
    assert!(selected["metadata"]["continue"].is_string(), "{selected:#}");
    let none = fleet
        .api("/apis/holdfast.dev/v1alpha1/snapshots?labelSelector=holdfast.dev/repo%3Dother")
        .unwrap();
    assert_eq!(none["items"], Value::Array(vec![]));

    if let Some(bin) = &kubectl {
        let table = kubectl_get(bin, &fleet, &["snapshots"]);
        let header = table.lines().next().unwrap_or_default();
        for column in ["HOST", "REPO", "TIME", "SHORT ID", "TAGS", "PATHS", "AGE"] {
            assert!(header.contains(column), "no {column} in:\n{table}");
        }
        assert!(table.contains(&old) && table.contains(&new), "{table}");
        let field =
            |selector: &str| kubectl_get(bin, &fleet, &["snapshots", "--field-selector", selector]);
        let mine = field(&format!("spec.host={HOST},spec.repo=local"));
        assert!(mine.contains(&old) && mine.contains(&new), "{mine}");
        let other = field("spec.repo=other");
        assert!(!other.contains(&new), "{other}");
        let holdfast = kubectl_get(bin, &fleet, &["holdfast"]);
        assert!(
            holdfast.contains(&format!("snapshot.holdfast.dev/{HOST}-local-{new}")),
            "`kubectl get holdfast` lists Snapshots:\n{holdfast}"
        );
    }

    // The forget schedule, and what its next run would do: shown while it is new in the plan,
    // and once applied only with --retention.
    // A proposed change, in a copy of the config directory the controller does not read.
    let proposed = fleet.root.join("proposed");
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&fleet.config)
        .arg(&proposed)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(proposed.join("schedules/keep-one.yaml"), FORGET).unwrap();
    let fresh = plan(&fleet, &proposed, &[]);
    assert_eq!(fresh["retention"][0]["schedule"], "keep-one", "{fresh:#}");
    fleet.write("schedules/keep-one.yaml", FORGET);
    fleet.eventually(LONG, "keep-one applied", || {
        match plan(&fleet, &fleet.config, &[])["retention"].is_null() {
            true => Ok(()),
            false => Err(
                "an applied policy that does not change is previewed only with --retention".into(),
            ),
        }
    });
    fleet.wait_in_sync(HOST);
    let planned = plan(&fleet, &fleet.config, &["--retention"]);
    let preview = planned["retention"]
        .as_array()
        .and_then(|r| r.iter().find(|p| p["schedule"] == "keep-one"))
        .unwrap_or_else(|| panic!("no preview of keep-one: {planned:#}"));
    assert_eq!(preview["host"], HOST);
    assert_eq!(preview["remove"][0]["shortId"], old.as_str(), "{preview:#}");
    assert_eq!(preview["keep"][0]["shortId"], new.as_str(), "{preview:#}");
    assert_eq!(
        preview["warnings"][0],
        "the policy removes every snapshot but one (1 removed, 1 kept)"
    );
    // And each Snapshot says when it goes.
    fleet.eventually(LONG, "the older Snapshot to show when it goes", || {
        let items = listed(&fleet)?;
        let goes = |id: &str| {
            items
                .iter()
                .find(|s| s["spec"]["id"] == id)
                .map(|s| s["status"]["forgetAt"].is_string())
        };
        match (goes(&first), goes(&second)) {
            (Some(true), Some(false)) => Ok(()),
            other => Err(format!(
                "forgetAt of first and second: {other:?} in {items:?}"
            )),
        }
    });

    // The forget runs; the older snapshot is gone from the repository and from every list.
    back_up_forget(&fleet);
    assert_eq!(fleet.snapshot_ids(), vec![second.clone()]);
    fleet.eventually(LONG, "only the newer Snapshot listed", || {
        let items = listed(&fleet)?;
        match short_ids(&items) == vec![new.clone()] {
            true => Ok(()),
            false => Err(format!("listed: {items:?}")),
        }
    });
    let (status, _) = fleet
        .get(&format!(
            "/apis/holdfast.dev/v1alpha1/namespaces/default/snapshots/{HOST}-local-{old}"
        ))
        .unwrap();
    assert_eq!(status, 404);
    if let Some(bin) = &kubectl {
        let table = kubectl_get(bin, &fleet, &["snapshots", "-l", "holdfast.dev/host=web-1"]);
        assert!(
            table.contains(&new) && !table.contains(&old),
            "after the forget:\n{table}"
        );
    }
    // The host's page lists the snapshot that is left.
    let (status, page) = fleet.get(&format!("/hosts/default/{HOST}")).unwrap();
    assert_eq!(status, 200);
    let row = |id: &str| format!("data-snapshot=\"{id}\"");
    assert!(
        page.contains(&row(&second)) && !page.contains(&row(&first)),
        "the host page lists the snapshot left"
    );
}

/// `holdfast plan DIR --data-dir … --output json ARGS` against the fleet's data directory.
fn plan(fleet: &Fleet, dir: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(holdfast_bin())
        .arg("plan")
        .arg(dir)
        .arg("--data-dir")
        .arg(&fleet.controller_data)
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "holdfast plan: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the `keep-one` forget once and waits for it to succeed.
fn back_up_forget(fleet: &Fleet) {
    fleet.write(
        "backups/forget-now.yaml",
        &backup_request_yaml("forget-now", "keep-one"),
    );
    fleet.eventually(LONG, "the forget to succeed", || {
        let b = fleet.backup("forget-now")?;
        match b.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Ok(()),
            Some(p @ ("Failed" | "PartiallyFailed")) => panic!("forget {p}: {b:#}"),
            other => Err(format!("phase {other:?}")),
        }
    });
}
