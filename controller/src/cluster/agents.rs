//! What the agent hub uses in Kubernetes mode instead of the files-mode database and secret
//! files: credentials in Secrets, Secret-key values for pushes, the leader check, and a Host
//! reconcile whenever what its agent says changes.

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use protocol::{ResolvedRepo, SecretValue};
use tokio::sync::watch;

use futures_util::future::BoxFuture;

use crate::compile::HostKey;
use crate::server::backend::{Backend, Enrollment};

pub struct ClusterHub {
    /// The desired state, as the cluster holds it (a follower's page shows it as it is).
    pub stores: super::reconcile::Stores,
    /// Secrets in the controller's own namespace: tokens and credential hashes.
    pub credentials: Api<Secret>,
    /// The namespaces whose Secrets Repos may name, each with its reflector store.
    pub secrets: Vec<(String, Store<Secret>)>,
    /// Whether this replica holds the Lease.
    pub leading: watch::Receiver<bool>,
    /// Asks for a Host's reconcile (its status shows what the agent says).
    pub reconcile: Box<dyn Fn(&HostKey) + Send + Sync>,
}

impl Backend for ClusterHub {
    fn enroll<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Enrollment> {
        Box::pin(async move {
            let hosts = &self.stores.hosts;
            super::auth::enroll(&self.credentials, token, Utc::now(), |h| {
                hosts
                    .get(&ObjectRef::new(&h.name).within(&h.namespace))
                    .is_some()
            })
            .await
        })
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a str,
    ) -> BoxFuture<'a, Result<Option<HostKey>, String>> {
        Box::pin(async move {
            super::auth::authenticate(&self.credentials, credential)
                .await
                .map_err(|e| format!("cannot read the credential's Secret: {e}"))
        })
    }

    // Only the leader pushes; the agent retries and the Service reaches the leader.
    fn refuses_agents(&self) -> Option<&'static str> {
        (!self.is_leading())
            .then_some("this controller replica is not the leader; retrying reaches the leader")
    }

    fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// The Secret-key values the repos of a host in `namespace` need.
    fn secret_values(
        &self,
        namespace: &str,
        repos: &[&ResolvedRepo],
    ) -> Result<Vec<SecretValue>, String> {
        let allowed: Vec<String> = self.secrets.iter().map(|(ns, _)| ns.clone()).collect();
        super::secrets::secret_values(namespace, repos.iter().copied(), &allowed, |ns, name| {
            let (_, store) = self.secrets.iter().find(|(n, _)| n == ns)?;
            store.get(&ObjectRef::new(name).within(ns))
        })
    }

    fn agent_changed(&self, host: &HostKey) {
        (self.reconcile)(host);
    }

    fn observed(&self) -> Option<&super::reconcile::Stores> {
        Some(&self.stores)
    }
}
