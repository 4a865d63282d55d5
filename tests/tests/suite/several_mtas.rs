//! One edge in front of two mta-servers (issue 19, "many nodes"): webmail and app-API
//! sends spread over both; one stops and every request still goes through the other; a
//! node that takes the connection and never answers costs one timeout, and the message
//! goes to the other flagged `possible_duplicate`; GetMessage through the edge finds a
//! message on either node, and says which node is unreachable when it cannot; the
//! status page shows each node with what its store report says; a provider's delivery
//! event posted to the edge reaches the node holding its message.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::config::Secret;
use bitmail_runtime::grpc::Bearer;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use client_api::config::{MtaNodeEntry, MtaNodeTable};
use common::{Cluster, Mta, Session, mailgun, sendgrid, sign_in};
use mta_server::config::ProviderConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn node(addr: impl std::fmt::Display, id: &str) -> MtaNodeEntry {
    MtaNodeEntry::Table(MtaNodeTable { url: format!("http://{addr}"), server_name: None, node_id: Some(id.into()) })
}

/// The cluster's mta-server is node `mta-1`.
async fn cluster(fake: &FakeSendGrid) -> Cluster {
    let providers = vec![sendgrid("sendgrid", fake, Duration::from_secs(5))];
    Cluster::start_with(providers, true, |c| c.tenants.node_id = "mta-1".into()).await
}

/// An edge over `nodes`, and a webmail session on it.
async fn edge_over(cluster: &Cluster, nodes: Vec<MtaNodeEntry>, name: &str) -> (Session, String) {
    let (http, base) = cluster
        .another_edge(|c| {
            c.mta_url = String::new();
            c.mta_urls = nodes;
            c.mta_timeout_ms = 1000;
        })
        .await;
    let (cookie, csrf) = sign_in(&http, &base, name, "a long password").await;
    let session = Session { http, base: base.clone(), cookie, csrf };
    (session, base)
}

/// An mta-server client with the admin key, to node `addr`.
fn mta_at(cluster: &Cluster, addr: SocketAddr) -> Mta {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
    MtaClient::with_interceptor(channel, Bearer::new(Some(&cluster.admin_key)).unwrap())
}

/// A key of tenant `default` that may send and read (for the app API).
async fn app_key(cluster: &Cluster) -> String {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.mta)).unwrap().connect_lazy();
    let mut admin = AdminClient::with_interceptor(channel, Bearer::new(Some(&cluster.admin_key)).unwrap());
    let request = pb::CreateKeyRequest {
        tenant: "default".into(),
        name: "app".into(),
        scopes: vec!["send".into(), "read".into()],
        expires_at_unix_ms: 0,
    };
    admin.create_key(request).await.unwrap().into_inner().secret
}

/// `POST /v3/mail/send` with `key`: the status and the message id.
async fn app_send(session: &Session, key: &str, to: &str) -> (StatusCode, String) {
    let body = json!({
        "personalizations": [{ "to": [{ "email": to }] }],
        "from": { "email": "ada@bitmail.test" }, "subject": "From the app",
        "content": [{ "type": "text/plain", "value": "Hello" }],
    });
    let url = format!("{}/v3/mail/send", session.base);
    let response = session.http.post(url).bearer_auth(key).json(&body).send().await.unwrap();
    let id = response.headers().get("x-message-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (response.status(), id)
}

/// `GET /app/v1/messages/{id}` with `key`.
async fn app_get(session: &Session, key: &str, id: &str) -> (StatusCode, Value) {
    let url = format!("{}/app/v1/messages/{id}", session.base);
    let response = session.http.get(url).bearer_auth(key).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A webmail send to `to`: the status and mta-server's id.
async fn webmail_send(session: &Session, to: &str) -> (StatusCode, String) {
    let (status, sent) = session.send(json!({ "to": to, "subject": "From the webmail", "markdown": "Hi" })).await;
    (status, sent["mta_id"].as_str().unwrap_or_default().to_owned())
}

/// Which of `nodes` has message `id` (asked directly).
async fn holder(nodes: &[Mta], id: &str) -> Option<usize> {
    for (i, mta) in nodes.iter().enumerate() {
        if mta.clone().get_message(pb::GetMessageRequest { message_id: id.into() }).await.is_ok() {
            return Some(i);
        }
    }
    None
}

/// A node's report in the store, as mta-server writes it: created under
/// `mta-node/<node_id>`, or updated when there is one already.
async fn put_report(cluster: &Cluster, node_id: &str, queued: u64, updated_ms: u64) {
    let mut store = cluster.store_client().await;
    let fields = HashMap::from([
        ("kind".to_owned(), "mta-node".to_owned()),
        ("node_id".to_owned(), node_id.to_owned()),
        ("queued".to_owned(), queued.to_string()),
        ("updated_ms".to_owned(), updated_ms.to_string()),
    ]);
    let subset = HashMap::from([("kind".to_owned(), "mta-node".to_owned()), ("node_id".to_owned(), node_id.into())]);
    let mut found = store
        .lookup(pb::LookupRequest { subset, limit: 1, page_token: String::new(), newest_first: false })
        .await
        .unwrap();
    if let Some(pb::LookupResponse { item: Some(pb::lookup_response::Item::Document(doc)) }) =
        found.get_mut().message().await.unwrap()
    {
        let update = pb::UpdateRequest { id: doc.id, fields, remove: vec![], expected_version: 0 };
        store.update(update).await.unwrap();
        return;
    }
    let create = pb::CreateRequest { unique_key: format!("mta-node/{node_id}"), fields };
    store.create(create).await.unwrap();
}

#[tokio::test]
async fn sends_spread_over_two_nodes_and_go_on_through_one_when_the_other_stops() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = cluster(&fake).await;
    let second = cluster
        .another_mta(|c| {
            c.tenants.node_id = "mta-2".into();
            c.shutdown_grace_secs = 1;
        })
        .await;
    let nodes = vec![node(cluster.mta, "mta-1"), node(second.addr, "mta-2")];
    let (ada, _) = edge_over(&cluster, nodes.clone(), "ada").await;
    let key = app_key(&cluster).await;

    let mut ids = Vec::new();
    for i in 0..4 {
        let (status, id) = webmail_send(&ada, &format!("w{i}@example.net")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "webmail send {i}");
        ids.push(id);
        let (status, id) = app_send(&ada, &key, &format!("a{i}@example.net")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "app send {i}");
        ids.push(id);
    }
    let direct = [mta_at(&cluster, cluster.mta), mta_at(&cluster, second.addr)];
    let mut on = [Vec::new(), Vec::new()];
    for id in &ids {
        on[holder(&direct, id).await.expect("on one node")].push(id.clone());
    }
    assert!(!on[0].is_empty() && !on[1].is_empty(), "spread over both: {on:?}");
    assert_eq!(on[0].len() + on[1].len(), 8);
    fake.wait_for(8, Duration::from_secs(20)).await;

    // GetMessage through the edge for a message on each node, and through an edge
    // that submitted neither (it asks every node).
    let (other, _) = edge_over(&cluster, nodes, "bob").await;
    for (n, id) in [(0, &on[0][0]), (1, &on[1][0])] {
        for edge in [&ada, &other] {
            let (status, body) = app_get(edge, &key, id).await;
            assert_eq!((status, body["state"].as_str()), (StatusCode::OK, Some("sent")), "node {n}: {body}");
        }
    }
    let (status, _) = app_get(&other, &key, "0190a0b0-0000-7000-8000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not on any node");

    second.stop().await;
    for i in 0..3 {
        let (status, id) = webmail_send(&ada, &format!("after-w{i}@example.net")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "webmail send {i} with mta-2 stopped");
        assert_eq!(holder(&direct[..1], &id).await, Some(0));
        let (status, id) = app_send(&ada, &key, &format!("after-a{i}@example.net")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "app send {i} with mta-2 stopped");
        assert_eq!(holder(&direct[..1], &id).await, Some(0));
    }
    fake.wait_for(14, Duration::from_secs(20)).await;

    // A message of the stopped node, asked of the edge that did not submit it: mta-1
    // does not have it and mta-2 cannot say, so it may be waiting there.
    let (status, body) = app_get(&other, &key, &on[1][0]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.to_string().contains("it may be waiting on mta-2"), "{body}");

    // The status page: both nodes, mta-2 unreachable with what its last report says.
    let now = bitmail_runtime::time::now_ms();
    put_report(&cluster, "mta-1", 0, now).await;
    put_report(&cluster, "mta-2", 37, now).await;
    let (status, page) = ada.get("/api/status").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let shown = page["nodes"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "{page}");
    assert_eq!((shown[0]["node_id"].as_str(), shown[0]["reachable"].as_bool()), (Some("mta-1"), Some(true)));
    assert_eq!((shown[1]["node_id"].as_str(), shown[1]["reachable"].as_bool()), (Some("mta-2"), Some(false)));
    assert_eq!((shown[1]["queued"].as_u64(), shown[1]["reporting"].as_bool()), (Some(37), Some(true)));
    let note = shown[1]["note"].as_str().unwrap();
    assert!(
        note.starts_with("node mta-2 unreachable since ") && note.ends_with(" UTC, 37 messages waiting there"),
        "{note}"
    );
    assert_eq!(page["unreachable_nodes"], json!(["mta-2"]), "{page}");
    assert_eq!(page["degraded"], false, "mta-1's providers can be tried: {page}");

    // A report older than 15 s: the node is not reporting.
    put_report(&cluster, "mta-2", 37, now - 60_000).await;
    let (_, page) = ada.get("/api/status").await;
    assert_eq!(page["nodes"][1]["reporting"], false, "{page}");
    assert!(page["nodes"][1]["note"].as_str().unwrap().contains("not reporting"), "{page}");
}

#[tokio::test]
async fn a_submit_whose_answer_never_comes_is_retried_on_the_other_node_flagged() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = cluster(&fake).await;
    // A node that takes every connection and never answers (a hung process).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    // The silent node first: the edge's first submission goes there.
    let (ada, _) = edge_over(&cluster, vec![node(silent_addr, "mta-9"), node(cluster.mta, "mta-1")], "ada").await;

    let started = std::time::Instant::now();
    let (status, id) = webmail_send(&ada, "carol@example.net").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(started.elapsed() >= Duration::from_millis(900), "it waited for mta-9 first");
    let mta = mta_at(&cluster, cluster.mta);
    let settled = common::status_until(&mta, &id, "sent", |s| s.state() == pb::DeliveryState::Sent).await;
    assert!(settled.possible_duplicate, "flagged: mta-9 may have it too");
    let received = fake.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received[0].body["personalizations"][0]["to"][0]["email"], "carol@example.net");

    // The webmail's Sent view says so once final.
    let seen = bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "the sent status with its flag",
        || ada.get("/api/folders/sent"),
        |(_, list)| list["messages"][0]["status"]["state"] == "sent",
    )
    .await;
    assert_eq!(seen.1["messages"][0]["status"]["possible_duplicate"], true, "{}", seen.1);

    // The next sends all go straight to mta-1: mta-9 comes last while it fails, and its
    // probes are health checks, never a user's request.
    let key = app_key(&cluster).await;
    let mut flagged = 0;
    for i in 0..3 {
        let (status, id) = app_send(&ada, &key, &format!("r{i}@example.net")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "app send {i}");
        let s = mta.clone().get_message(pb::GetMessageRequest { message_id: id }).await.unwrap().into_inner();
        flagged += usize::from(s.possible_duplicate);
    }
    assert_eq!(flagged, 0, "no later send waited for mta-9");
    fake.wait_for(4, Duration::from_secs(10)).await;
    let (_, page) = ada.get("/api/status").await;
    assert_eq!(page["nodes"][0]["reachable"], false, "{page}");
    assert!(page["nodes"][0]["note"].as_str().unwrap().starts_with("node mta-9 unreachable since"), "{page}");
    held.abort();
}

#[tokio::test]
async fn a_delivery_event_through_the_edge_reaches_the_node_that_holds_the_message() {
    const SIGNING: &str = "mailgun-webhook-signing-key";
    let fake = FakeMailgun::start(common::KEY).await.unwrap();
    let mut provider = mailgun("mailgun", &fake, Duration::from_secs(5));
    if let ProviderConfig::Mailgun(c) = &mut provider {
        c.webhook_signing_key = Some(Secret::new(SIGNING));
    }
    let cluster = Cluster::start_with(vec![provider], true, |c| c.tenants.node_id = "mta-1".into()).await;
    let second = cluster.another_mta(|c| c.tenants.node_id = "mta-2".into()).await;
    let (ada, base) = edge_over(&cluster, vec![node(cluster.mta, "mta-1"), node(second.addr, "mta-2")], "ada").await;
    let direct = [mta_at(&cluster, cluster.mta), mta_at(&cluster, second.addr)];
    let mut sent = Vec::new();
    for to in ["x@example.net", "y@example.net"] {
        let (status, id) = webmail_send(&ada, to).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let n = holder(&direct, &id).await.expect("on a node");
        common::status_until(&direct[n], &id, "sent", |s| s.state() == pb::DeliveryState::Sent).await;
        sent.push((n, id, to));
    }
    assert_ne!(sent[0].0, sent[1].0, "one message on each node");

    let event = |i: usize, kind: &str, id: &str, to: &str| {
        let ts = bitmail_runtime::time::now_ms() / 1000;
        let token = format!("tok-{i}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SIGNING.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, format!("{ts}{token}").as_bytes());
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let body = json!({
            "signature": { "timestamp": ts.to_string(), "token": token, "signature": hex },
            "event-data": {
                "event": kind, "id": format!("mg-ev-{i}"), "timestamp": ts as f64,
                "recipient": to, "user-variables": { "bitmail_id": id },
            },
        });
        let url = format!("{base}/webhooks/mailgun/events");
        ada.http.post(url).header("content-type", "application/json").body(body.to_string()).send()
    };
    for (i, (n, id, to)) in sent.iter().enumerate() {
        let response = event(i, "delivered", id, to).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.unwrap(), "stored 1, seen before 0\n", "stored by the node with {id}");
        let status = direct[*n].clone().get_message(pb::GetMessageRequest { message_id: id.clone() }).await;
        let events = status.unwrap().into_inner().events;
        assert_eq!(events.iter().map(|e| e.kind()).collect::<Vec<_>>(), [pb::EventKind::Delivered], "node {n}");
    }

    // mta-2 goes down. An event for mta-1's message is placed by mta-1 alone: 200, so a
    // node down for long does not hold back the others' events. One for mta-2's message
    // belongs to no node reached: 503, and the provider posts it again later.
    second.stop().await;
    let on = |node: usize| sent.iter().find(|(n, _, _)| *n == node).expect("a message on each node");
    let (_, id, to) = on(0);
    let response = event(10, "opened", id, to).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "mta-1's own event with mta-2 down");
    assert_eq!(response.text().await.unwrap(), "stored 1, seen before 0\n");
    let (_, id, to) = on(1);
    let response = event(11, "opened", id, to).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "mta-2's event with mta-2 down");
}
