//! The mta-server benchmark behind `cargo xtask bench mta`.
//!
//! It starts the given mta-server binary on a fresh spool with one SendGrid provider
//! pointing at an in-process fake (answering after `--latency-ms`), submits `--count`
//! messages of `--size` bytes over gRPC from `--concurrency` callers, and reports:
//! durable acceptances per second (every acknowledgement means "on disk"), submit
//! latency p50/p99, deliveries per second (first submission to last message accepted by
//! the fake), and the server's peak RSS (VmHWM). One line of Markdown table per run.
//!
//! usage: bitmail-bench --mta-bin PATH [--count N] [--size BYTES] [--concurrency N]
//!                      [--latency-ms MS] [--label TEXT]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};

struct Options {
    mta_bin: PathBuf,
    count: usize,
    size: usize,
    concurrency: usize,
    latency_ms: u64,
    label: String,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        mta_bin: PathBuf::new(),
        count: 20_000,
        size: 2048,
        concurrency: 64,
        latency_ms: 0,
        label: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--mta-bin" => o.mta_bin = value()?.into(),
            "--count" => o.count = value()?.parse()?,
            "--size" => o.size = value()?.parse()?,
            "--concurrency" => o.concurrency = value()?.parse()?,
            "--latency-ms" => o.latency_ms = value()?.parse()?,
            "--label" => o.label = value()?,
            other => bail!("unknown argument `{other}`"),
        }
    }
    if o.mta_bin.as_os_str().is_empty() {
        bail!("--mta-bin PATH is required");
    }
    Ok(o)
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
    let o = options()?;
    let key = "SG.bench";
    let fake = FakeSendGrid::start(key).await?;
    if o.latency_ms > 0 {
        fake.set_behavior(Behavior::Delay(Duration::from_millis(o.latency_ms)));
    }

    let dir = std::env::temp_dir().join(format!("bitmail-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("mta.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nmax_message_bytes = {}\n[spool]\npath = {:?}\n[delivery]\nconcurrency = 256\n[[providers]]\nname = \"sg\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{key}\"\n",
            o.size * 2 + 4096,
            dir.join("spool.redb").display().to_string(),
            fake.base_url()
        ),
    )?;
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

    let body = "x".repeat(o.size.saturating_sub(100).max(1));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..o.concurrency {
        let mut client = MtaClient::new(channel.clone());
        let next = next.clone();
        let body = body.clone();
        let count = o.count;
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, tonic::Status>(latencies);
                }
                let request = pb::SubmitRequest {
                    from: "bench@bitmail.test".into(),
                    to: vec![format!("r{i}@example.net")],
                    subject: format!("bench {i}"),
                    text: body.clone(),
                    ..Default::default()
                };
                let t = Instant::now();
                client.submit(request).await?;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(o.count);
    for c in callers {
        latencies.extend(c.await??);
    }
    let accept_time = started.elapsed();
    let received = fake.wait_for(o.count, Duration::from_secs(600)).await.len();
    let deliver_time = started.elapsed();
    let rss = peak_rss_kib(pid);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort();
    println!(
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
    if received < o.count {
        bail!("only {received} of {} messages were delivered", o.count);
    }
    Ok(())
}
