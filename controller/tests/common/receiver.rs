//! An HTTP receiver on a loopback port for notifications (webhook, ntfy): it answers 200 to
//! every request and keeps what it took (`tests/notify.rs`, `tests/kube_e2e.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// One request the HTTP receiver took.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    /// `sha256=` and the hex HMAC-SHA256 of the body under `key`: what a signed webhook's
    /// `X-Holdfast-Signature` must say.
    pub fn signature(&self, key: &str) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(&self.body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// An HTTP server on a loopback port that answers 200 to everything and keeps what it took.
/// Dropping it closes the port, connections included, as a receiver that dies would.
pub struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    pub fn on(port: u16) -> Receiver {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|e| panic!("cannot listen on port {port}: {e}"));
        let keep = seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect();
                    keep.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    axum::http::StatusCode::OK
                }
            },
        );
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            seen,
            runtime: Some(runtime),
        }
    }

    /// The requests to `path`, in the order they came.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
