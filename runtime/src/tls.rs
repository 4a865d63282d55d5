//! A TLS server identity for every listener that speaks TLS (client-api's HTTPS edge,
//! mta-server's SMTP submission): rustls with the aws-lc-rs provider.
//!
//! An operator's PEM files are used when configured. Without them, a self-signed
//! certificate for `localhost` and `127.0.0.1` is generated on first start into a
//! folder of the service's state and reused afterwards, so clients are asked to trust it
//! once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no usable PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("cannot write the generated certificate to {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate and key come from, once resolved.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// True when BitMail generated them (a self-signed development certificate).
    pub generated: bool,
}

/// Uses the configured `(certificate, key)` files, or generates a self-signed pair into
/// `dir` on first start (`cert.pem`, and `key.pem` readable by its owner only).
pub fn ensure_certificate(configured: Option<(&Path, &Path)>, dir: &Path) -> Result<CertPaths, TlsError> {
    if let Some((cert, key)) = configured {
        return Ok(CertPaths { cert: cert.to_owned(), key: key.to_owned(), generated: false });
    }
    let paths = CertPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem"), generated: true };
    if paths.cert.is_file() && paths.key.is_file() {
        return Ok(paths);
    }
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let write = |path: &Path, contents: String| {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(path, contents))
            .map_err(|source| TlsError::Write { path: path.to_owned(), source })
    };
    write(&paths.key, certified.signing_key.serialize_pem())?;
    restrict_permissions(&paths.key);
    write(&paths.cert, certified.cert.pem())?;
    tracing::info!(cert = %paths.cert.display(), "generated a self-signed TLS certificate for localhost");
    Ok(paths)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot make the private key owner-only");
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

/// A rustls server configuration from PEM files, offering `alpn` (none for SMTP;
/// `h2`, `http/1.1` for HTTPS).
pub fn server_config(paths: &CertPaths, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
    let cert_pem = read(&paths.cert)?;
    let key_pem = read(&paths.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .ok()
        .filter(|c: &Vec<_>| !c.is_empty())
        .ok_or_else(|| TlsError::Pem { path: paths.cert.clone(), what: "certificate" })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| TlsError::Pem { path: paths.key.clone(), what: "private key" })?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses_and_refuses_garbage() {
        let dir = std::env::temp_dir().join(format!("bitmail-tls-{}", std::process::id()));
        let first = ensure_certificate(None, &dir).unwrap();
        assert!(first.generated);
        let pem = std::fs::read(&first.cert).unwrap();
        server_config(&first, &[]).unwrap();
        let second = ensure_certificate(None, &dir).unwrap();
        assert_eq!(std::fs::read(&second.cert).unwrap(), pem, "the certificate is reused, not regenerated");

        std::fs::write(&first.key, "not a key").unwrap();
        let err = server_config(&first, &[]).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
