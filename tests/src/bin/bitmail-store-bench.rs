//! The store benchmark behind `cargo xtask bench store`: one engine, one store size, one
//! line of a Markdown table.
//!
//! It loads `--docs` documents from `--concurrency` concurrent callers (put throughput;
//! for the embedded engine every put is durable when answered), then measures from one
//! caller: `get` of random ids, a lookup whose answer is 1 document (a unique pair) and
//! one whose answer is 100 (a pair shared by 100 documents), each as p50/p99 latency,
//! and the peak resident memory of the process holding the data (this one, or for the
//! proxy the backend-server it forwards to).
//!
//! Documents: `kind` = "bench" (shared by all), `g` = one of n/100 groups, `u` = unique,
//! `body` = 200 bytes.
//!
//! usage: bitmail-store-bench --engine memory|embedded|proxy|postgres --docs N
//!                            [--concurrency N] [--backend-bin PATH] [--dir PATH]

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use backend_server::embedded::EmbeddedStore;
use backend_server::memory::MemoryStore;
use backend_server::postgres::PostgresStore;
use backend_server::proxy::ProxyStore;
use backend_server::store::{Fields, Limits, Store};
use clap::Parser;

/// One store engine at one size: put throughput, get and lookup latency, peak memory; one
/// line of a Markdown table
#[derive(Debug, Parser)]
#[command(name = "bitmail-store-bench")]
struct Options {
    /// The engine to measure
    #[arg(long, value_parser = ["memory", "embedded", "proxy", "postgres"])]
    engine: String,
    /// Documents to load
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    docs: usize,
    /// Concurrent callers while loading
    #[arg(long, value_name = "N", default_value_t = 512)]
    concurrency: usize,
    /// The backend-server binary the proxy engine forwards to (needed for proxy)
    #[arg(long, value_name = "PATH")]
    backend_bin: Option<PathBuf>,
    /// Where the data goes [default: a new folder in the temporary folder]
    #[arg(long, value_name = "PATH", default_value_os_t = default_dir(), hide_default_value = true)]
    dir: PathBuf,
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join(format!("bitmail-store-bench-{}", std::process::id()))
}

/// The backend-server child of the proxy run; killed when dropped.
struct Backend(Child);

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn document(i: usize) -> Fields {
    let mut f = Fields::new();
    f.insert("kind".into(), "bench".into());
    f.insert("g".into(), format!("g{}", i / 100));
    f.insert("u".into(), format!("u{i}"));
    f.insert("body".into(), format!("{i:0>200}"));
    f
}

/// What the run keeps alive beside the store.
enum Keep {
    Nothing,
    /// The backend-server child of the proxy.
    Backend(Backend),
    /// A throwaway PostgreSQL cluster (fsync on), stopped when dropped.
    Postgres(#[allow(dead_code)] bitmail_tests::postgres::PgServer),
}

async fn open(o: &Options) -> anyhow::Result<(Arc<dyn Store>, Keep)> {
    std::fs::create_dir_all(&o.dir)?;
    Ok(match o.engine.as_str() {
        "memory" => (Arc::new(MemoryStore::new()), Keep::Nothing),
        "embedded" => {
            (Arc::new(EmbeddedStore::open(&o.dir.join("store.redb"), 256 << 20, Limits::default())?), Keep::Nothing)
        }
        "postgres" => {
            let pg = tokio::task::spawn_blocking(bitmail_tests::postgres::PgServer::start_durable).await??;
            let url = pg.create_database()?;
            let store = PostgresStore::connect(&url, 32).await?;
            (Arc::new(store), Keep::Postgres(pg))
        }
        "proxy" => {
            let bin = o.backend_bin.as_ref().context("--backend-bin is needed for the proxy")?;
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let config = o.dir.join("backend.toml");
            std::fs::write(
                &config,
                format!(
                    "listen = \"127.0.0.1:{port}\"\nengine = \"embedded\"\n[embedded]\npath = {:?}\ncache_bytes = {}\n",
                    o.dir.join("store.redb").display().to_string(),
                    256 << 20
                ),
            )?;
            let child = Command::new(bin)
                .arg("--config")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            let backend = Backend(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    bail!("backend-server did not listen on {port}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let url = format!("http://127.0.0.1:{port}");
            let proxy =
                ProxyStore::new(&url, None, Duration::from_secs(1), Duration::from_secs(30), Limits::default())?;
            (Arc::new(proxy), Keep::Backend(backend))
        }
        other => bail!("unknown engine `{other}`"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    let (store, backend) = open(&o).await?;

    // Load: `concurrency` callers, each taking the next index.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.concurrency {
        let (store, next) = (store.clone(), next.clone());
        let docs = o.docs;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= docs {
                    return Ok::<_, anyhow::Error>(ids);
                }
                ids.push((i, store.put(document(i)).await?.id));
            }
        }));
    }
    let mut ids = vec![String::new(); o.docs];
    for t in tasks {
        for (i, id) in t.await?? {
            ids[i] = id;
        }
    }
    let put_rate = o.docs as f64 / started.elapsed().as_secs_f64();

    let mut gets = Vec::new();
    for _ in 0..2000 {
        let i = fastrand::usize(..o.docs);
        let t = Instant::now();
        let doc = store.get(&ids[i]).await?;
        gets.push(t.elapsed());
        anyhow::ensure!(doc.fields["u"] == format!("u{i}"), "get answered the wrong document");
    }
    let mut one = Vec::new();
    for _ in 0..2000 {
        let i = fastrand::usize(..o.docs);
        let subset: Fields = [("u".to_owned(), format!("u{i}"))].into_iter().collect();
        let t = Instant::now();
        let page = store.lookup(&subset, 10, None).await?;
        one.push(t.elapsed());
        anyhow::ensure!(page.documents.len() == 1, "a unique pair answered {}", page.documents.len());
    }
    let mut hundred = Vec::new();
    for _ in 0..500 {
        let g = fastrand::usize(..o.docs / 100);
        let subset: Fields = [("g".to_owned(), format!("g{g}"))].into_iter().collect();
        let t = Instant::now();
        let page = store.lookup(&subset, 100, None).await?;
        hundred.push(t.elapsed());
        anyhow::ensure!(page.documents.len() == 100, "a group answered {}", page.documents.len());
    }
    for v in [&mut gets, &mut one, &mut hundred] {
        v.sort();
    }
    let rss = match &backend {
        Keep::Backend(b) => format!(
            "{:.0} MiB (backend-server) + {:.0} MiB (proxy)",
            peak_rss_mib(b.0.id()),
            peak_rss_mib(std::process::id())
        ),
        Keep::Postgres(_) => {
            format!("{:.0} MiB (client; the PostgreSQL server not counted)", peak_rss_mib(std::process::id()))
        }
        Keep::Nothing => format!("{:.0} MiB", peak_rss_mib(std::process::id())),
    };
    let file =
        std::fs::metadata(o.dir.join("store.redb")).map(|m| format!("{} MiB", m.len() >> 20)).unwrap_or("-".into());
    let _ = writeln!(
        std::io::stdout(),
        "| {} | {} | {:.0} | {} / {} | {} / {} | {} / {} | {} | {} |",
        o.engine,
        o.docs,
        put_rate,
        ms(percentile(&gets, 0.5)),
        ms(percentile(&gets, 0.99)),
        ms(percentile(&one, 0.5)),
        ms(percentile(&one, 0.99)),
        ms(percentile(&hundred, 0.5)),
        ms(percentile(&hundred, 0.99)),
        rss,
        file
    );
    drop(store);
    drop(backend);
    let _ = std::fs::remove_dir_all(&o.dir);
    Ok(())
}
