//! The SendGrid- and Mailgun-shaped APIs through the official SDKs, changed only in
//! their base URL: Python `sendgrid` 6.12, `mailgun` 1.10 and django-anymail 15
//! (`sdk.py`), Node `@sendgrid/mail` 8.1 and `mailgun.js` 14 (`sdk.js`), all installed
//! by `cargo xtask test`. backend-server, mta-server with a fake SendGrid behind it, and client-api run
//! in this process on loopback ports; the SDKs run in `python3` and `node`, trusting
//! the edge's generated certificate. What they report is what an app would see, and
//! what reaches the fake provider is what a recipient would get.

mod anymail;
mod mailgun;
mod node;
mod read;
mod sendgrid;
mod webhooks;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_runtime::grpc::Bearer;
use bitmail_tests::sendgrid::FakeSendGrid;
use serde_json::{Value, json};

use crate::common::{Cluster, KEY, sendgrid};

/// The drivers of the SDKs.
const PYTHON_SDKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/suite/app_api/sdk.py");
const NODE_SDKS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/suite/app_api/sdk.js");

/// Where `cargo xtask test` installs the Node SDKs: `BITMAIL_NODE_SDKS`, else
/// `target/node-sdks`.
fn node_sdks() -> std::path::PathBuf {
    std::env::var_os("BITMAIL_NODE_SDKS").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/node-sdks"),
        std::path::PathBuf::from,
    )
}

/// A gateway, and an app's key (scopes `send`, `read`) of tenant `default`.
pub struct App {
    pub cluster: Cluster,
    pub fake: FakeSendGrid,
    pub key: String,
    pub url: String,
}

/// What an SDK answered: the status, the headers (lowercase names), the body, and the
/// exception's class when it raised one.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Value,
    pub body: String,
    pub raised: Option<String>,
}

impl Answer {
    pub fn header(&self, name: &str) -> &str {
        self.headers[name].as_str().unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The BitMail ids of every copy.
    pub fn ids(&self) -> Vec<String> {
        self.header("x-bitmail-message-ids").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
    }
}

impl App {
    pub async fn start() -> App {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut mta_server::config::Config)) -> App {
        let fake = FakeSendGrid::start(KEY).await.unwrap();
        let cluster = Cluster::start_with(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], true, tune).await;
        let url = format!("https://127.0.0.1:{}", cluster.edge.unwrap().port());
        let mut app = App { cluster, fake, key: String::new(), url };
        app.key = app.key_for("default", &["send", "read"]).await;
        app
    }

    fn admin(&self) -> AdminClient<bitmail_runtime::grpc::WithKey> {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.cluster.mta)).unwrap().connect_lazy();
        AdminClient::with_interceptor(channel, Bearer::new(Some(&self.cluster.admin_key)).unwrap())
    }

    /// A new key of `tenant` with these scopes.
    pub async fn key_for(&self, tenant: &str, scopes: &[&str]) -> String {
        let request = pb::CreateKeyRequest {
            tenant: tenant.into(),
            name: "app".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at_unix_ms: 0,
        };
        self.admin().create_key(request).await.unwrap().into_inner().secret
    }

    /// A new tenant sending from `domain` with these quotas, and a `send` key of it.
    pub async fn tenant(&self, id: &str, domain: &str, quotas: pb::Quotas) -> String {
        let tenant = pb::Tenant {
            id: id.into(),
            display_name: id.into(),
            domains: vec![domain.into()],
            quotas: Some(quotas),
            ..Default::default()
        };
        self.admin().create_tenant(tenant).await.unwrap();
        self.key_for(id, &["send"]).await
    }

    /// Runs `scenario` of `sdk.py` (the Python SDKs) with `args`, the edge's URL and the
    /// app's key unless `args` names others.
    pub async fn sdk(&self, scenario: &str, args: Value) -> Answer {
        let cert = self.cluster.cert.as_ref().unwrap();
        let mut command = tokio::process::Command::new("python3");
        command.arg(PYTHON_SDKS).env("SSL_CERT_FILE", cert).env("REQUESTS_CA_BUNDLE", cert);
        self.run(command, scenario, args).await
    }

    /// Runs `scenario` of `sdk.js` (the Node SDKs, in `target/node-sdks`).
    pub async fn node(&self, scenario: &str, args: Value) -> Answer {
        let modules = node_sdks().join("node_modules");
        assert!(
            modules.join("@sendgrid/mail").is_dir() && modules.join("mailgun.js").is_dir(),
            "no Node SDKs in {}: run `cargo xtask test`, which installs them",
            modules.display()
        );
        let mut command = tokio::process::Command::new("node");
        command
            .arg(NODE_SDKS)
            .env("NODE_PATH", modules)
            .env("NODE_EXTRA_CA_CERTS", self.cluster.cert.as_ref().unwrap());
        self.run(command, scenario, args).await
    }

    async fn run(&self, mut command: tokio::process::Command, scenario: &str, args: Value) -> Answer {
        let mut full = json!({ "url": self.url, "key": self.key, "domain": "bitmail.test" });
        full.as_object_mut().unwrap().extend(args.as_object().cloned().unwrap_or_default());
        let output = command
            .arg(scenario)
            .arg(full.to_string())
            .output()
            .await
            .expect("the SDK's runtime starts (cargo xtask test installs the SDKs)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stdout.lines().last().unwrap_or_default();
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{scenario}: the SDK driver printed no answer ({e}):\n{stdout}\n{stderr}"));
        Answer {
            status: v["status"].as_u64().unwrap() as u16,
            headers: v["headers"].clone(),
            body: v["body"].as_str().unwrap_or_default().to_owned(),
            raised: v["raised"].as_str().map(str::to_owned),
        }
    }

    /// What the fake provider received for BitMail message `id`, waiting up to 10 s.
    pub async fn delivered(&self, id: &str) -> Value {
        let found = bitmail_tests::eventually::eventually(
            Duration::from_secs(10),
            &format!("message {id} at the provider"),
            || async { self.fake.received().into_iter().find(|r| r.body["custom_args"]["bitmail_id"] == id) },
            Option::is_some,
        )
        .await;
        found.unwrap().body
    }

    /// The delivery status of `id`, as the app's own key sees it over gRPC.
    pub async fn status(&self, id: &str) -> pb::MessageStatus {
        let mut mta = self.cluster.mta_client_with(Some(&self.key)).await;
        mta.get_message(pb::GetMessageRequest { message_id: id.into() }).await.unwrap().into_inner()
    }

    /// Waits a moment for anything in flight to reach the provider, then answers how many
    /// messages it received.
    pub async fn received_after_a_moment(&self) -> usize {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.fake.received().len()
    }
}

/// Quotas that allow one message a day.
pub fn one_a_day() -> pb::Quotas {
    pb::Quotas { per_day: 1, per_second: 50.0, burst: 100, max_recipients: 100, max_message_bytes: 40 << 20 }
}
