//! The TLS side of the MQTT link: TLS 1.3 only, the broker checked against the configured CA, and this
//! device's client certificate for mutual TLS.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::SyncError;

fn file_err(path: &Path, reason: impl std::fmt::Display) -> SyncError {
    SyncError::Tls(format!("{}: {reason}", path.display()))
}

/// Every certificate in a PEM file (at least one), or why not (shared with the panel's server side).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SyncError> {
    read_certs(path).map_err(|e| file_err(path, e))
}

/// Builds the client configuration from PEM files.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, SyncError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca)? {
        roots.add(c).map_err(|e| file_err(ca, e))?;
    }
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SyncError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| SyncError::Tls(format!("client certificate and key do not go together: {e}")))
}
