//! TLS for both the enroll request and the WebSocket: the Mozilla roots, or only the CA in the
//! configured file for a controller with a private certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};

/// Why the CA file or the TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: cannot read CA certificates: {source}", path.display())]
    ReadCa {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    #[error("{}: no PEM certificate in the file", path.display())]
    NoCertificate { path: PathBuf },
    #[error("CA certificate refused: {0}")]
    CaRefused(#[source] rustls::Error),
    #[error(transparent)]
    ProtocolVersions(rustls::Error),
}

/// The CA certificates of `ca_file`, when one is configured.
pub fn load_ca(ca_file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|source| TlsError::ReadCa {
            path: ca_file.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca_file.to_path_buf(),
        });
    }
    Ok(certs)
}

/// A rustls client configuration trusting `ca` or, when empty, the Mozilla roots.
pub fn client_config(
    ca: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    if ca.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for cert in ca {
            roots.add(cert.clone()).map_err(TlsError::CaRefused)?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ProtocolVersions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
