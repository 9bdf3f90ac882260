//! `holdfast-agent enroll`: trades a one-time token for a long-lived credential and stores it,
//! owner-only, in the state directory.

use std::sync::Arc;
use std::time::Duration;

use protocol::{DecodeError, EnrollRequest, EnrollResponse};
use rustls::pki_types::CertificateDer;
use ureq::http::StatusCode;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::config::{ConfigError, enroll_url};
use crate::state::{Identity, StateDir, StateError};

/// Why enrollment failed. No variant carries the token.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    ServerUrl(#[from] ConfigError),
    #[error("cannot reach the controller at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("cannot read the controller's answer: {0}")]
    UnreadableAnswer(#[source] ureq::Error),
    /// The controller's explanation, from its body, is in `why` (empty when it gave none).
    #[error(
        "the controller refused the token (HTTP {status}{}): create a new one with `holdfast token create HOST`",
        explained(.why)
    )]
    TokenRefused { status: StatusCode, why: String },
    #[error("enrollment failed with HTTP {status}: {why}")]
    Failed { status: StatusCode, why: String },
    #[error("the controller's answer is not an enrollment: {0}")]
    NotAnEnrollment(#[source] DecodeError),
    #[error("cannot store the credential: {0}")]
    Store(#[source] StateError),
}

/// `: why`, or nothing when the controller gave no reason.
fn explained(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

/// Posts the token and stores what comes back. Errors are one sentence, without the token.
pub fn enroll(
    server: &str,
    token: &str,
    ca: &[CertificateDer<'static>],
    state: &StateDir,
) -> Result<Identity, EnrollError> {
    let url = enroll_url(server)?;
    let mut tls = TlsConfig::builder();
    if !ca.is_empty() {
        let certs = ca
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let body = protocol::encode(&EnrollRequest {
        token: token.to_string(),
    });
    let mut response = agent
        .post(&url)
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .map_err(|source| EnrollError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(EnrollError::UnreadableAnswer)?;
    if !status.is_success() {
        // The controller explains a refusal in its body (expired, already used, unknown).
        let why = text.trim().to_string();
        return Err(match status.as_u16() {
            401 | 403 | 404 | 410 => EnrollError::TokenRefused { status, why },
            _ => EnrollError::Failed { status, why },
        });
    }
    let answer: EnrollResponse = protocol::decode(&text).map_err(EnrollError::NotAnEnrollment)?;
    let identity = Identity {
        server: server.trim_end_matches('/').to_string(),
        host: answer.host,
        namespace: answer.namespace,
        credential: answer.credential,
    };
    state
        .store_identity(&identity)
        .map_err(EnrollError::Store)?;
    Ok(identity)
}
