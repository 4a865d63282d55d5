//! A throwaway certificate authority and a server certificate it signed for `localhost`
//! and `127.0.0.1`, written as PEM files: what a test gives a server (`cert_file`,
//! `key_file`) and its clients (the CA, through `SSL_CERT_FILE` or their own option),
//! so that clients verify the server as they would in production.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// The files written by [`write`].
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The server certificate, signed by the CA.
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
}

/// Makes a CA and a server certificate in `dir` (created if missing).
pub fn write(dir: &Path) -> anyhow::Result<CaFiles> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "BitMail throwaway test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).context("CA certificate")?;
    let key = KeyPair::generate().context("server key")?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).context("server params")?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca).context("server certificate")?;
    let files = CaFiles { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.ca, ca.pem())?;
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}
