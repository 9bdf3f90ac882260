//! `/metrics` in the Prometheus text format 0.0.4 or in OpenMetrics 1.0.0, as the scraper asks.
//!
//! Counters and the duration histogram live as long as the process; every other value is read
//! from the read model at scrape time, so metrics never disagree with the page.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::ReadModel;
use crate::compile::Fleet;
use crate::resources::{Phase, Schedule};
use crate::runs::{RunRecord, operation_name};
use crate::status::{longest_gap, stale_after};

/// The exposition formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4: the default, and what `promtool check metrics` reads.
    Prometheus,
    /// OpenMetrics 1.0.0, which Prometheus asks for first.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` with a quality at least as high as any other type it
    /// accepts; otherwise (`text/plain`, `*/*`, no header, nothing known) the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut best: Option<(f32, Format)> = None;
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let format = match parts.next().map(str::to_ascii_lowercase).as_deref() {
                Some("application/openmetrics-text") => Format::OpenMetrics,
                Some("text/plain" | "text/*" | "*/*") => Format::Prometheus,
                _ => continue,
            };
            let quality = parts
                .filter_map(|p| p.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok());
            let Some(quality) = quality.filter(|q| *q > 0.0) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((q, chosen)) => quality > q || (quality == q && chosen == Format::Prometheus),
            };
            if better {
                best = Some((quality, format));
            }
        }
        best.map_or(Format::Prometheus, |(_, format)| format)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    operation: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    namespace: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleHostLabels {
    namespace: String,
    schedule: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleHostPhaseLabels {
    namespace: String,
    schedule: String,
    host: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    namespace: String,
    schedule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabels {
    namespace: String,
    repo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    commit: String,
}

/// What accumulates between scrapes.
#[derive(Clone)]
pub struct Metrics {
    jobs: Family<JobLabels, Counter>,
    durations: Family<OperationLabels, Histogram>,
    /// Watches open on the Kubernetes-compatible API.
    pub watches: Gauge,
    reports_refused: Family<ReasonLabels, Counter>,
    store_write_errors: Counter,
    store_write_failing: Gauge,
    /// What notifiers delivered, failed to deliver and dropped.
    pub notifications: crate::notify::Counters,
}

impl Default for Metrics {
    fn default() -> Self {
        let reports_refused = Family::<ReasonLabels, Counter>::default();
        for reason in super::hub::REFUSAL_REASONS {
            // Creates the series at 0; the guard it returns is not needed.
            drop(reports_refused.get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            }));
        }
        Metrics {
            jobs: Family::default(),
            // 1 s to about 9 h.
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 3.0, 11))
            }),
            watches: Gauge::default(),
            reports_refused,
            store_write_errors: Counter::default(),
            store_write_failing: Gauge::default(),
            notifications: crate::notify::Counters::default(),
        }
    }
}

/// `holdfast_drill_*`: each host's latest restore drill, from its status.
fn register_drills(registry: &mut Registry, model: &ReadModel) {
    let succeeded = Family::<HostLabels, Gauge>::default();
    let last = Family::<HostLabels, Gauge>::default();
    let last_success = Family::<HostLabels, Gauge>::default();
    let rate = Family::<HostLabels, Gauge>::default();
    let files = Family::<HostLabels, Gauge>::default();
    let bytes = Family::<HostLabels, Gauge>::default();
    let differences = Family::<HostLabels, Gauge>::default();
    for host in &model.hosts {
        let Some(drill) = host.status.as_ref().and_then(|s| s.last_drill.as_ref()) else {
            continue;
        };
        let labels = HostLabels {
            namespace: host.metadata.namespace.clone().unwrap_or_default(),
            host: host.metadata.name.clone().unwrap_or_default(),
        };
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        succeeded
            .get_or_create(&labels)
            .set(i64::from(drill.phase == Phase::Succeeded));
        last.get_or_create(&labels).set(drill.time.0.as_second());
        if let Some(t) = &drill.last_success_time {
            last_success.get_or_create(&labels).set(t.0.as_second());
        }
        rate.get_or_create(&labels)
            .set(count(drill.bytes_per_second));
        files
            .get_or_create(&labels)
            .set(count(drill.files_verified));
        bytes
            .get_or_create(&labels)
            .set(count(drill.bytes_verified));
        differences
            .get_or_create(&labels)
            .set(count(drill.differences.unwrap_or(0)));
    }
    registry.register(
        "drill_last_succeeded",
        "1 when the host's last restore drill verified every file",
        succeeded,
    );
    registry.register(
        "drill_last_timestamp_seconds",
        "When the host's last restore drill finished",
        last,
    );
    registry.register(
        "drill_last_success_timestamp_seconds",
        "When a restore drill on the host last succeeded (absent until one has)",
        last_success,
    );
    registry.register(
        "drill_last_bytes_per_second",
        "Restore rate of the host's last drill",
        rate,
    );
    registry.register(
        "drill_last_verified_files",
        "Files the host's last drill restored and verified",
        files,
    );
    registry.register(
        "drill_last_verified_bytes",
        "Bytes the host's last drill restored and verified",
        bytes,
    );
    registry.register(
        "drill_last_differences",
        "Files of the host's last drill that did not verify",
        differences,
    );
}

fn phase_word(phase: Phase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Metrics {
    /// Counts a run that has just finished (called once per run).
    pub fn job_finished(&self, run: &RunRecord) {
        let operation = operation_name(run.operation).to_string();
        self.jobs
            .get_or_create(&JobLabels {
                operation: operation.clone(),
                phase: phase_word(run.phase),
            })
            .inc();
        if let (Some(start), Some(end)) = (run.started_at, run.finished_at) {
            let seconds = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
            self.durations
                .get_or_create(&OperationLabels { operation })
                .observe(seconds);
        }
    }

    /// Counts a report or schedule ack the controller refused, by why (a snake_case word).
    pub fn report_refused(&self, reason: &str) {
        self.reports_refused
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a write to the database that failed.
    pub fn store_write_failed(&self) {
        self.store_write_errors.inc();
    }

    /// Whether writes to the database fail right now.
    pub fn set_store_write_failing(&self, failing: bool) {
        self.store_write_failing.set(i64::from(failing));
    }

    /// The whole exposition. `fleet` is the fleet in force, for what each host's plan says
    /// (jitter, paused).
    pub fn render(&self, model: &ReadModel, fleet: &Fleet, format: Format) -> String {
        let mut root = Registry::default();
        #[cfg(target_os = "linux")]
        register_process(&mut root);
        let registry = root.sub_registry_with_prefix("holdfast");
        registry.register(
            "build",
            "The version and commit the controller was built from",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: env!("HOLDFAST_COMMIT").to_string(),
            }),
        );
        registry.register(
            "jobs",
            "Runs finished since the controller started, by operation and phase",
            self.jobs.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "How long finished runs took",
            self.durations.clone(),
        );
        registry.register(
            "api_watches",
            "Watches open on the Kubernetes-compatible API",
            self.watches.clone(),
        );
        registry.register(
            "reports_refused",
            "Agent reports and schedule acks refused (not stored), by reason",
            self.reports_refused.clone(),
        );
        registry.register(
            "store_write_errors",
            "Writes to the database that failed",
            self.store_write_errors.clone(),
        );
        registry.register(
            "store_write_failing",
            "1 while the database cannot be written (reports are held and retried)",
            self.store_write_failing.clone(),
        );

        let online = Family::<HostLabels, Gauge>::default();
        let desired = Family::<HostLabels, Gauge>::default();
        let applied = Family::<HostLabels, Gauge>::default();
        for host in &model.hosts {
            let labels = HostLabels {
                namespace: host.metadata.namespace.clone().unwrap_or_default(),
                host: host.metadata.name.clone().unwrap_or_default(),
            };
            let status = host.status.clone().unwrap_or_default();
            online
                .get_or_create(&labels)
                .set(i64::from(status.online.unwrap_or(false)));
            desired
                .get_or_create(&labels)
                .set(status.desired_schedule_version.unwrap_or(0) as i64);
            applied
                .get_or_create(&labels)
                .set(status.applied_schedule_version.unwrap_or(0) as i64);
        }
        registry.register(
            "agent_online",
            "1 when the host's agent is connected",
            online,
        );
        register_drills(registry, model);
        registry.register(
            "host_desired_schedule_version",
            "The schedule version the host should run",
            desired,
        );
        registry.register(
            "host_applied_schedule_version",
            "The schedule version the host's agent runs",
            applied,
        );

        let last_run = Family::<ScheduleHostLabels, Gauge>::default();
        let last_success = Family::<ScheduleHostLabels, Gauge>::default();
        let succeeded = Family::<ScheduleHostLabels, Gauge>::default();
        let result = Family::<ScheduleHostPhaseLabels, Gauge>::default();
        let stale = Family::<ScheduleHostLabels, Gauge>::default();
        let created = Family::<ScheduleHostLabels, Gauge>::default();
        let interval = Family::<ScheduleLabels, Gauge>::default();
        for schedule in &model.schedules {
            let namespace = schedule.metadata.namespace.clone().unwrap_or_default();
            let name = schedule.metadata.name.clone().unwrap_or_default();
            if let Some(gap) = crate::cronspec::parse(&schedule.spec.cron)
                .ok()
                .and_then(|c| longest_gap(&c.normalized))
            {
                interval
                    .get_or_create(&ScheduleLabels {
                        namespace: namespace.clone(),
                        schedule: name.clone(),
                    })
                    .set(gap.as_secs() as i64);
            }
            for h in schedule.status.iter().flat_map(|s| &s.hosts) {
                let labels = ScheduleHostLabels {
                    namespace: namespace.clone(),
                    schedule: name.clone(),
                    host: h.host.clone(),
                };
                if let Some(t) = &h.last_schedule_time {
                    last_run.get_or_create(&labels).set(t.0.as_second());
                }
                if let Some(t) = &h.last_successful_time {
                    last_success.get_or_create(&labels).set(t.0.as_second());
                }
                if let Some(phase) = h.last_result {
                    succeeded
                        .get_or_create(&labels)
                        .set(i64::from(phase == Phase::Succeeded));
                    result
                        .get_or_create(&ScheduleHostPhaseLabels {
                            namespace: namespace.clone(),
                            schedule: name.clone(),
                            host: h.host.clone(),
                            phase: phase_word(phase),
                        })
                        .set(1);
                }
                if let Some(t) = &schedule.metadata.creation_timestamp {
                    created.get_or_create(&labels).set(t.0.as_second());
                }
                stale.get_or_create(&labels).set(i64::from(h.stale));
            }
        }
        registry.register(
            "last_run_timestamp_seconds",
            "When the schedule last ran on the host",
            last_run,
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the schedule last succeeded on the host (absent until it first has)",
            last_success,
        );
        registry.register(
            "last_run_succeeded",
            "1 when the schedule's last run on the host succeeded",
            succeeded,
        );
        registry.register(
            "last_run_result",
            "1 for how the schedule's last run on the host ended (phase)",
            result,
        );
        registry.register(
            "schedule_stale",
            "1 when the host has had no successful run within staleAfter",
            stale,
        );
        registry.register(
            "schedule_expected_interval_seconds",
            "The longest gap between two runs of the schedule's cron",
            interval,
        );
        registry.register(
            "schedule_stale_after_seconds",
            "How long the host may go without a successful run of the schedule (absent while the schedule is suspended or the host paused)",
            stale_after_seconds(&model.schedules, fleet),
        );
        registry.register(
            "schedule_created_timestamp_seconds",
            "When the schedule was created: a host that has never succeeded counts staleAfter from here",
            created,
        );

        let check_passed = Family::<RepoLabels, Gauge>::default();
        let check_time = Family::<RepoLabels, Gauge>::default();
        let size = Family::<RepoLabels, Gauge>::default();
        let snapshots = Family::<RepoLabels, Gauge>::default();
        let fully_read = Family::<RepoLabels, Gauge>::default();
        for repo in &model.repos {
            let labels = RepoLabels {
                namespace: repo.metadata.namespace.clone().unwrap_or_default(),
                repo: repo.metadata.name.clone().unwrap_or_default(),
            };
            let status = repo.status.clone().unwrap_or_default();
            if let Some(bytes) = status.size_bytes {
                size.get_or_create(&labels).set(bytes as i64);
            }
            if let Some(count) = status.snapshot_count {
                snapshots.get_or_create(&labels).set(count as i64);
            }
            if let Some(check) = &status.last_check {
                check_passed
                    .get_or_create(&labels)
                    .set(i64::from(check.passed));
                check_time
                    .get_or_create(&labels)
                    .set(check.time.0.as_second());
            }
            if let Some(since) = status
                .scrub
                .as_ref()
                .and_then(|s| s.fully_read_since.as_ref())
            {
                fully_read.get_or_create(&labels).set(since.0.as_second());
            }
        }
        registry.register("repo_size_bytes", "Stored size of the repository", size);
        registry.register("repo_snapshots", "Snapshots in the repository", snapshots);
        registry.register(
            "repo_check_passed",
            "1 when the repository's last restic check found no errors (absent before the first)",
            check_passed,
        );
        registry.register(
            "repo_last_check_timestamp_seconds",
            "When the repository's last restic check finished",
            check_time,
        );
        registry.register(
            "repo_fully_read_timestamp_seconds",
            "Every pack of the repository has been read by a rotating check (readDataRotate) since this time",
            fully_read,
        );

        let errors = Gauge::<i64>::default();
        errors.set(
            model
                .revisions
                .rejected
                .as_ref()
                .map_or(0, |r| r.errors.len() as i64),
        );
        registry.register(
            "config_errors",
            "Errors in the newest revision of the config directory, when it was rejected",
            errors,
        );

        let n = &self.notifications;
        registry.register(
            "notifications_sent",
            "Notifications a receiver accepted, by notifier and status (firing, resolved)",
            n.sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Attempts to deliver a notification that failed (each is retried with backoff)",
            n.failed.clone(),
        );
        registry.register(
            "notifications_dropped",
            "Notifications dropped, oldest first, from an outbox holding its maximum",
            n.dropped.clone(),
        );
        let firing = Family::<crate::notify::NotifierLabels, Gauge>::default();
        let queued = Family::<crate::notify::NotifierLabels, Gauge>::default();
        let failing = Family::<crate::notify::NotifierLabels, Gauge>::default();
        for notifier in &model.notifiers {
            let labels = crate::notify::NotifierLabels {
                namespace: notifier.metadata.namespace.clone().unwrap_or_default(),
                notifier: notifier.metadata.name.clone().unwrap_or_default(),
            };
            let status = notifier.status.clone().unwrap_or_default();
            firing
                .get_or_create(&labels)
                .set(status.firing.unwrap_or(0) as i64);
            queued
                .get_or_create(&labels)
                .set(status.queued.unwrap_or(0) as i64);
            failing
                .get_or_create(&labels)
                .set(i64::from(status.last_error.is_some()));
        }
        registry.register(
            "notifications_firing",
            "Alerts the notifier fired that have not resolved",
            firing,
        );
        registry.register(
            "notifications_queued",
            "Notifications waiting to be delivered",
            queued,
        );
        registry.register(
            "notifications_failing",
            "1 while the notifier's last delivery attempt failed",
            failing,
        );

        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &root);
        match format {
            Format::OpenMetrics => text,
            Format::Prometheus => prometheus_text(&text),
        }
    }
}

/// Each host's `staleAfter` for each schedule it runs, as the Schedule's status counts it
/// (jitter included), except where nothing is due: a suspended schedule, a paused host.
fn stale_after_seconds(
    schedules: &[Arc<Schedule>],
    fleet: &Fleet,
) -> Family<ScheduleHostLabels, Gauge> {
    let by_name: HashMap<(&str, &str), &Schedule> = schedules
        .iter()
        .map(|s| {
            let m = &s.metadata;
            (
                (
                    m.namespace.as_deref().unwrap_or_default(),
                    m.name.as_deref().unwrap_or_default(),
                ),
                s.as_ref(),
            )
        })
        .collect();
    let family = Family::<ScheduleHostLabels, Gauge>::default();
    for (key, compiled) in fleet.hosts.iter().filter(|(_, c)| !c.plan.paused) {
        for resolved in &compiled.plan.schedules {
            let Some(schedule) = by_name
                .get(&(key.namespace.as_str(), resolved.name.as_str()))
                .filter(|s| !s.spec.suspend)
            else {
                continue;
            };
            if let Some(limit) = stale_after(schedule, Some(resolved)) {
                family
                    .get_or_create(&ScheduleHostLabels {
                        namespace: key.namespace.clone(),
                        schedule: resolved.name.clone(),
                        host: key.name.clone(),
                    })
                    .set(i64::try_from(limit.as_secs()).unwrap_or(i64::MAX));
            }
        }
    }
    family
}

/// The standard `process_*` metrics; none when `/proc` cannot be read.
#[cfg(target_os = "linux")]
fn register_process(registry: &mut Registry) {
    let process = match super::process::read() {
        Ok(process) => process,
        Err(e) => {
            tracing::debug!("no process metrics: {e}");
            return;
        }
    };
    registry.register(
        "process_cpu_seconds",
        "User and system CPU time spent by the controller, in seconds",
        ConstCounter::new(process.cpu_seconds),
    );
    registry.register(
        "process_resident_memory_bytes",
        "Resident memory of the controller, in bytes",
        ConstGauge::new(i64::try_from(process.resident_bytes).unwrap_or(i64::MAX)),
    );
    registry.register(
        "process_open_fds",
        "File descriptors the controller has open",
        ConstGauge::new(i64::try_from(process.open_fds).unwrap_or(i64::MAX)),
    );
    registry.register(
        "process_start_time_seconds",
        "When the controller started, in seconds since the Unix epoch",
        ConstGauge::new(process.start_time_seconds),
    );
}

/// The Prometheus text format 0.0.4 from the OpenMetrics text prometheus-client writes (the
/// only text it writes). The samples are the same; what differs is how a family is named: 0.0.4
/// names it as its samples are, so a counter's HELP and TYPE name its `_total` series and an
/// info its `_info` series, typed gauge. 0.0.4 has no `# UNIT` and no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // prometheus-client writes HELP, then TYPE, for every family.
            help = rest.split_once(' ');
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                continue;
            };
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if let Some((_, text)) = help.take() {
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
        } else if !line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_asked_for_at_least_as_much_as_anything_else() {
        let prometheus_2 = "application/openmetrics-text;version=1.0.0,\
            application/openmetrics-text;version=0.0.1;q=0.75,\
            text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, expected) in [
            (None, Format::Prometheus),
            (Some(""), Format::Prometheus),
            (Some("*/*"), Format::Prometheus),
            (Some("text/plain"), Format::Prometheus),
            (Some("text/plain;version=0.0.4"), Format::Prometheus),
            (Some("application/json"), Format::Prometheus),
            (Some(prometheus_2), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                Some("Application/OpenMetrics-Text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some("text/plain, application/openmetrics-text"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.5, text/plain"),
                Format::Prometheus,
            ),
            (
                Some("application/openmetrics-text;q=0, */*"),
                Format::Prometheus,
            ),
        ] {
            assert_eq!(Format::negotiate(accept), expected, "Accept: {accept:?}");
        }
    }

    #[test]
    fn the_text_format_names_counter_and_info_families_by_their_samples() {
        let openmetrics = "\
# HELP holdfast_jobs Runs finished.
# TYPE holdfast_jobs counter
holdfast_jobs_total{operation=\"backup\",phase=\"Succeeded\"} 2
# HELP holdfast_build The build.
# TYPE holdfast_build info
holdfast_build_info{version=\"0.1.0\",commit=\"abc1234\"} 1
# HELP holdfast_job_duration_seconds How long.
# TYPE holdfast_job_duration_seconds histogram
holdfast_job_duration_seconds_sum{operation=\"backup\"} 1.5
holdfast_job_duration_seconds_count{operation=\"backup\"} 1
holdfast_job_duration_seconds_bucket{le=\"1.0\",operation=\"backup\"} 0
holdfast_job_duration_seconds_bucket{le=\"+Inf\",operation=\"backup\"} 1
# HELP holdfast_agent_online Online.
# TYPE holdfast_agent_online gauge
holdfast_agent_online{namespace=\"default\",host=\"web-1\"} 1
# EOF
";
        assert_eq!(
            prometheus_text(openmetrics),
            "\
# HELP holdfast_jobs_total Runs finished.
# TYPE holdfast_jobs_total counter
holdfast_jobs_total{operation=\"backup\",phase=\"Succeeded\"} 2
# HELP holdfast_build_info The build.
# TYPE holdfast_build_info gauge
holdfast_build_info{version=\"0.1.0\",commit=\"abc1234\"} 1
# HELP holdfast_job_duration_seconds How long.
# TYPE holdfast_job_duration_seconds histogram
holdfast_job_duration_seconds_sum{operation=\"backup\"} 1.5
holdfast_job_duration_seconds_count{operation=\"backup\"} 1
holdfast_job_duration_seconds_bucket{le=\"1.0\",operation=\"backup\"} 0
holdfast_job_duration_seconds_bucket{le=\"+Inf\",operation=\"backup\"} 1
# HELP holdfast_agent_online Online.
# TYPE holdfast_agent_online gauge
holdfast_agent_online{namespace=\"default\",host=\"web-1\"} 1
"
        );
    }

    /// `(schedule, host)` → value of a family of [`ScheduleHostLabels`], as encoded.
    fn by_schedule_and_host(
        family: Family<ScheduleHostLabels, Gauge>,
    ) -> std::collections::BTreeMap<(String, String), i64> {
        let mut registry = Registry::default();
        registry.register("x", "x", family);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("x{namespace=\"default\",schedule=\""))
            .map(|l| {
                let (schedule, rest) = l.split_once("\",host=\"").unwrap();
                let (host, value) = rest.split_once("\"} ").unwrap();
                ((schedule.into(), host.into()), value.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn stale_after_is_each_hosts_and_absent_where_nothing_is_due() {
        use crate::source::files::{SourceFile, load_sources};
        let fleet_yaml = "\
apiVersion: holdfast.dev/v1alpha1
kind: Repo
metadata: {name: nas}
spec: {url: /srv/restic, password: {hostFile: /etc/holdfast/nas.password}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {name: web-1}
spec: {defaultRepo: nas}
---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {name: web-2}
spec: {defaultRepo: nas}
---
apiVersion: holdfast.dev/v1alpha1
kind: Host
metadata: {name: db-1}
spec: {defaultRepo: nas, paused: true}
---
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata: {name: daily}
spec: {operation: backup, cron: '0 2 * * *', jitter: 30m, hosts: [web-1, web-2, db-1], paths: [/srv]}
---
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata: {name: weekly}
spec: {operation: backup, cron: '0 3 * * 0', staleAfter: 10d, hosts: [web-1], paths: [/srv]}
---
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata: {name: off}
spec: {operation: backup, cron: '0 4 * * *', suspend: true, hosts: [web-1], paths: [/srv]}
";
        let loaded = load_sources(vec![SourceFile::new("fleet.yaml", fleet_yaml)]);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let fleet = crate::compile::compile(&loaded.revision).unwrap();
        let jitter = |host: &str| {
            let plan = &fleet.hosts[&crate::compile::HostKey::new("default", host)].plan;
            let daily = plan.schedules.iter().find(|s| s.name == "daily").unwrap();
            i64::from(daily.jitter_seconds)
        };
        let two_days = 2 * 24 * 3600;
        let seen = by_schedule_and_host(stale_after_seconds(
            &loaded
                .revision
                .schedules
                .iter()
                .cloned()
                .map(Arc::new)
                .collect::<Vec<_>>(),
            &fleet,
        ));
        let expected: std::collections::BTreeMap<(String, String), i64> = [
            (("daily", "web-1"), two_days + jitter("web-1")),
            (("daily", "web-2"), two_days + jitter("web-2")),
            (("weekly", "web-1"), 10 * 24 * 3600),
        ]
        .into_iter()
        .map(|((s, h), v)| ((s.to_string(), h.to_string()), v))
        .collect();
        assert_eq!(seen, expected);
        assert!(
            (0..1800).contains(&jitter("web-1")) && jitter("web-1") != jitter("web-2"),
            "each host its own offset within the 30m window"
        );
    }

    #[test]
    fn both_formats_carry_the_build_and_the_process() {
        let metrics = Metrics::default();
        let model = ReadModel::default();
        let fleet = Fleet::default();
        let text = metrics.render(&model, &fleet, Format::Prometheus);
        let commit = env!("HOLDFAST_COMMIT");
        let build = format!(
            "holdfast_build_info{{version=\"{}\",commit=\"{commit}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&format!("{build}\n")), "{text}");
        assert!(
            text.contains("# TYPE holdfast_build_info gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        let open = metrics.render(&model, &fleet, Format::OpenMetrics);
        assert!(open.contains("# TYPE holdfast_build info\n"), "{open}");
        assert!(open.contains(&format!("{build}\n")), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
        #[cfg(target_os = "linux")]
        for family in [
            "process_cpu_seconds_total counter",
            "process_resident_memory_bytes gauge",
            "process_open_fds gauge",
            "process_start_time_seconds gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{text}");
        }
    }
}
