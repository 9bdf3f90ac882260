//! Leader election on a `coordination.k8s.io` Lease, as client-go's leader election does it.
//!
//! Every replica serves health and the page; only the holder of the Lease reconciles and pushes.
//! Each replica tries every [`Election::retry`]: the holder renews; another replica takes the
//! Lease over only once it has seen the same record, unrenewed, for the Lease's duration by its
//! own monotonic clock (never by comparing its wall clock with the holder's timestamps, which
//! may disagree). Writes carry the resourceVersion read, so two replicas racing for an expired
//! Lease cannot both win. A leader whose round fails, or takes longer than
//! [`Election::renew_deadline`], stops leading at once: with the defaults (2 s, 10 s, 15 s) it
//! has stopped before anyone can take the Lease.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use super::sink::FIELD_MANAGER;

/// Who competes for which Lease, and how fast.
#[derive(Debug)]
pub struct Election {
    /// The Lease's name (in the controller's namespace).
    pub name: String,
    /// This replica (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How long a round may take before this replica stops leading; under `duration - retry`.
    pub renew_deadline: Duration,
    /// How often to renew or try to acquire.
    pub retry: Duration,
    /// The last record read (holder and renew time) and when, by this replica's clock, it
    /// was first seen.
    observed: Mutex<Option<(String, Instant)>>,
}

impl Election {
    pub fn new(name: &str, identity: &str) -> Election {
        Election {
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
            observed: Mutex::new(None),
        }
    }

    /// One round: acquire, renew or stand by. `Ok(true)` when this replica holds the Lease.
    /// `now` is what this replica writes as acquire and renew times.
    pub async fn try_lead(
        &self,
        api: &Api<Lease>,
        now: DateTime<Utc>,
    ) -> Result<bool, kube::Error> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, 0, now)),
            };
            return won(api.create(&params, &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let unrenewed_for = self.observe(&spec);
        let next = if holder == self.identity {
            let acquired = spec.acquire_time.map(from_micro).unwrap_or(now);
            self.spec(acquired, spec.lease_transitions.unwrap_or(0), now)
        } else if holder.is_empty() || unrenewed_for > self.lease_duration(&spec) {
            self.spec(now, spec.lease_transitions.unwrap_or(0) + 1, now)
        } else {
            return Ok(false);
        };
        lease.spec = Some(next);
        won(api.replace(&self.name, &params, &lease).await)
    }

    /// How long, by this replica's clock, the Lease has shown the same holder and renew time.
    fn observe(&self, spec: &LeaseSpec) -> Duration {
        let record = format!(
            "{}@{:?}",
            spec.holder_identity.as_deref().unwrap_or_default(),
            spec.renew_time.as_ref().map(|t| t.0)
        );
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        match observed.as_ref() {
            Some((seen, since)) if *seen == record => since.elapsed(),
            _ => {
                *observed = Some((record, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// The duration the Lease states, or ours when it states none.
    fn lease_duration(&self, spec: &LeaseSpec) -> Duration {
        spec.lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs)
    }

    fn spec(&self, acquired: DateTime<Utc>, transitions: i32, now: DateTime<Utc>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX)),
            acquire_time: Some(micro(acquired)),
            renew_time: Some(micro(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Competes for the Lease for as long as the process runs; `leading` says whether this
    /// replica may reconcile and push.
    pub async fn run(self, api: Api<Lease>, leading: watch::Sender<bool>) {
        loop {
            let round = self.try_lead(&api, Utc::now());
            let lead = match tokio::time::timeout(self.renew_deadline, round).await {
                Ok(Ok(lead)) => lead,
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, "leader election: {e}");
                    false
                }
                Err(_) => {
                    tracing::warn!(lease = %self.name, deadline = ?self.renew_deadline, "leader election: no answer within the renew deadline");
                    false
                }
            };
            leading.send_if_modified(|was| {
                if *was != lead {
                    tracing::info!(lease = %self.name, identity = %self.identity, leading = lead, "leadership changed");
                    *was = lead;
                    true
                } else {
                    false
                }
            });
            tokio::time::sleep(self.retry).await;
        }
    }
}

/// A write that lost a race (409 Conflict or AlreadyExists) is a lost election, not an error.
fn won(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => Ok(false),
        Err(e) => Err(e),
    }
}

fn micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(crate::time::k8s(t).0)
}

fn from_micro(t: MicroTime) -> DateTime<Utc> {
    crate::time::chrono(&Time(t.0))
}

#[cfg(test)]
mod tests {
    use std::pin::pin;

    use http::{Request, Response};
    use kube::Client;
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;
    use crate::cluster::scripted::{self, status};

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/holdfast-system/leases";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T01:00:00Z")
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn lease(holder: &str, renewed: &str, transitions: i32) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "holdfast-controller", "namespace": "holdfast-system", "resourceVersion": "41"},
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15,
                "acquireTime": "2026-11-22T00:00:00.000000Z", "renewTime": renewed,
                "leaseTransitions": transitions
            }
        })
    }

    /// Runs one election round of `pod-a` against a server that answers `answers` in order,
    /// and returns its result with the requests it made (method, path, body).
    async fn round(
        answers: Vec<(u16, Value)>,
    ) -> (Result<bool, kube::Error>, Vec<(String, String, Value)>) {
        round_of(&Election::new("holdfast-controller", "pod-a"), answers).await
    }

    /// A round of an election that may have run rounds before.
    async fn round_of(
        election: &Election,
        answers: Vec<(u16, Value)>,
    ) -> (Result<bool, kube::Error>, Vec<(String, String, Value)>) {
        let (client, server) = scripted::api(answers);
        let api: Api<Lease> = Api::namespaced(client, "holdfast-system");
        let result = election.try_lead(&api, now()).await;
        let asked = server.await.expect("the server answered");
        let seen = asked
            .into_iter()
            .map(|a| (a.method.clone(), a.path().to_string(), a.body))
            .collect();
        (result, seen)
    }

    #[tokio::test]
    async fn an_absent_lease_is_created_with_this_replica_as_holder() {
        let created = lease("pod-a", "2026-11-22T01:00:00.000000Z", 0);
        let (result, seen) = round(vec![(404, status(404, "NotFound")), (201, created)]).await;
        assert!(result.expect("the round answers"));
        assert_eq!(seen[0].0, "GET");
        assert_eq!(seen[0].1, format!("{LEASES}/holdfast-controller"));
        assert_eq!((seen[1].0.as_str(), seen[1].1.as_str()), ("POST", LEASES));
        let spec = &seen[1].2["spec"];
        assert_eq!(spec["holderIdentity"], "pod-a");
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], 0);
        assert_eq!(spec["renewTime"], "2026-11-22T01:00:00.000000Z");
    }

    #[tokio::test]
    async fn the_holder_renews_with_the_resource_version_it_read() {
        let held = lease("pod-a", "2026-11-22T00:59:55.000000Z", 3);
        let (result, seen) = round(vec![(200, held.clone()), (200, held)]).await;
        assert!(result.expect("the round answers"));
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].0, "PUT");
        assert_eq!(seen[1].1, format!("{LEASES}/holdfast-controller"));
        let sent = &seen[1].2;
        assert_eq!(sent["metadata"]["resourceVersion"], "41");
        assert_eq!(sent["spec"]["holderIdentity"], "pod-a");
        assert_eq!(sent["spec"]["renewTime"], "2026-11-22T01:00:00.000000Z");
        assert_eq!(sent["spec"]["acquireTime"], "2026-11-22T00:00:00.000000Z");
        assert_eq!(
            sent["spec"]["leaseTransitions"], 3,
            "a renewal is not a transition"
        );
    }

    #[tokio::test]
    async fn a_live_lease_of_another_replica_is_left_alone() {
        let other = lease("pod-b", "2026-11-22T00:59:50.000000Z", 3);
        let (result, seen) = round(vec![(200, other)]).await;
        assert!(!result.expect("the round answers"));
        assert_eq!(seen.len(), 1, "no write: {seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_is_taken_over_as_a_transition() {
        let election = Election::new("holdfast-controller", "pod-a");
        let stale = lease("pod-b", "2026-11-22T00:59:40.000000Z", 3);
        let (result, seen) = round_of(&election, vec![(200, stale.clone())]).await;
        assert!(
            !result.expect("the round answers"),
            "first seen: not yet expired by this clock"
        );
        assert_eq!(seen.len(), 1);
        tokio::time::advance(Duration::from_secs(16)).await;
        let (result, seen) = round_of(&election, vec![(200, stale.clone()), (200, stale)]).await;
        assert!(
            result.expect("the round answers"),
            "unrenewed for longer than its duration"
        );
        let sent = &seen[1].2;
        assert_eq!(seen[1].0, "PUT");
        assert_eq!(sent["spec"]["holderIdentity"], "pod-a");
        assert_eq!(sent["spec"]["leaseTransitions"], 4);
        assert_eq!(sent["spec"]["acquireTime"], "2026-11-22T01:00:00.000000Z");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_keeps_being_renewed_is_never_taken_whatever_its_clock_says() {
        // The holder's clock is an hour behind ours: its renew times look long expired.
        let election = Election::new("holdfast-controller", "pod-a");
        for renewed in ["2026-11-22T00:00:01.000000Z", "2026-11-22T00:00:03.000000Z"] {
            let other = lease("pod-b", renewed, 3);
            let (result, seen) = round_of(&election, vec![(200, other)]).await;
            assert!(!result.expect("the round answers"), "renewed at {renewed}");
            assert_eq!(seen.len(), 1, "no write");
            tokio::time::advance(Duration::from_secs(16)).await;
        }
    }

    #[tokio::test]
    async fn a_conflict_loses_the_election_and_other_errors_are_errors() {
        let held = lease("pod-a", "2026-11-22T00:59:55.000000Z", 3);
        let (result, _) = round(vec![(200, held.clone()), (409, status(409, "Conflict"))]).await;
        assert!(
            !result.expect("the round answers"),
            "another replica wrote first"
        );
        let (result, _) = round(vec![(200, held), (403, status(403, "Forbidden"))]).await;
        assert!(result.is_err(), "{result:?}");
    }

    fn respond(code: u16, body: &Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("serialises")))
            .expect("a response")
    }

    #[tokio::test]
    async fn a_leader_that_cannot_renew_stops_leading_at_once() {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Lease> = Api::namespaced(Client::new(service, "default"), "holdfast-system");
        let election = Election {
            retry: Duration::from_millis(10),
            ..Election::new("holdfast-controller", "pod-a")
        };
        let (tx, mut leading) = watch::channel(false);
        let elector = tokio::spawn(election.run(api, tx));
        let mut handle = pin!(handle);
        // Round 1: absent, created: leading.
        let (_, send) = handle.next_request().await.expect("GET");
        send.send_response(respond(404, &status(404, "NotFound")));
        let (_, send) = handle.next_request().await.expect("POST");
        let renewed = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        send.send_response(respond(201, &lease("pod-a", &renewed, 0)));
        leading.wait_for(|l| *l).await.expect("leads");
        // Round 2: the API server fails: no longer leading.
        let (_, send) = handle.next_request().await.expect("GET");
        send.send_response(respond(500, &status(500, "InternalError")));
        leading.wait_for(|l| !*l).await.expect("steps down");
        elector.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewal_hangs_steps_down_by_the_deadline() {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Lease> = Api::namespaced(Client::new(service, "default"), "holdfast-system");
        let election = Election::new("holdfast-controller", "pod-a");
        let deadline = election.renew_deadline;
        let (tx, mut leading) = watch::channel(false);
        let elector = tokio::spawn(election.run(api, tx));
        let mut handle = pin!(handle);
        let (_, send) = handle.next_request().await.expect("GET");
        send.send_response(respond(404, &status(404, "NotFound")));
        let (_, send) = handle.next_request().await.expect("POST");
        send.send_response(respond(
            201,
            &lease("pod-a", "2026-11-22T01:00:00.000000Z", 0),
        ));
        leading.wait_for(|l| *l).await.expect("leads");
        // The next round's GET is never answered (a half-open connection).
        let (_request, _never_answered) = handle.next_request().await.expect("GET");
        let asked = Instant::now();
        leading.wait_for(|l| !*l).await.expect("steps down");
        let waited = asked.elapsed();
        assert!(
            waited >= deadline && waited < Duration::from_secs(15),
            "stepped down after {waited:?}, deadline {deadline:?}, before the Lease can pass"
        );
        elector.abort();
    }
}
