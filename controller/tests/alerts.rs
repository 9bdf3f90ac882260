//! The alert rules shipped in `manifests/` and the metrics they read, with Debian's Prometheus
//! (`promtool` and `prometheus`, which scripts/test installs; a missing one fails the test):
//! the rules pass `promtool check rules` and their unit tests, every rule is tested, the
//! PrometheusRule and the user guide hold exactly those rules, a running controller's
//! `/metrics` passes `promtool check metrics`, and a real Prometheus scraping a real
//! controller fires the overdue alert once the agent is killed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::fleet::*;
use serde_json::Value;

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";
const RULES: &str = "manifests/alerts/holdfast.rules.yaml";
const RULE_TESTS: &str = "manifests/alerts/tests.yaml";
const PROMETHEUS_RULE: &str = "manifests/prometheusrule.yaml";
const GUIDE: &str = "docs/user-guide.md";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// scripts/test installs Debian's prometheus; without it the test fails rather than skips.
fn require(tool: &str) -> &str {
    assert!(
        Path::new(tool).exists(),
        "{tool} is missing: install Debian's prometheus (apt-get install prometheus)"
    );
    tool
}

fn yaml(path: &str) -> Value {
    let text = fs::read_to_string(workspace().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn succeeded(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn alert_names(groups: &Value) -> Vec<String> {
    groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_rules_pass_promtool_check_rules_and_their_unit_tests() {
    let promtool = require(PROMTOOL);
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(workspace().join(RULES))
        .output()
        .unwrap();
    succeeded(&format!("promtool check rules {RULES}"), &out);

    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(workspace().join(RULE_TESTS))
        .output()
        .unwrap();
    succeeded(&format!("promtool test rules {RULE_TESTS}"), &out);
}

#[test]
fn every_rule_has_a_unit_test_in_which_it_fires() {
    let rules = alert_names(&yaml(RULES)["groups"]);
    let tests = yaml(RULE_TESTS);
    let fired: BTreeSet<&str> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|a| a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()))
        .filter_map(|a| a["alertname"].as_str())
        .collect();
    let untested: Vec<&String> = rules
        .iter()
        .filter(|r| !fired.contains(r.as_str()))
        .collect();
    assert!(
        untested.is_empty(),
        "alerts of {RULES} with no test in {RULE_TESTS} that expects them firing: {untested:?}"
    );
    for required in [
        "HoldfastScheduleOverdue",
        "HoldfastScheduleNeverSucceeded",
        "HoldfastRunFailed",
        "HoldfastRunPartiallyFailed",
        "HoldfastAgentOffline",
        "HoldfastDriftStuck",
        "HoldfastConfigRevisionRejected",
        "HoldfastRepoCheckFailed",
        "HoldfastReportsNotStored",
        "HoldfastReportsRefused",
    ] {
        assert!(
            rules.iter().any(|r| r == required),
            "{RULES} has no alert {required}: {rules:?}"
        );
    }
}

#[test]
fn the_prometheusrule_holds_the_same_groups_as_the_rules_file() {
    let rule = yaml(PROMETHEUS_RULE);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"],
        yaml(RULES)["groups"],
        "{PROMETHEUS_RULE} must hold the groups of {RULES}: copy them again"
    );
}

#[test]
fn the_user_guide_shows_the_tested_rules() {
    let rules = fs::read_to_string(workspace().join(RULES)).unwrap();
    let guide = fs::read_to_string(workspace().join(GUIDE)).unwrap();
    assert!(
        guide.contains(&format!("```yaml\n{rules}```\n")),
        "{GUIDE} must show {RULES} verbatim in a ```yaml block: paste it again"
    );
}

/// GET with these headers: status, Content-Type and body.
fn get(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String, String), String> {
    let http = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    let mut request = http.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.call().map_err(|e| format!("GET {url}: {e}"))?;
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
    Ok((response.status().as_u16(), content_type, body))
}

/// `/metrics` as asked for by `accept` (no header when None): its Content-Type and body.
fn scrape(fleet: &Fleet, accept: Option<&str>) -> (String, String) {
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    let (status, content_type, body) = get(&fleet.url("/metrics"), &headers).unwrap();
    assert_eq!(status, 200, "GET /metrics with Accept {accept:?}: {body}");
    (content_type, body)
}

/// The value of the sample `series` (name and labels) in an exposition.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// `promtool check metrics` on `text`: what it printed, empty when clean.
fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(require(PROMTOOL))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said
    } else {
        format!("exit {}: {said}", out.status)
    }
}

/// The series (name and labels, without values) of an exposition.
fn series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.rfind(' ').unwrap_or(l.len())].to_string())
        .collect()
}

/// What is wrong with OpenMetrics text that `promtool check metrics` (which reads only the
/// 0.0.4 format) would not see: each sample right after its family's HELP and TYPE, with a
/// suffix its type allows, and `# EOF` at the end.
fn openmetrics_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut helped: BTreeSet<&str> = BTreeSet::new();
    let mut family: Option<(&str, &str)> = None;
    let lines: Vec<&str> = text.lines().collect();
    if lines.last() != Some(&"# EOF") {
        problems.push("the last line is not `# EOF`".to_string());
    }
    for line in &lines[..lines.len().saturating_sub(1)] {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or_default());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            if !helped.contains(name) {
                problems.push(format!("{name} has no HELP"));
            }
            family = Some((name, kind));
        } else if line.starts_with('#') {
            problems.push(format!("unexpected line {line:?}"));
        } else {
            let name = &line[..line.find(['{', ' ']).unwrap_or(line.len())];
            let suffixes: &[&str] = match family.map(|f| f.1) {
                Some("counter") => &["_total", "_created"],
                Some("histogram") => &["_bucket", "_sum", "_count", "_created"],
                Some("info") => &["_info"],
                Some(_) => &[""],
                None => &[],
            };
            let belongs = family.is_some_and(|(f, _)| {
                suffixes
                    .iter()
                    .any(|s| name.strip_suffix(s).is_some_and(|n| n == f))
            });
            if !belongs {
                problems.push(format!("{name} is not a sample of family {family:?}"));
            }
        }
    }
    problems
}

#[test]
fn metrics_pass_promtool_in_the_text_format_and_openmetrics_is_well_formed() {
    let fleet = Fleet::start();
    // A finished run, so that run counters and the duration histogram have samples.
    fleet.write(
        "requests/now-1.yaml",
        &backup_request_yaml("now-1", "files"),
    );
    fleet.eventually(LONG, "Backup now-1 to succeed", || {
        let backup = fleet.backup("now-1")?;
        match backup.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => Ok(()),
            _ => Err(format!("status: {}", backup["status"])),
        }
    });
    // The repo's size comes in its own report after the run's: both, so that the scrapes
    // compared below see the same series.
    let (_, text) = fleet.eventually(LONG, "the run and the repo's size in /metrics", || {
        let (content_type, text) = scrape(&fleet, None);
        if text.contains("holdfast_jobs_total{operation=\"backup\",phase=\"Succeeded\"} 1")
            && text.contains("holdfast_repo_size_bytes{")
        {
            Ok((content_type, text))
        } else {
            Err(text)
        }
    });

    // The text format by default, for text/plain and for */*; promtool finds nothing wrong.
    for accept in [
        None,
        Some("text/plain"),
        Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
        Some("*/*"),
    ] {
        let (content_type, body) = scrape(&fleet, accept);
        assert_eq!(content_type, TEXT, "Accept {accept:?}");
        let said = promtool_check_metrics(&body);
        assert!(
            said.is_empty(),
            "promtool check metrics on /metrics (Accept {accept:?}):\n{said}\n{body}"
        );
    }
    for family in [
        "# TYPE holdfast_jobs_total counter",
        "# TYPE holdfast_build_info gauge",
        "# TYPE holdfast_job_duration_seconds histogram",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(text.contains(family), "expected `{family}` in:\n{text}");
    }
    let build = text
        .lines()
        .find(|l| l.starts_with("holdfast_build_info{"))
        .unwrap_or_else(|| panic!("no holdfast_build_info in:\n{text}"));
    assert!(
        build.starts_with(&format!(
            "holdfast_build_info{{version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        )) && !build.contains("commit=\"\""),
        "{build}"
    );
    let schedule = "namespace=\"default\",schedule=\"files\",host=\"web-1\"";
    for present in [
        format!("holdfast_last_success_timestamp_seconds{{{schedule}}} "),
        format!("holdfast_last_run_result{{{schedule},phase=\"Succeeded\"}} 1"),
        format!("holdfast_schedule_created_timestamp_seconds{{{schedule}}} "),
        "holdfast_reports_refused_total{reason=\"oversize\"} 0".to_string(),
    ] {
        assert!(text.contains(&present), "expected `{present}` in:\n{text}");
    }
    // No staleAfter and no jitter: twice the cron's longest gap.
    let interval = value(
        &text,
        "holdfast_schedule_expected_interval_seconds{namespace=\"default\",schedule=\"files\"}",
    );
    let stale_after = value(
        &text,
        &format!("holdfast_schedule_stale_after_seconds{{{schedule}}}"),
    );
    assert_eq!(stale_after, 2.0 * interval, "{text}");

    // OpenMetrics when asked for, as Prometheus asks; the same series, well formed.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,\
        text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for accept in ["application/openmetrics-text", prometheus_accept] {
        let (content_type, body) = scrape(&fleet, Some(accept));
        assert_eq!(content_type, OPENMETRICS, "Accept {accept:?}");
        let problems = openmetrics_problems(&body);
        assert!(problems.is_empty(), "{problems:#?}\n{body}");
        assert_eq!(
            series(&body),
            series(&text),
            "OpenMetrics and the text format must carry the same series"
        );
        assert!(body.contains("# TYPE holdfast_jobs counter\n"), "{body}");
        assert!(body.contains("# TYPE holdfast_build info\n"), "{body}");
    }
}

/// Prometheus on a loopback port, with its data in `dir`, scraping `target` every second and
/// evaluating the shipped rules every second. Killed (SIGKILL) when dropped.
struct Prometheus {
    url: String,
    log: PathBuf,
    _proc: Proc,
}

impl Prometheus {
    fn start(dir: &Path, target: u16) -> Prometheus {
        let prometheus = require(PROMETHEUS);
        let rules = workspace().join(RULES).canonicalize().unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {}
scrape_configs:
  - job_name: holdfast
    static_configs:
      - targets: ['127.0.0.1:{target}']
",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let mut command = Command::new(prometheus);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            _proc: Proc::spawn("prometheus", &mut command, &log),
            log,
        }
    }

    /// The `data` of a Prometheus API answer.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, _, body) = get(&format!("{}{path}", self.url), &[])?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: {status}, not JSON ({e}): {body}"))?;
        if status == 200 && answer["status"] == "success" {
            Ok(answer["data"].clone())
        } else {
            Err(format!("GET {path}: {status} {body}"))
        }
    }

    /// The alerts named `name`, pending or firing, for `host`.
    fn alerts(&self, name: &str, host: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/alerts")?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == name && a["labels"]["host"] == host)
            .cloned()
            .collect())
    }

    fn log_tail(&self) -> String {
        format!(
            "----- last lines of {} -----\n{}",
            self.log.display(),
            tail(&self.log, 30)
        )
    }
}

#[test]
fn prometheus_fires_the_overdue_alert_when_the_agent_is_killed() {
    let mut fleet = Fleet::start();
    // A backup every 10 seconds: staleAfter is twice that.
    fleet.write(
        "schedules/often.yaml",
        &schedule_yaml(
            "often",
            "*/10 * * * * *",
            &fleet.data,
            "  concurrencyPolicy: Forbid\n",
        ),
    );
    let prometheus = Prometheus::start(&fleet.root, fleet.port);
    let failed =
        |what: &str, seen: &str| -> String { format!("{what}: {seen}\n{}", prometheus.log_tail()) };

    // Prometheus scrapes the controller (OpenMetrics, as it asks first) and sees a success.
    let success = "holdfast_last_success_timestamp_seconds{schedule=\"often\",host=\"web-1\"}";
    fleet.eventually(
        Duration::from_secs(120),
        "Prometheus to have scraped a success of `often`",
        || {
            let data = prometheus
                .api(&format!("/api/v1/query?query={}", encode(success)))
                .map_err(|e| failed("query", &e))?;
            match data["result"].as_array() {
                Some(result) if !result.is_empty() => Ok(()),
                _ => Err(failed("no series yet", &data.to_string())),
            }
        },
    );
    let targets = prometheus.api("/api/v1/targets").unwrap();
    let target = &targets["activeTargets"][0];
    assert_eq!(target["health"], "up", "{targets:#}");
    assert_eq!(target["lastError"], "", "{targets:#}");

    fleet.kill_agent();

    let overdue = fleet.eventually(
        Duration::from_secs(180),
        "HoldfastScheduleOverdue firing for `often` on web-1",
        || {
            let alerts = prometheus
                .alerts("HoldfastScheduleOverdue", HOST)
                .map_err(|e| failed("alerts", &e))?;
            alerts
                .iter()
                .find(|a| a["labels"]["schedule"] == "often" && a["state"] == "firing")
                .cloned()
                .ok_or_else(|| failed("alerts", &format!("{alerts:?}")))
        },
    );
    let labels: BTreeMap<String, String> = serde_json::from_value(overdue["labels"].clone())
        .unwrap_or_else(|e| panic!("labels of {overdue}: {e}"));
    assert_eq!(labels["namespace"], "default", "{overdue:#}");
    assert_eq!(labels["severity"], "critical", "{overdue:#}");
    let since: f64 = overdue["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {overdue:#}"));
    let (_, _, metrics) = get(&fleet.url("/metrics"), &[]).unwrap();
    let stale_after = value(
        &metrics,
        "holdfast_schedule_stale_after_seconds{namespace=\"default\",schedule=\"often\",host=\"web-1\"}",
    );
    assert!(
        since > stale_after,
        "the value is the seconds since the last success, beyond staleAfter ({stale_after}): {overdue:#}"
    );

    // The agent's silence is seen as offline too (pending: the rule waits 5 minutes).
    fleet.eventually(LONG, "HoldfastAgentOffline pending for web-1", || {
        let alerts = prometheus
            .alerts("HoldfastAgentOffline", HOST)
            .map_err(|e| failed("alerts", &e))?;
        if alerts.is_empty() {
            Err(failed("no HoldfastAgentOffline yet", "[]"))
        } else {
            Ok(())
        }
    });
    // And the page agrees: the schedule is stale on web-1.
    fleet.eventually(LONG, "`often` stale on web-1 in its status", || {
        let schedule = fleet.api("/api/v1/schedules/default/often")?;
        let stale = schedule
            .pointer("/status/hosts/0/stale")
            .and_then(Value::as_bool);
        if stale == Some(true) {
            Ok(())
        } else {
            Err(format!("status: {}", schedule["status"]))
        }
    });
}

/// A PromQL query as a URL query value.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
