//! What the agent hub uses in Kubernetes mode instead of the files-mode database and secret
//! files: credentials in Secrets, Secret-key values for pushes, the leader check, a Host
//! reconcile whenever what its agent says changes, and Events on the API server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use protocol::{ResolvedRepo, SecretValue};
use tokio::sync::watch;

use futures_util::future::BoxFuture;

use crate::compile::HostKey;
use crate::decisions::Decision;
use crate::server::backend::{Backend, BackendError, Enrollment};
use crate::server::events::EventLog;

pub struct ClusterHub {
    /// The desired state, as the cluster holds it (a follower's page shows it as it is).
    pub stores: super::reconcile::Stores,
    /// Secrets in the controller's own namespace: tokens and credential hashes.
    pub credentials: Api<Secret>,
    /// The namespaces whose Secrets Repos may name, each with its reflector store.
    pub secrets: Vec<(String, Store<Secret>)>,
    /// Whether this replica holds the Lease.
    pub leading: watch::Receiver<bool>,
    /// Asks for a Host's reconcile (its version continues above what the agent runs).
    pub reconcile: Box<dyn Fn(&HostKey) + Send + Sync>,
    /// Versions the write-back put in Host status, ahead of the Host watch.
    pub written: Arc<WrittenVersions>,
    /// Publishes an Event to the API server ([`ApiEvents`](super::events::ApiEvents)).
    pub record: Box<dyn Fn(ObjectReference, Decision) + Send + Sync>,
}

/// The schedule version of each Host whose status this process wrote, newest only.
#[derive(Default)]
pub struct WrittenVersions(Mutex<HashMap<HostKey, u64>>);

impl WrittenVersions {
    pub fn wrote(&self, host: &HostKey, version: u64) {
        let mut written = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let v = written.entry(host.clone()).or_default();
        *v = (*v).max(version);
    }

    fn get(&self, host: &HostKey) -> Option<u64> {
        let written = self.0.lock().unwrap_or_else(|e| e.into_inner());
        written.get(host).copied()
    }
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
    ) -> BoxFuture<'a, Result<Option<HostKey>, BackendError>> {
        Box::pin(super::auth::authenticate(&self.credentials, credential))
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
    ) -> Result<Vec<SecretValue>, BackendError> {
        let allowed: Vec<String> = self.secrets.iter().map(|(ns, _)| ns.clone()).collect();
        super::secrets::secret_values(namespace, repos.iter().copied(), &allowed, |ns, name| {
            let (_, store) = self.secrets.iter().find(|(n, _)| n == ns)?;
            store.get(&ObjectRef::new(name).within(ns))
        })
        .map_err(BackendError::from)
    }

    fn agent_changed(&self, host: &HostKey) {
        (self.reconcile)(host);
    }

    /// Once in Host status a version survives this process: a new leader continues from there.
    fn holds_version(&self, host: &HostKey, version: u64) -> bool {
        let in_status = self
            .stores
            .hosts
            .get(&ObjectRef::new(&host.name).within(&host.namespace))
            .and_then(|h| h.status.as_ref()?.desired_schedule_version);
        in_status.max(self.written.get(host)) >= Some(version)
    }

    fn observed(&self) -> Option<&super::reconcile::Stores> {
        Some(&self.stores)
    }

    fn record(&self, regarding: ObjectReference, decision: Decision) {
        (self.record)(regarding, decision);
    }

    /// The API server holds the Events.
    fn events(&self) -> Option<&EventLog> {
        None
    }

    /// A Secret key a Notifier names, from the Secrets of the allowed namespaces.
    fn secret_key(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<String, crate::notify::KeyError> {
        let allowed: Vec<String> = self.secrets.iter().map(|(ns, _)| ns.clone()).collect();
        super::secrets::secret_key(namespace, name, key, &allowed, |ns, name| {
            let (_, store) = self.secrets.iter().find(|(n, _)| n == ns)?;
            store.get(&ObjectRef::new(name).within(ns))
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use protocol::{AgentMessage, CONNECT_PATH, ControllerMessage, PROTOCOL_VERSION};
    use tokio::sync::mpsc;

    use super::{ClusterHub, WrittenVersions};
    use crate::cluster::scripted;
    use crate::compile::{self, HostKey};
    use crate::resources::Kind;
    use crate::server::agent_router as router;

    /// `GET` of the agent endpoint with a credential: the status and the one-sentence reason.
    async fn connect_as_agent(url: String) -> (u16, String) {
        tokio::task::spawn_blocking(move || {
            let agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent();
            let mut response = agent
                .get(&url)
                .header("authorization", "Bearer hf_agent_credential")
                .call()
                .expect("an answer");
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().expect("a text body");
            (status, body)
        })
        .await
        .expect("the request ran")
    }

    #[tokio::test]
    async fn a_version_may_be_pushed_once_host_status_holds_it() {
        use crate::server::backend::Backend;
        let host: crate::resources::Host = serde_json::from_value(serde_json::json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "namespace": "fleet"},
            "spec": {"defaultRepo": "nas"},
            "status": {"desiredScheduleVersion": 2, "desiredScheduleDigest": "d2"},
        }))
        .expect("a host");
        let (client, _server) = scripted::api(vec![]);
        let (_leading_tx, leading) = watch::channel(true);
        let mut hub = scripted::hub(client, leading);
        hub.stores.hosts = crate::server::backend::testing::listed(vec![host]);
        let key = HostKey::new("fleet", "web-1");
        assert!(hub.holds_version(&key, 2), "in the cluster's Host status");
        assert!(!hub.holds_version(&key, 3), "not written yet");
        hub.written.wrote(&key, 3);
        assert!(
            hub.holds_version(&key, 3),
            "written by this process, ahead of the watch"
        );
        assert!(!hub.holds_version(&HostKey::new("fleet", "web-2"), 1));
    }

    #[tokio::test]
    async fn in_kubernetes_mode_a_follower_refuses_agents_and_the_leader_checks_secrets() {
        let (client, api_server) = scripted::api(vec![(404, scripted::status(404, "NotFound"))]);
        let (leading_tx, leading) = watch::channel(false);
        let (controller, _data) = scripted::controller(scripted::hub(client, leading));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!(
            "http://{}{CONNECT_PATH}",
            listener.local_addr().expect("an address")
        );
        tokio::spawn(async move { axum::serve(listener, router(controller)).await });

        let (status, why) = connect_as_agent(url.clone()).await;
        assert_eq!(status, 503);
        assert_eq!(
            why,
            "this controller replica is not the leader; retrying reaches the leader"
        );

        leading_tx.send(true).expect("the hub listens");
        let (status, why) = connect_as_agent(url).await;
        assert_eq!(status, 401, "{why}");
        assert!(why.starts_with("unknown agent credential"), "{why}");
        let asked = api_server.await.expect("the API server answered");
        assert_eq!(asked[0].method, "GET");
        assert!(
            asked[0]
                .path()
                .starts_with("/api/v1/namespaces/holdfast-system/secrets/holdfast-credential-"),
            "{}",
            asked[0].uri
        );
    }

    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn fixture<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("a fixture object")
    }

    /// The next message the controller sends, within a deadline.
    async fn next_message<S>(socket: &mut S) -> ControllerMessage
    where
        S: futures_util::Stream<
                Item = Result<
                    tokio_tungstenite::tungstenite::Message,
                    tokio_tungstenite::tungstenite::Error,
                >,
            > + Unpin,
    {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a message in time")
                .expect("the socket is open")
                .expect("a frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                return protocol::decode(&text).expect("a controller message");
            }
        }
    }

    #[tokio::test]
    async fn in_kubernetes_mode_the_leader_pushes_adopted_versions_with_secret_keys_and_runs_requests()
     {
        use kube::runtime::reflector;
        use kube::runtime::watcher::Event;
        use serde_json::json;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;

        let credential = "hf_agent_credential_for_web_1";
        let stored = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "holdfast-credential-x", "namespace": "holdfast-system"},
            "data": {"hash": b64(&crate::store::secret_hash(credential)),
                     "namespace": b64("fleet"), "host": b64("web-1")},
        });
        let (client, _api_server) = scripted::api(vec![(200, stored)]);
        let (secrets, mut writer) = reflector::store::<k8s_openapi::api::core::v1::Secret>();
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(fixture(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "nas-restic", "namespace": "fleet"},
            "data": {"password": b64("correct horse\n")},
        }))));
        writer.apply_watcher_event(&Event::InitDone);
        let (_leading_tx, leading) = watch::channel(true);
        let (asked, mut reconciled) = mpsc::unbounded_channel();
        let written = Arc::new(WrittenVersions::default());
        let hub = ClusterHub {
            secrets: vec![("fleet".into(), secrets)],
            written: written.clone(),
            reconcile: Box::new(move |h| {
                let _ = asked.send(h.clone());
            }),
            ..scripted::hub(client, leading)
        };
        let (controller, _data) = scripted::controller(hub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(axum::serve(listener, router(controller.clone())).into_future());

        let mut request = format!("ws://{address}{CONNECT_PATH}")
            .into_client_request()
            .expect("a request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {credential}").parse().expect("a header"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the leader accepts the agent");
        let hello = AgentMessage::Hello(protocol::Hello {
            protocol_version: PROTOCOL_VERSION,
            host: "web-1".into(),
            agent_version: "test".into(),
            restic_version: Some("0.14.0".into()),
            os: "linux".into(),
            arch: "x86_64".into(),
            applied_schedule_version: 0,
            applied_schedule_digest: None,
            running: vec![],
        });
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                protocol::encode(&hello).into(),
            ))
            .await
            .expect("hello sent");
        assert!(matches!(
            next_message(&mut socket).await,
            ControllerMessage::Welcome(_)
        ));
        let key = HostKey::new("fleet", "web-1");
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), reconciled.recv())
                .await
                .expect("a reconcile in time"),
            Some(key.clone()),
            "a connected agent has its Host reconciled"
        );

        let meta =
            |name: &str| json!({"name": name, "namespace": "fleet", "uid": name, "generation": 1});
        let revision = crate::revision::Revision {
            repos: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Repo", "metadata": meta("nas"),
                "spec": {"url": "/srv/restic", "password": {"secretKeyRef": {"name": "nas-restic", "key": "password"}}}}),
            )],
            hosts: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Host", "metadata": meta("web-1"),
                "spec": {"defaultRepo": "nas"}}),
            )],
            schedules: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Schedule", "metadata": meta("nightly"),
                "spec": {"operation": "backup", "cron": "0 1 * * *", "hosts": ["web-1"], "paths": ["/srv/www"]}}),
            )],
            backups: vec![fixture(
                json!({"apiVersion": "holdfast.dev/v1alpha1", "kind": "Backup", "metadata": meta("by-hand"),
                "spec": {"host": "web-1", "schedule": "nightly"}}),
            )],
            restores: vec![],
            notifiers: vec![],
        };
        let fleet = compile::compile(&revision).expect("the fixture compiles");
        let digest = fleet.hosts[&key].digest.clone();
        use crate::server::reconciler::Hub;
        let (revision, fleet) = (Arc::new(revision), Arc::new(fleet));
        let version = crate::versions::Versioned {
            version: 3,
            digest: digest.clone(),
        };
        controller.adopt(&revision, &fleet, &key, version.clone());
        let ControllerMessage::CommandRun(command) = next_message(&mut socket).await else {
            panic!("the request is dispatched first")
        };
        // Version 3 is in no Host status yet: it is not pushed. A second hello is answered
        // with an error, which comes before anything pushed since.
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                protocol::encode(&hello).into(),
            ))
            .await
            .expect("hello sent");
        assert!(
            matches!(next_message(&mut socket).await, ControllerMessage::Error(_)),
            "no schedule before its version is in Host status"
        );
        // The write-back wrote it; two reconciles adopt it before the agent acks it: one push.
        written.wrote(&key, 3);
        for _ in 0..2 {
            controller.adopt(&revision, &fleet, &key, version.clone());
        }

        assert_eq!(
            command.job,
            crate::runs::request_job(Kind::Backup, "fleet", "by-hand")
        );
        assert_eq!(command.secrets.len(), 1);
        assert_eq!(command.secrets[0].value, "correct horse");
        let ControllerMessage::ScheduleSet(set) = next_message(&mut socket).await else {
            panic!("then the schedule")
        };
        assert_eq!(set.version, 3);
        let values: Vec<&str> = set.secrets.iter().map(|s| s.value.as_str()).collect();
        assert_eq!(
            values,
            ["correct horse"],
            "the Secret key's value, without its newline"
        );

        // The lead is lost: the agent is disconnected, to reconnect to the new leader. The
        // session ends with nothing more sent: the second adoption pushed nothing.
        controller.disconnect_agents();
        let end = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the session ends in time");
        assert!(
            matches!(
                end,
                None | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) | Some(Err(_))
            ),
            "{end:?}"
        );
    }
}
