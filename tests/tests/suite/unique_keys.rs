//! The store's unique keys at the edge, through client-api's real HTTPS listener, over a
//! store that fails or holds writes on request (`bitmail_tests::faulty_store`): first
//! sign-ins racing with one name make one account, with no clean-up to rely on; received
//! mail is stored whole or not at all, so a provider's retry after a failure midway stores
//! the complete message, once; two deliveries racing store it once and leave nothing
//! behind.

use crate::common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use backend_server::memory::MemoryStore;
use base64::prelude::*;
use bitmail_proto::v1 as pb;
use bitmail_runtime::config::Secret;
use bitmail_tests::faulty_store::FaultyStore;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, Session, sendgrid};
use mta_server::config::ProviderConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

const INBOUND_PASSWORD: &str = "inbound-parse-password";
const REPORT: &[u8] = b"%PDF-1.4 the whole report";

/// Every document holding `subset`, read straight from backend-server.
async fn documents(cluster: &Cluster, subset: &[(&str, &str)]) -> Vec<pb::Document> {
    let request = pb::LookupRequest {
        subset: subset.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        limit: 1000,
        page_token: String::new(),
        newest_first: false,
    };
    let mut stream = cluster.store_client().await.lookup(request).await.unwrap().into_inner();
    let mut docs = Vec::new();
    while let Some(item) = stream.message().await.unwrap() {
        if let Some(pb::lookup_response::Item::Document(d)) = item.item {
            docs.push(d);
        }
    }
    docs
}

/// Signs in as `name` from eight client addresses at once, the i-th with `passwords(i)`;
/// answers each status with the password it used.
async fn eight_first_sign_ins(
    cluster: &Cluster,
    name: &str,
    passwords: fn(usize) -> &'static str,
) -> Vec<(StatusCode, &'static str)> {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            // One address each: the edge limits sign-ins and sign-ups per address.
            let (http, base) = cluster.https_client_from(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i as u8))));
            let (name, password) = (name.to_owned(), passwords(i));
            tokio::spawn(async move {
                let body = json!({ "name": name, "password": password });
                let response = http.post(format!("{base}/api/session")).json(&body).send().await.unwrap();
                (response.status(), password)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sign_ins_racing_with_one_name_make_one_account() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let cluster = Cluster::start_edge_over(faulty.clone(), vec![]).await;
    // Every sign-in has looked for the name (and found none) before any account is
    // written: the eight reach the store together. And the store cannot delete users
    // now, so an account made in excess, to be removed again, would stay.
    faulty.hold_writes_of("user", 8);
    faulty.fail_deletes_of("user", 8);

    // One person, eight tabs: one account, and every tab signed in to it.
    let answers = eight_first_sign_ins(&cluster, "zoe", |_| "one long password").await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::OK), "{answers:?}");
    let users = documents(&cluster, &[("kind", "user"), ("name", "zoe")]).await;
    assert_eq!(users.len(), 1, "one account for zoe, not {}", users.len());
    let sessions = documents(&cluster, &[("kind", "session"), ("name", "zoe")]).await;
    assert_eq!(sessions.len(), 8);
    assert!(sessions.iter().all(|s| s.fields["user_id"] == users[0].id), "every session is the one account's");

    // Two people choosing one name at once: the first account stands, and only its
    // password signs in; the others get the answer of a wrong password.
    faulty.hold_writes_of("user", 8);
    let answers =
        eight_first_sign_ins(&cluster, "yan", |i| if i % 2 == 0 { "password of one" } else { "password of two" }).await;
    let users = documents(&cluster, &[("kind", "user"), ("name", "yan")]).await;
    assert_eq!(users.len(), 1, "one account for yan, not {}", users.len());
    let won: Vec<&str> = answers.iter().filter(|(s, _)| *s == StatusCode::OK).map(|(_, p)| *p).collect();
    assert_eq!(won.len(), 4, "the four with the winner's password sign in: {answers:?}");
    assert!(won.iter().all(|p| *p == won[0]), "{answers:?}");
    for (status, password) in &answers {
        if *password != won[0] {
            assert_eq!(*status, StatusCode::UNAUTHORIZED, "{answers:?}");
        }
    }
}

/// A cluster whose backend-server serves a store that fails on request, a SendGrid
/// Inbound Parse endpoint, and ada signed in.
async fn inbound_setup() -> (Cluster, Arc<FaultyStore>, Session, FakeSendGrid) {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let mut config = sendgrid("sendgrid", &fake, Duration::from_secs(5));
    if let ProviderConfig::Sendgrid(c) = &mut config {
        c.inbound_password = Some(Secret::new(INBOUND_PASSWORD));
    }
    let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let cluster = Cluster::start_edge_over(faulty.clone(), vec![config]).await;
    let ada = Session::new(&cluster, "ada").await;
    (cluster, faulty, ada, fake)
}

/// Posts what SendGrid's Inbound Parse posts for one message to ada: a text body and a
/// PDF attachment (one chunk document).
async fn deliver(cluster: &Cluster) -> (StatusCode, String) {
    let pdf = BASE64_STANDARD.encode(REPORT);
    let raw = format!(
        "From: Carol <carol@example.net>\r\nTo: Ada <ada@bitmail.test>\r\nSubject: The report\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <report-1@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n\
         --b\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n{pdf}\r\n--b--\r\n"
    );
    let form = reqwest::multipart::Form::new()
        .text("email", raw)
        .text("envelope", r#"{"to":["ada@bitmail.test"],"from":"carol@example.net"}"#);
    let (http, base) = cluster.https_client();
    let response = http
        .post(format!("{base}/webhooks/sendgrid/inbound"))
        .basic_auth("bitmail", Some(INBOUND_PASSWORD))
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The one message in ada's inbox, read whole: its text and the attachment's bytes.
async fn read_the_one_message(ada: &Session) -> (String, Vec<u8>) {
    let (status, inbox) = ada.get("/api/folders/inbox").await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    assert_eq!(inbox["total"], 1, "{inbox}");
    let id = inbox["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, mail): (_, Value) = ada.get(&format!("/api/mail/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{mail}");
    let index = mail["attachments"][0]["index"].clone();
    let response = ada
        .http
        .get(format!("{}/api/mail/{id}/attachments/{index}", ada.base))
        .header("cookie", &ada.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    (mail["text"].as_str().unwrap().trim().to_owned(), response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_failed_midway_is_stored_whole_by_the_providers_retry() {
    let (cluster, faulty, ada, _fake) = inbound_setup().await;
    // The body goes in, the attachment's bytes do not.
    faulty.fail_writes_of("chunk", 1);
    let (status, text) = deliver(&cluster).await;
    assert!(status.is_server_error(), "the provider must deliver again: {status} {text}");
    let (_, inbox) = ada.get("/api/folders/inbox").await;
    assert_eq!(inbox["total"], 0, "nothing half-stored is shown: {inbox}");

    // SendGrid's retry stores the whole message.
    let (status, text) = deliver(&cluster).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("delivered to 1 inbox(es), already there in 0"), "{text}");
    let (body, attachment) = read_the_one_message(&ada).await;
    assert_eq!(body, "The report is attached.");
    assert_eq!(attachment, REPORT);
    // What the failed try wrote was removed.
    assert_eq!(documents(&cluster, &[("kind", "body")]).await.len(), 1);

    // And a later retry is a duplicate.
    let (status, text) = deliver(&cluster).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("already there in 1"), "{text}");
    assert_eq!(read_the_one_message(&ada).await.1, REPORT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_racing_store_the_message_once() {
    let (cluster, faulty, ada, _fake) = inbound_setup().await;
    // Both deliveries have looked for the message (and not found it) before either
    // writes: they reach the store together.
    faulty.hold_writes_of("body", 2);
    let (first, second) = tokio::join!(deliver(&cluster), deliver(&cluster));
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK), "{first:?} {second:?}");
    let answers = [first.1.as_str(), second.1.as_str()];
    assert!(answers.iter().any(|a| a.contains("delivered to 1 inbox(es)")), "{answers:?}");
    assert!(answers.iter().any(|a| a.contains("already there in 1")), "{answers:?}");
    let (body, attachment) = read_the_one_message(&ada).await;
    assert_eq!((body.as_str(), attachment.as_slice()), ("The report is attached.", REPORT));
    // The loser removed the content it had written.
    assert_eq!(documents(&cluster, &[("kind", "body")]).await.len(), 1);
    assert_eq!(documents(&cluster, &[("kind", "chunk")]).await.len(), 1);
}
