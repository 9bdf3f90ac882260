//! The `webhook` receiver: one JSON POST per message, signed with HMAC-SHA256 when the
//! Notifier names a signing secret (`X-Holdfast-Signature: sha256=<hex>` over the exact body,
//! as GitHub signs its webhooks).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::Outgoing;
use super::http::{Client, HttpError};
use crate::notices;

/// The body: everything a receiver may route or show on.
pub fn body(m: &Outgoing) -> Vec<u8> {
    let a = m.alert;
    let value = json!({
        "id": m.id,
        "notifier": format!("{}/{}", m.notifier.0, m.notifier.1),
        "status": m.state.as_str(),
        "event": a.event,
        "severity": a.severity(),
        "title": notices::title(a, m.state),
        "summary": notices::summary(a),
        "reason": a.reason,
        "namespace": a.namespace,
        "host": a.host,
        "schedule": a.schedule,
        "repo": a.repo,
        "run": a.run,
        "since": a.since,
        "at": m.at,
        "url": m.link,
        "key": a.key(),
    });
    // A JSON value always serialises.
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn send(
    client: &Client,
    url: &str,
    signing_key: Option<&str>,
    m: &Outgoing<'_>,
) -> Result<(), HttpError> {
    let body = body(m);
    let mut headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-holdfast-event", m.alert.event.to_string()),
        ("x-holdfast-delivery", m.id.to_string()),
    ];
    if let Some(key) = signing_key {
        headers.push(("x-holdfast-signature", signature(key.as_bytes(), &body)));
    }
    client.post(url, &headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
