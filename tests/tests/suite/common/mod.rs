//! Starts BitMail's services in this process, each on an ephemeral loopback port with
//! its real gRPC or HTTPS listener, wired to each other and to fake providers.

#![allow(dead_code)]

pub mod stack;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backend_server::store::Store;
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_runtime::config::Secret;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_runtime::grpc_tls::{ClientTls, ServerTls};
use bitmail_tests::ca::Issued;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use mta_server::config::{MailgunConfig, ProviderConfig, SendGridConfig};
use tokio::sync::watch;
use tonic::transport::Channel;

pub const KEY: &str = "SG.test-key";

/// The `From` domains of tenant `default`: every domain the tests send from
/// (`unverified.test`: a sender SES does not know, which the tenant must let through).
pub const DEFAULT_DOMAINS: [&str; 3] = ["bitmail.test", "example.net", "unverified.test"];

/// An mta-server client whose calls carry an API key.
pub type Mta = MtaClient<WithKey>;

/// The certificates of a cluster whose gRPC links are all mutual TLS: one CA, and one
/// certificate per service, its server and its client identity at once.
pub struct MutualTls {
    pub ca: PathBuf,
    pub backend: Issued,
    pub mta: Issued,
    pub edge: Issued,
}

impl MutualTls {
    /// A throwaway CA in `dir` and the three services' certificates, for `127.0.0.1`.
    pub fn write(dir: &std::path::Path) -> MutualTls {
        let ca = bitmail_tests::ca::Ca::new(dir, "BitMail test links CA").expect("a CA");
        let issue = |name: &str| ca.issue(name, &["localhost", "127.0.0.1"]).expect("a certificate");
        MutualTls { ca: ca.ca_file(), backend: issue("backend"), mta: issue("mta"), edge: issue("edge") }
    }

    pub fn server(&self, cert: &Issued) -> ServerTls {
        ServerTls { ca_file: self.ca.clone(), cert_file: cert.cert.clone(), key_file: cert.key.clone() }
    }

    pub fn client(&self, cert: &Issued) -> ClientTls {
        ClientTls {
            ca_file: self.ca.clone(),
            cert_file: cert.cert.clone(),
            key_file: cert.key.clone(),
            server_name: None,
        }
    }
}

/// A running set of services; everything stops when it is dropped.
pub struct Cluster {
    pub backend: SocketAddr,
    pub mta: SocketAddr,
    pub edge: Option<SocketAddr>,
    pub cert: Option<PathBuf>,
    /// An `admin` key of tenant `default`, which [`Cluster::mta_client`] sends.
    pub admin_key: String,
    /// The `service` key client-api sends (its `mta_key`).
    pub service_key: String,
    /// mta-server's SMTP listeners, when the config named them.
    pub smtp: mta_server::smtp::SmtpAddrs,
    /// mta-server's configuration as started (for keys made later).
    pub mta_config: mta_server::config::Config,
    stop: watch::Sender<bool>,
    pub state_dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

pub fn sendgrid(name: &str, fake: &FakeSendGrid, timeout: Duration) -> ProviderConfig {
    ProviderConfig::Sendgrid(SendGridConfig {
        name: name.into(),
        base_url: fake.base_url(),
        api_key: Secret::new(KEY),
        sandbox: false,
        webhook_public_key: None,
        inbound_password: None,
        connect_timeout_ms: 1000,
        timeout_ms: timeout.as_millis() as u64,
        weight: 1,
        limits: Default::default(),
    })
}

pub fn mailgun(name: &str, fake: &FakeMailgun, timeout: Duration) -> ProviderConfig {
    ProviderConfig::Mailgun(MailgunConfig {
        name: name.into(),
        base_url: fake.base_url(),
        domain: "mg.bitmail.test".into(),
        api_key: Secret::new(KEY),
        test_mode: false,
        webhook_signing_key: None,
        connect_timeout_ms: 1000,
        timeout_ms: timeout.as_millis() as u64,
        weight: 1,
        limits: Default::default(),
    })
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Cluster {
    /// backend-server and mta-server with these providers; with `edge`, client-api too.
    pub async fn start(providers: Vec<ProviderConfig>, edge: bool) -> Cluster {
        Self::start_with(providers, edge, |_| {}).await
    }

    pub async fn start_with(
        providers: Vec<ProviderConfig>,
        edge: bool,
        tune: impl FnOnce(&mut mta_server::config::Config),
    ) -> Cluster {
        Self::start_full(providers, edge, tune, |_| {}).await
    }

    /// With client-api serving the built webmail (`cargo xtask web`).
    pub async fn start_webmail(providers: Vec<ProviderConfig>) -> Cluster {
        let dir = web_dir();
        Self::start_full(providers, true, |_| {}, move |c| c.web_dir = Some(dir)).await
    }

    pub async fn start_full(
        providers: Vec<ProviderConfig>,
        edge: bool,
        tune: impl FnOnce(&mut mta_server::config::Config),
        tune_edge: impl FnOnce(&mut client_api::config::Config),
    ) -> Cluster {
        Self::start_inner(providers, edge, tune, tune_edge, None, None).await
    }

    /// With client-api, and backend-server serving `store` instead of its own engine.
    pub async fn start_edge_over(store: Arc<dyn Store>, providers: Vec<ProviderConfig>) -> Cluster {
        Self::start_inner(providers, true, |_| {}, |_| {}, None, Some(store)).await
    }

    /// [`Cluster::start_full`], with every gRPC link mutual TLS when `tls` is given.
    pub async fn start_links(
        providers: Vec<ProviderConfig>,
        edge: bool,
        tune: impl FnOnce(&mut mta_server::config::Config),
        tune_edge: impl FnOnce(&mut client_api::config::Config),
        tls: Option<&MutualTls>,
    ) -> Cluster {
        Self::start_inner(providers, edge, tune, tune_edge, tls, None).await
    }

    async fn start_inner(
        providers: Vec<ProviderConfig>,
        edge: bool,
        tune: impl FnOnce(&mut mta_server::config::Config),
        tune_edge: impl FnOnce(&mut client_api::config::Config),
        tls: Option<&MutualTls>,
        store: Option<Arc<dyn Store>>,
    ) -> Cluster {
        let scheme = if tls.is_some() { "https" } else { "http" };
        // Quiet unless asked: BITMAIL_TEST_LOG=info cargo test ...
        if std::env::var_os("BITMAIL_TEST_LOG").is_some() {
            bitmail_runtime::init_tracing("BITMAIL_TEST_LOG");
        }
        let (stop, rx) = watch::channel(false);

        let state_dir = std::env::temp_dir().join(format!("bitmail-test-{}", uuid_like()));
        let mut backend_config = backend_server::config::Config { listen: loopback(), ..Default::default() };
        backend_config.embedded.path = state_dir.join("store.redb");
        backend_config.embedded.cache_bytes = 4 << 20;
        backend_config.tls = tls.map(|t| t.server(&t.backend));
        let backend = match store {
            None => backend_server::server::Server::bind(&backend_config).await,
            Some(store) => backend_server::server::Server::bind_with_store(&backend_config, store).await,
        };
        let backend = backend.expect("backend binds");
        let backend_addr = backend.local_addr().unwrap();
        tokio::spawn(backend.serve(stopped(&rx)));

        let mut mta_config = mta_server::config::Config { listen: loopback(), providers, ..Default::default() };
        mta_config.retry.initial_secs = 1;
        mta_config.spool.path = state_dir.join("spool.redb");
        mta_config.spool.cache_bytes = 4 << 20;
        mta_config.tenants.store = format!("{scheme}://{backend_addr}");
        mta_config.tenants.tls = tls.map(|t| t.client(&t.mta));
        mta_config.tls = tls.map(|t| t.server(&t.mta));
        mta_config.tenants.default_domains = DEFAULT_DOMAINS.map(String::from).to_vec();
        tune(&mut mta_config);
        // The keys exist before anything calls mta-server, as after `mta-server create-key`.
        let admin_key = create_key(&mta_config, "admin", "tests-admin").await;
        let service_key = create_key(&mta_config, "service", "client-api").await;
        let mta = mta_server::server::Server::bind(&mta_config).await.expect("mta binds");
        let mta_addr = mta.local_addr().unwrap();
        let smtp = mta.smtp_addrs();
        tokio::spawn(mta.serve(stopped(&rx)));

        let (edge_addr, cert) = if edge {
            let mut config = client_api::config::Config {
                listen: loopback(),
                state_dir: state_dir.clone(),
                mta_url: format!("{scheme}://{mta_addr}"),
                mta_key: Some(Secret::new(service_key.clone())),
                backend_url: format!("{scheme}://{backend_addr}"),
                mta_tls: tls.map(|t| t.client(&t.edge)),
                backend_tls: tls.map(|t| t.client(&t.edge)),
                mail_domain: "bitmail.test".into(),
                signup_on_first_login: true,
                ..Default::default()
            };
            tune_edge(&mut config);
            let server = client_api::server::Server::bind(&config).await.expect("client-api binds");
            let addr = server.local_addr().unwrap();
            let cert = server.cert.cert.clone();
            tokio::spawn(server.serve(stopped(&rx)));
            (Some(addr), Some(cert))
        } else {
            (None, None)
        };
        Cluster {
            backend: backend_addr,
            mta: mta_addr,
            edge: edge_addr,
            cert,
            admin_key,
            service_key,
            smtp,
            mta_config,
            stop,
            state_dir,
        }
    }

    /// An mta-server client sending the admin key.
    pub async fn mta_client(&self) -> Mta {
        self.mta_client_with(Some(&self.admin_key)).await
    }

    /// An mta-server client sending `key` (none: no `authorization` at all).
    pub async fn mta_client_with(&self, key: Option<&str>) -> Mta {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", self.mta))
            .unwrap()
            .connect()
            .await
            .expect("mta connects");
        MtaClient::with_interceptor(channel, Bearer::new(key).expect("a printable key"))
    }

    pub async fn store_client(&self) -> StoreClient<Channel> {
        StoreClient::connect(format!("http://{}", self.backend)).await.expect("backend connects")
    }

    /// Another client-api on the same store and state folder (so the same certificate,
    /// and the same sessions through the store), configured like the first and then by
    /// `tune`; answers a client for it and its base URL, as [`Cluster::https_client`].
    pub async fn another_edge(&self, tune: impl FnOnce(&mut client_api::config::Config)) -> (reqwest::Client, String) {
        let mut config = client_api::config::Config {
            listen: loopback(),
            state_dir: self.state_dir.clone(),
            mta_url: format!("http://{}", self.mta),
            mta_key: Some(Secret::new(self.service_key.clone())),
            backend_url: format!("http://{}", self.backend),
            mail_domain: "bitmail.test".into(),
            signup_on_first_login: true,
            ..Default::default()
        };
        tune(&mut config);
        let server = client_api::server::Server::bind(&config).await.expect("client-api binds");
        let addr = server.local_addr().unwrap();
        tokio::spawn(server.serve(stopped(&self.stop.subscribe())));
        self.client_for(addr, None)
    }

    /// Another mta-server on the same backend and `[tenants] store` (so the same keys
    /// and tenants), with its own spool, configured like the first and then by `tune`;
    /// it stops when the answer is stopped or dropped (several nodes, `several_mtas.rs`).
    pub async fn another_mta(&self, tune: impl FnOnce(&mut mta_server::config::Config)) -> OtherMta {
        let mut config = self.mta_config.clone();
        config.listen = loopback();
        config.spool.path = self.state_dir.join(format!("spool-{}.redb", uuid_like()));
        tune(&mut config);
        let mta = mta_server::server::Server::bind(&config).await.expect("the other mta binds");
        let addr = mta.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let served = tokio::spawn(mta.serve(stopped(&rx)));
        OtherMta { addr, stop, served: Some(served) }
    }

    /// An HTTPS client that trusts only the edge's generated certificate and reaches it
    /// as `https://localhost:PORT`.
    pub fn https_client(&self) -> (reqwest::Client, String) {
        self.client_for(self.edge.expect("started with the edge"), None)
    }

    /// As [`Cluster::https_client`], connecting from the loopback address `local` (the
    /// edge limits sign-ins per client address).
    pub fn https_client_from(&self, local: Option<IpAddr>) -> (reqwest::Client, String) {
        self.client_for(self.edge.expect("started with the edge"), local)
    }

    fn client_for(&self, edge: SocketAddr, local: Option<IpAddr>) -> (reqwest::Client, String) {
        let pem = std::fs::read(self.cert.as_ref().unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .resolve("localhost", edge)
            .local_address(local)
            .build()
            .unwrap();
        (client, format!("https://localhost:{}", edge.port()))
    }
}

/// An mta-server started by [`Cluster::another_mta`].
pub struct OtherMta {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    served: Option<tokio::task::JoinHandle<Result<(), mta_server::server::BoxError>>>,
}

impl OtherMta {
    /// Stops it (its grace period, `shutdown_grace_secs`, bounds the wait) and waits
    /// until it has stopped: its port refuses connections from then on.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
    }
}

impl Drop for OtherMta {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The built webmail: `BITMAIL_WEB_DIR`, else `target/web` (both written by `cargo xtask web`).
pub fn web_dir() -> PathBuf {
    let dir = std::env::var_os("BITMAIL_WEB_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/web"), PathBuf::from);
    assert!(
        dir.join("index.html").is_file(),
        "no webmail build in {}: run `cargo xtask web` (cargo xtask test does)",
        dir.display()
    );
    dir
}

/// Signs in (creating the account) and answers the session cookie and CSRF token.
pub async fn sign_in(http: &reqwest::Client, base: &str, name: &str, password: &str) -> (String, String) {
    let response = http
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK, "signing in as {name}");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

/// A key of tenant `default` (made if missing) with one scope, made the way
/// `mta-server create-key` makes it, in the `[tenants]` store of `config`.
pub async fn create_key(config: &mta_server::config::Config, scope: &str, name: &str) -> String {
    let args = mta_server::tenancy::CreateKey {
        config: None,
        tenant: "default".into(),
        scopes: vec![scope.into()],
        name: name.into(),
        expires_days: None,
    };
    mta_server::tenancy::create_key(args, config).await.unwrap_or_else(|e| panic!("creating the {scope} key: {e}"))
}

/// Unique in this process (a counter: two clusters can start in the same clock tick)
/// and across processes (the pid and the time).
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A plain, valid submission.
pub fn submission(to: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        from: "Ada <ada@bitmail.test>".into(),
        to: vec![to.into()],
        subject: "Hello".into(),
        text: "Hi there".into(),
        ..Default::default()
    }
}

/// Polls GetMessage until the message leaves queued/sending/deferred, or `timeout`.
pub async fn settled(mta: &mut Mta, id: &str, timeout: Duration) -> pb::MessageStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = mta
            .get_message(pb::GetMessageRequest { message_id: id.into() })
            .await
            .expect("GetMessage answers")
            .into_inner();
        let state = status.state();
        if matches!(state, pb::DeliveryState::Sent | pb::DeliveryState::Failed)
            || tokio::time::Instant::now() >= deadline
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls GetMessage until `done` holds for the status and answers it; fails after 10 s
/// naming `what` and showing the last status seen.
pub async fn status_until(
    mta: &Mta,
    id: &str,
    what: &str,
    done: impl Fn(&pb::MessageStatus) -> bool,
) -> pb::MessageStatus {
    let observe = || {
        let mut mta = mta.clone();
        let request = pb::GetMessageRequest { message_id: id.into() };
        async move { mta.get_message(request).await.expect("GetMessage answers").into_inner() }
    };
    bitmail_tests::eventually::eventually(Duration::from_secs(10), what, observe, done).await
}

/// Polls GetMessage until the message is deferred.
pub async fn deferred(mta: &Mta, id: &str) -> pb::MessageStatus {
    status_until(mta, id, "deferred", |s| s.state() == pb::DeliveryState::Deferred).await
}

/// A signed-in webmail user: requests carry the session cookie and the CSRF token.
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    pub async fn new(cluster: &Cluster, name: &str) -> Session {
        let (http, base) = cluster.https_client();
        let (cookie, csrf) = sign_in(&http, &base, name, "a long password").await;
        Session { http, base, cookie, csrf }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    pub async fn get(&self, path: &str) -> (reqwest::StatusCode, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn send(&self, body: serde_json::Value) -> (reqwest::StatusCode, serde_json::Value) {
        self.call(reqwest::Method::POST, "/api/messages", Some(body)).await
    }
}
