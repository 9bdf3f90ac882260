//! Secret keys for a push, or for a Notifier's receiver, in Kubernetes mode. The controller reads Secrets only in the
//! namespaces it is given (`--namespace`), from a reflector store of those namespaces, and
//! sends a value only to the agents whose plan names it.

use k8s_openapi::api::core::v1::Secret;
use protocol::{ResolvedRepo, SecretRef, SecretValue};

use crate::notify::KeyError;
use crate::server::backend::SecretKeyError;

/// Values of the Secret keys the repos of a host in `namespace` reference. `lookup` finds a
/// Secret by namespace and name; a Repo outside the `allowed` namespaces, a missing Secret or
/// a missing key is an error that names the repo and the reference, never a value.
pub fn secret_values<'a>(
    namespace: &str,
    repos: impl Iterator<Item = &'a ResolvedRepo>,
    allowed: &[String],
    lookup: impl Fn(&str, &str) -> Option<std::sync::Arc<Secret>>,
) -> Result<Vec<SecretValue>, SecretKeyError> {
    let mut out = Vec::new();
    for (repo, reference) in crate::secrets::references(repos) {
        let SecretRef::SecretKey { name, key } = reference else {
            continue;
        };
        if !allowed.iter().any(|a| a == namespace) {
            return Err(SecretKeyError::NamespaceNotRead {
                namespace: namespace.to_string(),
                repo: repo.name.clone(),
                secret: name.clone(),
                allowed: allowed.to_vec(),
            });
        }
        let secret = lookup(namespace, name).ok_or_else(|| SecretKeyError::NoSuchSecret {
            namespace: namespace.to_string(),
            repo: repo.name.clone(),
            secret: name.clone(),
        })?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or_else(|| SecretKeyError::NoSuchKey {
                namespace: namespace.to_string(),
                repo: repo.name.clone(),
                secret: name.clone(),
                key: key.clone(),
            })?;
        let value = std::str::from_utf8(&bytes.0).map_err(|source| SecretKeyError::NotText {
            namespace: namespace.to_string(),
            repo: repo.name.clone(),
            secret: name.clone(),
            key: key.clone(),
            source,
        })?;
        out.push(SecretValue {
            reference: reference.clone(),
            value: value.trim_end_matches(['\n', '\r']).to_string(),
        });
    }
    Ok(out)
}

/// The value of `key` of Secret `name` in `namespace`, for a Notifier there: only from the
/// `allowed` namespaces; errors name the Secret and key, never a value.
pub fn secret_key(
    namespace: &str,
    name: &str,
    key: &str,
    allowed: &[String],
    lookup: impl Fn(&str, &str) -> Option<std::sync::Arc<Secret>>,
) -> Result<String, KeyError> {
    if !allowed.iter().any(|a| a == namespace) {
        return Err(KeyError::NamespaceNotRead {
            namespace: namespace.to_string(),
            secret: name.to_string(),
            allowed: allowed.to_vec(),
        });
    }
    let secret = lookup(namespace, name).ok_or_else(|| KeyError::NoSuchSecret {
        namespace: namespace.to_string(),
        secret: name.to_string(),
    })?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| KeyError::NoSuchKey {
            namespace: namespace.to_string(),
            secret: name.to_string(),
            key: key.to_string(),
        })?;
    let value = std::str::from_utf8(&bytes.0).map_err(|source| KeyError::NotText {
        namespace: namespace.to_string(),
        secret: name.to_string(),
        key: key.to_string(),
        source,
    })?;
    Ok(value.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use protocol::{EnvValue, ResolvedEnv};

    use super::*;

    const VALUE: &str = "correct horse battery staple";

    fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Arc<Secret> {
        Arc::new(Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Secret::default()
        })
    }

    fn repo() -> ResolvedRepo {
        ResolvedRepo {
            name: "offsite".into(),
            url: "s3:s3.example.com/backups".into(),
            password: SecretRef::SecretKey {
                name: "offsite-restic".into(),
                key: "password".into(),
            },
            env: vec![
                ResolvedEnv {
                    name: "AWS_SECRET_ACCESS_KEY".into(),
                    value: EnvValue::Secret(SecretRef::SecretKey {
                        name: "offsite-s3".into(),
                        key: "secret".into(),
                    }),
                },
                ResolvedEnv {
                    name: "RESTIC_CACHE_DIR".into(),
                    value: EnvValue::Secret(SecretRef::HostFile {
                        path: "/etc/holdfast/cache-dir".into(),
                    }),
                },
            ],
            initialize: false,
            initialized_by: None,
        }
    }

    fn cluster(namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let all = [
            secret(
                "backups",
                "offsite-restic",
                &[("password", &format!("{VALUE}\n"))],
            ),
            secret("backups", "offsite-s3", &[("secret", "s3cr3t")]),
        ];
        all.into_iter().find(|s| {
            s.metadata.namespace.as_deref() == Some(namespace)
                && s.metadata.name.as_deref() == Some(name)
        })
    }

    #[test]
    fn a_notifiers_secret_key_is_read_only_where_allowed_and_errors_name_no_value() {
        let allowed = vec!["backups".to_string()];
        assert_eq!(
            secret_key("backups", "offsite-restic", "password", &allowed, cluster).expect("read"),
            VALUE
        );
        let errors = [
            secret_key("elsewhere", "offsite-restic", "password", &allowed, cluster),
            secret_key("backups", "missing", "password", &allowed, cluster),
            secret_key("backups", "offsite-restic", "token", &allowed, cluster),
        ]
        .map(|r| r.expect_err("refused").to_string());
        assert!(errors[0].contains("does not read"), "{}", errors[0]);
        assert!(errors[1].contains("does not exist"), "{}", errors[1]);
        assert!(errors[2].contains("has no key token"), "{}", errors[2]);
        assert!(errors.iter().all(|e| !e.contains(VALUE)));
    }

    #[test]
    fn secret_keys_in_an_allowed_namespace_are_resolved_and_host_files_are_not() {
        let allowed = vec!["holdfast-system".to_string(), "backups".to_string()];
        let values =
            secret_values("backups", [repo()].iter(), &allowed, cluster).expect("resolved");
        let got: Vec<(&SecretRef, &str)> = values
            .iter()
            .map(|v| (&v.reference, v.value.as_str()))
            .collect();
        assert_eq!(got.len(), 2, "host files stay on the host");
        assert_eq!(
            got[0].1, VALUE,
            "a trailing newline is not part of a password"
        );
        assert_eq!(got[1].1, "s3cr3t");
    }

    #[test]
    fn refusals_name_the_repo_and_the_reference_but_never_a_value() {
        let only_system = vec!["holdfast-system".to_string()];
        let e = secret_values("backups", [repo()].iter(), &only_system, cluster)
            .expect_err("namespace not allowed")
            .to_string();
        assert!(
            e.contains("backups/offsite") && e.contains("holdfast-system"),
            "{e}"
        );

        let allowed = vec!["backups".to_string()];
        let e = secret_values("backups", [repo()].iter(), &allowed, |_, _| None)
            .expect_err("no Secret")
            .to_string();
        assert!(
            e.contains("offsite-restic") && e.contains("does not exist"),
            "{e}"
        );

        let wrong_key =
            |_: &str, _: &str| Some(secret("backups", "offsite-restic", &[("pw", VALUE)]));
        let e = secret_values("backups", [repo()].iter(), &allowed, wrong_key)
            .expect_err("no key")
            .to_string();
        assert!(e.contains("key password") && !e.contains(VALUE), "{e}");

        let not_text = |_: &str, _: &str| {
            let mut s = secret("backups", "offsite-restic", &[]);
            Arc::make_mut(&mut s).data = Some(BTreeMap::from([(
                "password".to_string(),
                ByteString(b"pw\xfe".to_vec()),
            )]));
            Some(s)
        };
        let e =
            secret_values("backups", [repo()].iter(), &allowed, not_text).expect_err("not text");
        assert!(e.to_string().contains("is not UTF-8 text"), "{e}");
        // Not even the error's Debug form, as a log might print it, holds the bytes.
        assert!(!format!("{e:?}").contains("254"), "{e:?}");
    }
}
