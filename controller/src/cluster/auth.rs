//! Enrollment tokens and agent credentials in Kubernetes mode: Secrets in the controller's
//! namespace, holding only SHA-256 hashes, like the files-mode database.
//!
//! A Secret's name is derived from the hash of what it guards, so the controller finds a token
//! or a credential with one GET, and nobody can list their way to a secret (the value is not
//! there). A token is used by writing `usedAt` with the resourceVersion just read: of two
//! enrollments racing with the same token, the API server lets one win.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use super::sink::FIELD_MANAGER;
use crate::compile::HostKey;
use crate::server::backend::{BackendError, Enrollment};
use crate::store::{AuthError, Enrolled, NoRandomness, random_secret, secret_hash};

const TOKEN_TYPE: &str = "holdfast.dev/enrollment-token";
const CREDENTIAL_TYPE: &str = "holdfast.dev/agent-credential";

/// Why `holdfast token create --kube` made no token.
#[derive(Debug, thiserror::Error)]
pub enum CreateTokenError {
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
    #[error("cannot create the token's Secret: {0}")]
    CreateSecret(#[source] kube::Error),
}

fn token_name(hash: &str) -> String {
    format!("holdfast-token-{}", &hash[..20])
}

fn credential_name(hash: &str) -> String {
    format!("holdfast-credential-{}", &hash[..20])
}

fn secret(name: String, type_: &str, host: &HostKey, data: &[(&str, String)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".into(), "holdfast".into()),
                ("holdfast.dev/host".into(), host.name.clone()),
                ("holdfast.dev/host-namespace".into(), host.namespace.clone()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some(type_.into()),
        string_data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ),
        ..Secret::default()
    }
}

fn params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

fn field(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// `holdfast token create HOST --kube`: a one-time token for `host`, valid until `expires_at`.
pub async fn create_token(
    secrets: &Api<Secret>,
    host: &HostKey,
    expires_at: DateTime<Utc>,
) -> Result<String, CreateTokenError> {
    let token = random_secret()?;
    let hash = secret_hash(&token);
    let s = secret(
        token_name(&hash),
        TOKEN_TYPE,
        host,
        &[
            ("hash", hash.clone()),
            ("namespace", host.namespace.clone()),
            ("host", host.name.clone()),
            ("expiresAt", expires_at.to_rfc3339()),
        ],
    );
    secrets
        .create(&params(), &s)
        .await
        .map_err(CreateTokenError::CreateSecret)?;
    Ok(token)
}

/// Trades a token for a new credential; on refusal nothing is written.
/// `declared` says whether a Host exists now: a token outlives nothing it was issued for.
pub async fn enroll(
    secrets: &Api<Secret>,
    token: &str,
    now: DateTime<Utc>,
    declared: impl Fn(&HostKey) -> bool,
) -> Enrollment {
    let hash = secret_hash(token);
    let read = secrets
        .get_opt(&token_name(&hash))
        .await
        .map_err(BackendError::ReadToken)?;
    let Some(mut stored) = read else {
        return Ok(Err(AuthError::UnknownToken));
    };
    if field(&stored, "hash").as_deref() != Some(hash.as_str()) {
        return Ok(Err(AuthError::UnknownToken));
    }
    let host = HostKey::new(
        &field(&stored, "namespace").unwrap_or_default(),
        &field(&stored, "host").unwrap_or_default(),
    );
    if field(&stored, "usedAt").is_some() {
        return Ok(Err(AuthError::TokenUsed(host.to_string())));
    }
    let expired = field(&stored, "expiresAt")
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .is_none_or(|t| t <= now);
    if expired {
        return Ok(Err(AuthError::TokenExpired(host.to_string())));
    }
    if !declared(&host) {
        return Ok(Err(AuthError::HostNotDeclared(host.to_string())));
    }
    // The credential first, then the token marked used with the resourceVersion read: of two
    // enrollments racing with one token, the API server lets one mark it, and the other's
    // credential is deleted again. A token is never used up without a credential to show.
    let credential = random_secret()?;
    let credential_hash = secret_hash(&credential);
    let credential_secret = credential_name(&credential_hash);
    let s = secret(
        credential_secret.clone(),
        CREDENTIAL_TYPE,
        &host,
        &[
            ("hash", credential_hash.clone()),
            ("namespace", host.namespace.clone()),
            ("host", host.name.clone()),
            ("createdAt", now.to_rfc3339()),
        ],
    );
    secrets
        .create(&params(), &s)
        .await
        .map_err(BackendError::StoreCredential)?;
    stored
        .data
        .get_or_insert_default()
        .insert("usedAt".into(), ByteString(now.to_rfc3339().into_bytes()));
    let refused = match secrets
        .replace(&token_name(&hash), &params(), &stored)
        .await
    {
        Ok(_) => return Ok(Ok(Enrolled { host, credential })),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {
            Ok(Err(AuthError::TokenUsed(host.to_string())))
        }
        Err(e) => Err(BackendError::MarkTokenUsed(e)),
    };
    if let Err(e) = secrets
        .delete(&credential_secret, &DeleteParams::default())
        .await
    {
        tracing::warn!(host = %host, "cannot delete the credential of a refused enrollment: {e}");
    }
    refused
}

/// The host a credential belongs to.
pub async fn authenticate(
    secrets: &Api<Secret>,
    credential: &str,
) -> Result<Option<HostKey>, BackendError> {
    let hash = secret_hash(credential);
    let read = secrets
        .get_opt(&credential_name(&hash))
        .await
        .map_err(BackendError::ReadCredential)?;
    let Some(stored) = read else {
        return Ok(None);
    };
    if field(&stored, "hash").as_deref() != Some(hash.as_str()) {
        return Ok(None);
    }
    Ok(Some(HostKey::new(
        &field(&stored, "namespace").unwrap_or_default(),
        &field(&stored, "host").unwrap_or_default(),
    )))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::scripted::{self, status};

    const SECRETS: &str = "/api/v1/namespaces/holdfast-system/secrets";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T01:00:00Z")
            .expect("a time")
            .with_timezone(&Utc)
    }

    /// `data` as the API server returns it: base64.
    fn b64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// A token Secret as the API server returns it.
    fn stored_token(token: &str, expires: &str, used: bool) -> Value {
        let hash = secret_hash(token);
        let mut data = json!({
            "hash": b64(&hash), "namespace": b64("fleet"), "host": b64("web-1"),
            "expiresAt": b64(expires),
        });
        if used {
            data["usedAt"] = json!(b64("2026-11-22T00:30:00+00:00"));
        }
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": TOKEN_TYPE,
            "metadata": {"name": token_name(&hash), "namespace": "holdfast-system", "resourceVersion": "7"},
            "data": data
        })
    }

    type Seen = Vec<(String, String, Value)>;

    /// Serves `answers` in order and returns what was asked (method, path, body).
    fn server(answers: Vec<(u16, Value)>) -> (Api<Secret>, tokio::task::JoinHandle<Seen>) {
        let (client, asked) = scripted::api(answers);
        let task = tokio::spawn(async move {
            let asked = asked.await.expect("the server answered");
            asked
                .into_iter()
                .map(|a| (a.method.clone(), a.path().to_string(), a.body))
                .collect()
        });
        (Api::namespaced(client, "holdfast-system"), task)
    }

    #[tokio::test]
    async fn a_token_is_a_secret_holding_only_its_hash() {
        let (api, task) = server(vec![(
            201,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}),
        )]);
        let host = HostKey::new("fleet", "web-1");
        let token = create_token(&api, &host, now()).await.expect("created");
        let seen = task.await.expect("served");
        assert_eq!((seen[0].0.as_str(), seen[0].1.as_str()), ("POST", SECRETS));
        let body = &seen[0].2;
        let hash = secret_hash(&token);
        assert_eq!(body["metadata"]["name"], token_name(&hash));
        assert_eq!(body["type"], TOKEN_TYPE);
        assert_eq!(body["metadata"]["labels"]["holdfast.dev/host"], "web-1");
        assert_eq!(body["stringData"]["hash"], hash);
        assert_eq!(body["stringData"]["expiresAt"], "2026-11-22T01:00:00+00:00");
        assert!(
            !body.to_string().contains(&token),
            "the token itself is never sent: {body}"
        );
    }

    fn created() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}})
    }

    #[tokio::test]
    async fn a_token_enrolls_once_by_resource_version_and_stores_the_credential_hash() {
        let token = "t0ken";
        let (api, task) = server(vec![
            (200, stored_token(token, "2026-11-22T02:00:00+00:00", false)),
            (201, created()),
            (200, stored_token(token, "2026-11-22T02:00:00+00:00", true)),
        ]);
        let enrolled = enroll(&api, token, now(), |_| true)
            .await
            .expect("the API answers")
            .expect("enrolled");
        assert_eq!(enrolled.host, HostKey::new("fleet", "web-1"));
        let seen = task.await.expect("served");
        let hash = secret_hash(token);
        assert_eq!(seen[0].0, "GET");
        assert_eq!(seen[0].1, format!("{SECRETS}/{}", token_name(&hash)));
        assert_eq!(seen[1].0, "POST");
        let credential_hash = secret_hash(&enrolled.credential);
        assert_eq!(
            seen[1].2["metadata"]["name"],
            credential_name(&credential_hash)
        );
        assert_eq!(seen[1].2["type"], CREDENTIAL_TYPE);
        assert_eq!(seen[1].2["stringData"]["hash"], credential_hash);
        assert!(!seen[1].2.to_string().contains(&enrolled.credential));
        assert_eq!(seen[2].0, "PUT");
        assert_eq!(seen[2].1, format!("{SECRETS}/{}", token_name(&hash)));
        assert_eq!(seen[2].2["metadata"]["resourceVersion"], "7");
        assert_eq!(
            seen[2].2["data"]["usedAt"],
            b64("2026-11-22T01:00:00+00:00")
        );
    }

    #[tokio::test]
    async fn used_expired_unknown_and_undeclared_tokens_are_refused_without_writing() {
        let token = "t0ken";
        let cases = [
            (
                stored_token(token, "2026-11-22T02:00:00+00:00", true),
                200,
                AuthError::TokenUsed("fleet/web-1".into()),
            ),
            (
                stored_token(token, "2026-11-22T00:59:59+00:00", false),
                200,
                AuthError::TokenExpired("fleet/web-1".into()),
            ),
            (status(404, "NotFound"), 404, AuthError::UnknownToken),
            (
                stored_token(token, "2026-11-22T02:00:00+00:00", false),
                200,
                AuthError::HostNotDeclared("fleet/web-1".into()),
            ),
        ];
        for (answer, code, want) in cases {
            let (api, task) = server(vec![(code, answer)]);
            // Only fleet/web-2 is declared: a token for web-1 that is valid otherwise is refused.
            let declared = |h: &HostKey| *h == HostKey::new("fleet", "web-2");
            let refused = enroll(&api, token, now(), declared)
                .await
                .expect("the API answers");
            assert_eq!(refused.expect_err("refused"), want);
            let seen = task.await.expect("served");
            assert_eq!(seen.len(), 1, "only the read for {want:?}: {seen:?}");
        }
    }

    #[tokio::test]
    async fn the_loser_of_a_race_for_one_token_deletes_its_credential() {
        let token = "t0ken";
        let (api, task) = server(vec![
            (200, stored_token(token, "2026-11-22T02:00:00+00:00", false)),
            (201, created()),
            (409, status(409, "Conflict")),
            (200, status(200, "Success")),
        ]);
        let refused = enroll(&api, token, now(), |_| true)
            .await
            .expect("the API answers");
        assert_eq!(
            refused.expect_err("refused"),
            AuthError::TokenUsed("fleet/web-1".into())
        );
        let seen = task.await.expect("served");
        let methods: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["GET", "POST", "PUT", "DELETE"]);
        let created_name = seen[1].2["metadata"]["name"].as_str().expect("a name");
        assert_eq!(seen[3].1, format!("{SECRETS}/{created_name}"));
    }

    #[tokio::test]
    async fn a_credential_authenticates_its_host_and_nothing_else() {
        let credential = "cr3d";
        let hash = secret_hash(credential);
        let stored = json!({
            "apiVersion": "v1", "kind": "Secret", "type": CREDENTIAL_TYPE,
            "metadata": {"name": credential_name(&hash), "namespace": "holdfast-system"},
            "data": {"hash": b64(&hash), "namespace": b64("fleet"), "host": b64("web-1")}
        });
        let (api, task) = server(vec![(200, stored), (404, status(404, "NotFound"))]);
        assert_eq!(
            authenticate(&api, credential).await.expect("answers"),
            Some(HostKey::new("fleet", "web-1"))
        );
        assert_eq!(authenticate(&api, "guess").await.expect("answers"), None);
        let seen = task.await.expect("served");
        assert_eq!(seen[0].1, format!("{SECRETS}/{}", credential_name(&hash)));
    }
}
