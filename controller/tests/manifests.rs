//! The Kubernetes install in `manifests/` as kustomize renders it, and the Argo CD health check
//! run by a real Lua interpreter. Both skip, saying so, when the tool is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

const NAMESPACE: &str = "holdfast-system";

const CRDS: [&str; 7] = [
    "repos.holdfast.dev",
    "hosts.holdfast.dev",
    "schedules.holdfast.dev",
    "backups.holdfast.dev",
    "restores.holdfast.dev",
    "notifiers.holdfast.dev",
    "snapshots.holdfast.dev",
];

/// Kinds that have no namespace.
const CLUSTER_SCOPED: [&str; 4] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
];

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The first directory on `PATH` holding `program`.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn name_of(object: &Value) -> String {
    format!(
        "{} {}",
        str_at(object, "/kind"),
        str_at(object, "/metadata/name")
    )
}

/// The one object of this kind and name.
fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| str_at(o, "/kind") == kind && str_at(o, "/metadata/name") == name)
        .collect();
    assert!(
        found.len() == 1,
        "expected exactly one {kind} {name} in the rendered install, found {}",
        found.len()
    );
    found[0]
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rules(role: &Value) -> &[Value] {
    role.get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

#[test]
fn kustomize_renders_the_install() {
    let Some(kubectl) = on_path("kubectl") else {
        eprintln!("SKIPPED: no kubectl on PATH to run `kubectl kustomize manifests`");
        return;
    };
    let dir = workspace().join("manifests");
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("cannot run kubectl");
    assert!(
        out.status.success(),
        "`kubectl kustomize {}` failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kubectl kustomize printed UTF-8");
    let objects: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("a rendered document parses"))
        .filter(|object| !object.is_null())
        .collect();

    // The CRDs come from ../crds.
    let crds: Vec<&str> = objects
        .iter()
        .filter(|o| str_at(o, "/kind") == "CustomResourceDefinition")
        .map(|o| str_at(o, "/metadata/name"))
        .collect();
    for crd in CRDS {
        assert!(
            crds.contains(&crd),
            "the CRD {crd} is missing; rendered CRDs: {crds:?}"
        );
    }

    // Everything namespaced is in the controller's namespace.
    find(&objects, "Namespace", NAMESPACE);
    for object in &objects {
        let kind = str_at(object, "/kind");
        let namespace = str_at(object, "/metadata/namespace");
        if CLUSTER_SCOPED.contains(&kind) {
            assert!(
                namespace.is_empty(),
                "{} is cluster-scoped but has namespace `{namespace}`",
                name_of(object)
            );
        } else {
            assert!(
                namespace == NAMESPACE,
                "{} is in namespace `{namespace}`, expected `{NAMESPACE}`",
                name_of(object)
            );
        }
    }

    // The controller runs locked down, with probes, in Kubernetes mode.
    let deployment = find(&objects, "Deployment", "holdfast-controller");
    assert_eq!(
        str_at(deployment, "/spec/template/spec/serviceAccountName"),
        "holdfast-controller",
        "the Deployment must run as the ServiceAccount the RBAC is bound to"
    );
    let container = deployment
        .pointer("/spec/template/spec/containers/0")
        .expect("the Deployment has a container");
    let security = container
        .get("securityContext")
        .expect("the container has a securityContext");
    for (field, expected) in [
        ("runAsNonRoot", true),
        ("readOnlyRootFilesystem", true),
        ("allowPrivilegeEscalation", false),
    ] {
        assert_eq!(
            security.get(field).and_then(Value::as_bool),
            Some(expected),
            "the container's securityContext.{field} must be {expected}"
        );
    }
    assert_eq!(
        strings(security.pointer("/capabilities/drop")),
        ["ALL"],
        "the container must drop all capabilities"
    );
    assert_eq!(
        str_at(container, "/livenessProbe/httpGet/path"),
        "/healthz",
        "the liveness probe must GET /healthz"
    );
    assert_eq!(
        str_at(container, "/readinessProbe/httpGet/path"),
        "/readyz",
        "the readiness probe must GET /readyz"
    );
    let args = strings(container.get("args"));
    assert!(
        args.contains(&"--kube"),
        "the controller must run with --kube; args: {args:?}"
    );
    // The root filesystem is read-only: the database must be on a volume.
    let data_dir = args
        .iter()
        .position(|a| *a == "--data-dir")
        .and_then(|i| args.get(i + 1))
        .expect("the controller is given --data-dir");
    let mounts = container
        .get("volumeMounts")
        .and_then(|m| m.as_array())
        .expect("volume mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m.get("mountPath").and_then(|p| p.as_str()) == Some(*data_dir)),
        "--data-dir {data_dir} must be a mounted volume"
    );

    // The ClusterRole: no Secrets, no wildcards.
    let cluster_role = find(&objects, "ClusterRole", "holdfast-controller");
    for rule in rules(cluster_role) {
        let resources = strings(rule.get("resources"));
        assert!(
            !resources.contains(&"secrets"),
            "the ClusterRole must grant nothing on secrets: {rule}"
        );
        for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                !strings(rule.get(field)).contains(&"*"),
                "the ClusterRole must not use `*` in {field}: {rule}"
            );
        }
    }

    // The Role in the controller's namespace: its Secrets and its Lease.
    let role = find(&objects, "Role", "holdfast-controller");
    let grants = |group: &str, resource: &str, verb: &str| {
        rules(role).iter().any(|rule| {
            strings(rule.get("apiGroups")).contains(&group)
                && strings(rule.get("resources")).contains(&resource)
                && strings(rule.get("verbs")).contains(&verb)
        })
    };
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(
            grants("", "secrets", verb),
            "the Role must grant `{verb}` on secrets"
        );
    }
    for verb in ["get", "create", "update"] {
        assert!(
            grants("coordination.k8s.io", "leases", verb),
            "the Role must grant `{verb}` on leases (leader election)"
        );
    }
    for rule in rules(role) {
        for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                !strings(rule.get(field)).contains(&"*"),
                "the Role must not use `*` in {field}: {rule}"
            );
        }
    }

    // Both bindings name the controller's ServiceAccount.
    find(&objects, "ServiceAccount", "holdfast-controller");
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        let binding = find(&objects, kind, "holdfast-controller");
        assert_eq!(
            binding.get("subjects"),
            Some(&json!([{
                "kind": "ServiceAccount",
                "name": "holdfast-controller",
                "namespace": NAMESPACE,
            }])),
            "the {kind} must bind the ServiceAccount holdfast-controller in {NAMESPACE}"
        );
    }
}

fn health_script() -> String {
    let path = workspace().join("manifests/argocd-health.lua");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A Lua expression for a JSON value: tables for objects and arrays, `nil` for null.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("[{}] = {}", lua_string(key), lua_literal(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the health check on `object` as Argo CD does (`obj` a global, the script's return
/// value the health) and returns `status|message`.
fn health(lua: &Path, script: &str, object: &Value) -> String {
    let harness = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nprint(hs.status .. \"|\" .. (hs.message or \"\"))",
        lua_literal(object)
    );
    let out = Command::new(lua)
        .arg("-e")
        .arg(harness)
        .output()
        .expect("cannot run the Lua interpreter");
    assert!(
        out.status.success(),
        "the health check failed on {object}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("the health check printed UTF-8")
        .trim_end()
        .to_string()
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    })
}

fn host(conditions: Option<Vec<Value>>) -> Value {
    let mut host = json!({
        "apiVersion": "holdfast.dev/v1alpha1",
        "kind": "Host",
        "metadata": {"name": "web-1", "namespace": "backups", "generation": 1},
        "spec": {"defaultRepo": "nas"},
    });
    if let Some(conditions) = conditions {
        host["status"] = json!({"observedGeneration": 1, "conditions": conditions});
    }
    host
}

fn run(kind: &str, status: Value) -> Value {
    json!({
        "apiVersion": "holdfast.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "nightly-web-1-29000000", "namespace": "backups", "generation": 1},
        "spec": {"host": "web-1", "schedule": "nightly"},
        "status": status,
    })
}

#[test]
fn argo_health_check_maps_conditions_and_phases() {
    let Some(lua) = ["lua5.4", "lua5.3", "lua"].into_iter().find_map(on_path) else {
        eprintln!("SKIPPED: no Lua interpreter (lua5.4, lua5.3 or lua) on PATH");
        return;
    };
    let script = health_script();
    let cases = [
        (
            "Host with Ready=True",
            host(Some(vec![
                condition("AgentConnected", "True", "Connected", "agent connected"),
                condition("Ready", "True", "Ready", "schedule version 3 applied"),
            ])),
            "Healthy|schedule version 3 applied",
        ),
        (
            "Host with Reconciling=True and Ready=False",
            host(Some(vec![
                condition(
                    "Reconciling",
                    "True",
                    "AwaitingAck",
                    "waiting for the agent to ack version 4",
                ),
                condition("Ready", "False", "AwaitingAck", "not in sync"),
            ])),
            "Progressing|waiting for the agent to ack version 4",
        ),
        (
            "Host with Stalled=True",
            host(Some(vec![
                condition(
                    "Stalled",
                    "True",
                    "AgentRejected",
                    "the agent rejected version 4: unknown operation",
                ),
                condition("Ready", "False", "AgentRejected", "not in sync"),
            ])),
            "Degraded|the agent rejected version 4: unknown operation",
        ),
        (
            "Host with Ready=False only",
            host(Some(vec![condition(
                "Ready",
                "False",
                "AgentOffline",
                "the agent is offline",
            )])),
            "Degraded|the agent is offline",
        ),
        (
            "Host without status",
            host(None),
            "Progressing|Waiting for the controller",
        ),
        (
            "Notifier whose deliveries fail",
            json!({
                "apiVersion": "holdfast.dev/v1alpha1",
                "kind": "Notifier",
                "metadata": {"name": "ops", "namespace": "backups", "generation": 1},
                "spec": {"ntfy": {"url": "https://ntfy.sh/backups"}},
                "status": {"observedGeneration": 1, "conditions": [condition(
                    "Ready",
                    "False",
                    "DeliveryFailing",
                    "delivery failed (3 attempts so far; retried with backoff): cannot reach ntfy.sh",
                )]},
            }),
            "Degraded|delivery failed (3 attempts so far; retried with backoff): cannot reach ntfy.sh",
        ),
        (
            "Backup Succeeded",
            run(
                "Backup",
                json!({"phase": "Succeeded", "message": "snapshot 1a2b3c4d saved"}),
            ),
            "Healthy|snapshot 1a2b3c4d saved",
        ),
        (
            "Backup Failed with a message",
            run(
                "Backup",
                json!({"phase": "Failed", "reason": "PreHookFailed", "message": "pre-hook `pg_dump` exited with 1"}),
            ),
            "Degraded|pre-hook `pg_dump` exited with 1",
        ),
        (
            "Restore Missed with only a reason",
            run("Restore", json!({"phase": "Missed", "reason": "AgentDown"})),
            "Degraded|AgentDown",
        ),
        (
            "Backup Running",
            run("Backup", json!({"phase": "Running"})),
            "Progressing|Running",
        ),
        (
            "Backup Skipped",
            run(
                "Backup",
                json!({"phase": "Skipped", "reason": "StillRunning"}),
            ),
            "Suspended|StillRunning",
        ),
    ];
    for (what, object, expected) in cases {
        let actual = health(&lua, &script, &object);
        assert_eq!(
            actual, expected,
            "{what}: expected health `{expected}`, got `{actual}`"
        );
    }
}

#[test]
fn argo_cm_example_embeds_the_health_script_for_every_kind() {
    let script = health_script();
    let path = workspace().join("manifests/argocd-cm.example.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let config_map: Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
    for kind in ["Repo", "Host", "Schedule", "Backup", "Restore", "Notifier"] {
        let key = format!("resource.customizations.health.holdfast.dev_{kind}");
        let embedded = config_map
            .pointer(&format!("/data/{key}"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{} has no key {key}", path.display()));
        assert!(
            embedded.trim_end() == script.trim_end(),
            "{key} in {} differs from manifests/argocd-health.lua: paste the script again",
            path.display()
        );
    }
}
