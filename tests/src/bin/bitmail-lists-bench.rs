//! The mailing-list benchmark behind `cargo xtask bench lists`: does a campaign go out
//! at the MTA's full delivery rate, and does any service hold the whole list in memory?
//!
//! It runs the release binaries backend-server (embedded store, one redb file) and
//! mta-server as child processes, mta-server's tenants in that backend (`[tenants]
//! store`, tenant `default` with quotas that do not bind), `[lists] public_url` set, and
//! one SendGrid provider pointing at a fake in this process that answers at once. Three
//! phases of `--count` (default 100,000) each:
//! 1. **baseline**: messages of `--size` bytes submitted straight over gRPC `Mta/Submit`
//!    from `--concurrency` callers on one channel; delivered msg/s from the first
//!    submission to the last message at the fake. That is `bench mta`'s "delivered
//!    msg/s" (`bitmail-bench`: the same measure, message, callers and `[delivery]
//!    concurrency`), taken here in the same run on the same node, with two differences:
//!    the tenants live in backend-server (as the lists need; `bench mta` keeps them in a
//!    file, which the hot path does not read: keys are cached), and 5 times the messages.
//! 2. **import**: a list of `--count` confirmed subscribers by CSV
//!    `Lists/ImportSubscribers` (requests of at most 8 MiB, one after the other), from
//!    the first request to the last task done: rows/s.
//! 3. **campaign** to all of them, its Markdown body about `--size` bytes with two
//!    variables: from `CreateCampaign` to the first copy at the fake and to the last;
//!    msg/s from creation to the last copy (the baseline's measure) and its share of the
//!    baseline's. Each copy carries HTML and text and the `List-Unsubscribe` headers, so
//!    it is larger than a baseline message: the table shows the bytes of both at the
//!    provider. Checked: every subscriber got exactly one copy.
//!
//! Peak RSS is `VmHWM` of `/proc/PID/status`, read once a phase is over. The baseline
//! has its own data dir and processes; the import and the campaign share one data dir
//! (the campaign needs the list) but both services are restarted between them, so each
//! phase's peak is its own. This process's peak includes the fake, which keeps every
//! body it accepted.
//!
//! usage: bitmail-lists-bench [--count N] [--size BYTES] [--concurrency N]
//!                            [--delivery-concurrency N] [--lists-concurrency N]
//!                            [--max-backlog N]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_tests::processes::{Service, free_port};
use bitmail_tests::sendgrid::FakeSendGrid;
use clap::Parser;
use pb::lists_client::ListsClient;

const PROVIDER_KEY: &str = "SG.lists-bench";
/// `bench mta`'s filter: no line per message, the campaign's own lines kept.
const LOG: &str = "warn,mta_server=info,mta_server::delivery=warn,mta_server::service=warn,backend_server=info";
/// Below the service's 16 MiB per import.
const IMPORT_BYTES: usize = 8 << 20;

/// A campaign to a list of N subscribers beside N messages submitted straight: time to
/// the provider, msg/s, import rows/s, peak RSS of every service; a Markdown table
#[derive(Debug, Parser)]
#[command(name = "bitmail-lists-bench")]
struct Options {
    /// Messages of the baseline, subscribers of the list
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    count: usize,
    /// Bytes of a baseline message's text and of the campaign's Markdown
    #[arg(long, value_name = "BYTES", default_value_t = 2048)]
    size: usize,
    /// Concurrent gRPC callers of the baseline
    #[arg(long, value_name = "N", default_value_t = 64)]
    concurrency: usize,
    /// mta-server's `[delivery] concurrency`
    #[arg(long, value_name = "N", default_value_t = 256)]
    delivery_concurrency: usize,
    /// mta-server's `[lists] concurrency` (copies of a campaign in flight); its default when unset
    #[arg(long, value_name = "N")]
    lists_concurrency: Option<usize>,
    /// mta-server's `[lists] max_backlog`; its default when unset
    #[arg(long, value_name = "N")]
    max_backlog: Option<u64>,
}

/// backend-server and mta-server on one data dir, and an `admin` key of tenant `default`.
struct Stack {
    backend: Service,
    mta: Service,
    mta_port: u16,
    key: String,
}

impl Stack {
    async fn start(dir: &Path, o: &Options, fake: &FakeSendGrid) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(dir)?;
        let (backend_port, mta_port) = (free_port(), free_port());
        let store = dir.join("store.redb").display().to_string();
        let backend = Service::new(
            "backend-server",
            dir,
            "BITMAIL_BACKEND_LOG",
            format!("listen = \"127.0.0.1:{backend_port}\"\nshutdown_grace_secs = 1\n[embedded]\npath = {store:?}\n"),
        );
        let mut lists = "[lists]\npublic_url = \"https://mail.bitmail.test\"\n".to_owned();
        if let Some(n) = o.lists_concurrency {
            lists += &format!("concurrency = {n}\n");
        }
        if let Some(n) = o.max_backlog {
            lists += &format!("max_backlog = {n}\n");
        }
        let mta = Service::new(
            "mta-server",
            dir,
            "BITMAIL_MTA_LOG",
            format!(
                "listen = \"127.0.0.1:{mta_port}\"\nshutdown_grace_secs = 1\n[spool]\npath = {:?}\n\
                 [delivery]\nconcurrency = {}\n[health]\ncool_down_secs = 1\n{lists}\
                 [tenants]\nstore = \"http://127.0.0.1:{backend_port}\"\nnode_id = \"mta-1\"\ndefault_domains = [\"bitmail.test\"]\n\
                 [tenants.default_quotas]\nper_day = 1000000000\nper_second = 100000.0\nburst = 1000000\n\
                 [[providers]]\nname = \"sendgrid\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{PROVIDER_KEY}\"\n",
                dir.join("spool.redb").display().to_string(),
                o.delivery_concurrency,
                fake.base_url()
            ),
        );
        let mut stack = Stack { backend, mta, mta_port, key: String::new() };
        stack.backend.start_logging(LOG);
        until_healthy(&stack.backend).await?;
        stack.key = bitmail_tests::api_key::create_key(&stack.mta.bin, &stack.mta.config, "admin", "lists-bench");
        stack.mta.start_logging(LOG);
        until_healthy(&stack.mta).await?;
        Ok(stack)
    }

    /// Both services stopped (SIGTERM) and started again on the same data: a phase's
    /// peak RSS then is its own.
    async fn restart(&mut self) -> anyhow::Result<()> {
        self.mta.stop();
        self.backend.stop();
        self.backend.start_logging(LOG);
        until_healthy(&self.backend).await?;
        self.mta.start_logging(LOG);
        until_healthy(&self.mta).await
    }

    fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.mta_port))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(30))
            .connect_lazy())
    }

    fn lists(&self) -> anyhow::Result<ListsClient<WithKey>> {
        let bearer = Bearer::new(Some(&self.key)).map_err(anyhow::Error::msg)?;
        Ok(ListsClient::with_interceptor(self.channel()?, bearer).max_decoding_message_size(64 << 20))
    }

    /// backend-server's, mta-server's and this process's peak RSS.
    fn peaks(&self) -> [Option<u64>; 3] {
        [peak_rss_kib(&self.backend.pid().to_string()), peak_rss_kib(&self.mta.pid().to_string()), peak_rss_kib("self")]
    }
}

async fn until_healthy(service: &Service) -> anyhow::Result<()> {
    let started = Instant::now();
    while !service.probe().await {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{} did not answer its probe within 60 s (log: {})", service.name, service.log.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn peak_rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

/// Waits until `n` requests reached the fake; fails when none came for 120 s.
async fn until_at_provider(fake: &FakeSendGrid, n: usize, what: &str) -> anyhow::Result<()> {
    let (mut seen, mut moved, mut told) = (0, Instant::now(), Instant::now());
    loop {
        let now = fake.requests();
        if now >= n {
            return Ok(());
        }
        if now != seen {
            (seen, moved) = (now, Instant::now());
        }
        if moved.elapsed() > Duration::from_secs(120) {
            bail!("{what}: stuck at {now} of {n} messages at the provider for 120 s");
        }
        if told.elapsed() > Duration::from_secs(5) {
            eprintln!("{what}: {now} of {n} at the provider");
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The mean size of the bodies the fake accepted (SendGrid's JSON), in bytes.
fn mean_request_bytes(fake: &FakeSendGrid) -> usize {
    let received = fake.received();
    let total: usize = received.iter().map(|r| serde_json::to_vec(&r.body).map_or(0, |b| b.len())).sum();
    total / received.len().max(1)
}

/// One row of the table.
fn row(phase: &str, count: &str, time: &str, rate: &str, detail: &str, bytes: &str, peaks: [Option<u64>; 3]) {
    let [backend, mta, bench] = peaks.map(mib);
    let _ = writeln!(
        std::io::stdout(),
        "| {phase} | {count} | {time} | {rate} | {detail} | {bytes} | {backend} | {mta} | {bench} |"
    );
}

/// Phase 1: `count` messages straight over `Mta/Submit`; answers delivered msg/s.
async fn baseline(o: &Options, dir: &Path) -> anyhow::Result<f64> {
    let fake = FakeSendGrid::start(PROVIDER_KEY).await?;
    let stack = Stack::start(dir, o, &fake).await?;
    let channel = stack.channel()?;
    let body = Arc::new("x".repeat(o.size.saturating_sub(100).max(1)));
    let (next, key) = (Arc::new(AtomicUsize::new(0)), Arc::new(stack.key.clone()));
    eprintln!("baseline: {} messages over Mta/Submit from {} callers", o.count, o.concurrency);
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..o.concurrency {
        let (channel, body, next, key, count) = (channel.clone(), body.clone(), next.clone(), key.clone(), o.count);
        callers.push(tokio::spawn(async move {
            let mut client = bitmail_tests::api_key::client(channel, &key);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let request = pb::SubmitRequest {
                    from: "bench@bitmail.test".into(),
                    to: vec![format!("r{i}@example.net")],
                    subject: format!("bench {i}"),
                    text: body.to_string(),
                    ..Default::default()
                };
                client.submit(request).await.with_context(|| format!("submitting message {i}"))?;
            }
        }));
    }
    for c in callers {
        c.await??;
    }
    let accepted = started.elapsed();
    until_at_provider(&fake, o.count, "baseline").await?;
    let delivered = fake.last_request_at().context("nothing reached the provider")? - started;
    let rate = o.count as f64 / delivered.as_secs_f64();
    let received = fake.received().len();
    if received < o.count {
        bail!("baseline: the provider accepted {received} of {} messages", o.count);
    }
    row(
        &format!("baseline: `Mta/Submit`, {} callers", o.concurrency),
        &format!("{} messages", o.count),
        &format!("{:.1} s to the last at the provider", delivered.as_secs_f64()),
        &format!("**{rate:.0} delivered msg/s**"),
        &format!("accepted (durable) {:.0} msg/s", o.count as f64 / accepted.as_secs_f64()),
        &mean_request_bytes(&fake).to_string(),
        stack.peaks(),
    );
    Ok(rate)
}

/// Phase 2: a list of `count` confirmed subscribers, imported by CSV; answers its id.
async fn import(o: &Options, stack: &Stack) -> anyhow::Result<String> {
    let mut client = stack.lists()?;
    let list = pb::MailingList {
        name: "Power cuts".into(),
        from_email: "notices@bitmail.test".into(),
        attributes: vec!["area".into()],
        ..Default::default()
    };
    let list =
        client.create_list(pb::CreateListRequest { tenant: String::new(), list: Some(list) }).await?.into_inner();
    let mut chunks = vec![String::new()];
    for i in 0..o.count {
        let line = format!("sub{i}@example.net,Subscriber {i},Area {}\n", i % 50);
        if chunks.last().is_some_and(|c| c.len() + line.len() > IMPORT_BYTES) {
            chunks.push(String::new());
        }
        chunks.last_mut().expect("one").push_str(&line);
    }
    eprintln!("import: {} subscribers in {} CSV request(s)", o.count, chunks.len());
    let started = Instant::now();
    let mut added = 0;
    for chunk in &chunks {
        let csv = format!("email,name,area\n{chunk}").into_bytes();
        let request = pb::ImportRequest { list_id: list.id.clone(), csv, confirmed: true, ..Default::default() };
        let task = client.import_subscribers(request).await?.into_inner();
        let mut told = Instant::now();
        let done = loop {
            let request = pb::TaskRequest { tenant: String::new(), task_id: task.id.clone() };
            let t = client.get_task(request).await?.into_inner();
            match t.state.as_str() {
                "done" => break t,
                "failed" | "cancelled" => bail!("import {}: {} ({})", t.id, t.state, t.error),
                _ => {}
            }
            if told.elapsed() > Duration::from_secs(5) {
                eprintln!("import: {} of {} rows of this request", t.done, t.total);
                told = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let result = done.result.unwrap_or_default();
        if result.rejected > 0 {
            bail!("import: {} rows rejected: {:?}", result.rejected, result.rejected_rows.first());
        }
        added += result.added;
    }
    let took = started.elapsed();
    if added != o.count as u64 {
        bail!("import: {added} subscribers added of {}", o.count);
    }
    row(
        "import: CSV `ImportSubscribers`, confirmed",
        &format!("{} rows", o.count),
        &format!("{:.1} s", took.as_secs_f64()),
        &format!("{:.0} rows/s", o.count as f64 / took.as_secs_f64()),
        &format!("{} request(s), {added} added", chunks.len()),
        "",
        stack.peaks(),
    );
    Ok(list.id)
}

/// Phase 3: a campaign to the whole list; answers its msg/s, creation to last copy.
async fn campaign(o: &Options, stack: &Stack, fake: &FakeSendGrid, list: &str, baseline: f64) -> anyhow::Result<f64> {
    let mut client = stack.lists()?;
    let sentence = "The power will be cut in {{ area }} on Tuesday from 9:00 to 13:00 for maintenance. ";
    let content = pb::Content {
        subject: "Power cut in {{ area }}".into(),
        markdown: format!("Dear {{{{ name }}}},\n\n{}", sentence.repeat(o.size / sentence.len() + 1)),
    };
    let given =
        pb::Campaign { list_id: list.to_owned(), name: "Tuesday".into(), content: Some(content), ..Default::default() };
    eprintln!("campaign: to {} subscribers", o.count);
    let created = Instant::now();
    let request = pb::CreateCampaignRequest { tenant: String::new(), campaign: Some(given) };
    let id = client.create_campaign(request).await?.into_inner().id;
    let wait = until_at_provider(fake, o.count, "campaign");
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let request = pb::CampaignRequest { tenant: String::new(), campaign_id: id.clone() };
            let c = client.get_campaign(request).await?.into_inner();
            if c.state == "failed" || c.state == "cancelled" {
                bail!("campaign {id}: {} ({})", c.state, c.error);
            }
        }
    };
    tokio::select! {
        done = wait => done?,
        failed = watch => failed?,
    }
    let times = fake.request_times();
    let (first, last) = (times[0] - created, times[times.len() - 1] - created);
    let rate = o.count as f64 / last.as_secs_f64();
    // Once each copy counts as sent, the figures are final (written once a second).
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let request = pb::CampaignRequest { tenant: String::new(), campaign_id: id.clone() };
        let c = client.get_campaign(request).await?.into_inner();
        let s = c.stats.unwrap_or_default();
        if (c.state == "done" && s.sent + s.failed >= o.count as u64) || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut copies: HashMap<String, usize> = HashMap::new();
    for r in fake.received() {
        let to = r.body["personalizations"][0]["to"][0]["email"].as_str().unwrap_or_default().to_owned();
        *copies.entry(to).or_default() += 1;
    }
    let twice = copies.values().filter(|n| **n > 1).count();
    if copies.len() != o.count || twice > 0 {
        bail!("campaign: {} subscribers reached of {}, {twice} more than once", copies.len(), o.count);
    }
    row(
        "campaign to the whole list",
        &format!("{} copies", o.count),
        &format!("{:.1} s from creation to the last at the provider", last.as_secs_f64()),
        &format!("**{rate:.0} msg/s** ({:.0} % of the baseline)", 100.0 * rate / baseline),
        &format!(
            "first copy after {:.2} s; {:.0} msg/s first to last; {} submitted, {} sent, none twice",
            first.as_secs_f64(),
            (o.count - 1) as f64 / (last - first).as_secs_f64(),
            stats.submitted,
            stats.sent
        ),
        &mean_request_bytes(fake).to_string(),
        stack.peaks(),
    );
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    if o.count == 0 {
        bail!("--count: at least 1");
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("bitmail-lists-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("lists bench: data and logs in {}", dir.display());
    let _ = writeln!(
        std::io::stdout(),
        "| phase | count | time | rate | detail | bytes per request at the provider | backend-server peak RSS | mta-server peak RSS | this process peak RSS |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let base = baseline(&o, &dir.join("baseline")).await?;
    let fake = FakeSendGrid::start(PROVIDER_KEY).await?;
    let mut stack = Stack::start(&dir.join("lists"), &o, &fake).await?;
    let list = import(&o, &stack).await?;
    let [import_backend, import_mta, _] = stack.peaks();
    stack.restart().await?;
    let rate = campaign(&o, &stack, &fake, &list, base).await?;
    let [backend, mta, _] = stack.peaks();
    let most = [import_backend, import_mta, backend, mta].into_iter().flatten().max().unwrap_or(0);
    let _ = writeln!(
        std::io::stdout(),
        "\nThe campaign reached {:.0} % of the baseline's delivered msg/s (target: at least 80 %); the largest peak RSS of a service was {:.0} MB (target: under 300 MB).",
        100.0 * rate / base,
        most as f64 * 1024.0 / 1e6
    );
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
