//! The per-message costs behind the capacity model (`cargo xtask bench capacity`).
//!
//! It runs the release binaries as one node of each role: backend-server on a durable
//! PostgreSQL (`fsync=on`), one mta-server whose tenants live in that backend (as every
//! node of a cluster), client-api in front, and a fake SendGrid. Then, `--count` messages
//! each way:
//! - **app API**: SendGrid-shaped `POST /v3/mail/send` with a `send` key, 32 callers;
//! - **webmail**: `POST /api/messages` by one signed-in user to an outside address,
//!   8 callers (the Sent copy, its list entry and the delivery status mirrored back);
//! - **inbound**: SendGrid Inbound Parse posts for a local user, 8 callers.
//!
//! For each: messages per second through the edge, and — read from backend-server's
//! `bitmail_store_operations_total`, `pg_database_size` and the spool file — store
//! operations per message by kind, bytes per message in PostgreSQL and in the spool.
//! Counted from before the first message to after the last delivery has settled.
//!
//! Last, a node's **restart with a backlog**: with the provider answering 503, `--count`
//! more messages are queued; mta-server is killed (-9) and started again with the
//! provider well; it reports the time from the restart to the node answering and to the
//! last message of the backlog delivered (which includes up to `cool_down_secs = 1` of
//! the provider's open circuit, restored from the spool).
//!
//! usage: bitmail-capacity [--count N]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bitmail_tests::postgres::PgServer;
use bitmail_tests::processes::{Service, free_port};
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use clap::Parser;
use serde_json::{Value, json};

const PROVIDER_KEY: &str = "SG.capacity";
const INBOUND_PASSWORD: &str = "capacity-inbound-password";

/// Per-message store operations, PostgreSQL bytes and spool bytes, by path
#[derive(Debug, Parser)]
#[command(name = "bitmail-capacity")]
struct Options {
    /// Messages per path
    #[arg(long, value_name = "N", default_value_t = 2000)]
    count: usize,
}

/// What is counted before and after a path's messages.
struct Reading {
    ops: BTreeMap<String, u64>,
    pg_bytes: u64,
    spool_bytes: u64,
}

struct Node {
    pg: PgServer,
    db: String,
    backend_port: u16,
    spool: std::path::PathBuf,
    http: reqwest::Client,
    base: String,
}

impl Node {
    async fn read(&self) -> anyhow::Result<Reading> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.backend_port)).await?.text().await?;
        let mut ops = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("bitmail_store_operations_total{")) {
            let op = line.split("op=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
            let n: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            *ops.entry(op.to_owned()).or_default() += n as u64;
        }
        let pg_bytes = self.pg.psql(&self.db, "SELECT pg_database_size(current_database())")?.trim().parse()?;
        let spool_bytes = std::fs::metadata(&self.spool).map_or(0, |m| m.len());
        Ok(Reading { ops, pg_bytes, spool_bytes })
    }

    async fn call(&self, path: &str, auth: &Auth<'_>, body: Value) -> anyhow::Result<reqwest::StatusCode> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        request = match auth {
            Auth::Key(key) => request.bearer_auth(key),
            Auth::Session { cookie, csrf } => request.header("cookie", *cookie).header("x-csrf-token", *csrf),
        };
        Ok(request.send().await?.status())
    }

    async fn sign_in(&self, name: &str) -> anyhow::Result<(String, String)> {
        let body = json!({ "name": name, "password": "a long password" });
        let response = self.http.post(format!("{}/api/session", self.base)).json(&body).send().await?;
        if !response.status().is_success() {
            bail!("signing in as {name}: {}", response.status());
        }
        let cookie = response.headers()["set-cookie"].to_str()?.split(';').next().unwrap_or_default().to_owned();
        let body: Value = response.json().await?;
        Ok((cookie, body["csrf_token"].as_str().unwrap_or_default().to_owned()))
    }
}

enum Auth<'a> {
    Key(&'a str),
    Session { cookie: &'a str, csrf: &'a str },
}

/// Runs `n` calls of `one(i)` from `callers` tasks; answers the elapsed time.
async fn run<F, Fut>(n: usize, callers: usize, one: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (next, one) = (next.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                one(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed())
}

async fn wait_for(fake: &FakeSendGrid, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while fake.received().len() < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} messages reached the provider", fake.received().len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn row(path: &str, n: usize, took: Duration, before: &Reading, after: &Reading) {
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / n as f64;
    let ops: Vec<String> = after
        .ops
        .iter()
        .map(|(op, a)| (op, per(*a, before.ops.get(op).copied().unwrap_or(0))))
        .filter(|(_, x)| *x >= 0.005)
        .map(|(op, x)| format!("{op} {x:.2}"))
        .collect();
    let total: f64 = after.ops.iter().map(|(op, a)| per(*a, before.ops.get(op).copied().unwrap_or(0))).sum();
    let _ = writeln!(
        std::io::stdout(),
        "| {path} | {n} | {:.0} | {total:.2} ({}) | {:.0} | {:.0} |",
        n as f64 / took.as_secs_f64(),
        if ops.is_empty() { "none".to_owned() } else { ops.join(", ") },
        per(after.pg_bytes, before.pg_bytes),
        per(after.spool_bytes, before.spool_bytes),
    );
}

fn mta_config(dir: &Path, port: u16, backend: u16, fake: &FakeSendGrid) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 1\n[spool]\npath = {:?}\n[delivery]\nconcurrency = 256\n\
         [retry]\ninitial_secs = 1\nmax_delay_secs = 1\n[health]\ncool_down_secs = 1\n\
         [tenants]\nstore = \"http://127.0.0.1:{backend}\"\nnode_id = \"mta-1\"\ndefault_domains = [\"bitmail.test\"]\n\
         [tenants.default_quotas]\nper_day = 1000000000\nper_second = 100000.0\nburst = 1000000\n\
         [[providers]]\nname = \"sendgrid\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{PROVIDER_KEY}\"\n\
         inbound_password = \"{INBOUND_PASSWORD}\"\n",
        dir.join("spool.redb").display().to_string(),
        fake.base_url()
    )
}

async fn until_healthy(services: &[&Service]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mut all = true;
        for s in services {
            all &= s.probe().await;
        }
        if all {
            return Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the services did not answer their probes within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    let n = o.count;
    let dir = std::env::temp_dir().join(format!("bitmail-capacity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pg = tokio::task::spawn_blocking(PgServer::start_durable).await??;
    let db = pg.create_database()?;
    let fake = FakeSendGrid::start(PROVIDER_KEY).await?;
    let (backend_port, mta_port, edge_port) = (free_port(), free_port(), free_port());

    let mut backend = Service::new(
        "backend-server",
        &dir,
        "BITMAIL_BACKEND_LOG",
        format!("listen = \"127.0.0.1:{backend_port}\"\nengine = \"postgres\"\n[postgres]\nurl = \"{db}\"\n"),
    );
    backend.start();
    until_healthy(&[&backend]).await?;
    let mut mta =
        Service::node("mta-1", "mta-server", &dir, "BITMAIL_MTA_LOG", mta_config(&dir, mta_port, backend_port, &fake));
    let send_key = bitmail_tests::api_key::create_key(&mta.bin, &mta.config, "send", "capacity");
    let service_key = bitmail_tests::api_key::create_key(&mta.bin, &mta.config, "service", "client-api");
    mta.start();
    let state = dir.join("client-api");
    let mut edge = Service::new(
        "client-api",
        &dir,
        "BITMAIL_CLIENT_API_LOG",
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\nstate_dir = {:?}\nmta_url = \"http://127.0.0.1:{mta_port}\"\n\
             mta_key = \"{service_key}\"\nbackend_url = \"http://127.0.0.1:{backend_port}\"\nmail_domain = \"bitmail.test\"\n\
             signup_on_first_login = true\nuser_sends_per_minute = 1000000\nshutdown_grace_secs = 1\n",
            state.display().to_string()
        ),
    );
    edge.start();
    until_healthy(&[&backend, &mta, &edge]).await?;
    let pem = std::fs::read(state.join("tls/cert.pem")).context("client-api's certificate")?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
        .resolve("localhost", ([127, 0, 0, 1], edge_port).into())
        .timeout(Duration::from_secs(30))
        .build()?;
    let node = std::sync::Arc::new(Node {
        pg,
        db,
        backend_port,
        spool: dir.join("spool.redb"),
        http,
        base: format!("https://localhost:{edge_port}"),
    });
    let (ada_cookie, ada_csrf) = node.sign_in("ada").await?;
    node.sign_in("bob").await?;

    let _ = writeln!(
        std::io::stdout(),
        "| path | messages | msg/s through the edge | store operations per message | PostgreSQL bytes per message | spool bytes per message |\n| --- | --- | --- | --- | --- | --- |"
    );
    // The app API.
    let before = node.read().await?;
    let key = std::sync::Arc::new(send_key);
    let (api_node, api_key) = (node.clone(), key.clone());
    let took = run(n, 32, move |i| {
        let (node, key) = (api_node.clone(), api_key.clone());
        async move {
            let body = json!({
                "personalizations": [{ "to": [{ "email": format!("r{i}@example.net") }] }],
                "from": { "email": "app@bitmail.test" },
                "subject": format!("api {i}"),
                "content": [{ "type": "text/plain", "value": "Your order has shipped. ".repeat(40) }],
            });
            let status = node.call("/v3/mail/send", &Auth::Key(&key), body).await?;
            if status != reqwest::StatusCode::ACCEPTED {
                bail!("app API send answered {status}");
            }
            Ok(())
        }
    })
    .await?;
    wait_for(&fake, n).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    row("app API (SendGrid-shaped)", n, took, &before, &node.read().await?);

    // The webmail.
    let before = node.read().await?;
    let (web, cookie, csrf) = (node.clone(), std::sync::Arc::new(ada_cookie), std::sync::Arc::new(ada_csrf));
    let took = run(n, 8, move |i| {
        let (node, cookie, csrf) = (web.clone(), cookie.clone(), csrf.clone());
        async move {
            let body = json!({ "to": "carol@example.net", "subject": format!("webmail {i}"),
                               "text": "A line of an ordinary message, about as long as people write them. ".repeat(12) });
            let status = node.call("/api/messages", &Auth::Session { cookie: &cookie, csrf: &csrf }, body).await?;
            if status != reqwest::StatusCode::ACCEPTED {
                bail!("webmail send answered {status}");
            }
            Ok(())
        }
    })
    .await?;
    wait_for(&fake, 2 * n).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    row("webmail send", n, took, &before, &node.read().await?);

    // Inbound mail.
    let before = node.read().await?;
    let inbound = node.clone();
    let took = run(n, 8, move |i| {
        let node = inbound.clone();
        async move {
            let response = node
                .http
                .post(format!("{}/webhooks/sendgrid/inbound", node.base))
                .basic_auth("bitmail", Some(INBOUND_PASSWORD))
                .multipart(bitmail_tests::sendgrid::inbound_parse_form(
                    &format!("inbound {i}"),
                    &format!("capacity-{i}@example.net"),
                    &"A line of an ordinary reply, about as long as people write them. ".repeat(12),
                ))
                .send()
                .await?;
            if response.status() != reqwest::StatusCode::OK {
                bail!("inbound answered {}", response.status());
            }
            Ok(())
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    row("inbound (SendGrid Inbound Parse)", n, took, &before, &node.read().await?);

    // A node restarted with a backlog.
    fake.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    let (queue, queue_key) = (node.clone(), key.clone());
    run(n, 32, move |i| {
        let (node, key) = (queue.clone(), queue_key.clone());
        async move {
            let body = json!({
                "personalizations": [{ "to": [{ "email": format!("q{i}@example.net") }] }],
                "from": { "email": "app@bitmail.test" },
                "subject": format!("backlog {i}"),
                "content": [{ "type": "text/plain", "value": "Queued while the provider is down. ".repeat(30) }],
            });
            let status = node.call("/v3/mail/send", &Auth::Key(&key), body).await?;
            if status != reqwest::StatusCode::ACCEPTED {
                bail!("backlog send answered {status}");
            }
            Ok(())
        }
    })
    .await?;
    let delivered_before = fake.received().len();
    mta.kill_9();
    fake.set_behavior(Behavior::Accept);
    let restarted = Instant::now();
    mta.start();
    let answering = until_healthy(&[&mta]).await?;
    wait_for(&fake, delivered_before + n).await?;
    let drained = restarted.elapsed();
    let _ = writeln!(
        std::io::stdout(),
        "\nRestart with a backlog: {n} messages queued, kill -9, start: answering after {:.2} s, backlog delivered after {:.2} s ({:.0} msg/s from the restart).",
        answering.as_secs_f64(),
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64()
    );
    drop((edge, mta, backend));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
