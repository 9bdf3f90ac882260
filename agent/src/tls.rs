//! TLS for both the enroll request and the WebSocket: the Mozilla roots, or only the CA in the
//! configured file for a controller with a private certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The CA certificates of `ca_file`, when one is configured.
pub fn load_ca(ca_file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: cannot read CA certificates: {e}", ca_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            ca_file.display()
        ));
    }
    Ok(certs)
}

/// A rustls client configuration trusting `ca` or, when empty, the Mozilla roots.
pub fn client_config(ca: &[CertificateDer<'static>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    if ca.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for cert in ca {
            roots
                .add(cert.clone())
                .map_err(|e| format!("CA certificate refused: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
