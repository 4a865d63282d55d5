//! A throwaway certificate authority and certificates it signs, written as PEM files:
//! what a test gives a server (`cert_file`, `key_file`) and its clients (the CA, through
//! `SSL_CERT_FILE` or their own option), so that clients verify the server as they would
//! in production. [`Ca::issue`] makes more: a certificate per service for mutual TLS
//! (good for both server and client authentication, as BitMail's services use one
//! identity for both), and a second [`Ca`] gives certificates nobody should trust.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

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

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA that can sign certificates; its own certificate is `dir/ca.pem`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("dir", &self.dir).finish()
    }
}

impl Ca {
    /// Makes a CA named `name` and writes its certificate to `dir/ca.pem` (`dir` is
    /// created if missing).
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Ca> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, ca_key).context("CA certificate")?;
        let ca = Ca { issuer, dir: dir.to_owned() };
        std::fs::write(ca.ca_file(), ca.issuer.pem()).context("writing ca.pem")?;
        Ok(ca)
    }

    /// The CA's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Signs a certificate for `names` (DNS names or IP addresses), written to
    /// `dir/{file}.pem` and its key to `dir/{file}.key`. It carries no extended key
    /// usage, so it is good as a server and as a client certificate.
    pub fn issue(&self, file: &str, names: &[&str]) -> anyhow::Result<Issued> {
        let key = KeyPair::generate().context("key")?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).context("params")?;
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or(file));
        let cert = params.signed_by(&key, &self.issuer).context("certificate")?;
        let issued = Issued { cert: self.dir.join(format!("{file}.pem")), key: self.dir.join(format!("{file}.key")) };
        std::fs::write(&issued.cert, cert.pem())?;
        std::fs::write(&issued.key, key.serialize_pem())?;
        Ok(issued)
    }
}

/// Makes a CA and a server certificate for `localhost` and `127.0.0.1` in `dir`
/// (created if missing).
pub fn write(dir: &Path) -> anyhow::Result<CaFiles> {
    let ca = Ca::new(dir, "BitMail throwaway test CA")?;
    let issued = ca.issue("cert", &["localhost", "127.0.0.1"])?;
    // The historical names: `cert.pem` and `key.pem`.
    let key = dir.join("key.pem");
    std::fs::rename(&issued.key, &key)?;
    Ok(CaFiles { ca: ca.ca_file(), cert: issued.cert, key })
}
