//! What files mode and Kubernetes mode do differently, as the agent hub and the status writer
//! see it: where credentials live, which secret values a push carries besides controller files,
//! whether this replica leads, what follows an agent's change, the objects a follower mirrors,
//! and where Events go. The backend is chosen once, where each mode is started; nothing else asks which mode
//! it is in.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::reflector::Store as Reflected;
use protocol::{ResolvedRepo, SecretValue};

use super::events::EventLog;
use crate::compile::HostKey;
use crate::decisions::Decision;
use crate::notify::KeyError;
use crate::resources::{Backup, Host, Notifier, Repo, Restore, Schedule, Snapshot};
use crate::store::{AuthError, Enrolled, NoRandomness, Store, StoreError};

/// Kubernetes mode's reflector stores of the desired state, as the cluster holds it.
#[derive(Clone)]
pub struct Stores {
    pub repos: Reflected<Repo>,
    pub hosts: Reflected<Host>,
    pub schedules: Reflected<Schedule>,
    pub backups: Reflected<Backup>,
    pub restores: Reflected<Restore>,
    pub notifiers: Reflected<Notifier>,
    /// The Snapshots the leader keeps in step with the store; nothing reconciles on them.
    pub snapshots: Reflected<Snapshot>,
}

/// Why a backend could not answer. An agent is told only that the controller failed (what it
/// can act on is an [`AuthError`]); the log says which of these it was.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    // Files mode: the credentials' database.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the credentials' database task failed: {0}")]
    StoreTaskFailed(#[source] tokio::task::JoinError),
    // Kubernetes mode: tokens and credentials in Secrets, and the Secret keys repos name.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
    #[error("cannot read the token's Secret: {0}")]
    ReadToken(#[source] kube::Error),
    #[error("cannot store the credential's Secret: {0}")]
    StoreCredential(#[source] kube::Error),
    #[error("cannot mark the token used: {0}")]
    MarkTokenUsed(#[source] kube::Error),
    #[error("cannot read the credential's Secret: {0}")]
    ReadCredential(#[source] kube::Error),
    #[error(transparent)]
    SecretKey(#[from] SecretKeyError),
}

/// Why a Secret key a Repo names cannot be sent (Kubernetes mode). It names the repo and the
/// reference, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error(
        "Repo {namespace}/{repo} names Secret {secret}, but the controller reads Secrets only in {}; move the Repo, or add its namespace with --namespace",
        .allowed.join(", ")
    )]
    NamespaceNotRead {
        namespace: String,
        repo: String,
        secret: String,
        /// The namespaces the controller reads Secrets in.
        allowed: Vec<String>,
    },
    #[error("Repo {namespace}/{repo} names Secret {secret}, which does not exist")]
    NoSuchSecret {
        namespace: String,
        repo: String,
        secret: String,
    },
    #[error("Repo {namespace}/{repo} names key {key} of Secret {secret}, which has no such key")]
    NoSuchKey {
        namespace: String,
        repo: String,
        secret: String,
        key: String,
    },
    /// A `Utf8Error`, not a `FromUtf8Error`, which would hold the secret's bytes.
    #[error("key {key} of Secret {namespace}/{secret} (Repo {repo}) is not UTF-8 text")]
    NotText {
        namespace: String,
        repo: String,
        secret: String,
        key: String,
        #[source]
        source: std::str::Utf8Error,
    },
}

/// An enrollment: the credential, a refusal a person can act on, or a failure of the backend.
pub type Enrollment = Result<Result<Enrolled, AuthError>, BackendError>;

pub trait Backend: Send + Sync {
    /// Trades a one-time token for a credential.
    fn enroll<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Enrollment>;
    /// The host a credential belongs to.
    fn authenticate<'a>(
        &'a self,
        credential: &'a str,
    ) -> BoxFuture<'a, Result<Option<HostKey>, BackendError>>;
    /// Why this replica does not talk to agents now, in one sentence; `None` when it does.
    fn refuses_agents(&self) -> Option<&'static str>;
    /// Whether this replica writes status (and the store is its to write).
    fn is_leading(&self) -> bool;
    /// The secret values a host's repos need beyond the controller's own files.
    fn secret_values(
        &self,
        namespace: &str,
        repos: &[&ResolvedRepo],
    ) -> Result<Vec<SecretValue>, BackendError>;
    /// What an agent says changed; the status writer has been told already.
    fn agent_changed(&self, host: &HostKey);
    /// Whether the source holds `version` of the host's schedule (in Kubernetes mode, in its
    /// Host status), so that it may be pushed: whoever assigns versions next continues above
    /// every version an agent was given.
    fn holds_version(&self, host: &HostKey, version: u64) -> bool;
    /// The objects as the source holds them, with the status written there: what a replica
    /// that does not lead shows, and what the leader compares its status with.
    fn observed(&self) -> Option<&Stores>;
    /// Records `decision` as an Event about `regarding`: in files mode in the controller's
    /// own log, in Kubernetes mode on the API server.
    fn record(&self, regarding: ObjectReference, decision: Decision);
    /// The Events the controller serves itself; `None` where the API server holds them.
    fn events(&self) -> Option<&EventLog>;
    /// A key of a Secret a Notifier names (Kubernetes mode).
    fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Result<String, KeyError>;
}

/// Files mode reads no Secrets (validation refuses `secretKeyRef` there).
fn no_secrets(namespace: &str, name: &str) -> KeyError {
    KeyError::NoSecrets {
        namespace: namespace.to_string(),
        secret: name.to_string(),
    }
}

/// Files mode: credentials in SQLite (a connection of their own, beside the controller's),
/// secret values only from the controller's files, always leading.
pub struct Files {
    credentials: Arc<Mutex<Store>>,
    events: EventLog,
}

impl Files {
    pub fn open(data_dir: &Path) -> Result<Files, StoreError> {
        Ok(Files {
            credentials: Arc::new(Mutex::new(Store::open(data_dir)?)),
            events: EventLog::default(),
        })
    }

    /// Runs `work` on the credentials' connection, on the blocking pool.
    fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, BackendError>> {
        let credentials = self.credentials.clone();
        Box::pin(async move {
            let done = tokio::task::spawn_blocking(move || {
                // A panic while holding the lock leaves SQLite consistent (transactions roll
                // back).
                let mut store = credentials.lock().unwrap_or_else(|e| e.into_inner());
                work(&mut store)
            })
            .await
            .map_err(BackendError::StoreTaskFailed)?;
            Ok(done?)
        })
    }
}

impl Backend for Files {
    fn enroll<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Enrollment> {
        let token = token.to_string();
        self.with_store(move |store| store.enroll(&token, chrono::Utc::now()))
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a str,
    ) -> BoxFuture<'a, Result<Option<HostKey>, BackendError>> {
        let credential = credential.to_string();
        self.with_store(move |store| store.authenticate(&credential))
    }

    fn refuses_agents(&self) -> Option<&'static str> {
        None
    }

    fn is_leading(&self) -> bool {
        true
    }

    fn secret_values(
        &self,
        _: &str,
        _: &[&ResolvedRepo],
    ) -> Result<Vec<SecretValue>, BackendError> {
        Ok(Vec::new())
    }

    fn agent_changed(&self, _: &HostKey) {}

    /// Versions are stored with their revision before they are in force.
    fn holds_version(&self, _: &HostKey, _: u64) -> bool {
        true
    }

    fn observed(&self) -> Option<&Stores> {
        None
    }

    fn record(&self, regarding: ObjectReference, decision: Decision) {
        self.events.record(regarding, decision, chrono::Utc::now());
    }

    fn events(&self) -> Option<&EventLog> {
        Some(&self.events)
    }

    fn secret_key(&self, namespace: &str, name: &str, _: &str) -> Result<String, KeyError> {
        Err(no_secrets(namespace, name))
    }
}

/// Test support: reflector stores filled with fixtures, a backend that mirrors them, and a
/// controller on a temporary data directory.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A reflector store that has listed `objects`.
    pub fn listed<K>(objects: Vec<K>) -> Reflected<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store::<K>();
        writer.apply_watcher_event(&Event::Init);
        for o in objects {
            writer.apply_watcher_event(&Event::InitApply(o));
        }
        writer.apply_watcher_event(&Event::InitDone);
        store
    }

    /// Stores that hold nothing.
    pub fn empty() -> Stores {
        Stores {
            repos: listed(vec![]),
            hosts: listed(vec![]),
            schedules: listed(vec![]),
            backups: listed(vec![]),
            restores: listed(vec![]),
            notifiers: listed(vec![]),
            snapshots: listed(vec![]),
        }
    }

    /// A backend whose source holds `stores`, leading or not; it enrolls no one.
    pub struct Mirror {
        pub stores: Stores,
        pub leading: bool,
        /// The Events the controller decided, kept for the test to read.
        pub events: EventLog,
    }

    impl Backend for Mirror {
        fn enroll<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Enrollment> {
            Box::pin(async { Ok(Err(AuthError::UnknownToken)) })
        }

        fn authenticate<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<HostKey>, BackendError>> {
            Box::pin(async { Ok(None) })
        }

        fn refuses_agents(&self) -> Option<&'static str> {
            None
        }

        fn is_leading(&self) -> bool {
            self.leading
        }

        fn secret_values(
            &self,
            _: &str,
            _: &[&ResolvedRepo],
        ) -> Result<Vec<SecretValue>, BackendError> {
            Ok(Vec::new())
        }

        fn agent_changed(&self, _: &HostKey) {}

        fn holds_version(&self, _: &HostKey, _: u64) -> bool {
            true
        }

        fn observed(&self) -> Option<&Stores> {
            Some(&self.stores)
        }

        fn record(&self, regarding: ObjectReference, decision: Decision) {
            self.events.record(regarding, decision, chrono::Utc::now());
        }

        fn events(&self) -> Option<&EventLog> {
            Some(&self.events)
        }

        fn secret_key(&self, namespace: &str, name: &str, _: &str) -> Result<String, KeyError> {
            Err(no_secrets(namespace, name))
        }
    }

    /// A controller with `backend` on a temporary data directory (kept while the guard lives).
    pub fn controller(
        backend: Box<dyn Backend>,
    ) -> (std::sync::Arc<crate::server::Controller>, tempfile::TempDir) {
        let data = tempfile::tempdir().expect("a temporary directory");
        let controller = on(&data, backend);
        (controller, data)
    }

    /// A files-mode controller on a temporary data directory.
    pub fn files_controller() -> (std::sync::Arc<crate::server::Controller>, tempfile::TempDir) {
        let data = tempfile::tempdir().expect("a temporary directory");
        let files = super::Files::open(data.path()).expect("the credentials open");
        let controller = on(&data, Box::new(files));
        (controller, data)
    }

    fn on(
        data: &tempfile::TempDir,
        backend: Box<dyn Backend>,
    ) -> std::sync::Arc<crate::server::Controller> {
        let config = crate::server::Config {
            data_dir: data.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("an address"),
            offline_after: std::time::Duration::from_secs(90),
            heartbeat: std::time::Duration::from_secs(30),
            debounce: std::time::Duration::from_millis(100),
            tls: None,
            max_agents: 10_000,
            external_url: None,
        };
        crate::server::Controller::open(config, backend).expect("the controller opens")
    }
}
