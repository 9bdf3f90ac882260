//! HTTP for the receivers: hyper's client (the one the Kubernetes client already brings) over
//! rustls with the system's certificate authorities. Every request is bounded by the caller's
//! timeout; answers are read only as far as an error message needs.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What a receiver's answer may add to an error message.
const ANSWER_BYTES: usize = 512;

/// Why a request was not accepted. Names the receiver's host, never a secret (tokens travel
/// in headers, which no error repeats).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Names no URL: a webhook's URL may hold a token of its own.
    #[error("cannot make the request: {0}")]
    BadRequest(#[source] http::Error),
    #[error("cannot reach {host}: {}", causes(.source))]
    Unreachable {
        host: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{host} answered {status}: {answer}")]
    Refused {
        host: String,
        status: http::StatusCode,
        answer: String,
    },
}

/// An error and its causes, `a: b: c`: hyper's own text says only which step failed.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A client to share between every notifier.
#[derive(Clone)]
pub struct Client {
    hyper: Hyper<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    pub fn new() -> Result<Client, rustls::Error> {
        use hyper_rustls::ConfigBuilderExt;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?;
        // Without the system's roots (no CA bundle) HTTPS receivers fail with a clear
        // certificate error, and HTTP ones still work.
        let config = match builder.clone().with_native_roots() {
            Ok(roots) => roots.with_no_client_auth(),
            Err(e) => {
                tracing::warn!("no certificate authorities for HTTPS receivers: {e}");
                builder
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Client {
            hyper: Hyper::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// POSTs `body` with `headers` to `url`; a 2xx answer is success.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(), HttpError> {
        let mut request = http::Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(HttpError::BadRequest)?;
        let host = request.uri().host().unwrap_or_default().to_string();
        let response =
            self.hyper
                .request(request)
                .await
                .map_err(|source| HttpError::Unreachable {
                    host: host.clone(),
                    source,
                })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = match Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
        {
            Ok(body) => {
                let bytes = body.to_bytes();
                let text = String::from_utf8_lossy(&bytes);
                text.trim().chars().take(ANSWER_BYTES).collect()
            }
            Err(_) => String::new(),
        };
        Err(HttpError::Refused {
            host,
            status,
            answer,
        })
    }
}
