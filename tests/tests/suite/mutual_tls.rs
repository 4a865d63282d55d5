//! Mutual TLS on the gRPC links (`bitmail_runtime::grpc_tls`), over real sockets: a
//! backend-server with `[tls]` serves a client whose certificate its CA signed, and
//! refuses one without a certificate or with one from another CA; a client refuses a
//! server whose certificate does not carry the expected name; and the whole chain
//! (client-api → mta-server → backend-server, and the provider behind) sends a webmail
//! message with every link on TLS. Each refusal is checked beside a success against the
//! same server, so a server that were not up, or not on TLS, fails the test. The
//! refusal to listen beyond loopback without TLS is checked through the binaries
//! (`backend-server/tests/command_line.rs`, `mta-server/tests/suite/command_line.rs`).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bitmail_runtime::grpc_tls::ClientTls;
use bitmail_tests::ca::Ca;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, MutualTls, sendgrid};
use serde_json::json;
use tokio::sync::watch;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A folder of its own for each test, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir = std::env::temp_dir().join(format!("bitmail-mtls-{}", common::uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A backend-server (memory engine) on loopback with `[tls]`: this certificate, and
/// client certificates required from `ca`.
struct Backend {
    addr: SocketAddr,
    _stop: watch::Sender<bool>,
}

async fn backend(ca: &Ca, cert: &bitmail_tests::ca::Issued) -> Backend {
    let config = backend_server::config::Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        engine: backend_server::config::Engine::Memory,
        tls: Some(bitmail_runtime::grpc_tls::ServerTls {
            ca_file: ca.ca_file(),
            cert_file: cert.cert.clone(),
            key_file: cert.key.clone(),
        }),
        ..Default::default()
    };
    let server = backend_server::server::Server::bind(&config).await.expect("binds with [tls]");
    let addr = server.local_addr().unwrap();
    let (stop, mut rx) = watch::channel(false);
    tokio::spawn(server.serve(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    Backend { addr, _stop: stop }
}

fn link(ca: &Ca, cert: &bitmail_tests::ca::Issued, server_name: Option<&str>) -> ClientTls {
    ClientTls {
        ca_file: ca.ca_file(),
        cert_file: cert.cert.clone(),
        key_file: cert.key.clone(),
        server_name: server_name.map(str::to_owned),
    }
}

/// The error and every cause, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Connects and asks the health service; the error says why not.
async fn health(endpoint: Endpoint) -> Result<(), String> {
    let attempt = async {
        let channel = endpoint.connect().await.map_err(|e| chain(&e))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest { service: "bitmail.v1.Store".into() })
            .await
            .map(|_| ())
            .map_err(|status| format!("{status:?}"))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt).await.unwrap_or_else(|_| Err("no answer in 10 s".into()))
}

fn https(addr: SocketAddr, tls: Option<&ClientTls>) -> Endpoint {
    bitmail_runtime::grpc_tls::endpoint(&format!("https://{addr}"), tls).expect("an endpoint")
}

#[tokio::test]
async fn a_client_with_a_certificate_from_the_ca_is_served_and_one_without_is_refused() {
    let dir = Dir::new();
    let ca = Ca::new(&dir.0, "links CA").unwrap();
    let server_cert = ca.issue("backend", &["localhost", "127.0.0.1"]).unwrap();
    let client_cert = ca.issue("client", &["client.test"]).unwrap();
    let backend = backend(&ca, &server_cert).await;

    health(https(backend.addr, Some(&link(&ca, &client_cert, None)))).await.expect("a client of the CA is served");

    // The server's CA trusted, but no client certificate: the handshake is refused.
    let pem = std::fs::read(ca.ca_file()).unwrap();
    let anonymous = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)).domain_name("127.0.0.1");
    let endpoint = Endpoint::from_shared(format!("https://{}", backend.addr)).unwrap().tls_config(anonymous).unwrap();
    let err = health(endpoint).await.expect_err("no client certificate: refused");
    assert!(err.contains("CertificateRequired"), "{err}");

    // Plaintext is not served either.
    let plain = Endpoint::from_shared(format!("http://{}", backend.addr)).unwrap();
    health(plain).await.expect_err("plaintext: refused");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let dir = Dir::new();
    let ca = Ca::new(&dir.0.join("ours"), "links CA").unwrap();
    let stranger = Ca::new(&dir.0.join("theirs"), "another CA").unwrap();
    let server_cert = ca.issue("backend", &["localhost", "127.0.0.1"]).unwrap();
    let backend = backend(&ca, &server_cert).await;

    let ours = ca.issue("client", &["client.test"]).unwrap();
    health(https(backend.addr, Some(&link(&ca, &ours, None)))).await.expect("our client is served");

    // Same name, same server CA trusted; only the client certificate's issuer differs.
    let theirs = stranger.issue("client", &["client.test"]).unwrap();
    let err = health(https(backend.addr, Some(&link(&ca, &theirs, None)))).await.expect_err("another CA: refused");
    assert!(err.contains("UnknownCA"), "{err}");
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused_by_the_client() {
    let dir = Dir::new();
    let ca = Ca::new(&dir.0, "links CA").unwrap();
    let server_cert = ca.issue("backend", &["storage.internal"]).unwrap();
    let client_cert = ca.issue("client", &["client.test"]).unwrap();
    let backend = backend(&ca, &server_cert).await;

    // The URL's host (127.0.0.1) is not in the certificate.
    let err = health(https(backend.addr, Some(&link(&ca, &client_cert, None)))).await.expect_err("wrong name");
    let lower = err.to_lowercase();
    assert!(lower.contains("notvalidforname") || lower.contains("not valid for name"), "{err}");

    // The name the certificate carries, configured as `server_name`: served.
    health(https(backend.addr, Some(&link(&ca, &client_cert, Some("storage.internal")))))
        .await
        .expect("the expected name is served");

    // A server certificate from another CA, with the right name: refused too.
    let stranger = Ca::new(&dir.0.join("theirs"), "another CA").unwrap();
    let trusted_elsewhere =
        ClientTls { ca_file: stranger.ca_file(), ..link(&ca, &client_cert, Some("storage.internal")) };
    let err = health(https(backend.addr, Some(&trusted_elsewhere))).await.expect_err("unknown issuer");
    assert!(err.to_lowercase().contains("unknownissuer") || err.contains("issuer"), "{err}");
}

#[tokio::test]
async fn the_webmail_sends_through_mta_and_backend_with_every_link_on_mutual_tls() {
    let dir = Dir::new();
    let tls = MutualTls::write(&dir.0);
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let providers = vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))];
    // Keys are made through mta-server's [tenants.tls] link, the account through the
    // edge's [backend_tls], the message through its [mta_tls].
    let cluster = Cluster::start_links(providers, true, |_| {}, |_| {}, Some(&tls)).await;
    let (http, base) = cluster.https_client();
    let (cookie, csrf) = common::sign_in(&http, &base, "ada", "analytical engine").await;
    let sent = http
        .post(format!("{base}/api/messages"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({ "to": "bob@example.net", "subject": "Over mTLS", "markdown": "sealed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), reqwest::StatusCode::ACCEPTED, "{}", sent.text().await.unwrap_or_default());
    let sent: serde_json::Value = sent.json().await.unwrap();
    assert!(sent["mta_id"].as_str().is_some_and(|id| !id.is_empty()), "{sent}");
    let received = fake.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["subject"], "Over mTLS");

    // The services behind the edge answer no plaintext.
    for addr in [cluster.mta, cluster.backend] {
        let plain = Endpoint::from_shared(format!("http://{addr}")).unwrap();
        health(plain).await.expect_err("plaintext is refused");
    }
    // And an mta-server client with a certificate of the CA is served.
    let endpoint = https(cluster.mta, Some(&tls.client(&tls.edge)));
    let channel = endpoint.connect().await.expect("connects over mutual TLS");
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service: "bitmail.v1.Mta".into() }).await;
    assert!(answer.is_ok(), "{answer:?}");
}
