//! The webmail benchmark behind `cargo xtask bench webmail`: is a folder's first page,
//! a search and opening a message as fast in a mailbox of 100,000 messages as in a
//! small one?
//!
//! It runs the release binaries backend-server (the embedded engine, or `--engine
//! postgres` on a throwaway cluster) and client-api as child processes (client-api's
//! mta-server is never reached: reading mail does not need it), signs in as `ada`, and
//! stores `--count` messages in her inbox straight into the store, in the documents
//! client-api writes (`client-api/src/mailbox/`: a list entry with its `box` and
//! `unread` index pairs, a first body piece with the searchable `_text.*` fields),
//! from 64 callers: generating them through the edge would take as long as the whole
//! bench and measure the writing, not the reading. The bench checks that the edge sees
//! them all (the inbox's total) before measuring.
//!
//! Then, through the edge's HTTPS API as the webmail calls it, `--requests` times each
//! (one after the other): the inbox's first page (`GET /api/folders/inbox`, 50 per
//! page, with its total and unread counts), a search for a word one message in 50 holds
//! (`GET /api/search?q=harvest`), a search for a sender and a word (`from:grace
//! budget`, one in 500), and opening a message. p50 and p99 in ms; the target is under
//! 50 ms p99 on the embedded engine for the first page and search.
//!
//! Last: what a 5 MB message to one user and to a group of 1,000 (999 users written
//! straight into the store) stores, in its documents' bytes, against as many separate
//! copies.
//!
//! usage: bitmail-webmail-bench [--count N] [--requests N] [--engine embedded|postgres]

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_tests::postgres::PgServer;
use bitmail_tests::processes::{Service, free_port};
use bitmail_tests::store_bytes::stored_bytes;
use clap::Parser;
use serde_json::{Value, json};

/// Inbox first page, search and open at a mailbox of N messages: p50/p99 through the
/// edge; a Markdown table
#[derive(Debug, Parser)]
#[command(name = "bitmail-webmail-bench")]
struct Options {
    /// Messages in the inbox
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    count: usize,
    /// Requests of each kind measured
    #[arg(long, value_name = "N", default_value_t = 200)]
    requests: usize,
    /// The store engine: embedded or postgres
    #[arg(long, value_name = "ENGINE", default_value = "embedded")]
    engine: String,
}

const WORDS: &[&str] = &[
    "the", "meeting", "tomorrow", "water", "pump", "school", "clinic", "report", "please", "send", "thanks", "week",
    "market", "price", "village", "road", "rain", "seeds", "doctor", "children", "teacher", "letter", "call", "news",
];
const SENDERS: &[&str] = &["alice", "bruno", "chidi", "dara", "emeka", "fatou", "grace", "hugo", "ines", "jomo"];

/// Message `i`'s entry and first body piece, as client-api stores them.
fn message(owner: &str, i: usize) -> (HashMap<String, String>, HashMap<String, String>) {
    let sender = SENDERS[i % SENDERS.len()];
    let mut body: Vec<&str> = (0..60).map(|k| WORDS[(i * 7 + k * 13) % WORDS.len()]).collect();
    if i.is_multiple_of(50) {
        body.push("harvest");
    }
    if i % 500 == 6 {
        body.push("budget");
    }
    let text = body.join(" ");
    let subject = format!("{} {} {i}", WORDS[i % WORDS.len()], WORDS[(i / 3) % WORDS.len()]);
    let from = format!("{sender}@example.net");
    let content = format!("content-bench-{i:08}");
    let inbox = format!("{owner}/inbox");
    let s = |v: &str| v.to_owned();
    let mut entry = HashMap::from([
        (s("kind"), s("mail")),
        (s("owner"), s(owner)),
        (s("folder"), s("inbox")),
        (s("from"), from.clone()),
        (s("to"), s("[\"ada@bitmail.test\"]")),
        (s("cc"), s("[]")),
        (s("bcc"), s("[]")),
        (s("subject"), subject.clone()),
        (s("date_ms"), (1_700_000_000_000 + i as u64 * 60_000).to_string()),
        (s("read"), (!i.is_multiple_of(10)).to_string()),
        (s("preview"), text.chars().take(140).collect()),
        (s("attachments"), s("[]")),
        (s("local_to"), s("[]")),
        (s("content_ref"), content.clone()),
        (s("box"), inbox.clone()),
    ]);
    if i.is_multiple_of(10) {
        entry.insert(s("unread"), inbox);
    }
    let piece = HashMap::from([
        (s("kind"), s("body")),
        (s("mail_id"), content),
        (s("owner"), s(owner)),
        (s("part"), s("0")),
        (s("html"), String::new()),
        (s("_text.body"), text),
        (s("_text.from"), from),
        (s("_text.to"), s("ada@bitmail.test")),
        (s("_text.subject"), subject),
        (format!("reader.{owner}"), s("1")),
    ]);
    (entry, piece)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    let dir = std::env::temp_dir().join(format!("bitmail-webmail-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (backend_port, edge_port) = (free_port(), free_port());
    let (_pg, engine) = match o.engine.as_str() {
        "embedded" => (None, format!("engine = \"embedded\"\n[embedded]\npath = {:?}\n", dir.join("store.redb"))),
        "postgres" => {
            let pg = tokio::task::spawn_blocking(PgServer::start_durable).await??;
            let db = pg.create_database()?;
            (Some(pg), format!("engine = \"postgres\"\n[postgres]\nurl = \"{db}\"\n"))
        }
        other => bail!("--engine: embedded or postgres, not {other:?}"),
    };
    let mut backend = Service::new(
        "backend-server",
        &dir,
        "BITMAIL_BACKEND_LOG",
        format!("listen = \"127.0.0.1:{backend_port}\"\n{engine}"),
    );
    backend.start();
    let state = dir.join("client-api");
    let mut edge = Service::new(
        "client-api",
        &dir,
        "BITMAIL_CLIENT_API_LOG",
        format!(
            "listen = \"127.0.0.1:{edge_port}\"\nstate_dir = {:?}\nmta_url = \"http://127.0.0.1:{}\"\n\
             mta_key = \"unused\"\nbackend_url = \"http://127.0.0.1:{backend_port}\"\nmail_domain = \"bitmail.test\"\n\
             signup_on_first_login = true\nshutdown_grace_secs = 1\n",
            state.display().to_string(),
            free_port()
        ),
    );
    edge.start();
    let http = {
        let started = Instant::now();
        loop {
            if let Ok(pem) = std::fs::read(state.join("tls/cert.pem")) {
                break reqwest::Client::builder()
                    .tls_certs_only([reqwest::Certificate::from_pem(&pem)?])
                    .resolve("localhost", ([127, 0, 0, 1], edge_port).into())
                    .timeout(Duration::from_secs(60))
                    .build()?;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("client-api made no certificate within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let base = format!("https://localhost:{edge_port}");
    let started = Instant::now();
    let (cookie, _csrf) = loop {
        let body = json!({ "name": "ada", "password": "a long password" });
        match http.post(format!("{base}/api/session")).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                let cookie = r.headers()["set-cookie"].to_str()?.split(';').next().unwrap_or_default().to_owned();
                let v: Value = r.json().await?;
                break (cookie, v["csrf_token"].as_str().unwrap_or_default().to_owned());
            }
            _ if started.elapsed() < Duration::from_secs(60) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => bail!("signing in: {other:?}"),
        }
    };
    let store = StoreClient::connect(format!("http://127.0.0.1:{backend_port}")).await?;
    let owner = {
        let request = pb::LookupRequest {
            subset: HashMap::from([("kind".into(), "user".into()), ("name".into(), "ada".into())]),
            limit: 1,
            page_token: String::new(),
            newest_first: false,
        };
        let mut users = store.clone().lookup(request).await?.into_inner();
        match users.message().await?.and_then(|m| m.item) {
            Some(pb::lookup_response::Item::Document(d)) => d.id,
            _ => bail!("no user document for ada"),
        }
    };
    // The first page load indexes the (empty) mailbox once and stores its marker.
    let first = get(&http, &base, &cookie, "/api/folders/inbox").await?;
    if first["total"] != 0 {
        bail!("a fresh inbox should be empty: {first}");
    }

    let fill = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (store, owner, next, n) = (store.clone(), owner.clone(), next.clone(), o.count);
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let (entry, piece) = message(&owner, i);
                store.clone().put(pb::PutRequest { fields: piece }).await?;
                store.clone().put(pb::PutRequest { fields: entry }).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let fill = fill.elapsed();
    let inbox = get(&http, &base, &cookie, "/api/folders/inbox").await?;
    if inbox["total"] != o.count as u64 || inbox["unread"] != o.count.div_ceil(10) as u64 {
        bail!("the edge does not see the mailbox whole: total {}, unread {}", inbox["total"], inbox["unread"]);
    }
    let open = inbox["messages"][0]["id"].as_str().context("a message to open")?.to_owned();
    let _ = writeln!(
        std::io::stdout(),
        "\n{} messages in ada's inbox, stored in {:.1} s ({} engine)\n\n| request | answer | p50 ms | p99 ms |\n| --- | --- | --- | --- |",
        o.count,
        fill.as_secs_f64(),
        o.engine
    );
    for (label, path) in [
        ("inbox, first page of 50", "/api/folders/inbox".to_owned()),
        ("search `harvest` (1 in 50)", "/api/search?q=harvest".to_owned()),
        ("search `from:grace budget` (1 in 500)", "/api/search?q=from%3Agrace%20budget".to_owned()),
        ("open a message", format!("/api/mail/{open}")),
    ] {
        let mut times = Vec::with_capacity(o.requests);
        let mut answer = Value::Null;
        for _ in 0..o.requests {
            let t = Instant::now();
            answer = get(&http, &base, &cookie, &path).await?;
            times.push(t.elapsed());
        }
        times.sort();
        let shown = match answer["messages"].as_array() {
            Some(list) => format!("{} messages", list.len()),
            None => format!("{} bytes of text", answer["text"].as_str().map_or(0, str::len)),
        };
        let _ = writeln!(
            std::io::stdout(),
            "| {label} | {shown} | {:.1} | {:.1} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    // The store's share: the calls a first page and a search make, straight over gRPC.
    let inbox_key = format!("{owner}/inbox");
    for label in ["store: Count of the inbox", "store: Lookup newest first, 50", "store: Search `harvest`, 50"] {
        let mut times = Vec::with_capacity(o.requests);
        for _ in 0..o.requests {
            let t = Instant::now();
            let subset = HashMap::from([("box".to_owned(), inbox_key.clone())]);
            match label {
                "store: Count of the inbox" => {
                    store.clone().count(pb::CountRequest { subset, at_most: 0 }).await?;
                }
                "store: Lookup newest first, 50" => {
                    let request =
                        pb::LookupRequest { subset, limit: 50, page_token: String::new(), newest_first: true };
                    let mut stream = store.clone().lookup(request).await?.into_inner();
                    while stream.message().await?.is_some() {}
                }
                _ => {
                    let subset = HashMap::from([
                        ("kind".to_owned(), "body".to_owned()),
                        (format!("reader.{owner}"), "1".to_owned()),
                    ]);
                    let terms = vec![pb::SearchTerm { words: "harvest".into(), fields: vec![] }];
                    let request =
                        pb::SearchRequest { subset, terms, limit: 50, page_token: String::new(), oldest_first: false };
                    let mut stream = store.clone().search(request).await?.into_inner();
                    while stream.message().await?.is_some() {}
                }
            }
            times.push(t.elapsed());
        }
        times.sort();
        let _ = writeln!(
            std::io::stdout(),
            "| {label} | | {:.1} | {:.1} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    group_storage(&http, &base, &cookie, &store).await?;
    edge.stop();
    backend.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What a 5 MB message to one user and to a group of 1,000 (ada and 999 users written
/// straight into the store) stores: the bytes of its documents (entries, body, chunks),
/// against the same entries each with a copy of the content of its own (as before
/// content was shared).
async fn group_storage(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    store: &StoreClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let names: Vec<String> = (0..999).map(|i| format!("member{i}")).collect();
    for name in &names {
        let fields = HashMap::from([
            ("kind".to_owned(), "user".to_owned()),
            ("name".to_owned(), name.clone()),
            ("password_hash".to_owned(), String::new()),
            ("tenant".to_owned(), "default".to_owned()),
            ("role".to_owned(), "user".to_owned()),
        ]);
        store.clone().create(pb::CreateRequest { unique_key: format!("user/{name}"), fields }).await?;
    }
    let csrf = get(http, base, cookie, "/api/session").await?["csrf_token"].as_str().unwrap_or_default().to_owned();
    let post = |path: &str, body: Value| {
        http.post(format!("{base}{path}")).header("cookie", cookie).header("x-csrf-token", &csrf).json(&body).send()
    };
    let made = post("/api/groups", json!({ "name": "everyone-here", "members": names })).await?;
    if !made.status().is_success() {
        bail!("making the group: {} {}", made.status(), made.text().await?);
    }
    let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    use base64::Engine as _;
    let attachment = json!({ "filename": "plan.bin", "content_type": "application/octet-stream",
        "content_base64": base64::engine::general_purpose::STANDARD.encode(&bytes) });
    let mut rows = Vec::new();
    for (to, copies) in [("member0@bitmail.test", 2), ("everyone-here@bitmail.test", 1000)] {
        let t = Instant::now();
        let sent =
            post("/api/messages", json!({ "to": to, "subject": "Plan", "markdown": "x", "attachments": [attachment] }))
                .await?;
        if !sent.status().is_success() {
            bail!("sending to {to}: {} {}", sent.status(), sent.text().await?);
        }
        let took = t.elapsed();
        let answer: Value = sent.json().await?;
        let entry = store.clone().get(pb::GetRequest { id: answer["id"].as_str().unwrap_or_default().into() }).await?;
        let content = entry.into_inner().fields.get("content_ref").cloned().unwrap_or_default();
        let (entries, n) = stored_bytes(store, &[("kind", "mail"), ("content_ref", &content)]).await?;
        let (bodies, _) = stored_bytes(store, &[("kind", "body"), ("mail_id", &content)]).await?;
        let (chunks, _) = stored_bytes(store, &[("kind", "chunk"), ("mail_id", &content)]).await?;
        if n != copies {
            bail!("{to}: {n} entries, not {copies}");
        }
        rows.push((to, n, entries + bodies + chunks, (bodies + chunks) * n + entries, took));
    }
    let mb = |b: u64| b as f64 / 1e6;
    let mut out = String::from(
        "\n| a 5 MB message | entries | stored (documents' bytes) | as separate copies | sent in |\n| --- | --- | --- | --- | --- |\n",
    );
    for (to, n, stored, separate, took) in rows {
        out.push_str(&format!(
            "| to {to} | {n} | {:.1} MB | {:.1} MB | {:.2} s |\n",
            mb(stored),
            mb(separate),
            took.as_secs_f64()
        ));
    }
    let _ = write!(std::io::stdout(), "{out}");
    Ok(())
}

async fn get(http: &reqwest::Client, base: &str, cookie: &str, path: &str) -> anyhow::Result<Value> {
    let response = http.get(format!("{base}{path}")).header("cookie", cookie).send().await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("GET {path}: {status} {body}");
    }
    Ok(body)
}
