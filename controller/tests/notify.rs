//! Notifications end to end: a real controller, agent and restic, and real receivers on
//! loopback started by the tests: an HTTP receiver here (webhook and ntfy), Debian's
//! `prometheus-alertmanager`, and an SMTP server from Debian's `python3-aiosmtpd` (both
//! installed by scripts/test; a missing one fails the test). Alerts fire once when their
//! condition starts and resolve when it ends; a receiver that is down gets each message once
//! when it comes back, a controller restart in between.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::fleet::*;
use common::receiver::{Received, Receiver};
use serde_json::Value;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const PYTHON: &str = "/usr/bin/python3";
/// Staleness and resolution wait for a schedule's runs and the status writer's 30 s steps.
const SLOW: Duration = Duration::from_secs(180);
/// The signing key of the webhook, as its Notifier reads it from a file.
const SIGNING_KEY: &str = "webhook-signing-key";

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (apt-get install {package})"
    );
}

/// The fleet, its controller restarted with links in messages pointing at it.
fn fleet() -> Fleet {
    let mut fleet = Fleet::start();
    fleet.controller_args = vec!["--external-url".into(), fleet.url("")];
    fleet.restart_controller();
    fleet.wait_in_sync(HOST);
    fleet
}

/// A schedule `broken` whose backup fails (its path does not exist), and a run of it now.
fn fail_a_run(fleet: &Fleet, request: &str) {
    fleet.write(
        "schedules/broken.yaml",
        &schedule_yaml("broken", QUIET_CRON, &fleet.root.join("nowhere"), ""),
    );
    fleet.write(
        &format!("requests/{request}.yaml"),
        &backup_request_yaml(request, "broken"),
    );
    wait_for_phase(fleet, request, "Failed");
}

/// `broken` backs up the data directory again, and a run of it now succeeds.
fn mend_the_run(fleet: &Fleet, request: &str) {
    fleet.write(
        "schedules/broken.yaml",
        &schedule_yaml("broken", QUIET_CRON, &fleet.data, ""),
    );
    fleet.write(
        &format!("requests/{request}.yaml"),
        &backup_request_yaml(request, "broken"),
    );
    wait_for_phase(fleet, request, "Succeeded");
}

fn wait_for_phase(fleet: &Fleet, backup: &str, phase: &str) {
    fleet.eventually(LONG, &format!("Backup {backup} to be {phase}"), || {
        let b = fleet.backup(backup)?;
        match b.pointer("/status/phase").and_then(Value::as_str) {
            Some(p) if p == phase => Ok(()),
            _ => Err(format!("status: {}", b["status"])),
        }
    });
}

/// The Notifier `name` as the controller's API shows it.
fn notifier(fleet: &Fleet, name: &str) -> Result<Value, String> {
    fleet.api(&format!("/api/v1/notifiers/default/{name}"))
}

/// Waits until `receiver` took `count` requests at `path`; returns them.
fn requests(
    fleet: &Fleet,
    receiver: &Receiver,
    path: &str,
    count: usize,
    what: &str,
) -> Vec<Received> {
    fleet.eventually(SLOW, what, || {
        let got = receiver.at(path);
        if got.len() >= count {
            Ok(got)
        } else {
            Err(format!(
                "{} requests: {:?}",
                got.len(),
                got.iter().map(Received::text).collect::<Vec<_>>()
            ))
        }
    })
}

#[test]
fn a_failed_run_fires_once_on_a_signed_webhook_and_on_ntfy_and_resolves_when_a_run_succeeds() {
    let fleet = fleet();
    let port = free_port();
    let receiver = Receiver::on(port);
    let key_file = fleet.root.join("webhook.key");
    let token_file = fleet.root.join("ntfy.token");
    fs::write(&key_file, format!("{SIGNING_KEY}\n")).unwrap();
    fs::write(&token_file, "tk_ntfy_token\n").unwrap();
    fleet.write(
        "notifiers.yaml",
        &format!(
            "\
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: hook
spec:
  webhook:
    url: http://127.0.0.1:{port}/hook
    signingSecret:
      file: {}
  events: [RunFailed]
---
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: phone
spec:
  ntfy:
    url: http://127.0.0.1:{port}/backups
    token:
      file: {}
  events: [RunFailed, RunPartiallyFailed]
",
            key_file.display(),
            token_file.display()
        ),
    );
    fleet.eventually(LONG, "the notifiers in force", || {
        notifier(&fleet, "hook")
            .and(notifier(&fleet, "phone"))
            .map(|_| ())
    });

    fail_a_run(&fleet, "fail-1");
    let hooks = requests(&fleet, &receiver, "/hook", 1, "the webhook to fire");
    let fired = &hooks[0];
    let body = fired.json();
    assert_eq!(body["status"], "firing", "{body:#}");
    assert_eq!(body["event"], "RunFailed", "{body:#}");
    assert_eq!(body["severity"], "warning", "{body:#}");
    assert_eq!(body["host"], HOST, "{body:#}");
    assert_eq!(body["schedule"], "broken", "{body:#}");
    assert_eq!(body["run"], "fail-1", "{body:#}");
    assert_eq!(body["notifier"], "default/hook", "{body:#}");
    assert_eq!(
        body["title"], "[FIRING] RunFailed: broken on web-1",
        "{body:#}"
    );
    assert_eq!(body["url"], fleet.url("/runs/default/fail-1"), "{body:#}");
    let failure = fleet.backup("fail-1").unwrap();
    assert_eq!(
        body["reason"], failure["status"]["message"],
        "the reason is what the run said"
    );
    assert!(
        body["summary"]
            .as_str()
            .is_some_and(|s| s.contains("broken") && s.contains(HOST)),
        "{body:#}"
    );
    assert_eq!(
        fired.header("x-holdfast-signature"),
        fired.signature(SIGNING_KEY),
        "the signature is the HMAC-SHA256 of the body under the key"
    );
    assert_eq!(fired.header("x-holdfast-event"), "RunFailed");
    assert_eq!(fired.header("content-type"), "application/json");

    let pushes = requests(&fleet, &receiver, "/backups", 1, "ntfy to fire");
    let push = &pushes[0];
    assert_eq!(push.header("title"), "[FIRING] RunFailed: broken on web-1");
    assert_eq!(
        push.header("priority"),
        "4",
        "a warning is high, not urgent"
    );
    assert!(
        push.header("tags").starts_with("warning,"),
        "{:?}",
        push.headers
    );
    assert_eq!(push.header("click"), fleet.url("/runs/default/fail-1"));
    assert_eq!(push.header("authorization"), "Bearer tk_ntfy_token");
    assert!(push.text().contains("failed"), "{}", push.text());

    // Another failure of the same schedule: the alert holds, nothing new is sent.
    fleet.write(
        "requests/fail-2.yaml",
        &backup_request_yaml("fail-2", "broken"),
    );
    wait_for_phase(&fleet, "fail-2", "Failed");
    let status = fleet.eventually(LONG, "the notifier's status", || {
        let hook = notifier(&fleet, "hook")?;
        match hook["status"]["lastDelivery"]["message"].as_str() {
            Some("[FIRING] RunFailed: broken on web-1") => Ok(hook["status"].clone()),
            _ => Err(hook.to_string()),
        }
    });
    assert_eq!(status["firing"], 1, "{status:#}");
    assert_eq!(status["queued"], 0, "{status:#}");
    assert_eq!(status["conditions"][0]["type"], "Ready", "{status:#}");
    assert_eq!(status["conditions"][0]["status"], "True", "{status:#}");

    mend_the_run(&fleet, "ok-1");
    let hooks = requests(&fleet, &receiver, "/hook", 2, "the webhook to resolve");
    let statuses: Vec<Value> = hooks.iter().map(|h| h.json()["status"].clone()).collect();
    assert_eq!(statuses, ["firing", "resolved"], "once each, in order");
    let resolved = hooks[1].json();
    assert_eq!(resolved["key"], body["key"]);
    assert_eq!(
        hooks[1].header("x-holdfast-signature"),
        hooks[1].signature(SIGNING_KEY)
    );
    let pushes = requests(&fleet, &receiver, "/backups", 2, "ntfy to resolve");
    assert_eq!(pushes.len(), 2, "once each");
    assert_eq!(
        pushes[1].header("title"),
        "[RESOLVED] RunFailed: broken on web-1"
    );
    assert_eq!(pushes[1].header("priority"), "3");
    assert!(pushes[1].header("tags").starts_with("white_check_mark,"));

    // The status writer takes in the last delivery a moment after it.
    fleet.eventually(LONG, "the deliveries in /metrics", || {
        let (_, metrics) = fleet.get("/metrics")?;
        for sample in [
            "holdfast_notifications_sent_total{namespace=\"default\",notifier=\"hook\",status=\"firing\"} 1",
            "holdfast_notifications_sent_total{namespace=\"default\",notifier=\"hook\",status=\"resolved\"} 1",
            "holdfast_notifications_firing{namespace=\"default\",notifier=\"hook\"} 0",
            "holdfast_notifications_queued{namespace=\"default\",notifier=\"phone\"} 0",
        ] {
            if !metrics.contains(sample) {
                return Err(format!("no `{sample}` in:\n{metrics}"));
            }
        }
        Ok(())
    });
}

#[test]
fn a_receiver_that_is_down_through_a_controller_restart_gets_each_message_once_when_it_is_back() {
    let mut fleet = fleet();
    let port = free_port();
    fleet.write(
        "notifiers.yaml",
        &format!(
            "\
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: hook
spec:
  webhook:
    url: http://127.0.0.1:{port}/hook
  events: [RunFailed]
"
        ),
    );
    fleet.eventually(LONG, "the notifier in force", || {
        notifier(&fleet, "hook").map(|_| ())
    });
    fail_a_run(&fleet, "fail-1");

    // Nobody listens: the message waits, and the status and metrics say why.
    let failing = |fleet: &Fleet| {
        fleet.eventually(LONG, "the delivery to fail", || {
            let hook = notifier(fleet, "hook")?;
            let status = &hook["status"];
            let error = status["lastError"]["message"].as_str().unwrap_or("");
            if status["queued"] == 1 && error.contains("127.0.0.1") {
                Ok(status.clone())
            } else {
                Err(hook.to_string())
            }
        })
    };
    let status = failing(&fleet);
    assert_eq!(status["firing"], 1, "{status:#}");
    assert_eq!(status["conditions"][0]["status"], "False", "{status:#}");
    assert_eq!(
        status["conditions"][0]["reason"], "DeliveryFailing",
        "{status:#}"
    );
    let (_, metrics) = fleet.get("/metrics").unwrap();
    assert!(
        metrics
            .contains("holdfast_notifications_failing{namespace=\"default\",notifier=\"hook\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "holdfast_notifications_failed_total{namespace=\"default\",notifier=\"hook\"} "
        )),
        "{metrics}"
    );

    // The controller restarts while the receiver is still down: the message is kept.
    fleet.restart_controller();
    fleet.wait_in_sync(HOST);
    failing(&fleet);

    let receiver = Receiver::on(port);
    let hooks = requests(
        &fleet,
        &receiver,
        "/hook",
        1,
        "the message once the receiver is back",
    );
    assert_eq!(hooks[0].json()["status"], "firing");
    fleet.eventually(LONG, "the notifier to recover", || {
        let hook = notifier(&fleet, "hook")?;
        let status = &hook["status"];
        if status["queued"] == 0
            && status["conditions"][0]["status"] == "True"
            && status.get("lastError").is_none()
        {
            Ok(())
        } else {
            Err(hook.to_string())
        }
    });

    // Messages go in order: once the resolution is there, the firing came exactly once, and
    // the restart fired nothing again.
    mend_the_run(&fleet, "ok-1");
    let hooks = requests(&fleet, &receiver, "/hook", 2, "the resolution");
    let statuses: Vec<Value> = hooks.iter().map(|h| h.json()["status"].clone()).collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    assert_ne!(
        hooks[0].header("x-holdfast-delivery"),
        hooks[1].header("x-holdfast-delivery")
    );
}

/// Debian's Alertmanager on a loopback port, routing everything to a receiver that does
/// nothing; killed when dropped.
struct Alertmanager {
    url: String,
    _proc: Proc,
}

impl Alertmanager {
    fn start(dir: &Path) -> Alertmanager {
        require(ALERTMANAGER, "prometheus-alertmanager");
        let config = dir.join("alertmanager.yml");
        fs::write(
            &config,
            "route:\n  receiver: nowhere\n  group_wait: 1s\nreceivers:\n  - name: nowhere\n",
        )
        .unwrap();
        let port = free_port();
        let mut command = Command::new(ALERTMANAGER);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.join("alertmanager-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=");
        Alertmanager {
            url: format!("http://127.0.0.1:{port}"),
            _proc: Proc::spawn("alertmanager", &mut command, &dir.join("alertmanager.log")),
        }
    }

    /// The alerts Alertmanager holds active now.
    fn alerts(&self) -> Result<Vec<Value>, String> {
        let http = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build(),
        );
        let mut response = http
            .get(format!("{}/api/v2/alerts", self.url))
            .call()
            .map_err(|e| format!("GET /api/v2/alerts: {e}"))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }
}

/// An SMTP server from Debian's aiosmtpd, on STARTTLS or implicit TLS with the given
/// certificate, that requires a login and writes every mail it takes to `<dir>/<n>.json`
/// (sender, recipients, the user who logged in, whether it came over TLS, the message).
const SMTP_SERVER: &str = r#"
import json, os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out, user, password_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
mode, cert, key = sys.argv[5], sys.argv[6], sys.argv[7]
password = open(password_file).read().strip()
context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)

class Keep:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        mail = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "user": session.login_data.decode() if session.login_data else None,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        with open(os.path.join(out, f".{n}.tmp"), "w") as f:
            json.dump(mail, f)
        os.rename(os.path.join(out, f".{n}.tmp"), os.path.join(out, f"{n}.json"))
        return "250 OK"

def login(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
          and auth_data.password == password.encode())
    return AuthResult(success=ok, auth_data=auth_data if ok else None)

if mode == "starttls":
    smtp = Controller(Keep(), hostname="127.0.0.1", port=port, authenticator=login,
                      auth_required=True, tls_context=context, require_starttls=True)
else:
    smtp = Controller(Keep(), hostname="127.0.0.1", port=port, authenticator=login,
                      auth_required=True, auth_require_tls=False, ssl_context=context)
smtp.start()
while True:
    time.sleep(3600)
"#;

struct Smtp {
    port: u16,
    mails: PathBuf,
    _proc: Proc,
}

impl Smtp {
    fn start(dir: &Path, mode: &str, user: &str, password_file: &Path) -> Smtp {
        require(PYTHON, "python3");
        let check = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "aiosmtpd is missing: install Debian's python3-aiosmtpd (apt-get install python3-aiosmtpd)"
        );
        let script = dir.join("smtp_server.py");
        fs::write(&script, SMTP_SERVER).unwrap();
        let tls = test_certificates(dir);
        let mails = dir.join(format!("mails-{mode}"));
        fs::create_dir_all(&mails).unwrap();
        let port = free_port();
        let mut command = Command::new(PYTHON);
        command
            .arg(&script)
            .arg(port.to_string())
            .arg(&mails)
            .arg(user)
            .arg(password_file)
            .arg(mode)
            .arg(&tls.cert)
            .arg(&tls.key);
        Smtp {
            port,
            _proc: Proc::spawn(
                "smtp server",
                &mut command,
                &dir.join(format!("smtp-{mode}.log")),
            ),
            mails,
        }
    }

    /// The mails taken so far, in order.
    fn mails(&self) -> Vec<Value> {
        let mut found: Vec<(usize, Value)> = fs::read_dir(&self.mails)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_suffix(".json")?.parse().ok()?;
                Some((
                    n,
                    serde_json::from_str(&fs::read_to_string(e.path()).ok()?).ok()?,
                ))
            })
            .collect();
        found.sort_by_key(|(n, _)| *n);
        found.into_iter().map(|(_, m)| m).collect()
    }
}

struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed (rustls refuses a
/// self-signed authority as the server's own certificate), made once per directory with openssl.
fn test_certificates(dir: &Path) -> Certificates {
    let tls = dir.join("tls");
    let c = Certificates {
        ca: tls.join("ca.pem"),
        cert: tls.join("server.pem"),
        key: tls.join("server.key"),
    };
    if c.cert.exists() {
        return c;
    }
    require("/usr/bin/openssl", "openssl");
    fs::create_dir_all(&tls).unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("/usr/bin/openssl")
            .args(args)
            .current_dir(&tls)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Holdfast test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(
        tls.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    c
}

#[test]
fn a_stale_schedule_fires_and_resolves_in_alertmanager_and_by_mail_over_both_kinds_of_tls() {
    let mut fleet = fleet();
    let alertmanager = Alertmanager::start(&fleet.root);
    let password = fleet.root.join("smtp.password");
    fs::write(&password, "mail-password\n").unwrap();
    let starttls = Smtp::start(&fleet.root, "starttls", "holdfast", &password);
    let implicit = Smtp::start(&fleet.root, "tls", "holdfast", &password);
    let ca = test_certificates(&fleet.root).ca;
    // A backup every 10 seconds: staleAfter is twice that.
    fleet.write(
        "schedules/often.yaml",
        &schedule_yaml("often", "*/10 * * * * *", &fleet.data, ""),
    );
    fleet.write(
        "notifiers.yaml",
        &format!(
            "\
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: am
spec:
  alertmanager:
    url: {}
  events: [ScheduleStale]
---
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: mail
spec:
  email:
    host: 127.0.0.1
    port: {}
    tls: StartTLS
    caFile: {ca}
    from: Holdfast <holdfast@example.com>
    to: [ops@example.com]
    username: holdfast
    password:
      file: {password}
  events: [ScheduleStale]
---
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata:
  name: mail-tls
spec:
  email:
    host: 127.0.0.1
    port: {}
    tls: TLS
    caFile: {ca}
    from: Holdfast <holdfast@example.com>
    to: [ops@example.com]
    username: holdfast
    password:
      file: {password}
  events: [ScheduleStale]
",
            alertmanager.url,
            starttls.port,
            implicit.port,
            ca = ca.display(),
            password = password.display()
        ),
    );
    fleet.eventually(LONG, "a success of `often`", || {
        let s = fleet.api("/api/v1/schedules/default/often")?;
        match s.pointer("/status/hosts/0/lastSuccessfulTime") {
            Some(Value::String(_)) => Ok(()),
            _ => Err(s["status"].to_string()),
        }
    });

    fleet.kill_agent();
    let stale = |a: &Value| {
        a["labels"]["alertname"] == "HoldfastScheduleStale"
            && a["labels"]["schedule"] == "often"
            && a["labels"]["host"] == HOST
    };
    let alert = fleet.eventually(SLOW, "HoldfastScheduleStale in Alertmanager", || {
        let alerts = alertmanager.alerts()?;
        alerts
            .iter()
            .find(|a| stale(a))
            .cloned()
            .ok_or_else(|| format!("{alerts:?}"))
    });
    assert_eq!(alert["labels"]["severity"], "critical", "{alert:#}");
    assert_eq!(alert["labels"]["namespace"], "default", "{alert:#}");
    assert_eq!(alert["labels"]["notifier"], "am", "{alert:#}");
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");
    assert_eq!(
        alert["generatorURL"],
        fleet.url(&format!("/hosts/default/{HOST}")),
        "{alert:#}"
    );
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("often") && d.contains("no successful run since")),
        "{alert:#}"
    );

    for smtp in [&starttls, &implicit] {
        let mails = fleet.eventually(SLOW, "the mail that it fired", || {
            let mails = smtp.mails();
            if mails.is_empty() {
                Err("no mail yet".into())
            } else {
                Ok(mails)
            }
        });
        let mail = &mails[0];
        assert_eq!(mail["user"], "holdfast", "it logged in: {mail:#}");
        assert_eq!(mail["tls"], true, "over TLS: {mail:#}");
        assert_eq!(mail["from"], "holdfast@example.com", "{mail:#}");
        assert_eq!(
            mail["to"],
            serde_json::json!(["ops@example.com"]),
            "{mail:#}"
        );
        let data = mail["data"].as_str().unwrap();
        assert!(
            data.contains("Subject: [FIRING] ScheduleStale: often on web-1"),
            "{data}"
        );
        assert!(
            data.contains("Schedule often is stale on host web-1"),
            "{data}"
        );
        assert!(
            data.contains(&format!("Details: {}", fleet.url("/hosts/default/web-1"))),
            "{data}"
        );
        assert!(!data.contains("mail-password"), "{data}");
    }

    // The agent is back: the next run succeeds and the alert ends, in both.
    fleet.start_agent();
    fleet.eventually(
        SLOW,
        "HoldfastScheduleStale resolved in Alertmanager",
        || {
            let alerts = alertmanager.alerts()?;
            if alerts.iter().any(stale) {
                Err(format!("{alerts:?}"))
            } else {
                Ok(())
            }
        },
    );
    for smtp in [&starttls, &implicit] {
        let mails = fleet.eventually(SLOW, "the mail that it resolved", || {
            let mails = smtp.mails();
            if mails.len() >= 2 {
                Ok(mails)
            } else {
                Err(format!("{} mails", mails.len()))
            }
        });
        assert_eq!(mails.len(), 2, "fired once and resolved once: {mails:#?}");
        let data = mails[1]["data"].as_str().unwrap();
        assert!(
            data.contains("Subject: [RESOLVED] ScheduleStale: often on web-1"),
            "{data}"
        );
        assert!(data.contains("Resolved: "), "{data}");
    }
}
