//! backend-server, mta-server and client-api in this process, on loopback ports, with
//! the keys client-api holds made first (as `mta-server create-key` makes them), and a
//! signed-in browser.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::config::Secret;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_tests::sendgrid::FakeSendGrid;
use mta_server::config::{ProviderConfig, SendGridConfig};
use mta_server::tenant::{KeyRequest, Registry, Scope};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use tonic::transport::Channel;

const PROVIDER_KEY: &str = "SG.admin-api-test";
pub const PASSWORD: &str = "correct horse battery";

/// The services, and what the tests act with.
pub struct Deployment {
    pub mta: SocketAddr,
    pub edge_config: client_api::config::Config,
    pub http: reqwest::Client,
    pub base: String,
    /// The `admin` key client-api holds (`mta_admin_key`).
    pub admin_key: String,
    pub fake: FakeSendGrid,
    _stop: watch::Sender<bool>,
    dir: std::path::PathBuf,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn stopped(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

async fn key(registry: &Registry, scope: Scope, name: &str) -> String {
    let request = KeyRequest {
        tenant: "default".into(),
        name: name.into(),
        scopes: [scope].into(),
        expires_ms: None,
        created_by: "test".into(),
    };
    registry.create_key(request).await.unwrap().expose().to_owned()
}

impl Deployment {
    /// The three services; `tune_edge` adjusts client-api's configuration.
    pub async fn start(tune_edge: impl FnOnce(&mut client_api::config::Config)) -> Deployment {
        let (stop, rx) = watch::channel(false);
        let dir = std::env::temp_dir().join(format!("bitmail-admin-api-{}-{}", std::process::id(), fastrand::u64(..)));
        let backend_config = backend_server::config::Config {
            listen: loopback(),
            engine: backend_server::config::Engine::Memory,
            ..Default::default()
        };
        let backend = backend_server::server::Server::bind(&backend_config).await.expect("backend binds");
        let backend_addr = backend.local_addr().unwrap();
        tokio::spawn(backend.serve(stopped(&rx)));

        // The keys exist before mta-server starts, as after `mta-server create-key`.
        let store = backend_server::proxy::ProxyStore::new(
            &format!("http://{backend_addr}"),
            None,
            Duration::from_secs(1),
            Duration::from_secs(5),
            Default::default(),
        )
        .unwrap();
        let registry = Registry::new(Arc::new(store));
        registry.ensure_default_tenant(&["bitmail.test".into()]).await.unwrap();
        let service_key = key(&registry, Scope::Service, "client-api").await;
        let admin_key = key(&registry, Scope::Admin, "client-api console").await;

        let fake = FakeSendGrid::start(PROVIDER_KEY).await.unwrap();
        let mut config = mta_server::config::Config { listen: loopback(), ..Default::default() };
        config.spool.path = dir.join("spool.redb");
        config.spool.cache_bytes = 4 << 20;
        config.tenants.store = format!("http://{backend_addr}");
        config.tenants.default_domains = vec!["bitmail.test".into()];
        config.providers = vec![ProviderConfig::Sendgrid(SendGridConfig {
            name: "sendgrid".into(),
            base_url: fake.base_url(),
            api_key: Secret::new(PROVIDER_KEY),
            sandbox: false,
            webhook_public_key: None,
            inbound_password: None,
            connect_timeout_ms: 1000,
            timeout_ms: 5000,
            weight: 1,
            limits: Default::default(),
        })];
        let mta = mta_server::server::Server::bind(&config).await.expect("mta binds");
        let mta_addr = mta.local_addr().unwrap();
        tokio::spawn(mta.serve(stopped(&rx)));

        let mut edge_config = client_api::config::Config {
            listen: loopback(),
            state_dir: dir.clone(),
            mta_url: format!("http://{mta_addr}"),
            mta_key: Some(Secret::new(service_key)),
            mta_admin_key: Some(Secret::new(admin_key.clone())),
            backend_url: format!("http://{backend_addr}"),
            mail_domain: "bitmail.test".into(),
            signup_on_first_login: true,
            ..Default::default()
        };
        tune_edge(&mut edge_config);
        let edge = client_api::server::Server::bind(&edge_config).await.expect("client-api binds");
        let edge_addr = edge.local_addr().unwrap();
        let pem = std::fs::read(&edge.cert.cert).unwrap();
        tokio::spawn(edge.serve(stopped(&rx)));
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .resolve("localhost", edge_addr)
            .build()
            .unwrap();
        let base = format!("https://localhost:{}", edge_addr.port());
        Deployment { mta: mta_addr, edge_config, http, base, admin_key, fake, _stop: stop, dir }
    }

    /// Makes a user the way `client-api create-user` does.
    pub async fn create_user(&self, name: &str, tenant: &str, admin: bool) -> Result<(), String> {
        let args =
            client_api::create_user::CreateUser { config: None, name: name.into(), tenant: tenant.into(), admin };
        client_api::create_user::create_user(&args, &self.edge_config, PASSWORD).await
    }

    pub async fn sign_in(&self, name: &str) -> Session {
        let response = self
            .http
            .post(format!("{}/api/session", self.base))
            .json(&json!({ "name": name, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "signing in as {name}");
        let cookie = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        let csrf = body["csrf_token"].as_str().unwrap().to_owned();
        Session { http: self.http.clone(), base: self.base.clone(), cookie, csrf }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.mta)).unwrap().connect().await.expect("mta connects")
    }

    pub async fn mta_with(&self, key: &str) -> MtaClient<WithKey> {
        MtaClient::with_interceptor(self.channel().await, Bearer::new(Some(key)).unwrap())
    }

    pub async fn admin_grpc(&self) -> AdminClient<WithKey> {
        AdminClient::with_interceptor(self.channel().await, Bearer::new(Some(&self.admin_key)).unwrap())
    }
}

/// A signed-in browser: its cookie and CSRF token.
#[derive(Clone)]
pub struct Session {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.call_text(method, path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn call_text(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }
}
