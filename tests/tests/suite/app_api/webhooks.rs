//! Webhooks to the apps: registered with the app's key, every event of its messages
//! POSTed signed, in order per message, again after the app was down, and once per
//! event id; URLs the deployment forbids are refused.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::prelude::*;
use bitmail_proto::v1 as pb;
use reqwest::Client;
use serde_json::{Value, json};

use super::App;

/// An app's webhook receiver: down (503) until told otherwise; checks each request's
/// signature with the secret it is given and keeps the events of the good ones.
#[derive(Default)]
struct Receiver {
    up: AtomicBool,
    refused: AtomicUsize,
    bad_signatures: AtomicUsize,
    secrets: Mutex<Vec<(String, String)>>,
    bodies: Mutex<Vec<(String, Value)>>,
    /// The SendGrid-style signature, timestamp and raw body of each accepted request.
    twilio: Mutex<Vec<(String, String, String)>>,
}

impl Receiver {
    fn secret_of(&self, path: &str) -> Option<String> {
        self.secrets.lock().unwrap().iter().find(|(p, _)| p == path).map(|(_, s)| s.clone())
    }

    fn verified(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> bool {
        let Some(secret) = self.secret_of(path) else { return false };
        let header = headers.get("x-bitmail-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let Some((t, v1)) = header.strip_prefix("t=").and_then(|rest| rest.split_once(",v1=")) else { return false };
        let fresh = t.parse::<u64>().is_ok_and(|t| t.abs_diff(bitmail_runtime::time::now_ms() / 1000) < 300);
        let tag: Option<Vec<u8>> =
            (0..v1.len()).step_by(2).map(|i| u8::from_str_radix(v1.get(i..i + 2)?, 16).ok()).collect();
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        fresh && tag.is_some_and(|tag| hmac::verify(&key, &signed, &tag).is_ok())
    }

    fn bodies(&self, path: &str) -> Vec<Value> {
        self.bodies.lock().unwrap().iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
    }
}

async fn hook(State(r): State<Arc<Receiver>>, Path(path): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !r.up.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !r.verified(&path, &headers, &body) {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if path == "sg" {
        let (signature, timestamp) =
            (header("x-twilio-email-event-webhook-signature"), header("x-twilio-email-event-webhook-timestamp"));
        r.twilio.lock().unwrap().push((signature, timestamp, String::from_utf8(body.to_vec()).unwrap()));
    }
    r.bodies.lock().unwrap().push((path, serde_json::from_slice(&body).unwrap()));
    StatusCode::OK
}

async fn start_receiver() -> (Arc<Receiver>, String) {
    let receiver = Arc::new(Receiver::default());
    let app = axum::Router::new().route("/{path}", axum::routing::post(hook)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, base)
}

/// A SendGrid Event Webhook request signed as SendGrid signs it.
fn provider_event(key: &EcdsaKeyPair, body: &[u8]) -> pb::WebhookRequest {
    let timestamp = (bitmail_runtime::time::now_ms() / 1000).to_string();
    let mut signed = timestamp.clone().into_bytes();
    signed.extend_from_slice(body);
    let signature = key.sign(&SystemRandom::new(), &signed).unwrap();
    let header = |name: &str, value: String| pb::Header { name: name.into(), value };
    pb::WebhookRequest {
        provider: "sendgrid".into(),
        headers: vec![
            header("X-Twilio-Email-Event-Webhook-Signature", BASE64_STANDARD.encode(signature.as_ref())),
            header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp),
        ],
        body: body.to_vec(),
        kind: pb::WebhookKind::Events as i32,
    }
}

async fn call(app: &App, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (http, base): (Client, String) = app.cluster.https_client();
    let mut request = http.request(method, format!("{base}{path}")).bearer_auth(&app.key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn signed_events_reach_the_apps_webhooks_in_order_and_once_after_the_app_was_down() {
    // The provider's own event webhook is signed with a key of the test's.
    let provider_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let public = BASE64_STANDARD.encode(provider_key.public_key().as_der().unwrap().as_ref());
    let app = App::start_with(|c| {
        c.outbox.allow_private_urls = true;
        c.outbox.retry_initial_ms = 100;
        c.outbox.retry_max_ms = 400;
        if let mta_server::config::ProviderConfig::Sendgrid(p) = &mut c.providers[0] {
            p.webhook_public_key = Some(public);
        }
    })
    .await;
    let (receiver, base) = start_receiver().await;
    let mut sendgrid_public_key = String::new();
    for (path, format) in [("bitmail", "bitmail"), ("sg", "sendgrid")] {
        let body = json!({ "url": format!("{base}/{path}"), "format": format });
        let (status, created) = call(&app, reqwest::Method::POST, "/app/v1/webhooks", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let secret = created["secret"].as_str().unwrap().to_owned();
        receiver.secrets.lock().unwrap().push((path.to_owned(), secret));
        if format == "sendgrid" {
            sendgrid_public_key = created["public_key"].as_str().expect("a verification key").to_owned();
        }
    }

    let answer = app.sdk("sendgrid_rich", json!({})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let ids = answer.ids();
    for id in &ids {
        app.delivered(id).await;
        let sent = || async { app.status(id).await.state() };
        bitmail_tests::eventually::eventually(Duration::from_secs(10), "sent", sent, |s| *s == pb::DeliveryState::Sent)
            .await;
    }
    // SendGrid reports the first delivered: the app hears of that too.
    let delivered = json!([{ "email": "bob@example.net", "timestamp": bitmail_runtime::time::now_ms() / 1000,
        "event": "delivered", "sg_event_id": "sg-e-1", "bitmail_id": ids[0] }]);
    let stored = app
        .cluster
        .mta_client_with(Some(&app.cluster.service_key))
        .await
        .receive_webhook(provider_event(&provider_key, delivered.to_string().as_bytes()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stored.http_status, stored.stored), (200, 1), "{stored:?}");
    // The app is down for a few attempts, then comes back.
    bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "refused a few times",
        || async { receiver.refused.load(Ordering::SeqCst) },
        |n| *n >= 4,
    )
    .await;
    receiver.up.store(true, Ordering::SeqCst);

    let events = bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "every event at the app",
        || async {
            receiver.bodies("bitmail").iter().flat_map(|b| b["events"].as_array().cloned().unwrap()).collect::<Vec<_>>()
        },
        |events| events.len() >= 5,
    )
    .await;
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let mut seen = std::collections::HashSet::new();
    assert!(events.iter().all(|e| seen.insert(e["id"].as_str().unwrap().to_owned())), "once per event id: {events:#?}");
    for (id, expected) in ids.iter().zip([&["queued", "sent", "delivered"][..], &["queued", "sent"]]) {
        let of: Vec<&str> =
            events.iter().filter(|e| e["message_id"] == id.as_str()).map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(of, expected, "in order, for {id}: {events:#?}");
    }
    let provider = events.iter().find(|e| e["event"] == "delivered").unwrap();
    assert_eq!(
        (provider["source"].as_str(), provider["recipient"].as_str()),
        (Some("sendgrid"), Some("bob@example.net"))
    );
    let users: Vec<&str> = events.iter().filter_map(|e| e["metadata"]["user"].as_str()).collect();
    assert!(users.contains(&"bob") && users.contains(&"eve"), "the app's custom_args name each: {events:#?}");

    // SendGrid's Event Webhook shape for the other: `processed`, custom args at the top.
    let sg = bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "the SendGrid-shaped delivered",
        || async { receiver.bodies("sg").iter().flat_map(|b| b.as_array().cloned().unwrap()).collect::<Vec<_>>() },
        |events| events.len() >= 3,
    )
    .await;
    let names: Vec<&str> = sg.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["processed", "processed", "delivered"], "{sg:#?}");
    assert!(sg.iter().all(|e| e["sg_message_id"].is_string() && e["bitmail_id"].is_string()), "{sg:#?}");
    assert!(sg.iter().any(|e| e["user"] == "bob"), "{sg:#?}");
    // SendGrid's own SDK verifies their signature with the webhook's public key.
    let signed = receiver.twilio.lock().unwrap().clone();
    assert!(!signed.is_empty());
    for (signature, timestamp, payload) in signed {
        let args = json!({ "public_key": sendgrid_public_key, "signature": signature, "timestamp": timestamp, "payload": payload });
        let verified = app.sdk("sendgrid_verify_event", args).await;
        assert_eq!(verified.status, 200, "SendGrid's EventWebhook helper refused it: {verified:?}");
    }
    let forged = json!({ "public_key": sendgrid_public_key, "signature": BASE64_STANDARD.encode([0u8; 70]),
                         "timestamp": "1", "payload": "[]" });
    assert_eq!(app.sdk("sendgrid_verify_event", forged).await.status, 401, "the helper can fail");

    // Nothing more comes (a moment later), and the listing shows how it went.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let total: usize = receiver.bodies("bitmail").iter().map(|b| b["events"].as_array().unwrap().len()).sum();
    assert_eq!(total, events.len(), "no event delivered twice");
    let (status, listed) = call(&app, reqwest::Method::GET, "/app/v1/webhooks", None).await;
    assert_eq!(status, StatusCode::OK);
    let mine = listed["webhooks"].as_array().unwrap().iter().find(|w| w["format"] == "bitmail").cloned().unwrap();
    assert_eq!(
        (mine["delivery"]["delivered"].as_u64(), mine["delivery"]["failures"].as_u64()),
        (Some(5), Some(0)),
        "{mine}"
    );
    assert_eq!(mine["delivery"]["last_status"], 200);
    assert!(mine.get("secret").is_none(), "the secret is shown once");

    let (status, _) =
        call(&app, reqwest::Method::DELETE, &format!("/app/v1/webhooks/{}", mine["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = call(&app, reqwest::Method::GET, "/app/v1/webhooks", None).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn webhook_urls_that_the_deployment_forbids_are_refused() {
    let app = App::start().await;
    for url in
        ["http://example.org/hook", "https://127.0.0.1/hook", "https://10.0.0.8/hook", "https://[::1]/x", "not a url"]
    {
        let (status, body) = call(&app, reqwest::Method::POST, "/app/v1/webhooks", Some(json!({ "url": url }))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().starts_with("url:"), "{url}: {body}");
    }
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/app/v1/webhooks",
        Some(json!({ "url": "https://93.184.215.14/h", "format": "xml" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, listed) = call(&app, reqwest::Method::GET, "/app/v1/webhooks", None).await;
    assert_eq!(listed["webhooks"], json!([]));
}

/// An mta-server on `config`, serving until `stop` fires; the handle ends when it has
/// stopped (its spool closed).
async fn mta_until(
    config: &mta_server::config::Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    // The writer thread of a stopped server may hold the spool for an instant.
    let mut tries = 0;
    let server = loop {
        match mta_server::server::Server::bind(config).await {
            Ok(server) => break server,
            Err(e) if tries < 50 => {
                tries += 1;
                tracing::debug!(error = %e, "mta-server not bound yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("mta-server binds: {e}"),
        }
    };
    let addr = server.local_addr().unwrap();
    let mut stop = stop;
    let handle = tokio::spawn(async move {
        server
            .serve(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
    });
    (addr, handle)
}

#[tokio::test]
async fn a_restart_of_mta_server_while_the_app_is_down_loses_no_event() {
    use bitmail_runtime::grpc::Bearer;

    let dir = std::env::temp_dir().join(format!("bitmail-outbox-{}-{}", std::process::id(), fastrand::u64(..)));
    let backend_config = backend_server::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        engine: backend_server::config::Engine::Memory,
        ..Default::default()
    };
    let backend = backend_server::server::Server::bind(&backend_config).await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (stop_all, all) = tokio::sync::watch::channel(false);
    let mut all_rx = all.clone();
    tokio::spawn(backend.serve(async move {
        let _ = all_rx.wait_for(|s| *s).await;
    }));
    let fake = bitmail_tests::sendgrid::FakeSendGrid::start(crate::common::KEY).await.unwrap();
    let mut config = mta_server::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        providers: vec![crate::common::sendgrid("sendgrid", &fake, Duration::from_secs(5))],
        ..Default::default()
    };
    config.spool.path = dir.join("spool.redb");
    config.spool.cache_bytes = 4 << 20;
    config.tenants.store = format!("http://{backend_addr}");
    config.tenants.default_domains = vec!["bitmail.test".into()];
    config.outbox.allow_private_urls = true;
    config.outbox.retry_initial_ms = 100;
    config.outbox.retry_max_ms = 300;
    let args = mta_server::tenancy::CreateKey {
        config: None,
        tenant: "default".into(),
        scopes: vec!["admin".into()],
        name: "test".into(),
        expires_days: None,
    };
    let key = mta_server::tenancy::create_key(args, &config).await.unwrap();

    let (receiver, base) = start_receiver().await;
    let (stop_first, first_rx) = tokio::sync::watch::channel(false);
    let (addr, first) = mta_until(&config, first_rx).await;
    let client = |addr: std::net::SocketAddr| {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect_lazy();
        bitmail_proto::v1::mta_client::MtaClient::with_interceptor(channel, Bearer::new(Some(&key)).unwrap())
    };
    let mut mta = client(addr);
    let request =
        pb::CreateWebhookRequest { url: format!("{base}/hook"), format: String::new(), tenant: String::new() };
    let created = mta.create_webhook(request).await.unwrap().into_inner();
    receiver.secrets.lock().unwrap().push(("hook".into(), created.secret));
    let mut ids = Vec::new();
    for i in 0..3 {
        let mut submission = crate::common::submission(&format!("r{i}@example.net"));
        submission.metadata = [("n".to_owned(), i.to_string())].into();
        ids.push(mta.submit(submission).await.unwrap().into_inner().message_id);
    }
    fake.wait_for(3, Duration::from_secs(10)).await;
    for id in &ids {
        let state = || {
            let mut mta = mta.clone();
            async move {
                mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner().state()
            }
        };
        bitmail_tests::eventually::eventually(Duration::from_secs(10), "sent", state, |s| {
            *s == pb::DeliveryState::Sent
        })
        .await;
    }
    bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "refused while down",
        || async { receiver.refused.load(Ordering::SeqCst) },
        |n| *n >= 2,
    )
    .await;

    // mta-server stops, the app comes back, mta-server starts again on the same spool.
    stop_first.send(true).unwrap();
    first.await.unwrap();
    receiver.up.store(true, Ordering::SeqCst);
    let (_stop_second, second_rx) = tokio::sync::watch::channel(false);
    let (_addr, _second) = mta_until(&config, second_rx).await;

    let events = bitmail_tests::eventually::eventually(
        Duration::from_secs(15),
        "every event after the restart",
        || async {
            receiver.bodies("hook").iter().flat_map(|b| b["events"].as_array().cloned().unwrap()).collect::<Vec<_>>()
        },
        |events| events.len() >= 6,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all_events: Vec<Value> =
        receiver.bodies("hook").iter().flat_map(|b| b["events"].as_array().cloned().unwrap()).collect();
    assert_eq!(all_events.len(), events.len(), "nothing twice");
    for (i, id) in ids.iter().enumerate() {
        let of: Vec<&Value> = events.iter().filter(|e| e["message_id"] == id.as_str()).collect();
        let names: Vec<&str> = of.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(names, ["queued", "sent"], "{id}: {events:#?}");
        assert!(of.iter().all(|e| e["metadata"]["n"].as_str().and_then(|n| n.parse().ok()) == Some(i)), "{events:#?}");
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let _ = stop_all.send(true);
    let _ = std::fs::remove_dir_all(&dir);
}
