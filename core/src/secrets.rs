//! The secrets a push carries: which references of a host's repos the controller resolves
//! (files mode: `file:` on the controller's machine; Kubernetes mode: Secret keys), each once.
//! Values never reach a log or an error message; errors name the repo and the reference.

use protocol::{EnvValue, ResolvedRepo, SecretRef};

/// Every secret reference of `repos` (password, then environment), each once, with the repo
/// that names it first.
pub fn references<'a>(
    repos: impl Iterator<Item = &'a ResolvedRepo>,
) -> Vec<(&'a ResolvedRepo, &'a SecretRef)> {
    let mut out: Vec<(&ResolvedRepo, &SecretRef)> = Vec::new();
    for repo in repos {
        let env = repo.env.iter().filter_map(|e| match &e.value {
            EnvValue::Secret(reference) => Some(reference),
            EnvValue::Plain(_) => None,
        });
        for reference in std::iter::once(&repo.password).chain(env) {
            if !out.iter().any(|(_, r)| *r == reference) {
                out.push((repo, reference));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use protocol::ResolvedEnv;

    use super::*;

    fn repo(name: &str, password: SecretRef, env: Vec<(&str, EnvValue)>) -> ResolvedRepo {
        ResolvedRepo {
            name: name.into(),
            url: format!("/srv/{name}"),
            password,
            env: env
                .into_iter()
                .map(|(n, value)| ResolvedEnv {
                    name: n.into(),
                    value,
                })
                .collect(),
            initialize: false,
            initialized_by: None,
        }
    }

    #[test]
    fn each_reference_once_with_the_first_repo_that_names_it() {
        let shared = SecretRef::SecretKey {
            name: "restic".into(),
            key: "password".into(),
        };
        let key = SecretRef::SecretKey {
            name: "s3".into(),
            key: "AWS_SECRET_ACCESS_KEY".into(),
        };
        let a = repo(
            "a",
            shared.clone(),
            vec![
                ("AWS_REGION", EnvValue::Plain("eu-central-1".into())),
                ("AWS_SECRET_ACCESS_KEY", EnvValue::Secret(key.clone())),
            ],
        );
        let b = repo("b", shared.clone(), vec![]);
        let refs: Vec<(&str, &SecretRef)> = references([&a, &b, &a].into_iter())
            .into_iter()
            .map(|(r, s)| (r.name.as_str(), s))
            .collect();
        assert_eq!(refs, [("a", &shared), ("a", &key)]);
    }
}
