//! Desired state from the config directory: read it whole, watch it, and apply each valid
//! revision: compile, version, record, push, and turn new Backup and Restore files into runs.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Controller;
use crate::compile::{self, HostKey};
use crate::diff::{self, RevisionChanges};
use crate::resources::{Kind, ObjectKey};
use crate::revision::Revision;
use crate::revision::{name_of, namespace_of};
use crate::runs::{RunRecord, request_job};
use crate::source::files::{DirReader, Loaded};
use crate::store::StoreError;
use crate::validate::Mode;
use crate::versions::{self, Versioned};

/// The config directory cannot be watched, so changes to it would go unseen.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {}: {source}", dir.display())]
pub struct WatchError {
    dir: PathBuf,
    source: notify::Error,
}

/// Reads the directory once, then watches it.
pub fn start(controller: Arc<Controller>, dir: PathBuf) -> Result<(), WatchError> {
    let unwatchable = |source| WatchError {
        dir: dir.clone(),
        source,
    };
    let root = dir.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the directory makes access events of its own: only changes count.
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event
                .paths
                .iter()
                .any(|p| !hidden(p.strip_prefix(&root).unwrap_or(p)))
        {
            let _ = tx.send(());
        }
    })
    .map_err(unwatchable)?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(unwatchable)?;
    if let Err(e) = restore(&controller) {
        tracing::error!("cannot read the revision in force before the restart: {e}");
    }
    let mut reader = DirReader::new(Mode::Files);
    reload(&controller, &dir, &mut reader);
    let debounce = controller.config.debounce;
    tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            // A `git pull` writes many files: wait for a quiet moment, then read once.
            while let Ok(Some(())) = tokio::time::timeout(debounce, rx.recv()).await {}
            let (c, d) = (controller.clone(), dir.clone());
            let read = tokio::task::spawn_blocking(move || {
                reload(&c, &d, &mut reader);
                reader
            });
            reader = read.await.unwrap_or_else(|e| {
                tracing::error!("reading the config directory panicked: {e}");
                DirReader::new(Mode::Files)
            });
        }
    });
    Ok(())
}

/// Dot files and directories (`.git`) below the config directory are not part of the desired
/// state. Takes the path relative to the config directory, which may itself sit below a dot
/// directory.
fn hidden(path: &Path) -> bool {
    path.components().any(|c| match c {
        Component::Normal(name) => name.to_string_lossy().starts_with('.'),
        _ => false,
    })
}

/// What git says of the files read from `dir`.
#[derive(Debug, Default, PartialEq, Eq)]
struct GitState {
    /// The commit checked out, when `dir` is inside a git work tree.
    commit: Option<String>,
    /// Files below `dir` differ from that commit (edited, added or deleted, not committed): a
    /// revision read now is not the commit, and saying only "commit X" would name the wrong
    /// state.
    uncommitted: bool,
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).ok())
        .flatten()
}

fn git_state(dir: &Path) -> GitState {
    let Some(commit) = git(dir, &["rev-parse", "HEAD"])
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
    else {
        return GitState::default();
    };
    let uncommitted =
        git(dir, &["status", "--porcelain", "--", "."]).is_some_and(|s| !s.trim().is_empty());
    GitState {
        commit: Some(commit),
        uncommitted,
    }
}

/// Puts the revision in force before a restart back in force, exactly as it was pushed: the
/// stored plans and versions, and the stored resources for status. A directory that is
/// rejected at start then leaves the fleet as it was instead of empty.
fn restore(controller: &Controller) -> Result<(), StoreError> {
    let (revision, plans) = {
        let store = controller.store();
        (store.applied_revision()?, store.host_plans()?)
    };
    let Some(revision) = revision else {
        return Ok(());
    };
    let mut fleet = compile::Fleet::default();
    let mut versions = std::collections::BTreeMap::new();
    for (key, stored) in plans.into_iter().filter(|(_, p)| !p.removed) {
        let Some(plan) = stored.plan else { continue };
        fleet.hosts.insert(
            key.clone(),
            compile::CompiledHost {
                plan,
                digest: stored.versioned.digest.clone(),
            },
        );
        versions.insert(key, stored.versioned);
    }
    tracing::info!(
        hosts = fleet.hosts.len(),
        "serving the revision in force before the restart until the directory is read"
    );
    let mut state = controller.state();
    state.revision = Arc::new(revision);
    state.fleet = Arc::new(fleet);
    state.versions = versions;
    Ok(())
}

/// Reads the directory and applies it if valid; otherwise records why not.
fn reload(controller: &Controller, dir: &Path, reader: &mut DirReader) {
    let started = Instant::now();
    let git = git_state(dir);
    let result = match reader.load(dir) {
        Ok(loaded) => apply(controller, loaded, &git, started),
        Err(e) => reject(controller, &[e.to_string()], "", &git, None),
    };
    if let Err(e) = result {
        tracing::error!("cannot record a revision: {e}");
    }
    // Ready once the read model shows what was read: the model writer says so.
    controller.touch();
}

/// Records a rejected revision; `changes` is what it would have changed, when it was read.
fn reject(
    controller: &Controller,
    errors: &[String],
    summary: &str,
    git: &GitState,
    changes: Option<&RevisionChanges>,
) -> Result<(), StoreError> {
    let commit = git.commit.as_deref();
    let mut store = controller.store();
    let id = store.record_revision(commit, git.uncommitted, summary, errors, None, Utc::now())?;
    if let Some(changes) = changes {
        store.set_revision_changes(id, changes)?;
    }
    drop(store);
    tracing::error!(
        revision = id,
        commit,
        uncommitted = git.uncommitted,
        "rejected the config directory; the previous revision stays in force: {}",
        errors.join("; ")
    );
    Ok(())
}

/// Applies a valid revision read since `started`: compiled, versioned and stored before any
/// push, so an agent never holds a version the store could lose.
fn apply(
    controller: &Controller,
    loaded: Loaded,
    git: &GitState,
    started: Instant,
) -> Result<(), StoreError> {
    let read = started.elapsed();
    let commit = git.commit.as_deref();
    let summary = loaded.revision.summary();
    let in_force = controller.state().revision.clone();
    let mut changes = diff::changes(&in_force, &loaded.revision);
    if !loaded.is_valid() {
        let errors: Vec<String> = loaded.errors().map(|d| d.to_string()).collect();
        controller.at_fault(at_fault(&loaded));
        return reject(controller, &errors, &summary, git, Some(&changes));
    }
    let fleet = match compile::compile(&loaded.revision) {
        Ok(fleet) => fleet,
        Err(e) => return reject(controller, &[e.to_string()], &summary, git, Some(&changes)),
    };
    let mut store = controller.store();
    let previous = store.plan_versions()?;
    let versions = versions::assign(&previous, &fleet);
    for (key, v) in &versions {
        if previous
            .get(key)
            .is_none_or(|p: &Versioned| p.version != v.version)
        {
            // Per host at debug: a fleet-wide change would be a line for each of thousands.
            tracing::debug!(host = %key, version = v.version, "new schedule version");
            changes.new_versions.push(key.to_string());
        }
    }
    store.record(&fleet, &versions)?;
    let id = store.record_revision(
        commit,
        git.uncommitted,
        &summary,
        &[],
        Some(&loaded.revision),
        Utc::now(),
    )?;
    store.set_revision_changes(id, &changes)?;
    drop(store);
    record_requests(controller, &loaded.revision)?;
    let stored = started.elapsed();
    let hosts: Vec<HostKey> = {
        let mut state = controller.state();
        state.revision = Arc::new(loaded.revision);
        state.fleet = Arc::new(fleet);
        state.versions = versions;
        state.rejected.clear();
        state.sessions.keys().cloned().collect()
    };
    let requesting = controller.store().hosts_with_open_requests()?;
    let mut files = super::hub::FileSecrets::default();
    for host in hosts {
        super::hub::push_reading(controller, &host, &mut files);
        if requesting.contains(&host) {
            super::hub::dispatch(controller, &host);
        }
    }
    let changed = changes.new_versions.total;
    // How long each step took since the directory was read: where a slow apply spends its time.
    tracing::info!(
        revision = id,
        commit,
        read_ms = read.as_millis(),
        stored_ms = stored.as_millis(),
        pushed_ms = started.elapsed().as_millis(),
        "applied {summary}; a new schedule version for {changed} host(s)"
    );
    Ok(())
}

/// The objects the errors of a rejected directory name, each with its errors where they are
/// (`file:line:column: field: message`).
fn at_fault(loaded: &Loaded) -> BTreeMap<ObjectKey, Vec<String>> {
    let mut out: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    for d in loaded.errors() {
        let Some(object) = &d.object else { continue };
        let field = match d.field.is_root() {
            true => String::new(),
            false => format!("{}: ", d.field),
        };
        out.entry(object.clone())
            .or_default()
            .push(format!("{}: {field}{}", d.location, d.message));
    }
    out
}

/// Records a run for every Backup and Restore of `revision` that has none yet: each executes
/// once, keyed by namespace and name, so neither a restart nor a later edit runs it again.
pub(super) fn record_requests(
    controller: &Controller,
    revision: &Revision,
) -> Result<(), StoreError> {
    let mut store = controller.store();
    for record in new_requests(&store, revision)? {
        store.save_run(&record)?;
    }
    Ok(())
}

fn new_requests(
    store: &crate::store::Store,
    revision: &Revision,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut out = Vec::new();
    let now = Utc::now();
    let mut add = |kind: Kind,
                   namespace: &str,
                   name: &str,
                   host: &str,
                   schedule: Option<String>,
                   operation,
                   repo: Option<String>|
     -> Result<(), StoreError> {
        if store.run_by_name(kind, namespace, name)?.is_none() {
            out.push(RunRecord {
                schedule,
                repo,
                requested: true,
                ..RunRecord::pending(
                    kind,
                    &HostKey::new(namespace, host),
                    name.to_string(),
                    request_job(kind, namespace, name),
                    operation,
                    now,
                )
            });
        }
        Ok(())
    };
    let index = revision.index();
    for b in &revision.backups {
        let ns = namespace_of(b);
        let operation = b
            .spec
            .operation
            .or_else(|| {
                let s = b.spec.schedule.as_deref()?;
                index.schedules.get(&(ns, s)).map(|s| s.spec.operation)
            })
            .map(protocol::JobOperation::from)
            .unwrap_or(protocol::JobOperation::Backup);
        add(
            Kind::Backup,
            ns,
            name_of(b),
            &b.spec.host,
            b.spec.schedule.clone(),
            operation,
            b.spec.repo.clone(),
        )?;
    }
    for r in &revision.restores {
        add(
            Kind::Restore,
            namespace_of(r),
            name_of(r),
            &r.spec.target_host,
            r.spec.schedule.clone(),
            protocol::JobOperation::Restore,
            r.spec.repo.clone(),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_git(dir: &Path, args: &[&str]) {
        let status = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    #[test]
    fn a_directory_edited_since_its_commit_is_read_as_uncommitted_edits() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(
            git_state(dir.path()),
            GitState::default(),
            "not a work tree"
        );
        run_git(dir.path(), &["init", "-q"]);
        let fleet = dir.path().join("fleet");
        std::fs::create_dir(&fleet).expect("a directory");
        std::fs::write(fleet.join("a.yaml"), "kind: Repo\n").expect("written");
        run_git(dir.path(), &["add", "."]);
        run_git(dir.path(), &["commit", "-q", "-m", "first"]);
        let head = git(dir.path(), &["rev-parse", "HEAD"]).map(|c| c.trim().to_string());

        let clean = git_state(&fleet);
        assert_eq!(
            (clean.commit.clone(), clean.uncommitted),
            (head.clone(), false)
        );

        std::fs::write(fleet.join("a.yaml"), "kind: Repo # edited\n").expect("written");
        let edited = git_state(&fleet);
        assert_eq!((edited.commit, edited.uncommitted), (head, true));
    }
}
