//! The mta-server benchmark behind `cargo xtask bench mta`.
//!
//! It starts the given mta-server binary on a fresh spool with one SendGrid provider
//! pointing at an in-process fake (answering after `--latency-ms`), submits `--count`
//! messages of `--size` bytes over gRPC from `--concurrency` callers, and reports:
//! durable acceptances per second (every acknowledgement means "on disk"), submit
//! latency p50/p99, deliveries per second (first submission to last message accepted by
//! the fake), and the server's peak RSS (VmHWM). One line of Markdown table per run.
//!
//! Every Submit is authenticated, as mta-server requires: a `send` key is made with
//! `mta-server create-key` before the server starts (tenants in a file of the run's
//! temporary folder, tenant `default` with quotas that do not bind) and sent as
//! `authorization: Bearer KEY` on each call, so the acceptance figures include the
//! key check.
//!
//! With `--fail-over-at N`, there are two providers, `a` and `b`; once N submissions
//! were acknowledged, `a` starts answering 503. It then reports the time from that
//! moment to the last request `a` received, the acknowledged messages never delivered
//! (must be 0), and the messages delivered more than once.
//!
//! With `--backlog`, the provider answers 503 from the start: its circuit opens after
//! three failures and every later message stays queued on disk. It then reports the
//! acceptance rate and the server's peak RSS with the whole backlog queued.
//!
//! With `--edge-bin PATH`, client-api is started too, in front of mta-server, and the
//! messages go as SendGrid-shaped `POST /v3/mail/send` over HTTPS (HTTP/2, one
//! connection shared by the callers, as gRPC's channel is) with the same key as the
//! bearer: what an app using SendGrid's SDK does. Every 202 also means "on disk".
//!
//! usage: bitmail-bench --mta-bin PATH [--edge-bin PATH] [--count N] [--size BYTES]
//!                      [--concurrency N] [--latency-ms MS] [--label TEXT]
//!                      [--fail-over-at N] [--backlog]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use clap::Parser;

/// mta-server's throughput, latency and memory against an in-process fake SendGrid; one
/// line of a Markdown table per run
#[derive(Debug, Parser)]
#[command(name = "bitmail-bench")]
struct Options {
    /// The mta-server binary to measure
    #[arg(long, value_name = "PATH")]
    mta_bin: PathBuf,
    /// Messages to submit
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    count: usize,
    /// Size of each message
    #[arg(long, value_name = "BYTES", default_value_t = 2048)]
    size: usize,
    /// Concurrent gRPC callers
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,
    /// How long the fake provider takes to answer
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
    /// The run's name in the table
    #[arg(long, value_name = "TEXT", default_value = "", hide_default_value = true)]
    label: String,
    /// Two providers, a and b; a answers 503 once N submissions were acknowledged
    #[arg(long, value_name = "N")]
    fail_over_at: Option<usize>,
    /// The provider answers 503 from the start: every message stays queued
    #[arg(long)]
    backlog: bool,
    /// client-api's binary: send through its SendGrid-shaped API over HTTPS instead
    #[arg(long, value_name = "PATH")]
    edge_bin: Option<PathBuf>,
}

/// How the callers submit: gRPC `Submit`, or SendGrid's `POST /v3/mail/send` at the edge.
#[derive(Clone)]
enum Surface {
    Grpc(tonic::transport::Channel),
    Http { client: reqwest::Client, url: String },
}

impl Surface {
    /// Submits message `i`; answers BitMail's id.
    async fn submit(&self, key: &str, i: usize, body: &str) -> anyhow::Result<String> {
        match self {
            Surface::Grpc(channel) => {
                let request = pb::SubmitRequest {
                    from: "bench@bitmail.test".into(),
                    to: vec![format!("r{i}@example.net")],
                    subject: format!("bench {i}"),
                    text: body.to_owned(),
                    ..Default::default()
                };
                let mut client = bitmail_tests::api_key::client(channel.clone(), key);
                Ok(client.submit(request).await?.into_inner().message_id)
            }
            Surface::Http { client, url } => {
                let request = serde_json::json!({
                    "personalizations": [{ "to": [{ "email": format!("r{i}@example.net") }] }],
                    "from": { "email": "bench@bitmail.test" },
                    "subject": format!("bench {i}"),
                    "content": [{ "type": "text/plain", "value": body }],
                });
                let answer = client.post(url).bearer_auth(key).json(&request).send().await?;
                if answer.status() != reqwest::StatusCode::ACCEPTED {
                    bail!("the edge answered {}: {}", answer.status(), answer.text().await.unwrap_or_default());
                }
                Ok(answer.headers().get("x-message-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
            }
        }
    }
}

/// Starts client-api in front of mta-server at `mta`, with its state in `dir`; answers
/// the child and a surface that posts to its `/v3/mail/send`.
async fn start_edge(
    edge_bin: &std::path::Path,
    dir: &std::path::Path,
    mta: &str,
) -> anyhow::Result<(std::process::Child, Surface)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = dir.join("edge.toml");
    let state = dir.join("edge");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nstate_dir = {:?}\nmta_url = \"http://{mta}\"\nbackend_url = \"http://127.0.0.1:9\"\nmail_domain = \"bitmail.test\"\n",
            state.display().to_string()
        ),
    )?;
    let child = Command::new(edge_bin)
        .arg("--config")
        .arg(&config)
        .env("BITMAIL_CLIENT_API_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", edge_bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let cert = state.join("tls/cert.pem");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() || !cert.is_file() {
        if Instant::now() > deadline {
            bail!("client-api did not listen on port {port} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(&cert)?)?])
        .resolve("localhost", std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()?;
    Ok((child, Surface::Http { client, url: format!("https://localhost:{port}/v3/mail/send") }))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    let key = "SG.bench";
    let fake = FakeSendGrid::start(key).await?;
    let second = FakeSendGrid::start(key).await?;
    if o.latency_ms > 0 {
        fake.set_behavior(Behavior::Delay(Duration::from_millis(o.latency_ms)));
        second.set_behavior(Behavior::Delay(Duration::from_millis(o.latency_ms)));
    }
    if o.backlog {
        fake.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    }
    let provider = |name: &str, fake: &FakeSendGrid| {
        format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{key}\"\n",
            fake.base_url()
        )
    };
    let providers = match o.fail_over_at {
        Some(_) => format!("{}{}", provider("a", &fake), provider("b", &second)),
        None => provider("sg", &fake),
    };

    let dir = std::env::temp_dir().join(format!("bitmail-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("mta.toml");
    // The quotas of tenant `default` at their highest: the bench measures mta-server,
    // not a rate limit.
    let tenants = bitmail_tests::api_key::tenants_section(
        &dir,
        &["bitmail.test"],
        &format!(
            "[tenants.default_quotas]\nper_day = 1000000000\nper_second = 100000.0\nburst = 1000000\nmax_message_bytes = {}\n",
            o.size * 2 + 4096
        ),
    );
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmax_message_bytes = {}\n[spool]\npath = {:?}\n[delivery]\nconcurrency = 256\n[health]\ncool_down_secs = 3600\n{tenants}{providers}",
            o.size * 2 + 4096,
            dir.join("spool.redb").display().to_string(),
        ),
    )?;
    // Before the server starts: it locks the tenants file while it runs.
    let api_key = bitmail_tests::api_key::create_key(&o.mta_bin, &config, "send", "bench");
    let mut child = Command::new(&o.mta_bin)
        .arg("--config")
        .arg(&config)
        .env("BITMAIL_MTA_LOG", "warn,mta_server=info,mta_server::delivery=warn,mta_server::service=warn")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", o.mta_bin.display()))?;
    let pid = child.id();
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("addr=") {
                let addr: String = line[at + 5..].chars().take_while(|c| !c.is_whitespace()).collect();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).context("mta-server did not start")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
    let (mut edge, surface) = match &o.edge_bin {
        Some(bin) => {
            let (child, surface) = start_edge(bin, &dir, &addr).await?;
            (Some(child), surface)
        }
        None => (None, Surface::Grpc(channel)),
    };

    let body = "x".repeat(o.size.saturating_sub(100).max(1));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failed_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let fake = Arc::new(fake);
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..o.concurrency {
        let surface = surface.clone();
        let api_key = api_key.clone();
        let next = next.clone();
        let acked = acked.clone();
        let failed_at = failed_at.clone();
        let fake = fake.clone();
        let fail_over_at = o.fail_over_at;
        let body = body.clone();
        let count = o.count;
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>((latencies, ids));
                }
                let t = Instant::now();
                ids.push(surface.submit(&api_key, i, &body).await?);
                latencies.push(t.elapsed());
                let n = acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if Some(n) == fail_over_at {
                    fake.set_behavior(Behavior::Fail { status: 503, body: String::new() });
                    let _ = failed_at.set(Instant::now());
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(o.count);
    let mut acked_ids = Vec::with_capacity(o.count);
    for c in callers {
        let (l, ids) = c.await??;
        latencies.extend(l);
        acked_ids.extend(ids);
    }
    let accept_time = started.elapsed();
    if o.backlog {
        let rss = peak_rss_kib(pid);
        let used = std::fs::metadata(dir.join("spool.redb")).map_or(0, |m| m.len());
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let _ = child.wait();
        if let Some(edge) = &mut edge {
            let _ = edge.kill();
            let _ = edge.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
        latencies.sort();
        let _ = writeln!(
            std::io::stdout(),
            "| {} | {} × {} B | {} | down | {:.0} | (all queued: spool {:.1} GiB) | {:.1} / {:.1} ms | {} MiB |",
            o.label,
            o.count,
            o.size,
            o.concurrency,
            o.count as f64 / accept_time.as_secs_f64(),
            used as f64 / f64::from(1u32 << 30),
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            rss.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
        );
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while fake.received().len() + second.received().len() < o.count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deliver_time = started.elapsed();
    let mut delivered: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in fake.received().into_iter().chain(second.received()) {
        let id = r.body["custom_args"]["bitmail_id"].as_str().unwrap_or_default().to_owned();
        *delivered.entry(id).or_default() += 1;
    }
    let received = delivered.values().sum::<usize>();
    let rss = peak_rss_kib(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    if let Some(edge) = &mut edge {
        let _ = Command::new("kill").args(["-TERM", &edge.id().to_string()]).status();
        let _ = edge.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort();
    let _ = writeln!(
        std::io::stdout(),
        "| {} | {} × {} B | {} | {} ms | {:.0} | {:.0} | {:.1} / {:.1} ms | {} MiB |",
        o.label,
        o.count,
        o.size,
        o.concurrency,
        o.latency_ms,
        o.count as f64 / accept_time.as_secs_f64(),
        received as f64 / deliver_time.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        rss.map_or("?".into(), |k| format!("{:.0}", k as f64 / 1024.0)),
    );
    if let Some(at) = failed_at.get() {
        let reaction = fake.last_request_at().map_or(Duration::ZERO, |last| last.saturating_duration_since(*at));
        let lost = acked_ids.iter().filter(|id| !delivered.contains_key(*id)).count();
        let twice = delivered.values().filter(|n| **n > 1).count();
        let _ = writeln!(
            std::io::stdout(),
            "|   ↳ fail-over | provider a answers 503 after {} acknowledged | | | time until no new message goes to a: {:.0} ms | lost: {lost} | delivered twice: {twice} | |",
            o.fail_over_at.unwrap_or_default(),
            reaction.as_secs_f64() * 1000.0
        );
    }
    if received < o.count {
        bail!("only {received} of {} messages were delivered", o.count);
    }
    Ok(())
}
