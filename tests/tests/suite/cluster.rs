//! A small cluster of real binaries, as child processes: two edges (client-api), two
//! mta-servers (`mta-1`, `mta-2`, each its own spool, tenants in the shared store), one
//! backend-server on PostgreSQL with a synchronous hot standby (one URL naming both,
//! `target_session_attrs=read-write`), and a fake SendGrid.
//!
//! Load, all the while, through both edges:
//! - app-API sends (SendGrid-shaped `POST /v3/mail/send`, each with its own
//!   `Idempotency-Key`), posted to one edge and, on anything but 202 or no answer, to the
//!   other with the same key, until answered 202: what a client told to retry does;
//! - webmail sends by one signed-in user, alternating edges (the session is in the
//!   shared store, so both edges know it); an unanswered send is not retried (the
//!   webmail's send has no idempotency key) and not counted.
//!
//! Faults, in turn:
//! 1. `mta-1`'s provider is paused (by an operator, over gRPC) until its node report
//!    shows a backlog; then kill -9 `mta-1`: sends go on through `mta-2` at once (each
//!    edge retries a submission whose answer never came on the other node, flagged
//!    possible duplicate), and no app-API request gets anything but 202; every edge's
//!    status says `mta-1` is unreachable with its messages waiting there. Then `mta-1`
//!    is started again on its spool and its provider resumed: the backlog goes out.
//! 2. kill -9 `edge-1`: the clients' retries through `edge-2` succeed; it is started
//!    again.
//! 3. kill -9 the PostgreSQL primary and promote the standby: backend-server (not
//!    restarted) takes writes again on the new primary, and the webmail works again.
//!
//! Then: every acknowledged message is delivered; a message delivered more than once is
//! flagged `possible_duplicate` by the node that sent it again; every acknowledged
//! webmail send is in the Sent folder once. The counts are printed.
//!
//! The binaries are found in `target/debug` (see `whole_stack_faults`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use bitmail_tests::postgres::PgServer;
use bitmail_tests::sendgrid::FakeSendGrid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::common::stack::{Service, User, Webmail, free_port, until};

const PROVIDER_KEY: &str = "SG.cluster-test";

#[derive(Default)]
struct Acked {
    /// Subject -> BitMail id answered, of app-API sends answered 202.
    api: BTreeMap<String, String>,
    /// Subject -> mta id of webmail sends answered 202.
    webmail: BTreeMap<String, String>,
    /// App-API answers other than 202 (or none), each retried on the other edge.
    api_retries: usize,
}

fn mta_config(dir: &std::path::Path, node: &str, port: u16, backend: u16, fake: &FakeSendGrid) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\nshutdown_grace_secs = 1\n[spool]\npath = {:?}\ncache_bytes = 4194304\n\
         [retry]\ninitial_secs = 1\nmax_delay_secs = 2\n\
         [tenants]\nstore = \"http://127.0.0.1:{backend}\"\nnode_id = \"{node}\"\ndefault_domains = [\"bitmail.test\"]\n\
         [tenants.default_quotas]\nper_second = 100000.0\nburst = 100000\n\
         [[providers]]\nname = \"sendgrid\"\nkind = \"sendgrid\"\nbase_url = \"{}\"\napi_key = \"{PROVIDER_KEY}\"\ntimeout_ms = 2000\n",
        dir.join(format!("{node}.redb")).display().to_string(),
        fake.base_url()
    )
}

fn edge_config(dir: &std::path::Path, name: &str, port: u16, mtas: [u16; 2], backend: u16, key: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\nstate_dir = {:?}\nmta_urls = [{{ url = \"http://127.0.0.1:{}\", node_id = \"mta-1\" }}, \
         {{ url = \"http://127.0.0.1:{}\", node_id = \"mta-2\" }}]\n\
         mta_key = \"{key}\"\nbackend_url = \"http://127.0.0.1:{backend}\"\nmail_domain = \"bitmail.test\"\n\
         signup_on_first_login = true\nuser_sends_per_minute = 100000\nshutdown_grace_secs = 1\n",
        dir.join(name).display().to_string(),
        mtas[0],
        mtas[1]
    )
}

struct Cluster {
    backend: Service,
    mtas: [Service; 2],
    edges: [Service; 2],
}

impl Cluster {
    async fn all_healthy(&self) -> bool {
        let all = [&self.backend, &self.mtas[0], &self.mtas[1], &self.edges[0], &self.edges[1]];
        for s in all {
            if !s.probe().await {
                return false;
            }
        }
        true
    }
}

/// An app-API send of `subject` with its idempotency key, to `edges[first]` and then the
/// other, until answered 202; answers the BitMail id. Gives up (None) only at `stop`.
async fn send_until_202(
    http: &reqwest::Client,
    edges: &[String; 2],
    key: &str,
    subject: &str,
    first: usize,
    acked: &Mutex<Acked>,
    stop: &AtomicBool,
) -> Option<String> {
    let body = json!({
        "personalizations": [{ "to": [{ "email": "dave@example.net" }] }],
        "from": { "email": "app@bitmail.test" },
        "subject": subject,
        "content": [{ "type": "text/plain", "value": "from an app" }],
    });
    for attempt in 0.. {
        let edge = &edges[(first + attempt) % 2];
        let answer = http
            .post(format!("{edge}/v3/mail/send"))
            .bearer_auth(key)
            .header("idempotency-key", subject)
            .json(&body)
            .send()
            .await;
        match answer {
            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                let id = r.headers().get("x-message-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                return Some(id.to_owned());
            }
            _ if stop.load(Ordering::Relaxed) => return None,
            _ => {
                acked.lock().await.api_retries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_two_mtas_and_a_standby_deliver_every_acknowledged_message() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("bitmail-cluster-{}", crate::common::uuid_like()));
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("cluster: logs in {}", dir.display());
    let fake = FakeSendGrid::start(PROVIDER_KEY).await.unwrap();
    let mut primary = PgServer::start_primary().unwrap();
    let database = primary.create_database().unwrap();
    let standby = primary.start_standby().unwrap();
    let pair = primary.pair_url(&standby, &database);

    let backend_port = free_port();
    let mta_ports = [free_port(), free_port()];
    let edge_ports = [free_port(), free_port()];
    let mut backend = Service::new(
        "backend-server",
        &dir,
        "BITMAIL_BACKEND_LOG",
        format!(
            "listen = \"127.0.0.1:{backend_port}\"\nshutdown_grace_secs = 1\nengine = \"postgres\"\n[postgres]\nurl = \"{pair}\"\n"
        ),
    );
    backend.start();
    until(Duration::from_secs(30), "backend-server up", || backend.probe()).await;
    let mtas = ["mta-1", "mta-2"].map(|node| {
        let port = mta_ports[usize::from(node == "mta-2")];
        Service::node(node, "mta-server", &dir, "BITMAIL_MTA_LOG", mta_config(&dir, node, port, backend_port, &fake))
    });
    // The keys live in the shared store: any node's config reaches it.
    let app_key = bitmail_tests::api_key::create_key(&mtas[0].bin, &mtas[0].config, "send,read", "cluster-app");
    let service_key = bitmail_tests::api_key::create_key(&mtas[0].bin, &mtas[0].config, "service", "client-api");
    let admin_key = bitmail_tests::api_key::create_key(&mtas[0].bin, &mtas[0].config, "admin", "cluster-ops");
    let edges = ["edge-1", "edge-2"].map(|name| {
        let port = edge_ports[usize::from(name == "edge-2")];
        Service::node(
            name,
            "client-api",
            &dir,
            "BITMAIL_CLIENT_API_LOG",
            edge_config(&dir, name, port, mta_ports, backend_port, &service_key),
        )
    });
    let mut cluster = Cluster { backend, mtas, edges };
    for s in cluster.mtas.iter_mut().chain(cluster.edges.iter_mut()) {
        s.start();
    }
    until(Duration::from_secs(30), "the cluster up", || cluster.all_healthy()).await;

    // One client for both edges: each has its own certificate, both trusted.
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    for (name, port) in ["edge-1", "edge-2"].into_iter().zip(edge_ports) {
        let pem = std::fs::read(dir.join(name).join("tls/cert.pem")).expect("the edge's certificate");
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        let _ = port;
    }
    let http = builder.build().unwrap();
    let bases = edge_ports.map(|p| format!("https://127.0.0.1:{p}"));
    let web = Webmail { http: http.clone(), base: bases[0].clone() };
    let (cookie, csrf) = web.sign_in("ada").await;
    let ada = bases.clone().map(|base| User { http: http.clone(), base, cookie: cookie.clone(), csrf: csrf.clone() });

    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let api_sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..2 {
        let (http, bases, key, acked, stop, sent) =
            (http.clone(), bases.clone(), app_key.clone(), acked.clone(), stop.clone(), api_sent.clone());
        load.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let subject = format!("api-{worker}-{n}");
                if let Some(id) = send_until_202(&http, &bases, &key, &subject, n % 2, &acked, &stop).await {
                    acked.lock().await.api.insert(subject, id);
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }));
    }
    {
        let (ada, acked, stop) = (ada.clone(), acked.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let subject = format!("webmail {n}");
                if let Some(id) = ada[n % 2].send_out(&subject).await {
                    acked.lock().await.webmail.insert(subject, id);
                    tokio::time::sleep(Duration::from_millis(40)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    let sent_more = |n: usize| {
        let (sent, acked) = (api_sent.clone(), acked.clone());
        async move {
            let (a0, w0) = (sent.load(Ordering::Relaxed), acked.lock().await.webmail.len());
            until(Duration::from_secs(30), &format!("{n} more app-API and webmail sends acknowledged"), || {
                let (sent, acked) = (sent.clone(), acked.clone());
                async move { sent.load(Ordering::Relaxed) >= a0 + n && acked.lock().await.webmail.len() >= w0 + n }
            })
            .await;
        }
    };
    sent_more(5).await;

    // 1: mta-1 holds a backlog (its provider paused by an operator), reports it, and is
    // killed -9. Sends go on through mta-2 at once, without a failed request.
    let mta_1 = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", mta_ports[0])).unwrap();
    let mut ops = bitmail_tests::api_key::client(mta_1.connect_lazy(), &admin_key);
    let sendgrid = || pb::ProviderRequest { name: "sendgrid".into() };
    ops.pause_provider(sendgrid()).await.unwrap();
    until(Duration::from_secs(30), "mta-1 reporting a backlog", || {
        let user = ada[0].clone();
        async move {
            let status = user.call(reqwest::Method::GET, "/api/status", None).await;
            let entry =
                status.and_then(|(_, b)| b["nodes"].as_array()?.iter().find(|n| n["node_id"] == "mta-1").cloned());
            entry.is_some_and(|n| n["queued"].as_u64().unwrap_or(0) >= 3)
        }
    })
    .await;
    let retries_before = acked.lock().await.api_retries;
    cluster.mtas[0].kill_9();
    let killed = Instant::now();
    sent_more(10).await;
    let took = killed.elapsed();
    let retries = acked.lock().await.api_retries - retries_before;
    assert_eq!(retries, 0, "app-API requests answered other than 202 while mta-1 was down (the edge retries on mta-2)");
    assert!(took < Duration::from_secs(10), "10 sends each way took {took:?} with mta-1 down");
    // Every edge says where mail waits: mta-1 unreachable, with its last report.
    for user in &ada {
        let node = until_unreachable(user, "mta-1").await;
        assert!(node["queued"].is_u64(), "mta-1's last report gives its queue: {node}");
        let note = node["note"].as_str().unwrap_or_default();
        assert!(note.starts_with("node mta-1 unreachable since"), "{node}");
        assert!(node["queued"].as_u64().unwrap() >= 3, "the backlog waiting on mta-1's disk: {node}");
        eprintln!("cluster: {}/api/status with mta-1 down: {note}", user.base);
    }
    cluster.mtas[0].start();
    until(Duration::from_secs(30), "mta-1 back", || cluster.mtas[0].probe()).await;
    // The pause is kept in its spool, like the backlog: the operator resumes it.
    ops.resume_provider(sendgrid()).await.unwrap();
    sent_more(5).await;
    eprintln!("cluster: kill -9 mta-1: 10 sends each way in {took:?} through mta-2; back at {:?}", started.elapsed());

    // 2: kill -9 edge-1: the clients' retries through edge-2 succeed.
    cluster.edges[0].kill_9();
    sent_more(10).await;
    cluster.edges[0].start();
    until(Duration::from_secs(30), "edge-1 back", || cluster.edges[0].probe()).await;
    eprintln!("cluster: kill -9 edge-1: sends went on through edge-2; back at {:?}", started.elapsed());

    // 3: the PostgreSQL primary dies; the standby is promoted; backend-server recovers.
    let backend_pid = cluster.backend.pid();
    primary.kill().unwrap();
    let failed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| standby.promote()).unwrap();
    sent_more(5).await;
    let recovered = failed_at.elapsed();
    assert!(cluster.backend.alive() && cluster.backend.pid() == backend_pid, "backend-server was not restarted");
    eprintln!("cluster: PostgreSQL fail-over: sends acknowledged again {recovered:?} after the primary died");

    // The end: everything acknowledged arrives, nothing twice unless flagged.
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().await);
    let deadline = Instant::now() + Duration::from_secs(60);
    let by_subject = loop {
        let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
        for r in fake.received() {
            let id = r.body["custom_args"]["bitmail_id"].as_str().unwrap_or_default().to_owned();
            by_subject.entry(r.body["subject"].as_str().unwrap_or_default().to_owned()).or_default().push(id);
        }
        let missing: Vec<&String> =
            acked.api.keys().chain(acked.webmail.keys()).filter(|s| !by_subject.contains_key(*s)).collect();
        if missing.is_empty() {
            break by_subject;
        }
        assert!(Instant::now() < deadline, "acknowledged and never delivered: {missing:?} (logs in {})", dir.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut nodes: Vec<_> = mta_ports
        .iter()
        .map(|p| {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{p}")).unwrap().connect_lazy();
            bitmail_tests::api_key::client(channel, &app_key)
        })
        .collect();
    let mut flagged = 0;
    for subject in acked.api.keys().chain(acked.webmail.keys()) {
        let ids = &by_subject[subject];
        if ids.len() < 2 {
            continue;
        }
        let mut any_flagged = false;
        for id in ids {
            for node in &mut nodes {
                if let Ok(s) = node.get_message(pb::GetMessageRequest { message_id: id.clone() }).await {
                    any_flagged |= s.into_inner().possible_duplicate;
                }
            }
        }
        assert!(any_flagged, "{subject} delivered {} times ({ids:?}), none flagged possible_duplicate", ids.len());
        flagged += 1;
    }
    let sent = ada[1].folder("sent").await;
    for subject in acked.webmail.keys() {
        assert_eq!(sent.get(subject), Some(&1), "{subject} in ada's Sent folder once");
    }
    assert!(cluster.all_healthy().await, "every service answers its probe at the end");
    eprintln!(
        "cluster: acknowledged {} app-API sends ({} retries through the other edge) and {} webmail sends; \
         {} deliveries; {flagged} delivered twice, each flagged possible_duplicate; {:?}",
        acked.api.len(),
        acked.api_retries,
        acked.webmail.len(),
        fake.received().len(),
        started.elapsed()
    );
    drop(cluster);
    drop(standby);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the edge's status page says node `node` cannot be reached; answers its entry.
async fn until_unreachable(user: &User, node: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((StatusCode::OK, body)) = user.call(reqwest::Method::GET, "/api/status", None).await
            && let Some(entry) = body["nodes"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == node))
            && entry["reachable"] == false
        {
            return entry.clone();
        }
        assert!(Instant::now() < deadline, "{}/api/status never said {node} is unreachable", user.base);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
