//! Kubernetes mode's Events: the controller's decisions published to the API server by
//! `kube-runtime`'s recorder (events.k8s.io, repeated ones folded into a series), one at a
//! time from a queue, so that a fleet-wide change does not send thousands at once.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use crate::decisions::Decision;

/// How many Events may wait to be published; beyond, new ones are dropped (and logged):
/// Events are for people, and an API server that far behind has other troubles.
const QUEUE: usize = 1_000;

pub struct ApiEvents {
    queue: mpsc::Sender<(ObjectReference, Decision)>,
}

impl ApiEvents {
    /// Publishes as `holdfast`, instance `identity` (the pod), from a task on the current
    /// runtime.
    pub fn new(client: Client, identity: &str) -> ApiEvents {
        let reporter = Reporter {
            controller: super::sink::FIELD_MANAGER.into(),
            instance: Some(identity.into()),
        };
        let recorder = Recorder::new(client, reporter);
        let (queue, mut rx) = mpsc::channel::<(ObjectReference, Decision)>(QUEUE);
        tokio::spawn(async move {
            while let Some((regarding, decision)) = rx.recv().await {
                let reason = decision.reason;
                if let Err(e) = publish(&recorder, &regarding, decision).await {
                    tracing::warn!(reason, "cannot record an event: {e}");
                }
            }
        });
        ApiEvents { queue }
    }

    /// Queues `decision` as an Event about `regarding`.
    pub fn send(&self, regarding: ObjectReference, decision: Decision) {
        let reason = decision.reason;
        if self.queue.try_send((regarding, decision)).is_err() {
            tracing::warn!(
                reason,
                "too many events waiting for the API server; dropped one"
            );
        }
    }
}

async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    decision: Decision,
) -> Result<(), kube::Error> {
    let event = Event {
        type_: if decision.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: decision.reason.into(),
        note: Some(decision.note),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, regarding).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_go_to_events_k8s_io_as_holdfast_about_the_object() {
        let created = serde_json::json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web-1.1", "namespace": "fleet"},
            "eventTime": "2026-11-22T01:00:00.000000Z"
        });
        let (client, server) = crate::cluster::scripted::api(vec![(201, created)]);
        let events = ApiEvents::new(client, "pod-a");
        let regarding = ObjectReference {
            api_version: Some("holdfast.dev/v1alpha1".into()),
            kind: Some("Host".into()),
            name: Some("web-1".into()),
            namespace: Some("fleet".into()),
            ..ObjectReference::default()
        };
        let decision = Decision {
            warning: false,
            reason: "ScheduleVersionChanged",
            note: "desired schedule version 2 (was 1)".into(),
        };
        events.send(regarding, decision);
        let asked = server.await.expect("the server answered");
        assert_eq!(asked[0].method, "POST");
        assert_eq!(
            asked[0].path(),
            "/apis/events.k8s.io/v1/namespaces/fleet/events"
        );
        let body = &asked[0].body;
        assert_eq!(body["type"], "Normal");
        assert_eq!(body["reason"], "ScheduleVersionChanged");
        assert_eq!(body["note"], "desired schedule version 2 (was 1)");
        assert_eq!(body["action"], "Reconcile");
        assert_eq!(body["reportingController"], "holdfast");
        assert_eq!(body["reportingInstance"], "pod-a");
        assert_eq!(body["regarding"]["kind"], "Host");
        assert_eq!(body["regarding"]["name"], "web-1");
        assert_eq!(body["regarding"]["namespace"], "fleet");
        assert_eq!(body["regarding"]["apiVersion"], "holdfast.dev/v1alpha1");
    }
}
