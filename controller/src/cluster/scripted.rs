//! For tests: a `kube::Client` whose API server is a script of answers (`tower-test`), and the
//! requests the code under test made, in order.

use std::pin::pin;

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// One request: method, path with query, content type, and the body as JSON (null if none).
#[derive(Debug)]
pub struct Asked {
    pub method: String,
    pub uri: String,
    pub content_type: String,
    pub body: Value,
}

impl Asked {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

/// A client whose requests get `answers` (status, JSON body) in order; the task returns what
/// was asked once every answer is given.
pub fn api(answers: Vec<(u16, Value)>) -> (Client, tokio::task::JoinHandle<Vec<Asked>>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut asked = Vec::new();
        for (code, body) in answers {
            let (request, send) = handle.next_request().await.expect("a request");
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = request.into_body().collect_bytes().await.expect("a body");
            asked.push(Asked {
                method,
                uri,
                content_type,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            });
            let response = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&body).expect("serialises")))
                .expect("a response");
            send.send_response(response);
        }
        asked
    });
    (Client::new(service, "default"), task)
}

/// A `Status` failure as the API server sends it.
pub fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

/// A Kubernetes-mode hub on `client`, with no objects and no Secrets.
pub fn hub(
    client: Client,
    leading: tokio::sync::watch::Receiver<bool>,
) -> super::agents::ClusterHub {
    super::agents::ClusterHub {
        stores: crate::server::backend::testing::empty(),
        credentials: kube::Api::namespaced(client, "holdfast-system"),
        secrets: vec![],
        leading,
        reconcile: Box::new(|_| {}),
        written: Default::default(),
        record: Box::new(|_, _| {}),
    }
}

/// A Kubernetes-mode controller on a temporary data directory (kept while the guard lives).
pub fn controller(
    hub: super::agents::ClusterHub,
) -> (std::sync::Arc<crate::server::Controller>, tempfile::TempDir) {
    crate::server::backend::testing::controller(Box::new(hub))
}
