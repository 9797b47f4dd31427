//! The panel's certificate: the site's own (`[panel] cert` and `key`), or a self-signed one made on first
//! start in the data folder (ECDSA P-256, ten years, the configured host names). TLS 1.3 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::PanelError;

fn err(path: &Path, reason: impl std::fmt::Display) -> PanelError {
    PanelError::Cert {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PanelError> {
    crate::sync::tls::read_certs(path).map_err(|e| err(path, e))
}

/// The server configuration: TLS 1.3 only, HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, PanelError> {
    let chain = certs(cert)?;
    // The self-signed key is sealed when the data folder is encrypted (opened here); a site's own key file
    // is read as it is (or from a systemd credential: docs/operations.md, at rest).
    let pem = crate::secrets::sealed::read(key).map_err(|e| err(key, e))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| err(key, e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| err(key, format!("certificate and key do not go together: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Writes a new self-signed certificate and key (0600) for these host names; returns their paths.
pub fn self_signed(dir: &Path, hostnames: &[String]) -> Result<(PathBuf, PathBuf), PanelError> {
    let (cert_path, key_path) = (dir.join("panel-cert.pem"), dir.join("panel-key.pem"));
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let mut names = hostnames.to_vec();
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|h| h == n) {
            names.push(n.to_string());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| err(&cert_path, e))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        hostnames.first().map(String::as_str).unwrap_or("gatehouse"),
    );
    let year = chrono::Datelike::year(&chrono::Utc::now());
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let key = rcgen::KeyPair::generate().map_err(|e| err(&key_path, e))?;
    let cert = params.self_signed(&key).map_err(|e| err(&cert_path, e))?;
    crate::secrets::sealed::replace(&key_path, key.serialize_pem().as_bytes()).map_err(|e| err(&key_path, e))?;
    crate::secret_file::replace_mode(&cert_path, cert.pem().as_bytes(), crate::secret_file::PUBLIC)
        .map_err(|e| err(&cert_path, e))?;
    Ok((cert_path, key_path))
}

/// The configured certificate, or the self-signed one in `data_dir` (made when missing).
pub fn ensure(cfg: &crate::config::PanelConfig, data_dir: &Path) -> Result<(PathBuf, PathBuf), PanelError> {
    if let (Some(c), Some(k)) = (&cfg.cert, &cfg.key) {
        return Ok((c.clone(), k.clone()));
    }
    let (c, k) = (data_dir.join("panel-cert.pem"), data_dir.join("panel-key.pem"));
    if c.exists() && k.exists() {
        // Made in clear by an older version: sealed now when the data folder is encrypted.
        crate::secrets::sealed::read_secret(&k).map_err(|e| err(&k, e))?;
        return Ok((c, k));
    }
    let made = self_signed(data_dir, &cfg.hostnames)?;
    tracing::info!(cert = %made.0.display(), "made a self-signed panel certificate");
    Ok(made)
}

/// SHA-256 of the first certificate (what a guard compares on the tablet's warning page).
pub fn fingerprint(cert: &Path) -> Result<String, PanelError> {
    let c = certs(cert)?;
    Ok(Sha256::digest(c[0].as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}
