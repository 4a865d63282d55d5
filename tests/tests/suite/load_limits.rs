//! The limits of every server, over real sockets (`runtime/src/limits.rs`,
//! `client-api/src/limits.rs`): a gRPC server at its concurrency limit sheds with
//! `RESOURCE_EXHAUSTED` and a retry hint, and cancels a call over its timeout with
//! `DEADLINE_EXCEEDED`; the HTTPS edge answers 503 with `Retry-After` over its limit (and
//! over the webhooks' own), 504 at its timeout, closes a slow-loris connection after the
//! header timeout and the connection over its cap at once, refuses a webhook body over
//! its budget with 413 before reading it, and refuses a forged Mailgun forward with 401
//! before parsing its attachments. Calls are held open with a stream or an unfinished
//! request, and every wait is a poll to a deadline.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use bitmail_runtime::config::Secret;
use bitmail_tests::mailgun::FakeMailgun;
use common::Cluster;
use mta_server::config::ProviderConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `attempt` until it gives `Some`, for at most [`DEADLINE`].
async fn poll<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut attempt: impl FnMut() -> F) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(started.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS connection to the edge that trusts only its generated certificate.
async fn tls(cluster: &Cluster) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(cluster.cert.as_ref().unwrap()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let tcp = TcpStream::connect(cluster.edge.unwrap()).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// Reads until the connection closes or `deadline`: what was read, and whether it closed.
async fn read_until_closed(conn: &mut TlsStream<TcpStream>, deadline: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// Reads one response's head (status line and headers).
async fn read_head(conn: &mut TlsStream<TcpStream>) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("reads");
            assert!(n > 0, "closed before a response: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response within the deadline");
    String::from_utf8_lossy(&got).into_owned()
}

/// A request whose body is announced and never finished: it stays in progress.
async fn unfinished(cluster: &Cluster, path: &str) -> TlsStream<TcpStream> {
    let mut conn = tls(cluster).await.expect("connects");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    conn
}

async fn edge(tune: impl FnOnce(&mut client_api::limits::EdgeLimits)) -> Cluster {
    Cluster::start_full(vec![], true, |_| {}, |c| tune(&mut c.limits)).await
}

#[tokio::test]
async fn a_grpc_server_at_its_limit_sheds_with_resource_exhausted_and_a_retry_hint() {
    let cluster = Cluster::start_with(vec![], false, |c| {
        c.call_limits.max_concurrent_calls = 1;
        c.call_limits.retry_after_ms = 750;
    })
    .await;
    let mut mta = cluster.mta_client().await;
    // A stream holds its slot for as long as it is open.
    let watching = mta.watch_messages(pb::WatchMessagesRequest::default()).await.expect("the stream opens");
    let refused = mta.list_providers(pb::ListProvidersRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert_eq!(refused.metadata().get("retry-after-ms").unwrap(), "750");
    assert!(refused.message().contains("retry after 750 ms"), "{}", refused.message());

    // Metrics (and health) stay answerable while the server is saturated.
    let metrics = reqwest::get(format!("http://{}/metrics", cluster.mta)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("bitmail_grpc_shed_total{reason=\"concurrency\"} 1"), "{metrics}");

    drop(watching);
    poll("the slot is given back", || {
        let mut mta = mta.clone();
        async move { mta.list_providers(pb::ListProvidersRequest::default()).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn a_slow_grpc_call_is_cancelled_at_the_timeout() {
    // backend-server proxying to a peer that accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hole.accept().await {
            held.push(conn);
        }
    });
    let mut config = backend_server::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        engine: backend_server::config::Engine::Proxy,
        ..Default::default()
    };
    config.proxy.url = format!("http://{hole_addr}");
    config.proxy.timeout_ms = 20_000;
    config.call_limits.request_timeout_ms = 300;
    let server = backend_server::server::Server::bind(&config).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));

    let mut store = pb::store_client::StoreClient::connect(format!("http://{addr}")).await.unwrap();
    let started = Instant::now();
    let e = store.get(pb::GetRequest { id: "any".into() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("300 ms"), "{}", e.message());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn the_edge_over_its_limit_answers_503_with_retry_after() {
    let cluster = edge(|l| {
        l.max_concurrent_requests = 1;
        l.webhook_max_concurrent = 1;
        l.retry_after_secs = 7;
    })
    .await;
    let (http, base) = cluster.https_client();
    let held = unfinished(&cluster, "/api/session").await;
    let busy = poll("a 503", || {
        let request = http.get(format!("{base}/api/session"));
        async move { request.send().await.ok().filter(|r| r.status() == 503) }
    })
    .await;
    assert_eq!(busy.headers()["retry-after"], "7");
    drop(held);
    poll("the slot is given back", || {
        let request = http.get(format!("{base}/api/session"));
        async move { request.send().await.ok().filter(|r| r.status() == 401) }
    })
    .await;
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("bitmail_http_shed_total{reason=\"concurrency\"}"), "{metrics}");
}

#[tokio::test]
async fn webhooks_have_a_tighter_cap_of_their_own() {
    let cluster = edge(|l| l.webhook_max_concurrent = 1).await;
    let (http, base) = cluster.https_client();
    let _held = unfinished(&cluster, "/webhooks/mailgun/events").await;
    let busy = poll("a 503 for a second webhook", || {
        let request = http.post(format!("{base}/webhooks/mailgun/events")).body("{}");
        async move { request.send().await.ok().filter(|r| r.status() == 503) }
    })
    .await;
    assert_eq!(busy.headers()["retry-after"], "1");
    // The rest of the edge is not held up.
    assert_eq!(http.get(format!("{base}/api/session")).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_slow_edge_request_gets_504_at_the_timeout() {
    let cluster = edge(|l| l.request_timeout_ms = 300).await;
    let mut conn = unfinished(&cluster, "/api/session").await;
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
}

#[tokio::test]
async fn a_slow_loris_client_is_closed_after_the_header_timeout() {
    let cluster = edge(|l| l.header_read_timeout_ms = 300).await;
    // The first request's headers, never finished.
    let mut conn = tls(&cluster).await.unwrap();
    let started = Instant::now();
    conn.write_all(b"GET /api/session HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    conn.flush().await.unwrap();
    let (_, closed) = read_until_closed(&mut conn, DEADLINE).await;
    assert!(closed && started.elapsed() >= Duration::from_millis(300), "closed {closed} after {:?}", started.elapsed());

    // A later request on a kept-alive connection, likewise.
    let mut conn = tls(&cluster).await.unwrap();
    conn.write_all(b"GET /api/session HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    conn.write_all(b"GET /api/session HTTP/1.1\r\nHost: loc").await.unwrap();
    conn.flush().await.unwrap();
    let (_, closed) = read_until_closed(&mut conn, DEADLINE).await;
    assert!(closed, "the kept-alive connection stayed open");
}

#[tokio::test]
async fn the_connection_over_the_cap_is_closed_at_once() {
    let cluster = edge(|l| l.max_connections = 2).await;
    let first = tls(&cluster).await.expect("first connects");
    let _second = tls(&cluster).await.expect("second connects");
    let third = tokio::time::timeout(DEADLINE, tls(&cluster)).await.expect("answered within the deadline");
    assert!(third.is_err(), "a third connection got through the cap of 2");
    drop(first);
    poll("a slot is given back", || async { tls(&cluster).await.ok() }).await;
}

#[tokio::test]
async fn a_webhook_body_over_its_budget_gets_413_before_it_is_read() {
    let cluster = edge(|l| l.webhook_max_body_bytes = 4096).await;
    // Announced: refused on the headers, although the body never comes.
    let mut conn = tls(&cluster).await.unwrap();
    conn.write_all(
        b"POST /webhooks/mailgun/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n{",
    )
    .await
    .unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Chunked: cut at the budget, the rest never sent.
    let mut conn = tls(&cluster).await.unwrap();
    let chunk = "x".repeat(8192);
    let request = format!(
        "POST /webhooks/mailgun/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}

#[tokio::test]
async fn a_forged_mailgun_forward_is_refused_before_its_attachments_are_parsed() {
    let fake = FakeMailgun::start(common::KEY).await.unwrap();
    let mut provider = common::mailgun("mailgun", &fake, Duration::from_secs(5));
    if let ProviderConfig::Mailgun(c) = &mut provider {
        c.webhook_signing_key = Some(Secret::new("the-real-signing-key"));
    }
    let cluster = Cluster::start(vec![provider], true).await;
    let (http, base) = cluster.https_client();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // Signed with another key, and followed by an attachment that is never finished: were
    // the whole form parsed first, the answer would be 400 (malformed), not 401.
    let mut body = String::new();
    for (name, value) in [("timestamp", now.to_string()), ("token", "t".repeat(50)), ("signature", "ab".repeat(32))] {
        body.push_str(&format!("--XYZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str("--XYZ\r\nContent-Disposition: form-data; name=\"attachment-1\"; filename=\"big.bin\"\r\n\r\n");
    body.push_str(&"A".repeat(100_000));
    let answer = http
        .post(format!("{base}/webhooks/mailgun/inbound"))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("signature does not match"), "{text}");
}
