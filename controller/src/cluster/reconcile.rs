//! A Host's reconcile in Kubernetes mode, for `kube-runtime`'s applier: the desired state is
//! read from reflector stores instead of a directory, validated and compiled by the same
//! [`validate`](crate::validate) and [`compile`], and its version continued by the same
//! [`versions::continue_from`]. The version goes to the agent hub ([`Hub::adopt`]); the read model
//! computes Host status from it like every other status, and the write-back writes it. The hub
//! pushes a version only once it is in Host status.
//!
//! Versions continue from Host status (`desiredScheduleVersion` and its digest), so a restart,
//! a new leader or a no-op change bumps nothing. Versions this process handed out but the Host
//! store has not shown yet are remembered, so a quick second change cannot hand out a version
//! twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::compile::{self, CompileError, Fleet, HostKey};
use crate::diagnostics::{Finding, Severity};
use crate::resources::{Backup, Host, Kind, Phase, Restore};
use crate::revision::{Revision, name_of, namespace_of};
use crate::validate::{Mode, validate};
use crate::versions::{self, Versioned};

pub use crate::resources::MANAGED_BY;
pub use crate::server::backend::Stores;
pub use crate::server::reconciler::Hub;

fn is_request(meta: &ObjectMeta) -> bool {
    let recorded = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY.0))
        .is_some_and(|v| v == MANAGED_BY.1);
    !recorded
}

/// Whether a Backup or Restore is a run request still to dispatch: created by a person and not
/// yet past Pending.
pub fn is_open_request(meta: &ObjectMeta, phase: Option<Phase>) -> bool {
    is_request(meta) && phase.is_none_or(|p| p == Phase::Pending)
}

/// Whether a run request is in the revision: until it has finished. One that is Dispatched or
/// Running stays in, so that a new leader, which has no record of it in its own database,
/// records it and sends it once more: the agent keys it by its job id, so it answers with the
/// run going on or the result it recorded (never running it twice), and its report of the run
/// has a record to land in instead of being refused as an unknown job.
pub fn is_unfinished_request(meta: &ObjectMeta, phase: Option<Phase>) -> bool {
    is_request(meta) && phase.is_none_or(|p| !crate::runs::is_final(p))
}

pub struct Context {
    pub stores: Stores,
    pub hub: Arc<dyn Hub>,
    /// Versions handed out by this process, ahead of the Host store.
    handed_out: Mutex<BTreeMap<HostKey, Versioned>>,
    /// The last compile, reused while no spec or label changed. An async lock: reconciles
    /// after a change wait for one compile instead of each compiling, without blocking threads.
    compiled: tokio::sync::Mutex<Option<Compiled>>,
}

/// A compiled revision and the fingerprint of the objects it came from.
struct Compiled {
    fingerprint: u64,
    revision: Arc<Revision>,
    fleet: Arc<Fleet>,
}

impl Context {
    pub fn new(stores: Stores, hub: Arc<dyn Hub>) -> Context {
        Context {
            stores,
            hub,
            handed_out: Mutex::new(BTreeMap::new()),
            compiled: tokio::sync::Mutex::new(None),
        }
    }

    /// The desired state in the stores, as one revision: every Repo, Host, Schedule and
    /// Notifier, and the open run requests.
    fn revision(&self) -> Revision {
        let s = &self.stores;
        Revision {
            repos: all(&s.repos).map(|o| (*o).clone()).collect(),
            hosts: all(&s.hosts).map(|o| (*o).clone()).collect(),
            schedules: all(&s.schedules).map(|o| (*o).clone()).collect(),
            backups: open_backups(&s.backups).map(|o| (*o).clone()).collect(),
            restores: open_restores(&s.restores).map(|o| (*o).clone()).collect(),
            notifiers: all(&s.notifiers).map(|o| (*o).clone()).collect(),
        }
    }

    /// The compiled desired state. Compiling takes the whole fleet, so it is done again only
    /// when a spec or a label changed (status writes change neither), not on every reconcile.
    async fn desired(&self) -> Result<(Arc<Revision>, Arc<Fleet>), ReconcileError> {
        let s = &self.stores;
        let fingerprint = fingerprint(all(&s.repos))
            ^ fingerprint(all(&s.hosts)).rotate_left(13)
            ^ fingerprint(all(&s.schedules)).rotate_left(26)
            ^ fingerprint(open_backups(&s.backups)).rotate_left(39)
            ^ fingerprint(open_restores(&s.restores)).rotate_left(52)
            ^ fingerprint(all(&s.notifiers)).rotate_left(7);
        let mut cache = self.compiled.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| c.fingerprint == fingerprint) {
            return Ok((c.revision.clone(), c.fleet.clone()));
        }
        let revision = Arc::new(self.revision());
        let input = revision.clone();
        // Validating and compiling a large fleet takes a while: off the async threads.
        let fleet = tokio::task::spawn_blocking(move || {
            // A run request that does not validate fails alone, when it is dispatched: a
            // person's typo in a Backup must not hold back every host's schedule.
            let errors: Vec<Finding> = validate(&input, Mode::Kubernetes)
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .filter(|f| !matches!(f.object.kind, Kind::Backup | Kind::Restore))
                .collect();
            if !errors.is_empty() {
                return Err(ReconcileError::Rejected(errors));
            }
            Ok(compile::compile(&input)?)
        })
        .await??;
        let fleet = Arc::new(fleet);
        *cache = Some(Compiled {
            fingerprint,
            revision: revision.clone(),
            fleet: fleet.clone(),
        });
        Ok((revision, fleet))
    }

    /// What `host` had: the newest of its status, what this process handed out since (ahead
    /// of the watch), and what its agent says it applied (a Host deleted and created again
    /// starts from its status anew, but its agent never accepts a lower version).
    fn previous_version(&self, key: &HostKey, host: &Host) -> Option<Versioned> {
        let handed_out = self.handed_out.lock().unwrap_or_else(|e| e.into_inner());
        // `max_by_key` keeps the last of equals: the agent's report counts only when newer.
        [
            self.hub.applied(key),
            handed_out.get(key).cloned(),
            host.status.as_ref().and_then(versions::held),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|v| v.version)
    }
}

fn all<K>(store: &Store<K>) -> impl Iterator<Item = Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().into_iter()
}

fn open_backups(store: &Store<Backup>) -> impl Iterator<Item = Arc<Backup>> {
    all(store)
        .filter(|b| is_unfinished_request(&b.metadata, b.status.as_ref().and_then(|s| s.run.phase)))
}

fn open_restores(store: &Store<Restore>) -> impl Iterator<Item = Arc<Restore>> {
    all(store)
        .filter(|r| is_unfinished_request(&r.metadata, r.status.as_ref().and_then(|s| s.run.phase)))
}

/// An order-independent digest of what compile reads of some objects ([`inputs`]).
fn fingerprint<K: Resource>(objects: impl Iterator<Item = Arc<K>>) -> u64 {
    let (sum, count) = objects.fold((0u64, 0u64), |(sum, count), o| {
        (sum.wrapping_add(inputs(&*o)), count + 1)
    });
    sum ^ count.rotate_left(32)
}

/// What a reconcile reads of a Repo, Host or Schedule, as a digest: its identity, its
/// generation (the API server bumps it on spec changes only) and its labels (selectors). Status
/// writes, the controller's own included, change none of it, so they neither recompile the
/// fleet nor trigger a reconcile ([`Triggers`](super::run::Triggers)).
pub fn inputs<K: Resource>(object: &K) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let m = object.meta();
    (&m.namespace, &m.name, &m.uid, m.generation, &m.labels).hash(&mut h);
    h.finish()
}

/// [`inputs`] of a Repo, Host or Schedule, as a trigger key: every one is in the revision.
pub fn desired_inputs<K: Resource>(object: &K) -> Option<u64> {
    Some(inputs(object))
}

/// [`inputs`] of a Backup while it is in the revision (an unfinished run request), `None`
/// otherwise: the records Holdfast writes and finished requests are read by no reconcile.
/// Its phase moving on while unfinished (`Pending`, `Dispatched`, `Running`: the leader's
/// own status writes) changes nothing a reconcile reads; leaving the revision does.
pub fn backup_inputs(b: &Backup) -> Option<u64> {
    is_unfinished_request(&b.metadata, b.status.as_ref().and_then(|s| s.run.phase))
        .then(|| inputs(b))
}

/// [`backup_inputs`], for a Restore.
pub fn restore_inputs(r: &Restore) -> Option<u64> {
    is_unfinished_request(&r.metadata, r.status.as_ref().and_then(|s| s.run.phase))
        .then(|| inputs(r))
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the fleet does not validate; the version in force stays: {}", describe(.0))]
    Rejected(Vec<Finding>),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("compiling the fleet stopped: {0}")]
    Stopped(#[from] tokio::task::JoinError),
}

fn describe(findings: &[Finding]) -> String {
    let each: Vec<String> = findings
        .iter()
        .map(|f| format!("{} {}: {}", f.object, f.field, f.message))
        .collect();
    each.join("; ")
}

/// Computes one Host's desired version and hands it to the hub.
pub fn reconcile(
    host: Arc<Host>,
    ctx: Arc<Context>,
) -> BoxFuture<'static, Result<Action, ReconcileError>> {
    Box::pin(async move {
        let key = HostKey::new(namespace_of(&*host), name_of(&*host));
        let (revision, fleet) = match ctx.desired().await {
            Ok(desired) => desired,
            Err(e) => {
                // The hub marks the objects at fault, and each gets a RevisionRejected Event.
                if let ReconcileError::Rejected(findings) = &e {
                    ctx.hub.rejected(findings);
                }
                return Err(e);
            }
        };
        let Some(compiled) = fleet.hosts.get(&key) else {
            return Ok(Action::await_change());
        };
        let previous = ctx.previous_version(&key, &host);
        let version = versions::continue_from(previous.as_ref(), &compiled.digest);
        if previous.as_ref() != Some(&version) {
            ctx.handed_out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone(), version.clone());
        }
        ctx.hub.adopt(&revision, &fleet, &key, version);
        Ok(Action::await_change())
    })
}

/// Retries a failed reconcile after a pause: a fix anywhere in the fleet may clear a compile
/// error, and the fixing change may be a deletion in another namespace.
pub fn error_policy(host: Arc<Host>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!(host = name_of(&*host), "reconcile failed: {error}");
    Action::requeue(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use kube::runtime::reflector::{self, ObjectRef, store::Writer};
    use kube::runtime::{Config, applier, watcher};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use crate::resources::{HostStatus, Repo, Schedule};

    use super::*;

    /// What agents applied, as a test sets it; versions adopted, kept instead of pushed.
    #[derive(Default)]
    struct MemoryHub {
        applied: Mutex<BTreeMap<HostKey, Versioned>>,
        adopted: Mutex<Vec<(HostKey, Versioned, usize)>>,
        rejected: Mutex<Vec<String>>,
    }

    impl Hub for MemoryHub {
        fn applied(&self, host: &HostKey) -> Option<Versioned> {
            self.applied
                .lock()
                .expect("not poisoned")
                .get(host)
                .cloned()
        }

        fn adopt(
            &self,
            revision: &Arc<Revision>,
            _fleet: &Arc<Fleet>,
            host: &HostKey,
            version: Versioned,
        ) {
            self.adopted.lock().expect("not poisoned").push((
                host.clone(),
                version,
                revision.backups.len(),
            ));
        }

        fn rejected(&self, findings: &[Finding]) {
            let mut rejected = self.rejected.lock().expect("not poisoned");
            *rejected = findings.iter().map(|f| f.object.to_string()).collect();
        }
    }

    /// Reflector stores fed with fixture objects, as watches would feed them.
    struct World {
        hosts: Writer<Host>,
        schedules: Writer<Schedule>,
        backups: Writer<Backup>,
        ctx: Arc<Context>,
        hub: Arc<MemoryHub>,
    }

    fn from_yaml<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
        serde_yaml::from_str(yaml).expect("a fixture object")
    }

    fn host(name: &str, role: &str) -> Host {
        from_yaml(&format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: fleet, generation: 1, labels: {{role: {role}}}}}\nspec: {{defaultRepo: nas}}\n"
        ))
    }

    fn schedule(name: &str, role: &str, path: &str) -> Schedule {
        from_yaml(&format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Schedule\nmetadata: {{name: {name}, namespace: fleet, generation: 1}}\nspec: {{operation: backup, cron: '0 1 * * *', hostSelector: {{matchLabels: {{role: {role}}}}}, paths: [{path}]}}\n"
        ))
    }

    /// The initial list of a watch: the store is ready (the applier waits for that) once it ends.
    fn list<K>(writer: &mut Writer<K>, objects: Vec<K>)
    where
        K: kube::runtime::reflector::Lookup + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }

    const REPO: &str = "apiVersion: holdfast.dev/v1alpha1\nkind: Repo\nmetadata: {name: nas, namespace: fleet, generation: 1}\nspec: {url: /srv/restic, password: {hostFile: /etc/holdfast/nas.password}}\n";

    impl World {
        /// Three hosts, two web and one db, each with its own schedule; `hosts` may carry
        /// status from before.
        fn new(hosts: Vec<Host>) -> World {
            let (repo_store, mut repos) = reflector::store::<Repo>();
            let (host_store, mut host_writer) = reflector::store::<Host>();
            let (schedule_store, mut schedule_writer) = reflector::store::<Schedule>();
            let (backup_store, mut backup_writer) = reflector::store::<Backup>();
            let (restore_store, mut restore_writer) = reflector::store::<Restore>();
            let (notifier_store, mut notifier_writer) =
                reflector::store::<crate::resources::Notifier>();
            list(&mut backup_writer, vec![]);
            list(&mut restore_writer, vec![]);
            list(&mut notifier_writer, vec![]);
            let (snapshot_store, mut snapshot_writer) =
                reflector::store::<crate::resources::Snapshot>();
            list(&mut snapshot_writer, vec![]);
            list(&mut repos, vec![from_yaml(REPO)]);
            list(&mut host_writer, hosts);
            list(
                &mut schedule_writer,
                vec![
                    schedule("web-nightly", "web", "/srv/www"),
                    schedule("db-nightly", "db", "/var/lib/db"),
                ],
            );
            let hub = Arc::new(MemoryHub::default());
            let stores = Stores {
                repos: repo_store,
                hosts: host_store,
                schedules: schedule_store,
                backups: backup_store,
                restores: restore_store,
                notifiers: notifier_store,
                snapshots: snapshot_store,
            };
            let ctx = Arc::new(Context::new(stores, hub.clone()));
            World {
                hosts: host_writer,
                schedules: schedule_writer,
                backups: backup_writer,
                ctx,
                hub,
            }
        }

        /// Reconciles every host once through the applier; returns what each was handed.
        async fn reconcile_all(&mut self) -> Vec<(HostKey, Versioned, usize)> {
            let refs: Vec<ObjectRef<Host>> = self
                .ctx
                .stores
                .hosts
                .state()
                .iter()
                .map(|h| ObjectRef::from_obj(&**h))
                .collect();
            let (tx, rx) = mpsc::unbounded_channel();
            for r in &refs {
                tx.send(Ok::<_, std::convert::Infallible>(r.clone()))
                    .expect("the queue is open");
            }
            let results: Vec<_> = applier(
                reconcile,
                error_policy,
                self.ctx.clone(),
                self.ctx.stores.hosts.clone(),
                UnboundedReceiverStream::new(rx),
                Config::default(),
            )
            .take(refs.len())
            .collect()
            .await;
            for r in &results {
                assert!(r.is_ok(), "reconcile failed: {r:?}");
            }
            self.adopted()
        }

        /// [`World::reconcile_all`], the version each host was handed by name.
        async fn versions(&mut self) -> BTreeMap<String, u64> {
            versions(&self.reconcile_all().await)
        }

        /// What the write-back does: each version handed out goes into its Host's status.
        fn write_versions(&mut self, adopted: &[(HostKey, Versioned, usize)]) {
            for (key, version, _) in adopted {
                let stored = self
                    .ctx
                    .stores
                    .hosts
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
                    .expect("the host is in the store");
                let mut h = (*stored).clone();
                let status = h.status.get_or_insert_with(HostStatus::default);
                status.desired_schedule_version = Some(version.version);
                status.desired_schedule_digest = Some(version.digest.clone());
                self.hosts.apply_watcher_event(&watcher::Event::Apply(h));
            }
        }

        /// A spec edit, as the API server records it: with the next generation.
        fn edit_schedule(&mut self, mut s: Schedule) {
            let before = self
                .ctx
                .stores
                .schedules
                .state()
                .into_iter()
                .find(|o| o.metadata.name == s.metadata.name)
                .and_then(|o| o.metadata.generation)
                .unwrap_or(0);
            s.metadata.generation = Some(before + 1);
            self.schedules
                .apply_watcher_event(&watcher::Event::Apply(s));
        }

        fn adopted(&self) -> Vec<(HostKey, Versioned, usize)> {
            let mut adopted = std::mem::take(&mut *self.hub.adopted.lock().expect("not poisoned"));
            adopted.sort_by(|a, b| a.0.cmp(&b.0));
            adopted
        }

        fn agent_runs(&self, host: &str, version: u64) {
            self.hub.applied.lock().expect("not poisoned").insert(
                HostKey::new("fleet", host),
                Versioned {
                    version,
                    digest: "what the agent runs".into(),
                },
            );
        }
    }

    fn fleet() -> Vec<Host> {
        vec![
            host("web-1", "web"),
            host("web-2", "web"),
            host("db-1", "db"),
        ]
    }

    #[tokio::test]
    async fn a_schedule_edit_bumps_exactly_the_matching_hosts() {
        let mut world = World::new(fleet());
        let first = world.versions().await;
        assert_eq!(
            first,
            BTreeMap::from([("db-1".into(), 1), ("web-1".into(), 1), ("web-2".into(), 1)]),
            "every host gets its first version"
        );

        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-2"));
        let second = world.versions().await;
        assert_eq!(
            second,
            BTreeMap::from([("db-1".into(), 1), ("web-1".into(), 2), ("web-2".into(), 2)]),
            "only the web hosts change"
        );
        // Reconciled again before the write-back wrote the versions: nothing is handed out
        // twice.
        assert_eq!(world.versions().await, second);
    }

    fn versions(adopted: &[(HostKey, Versioned, usize)]) -> BTreeMap<String, u64> {
        adopted
            .iter()
            .map(|(k, v, _)| (k.name.clone(), v.version))
            .collect()
    }

    #[tokio::test]
    async fn a_restart_from_stored_status_bumps_nothing() {
        let mut world = World::new(fleet());
        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-2"));
        world.reconcile_all().await;
        world.edit_schedule(schedule("web-nightly", "web", "/srv/www-3"));
        let last = world.reconcile_all().await;
        assert_eq!(versions(&last)["web-1"], 2);
        world.write_versions(&last);
        let before: Vec<Host> = world
            .ctx
            .stores
            .hosts
            .state()
            .iter()
            .map(|h| (**h).clone())
            .collect();

        // A new process (a restart, or another replica taking the lease) with the same objects.
        let mut restarted = World::new(before);
        restarted.edit_schedule(schedule("web-nightly", "web", "/srv/www-3"));
        let again = restarted.reconcile_all().await;
        assert_eq!(
            again.iter().map(|(k, v, _)| (k, v)).collect::<Vec<_>>(),
            last.iter().map(|(k, v, _)| (k, v)).collect::<Vec<_>>(),
            "the versions (and digests) in Host status, unchanged"
        );
    }

    #[tokio::test]
    async fn a_fleet_that_does_not_validate_is_rejected_with_a_warning_and_changes_no_version() {
        let mut world = World::new(fleet());
        let first = world.reconcile_all().await;
        world.write_versions(&first);
        let mut broken = schedule("web-nightly", "web", "/srv/www-2");
        broken.spec.repo = Some("missing".into());
        world.edit_schedule(broken);
        let refs: Vec<ObjectRef<Host>> = world
            .ctx
            .stores
            .hosts
            .state()
            .iter()
            .map(|h| ObjectRef::from_obj(&**h))
            .collect();
        for r in refs {
            let host = world.ctx.stores.hosts.get(&r).expect("in the store");
            let result = reconcile(host, world.ctx.clone()).await;
            assert!(
                matches!(result, Err(ReconcileError::Rejected(_))),
                "{result:?}"
            );
        }
        assert!(world.adopted().is_empty(), "no version is handed out");
        assert_eq!(
            *world.hub.rejected.lock().expect("not poisoned"),
            ["Schedule/fleet/web-nightly"],
            "the hub learns which object is at fault"
        );
    }

    #[tokio::test]
    async fn a_label_change_moves_a_host_to_other_schedules() {
        let mut world = World::new(fleet());
        let first = world.reconcile_all().await;
        world.write_versions(&first);
        // Labels are metadata: the API server does not bump the generation for them, and the
        // compiled fleet must not be reused.
        let mut moved = host("db-1", "web");
        moved.status = world
            .ctx
            .stores
            .hosts
            .get(&ObjectRef::new("db-1").within("fleet"))
            .and_then(|h| h.status.clone());
        world
            .hosts
            .apply_watcher_event(&watcher::Event::Apply(moved));
        let after = world.versions().await;
        assert_eq!(after["db-1"], 2);
        assert_eq!(after["web-1"], 1, "web-1's plan is the same");
    }

    #[tokio::test]
    async fn a_host_created_again_continues_above_what_its_agent_runs() {
        // The Host object was deleted and created again: no status, but its agent still runs
        // version 7 and would refuse anything lower.
        let mut world = World::new(fleet());
        world.agent_runs("web-1", 7);
        let versions = world.versions().await;
        assert_eq!(versions["web-1"], 8);
        assert_eq!(versions["web-2"], 1);
    }

    fn backup(name: &str, extra: &str) -> Backup {
        from_yaml(&format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Backup\nmetadata: {{name: {name}, namespace: fleet, generation: 1{extra}}}\nspec: {{host: web-1, schedule: web-nightly}}\n"
        ))
    }

    #[tokio::test]
    async fn open_run_requests_join_the_revision_and_records_do_not() {
        let mut world = World::new(fleet());
        let request = backup("by-hand", "");
        let record = backup(
            "web-nightly-web-1-29400000",
            ", labels: {app.kubernetes.io/managed-by: holdfast}",
        );
        let mut dispatched = backup("earlier", "");
        dispatched.status = Some(
            serde_json::from_value(serde_json::json!({"phase": "Dispatched"})).expect("a status"),
        );
        let mut done = backup("done", "");
        done.status = Some(
            serde_json::from_value(serde_json::json!({"phase": "Succeeded"})).expect("a status"),
        );
        list(&mut world.backups, vec![request, record, dispatched, done]);
        let requests: Vec<usize> = world
            .reconcile_all()
            .await
            .into_iter()
            .map(|(_, _, n)| n)
            .collect();
        assert_eq!(
            requests,
            [2, 2, 2],
            "`by-hand` to dispatch, and `earlier` still going (a new leader sends it once more); not the record, not the finished one"
        );
        let meta = backup("x", "").metadata;
        assert!(is_open_request(&meta, Some(Phase::Pending)));
        assert!(!is_open_request(&meta, Some(Phase::Running)));
        assert!(is_unfinished_request(&meta, Some(Phase::Running)));
        assert!(!is_unfinished_request(&meta, Some(Phase::Succeeded)));
    }

    #[tokio::test]
    async fn a_run_request_that_does_not_validate_holds_back_nothing() {
        let mut world = World::new(fleet());
        let mut typo = backup("by-hand", "");
        typo.spec.host = "web-9".into();
        list(&mut world.backups, vec![typo]);
        let versions = world.versions().await;
        assert_eq!(versions.len(), 3, "every host gets its version");
        assert!(
            world.hub.rejected.lock().expect("not poisoned").is_empty(),
            "nothing at fault"
        );
    }
}
