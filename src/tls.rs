//! TLS for esm's outgoing connections (event webhooks, the command-line client): rustls
//! with the ring provider and the Mozilla roots built into esm, so nothing is read from
//! the system and no second crypto library is linked.

use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

/// A client configuration trusting the built-in Mozilla roots.
pub fn client_config() -> ClientConfig {
    trusting(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
}

/// A client configuration trusting the built-in Mozilla roots and the certificates in
/// `pem` (an operator's own certificate authority).
pub fn client_config_with_roots(pem: &[u8]) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut added = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|e| format!("not a PEM certificate: {e}"))?;
        roots.add(certificate).map_err(|e| format!("not a usable certificate authority: {e}"))?;
        added += 1;
    }
    if added == 0 {
        return Err("no PEM certificate in it".into());
    }
    Ok(trusting(roots))
}

fn trusting(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Makes ring the process's default rustls provider, unless one is installed. reqwest
/// is built without a provider of its own (it would link aws-lc): a program that uses
/// esm as a library and builds its own `reqwest` clients calls this first.
/// [`crate::client::Client`] does not need it.
pub fn install_default_provider() {
    // Already installed (by this or by the program): fine either way.
    let _ = crypto::ring::default_provider().install_default();
}
