//! `/metrics` in the Prometheus text format.
//!
//! Counters and the duration histogram live as long as the process; every other value is read
//! from the read model at scrape time, so metrics never disagree with the page.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::ReadModel;
use crate::resources::Phase;
use crate::runs::{RunRecord, operation_name};
use crate::status::longest_gap;

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
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            jobs: Family::default(),
            // 1 s to about 9 h.
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 3.0, 11))
            }),
            watches: Gauge::default(),
            reports_refused: Family::default(),
            store_write_errors: Counter::default(),
            store_write_failing: Gauge::default(),
        }
    }
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

    /// The whole exposition.
    pub fn render(&self, model: &ReadModel) -> String {
        let mut registry = Registry::with_prefix("holdfast");
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
        let stale = Family::<ScheduleHostLabels, Gauge>::default();
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
            "When the schedule last succeeded on the host",
            last_success,
        );
        registry.register(
            "last_run_succeeded",
            "1 when the schedule's last run on the host succeeded",
            succeeded,
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

        let size = Family::<RepoLabels, Gauge>::default();
        let snapshots = Family::<RepoLabels, Gauge>::default();
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
        }
        registry.register("repo_size_bytes", "Stored size of the repository", size);
        registry.register("repo_snapshots", "Snapshots in the repository", snapshots);

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

        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
