//! An Amazon SNS stand-in for tests: what an HTTPS subscription sees of SNS.
//!
//! [`SnsStandIn::start`] makes a throwaway CA, a TLS certificate for `localhost` signed by
//! it, and an RSA-2048 signing key with its certificate, then serves over HTTPS on a free
//! loopback port:
//! - `GET /SimpleNotificationService-test.pem`: the signing certificate (counted, so a test
//!   can see it was fetched once);
//! - `GET /confirm?...`: SNS's `ConfirmSubscription` link (each call recorded).
//!
//! It builds complete SNS JSON bodies signed as SNS signs them (`SignatureVersion` 1 =
//! SHA1withRSA, 2 = SHA256withRSA over the canonical `key\nvalue\n` string). A verifier
//! under test trusts [`SnsStandIn::ca_pem`] and allows host [`SnsStandIn::cert_host`]:
//!
//! ```text
//! let sns = SnsStandIn::start().await?;
//! let settings = SnsSettings {
//!     topics: vec![TOPIC.into()],
//!     cert_hosts: vec![sns.cert_host.clone()],
//!     extra_roots_pem: Some(sns.ca_pem.clone().into_bytes()),
//! };
//! let body = sns.notification(TOPIC, r#"{"eventType":"Send", ...}"#, 2);
//! ```
//!
//! To test tampering, parse a body, change it and post it as is; to sign something
//! unusual (another cert URL, an old timestamp), build the fields and call
//! [`SnsStandIn::sign`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum_server::tls_rustls::RustlsConfig;
use base64::prelude::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, PKCS_RSA_SHA256, RsaKeySize};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use crate::shared::lock;

mod pkcs1;

/// The signing certificate's path on the stand-in.
pub const CERT_PATH: &str = "/SimpleNotificationService-test.pem";

#[derive(Default)]
struct Shared {
    cert_pem: String,
    cert_fetches: Mutex<usize>,
    confirmations: Mutex<Vec<String>>,
}

/// A running stand-in; its server stops when dropped.
pub struct SnsStandIn {
    /// `https://localhost:PORT`.
    pub base_url: String,
    /// `localhost:PORT`: the host to allow for certificate and subscribe URLs.
    pub cert_host: String,
    /// The throwaway CA (PEM) that signed the server's TLS certificate.
    pub ca_pem: String,
    /// The `SigningCertURL` of the messages this stand-in signs.
    pub cert_url: String,
    /// The signing certificate (PEM), as served.
    pub signing_cert_pem: String,
    addr: SocketAddr,
    /// Signs version 2 (SHA-256).
    key: RsaKeyPair,
    /// Signs version 1 (SHA-1), which aws-lc-rs does not.
    legacy_key: pkcs1::RsaPrivate,
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
    task: JoinHandle<()>,
}

impl Drop for SnsStandIn {
    fn drop(&mut self) {
        self.handle.shutdown();
        self.task.abort();
    }
}

impl SnsStandIn {
    /// Generates the certificates and starts the HTTPS server on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        // The CA and the TLS certificate of the server.
        let ca_key = KeyPair::generate().context("CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "BitMail test SNS CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).context("CA certificate")?;
        let tls_key = KeyPair::generate().context("TLS key")?;
        let tls_cert = CertificateParams::new(vec!["localhost".to_owned()])
            .context("TLS params")?
            .signed_by(&tls_key, &ca)
            .context("TLS certificate")?;

        // The RSA key SNS signs messages with, in a self-signed certificate (what matters
        // to a verifier is only that it was fetched over TLS from an allowed host).
        let signing_key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).context("RSA signing key")?;
        let mut signing_params =
            CertificateParams::new(vec!["sns.amazonaws.com".to_owned()]).context("signing params")?;
        signing_params.distinguished_name.push(DnType::CommonName, "sns.amazonaws.com");
        let signing_cert = signing_params.self_signed(&signing_key).context("signing certificate")?;
        let key = RsaKeyPair::from_pkcs8(&signing_key.serialize_der())
            .map_err(|e| anyhow::anyhow!("the generated RSA key does not load: {e}"))?;
        let legacy_key = pkcs1::RsaPrivate::from_pkcs8(&signing_key.serialize_der())
            .context("the generated RSA key is not a PKCS#8 RSA key")?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![tls_cert.der().clone(), CertificateDer::from(ca.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(tls_key.serialize_der())),
            )?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { cert_pem: signing_cert.pem(), ..Default::default() });
        let app =
            Router::new().route(CERT_PATH, get(serve_cert)).route("/confirm", get(confirm)).with_state(shared.clone());
        let handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(tls)))?.handle(handle.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, "the SNS stand-in stopped");
            }
        });
        let base_url = format!("https://localhost:{}", addr.port());
        Ok(SnsStandIn {
            cert_host: format!("localhost:{}", addr.port()),
            cert_url: format!("{base_url}{CERT_PATH}"),
            ca_pem: ca.pem(),
            signing_cert_pem: signing_cert.pem(),
            base_url,
            addr,
            key,
            legacy_key,
            shared,
            handle,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `Notification` on `topic` carrying `message`, timestamped now, signed with
    /// `SignatureVersion` `version` (1 or 2).
    pub fn notification(&self, topic: &str, message: &str, version: u8) -> String {
        self.notification_at(topic, message, version, now_ms())
    }

    /// As [`Self::notification`], timestamped `timestamp_ms`.
    pub fn notification_at(&self, topic: &str, message: &str, version: u8, timestamp_ms: u64) -> String {
        let fields = json!({
            "Type": "Notification",
            "MessageId": new_id(),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": iso8601(timestamp_ms),
            "UnsubscribeURL": format!("{}/unsubscribe?SubscriptionArn={topic}:sub", self.base_url),
        });
        self.sign(fields.as_object().cloned().unwrap_or_default(), version, &self.cert_url)
    }

    /// A `SubscriptionConfirmation` for `topic`, signed with version 2, whose
    /// `SubscribeURL` is this stand-in's `/confirm`.
    pub fn subscription_confirmation(&self, topic: &str) -> String {
        let token = format!("token-{}", new_id());
        let fields = json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": new_id(),
            "Token": token,
            "TopicArn": topic,
            "Message": format!("You have chosen to subscribe to the topic {topic}.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
            "SubscribeURL": format!("{}/confirm?Action=ConfirmSubscription&TopicArn={topic}&Token={token}", self.base_url),
            "Timestamp": iso8601(now_ms()),
        });
        self.sign(fields.as_object().cloned().unwrap_or_default(), 2, &self.cert_url)
    }

    /// Adds `SignatureVersion`, `SigningCertURL` and the `Signature` of `fields` (as SNS
    /// computes it, from the fields present) and returns the JSON body. Version 1 signs
    /// with SHA-1, any other with SHA-256 (the number is written as given).
    pub fn sign(&self, mut fields: Map<String, Value>, version: u8, cert_url: &str) -> String {
        let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
        let keys: &[&str] = if text("Type").as_deref() == Some("Notification") {
            &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        } else {
            &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        };
        let mut canonical = String::new();
        for key in keys {
            if let Some(value) = text(key) {
                canonical.push_str(&format!("{key}\n{value}\n"));
            }
        }
        let signature = if version == 1 {
            self.legacy_key.sign(canonical.as_bytes(), false)
        } else {
            let mut signature = vec![0; self.key.public_modulus_len()];
            self.key
                .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), canonical.as_bytes(), &mut signature)
                .unwrap_or_else(|e| panic!("RSA signing failed: {e}"));
            signature
        };
        fields.insert("SignatureVersion".into(), version.to_string().into());
        fields.insert("Signature".into(), BASE64_STANDARD.encode(&signature).into());
        fields.insert("SigningCertURL".into(), cert_url.into());
        Value::Object(fields).to_string()
    }

    /// How many times the signing certificate was fetched.
    pub fn cert_fetches(&self) -> usize {
        *lock(&self.shared.cert_fetches)
    }

    /// How many subscription confirmations were received.
    pub fn confirmations(&self) -> usize {
        lock(&self.shared.confirmations).len()
    }

    /// The query string of each subscription confirmation received, in order.
    pub fn confirmation_queries(&self) -> Vec<String> {
        lock(&self.shared.confirmations).clone()
    }
}

async fn serve_cert(State(shared): State<Arc<Shared>>) -> String {
    *lock(&shared.cert_fetches) += 1;
    shared.cert_pem.clone()
}

async fn confirm(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> (StatusCode, String) {
    let query = query.unwrap_or_default();
    if !query.contains("Action=ConfirmSubscription") || !query.contains("Token=") {
        return (
            StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Code>InvalidParameter</Code></Error></ErrorResponse>".into(),
        );
    }
    lock(&shared.confirmations).push(query);
    (StatusCode::OK, "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>arn:aws:sns:test</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>".into())
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}

/// A random id shaped like SNS's MessageId (a UUID).
fn new_id() -> String {
    let hex: String = (0..32).map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0')).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// `2012-04-25T21:49:25.719Z`, as SNS writes its `Timestamp`.
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let c = bitmail_runtime::time::civil(secs);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, c.hour, c.minute, c.second, ms % 1000)
}
