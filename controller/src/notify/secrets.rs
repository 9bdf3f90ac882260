//! The secrets a receiver needs (a signing key, a token, an SMTP password), read when a
//! message is sent: files on the controller's machine, or Kubernetes Secret keys through
//! whoever reads Secrets. Errors name the file or the Secret, never a value.

use std::sync::Arc;

use crate::resources::SecretSource;

/// Why a Secret key cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "Secret {namespace}/{secret} is in a namespace whose Secrets the controller does not read (it reads {}); add it with --secret-namespace",
        .allowed.join(", ")
    )]
    NamespaceNotRead {
        namespace: String,
        secret: String,
        allowed: Vec<String>,
    },
    #[error("Secret {namespace}/{secret} does not exist")]
    NoSuchSecret { namespace: String, secret: String },
    #[error("Secret {namespace}/{secret} has no key {key}")]
    NoSuchKey {
        namespace: String,
        secret: String,
        key: String,
    },
    /// A `Utf8Error`, not a `FromUtf8Error`, which would hold the secret's bytes.
    #[error("key {key} of Secret {namespace}/{secret} is not UTF-8 text")]
    NotText {
        namespace: String,
        secret: String,
        key: String,
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("Secret {namespace}/{secret}: Kubernetes Secrets are not read in files mode")]
    NoSecrets { namespace: String, secret: String },
}

/// Where Secret keys come from.
pub trait SecretKeys: Send + Sync {
    /// The value of `key` of Secret `name` in `namespace`, without a trailing line end.
    fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Result<String, KeyError>;
}

/// Why a receiver's secret cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("`hostFile` names a file on a host, which the controller cannot read")]
    HostFile,
    #[error("the secret names no source")]
    Empty,
}

/// The value `source` names, for a Notifier in `namespace`. Reads a file: call it off the
/// async threads.
pub fn read(
    keys: &Arc<dyn SecretKeys>,
    namespace: &str,
    source: &SecretSource,
) -> Result<String, SecretError> {
    if let Some(path) = &source.file {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.clone(),
            source,
        })?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Some(key) = &source.secret_key_ref {
        return Ok(keys.secret_key(namespace, &key.name, &key.key)?);
    }
    if source.host_file.is_some() {
        return Err(SecretError::HostFile);
    }
    Err(SecretError::Empty)
}
