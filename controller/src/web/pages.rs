//! The status page's routes: each gathers its view from the read model and the store and
//! renders it with `page`; the fragments are the parts of the fleet page its live script
//! fetches when they change.

use std::sync::{Arc, Mutex, Weak};

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::view::{
    FleetQuery, FleetView, HostView, PageQuery, RepoSeries, RepoUser, RepoView, RevisionsQuery,
    RevisionsView, RunView, ScheduleView,
};
use super::{Shared, named, page};
use crate::compile::HostKey;
use crate::resources::{Backup, BackupSpec, BackupStatus, Kind, RunStatus};
use crate::revision::namespace_of;
use crate::server::{Controller, ReadModel};

/// The span of the host timeline and the repo charts.
const TIMELINE_DAYS: i64 = 30;
/// Runs on a schedule's page.
const SCHEDULE_RUNS: usize = 50;
/// Revisions on one page of `/revisions`.
const REVISIONS_PER_PAGE: usize = 50;
/// The controller's release: an agent older than it is flagged.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// A 404 page naming what is missing.
fn missing(what: &str) -> Response {
    (StatusCode::NOT_FOUND, page::not_found(what)).into_response()
}

/// `GET /?page=N&show=failed`. The overview never answers 400: values are read leniently
/// (`FleetQuery`), and a query axum cannot read at all (a key given twice) counts as none.
pub(super) async fn fleet_page(
    State(c): Shared,
    query: Result<Query<FleetQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let model = c.model();
    let active: Vec<&Backup> = model.active.iter().collect();
    page::fleet(&FleetView {
        now: Utc::now(),
        revisions: &model.revisions,
        hosts: &model.hosts,
        schedules: &model.schedules,
        repos: &model.repos,
        active,
        store_failing: c.store_failing(),
        page: query.page(),
        show: query.show(),
        release: RELEASE,
    })
    .into_response()
}

pub(super) async fn host_page(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let model = c.model();
    let Some(host) = model
        .hosts
        .iter()
        .find(|h| named(h.as_ref(), &namespace, &name))
    else {
        return missing(&format!("host {namespace}/{name}"));
    };
    let now = Utc::now();
    let since = now - chrono::Duration::days(TIMELINE_DAYS);
    let key = HostKey::new(&namespace, &name);
    let records = match c.host_backups(&namespace, &name) {
        Ok(objects) => backups(objects),
        Err(e) => {
            tracing::error!("cannot read the runs of {key}: {e}");
            Vec::new()
        }
    };
    // Records are pruned by history limits; the timeline also shows older runs from history.
    let history: Vec<Backup> = match c.history(&key, since) {
        Ok(points) => points
            .into_iter()
            .filter(|p| {
                !records
                    .iter()
                    .any(|r| r.metadata.name.as_ref() == Some(&p.name))
            })
            .map(|p| {
                let mut b = Backup::new(
                    &p.name,
                    BackupSpec {
                        host: p.host,
                        schedule: p.schedule,
                        operation: None,
                        repo: None,
                    },
                );
                b.metadata.namespace = Some(namespace.clone());
                b.status = Some(BackupStatus {
                    run: RunStatus {
                        phase: Some(p.phase),
                        start_time: p.started_at.map(crate::time::k8s),
                        completion_time: Some(crate::time::k8s(p.finished_at)),
                        ..RunStatus::default()
                    },
                    ..BackupStatus::default()
                });
                b
            })
            .collect(),
        Err(e) => {
            tracing::error!("cannot read run history: {e}");
            Vec::new()
        }
    };
    let mut runs: Vec<&Backup> = records.iter().chain(history.iter()).collect();
    runs.sort_by_key(|b| {
        std::cmp::Reverse(
            b.status
                .as_ref()
                .and_then(|s| s.run.start_time.clone().or(s.run.completion_time.clone())),
        )
    });
    let schedules = model
        .schedules
        .iter()
        .filter(|s| namespace_of(s.as_ref()) == namespace)
        .filter(|s| {
            s.status
                .iter()
                .flat_map(|st| &st.hosts)
                .any(|h| h.host == name)
        })
        .map(|s| s.as_ref())
        .collect();
    let mut repo_names: Vec<String> = runs
        .iter()
        .filter_map(|b| {
            b.metadata
                .labels
                .as_ref()?
                .get("holdfast.dev/repo")
                .cloned()
        })
        .collect();
    repo_names.sort();
    repo_names.dedup();
    let repo_sizes = repo_names
        .into_iter()
        .map(|repo| RepoSeries {
            points: c
                .repo_sizes(&namespace, &repo, since)
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.at, p.total_size))
                .collect(),
            repo,
        })
        .collect();
    let snapshots = match c.host_snapshots(&namespace, &name) {
        Ok(objects) => objects
            .into_iter()
            .filter_map(|o| serde_json::from_value(o).ok())
            .collect(),
        Err(e) => {
            tracing::error!("cannot read snapshots: {e}");
            Vec::new()
        }
    };
    page::host(&HostView {
        now,
        host,
        release: RELEASE,
        schedules,
        runs,
        repo_sizes,
        snapshots,
        declared_schedules: &model.schedules,
        repos: &model.repos,
    })
    .into_response()
}

pub(super) async fn run_page(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let Some(backup) = read_backup(&c, &namespace, &name) else {
        return missing(&format!("run {namespace}/{name}"));
    };
    let log = c.log(Kind::Backup, &namespace, &name).unwrap_or_default();
    let model = c.model();
    page::run(&RunView {
        now: Utc::now(),
        backup: &backup,
        log: &log,
        events_url: format!("/runs/{namespace}/{name}/events"),
        hosts: &model.hosts,
        schedules: &model.schedules,
        repos: &model.repos,
    })
    .into_response()
}

/// A Backup from the store; a read that fails is logged and shows as not found.
pub(super) fn read_backup(c: &Controller, namespace: &str, name: &str) -> Option<Backup> {
    match c.record(Kind::Backup, namespace, name) {
        Ok(found) => found.and_then(|o| serde_json::from_value(o).ok()),
        Err(e) => {
            tracing::error!("cannot read Backup {namespace}/{name}: {e}");
            None
        }
    }
}

/// Backups as served, typed; one that does not read is left out.
fn backups(objects: Vec<serde_json::Value>) -> Vec<Backup> {
    objects
        .into_iter()
        .filter_map(|o| serde_json::from_value(o).ok())
        .collect()
}

pub(super) async fn schedule_page(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let model = c.model();
    let Some(schedule) = model
        .schedules
        .iter()
        .find(|s| named(s.as_ref(), &namespace, &name))
    else {
        return missing(&format!("schedule {namespace}/{name}"));
    };
    let runs = match c.schedule_backups(&namespace, &name, SCHEDULE_RUNS) {
        Ok(objects) => backups(objects),
        Err(e) => {
            tracing::error!("cannot read the runs of schedule {namespace}/{name}: {e}");
            Vec::new()
        }
    };
    page::schedule(&ScheduleView {
        now: Utc::now(),
        schedule,
        hosts: &model.hosts,
        repos: &model.repos,
        runs: runs.iter().collect(),
        page: query.page(),
    })
    .into_response()
}

pub(super) async fn repo_page(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let model = c.model();
    let Some(repo) = model
        .repos
        .iter()
        .find(|r| named(r.as_ref(), &namespace, &name))
    else {
        return missing(&format!("repo {namespace}/{name}"));
    };
    let now = Utc::now();
    let since = now - chrono::Duration::days(TIMELINE_DAYS);
    let history = c.repo_sizes(&namespace, &name, since).unwrap_or_else(|e| {
        tracing::error!("cannot read the sizes of repo {namespace}/{name}: {e}");
        Vec::new()
    });
    let snapshots = c.repo_hosts(&namespace, &name).unwrap_or_else(|e| {
        tracing::error!("cannot read the snapshots of repo {namespace}/{name}: {e}");
        Vec::new()
    });
    let mut users: std::collections::BTreeMap<String, RepoUser> = Default::default();
    // The hosts whose plans in force run against it, through which schedules.
    for (key, host) in &c.fleet().hosts {
        if key.namespace != namespace {
            continue;
        }
        for schedule in host.plan.schedules.iter().filter(|s| s.repo.name == name) {
            let user = users.entry(key.name.clone()).or_default();
            user.schedules.push(schedule.name.clone());
        }
    }
    for seen in snapshots {
        let user = users.entry(seen.host.clone()).or_default();
        user.snapshots = Some(seen.snapshots);
        user.latest = seen.latest;
    }
    let users = users
        .into_iter()
        .map(|(host, user)| RepoUser {
            declared: model
                .hosts
                .iter()
                .any(|h| named(h.as_ref(), &namespace, &host)),
            host,
            ..user
        })
        .collect();
    page::repo(&RepoView {
        now,
        repo,
        history,
        users,
    })
    .into_response()
}

pub(super) async fn revisions_page(
    State(c): Shared,
    query: Result<Query<RevisionsQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let before = query.before();
    let model = c.model();
    // One more than a page tells whether older ones follow.
    let mut entries = match c.revision_list(before, REVISIONS_PER_PAGE + 1) {
        Ok(entries) => entries,
        Err(e) => {
            tracing::error!("cannot read the revisions: {e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
        }
    };
    let more = entries.len() > REVISIONS_PER_PAGE;
    entries.truncate(REVISIONS_PER_PAGE);
    page::revisions(&RevisionsView {
        now: Utc::now(),
        entries: &entries,
        in_force: model.revisions.applied.as_ref().map(|a| a.id),
        before,
        more,
        hosts: &model.hosts,
        schedules: &model.schedules,
        repos: &model.repos,
    })
    .into_response()
}

/// `GET /hosts/{namespace}/{name}/row`: the host's row of the fleet page's table.
pub(super) async fn host_row(
    State(c): Shared,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let model = c.model();
    let Some(host) = model
        .hosts
        .iter()
        .find(|h| named(h.as_ref(), &namespace, &name))
    else {
        return missing(&format!("host {namespace}/{name}"));
    };
    page::host_row_fragment(Utc::now(), RELEASE, host, &model.schedules).into_response()
}

/// The summary cards' counts of the read model last counted: every client of the fleet page
/// asks for them after each change, and they change only with the model.
#[derive(Default)]
pub(super) struct TallyCache(Mutex<Option<(Weak<ReadModel>, page::Tally)>>);

impl TallyCache {
    fn of(&self, model: &Arc<ReadModel>) -> page::Tally {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            // The weak pointer keeps the allocation, so an equal pointer is the same model.
            Some((counted, tally)) if Weak::ptr_eq(counted, &Arc::downgrade(model)) => *tally,
            _ => {
                let tally = page::Tally::of(&model.hosts, &model.schedules);
                *cached = Some((Arc::downgrade(model), tally));
                tally
            }
        }
    }
}

/// `GET /fragments/{part}`: a section of the fleet page, for its live script.
pub(super) async fn fragment(
    State(c): Shared,
    Extension(tally): Extension<Arc<TallyCache>>,
    Path(part): Path<String>,
    query: Result<Query<FleetQuery>, QueryRejection>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let model = c.model();
    let now = Utc::now();
    match part.as_str() {
        "summary" => page::summary_section(&page::Summary {
            now,
            revisions: &model.revisions,
            store_failing: c.store_failing().as_deref(),
            tally: tally.of(&model),
            show: query.show(),
        }),
        "running" => {
            let active: Vec<&Backup> = model.active.iter().collect();
            page::running_section(now, &active, &model.schedules)
        }
        "schedules" => page::schedules_section(now, &model.schedules),
        "repos" => page::repos_section(now, &model.repos),
        other => return missing(&format!("part {other} of the fleet page")),
    }
    .into_response()
}
