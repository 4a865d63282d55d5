//! Delivery events by webhook, signed the way each provider signs (the test makes its
//! own keys): SendGrid's ECDSA over timestamp + body, Mailgun's HMAC over timestamp +
//! token. Valid events are stored once with their message and shown by GetMessage; a bad
//! or missing signature, a stale timestamp or a malformed body stores nothing; a hard
//! bounce suppresses the address for the next Submit.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::prelude::*;
use bitmail_proto::v1 as pb;
use bitmail_runtime::config::Secret;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, Mta, mailgun, sendgrid, settled, submission};
use mta_server::config::ProviderConfig;
use serde_json::json;

pub(crate) const MAILGUN_WEBHOOK_KEY: &str = "mailgun-webhook-signing-key";

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct Setup {
    cluster: Cluster,
    sendgrid_key: EcdsaKeyPair,
    _fakes: (FakeSendGrid, FakeMailgun),
}

async fn setup() -> Setup {
    setup_with(false).await
}

async fn setup_with(edge: bool) -> Setup {
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let mg = FakeMailgun::start(common::KEY).await.unwrap();
    let sendgrid_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let public = BASE64_STANDARD.encode(sendgrid_key.public_key().as_der().unwrap().as_ref());
    let t = Duration::from_secs(5);
    let mut sg_config = sendgrid("sendgrid", &sg, t);
    if let ProviderConfig::Sendgrid(c) = &mut sg_config {
        c.webhook_public_key = Some(public);
    }
    let mut mg_config = mailgun("mailgun", &mg, t);
    if let ProviderConfig::Mailgun(c) = &mut mg_config {
        c.webhook_signing_key = Some(Secret::new(MAILGUN_WEBHOOK_KEY));
    }
    let cluster = Cluster::start_with(vec![sg_config, mg_config], edge, |c| {
        c.scheduler = mta_server::config::SchedulerKind::Priority;
    })
    .await;
    Setup { cluster, sendgrid_key, _fakes: (sg, mg) }
}

fn sendgrid_webhook(key: &EcdsaKeyPair, timestamp: u64, body: &[u8]) -> pb::WebhookRequest {
    let mut signed = timestamp.to_string().into_bytes();
    signed.extend_from_slice(body);
    let signature = key.sign(&SystemRandom::new(), &signed).unwrap();
    pb::WebhookRequest {
        provider: "sendgrid".into(),
        headers: vec![
            pb::Header {
                name: "X-Twilio-Email-Event-Webhook-Signature".into(),
                value: BASE64_STANDARD.encode(signature.as_ref()),
            },
            pb::Header { name: "X-Twilio-Email-Event-Webhook-Timestamp".into(), value: timestamp.to_string() },
        ],
        body: body.to_vec(),
        kind: pb::WebhookKind::Events as i32,
    }
}

pub(crate) fn mailgun_webhook(
    signing_key: &str,
    timestamp: u64,
    token: &str,
    event: serde_json::Value,
) -> pb::WebhookRequest {
    let key = hmac::Key::new(hmac::HMAC_SHA256, signing_key.as_bytes());
    let tag = hmac::sign(&key, format!("{timestamp}{token}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let body = json!({
        "signature": { "timestamp": timestamp.to_string(), "token": token, "signature": hex },
        "event-data": event,
    });
    pb::WebhookRequest { provider: "mailgun".into(), body: body.to_string().into_bytes(), ..Default::default() }
}

async fn sent(mta: &mut Mta, to: &str) -> String {
    let id = mta.submit(submission(to)).await.unwrap().into_inner().message_id;
    assert_eq!(settled(mta, &id, Duration::from_secs(10)).await.state(), pb::DeliveryState::Sent);
    id
}

async fn events(mta: &mut Mta, id: &str) -> Vec<pb::DeliveryEvent> {
    mta.get_message(pb::GetMessageRequest { message_id: id.into() }).await.unwrap().into_inner().events
}

#[tokio::test]
async fn sendgrid_events_are_verified_stored_once_and_shown_with_the_message() {
    let s = setup().await;
    let mut mta = s.cluster.mta_client().await;
    let id = sent(&mut mta, "bob@example.net").await;
    let ts = now_secs();
    let body = json!([
        {"email": "Bob@example.net", "timestamp": ts, "event": "processed", "sg_event_id": "ev-1", "bitmail_id": id},
        {"email": "bob@example.net", "timestamp": ts + 1, "event": "delivered", "sg_event_id": "ev-2", "bitmail_id": id, "response": "250 OK"},
        {"email": "x@example.net", "timestamp": ts, "event": "delivered", "sg_event_id": "ev-3"},
    ])
    .to_string()
    .into_bytes();

    let answer = mta.receive_webhook(sendgrid_webhook(&s.sendgrid_key, ts, &body)).await.unwrap().into_inner();
    assert_eq!((answer.http_status, answer.stored, answer.duplicates), (200, 2, 0), "{answer:?}");
    let got = events(&mut mta, &id).await;
    let kinds: Vec<_> = got.iter().map(|e| (e.kind(), e.recipient.as_str(), e.provider_event_id.as_str())).collect();
    assert_eq!(
        kinds,
        [(pb::EventKind::Accepted, "bob@example.net", "ev-1"), (pb::EventKind::Delivered, "bob@example.net", "ev-2")]
    );
    assert_eq!(got[1].detail, "250 OK");
    assert_eq!(got[1].at_unix_ms, (ts as i64 + 1) * 1000);

    // Delivered twice (SendGrid retries): stored once.
    let again = mta.receive_webhook(sendgrid_webhook(&s.sendgrid_key, ts, &body)).await.unwrap().into_inner();
    assert_eq!((again.http_status, again.stored, again.duplicates), (200, 0, 2));
    assert_eq!(events(&mut mta, &id).await.len(), 2);

    // A body changed after signing, a key that is not SendGrid's, no signature, a stale
    // timestamp: 401 and nothing stored.
    let other_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let fresh_body = json!([{"email": "bob@example.net", "timestamp": ts, "event": "open", "sg_event_id": "ev-9", "bitmail_id": id}])
        .to_string()
        .into_bytes();
    let mut tampered = sendgrid_webhook(&s.sendgrid_key, ts, &fresh_body);
    tampered.body = fresh_body.iter().map(|b| if *b == b'9' { b'8' } else { *b }).collect();
    let mut unsigned = sendgrid_webhook(&s.sendgrid_key, ts, &fresh_body);
    unsigned.headers.remove(0);
    for (what, request) in [
        ("tampered", tampered),
        ("wrong key", sendgrid_webhook(&other_key, ts, &fresh_body)),
        ("unsigned", unsigned),
        ("stale", sendgrid_webhook(&s.sendgrid_key, ts - 3600, &fresh_body)),
    ] {
        let answer = mta.receive_webhook(request).await.unwrap().into_inner();
        assert_eq!(answer.http_status, 401, "{what}: {answer:?}");
        assert!(answer.message.starts_with("signature: "), "{what}: {}", answer.message);
    }
    // Signed but not JSON: 400.
    let answer = mta.receive_webhook(sendgrid_webhook(&s.sendgrid_key, ts, b"[{not json")).await.unwrap().into_inner();
    assert_eq!(answer.http_status, 400, "{answer:?}");
    assert_eq!(events(&mut mta, &id).await.len(), 2, "nothing more was stored");

    // A provider with no webhook key, or none of that name: 404.
    for provider in ["nobody", ""] {
        let request = pb::WebhookRequest { provider: provider.into(), ..sendgrid_webhook(&s.sendgrid_key, ts, &body) };
        assert_eq!(mta.receive_webhook(request).await.unwrap().into_inner().http_status, 404);
    }
}

#[tokio::test]
async fn a_mailgun_hard_bounce_suppresses_the_address_until_removed() {
    let s = setup().await;
    let mut mta = s.cluster.mta_client().await;
    let id = sent(&mut mta, "gone@example.net").await;
    let ts = now_secs();
    let bounce = json!({
        "event": "failed", "severity": "permanent", "id": "mg-ev-1", "timestamp": ts as f64 + 0.25,
        "recipient": "gone@example.net", "user-variables": {"bitmail_id": id},
        "delivery-status": {"code": 550, "message": "5.1.1 mailbox unavailable", "description": ""},
    });
    let answer = mta.receive_webhook(mailgun_webhook(MAILGUN_WEBHOOK_KEY, ts, "tok-1", bounce.clone())).await.unwrap();
    assert_eq!(answer.into_inner().stored, 1);
    let got = events(&mut mta, &id).await;
    assert_eq!(
        (got[0].kind(), got[0].permanent, got[0].at_unix_ms),
        (pb::EventKind::Bounced, true, ts as i64 * 1000 + 250)
    );

    // The next message to that address is refused, saying why.
    let request = pb::SubmitRequest { cc: vec!["GONE@example.net".into()], ..submission("ok@example.net") };
    let e = mta.submit(request.clone()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("cc[0]: gone@example.net is suppressed (hard bounce: 5.1.1 mailbox unavailable, until "),
        "{}",
        e.message()
    );
    let list = mta.list_suppressions(pb::ListSuppressionsRequest::default()).await.unwrap().into_inner();
    assert_eq!(list.suppressions.len(), 1);
    assert_eq!(list.suppressions[0].source, "mailgun event mg-ev-1");
    assert!(list.suppressions[0].expires_unix_ms > list.suppressions[0].created_unix_ms);

    // The same token for another event is a replay; a wrong key or a stale timestamp is refused.
    let other = json!({"event": "opened", "id": "mg-ev-2", "timestamp": ts, "recipient": "gone@example.net", "user-variables": {"bitmail_id": id}});
    for (what, request, status) in [
        ("replay", mailgun_webhook(MAILGUN_WEBHOOK_KEY, ts, "tok-1", other.clone()), 401),
        ("wrong key", mailgun_webhook("the-api-key", ts, "tok-2", other.clone()), 401),
        ("stale", mailgun_webhook(MAILGUN_WEBHOOK_KEY, ts - 3600, "tok-3", other.clone()), 401),
        ("same event again", mailgun_webhook(MAILGUN_WEBHOOK_KEY, ts, "tok-1", bounce), 200),
    ] {
        let answer = mta.receive_webhook(request).await.unwrap().into_inner();
        assert_eq!((answer.http_status, answer.stored), (status, 0), "{what}: {answer:?}");
    }
    assert_eq!(events(&mut mta, &id).await.len(), 1);

    // Removed by an operator: the address can be sent to again.
    mta.remove_suppression(pb::RemoveSuppressionRequest { address: "Gone@example.net".into(), ..Default::default() })
        .await
        .unwrap();
    let e = mta
        .remove_suppression(pb::RemoveSuppressionRequest { address: "gone@example.net".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    mta.submit(request).await.unwrap();

    // An operator's own entry, with a bad address refused.
    let added = mta
        .add_suppression(pb::Suppression { address: "Spam Trap <trap@example.net>".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (added.address.as_str(), added.source.as_str(), added.expires_unix_ms),
        ("trap@example.net", "operator", 0)
    );
    let e = mta
        .add_suppression(pb::Suppression { address: "not an address".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn the_https_edge_forwards_webhooks_untouched_and_passes_the_answer_on() {
    let s = setup_with(true).await;
    let mut mta = s.cluster.mta_client().await;
    let id = sent(&mut mta, "bob@example.net").await;
    let (client, base) = s.cluster.https_client();
    let url = format!("{base}/webhooks/sendgrid/events");
    let ts = now_secs();
    // Bytes exactly as signed, with spacing a re-serialization would lose.
    let body = format!(r#"[ {{"email":"bob@example.net", "timestamp":{ts},"event":"delivered","sg_event_id":"e1","bitmail_id":"{id}"}} ]"#)
        .into_bytes();
    let post = |request: pb::WebhookRequest| {
        let mut builder = client.post(&url).header("content-type", "application/json");
        for h in &request.headers {
            builder = builder.header(&h.name, &h.value);
        }
        builder.body(request.body).send()
    };

    let response = post(sendgrid_webhook(&s.sendgrid_key, ts, &body)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "stored 1, seen before 0\n");
    assert_eq!(events(&mut mta, &id).await[0].kind(), pb::EventKind::Delivered);

    let mut forged = sendgrid_webhook(&s.sendgrid_key, ts, &body);
    forged.headers[0].value = BASE64_STANDARD.encode(b"not a signature");
    let response = post(forged).await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().starts_with("signature: "));

    let response = client.post(format!("{base}/webhooks/nobody/events")).body("[]").send().await.unwrap();
    assert_eq!(response.status(), 404);
    let big = vec![b' '; 12 * 1024 * 1024];
    let response = post(sendgrid_webhook(&s.sendgrid_key, ts, &big)).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(events(&mut mta, &id).await.len(), 1);
}

/// The webmail keeps a sent message's final status and the providers' later events in
/// its own document: they show from another edge whose mta-server is unreachable, and a
/// message whose status mta-server cannot give shows its last known state, marked
/// degraded, instead of an error.
#[tokio::test]
async fn the_webmail_keeps_final_statuses_and_events_and_shows_what_it_knows_when_mta_cannot_say() {
    use common::{Session, sign_in};
    use reqwest::StatusCode;

    let s = setup_with(true).await;
    let ada = Session::new(&s.cluster, "ada").await;
    let (status, answer) = ada.send(json!({ "to": "bob@example.net", "subject": "kept", "text": "hi" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let (_, sent) = ada.get("/api/folders/sent").await;
    let mail_id = sent["messages"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/mail/{mail_id}");
    let opened = bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "sent",
        || ada.get(&path),
        |(_, m)| m["status"]["state"] == "sent",
    )
    .await
    .1;
    let mta_id = opened["status"]["mta_id"].as_str().unwrap().to_owned();

    // SendGrid reports the delivery afterwards: the webmail's document gets it.
    let ts = now_secs();
    let body = json!([{"email": "bob@example.net", "timestamp": ts, "event": "delivered", "sg_event_id": "kept-1",
                       "bitmail_id": mta_id, "response": "250 2.0.0 OK"}])
    .to_string()
    .into_bytes();
    let mut mta = s.cluster.mta_client().await;
    let answer = mta.receive_webhook(sendgrid_webhook(&s.sendgrid_key, ts, &body)).await.unwrap().into_inner();
    assert_eq!(answer.stored, 1, "{answer:?}");
    let mut store = s.cluster.store_client().await;
    let doc = bitmail_tests::eventually::eventually(
        Duration::from_secs(10),
        "the event in the mail document",
        || {
            let mut store = store.clone();
            let id = mail_id.clone();
            async move { store.get(pb::GetRequest { id }).await.unwrap().into_inner().fields }
        },
        |fields| fields.get("events").is_some_and(|e| e.contains("delivered")),
    )
    .await;
    assert_eq!(doc["state"], "sent");
    assert_eq!(doc["provider"], "sendgrid");

    // A message whose status mta-server no longer keeps (or never had).
    let mut forgotten: std::collections::HashMap<String, String> = doc.clone();
    forgotten.insert("mta_id".into(), "forgotten-id".into());
    for key in ["state", "provider", "provider_message_id", "error", "events", "possible_duplicate"] {
        forgotten.remove(key);
    }
    let forgotten_id = store.put(pb::PutRequest { fields: forgotten }).await.unwrap().into_inner().id;
    let (status, shown) = ada.get(&format!("/api/mail/{forgotten_id}")).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"]["degraded"], true);
    assert_eq!(shown["status"]["state"], "queued");
    assert!(shown["status"]["note"].as_str().unwrap().contains("no longer keeps"), "{shown}");

    // Another edge whose mta-server cannot be reached.
    let (http, base) = s.cluster.another_edge(|c| c.mta_url = "http://127.0.0.1:9".into()).await;
    let (cookie, csrf) = sign_in(&http, &base, "ada", "a long password").await;
    let cut_off = Session { http, base, cookie, csrf };
    let (status, shown) = cut_off.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["status"]["state"], "sent");
    assert_eq!(shown["status"]["provider"], "sendgrid");
    assert_eq!(shown["status"]["events"][0]["kind"], "delivered");
    assert_eq!(shown["status"]["events"][0]["detail"], "250 2.0.0 OK");
    let (status, shown) = cut_off.get(&format!("/api/mail/{forgotten_id}")).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert!(shown["status"]["note"].as_str().unwrap().contains("cannot be reached"), "{shown}");
    let (status, list) = cut_off.get("/api/folders/sent").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2);
}
