//! Enrollment tokens and agent credentials. Only SHA-256 hashes are stored: a copy of the
//! database gives nobody a way in.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError};
use crate::compile::HostKey;

/// Why an enrollment was refused, in one sentence the agent prints.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("unknown enrollment token; create one with `holdfast token create HOST`")]
    UnknownToken,
    #[error(
        "this enrollment token was already used; create a new one with `holdfast token create {0}`"
    )]
    TokenUsed(String),
    #[error("this enrollment token expired; create a new one with `holdfast token create {0}`")]
    TokenExpired(String),
    #[error(
        "host {0} is no longer declared in the fleet; declare it again before enrolling its agent"
    )]
    HostNotDeclared(String),
}

/// What a successful enrollment yields; the credential is shown once and stored only as a hash.
#[derive(Debug)]
pub struct Enrolled {
    pub host: HostKey,
    pub credential: String,
}

/// Namespace, host, expiry and time of use of a stored token.
type TokenRow = (String, String, DateTime<Utc>, Option<DateTime<Utc>>);

/// The SHA-256 of a token or credential, hex: all that is ever stored.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The OS gave no random bytes, so no token or credential can be made.
#[derive(Debug, thiserror::Error)]
#[error("no randomness from the OS: {0}")]
pub struct NoRandomness(#[source] getrandom::Error);

/// 32 random bytes, hex: unguessable and safe in a header or a shell.
pub fn random_secret() -> Result<String, NoRandomness> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(NoRandomness)?;
    Ok(hex::encode(bytes))
}

impl Store {
    /// Creates a one-time token for `host`, valid until `expires_at`.
    pub fn create_token(
        &mut self,
        host: &HostKey,
        expires_at: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let token = random_secret().map_err(|source| StoreError::NoRandomness {
            path: self.path.display().to_string(),
            source,
        })?;
        self.conn
            .execute(
                "INSERT INTO tokens (hash, namespace, host, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash(&token), host.namespace, host.name, expires_at],
            )
            .map_err(|e| self.sqlite(e))?;
        Ok(token)
    }

    /// Trades a token for a new credential, in one transaction; nothing is written on refusal.
    pub fn enroll(
        &mut self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<Enrolled, AuthError>, StoreError> {
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let row: Option<TokenRow> = tx
            .query_row(
                "SELECT namespace, host, expires_at, used_at FROM tokens WHERE hash = ?1",
                [hash(token)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((namespace, name, expires_at, used_at)) = row else {
            return Ok(Err(AuthError::UnknownToken));
        };
        let host = HostKey::new(&namespace, &name);
        if used_at.is_some() {
            return Ok(Err(AuthError::TokenUsed(host.to_string())));
        }
        if expires_at <= now {
            return Ok(Err(AuthError::TokenExpired(host.to_string())));
        }
        let declared: Option<i64> = tx
            .query_row(
                "SELECT removed FROM host_plans WHERE namespace = ?1 AND host = ?2",
                params![namespace, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if declared != Some(0) {
            return Ok(Err(AuthError::HostNotDeclared(host.to_string())));
        }
        let credential = random_secret().map_err(|source| StoreError::NoRandomness {
            path: path.clone(),
            source,
        })?;
        tx.execute(
            "UPDATE tokens SET used_at = ?1 WHERE hash = ?2",
            params![now, hash(token)],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO credentials (hash, namespace, host, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash(&credential), namespace, name, now],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Ok(Enrolled { host, credential }))
    }

    /// The host a credential belongs to.
    pub fn authenticate(&self, credential: &str) -> Result<Option<HostKey>, StoreError> {
        self.conn
            .query_row(
                "SELECT namespace, host FROM credentials WHERE hash = ?1",
                [hash(credential)],
                |r| {
                    Ok(HostKey::new(
                        &r.get::<_, String>(0)?,
                        &r.get::<_, String>(1)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    /// Declares a host as an applied revision would (`removed` when it was taken out).
    fn declare(store: &Store, host: &HostKey, removed: bool) {
        store
            .conn
            .execute(
                "INSERT INTO host_plans (namespace, host, version, digest, plan, removed)
                 VALUES (?1, ?2, 1, 'sha256:x', '{}', ?3)",
                params![host.namespace, host.name, removed as i64],
            )
            .unwrap();
    }

    #[test]
    fn enrollments_on_connections_that_write_at_once_all_succeed() {
        // The controller enrolls on its credentials connection while its main one stores
        // reports and `holdfast token create` writes from another process. A transaction that
        // reads before it writes must not fail because another wrote in between.
        let (dir, store) = store();
        let hosts: Vec<HostKey> = (0..4)
            .map(|i| HostKey::new("default", &format!("web-{i}")))
            .collect();
        for host in &hosts {
            declare(&store, host, false);
        }
        drop(store);
        let later = Utc::now() + chrono::Duration::hours(1);
        let failures: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = hosts
                .iter()
                .map(|host| {
                    let path = dir.path();
                    scope.spawn(move || {
                        let mut store = Store::open(path).unwrap();
                        let mut failures = Vec::new();
                        for _ in 0..100 {
                            let token = match store.create_token(host, later) {
                                Ok(token) => token,
                                Err(e) => {
                                    failures.push(e.to_string());
                                    continue;
                                }
                            };
                            match store.enroll(&token, Utc::now()) {
                                Ok(Ok(_)) => {}
                                Ok(Err(refused)) => failures.push(refused.to_string()),
                                Err(e) => failures.push(e.to_string()),
                            }
                        }
                        failures
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            failures.first()
        );
    }

    #[test]
    fn a_token_for_a_host_not_declared_or_removed_does_not_enroll() {
        let (_dir, mut store) = store();
        let now = Utc::now();
        let gone = HostKey::new("default", "old-1");
        declare(&store, &gone, true);
        for host in [HostKey::new("other", "web-1"), gone] {
            let token = store
                .create_token(&host, now + chrono::Duration::hours(1))
                .unwrap();
            let refused = store.enroll(&token, now).unwrap().unwrap_err();
            assert_eq!(refused, AuthError::HostNotDeclared(host.to_string()));
            assert!(
                refused.to_string().contains("no longer declared"),
                "{refused}"
            );
        }
        let credentials: i64 = store
            .conn
            .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
            .unwrap();
        assert_eq!(credentials, 0);
    }

    #[test]
    fn a_token_enrolls_once_and_the_credential_authenticates_its_host() {
        let (_dir, mut store) = store();
        let now = Utc::now();
        let host = HostKey::new("default", "web-1");
        declare(&store, &host, false);
        let token = store
            .create_token(&host, now + chrono::Duration::hours(1))
            .unwrap();
        let enrolled = store.enroll(&token, now).unwrap().unwrap();
        assert_eq!(enrolled.host, host);
        assert_eq!(
            store.authenticate(&enrolled.credential).unwrap(),
            Some(host.clone())
        );
        assert_eq!(store.authenticate("not-a-credential").unwrap(), None);
        assert_eq!(
            store.enroll(&token, now).unwrap().unwrap_err(),
            AuthError::TokenUsed("web-1".into())
        );
    }

    #[test]
    fn expired_and_unknown_tokens_are_refused_without_writing() {
        let (_dir, mut store) = store();
        let now = Utc::now();
        let token = store
            .create_token(
                &HostKey::new("ops", "db-1"),
                now - chrono::Duration::seconds(1),
            )
            .unwrap();
        assert_eq!(
            store.enroll(&token, now).unwrap().unwrap_err(),
            AuthError::TokenExpired("ops/db-1".into())
        );
        assert_eq!(
            store.enroll("guess", now).unwrap().unwrap_err(),
            AuthError::UnknownToken
        );
        let credentials: i64 = store
            .conn
            .query_row("SELECT count(*) FROM credentials", [], |r| r.get(0))
            .unwrap();
        assert_eq!(credentials, 0);
        let stored: String = store
            .conn
            .query_row("SELECT hash FROM tokens", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, token, "only the hash is stored");
    }
}
