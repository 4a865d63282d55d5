//! moto (PyPI `moto[server]`, installed by `cargo xtask test`) as a local Amazon SES:
//! a child process `python3 -m moto.server -H 127.0.0.1 -p PORT` (the `moto_server`
//! command), killed when the [`Moto`] is dropped.
//!
//! SES only sends from verified identities; [`Moto::verify_identity`] creates one with
//! `CreateEmailIdentity` (moto verifies it at once). [`Moto::sent`] reads back what
//! moto recorded from `GET /moto-api/data.json`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The region the helpers address; configure the provider under test with it.
pub const REGION: &str = "us-east-1";

/// A running moto server.
pub struct Moto {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What moto recorded for `SendEmail` calls.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// `Simple` content: `{id, source, destinations{ToAddresses,..}, subject, body}`
    /// (moto keeps the HTML body when there is one, else the text).
    pub simple: Vec<Value>,
    /// `Raw` content: `{id, source, destinations[..], raw_data}`.
    pub raw: Vec<Value>,
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> anyhow::Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("python3 must be installed; `cargo xtask test` installs moto[server]")?;
        let mut moto = Moto { child, port, http: reqwest::Client::new() };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = moto.http.get(format!("{}/moto-api/data.json", moto.endpoint_url())).send().await
                && r.status().is_success()
            {
                return Ok(moto);
            }
            if let Some(status) = moto.child.try_wait()? {
                bail!("moto exited ({status}); is it installed? python3 -m pip install 'moto[server]'");
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("moto did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `endpoint_url` to configure an SES provider with.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `CreateEmailIdentity` for an address or a domain, which moto verifies at once.
    pub async fn verify_identity(&self, identity: &str) -> anyhow::Result<()> {
        // moto routes by the SigV4 credential scope (service `ses`, the region) and does
        // not check the signature.
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ses/aws4_request, SignedHeaders=host, Signature=0"
        );
        let r = self
            .http
            .post(format!("{}/v2/email/identities", self.endpoint_url()))
            .header("authorization", auth)
            .json(&json!({ "EmailIdentity": identity }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("CreateEmailIdentity {identity}: {} {}", r.status(), r.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// Every message moto recorded as sent.
    pub async fn sent(&self) -> anyhow::Result<Sent> {
        let data: Value =
            self.http.get(format!("{}/moto-api/data.json", self.endpoint_url())).send().await?.json().await?;
        let list = |model: &str| data["ses"][model].as_array().cloned().unwrap_or_default();
        Ok(Sent { simple: list("Message"), raw: list("RawMessage") })
    }
}
