//! Kubernetes mode's status sink: each resource's status by server-side apply through the
//! status subresource, and a Backup object for every run.
//!
//! Applies are coalesced: an unchanged status is not sent again, and while a run is going its
//! progress alone patches at most once every [`PROGRESS_INTERVAL`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The field manager of everything Holdfast writes.
pub const FIELD_MANAGER: &str = "holdfast";

/// How often the progress of a running backup may be written.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// The apply configuration for the status of `name`: only the fields Holdfast owns.
pub fn status_patch<K: Resource<DynamicType = ()>>(name: &str, status: &Value) -> Value {
    json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    })
}

/// Server-side applies `status` to the object `name`, taking ownership of its fields from any
/// other manager (the controller is the only writer of status).
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &Value) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = status_patch::<K>(name, status);
    api.patch_status(name, &params, &Patch::Apply(patch))
        .await?;
    Ok(())
}

/// What creating a run's Backup did.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded {
    Created,
    /// The name is deterministic (schedule, host and scheduled minute), so AlreadyExists means
    /// this run is recorded already: by this replica before a restart, or by the last leader.
    AlreadyRecorded,
}

/// Creates the Backup of a run (or a Snapshot); its status is applied afterwards with
/// [`apply_status`].
pub async fn record_run<K>(api: &Api<K>, backup: &K) -> Result<Recorded, kube::Error>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, backup).await {
        Ok(_) => Ok(Recorded::Created),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            Ok(Recorded::AlreadyRecorded)
        }
        Err(e) => Err(e),
    }
}

/// What was last applied to each object, to decide what to apply next.
#[derive(Default)]
pub struct Coalescer {
    written: HashMap<String, Written>,
}

struct Written {
    status: Value,
    at: DateTime<Utc>,
}

impl Coalescer {
    /// Whether `status` of the object `key` should be applied now. Unchanged: no. Changed only
    /// in `progress` (a run going on) within [`PROGRESS_INTERVAL`] of the last write: not yet;
    /// a later call with newer progress writes it.
    pub fn should_apply(&self, key: &str, status: &Value, now: DateTime<Utc>) -> bool {
        let Some(last) = self.written.get(key) else {
            return true;
        };
        if last.status == *status {
            return false;
        }
        let without_progress = |s: &Value| {
            let mut s = s.clone();
            if let Some(map) = s.as_object_mut() {
                map.remove("progress");
            }
            s
        };
        if without_progress(&last.status) != without_progress(status) {
            return true;
        }
        let interval = chrono::Duration::from_std(PROGRESS_INTERVAL).unwrap_or_default();
        now - last.at >= interval
    }

    /// Whether anything was applied to `key` by this process.
    pub fn knows(&self, key: &str) -> bool {
        self.written.contains_key(key)
    }

    /// The status last applied to `key`.
    pub fn last(&self, key: &str) -> Option<&Value> {
        self.written.get(key).map(|w| &w.status)
    }

    /// Records a successful apply.
    pub fn applied(&mut self, key: &str, status: Value, now: DateTime<Utc>) {
        self.written
            .insert(key.to_string(), Written { status, at: now });
    }

    /// Forgets a deleted object.
    pub fn forget(&mut self, key: &str) {
        self.written.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::scripted::{self, status};
    use crate::resources::{Backup, BackupSpec, Host};

    #[tokio::test]
    async fn status_is_server_side_applied_by_holdfast_on_the_status_subresource() {
        let host = json!({
            "apiVersion": "holdfast.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "web-1", "namespace": "fleet"}, "spec": {},
            "status": {"online": true, "desiredScheduleVersion": 4}
        });
        let (client, server) = scripted::api(vec![(200, host)]);
        let hosts: Api<Host> = Api::namespaced(client, "fleet");
        apply_status(
            &hosts,
            "web-1",
            &json!({"online": true, "desiredScheduleVersion": 4}),
        )
        .await
        .expect("applied");
        let asked = server.await.expect("the server answered");
        assert_eq!(asked[0].method, "PATCH");
        assert_eq!(
            asked[0].uri,
            "/apis/holdfast.dev/v1alpha1/namespaces/fleet/hosts/web-1/status?&force=true&fieldManager=holdfast"
        );
        assert_eq!(asked[0].content_type, "application/apply-patch+yaml");
        assert_eq!(
            asked[0].body,
            json!({
                "apiVersion": "holdfast.dev/v1alpha1",
                "kind": "Host",
                "metadata": {"name": "web-1"},
                "status": {"online": true, "desiredScheduleVersion": 4}
            })
        );
    }

    fn backup() -> Backup {
        let mut b = Backup::new(
            "nightly-web-1-29400000",
            BackupSpec {
                host: "web-1".into(),
                schedule: Some("nightly".into()),
                operation: None,
                repo: None,
            },
        );
        b.metadata.namespace = Some("fleet".into());
        b.metadata.labels = Some(
            [
                ("holdfast.dev/host", "web-1"),
                ("holdfast.dev/schedule", "nightly"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        b
    }

    #[tokio::test]
    async fn a_run_is_created_as_a_backup_with_its_name_and_labels() {
        let created = serde_json::to_value(backup()).expect("serialises");
        let (client, server) = scripted::api(vec![(201, created)]);
        let backups: Api<Backup> = Api::namespaced(client, "fleet");
        assert_eq!(
            record_run(&backups, &backup()).await.expect("created"),
            Recorded::Created
        );
        let asked = server.await.expect("the server answered");
        assert_eq!(asked[0].method, "POST");
        assert_eq!(
            asked[0].uri,
            "/apis/holdfast.dev/v1alpha1/namespaces/fleet/backups?&fieldManager=holdfast"
        );
        let body = &asked[0].body;
        assert_eq!(body["metadata"]["name"], "nightly-web-1-29400000");
        assert_eq!(body["metadata"]["labels"]["holdfast.dev/host"], "web-1");
        assert_eq!(
            body["metadata"]["labels"]["holdfast.dev/schedule"],
            "nightly"
        );
        assert_eq!(body["spec"]["host"], "web-1");
    }

    #[tokio::test]
    async fn already_exists_means_the_run_is_recorded() {
        let (client, server) = scripted::api(vec![
            (409, status(409, "AlreadyExists")),
            (403, status(403, "Forbidden")),
        ]);
        let backups: Api<Backup> = Api::namespaced(client, "fleet");
        assert_eq!(
            record_run(&backups, &backup()).await.expect("done"),
            Recorded::AlreadyRecorded
        );
        let denied = record_run(&backups, &backup()).await;
        assert!(
            matches!(&denied, Err(kube::Error::Api(s)) if s.code == 403),
            "other errors are errors: {denied:?}"
        );
        server.await.expect("the server answered");
    }

    #[test]
    fn progress_alone_is_written_at_most_every_few_seconds() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-22T01:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let running = |percent: u32| json!({"phase": "Running", "progress": {"percent": percent}});
        let mut c = Coalescer::default();
        assert!(c.should_apply("b", &running(1), at(0)), "first write");
        c.applied("b", running(1), at(0));
        assert!(!c.should_apply("b", &running(1), at(1)), "unchanged");
        assert!(
            !c.should_apply("b", &running(2), at(1)),
            "progress within the interval"
        );
        assert!(
            c.should_apply("b", &running(3), at(5)),
            "progress after the interval"
        );
        let done = json!({"phase": "Succeeded", "progress": {"percent": 3}});
        assert!(
            c.should_apply("b", &done, at(1)),
            "a phase change is written at once"
        );
        c.forget("b");
        assert!(c.should_apply("b", &running(1), at(2)), "forgotten");
    }
}
