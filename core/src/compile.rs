//! Compile: a pure function from a validated revision to every host's plan and its digest.
//!
//! A plan is the sorted, fully resolved list of schedules one host runs. Its canonical
//! serialisation is its JSON (fields in declaration order, lists in a fixed order), and its
//! digest the SHA-256 of that: the same desired state always yields the same bytes, whatever the
//! order of files and documents, comments or whitespace.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use kube::ResourceExt;
use protocol::{
    BackupParams, CheckParams, DrillParams, EnvValue, ForgetParams, Hook, HostPlan, Operation,
    ResolvedEnv, ResolvedRepo, ResolvedSchedule, RestoreRequest, SecretRef,
};
use sha2::{Digest, Sha256};

use crate::cronspec::{self, CronSpecError};
use crate::resources::{
    Backup, DEFAULT_DRILL_MAX_BYTES, DEFAULT_DRILL_SAMPLE_FILES, DrillSpec, EnvVar, HookSpec, Host,
    Repo, Restore, Schedule, SecretSource,
};
use crate::revision::{Revision, name_of, namespace_of};
use crate::select::HostIndex;
use crate::validate::{DurationError, parse_duration};

/// A hook without a timeout is killed after this long.
pub const DEFAULT_HOOK_TIMEOUT_SECONDS: u32 = 600;
const DEFAULT_TIME_ZONE: &str = "UTC";

/// A host, by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostKey {
    pub namespace: String,
    pub name: String,
}

impl HostKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        HostKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// `name` in the default namespace, `namespace/name` elsewhere.
impl fmt::Display for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace == crate::resources::DEFAULT_NAMESPACE {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// One host's plan and its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledHost {
    pub plan: HostPlan,
    /// `sha256:` and the hex digest of [`canonical`].
    pub digest: String,
}

/// Every host's plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    pub hosts: BTreeMap<HostKey, CompiledHost>,
}

/// Something validation should have rejected; compile refuses rather than guess.
#[derive(Debug, thiserror::Error)]
#[error("cannot compile Schedule {schedule} for host {host}: {reason}")]
pub struct CompileError {
    pub schedule: String,
    pub host: String,
    #[source]
    pub reason: ResolveError,
}

/// Why a schedule, a Backup request or a Restore request does not resolve.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Boxed: the largest variant by far, and rare.
    #[error(transparent)]
    Cron(Box<CronSpecError>),
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("no repo: the schedule names none and the host has no defaultRepo")]
    ScheduleWithoutRepo,
    #[error("no repo: the request names none and the host has no defaultRepo")]
    RequestWithoutRepo,
    #[error("no repo: name one, or give the source host a defaultRepo")]
    RestoreWithoutRepo,
    #[error("no Repo `{0}`")]
    UnknownRepo(String),
    #[error("no Host `{0}`")]
    UnknownHost(String),
    #[error("no Schedule `{0}`")]
    UnknownSchedule(String),
    #[error("env `{0}` sets neither or both of value and valueFrom")]
    AmbiguousEnv(String),
    #[error("a secret source must set exactly one of secretKeyRef, file and hostFile")]
    AmbiguousSecretSource,
    #[error("a {0:?} request needs a schedule to take its parameters from")]
    NeedsSchedule(Operation),
    #[error("Backup `{0}` has no snapshot")]
    NoSnapshot(String),
}

impl From<CronSpecError> for ResolveError {
    fn from(e: CronSpecError) -> Self {
        ResolveError::Cron(Box::new(e))
    }
}

/// The bytes a plan's digest is taken over.
pub fn canonical(plan: &HostPlan) -> Vec<u8> {
    // Serialising plain structs, strings and numbers to JSON cannot fail.
    serde_json::to_vec(plan).unwrap_or_default()
}

pub fn digest(plan: &HostPlan) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(canonical(plan))))
}

/// Compiles every host of a validated revision.
pub fn compile(revision: &Revision) -> Result<Fleet, CompileError> {
    let repos: HashMap<(&str, &str), &Repo> = revision
        .repos
        .iter()
        .map(|r| ((namespace_of(r), name_of(r)), r))
        .collect();
    let index = HostIndex::new(&revision.hosts);

    // What each host runs, before resolution.
    let mut assigned: BTreeMap<HostKey, (&Host, Vec<&Schedule>)> = revision
        .hosts
        .iter()
        .map(|h| {
            (
                HostKey::new(namespace_of(h), &h.name_any()),
                (h, Vec::new()),
            )
        })
        .collect();
    for schedule in &revision.schedules {
        for host in index.select(schedule) {
            if let Some((_, list)) =
                assigned.get_mut(&HostKey::new(namespace_of(host), &host.name_any()))
            {
                list.push(schedule);
            }
        }
    }

    // The host-independent part of each schedule, once.
    let schedules = revision.index().schedules;
    let mut templates: HashMap<(&str, &str), Template> = HashMap::new();
    for schedule in &revision.schedules {
        let name = name_of(schedule);
        templates.insert(
            (namespace_of(schedule), name),
            Template::new(schedule, &schedules)?,
        );
    }

    let mut plans = Vec::with_capacity(assigned.len());
    for (key, (host, mut schedules)) in assigned {
        schedules.sort_by_key(|s| name_of(*s));
        let mut resolved = Vec::with_capacity(schedules.len());
        for schedule in schedules {
            let name = name_of(schedule);
            let template = &templates[&(key.namespace.as_str(), name)];
            resolved.push(template.for_host(schedule, host, &key, &repos)?);
        }
        let plan = HostPlan {
            namespace: key.namespace.clone(),
            host: key.name.clone(),
            paused: host.spec.paused,
            schedules: resolved,
        };
        plans.push((key, plan));
    }

    let initializers = Initializers::of(plans.iter().flat_map(|(_, plan)| {
        plan.schedules.iter().map(move |s| {
            let repo = &s.repo;
            (
                plan.namespace.as_str(),
                repo.name.as_str(),
                repo.initialize,
                plan.host.as_str(),
                plan.paused,
            )
        })
    }));
    let mut fleet = Fleet::default();
    for (key, mut plan) in plans {
        for schedule in &mut plan.schedules {
            initializers.designate(&key, &mut schedule.repo);
        }
        let digest = digest(&plan);
        fleet.hosts.insert(key, CompiledHost { plan, digest });
    }
    Ok(fleet)
}

/// For each repo that is initialised on first use, the one host that may run `restic init`.
/// Two concurrent `init`s of one repository each write a key and a config for their own master
/// key and leave it unusable, so hosts sharing a repo must never race for it.
#[derive(Debug, Default)]
struct Initializers(HashMap<(String, String), (bool, String)>);

impl Initializers {
    /// From every (namespace, repo, host, host paused) that uses a repo: the first host by name
    /// that is not paused (a paused host would hold the others back), else the first host.
    fn of<'a>(uses: impl Iterator<Item = (&'a str, &'a str, bool, &'a str, bool)>) -> Self {
        let mut chosen: HashMap<(String, String), (bool, String)> = HashMap::new();
        for (namespace, repo, _, host, paused) in uses.filter(|u| u.2) {
            let candidate = (paused, host.to_string());
            chosen
                .entry((namespace.to_string(), repo.to_string()))
                .and_modify(|c| {
                    if candidate < *c {
                        *c = candidate.clone();
                    }
                })
                .or_insert(candidate);
        }
        Initializers(chosen)
    }

    /// The same choice from a revision alone, for a request compiled on its own: which hosts
    /// use which repo, without resolving their plans.
    fn of_revision(revision: &Revision) -> Self {
        let index = revision.index();
        let hosts = HostIndex::new(&revision.hosts);
        let mut uses = Vec::new();
        for schedule in &revision.schedules {
            if schedule.spec.operation == Operation::Drill {
                continue;
            }
            let namespace = namespace_of(schedule);
            for host in hosts.select(schedule) {
                let Some(repo) = schedule
                    .spec
                    .repo
                    .as_deref()
                    .or(host.spec.default_repo.as_deref())
                    .and_then(|name| index.repos.get(&(namespace, name)))
                else {
                    continue;
                };
                uses.push((namespace, name_of(*repo), repo.spec.initialize, host));
            }
        }
        Initializers::of(uses.into_iter().map(|(namespace, repo, initialize, host)| {
            (namespace, repo, initialize, name_of(host), host.spec.paused)
        }))
    }

    /// Leaves `init` to the designated host: any other host waits for it.
    fn designate(&self, host: &HostKey, repo: &mut ResolvedRepo) {
        let key = (host.namespace.clone(), repo.name.clone());
        if let Some((_, initializer)) = self.0.get(&key).filter(|(_, h)| *h != host.name)
            && repo.initialize
        {
            repo.initialize = false;
            repo.initialized_by = Some(initializer.clone());
        }
    }
}

/// What a schedule resolves to on every host alike.
struct Template {
    cron: String,
    time_zone: String,
    jitter_window_seconds: u64,
    forget: Option<ForgetParams>,
    check: Option<CheckParams>,
    /// Without its source host, which defaults to each host itself.
    drill: Option<DrillParams>,
    /// A drill reads the repo its backup schedule writes, unless it names one.
    backup_repo: Option<String>,
}

impl Template {
    fn new(
        schedule: &Schedule,
        schedules: &HashMap<(&str, &str), &Schedule>,
    ) -> Result<Self, CompileError> {
        let spec = &schedule.spec;
        let fail = |reason: ResolveError| CompileError {
            schedule: schedule.name_any(),
            host: "*".into(),
            reason,
        };
        let cron = cronspec::parse(&spec.cron)
            .map_err(|e| fail(e.into()))?
            .normalized;
        let time_zone = spec
            .time_zone
            .clone()
            .unwrap_or_else(|| DEFAULT_TIME_ZONE.into());
        let jitter_window_seconds = match &spec.jitter {
            Some(j) => parse_duration(j).map_err(|e| fail(e.into()))?.as_secs(),
            None => 0,
        };
        let forget = (spec.operation == Operation::Forget).then(|| ForgetParams {
            retention: spec.retention.clone().unwrap_or_default(),
            tags: spec.tags.clone(),
            prune: spec.prune,
        });
        let check = (spec.operation == Operation::Check).then(|| CheckParams {
            read_data_subset: spec.read_data_subset.clone(),
            read_data_rotate: spec.read_data_rotate,
        });
        let drill = match spec.operation {
            Operation::Drill => Some(
                drill_params(
                    namespace_of(schedule),
                    spec.drill.as_ref().unwrap_or(&DrillSpec::default()),
                    schedules,
                )
                .map_err(fail)?,
            ),
            _ => None,
        };
        let backup_repo = spec
            .drill
            .as_ref()
            .filter(|_| spec.operation == Operation::Drill)
            .and_then(|d| d.backup_schedule.as_deref())
            .and_then(|b| schedules.get(&(namespace_of(schedule), b)))
            .and_then(|b| b.spec.repo.clone());
        Ok(Template {
            cron,
            time_zone,
            jitter_window_seconds,
            forget,
            check,
            drill,
            backup_repo,
        })
    }

    fn for_host(
        &self,
        schedule: &Schedule,
        host: &Host,
        key: &HostKey,
        repos: &HashMap<(&str, &str), &Repo>,
    ) -> Result<ResolvedSchedule, CompileError> {
        let spec = &schedule.spec;
        let name = schedule.name_any();
        let fail = |reason: ResolveError| CompileError {
            schedule: name.clone(),
            host: key.name.clone(),
            reason,
        };
        let repo_name = spec
            .repo
            .as_deref()
            .or(self.backup_repo.as_deref())
            .or(host.spec.default_repo.as_deref())
            .ok_or_else(|| fail(ResolveError::ScheduleWithoutRepo))?;
        let repo = repos
            .get(&(key.namespace.as_str(), repo_name))
            .ok_or_else(|| fail(ResolveError::UnknownRepo(repo_name.to_string())))?;
        let repo = resolve_repo(repo, spec.operation).map_err(fail)?;
        let backup = match spec.operation {
            Operation::Backup => Some(backup_params(schedule, host).map_err(fail)?),
            _ => None,
        };
        let drill = self.drill.clone().map(|d| DrillParams {
            source_host: match d.source_host.is_empty() {
                true => key.name.clone(),
                false => d.source_host,
            },
            ..d
        });
        Ok(ResolvedSchedule {
            jitter_seconds: jitter(self.jitter_window_seconds, key, &name),
            name,
            operation: spec.operation,
            cron: self.cron.clone(),
            time_zone: self.time_zone.clone(),
            repo,
            backup,
            forget: self.forget.clone(),
            check: self.check.clone(),
            drill,
            concurrency_policy: spec.concurrency_policy,
            missed_run_policy: spec.missed_run_policy,
            suspend: spec.suspend,
        })
    }
}

/// A fixed offset within the jitter window, the same on every compile: hosts sharing a cron
/// spread out, and a host's own runs stay evenly spaced.
fn jitter(window_seconds: u64, host: &HostKey, schedule: &str) -> u32 {
    if window_seconds == 0 {
        return 0;
    }
    let seed = Sha256::digest(format!("{}/{}/{}", host.namespace, schedule, host.name));
    let mut first = [0u8; 8];
    first.copy_from_slice(&seed[..8]);
    let offset = u64::from_be_bytes(first) % window_seconds;
    u32::try_from(offset).unwrap_or(u32::MAX)
}

/// A drill's parameters but for a default source host (left empty): the snapshots of a backup
/// schedule are those with its tags and paths.
fn drill_params(
    namespace: &str,
    drill: &DrillSpec,
    schedules: &HashMap<(&str, &str), &Schedule>,
) -> Result<DrillParams, ResolveError> {
    let (tags, paths) = match &drill.backup_schedule {
        Some(name) => {
            let backup = schedules
                .get(&(namespace, name.as_str()))
                .ok_or_else(|| ResolveError::UnknownSchedule(name.clone()))?;
            (backup.spec.tags.clone(), backup.spec.paths.clone())
        }
        None => (Vec::new(), Vec::new()),
    };
    let sample = drill.include.is_empty();
    Ok(DrillParams {
        source_host: drill.source_host.clone().unwrap_or_default(),
        tags,
        paths,
        include: drill.include.clone(),
        sample_files: match sample {
            true => drill.sample_files.unwrap_or(DEFAULT_DRILL_SAMPLE_FILES),
            false => 0,
        },
        max_bytes: match sample {
            true => drill.max_bytes.unwrap_or(DEFAULT_DRILL_MAX_BYTES),
            false => 0,
        },
    })
}

fn backup_params(schedule: &Schedule, host: &Host) -> Result<BackupParams, ResolveError> {
    let spec = &schedule.spec;
    let defaults = &host.spec.defaults;
    let mut excludes: Vec<String> = Vec::new();
    for pattern in defaults.excludes.iter().chain(&spec.excludes) {
        if !excludes.contains(pattern) {
            excludes.push(pattern.clone());
        }
    }
    let hooks = spec.hooks.as_ref().or(defaults.hooks.as_ref());
    let convert = |hooks: &[HookSpec]| hooks.iter().map(hook).collect::<Result<Vec<_>, _>>();
    Ok(BackupParams {
        paths: spec.paths.clone(),
        excludes,
        tags: spec.tags.clone(),
        pre_hooks: convert(hooks.map(|h| h.pre.as_slice()).unwrap_or_default())?,
        post_hooks: convert(hooks.map(|h| h.post.as_slice()).unwrap_or_default())?,
        limits: spec.limits.or(defaults.limits).unwrap_or_default(),
    })
}

fn hook(spec: &HookSpec) -> Result<Hook, ResolveError> {
    let timeout_seconds = match &spec.timeout {
        Some(t) => u32::try_from(parse_duration(t)?.as_secs()).unwrap_or(u32::MAX),
        None => DEFAULT_HOOK_TIMEOUT_SECONDS,
    };
    Ok(Hook {
        command: spec.command.clone(),
        timeout_seconds,
    })
}

/// The access an operation uses: forget and prune take the privileged one where declared.
fn resolve_repo(repo: &Repo, operation: Operation) -> Result<ResolvedRepo, ResolveError> {
    let spec = &repo.spec;
    let admin = match operation {
        Operation::Forget | Operation::Prune => spec.admin.as_ref(),
        Operation::Backup | Operation::Check | Operation::Drill => None,
    };
    let mut env: BTreeMap<&str, &EnvVar> = spec.env.iter().map(|e| (e.name.as_str(), e)).collect();
    if let Some(admin) = admin {
        env.extend(admin.env.iter().map(|e| (e.name.as_str(), e)));
    }
    let env = env
        .into_values()
        .map(|var| {
            let value = match (&var.value, &var.value_from) {
                (Some(v), None) => EnvValue::Plain(v.clone()),
                (None, Some(source)) => EnvValue::Secret(secret_ref(source)?),
                _ => return Err(ResolveError::AmbiguousEnv(var.name.clone())),
            };
            Ok(ResolvedEnv {
                name: var.name.clone(),
                value,
            })
        })
        .collect::<Result<Vec<_>, ResolveError>>()?;
    Ok(ResolvedRepo {
        name: repo.name_any(),
        url: admin
            .and_then(|a| a.url.clone())
            .unwrap_or_else(|| spec.url.clone()),
        password: secret_ref(
            admin
                .and_then(|a| a.password.as_ref())
                .unwrap_or(&spec.password),
        )?,
        env,
        // A drill reads what exists: it never creates a repository.
        initialize: spec.initialize && operation != Operation::Drill,
        initialized_by: None,
    })
}

fn secret_ref(source: &SecretSource) -> Result<SecretRef, ResolveError> {
    match (&source.secret_key_ref, &source.file, &source.host_file) {
        (Some(s), None, None) => Ok(SecretRef::SecretKey {
            name: s.name.clone(),
            key: s.key.clone(),
        }),
        (None, Some(path), None) => Ok(SecretRef::ControllerFile { path: path.clone() }),
        (None, None, Some(path)) => Ok(SecretRef::HostFile { path: path.clone() }),
        _ => Err(ResolveError::AmbiguousSecretSource),
    }
}

/// What a Backup request (a Backup file) runs: its schedule resolved for its host, with the
/// repo it names instead of the schedule's; or, without a schedule, a prune or check of the
/// host's repo.
pub fn backup_request(
    revision: &Revision,
    backup: &Backup,
) -> Result<ResolvedSchedule, ResolveError> {
    let namespace = namespace_of(backup);
    let spec = &backup.spec;
    let index = revision.index();
    let host = index
        .hosts
        .get(&(namespace, spec.host.as_str()))
        .ok_or_else(|| ResolveError::UnknownHost(spec.host.clone()))?;
    let repos: HashMap<(&str, &str), &Repo> = index.repos.clone();
    let key = HostKey::new(namespace, &spec.host);
    let mut resolved = match &spec.schedule {
        Some(name) => {
            let schedule = index
                .schedules
                .get(&(namespace, name.as_str()))
                .ok_or_else(|| ResolveError::UnknownSchedule(name.clone()))?;
            Template::new(schedule, &index.schedules)
                .and_then(|t| t.for_host(schedule, host, &key, &repos))
                .map_err(|e| e.reason)?
        }
        None => {
            let operation = spec.operation.unwrap_or(Operation::Check);
            if !matches!(
                operation,
                Operation::Prune | Operation::Check | Operation::Drill
            ) {
                return Err(ResolveError::NeedsSchedule(operation));
            }
            let repo_name = spec
                .repo
                .as_deref()
                .or(host.spec.default_repo.as_deref())
                .ok_or(ResolveError::RequestWithoutRepo)?;
            let repo = repos
                .get(&(namespace, repo_name))
                .ok_or_else(|| ResolveError::UnknownRepo(repo_name.to_string()))?;
            ResolvedSchedule {
                name: name_of(backup).to_string(),
                operation,
                // Never used: a request runs once, now.
                cron: "0 0 0 1 1 *".into(),
                time_zone: DEFAULT_TIME_ZONE.into(),
                jitter_seconds: 0,
                repo: resolve_repo(repo, operation)?,
                backup: None,
                forget: None,
                check: (operation == Operation::Check).then(CheckParams::default),
                // The host's latest snapshot, with the default sample.
                drill: match operation {
                    Operation::Drill => Some(DrillParams {
                        source_host: spec.host.clone(),
                        ..drill_params(namespace, &DrillSpec::default(), &index.schedules)?
                    }),
                    _ => None,
                },
                concurrency_policy: Default::default(),
                missed_run_policy: Default::default(),
                suspend: false,
            }
        }
    };
    if let (Some(_), Some(repo_name)) = (&spec.schedule, &spec.repo) {
        let repo = repos
            .get(&(namespace, repo_name.as_str()))
            .ok_or_else(|| ResolveError::UnknownRepo(repo_name.to_string()))?;
        resolved.repo = resolve_repo(repo, resolved.operation)?;
    }
    if resolved.repo.initialize {
        Initializers::of_revision(revision).designate(&key, &mut resolved.repo);
    }
    Ok(resolved)
}

/// What a Restore request runs on its target host. `backup_snapshot` is the snapshot of the
/// Backup record it names, if it names one.
pub fn restore_request(
    revision: &Revision,
    restore: &Restore,
    backup_snapshot: Option<&str>,
) -> Result<RestoreRequest, ResolveError> {
    let namespace = namespace_of(restore);
    let spec = &restore.spec;
    let index = revision.index();
    let host = index
        .hosts
        .get(&(namespace, spec.host.as_str()))
        .ok_or_else(|| ResolveError::UnknownHost(spec.host.clone()))?;
    let schedule_repo = spec
        .schedule
        .as_deref()
        .and_then(|s| index.schedules.get(&(namespace, s)))
        .and_then(|s| s.spec.repo.as_deref());
    let repo_name = spec
        .repo
        .as_deref()
        .or(schedule_repo)
        .or(host.spec.default_repo.as_deref())
        .ok_or(ResolveError::RestoreWithoutRepo)?;
    let repo = index
        .repos
        .get(&(namespace, repo_name))
        .ok_or_else(|| ResolveError::UnknownRepo(repo_name.to_string()))?;
    let snapshot = match (&spec.snapshot, &spec.backup, &spec.schedule) {
        (Some(id), _, _) => id.clone(),
        (None, Some(backup), _) => backup_snapshot
            .ok_or_else(|| ResolveError::NoSnapshot(backup.clone()))?
            .to_string(),
        _ => "latest".into(),
    };
    Ok(RestoreRequest {
        // A restore reads what exists: it never creates a repository.
        repo: ResolvedRepo {
            initialize: false,
            ..resolve_repo(repo, Operation::Backup)?
        },
        snapshot,
        source_host: Some(spec.host.clone()),
        target_path: spec.target_path.clone(),
        include: spec.include.clone(),
        exclude: spec.exclude.clone(),
    })
}
