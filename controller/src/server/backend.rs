//! What files mode and Kubernetes mode do differently, as the agent hub and the status writer
//! see it: where credentials live, which secret values a push carries besides controller files,
//! whether this replica leads, what follows an agent's change, and the objects a follower
//! mirrors. The backend is chosen once (`files::run` for files mode, `cluster::run` for
//! Kubernetes mode); nothing else asks which mode it is in.

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use kube::runtime::reflector::Store as Reflected;
use protocol::{ResolvedRepo, SecretValue};

use crate::compile::HostKey;
use crate::resources::{Backup, Host, Repo, Restore, Schedule};
use crate::store::{AuthError, Enrolled, Store, StoreError};

/// Kubernetes mode's reflector stores of the desired state, as the cluster holds it.
#[derive(Clone)]
pub struct Stores {
    pub repos: Reflected<Repo>,
    pub hosts: Reflected<Host>,
    pub schedules: Reflected<Schedule>,
    pub backups: Reflected<Backup>,
    pub restores: Reflected<Restore>,
}

/// An enrollment: the credential, a refusal a person can act on, or a failure of the backend.
pub type Enrollment = Result<Result<Enrolled, AuthError>, String>;

pub trait Backend: Send + Sync {
    /// Trades a one-time token for a credential.
    fn enroll<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Enrollment>;
    /// The host a credential belongs to.
    fn authenticate<'a>(
        &'a self,
        credential: &'a str,
    ) -> BoxFuture<'a, Result<Option<HostKey>, String>>;
    /// Why this replica does not talk to agents now, in one sentence; `None` when it does.
    fn refuses_agents(&self) -> Option<&'static str>;
    /// Whether this replica writes status (and the store is its to write).
    fn is_leading(&self) -> bool;
    /// The secret values a host's repos need beyond the controller's own files.
    fn secret_values(
        &self,
        namespace: &str,
        repos: &[&ResolvedRepo],
    ) -> Result<Vec<SecretValue>, String>;
    /// What an agent says changed; the status writer has been told already.
    fn agent_changed(&self, host: &HostKey);
    /// The objects as the source holds them, with the status written there: what a replica
    /// that does not lead shows, and what the leader compares its status with.
    fn observed(&self) -> Option<&Stores>;
}

/// Files mode: credentials in SQLite (a connection of their own, beside the controller's),
/// secret values only from the controller's files, always leading.
pub struct Files {
    credentials: Arc<Mutex<Store>>,
}

impl Files {
    pub fn open(data_dir: &Path) -> Result<Files, StoreError> {
        Ok(Files {
            credentials: Arc::new(Mutex::new(Store::open(data_dir)?)),
        })
    }

    /// Runs `work` on the credentials' connection, on the blocking pool.
    fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, String>> {
        let credentials = self.credentials.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A panic while holding the lock leaves SQLite consistent (transactions roll
                // back).
                let mut store = credentials.lock().unwrap_or_else(|e| e.into_inner());
                work(&mut store).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("the credentials' database task failed: {e}"))?
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
    ) -> BoxFuture<'a, Result<Option<HostKey>, String>> {
        let credential = credential.to_string();
        self.with_store(move |store| store.authenticate(&credential))
    }

    fn refuses_agents(&self) -> Option<&'static str> {
        None
    }

    fn is_leading(&self) -> bool {
        true
    }

    fn secret_values(&self, _: &str, _: &[&ResolvedRepo]) -> Result<Vec<SecretValue>, String> {
        Ok(Vec::new())
    }

    fn agent_changed(&self, _: &HostKey) {}

    fn observed(&self) -> Option<&Stores> {
        None
    }
}
