//! Mutual TLS on the gRPC links between the services (client-api → mta-server,
//! client-api → backend-server, mta-server → backend-server, the proxy engine → its
//! node): tonic's rustls support with the aws-lc-rs provider, both sides verified.
//!
//! A server's `[tls]` ([`ServerTls`]) names its certificate and key and the CA that
//! client certificates must chain to: a client without a certificate from that CA is
//! refused during the handshake. Each outgoing link has a section of its own
//! ([`ClientTls`]) beside its URL: the CA the server's certificate must chain to, this
//! service's client certificate and key, and the name the server's certificate must
//! carry (by default the URL's host). A link with TLS must use an `https://` URL, and
//! an `https://` URL needs the section: plaintext is never chosen silently.
//!
//! [`check_listen`] is the rule that keeps plaintext on loopback: a gRPC server that
//! listens on any other address without `[tls]` does not start. Every file is read and
//! parsed when the configuration is checked, so a missing or garbled one is named with
//! its key before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A TLS handshake that takes longer than this is dropped, so a silent client holds no
/// connection slot.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A gRPC server's side of mutual TLS (`[tls]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// The CA (PEM, one or more certificates) that every client certificate must chain to.
    pub ca_file: PathBuf,
    /// This server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// One outgoing gRPC link's side of mutual TLS (`[mta_tls]`, `[proxy.tls]`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// The CA (PEM) that the server's certificate must chain to.
    pub ca_file: PathBuf,
    /// This service's client certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The name the server's certificate must hold; default: the URL's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why TLS files do not make a configuration. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LinkTlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{url:?} is not a usable URL: {reason}")]
    Url { url: String, reason: String },
}

fn read(path: &Path) -> Result<Vec<u8>, LinkTlsError> {
    std::fs::read(path).map_err(|source| LinkTlsError::Read { path: path.to_owned(), source })
}

/// The file's bytes, checked to hold at least one PEM certificate.
fn read_certs(path: &Path) -> Result<Vec<u8>, LinkTlsError> {
    let pem = read(path)?;
    let certs: Vec<CertificateDer<'_>> =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<_, _>>().unwrap_or_default();
    if certs.is_empty() {
        return Err(LinkTlsError::Pem { path: path.to_owned(), what: "certificate" });
    }
    Ok(pem)
}

/// The file's bytes, checked to hold a PEM private key.
fn read_key(path: &Path) -> Result<Vec<u8>, LinkTlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|_| LinkTlsError::Pem { path: path.to_owned(), what: "private key" })?;
    Ok(pem)
}

/// Checks the three files of a section, one problem per bad file, named by its key
/// (`tls.cert_file: cannot read /etc/bitmail/mta.pem: No such file or directory`).
fn check_files(section: &str, ca: &Path, cert: &Path, key: &Path, problems: &mut Vec<String>) {
    let results = [("ca_file", read_certs(ca)), ("cert_file", read_certs(cert)), ("key_file", read_key(key))];
    for (name, result) in results {
        if let Err(e) = result {
            problems.push(format!("{section}.{name}: {e}"));
        }
    }
}

impl ServerTls {
    /// Every problem with the files, for [`crate::config::Validate`]; `section` is the
    /// key of the table (`tls`).
    pub fn check(&self, section: &str, problems: &mut Vec<String>) {
        check_files(section, &self.ca_file, &self.cert_file, &self.key_file, problems);
    }

    /// tonic's server configuration: this identity, and client certificates required
    /// from the CA.
    pub fn server_config(&self) -> Result<ServerTlsConfig, LinkTlsError> {
        let identity = Identity::from_pem(read_certs(&self.cert_file)?, read_key(&self.key_file)?);
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read_certs(&self.ca_file)?))
            .timeout(HANDSHAKE_TIMEOUT))
    }

    /// The link `--probe` uses to reach this server from the same machine: it presents
    /// the server's own certificate (which must then be good for client authentication
    /// too) and expects the first DNS name of that certificate.
    pub fn probe_link(&self) -> Result<ClientTls, LinkTlsError> {
        let pem = read_certs(&self.cert_file)?;
        let leaf = CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| LinkTlsError::Pem { path: self.cert_file.clone(), what: "certificate" })?;
        let name = webpki::EndEntityCert::try_from(&leaf)
            .ok()
            .and_then(|cert| cert.valid_dns_names().next().map(str::to_owned));
        Ok(ClientTls {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name: name,
        })
    }
}

impl ClientTls {
    /// Every problem with the files; `section` is the key of the table (`mta_tls`).
    pub fn check(&self, section: &str, problems: &mut Vec<String>) {
        check_files(section, &self.ca_file, &self.cert_file, &self.key_file, problems);
        if let Some(name) = &self.server_name
            && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
        {
            problems.push(format!("{section}.server_name: {name:?} is not a DNS name or an IP address"));
        }
    }

    /// tonic's client configuration: the CA as the only root, this client's identity,
    /// and the expected server name (`host` when none is configured).
    pub fn client_config(&self, host: &str) -> Result<ClientTlsConfig, LinkTlsError> {
        let identity = Identity::from_pem(read_certs(&self.cert_file)?, read_key(&self.key_file)?);
        let name =
            self.server_name.clone().unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']').to_owned());
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_certs(&self.ca_file)?))
            .identity(identity)
            .domain_name(name)
            .timeout(HANDSHAKE_TIMEOUT))
    }
}

/// The one way every service builds a gRPC client endpoint: `url` (`http://` without
/// `tls`, `https://` with it), TCP_NODELAY, and mutual TLS when configured.
pub fn endpoint(url: &str, tls: Option<&ClientTls>) -> Result<Endpoint, LinkTlsError> {
    let bad = |reason: &str| LinkTlsError::Url { url: url.to_owned(), reason: reason.to_owned() };
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| bad(&e.to_string()))?.tcp_nodelay(true);
    let https = endpoint.uri().scheme_str() == Some("https");
    match tls {
        Some(tls) if https => {
            let host = endpoint.uri().host().ok_or_else(|| bad("no host"))?.to_owned();
            Ok(endpoint.tls_config(tls.client_config(&host)?)?)
        }
        Some(_) => Err(bad("a link with TLS needs an https:// URL")),
        None if https => Err(bad("an https:// URL needs the link's TLS section (CA, client certificate, key)")),
        None => Ok(endpoint),
    }
}

/// Checks that a link's URL and its TLS section agree, naming both keys: TLS needs
/// `https://`, and `https://` needs the section. The URL itself is checked by the caller.
pub fn check_link(url_key: &str, url: &str, tls_key: &str, tls: Option<&ClientTls>, problems: &mut Vec<String>) {
    let https = url.starts_with("https://");
    match tls {
        Some(tls) => {
            if !https {
                problems.push(format!("{url_key}: {url:?} must be an https:// URL when [{tls_key}] is set"));
            }
            tls.check(tls_key, problems);
        }
        None if https => problems
            .push(format!("{tls_key}: required for the https:// {url_key} (ca_file, cert_file, key_file: mutual TLS)")),
        None => {}
    }
}

/// The rule that keeps plaintext on loopback: a gRPC server listening on an address
/// that is not loopback needs `[tls]`. Also checks the section's files.
pub fn check_listen(
    listen_key: &str,
    listen: SocketAddr,
    tls_key: &str,
    tls: Option<&ServerTls>,
    problems: &mut Vec<String>,
) {
    match tls {
        Some(tls) => tls.check(tls_key, problems),
        None if !listen.ip().is_loopback() => problems.push(format!(
            "{tls_key}: required because {listen_key} = \"{listen}\" is not a loopback address: set [{tls_key}] ca_file, cert_file and key_file (mutual TLS), or listen on 127.0.0.1"
        )),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_only_on_loopback_and_the_key_is_named() {
        let mut problems = Vec::new();
        check_listen("listen", "127.0.0.1:1".parse().unwrap(), "tls", None, &mut problems);
        check_listen("listen", "[::1]:1".parse().unwrap(), "tls", None, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        check_listen("listen", "0.0.0.0:50051".parse().unwrap(), "tls", None, &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("tls: required because listen = \"0.0.0.0:50051\""), "{problems:?}");
    }

    #[test]
    fn missing_files_and_mismatched_schemes_are_named() {
        let tls = ClientTls {
            ca_file: "/nonexistent/ca.pem".into(),
            cert_file: "/nonexistent/c.pem".into(),
            key_file: "/nonexistent/k.pem".into(),
            server_name: Some("bad name!".into()),
        };
        let mut problems = Vec::new();
        check_link("mta_url", "http://10.0.0.1:1", "mta_tls", Some(&tls), &mut problems);
        let all = problems.join("\n");
        for needle in [
            "mta_url: \"http://10.0.0.1:1\" must be an https:// URL",
            "mta_tls.ca_file: cannot read /nonexistent/ca.pem",
            "mta_tls.cert_file: cannot read /nonexistent/c.pem",
            "mta_tls.key_file: cannot read /nonexistent/k.pem",
            "mta_tls.server_name",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
        let mut problems = Vec::new();
        check_link("backend_url", "https://db:1", "backend_tls", None, &mut problems);
        assert!(problems[0].starts_with("backend_tls: required for the https:// backend_url"), "{problems:?}");
        assert!(endpoint("https://db:1", None).is_err());
        assert!(endpoint("http://db:1", None).is_ok());
    }
}
