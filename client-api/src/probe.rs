//! `client-api --probe`: `GET /healthz` over HTTPS against the running edge, trusting
//! exactly the certificate this configuration serves (the configured one or the
//! generated one in `state_dir/tls/`), whatever names it holds. 200 is healthy: the edge
//! answers and both upstreams do too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use bitmail_runtime::probe::{PROBE_TIMEOUT, local_target};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::Config;

/// Accepts only the one certificate the edge is configured with.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("the server's certificate is not the configured one".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Ok when `GET /healthz` answers 200 within the probe timeout.
pub fn healthz(config: &Config) -> Result<(), String> {
    let cert_path = match &config.tls {
        Some(tls) => tls.cert_path.clone(),
        None => config.state_dir.join("tls/cert.pem"),
    };
    let pem = std::fs::read(&cert_path)
        .map_err(|e| format!("cannot read the certificate {} (has client-api started?): {e}", cert_path.display()))?;
    let cert = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| format!("{} holds no PEM certificate", cert_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth();

    let target = local_target(config.listen);
    let tcp =
        TcpStream::connect_timeout(&target, PROBE_TIMEOUT).map_err(|e| format!("cannot connect to {target}: {e}"))?;
    tcp.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(PROBE_TIMEOUT)).map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let connection = rustls::ClientConnection::new(Arc::new(tls), name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("{target}: {e}"))?;

    // The status line is all that matters.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(2).any(|w| w == b"\r\n") && answer.len() < 8192 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if answer.is_empty() => return Err(format!("{target}: {e}")),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("{target}: GET /healthz answered {code}")),
        None => Err(format!("{target}: no HTTP answer to GET /healthz")),
    }
}
