//! The `holdfast` binary as CI and operators run it: exit codes, exact output, golden files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use holdfast::compile::compile;
use holdfast::crds;
use holdfast::resources::Kind;
use holdfast::source::files::load_dir;
use holdfast::store::Store;
use holdfast::versions::assign;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `holdfast` from the repository root, so that paths print as people type them.
fn holdfast(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Compares with a golden file; `HOLDFAST_UPDATE_GOLDEN=1` rewrites it instead.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("HOLDFAST_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs; review and rerun with HOLDFAST_UPDATE_GOLDEN=1 if the change is intended.\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn validate_accepts_the_example_fleet_with_one_line() {
    let out = holdfast(&["validate", "examples/fleet"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(
        stdout(&out),
        "examples/fleet: valid: 2 repos, 4 hosts, 6 schedules, 0 backups, 0 restores, 2 notifiers in 12 files\n"
    );
}

#[test]
fn validate_lists_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/fleet"), dir.path());
    std::fs::write(
        dir.path().join("schedules/broken.yaml"),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: hourly\nspec:\n  operation: forget\n  cron: '0 * * *'\n  hosts: [web-1]\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("hosts/web-1.yaml"), "kind: [\n").unwrap();
    let out = holdfast(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let root = dir.path().display();
    assert_eq!(
        stdout(&out),
        format!(
            "{root}/hosts/web-1.yaml:2:1: YAML syntax error: did not find expected node content, while parsing a flow node\n\
             {root}/schedules/broken.yaml:5:1: Schedule/hourly: spec.retention: a forget schedule needs a retention policy (keepLast, keepDaily, …)\n\
             {root}/schedules/broken.yaml:7:3: Schedule/hourly: spec.cron: `0 * * *` has 4 fields; expected 5 (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a macro such as @daily\n\
             {root}/schedules/broken.yaml:8:11: Schedule/hourly: spec.hosts[0]: no Host `web-1` in namespace `default`\n"
        )
    );
}

#[test]
fn validate_and_plan_refuse_a_missing_directory() {
    for cmd in ["validate", "plan"] {
        let out = holdfast(&[cmd, "no/such/dir"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("holdfast: cannot read directory no/such/dir: "),
            "{err}"
        );
    }
}

#[test]
fn plan_of_the_example_fleet_matches_the_golden_file() {
    let out = holdfast(&["plan", "examples/fleet"]);
    assert!(out.status.success());
    let text = stdout(&out);
    golden("plan-examples-fleet.txt", &text);
    // Deterministic: the same bytes every time.
    assert_eq!(stdout(&holdfast(&["plan", "examples/fleet"])), text);
}

#[test]
fn plan_against_a_data_directory_shows_versions_and_field_changes() {
    let fleet_dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/fleet"), fleet_dir.path());
    let data = tempfile::tempdir().unwrap();

    // What the controller applied: the example fleet at version 1.
    let applied = compile(&load_dir(fleet_dir.path()).unwrap().revision).unwrap();
    let mut store = Store::open(data.path()).unwrap();
    store
        .record(&applied, &assign(&Default::default(), &applied))
        .unwrap();
    drop(store);

    // The pull request: db-offsite moves, and web-2 is decommissioned.
    let path = fleet_dir.path().join("schedules/db-offsite.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("0 3 * * *", "15 3 * * 1-5")).unwrap();
    std::fs::remove_file(fleet_dir.path().join("hosts/web-2.yaml")).unwrap();

    let out = holdfast(&[
        "plan",
        fleet_dir.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        "Host build-1: v1 (unchanged)\n\
         Host db-1: v1 -> v2\n  \
         ~ schedule db-offsite (backup)\n      \
         cron: \"0 3 * * *\" -> \"15 3 * * 1-5\"\n\
         Host web-1: v1 (unchanged)\n\
         Host web-2: removed (stays at v1; its agent keeps its last schedule)\n\
         \n3 hosts: 0 new, 1 changed, 2 unchanged, 1 removed\n"
    );
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = holdfast(&["--version"]);
    assert!(out.status.success());
    let commit = env!("HOLDFAST_COMMIT");
    assert_eq!(
        stdout(&out).trim(),
        format!("holdfast {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
    // Built from a git checkout (as every test run is), the commit is known.
    assert_ne!(commit, "unknown");
}

#[test]
fn crds_print_every_kind_and_match_the_checked_in_files() {
    let out = holdfast(&["crds"]);
    assert!(out.status.success());
    let printed = stdout(&out);
    let mut from_files = Vec::new();
    for kind in Kind::ALL {
        let path = repo_root().join("crds").join(crds::file_name(kind));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crds::crd_yaml(kind).unwrap(),
            "{} is out of date: run `cargo run -p holdfast -- crds --out-dir crds`",
            path.display()
        );
        from_files.push(on_disk);
    }
    assert_eq!(printed, from_files.join("---\n"));
}

#[test]
fn plan_refuses_a_data_directory_without_a_database() {
    let empty = tempfile::tempdir().unwrap();
    let out = holdfast(&[
        "plan",
        "examples/fleet",
        "--data-dir",
        empty.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "holdfast: {} holds no Holdfast database; leave out --data-dir to plan every host from version 1\n",
            empty.path().display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn symlinked_directories_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/fleet"), dir.path());
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("up")).unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.files, 12);
}

#[test]
fn kube_mode_without_a_cluster_says_where_it_looked_and_files_flags_do_not_mix() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args([
            "controller",
            "--kube",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Kubernetes API server")
            && stderr.contains("/nonexistent/kubeconfig")
            && stderr.contains("service account"),
        "{stderr}"
    );

    let out = holdfast(&["controller", "--kube", "--config-dir", "examples/fleet"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let out = holdfast(&["controller", "--data-dir", "/tmp"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(2) && stderr.contains("--config-dir"),
        "{stderr}"
    );
}

/// `token create --kube` against a stand-in API server on loopback (no cluster runs here): one
/// POST of a Secret in the controller's namespace, holding the token's hash and never the token.
#[test]
fn token_create_kube_stores_only_the_tokens_hash_in_a_secret() {
    use std::sync::{Arc, Mutex};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let seen: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let recorded = seen.clone();
    let app =
        axum::Router::new()
            .route(
                "/api/v1/namespaces/{namespace}/secrets",
                axum::routing::post(
                    move |axum::extract::Path(namespace): axum::extract::Path<String>,
                          axum::Json(body): axum::Json<serde_json::Value>| async move {
                        recorded.lock().unwrap().push((namespace, body.clone()));
                        (axum::http::StatusCode::CREATED, axum::Json(body))
                    },
                ),
            )
            // Only fleet/web-1 is declared.
            .route(
                "/apis/holdfast.dev/v1alpha1/namespaces/{namespace}/hosts/{name}",
                axum::routing::get(
                    |axum::extract::Path((namespace, name)): axum::extract::Path<(
                        String,
                        String,
                    )>| async move {
                        if (namespace.as_str(), name.as_str()) == ("fleet", "web-1") {
                            let host = serde_json::json!({
                                "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
                                "metadata": {"name": name, "namespace": namespace},
                                "spec": {}
                            });
                            (axum::http::StatusCode::OK, axum::Json(host))
                        } else {
                            let status = serde_json::json!({
                                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404,
                                "message": format!("hosts.holdfast.dev \"{name}\" not found")
                            });
                            (axum::http::StatusCode::NOT_FOUND, axum::Json(status))
                        }
                    },
                ),
            );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\ncontexts: [{{name: c, context: {{cluster: c}}}}]\ncurrent-context: c\nusers: []\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["token", "create", "web-1", "--kube", "--namespace", "fleet"])
        .args(["--controller-namespace", "ops-system", "--ttl", "10m"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let token = stdout(&out).trim().to_string();
    assert!(
        token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "the token alone on stdout: {token:?}"
    );
    assert!(stderr.contains("fleet/web-1"), "{stderr}");

    // A host that is not declared there gets no token.
    for (host, namespace) in [("web-9", "fleet"), ("web-1", "default")] {
        let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
            .args(["token", "create", host, "--kube", "--namespace", namespace])
            .args(["--controller-namespace", "ops-system"])
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "host {host} is not declared in namespace {namespace}"
            )),
            "{stderr}"
        );
        assert!(stdout(&out).is_empty(), "no token printed");
    }

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (namespace, secret) = &seen[0];
    assert_eq!(namespace, "ops-system");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "holdfast.dev/enrollment-token");
    assert_eq!(secret["metadata"]["labels"]["holdfast.dev/host"], "web-1");
    assert_eq!(secret["stringData"]["namespace"], "fleet");
    assert_eq!(
        secret["stringData"]["hash"],
        holdfast::store::secret_hash(&token)
    );
    assert!(
        !secret.to_string().contains(&token),
        "the token is not stored: {secret}"
    );
}

#[test]
fn validate_kube_checks_the_kubernetes_manifests_and_leaves_other_kinds_out() {
    let out = holdfast(&["validate", "--kube", "examples/kubernetes"]);
    assert_eq!(
        stdout(&out),
        "examples/kubernetes: valid: 2 repos, 4 hosts, 6 schedules, 0 backups, 0 restores, 1 notifier in 5 files\n"
    );
    assert!(out.status.success());

    // The same manifests in files mode: Secrets are not available there.
    let files = holdfast(&["validate", "examples/kubernetes"]);
    assert_eq!(files.status.code(), Some(1));
    assert!(stdout(&files).contains("Kubernetes Secrets are not available in files mode"));

    // A broken manifest names its file, line and field, and a foreign kind stays out of it.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/kubernetes"), dir.path());
    let hosts = dir.path().join("hosts.yaml");
    let text = std::fs::read_to_string(&hosts).unwrap();
    std::fs::write(
        &hosts,
        text.replacen("defaultRepo: nas", "defaultRepo: nass", 1),
    )
    .unwrap();
    let broken = holdfast(&["validate", "--kube", dir.path().to_str().unwrap()]);
    assert_eq!(broken.status.code(), Some(1));
    let text = stdout(&broken);
    assert!(text.contains("hosts.yaml:"), "{text}");
    assert!(text.contains("spec.defaultRepo"), "{text}");
    assert!(!text.contains("00-namespace.yaml"), "{text}");
}

/// Runs `holdfast` in `dir`, so that paths print relative to it as in a CI checkout.
fn holdfast_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// A copy of the example fleet at `fleet/` in a temporary checkout, with broken files: a bad
/// cron, a forget schedule without retention, an unknown host, a bad read subset (its message
/// quotes a `%`) and a YAML syntax error.
fn broken_checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fleet = dir.path().join("fleet");
    copy_dir(&repo_root().join("examples/fleet"), &fleet);
    std::fs::write(
        fleet.join("schedules/broken.yaml"),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: hourly\nspec:\n  operation: forget\n  cron: '61 25 * * *'\n  hosts: [web-9]\n",
    )
    .unwrap();
    let check = fleet.join("schedules/monthly-check.yaml");
    let text = std::fs::read_to_string(&check).unwrap();
    std::fs::write(&check, text.replace("10%", "150%")).unwrap();
    std::fs::write(fleet.join("hosts/web-1.yaml"), "kind: [\n").unwrap();
    dir
}

#[test]
fn validate_format_github_prints_one_annotation_line_per_finding() {
    let dir = broken_checkout();
    let text_out = holdfast_in(dir.path(), &["validate", "fleet"]);
    let out = holdfast_in(dir.path(), &["validate", "fleet", "--format", "github"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    golden("validate-broken-github.txt", &text);
    // One annotation per finding of the text form, each on one line, then the summary.
    let findings = stdout(&text_out).lines().count();
    let annotations: Vec<&str> = text.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(annotations.len(), findings, "{text}");
    assert!(
        annotations
            .iter()
            .all(|l| l.starts_with("::error file=fleet/") && l.contains(",line=")),
        "{text}"
    );
    // `--output` is the same flag.
    assert_eq!(
        stdout(&holdfast_in(
            dir.path(),
            &["validate", "fleet", "--output", "github"]
        )),
        text
    );
}

#[test]
fn validate_format_json_lists_the_findings_and_the_verdict() {
    let dir = broken_checkout();
    let out = holdfast_in(dir.path(), &["validate", "fleet", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    golden("validate-broken.json", &text);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["valid"], false);
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert_eq!(report["errors"], diagnostics.len());

    let ok = holdfast(&["validate", "examples/fleet", "--format", "json"]);
    assert!(ok.status.success());
    let report: serde_json::Value = serde_json::from_str(&stdout(&ok)).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["diagnostics"], serde_json::json!([]));
}

#[test]
fn plan_of_the_example_fleet_as_json_and_markdown_matches_the_golden_files() {
    let json = holdfast(&["plan", "examples/fleet", "--output", "json"]);
    assert!(json.status.success());
    golden("plan-examples-fleet.json", &stdout(&json));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(plan["formatVersion"], 1);
    let hosts = plan["hosts"].as_array().unwrap();
    assert_eq!(plan["summary"]["new"], hosts.len());
    // The cron as written in examples/fleet/schedules/nightly.yaml, not the agent's form.
    let nightly =
        std::fs::read_to_string(repo_root().join("examples/fleet/schedules/nightly.yaml")).unwrap();
    let cron = hosts[0]["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "nightly")
        .and_then(|s| s["fields"].as_array())
        .and_then(|f| f.iter().find(|f| f["field"] == "cron"))
        .and_then(|f| f["after"].as_str())
        .unwrap()
        .to_string();
    assert!(
        nightly.contains(&format!("cron: \"{cron}\""))
            || nightly.contains(&format!("cron: '{cron}'")),
        "{cron}"
    );

    let markdown = holdfast(&["plan", "examples/fleet", "--output", "markdown"]);
    assert!(markdown.status.success());
    golden("plan-examples-fleet.md", &stdout(&markdown));
}

#[test]
fn plan_markdown_and_json_show_a_change_against_a_data_directory() {
    let fleet_dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("examples/fleet"), fleet_dir.path());
    let data = tempfile::tempdir().unwrap();
    let loaded = load_dir(fleet_dir.path()).unwrap();
    let applied = compile(&loaded.revision).unwrap();
    let mut store = Store::open(data.path()).unwrap();
    store
        .record(&applied, &assign(&Default::default(), &applied))
        .unwrap();
    // The controller keeps the applied revision's resources: their crons as written.
    let path = fleet_dir.path().join("schedules/db-offsite.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let written = text.replace("0 3 * * *", "0 3 * * 0-6");
    std::fs::write(&path, &written).unwrap();
    let revision = load_dir(fleet_dir.path()).unwrap().revision;
    store
        .record_revision(None, false, "", &[], Some(&revision), chrono::Utc::now())
        .unwrap();
    drop(store);

    // The pull request moves db-offsite and decommissions web-2.
    std::fs::write(&path, text.replace("0 3 * * *", "15 3 * * 1-5")).unwrap();
    std::fs::remove_file(fleet_dir.path().join("hosts/web-2.yaml")).unwrap();
    let plan = |output: &str| {
        let out = holdfast(&[
            "plan",
            fleet_dir.path().to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--output",
            output,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    };
    let markdown = plan("markdown");
    golden("plan-change.md", &markdown);
    assert!(
        markdown.contains("cron: \"0 3 * * 0-6\" -> \"15 3 * * 1-5\""),
        "{markdown}"
    );
    let json = plan("json");
    golden("plan-change.json", &json);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let db = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "db-1")
        .unwrap();
    assert_eq!(
        (db["fromVersion"].as_u64(), db["toVersion"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(db["status"], "changed");
}

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let subcommands = [
        "crds",
        "validate",
        "plan",
        "controller",
        "token",
        "completions",
        "man",
    ];
    let bash = holdfast(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = stdout(&bash);
    for sub in subcommands {
        assert!(script.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish"] {
        let out = holdfast(&["completions", shell]);
        assert!(
            out.status.success() && stdout(&out).contains("validate"),
            "{shell}"
        );
    }
    let man = stdout(&holdfast(&["man"]));
    assert!(man.starts_with(".ie") || man.contains("\n.TH "), "{man}");
    assert!(man.contains(".TH holdfast"), "{man}");
    for sub in subcommands {
        assert!(man.contains(sub), "the man page lacks {sub}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = holdfast(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let page = std::fs::read_to_string(dir.path().join("holdfast-plan.1")).unwrap();
    assert!(page.contains("\\-\\-output"), "{page}");
}

/// The flags in a `--help` text whose help says nothing but `[env: …]` or `[default: …]`.
fn flags_without_help(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let flag_line = line.trim_start();
        if !flag_line.starts_with('-') {
            continue;
        }
        let indent = line.len() - flag_line.len();
        let (flag, same_line) = flag_line.split_once("  ").unwrap_or((flag_line, ""));
        // Help goes after the flag, or on the further-indented lines below it.
        let mut text = same_line.to_string();
        for next in &lines[i + 1..] {
            let trimmed = next.trim_start();
            if trimmed.is_empty() || next.len() - trimmed.len() <= indent {
                break;
            }
            text.push_str(trimmed);
        }
        let mut words = String::new();
        let mut depth = 0;
        for c in text.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if depth == 0 => words.push(c),
                _ => {}
            }
        }
        if words.trim().is_empty() {
            missing.push(flag.to_string());
        }
    }
    missing
}

#[test]
fn every_flag_has_help_text() {
    for args in [
        &[][..],
        &["crds"],
        &["validate"],
        &["plan"],
        &["controller"],
        &["token", "create"],
        &["completions"],
        &["man"],
    ] {
        let out = holdfast(&[args, &["--help"]].concat());
        assert!(out.status.success());
        let help = stdout(&out);
        assert!(help.contains("--help"), "{help}");
        let missing = flags_without_help(&help);
        assert!(missing.is_empty(), "holdfast {args:?}: {missing:?}\n{help}");
    }
}

#[test]
fn every_agent_flag_has_help_text() {
    for args in [&[][..], &["enroll"], &["run"], &["completions"], &["man"]] {
        let out = Command::new(common::fleet::agent_bin())
            .args([args, &["--help"]].concat())
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = stdout(&out);
        assert!(help.contains("--help"), "{help}");
        let missing = flags_without_help(&help);
        assert!(
            missing.is_empty(),
            "holdfast-agent {args:?}: {missing:?}\n{help}"
        );
    }
}
