//! Amazon SES v2 as a provider, through aws-sdk-sesv2.
//!
//! Against moto (an SES emulator from PyPI, installed by `cargo xtask test`): a message
//! goes out as `Simple` content with every field, a message Simple content cannot carry
//! goes out as `Raw` MIME, and an unverified sender is refused and fails over.
//! Against the SES fake (`bitmail_tests::ses`), for answers moto cannot give: the id tag
//! and header on the wire, throttling, a daily quota, a bad signature, a paused account,
//! 5xx, a rejected message, and a hang after the request.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::prelude::*;
use bitmail_proto::v1 as pb;
use bitmail_runtime::config::Secret;
use bitmail_tests::moto::{self, Moto};
use bitmail_tests::sendgrid::FakeSendGrid;
use bitmail_tests::ses::{FakeSes, SesBehavior};
use common::{Cluster, Mta, sendgrid, settled, submission};
use mta_server::config::{ProviderConfig, SchedulerKind, SesConfig};
use serde_json::json;

const AKID: &str = "AKIDBITMAILTEST";

fn ses(endpoint: String, access_key_id: &str, timeout: Duration, max_attempts: u32) -> ProviderConfig {
    ProviderConfig::Ses(SesConfig {
        name: "ses".into(),
        region: moto::REGION.into(),
        access_key_id: Secret::new(access_key_id),
        secret_access_key: Secret::new("bitmail-test-secret"),
        session_token: None,
        endpoint_url: Some(endpoint),
        configuration_set: None,
        sns_topics: vec![],
        sns_cert_hosts: vec![],
        sns_ca_file: None,
        connect_timeout_ms: 1000,
        timeout_ms: timeout.as_millis() as u64,
        max_attempts,
        weight: 1,
        limits: Default::default(),
    })
}

async fn circuit(mta: &mut Mta, name: &str) -> pb::ProviderStatus {
    let list = mta.list_providers(pb::ListProvidersRequest {}).await.unwrap().into_inner();
    list.providers.into_iter().find(|p| p.name == name).unwrap()
}

#[tokio::test]
async fn a_message_goes_out_through_ses_as_simple_content() {
    let moto = Moto::start().await.unwrap();
    moto.verify_identity("ada@bitmail.test").await.unwrap();
    let cluster = Cluster::start(vec![ses(moto.endpoint_url(), AKID, Duration::from_secs(10), 2)], false).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest {
        from: "Ada Lovelace <ada@bitmail.test>".into(),
        to: vec!["bob@example.net".into()],
        cc: vec!["carol@example.net".into()],
        bcc: vec!["hidden@example.net".into()],
        subject: "Engine notes".into(),
        text: "See the notes.".into(),
        html: "<p>See the <b>notes</b>.</p>".into(),
        headers: vec![pb::Header { name: "X-Project".into(), value: "analytical".into() }],
        ..Default::default()
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(20)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "ses");

    let sent = moto.sent().await.unwrap();
    assert_eq!((sent.simple.len(), sent.raw.len()), (1, 0), "{sent:?}");
    let m = &sent.simple[0];
    assert_eq!(m["id"], status.provider_message_id.as_str());
    assert_eq!(m["source"], "Ada Lovelace <ada@bitmail.test>");
    assert_eq!(m["destinations"]["ToAddresses"], serde_json::json!(["bob@example.net"]));
    assert_eq!(m["destinations"]["CcAddresses"], serde_json::json!(["carol@example.net"]));
    assert_eq!(m["destinations"]["BccAddresses"], serde_json::json!(["hidden@example.net"]));
    assert_eq!(m["subject"], "Engine notes");
    assert_eq!(m["body"], "<p>See the <b>notes</b>.</p>");
}

#[tokio::test]
async fn a_message_simple_content_cannot_carry_goes_out_as_raw_mime() {
    let moto = Moto::start().await.unwrap();
    moto.verify_identity("ada@bitmail.test").await.unwrap();
    let cluster = Cluster::start(vec![ses(moto.endpoint_url(), AKID, Duration::from_secs(10), 2)], false).await;
    let mut mta = cluster.mta_client().await;
    // A non-ASCII display name: SES's Simple fields take ASCII names only, so BitMail
    // builds the MIME (lettre encodes the name) and sends it Raw.
    let request = pb::SubmitRequest {
        from: "ada@bitmail.test".into(),
        to: vec!["Zoë Doe <zoe@example.net>".into()],
        bcc: vec!["hidden@example.net".into()],
        subject: "Carnet".into(),
        text: "Voici le carnet.".into(),
        headers: vec![pb::Header { name: "X-Project".into(), value: "analytical".into() }],
        ..Default::default()
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(20)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");

    let sent = moto.sent().await.unwrap();
    assert_eq!((sent.simple.len(), sent.raw.len()), (0, 1), "{sent:?}");
    let m = &sent.raw[0];
    assert_eq!(m["id"], status.provider_message_id.as_str());
    assert_eq!(m["source"], "ada@bitmail.test");
    let destinations: Vec<&str> = m["destinations"].as_array().unwrap().iter().filter_map(|d| d.as_str()).collect();
    assert!(destinations.contains(&"zoe@example.net") && destinations.contains(&"hidden@example.net"), "{m}");
    let mime = m["raw_data"].as_str().unwrap();
    for needle in [
        "From: ada@bitmail.test",
        "To: =?utf-8?",
        "Subject: Carnet",
        &format!("X-BitMail-Id: {id}"),
        &format!("Message-ID: <{id}@bitmail>"),
        "X-Project: analytical",
        "Voici le carnet.",
    ] {
        assert!(mime.contains(needle), "missing {needle:?} in:\n{mime}");
    }
    assert!(!mime.contains("hidden@example.net"), "Bcc stays out of the headers:\n{mime}");
}

#[tokio::test]
async fn an_unverified_sender_is_refused_and_the_message_fails_over() {
    let moto = Moto::start().await.unwrap();
    moto.verify_identity("ada@bitmail.test").await.unwrap();
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(10);
    let cluster =
        Cluster::start_with(vec![ses(moto.endpoint_url(), AKID, t, 2), sendgrid("sendgrid", &sg, t)], false, |c| {
            c.scheduler = SchedulerKind::Priority;
        })
        .await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest { from: "eve@unverified.test".into(), ..submission("bob@example.net") };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(20)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "sendgrid");
    assert_eq!(status.attempts[0].provider, "ses");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("not verified"), "{:?}", status.attempts[0]);
    assert_eq!(sg.received().len(), 1);

    // Only that sender is unknown to SES: it still takes mail from a verified one.
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Closed);
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    assert_eq!(settled(&mut mta, &id, Duration::from_secs(20)).await.provider, "ses");
    assert_eq!(moto.sent().await.unwrap().simple.len(), 1);
}

#[tokio::test]
async fn a_long_bcc_list_goes_in_several_raw_calls_and_a_long_to_list_elsewhere() {
    let moto = Moto::start().await.unwrap();
    moto.verify_identity("ada@bitmail.test").await.unwrap();
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(10);
    let cluster =
        Cluster::start_with(vec![ses(moto.endpoint_url(), AKID, t, 2), sendgrid("sendgrid", &sg, t)], false, |c| {
            c.scheduler = SchedulerKind::Priority;
        })
        .await;
    let mut mta = cluster.mta_client().await;
    let bcc: Vec<String> = (0..60).map(|i| format!("r{i}@example.net")).collect();
    let request = pb::SubmitRequest { bcc: bcc.clone(), ..submission("bob@example.net") };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(20)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "ses");

    let sent = moto.sent().await.unwrap();
    assert_eq!((sent.simple.len(), sent.raw.len()), (0, 2), "{sent:?}");
    let ids: Vec<&str> = sent.raw.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(status.provider_message_id, ids.join(" "));
    let mut reached: Vec<String> = sent
        .raw
        .iter()
        .flat_map(|m| m["destinations"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()))
        .collect();
    reached.sort();
    reached.dedup();
    let mut all = bcc.clone();
    all.push("bob@example.net".into());
    all.sort();
    assert_eq!(reached, all, "every recipient");
    for m in &sent.raw {
        let mime = m["raw_data"].as_str().unwrap();
        assert!(mime.contains("To: bob@example.net"), "every copy shows the To:\n{mime}");
        assert!(!mime.contains("r0@example.net"), "Bcc stays out of the headers:\n{mime}");
    }

    // 60 names in To: every call would count them, so SES refuses this message only.
    let to: Vec<String> = (0..60).map(|i| format!("t{i}@example.net")).collect();
    let id = mta.submit(pb::SubmitRequest { to, ..submission("x@example.net") }).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(20)).await;
    assert_eq!(status.provider, "sendgrid", "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("at most 50"), "{:?}", status.attempts[0]);
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Closed);
}

/// SES (the fake) first, SendGrid as the fail-over, under the priority scheduler.
struct Pair {
    fake: FakeSes,
    sg: FakeSendGrid,
    cluster: Cluster,
}

async fn pair(access_key_id: &str, timeout: Duration, max_attempts: u32, threshold: u32) -> Pair {
    let fake = FakeSes::start(AKID).await.unwrap();
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let providers =
        vec![ses(fake.endpoint_url(), access_key_id, timeout, max_attempts), sendgrid("sendgrid", &sg, timeout)];
    let cluster = Cluster::start_with(providers, false, |c| {
        c.scheduler = SchedulerKind::Priority;
        c.health.failure_threshold = threshold;
    })
    .await;
    Pair { fake, sg, cluster }
}

/// Sends one message and waits for it to settle.
async fn send_one(cluster: &Cluster) -> (pb::MessageStatus, Mta) {
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    (settled(&mut mta, &id, Duration::from_secs(20)).await, mta)
}

#[tokio::test]
async fn the_request_carries_bitmail_id_as_tag_and_header() {
    let p = pair(AKID, Duration::from_secs(5), 2, 3).await;
    let (status, _) = send_one(&p.cluster).await;
    assert_eq!(status.provider, "ses", "{status:?}");
    let got = p.fake.received();
    assert_eq!(got.len(), 1);
    assert_eq!(status.provider_message_id, got[0].message_id);
    assert_eq!(got[0].tag("bitmail_id"), Some(status.message_id.as_str()));
    assert_eq!(got[0].simple_header("X-BitMail-Id"), Some(status.message_id.as_str()));
    assert_eq!(got[0].body["FromEmailAddress"], "Ada <ada@bitmail.test>");
}

#[tokio::test]
async fn attachments_inline_images_tags_and_metadata_go_in_simple_content() {
    let p = pair(AKID, Duration::from_secs(5), 2, 3).await;
    let mut mta = p.cluster.mta_client().await;
    let request = pb::SubmitRequest {
        html: "<p><img src=\"cid:logo\"> Report attached.</p>".into(),
        attachments: vec![
            pb::Attachment {
                filename: "report.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.7 fake".to_vec(),
                content_id: String::new(),
            },
            pb::Attachment {
                filename: "logo.png".into(),
                content_type: "image/png".into(),
                content: b"\x89PNG fake".to_vec(),
                content_id: "logo".into(),
            },
        ],
        tags: vec!["reports".into()],
        metadata: [("tenant".to_owned(), "acme".to_owned()), ("note".to_owned(), "not a tag".to_owned())].into(),
        ..submission("bob@example.net")
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(20)).await;
    assert_eq!(status.provider, "ses", "{status:?}");
    let body = &p.fake.received()[0].body;
    assert_eq!(
        body["Content"]["Simple"]["Attachments"],
        json!([
            {"RawContent": BASE64_STANDARD.encode(b"%PDF-1.7 fake"), "FileName": "report.pdf",
             "ContentType": "application/pdf", "ContentDisposition": "ATTACHMENT"},
            {"RawContent": BASE64_STANDARD.encode(b"\x89PNG fake"), "FileName": "logo.png",
             "ContentType": "image/png", "ContentDisposition": "INLINE", "ContentId": "logo"},
        ])
    );
    // The metadata value with spaces is not a valid SES tag value, so it is left out.
    assert_eq!(
        body["EmailTags"],
        json!([
            {"Name": "bitmail_id", "Value": id},
            {"Name": "tenant", "Value": "acme"},
            {"Name": "reports", "Value": "true"},
        ])
    );
}

#[tokio::test]
async fn throttling_is_retried_inside_the_attempt_then_fails_over() {
    let p = pair(AKID, Duration::from_secs(10), 2, 3).await;
    p.fake.set_behavior(SesBehavior::fail(429, "TooManyRequestsException", "Maximum sending rate exceeded."));
    let (status, mut mta) = send_one(&p.cluster).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "sendgrid");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Transient);
    assert!(status.attempts[0].detail.contains("TooManyRequestsException"), "{:?}", status.attempts[0]);
    assert_eq!(p.fake.requests(), 2, "the SDK's own retry, inside the one attempt");
    assert!(!status.possible_duplicate);
    // One throttled answer is below the threshold: SES stays in use.
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Closed);
}

#[tokio::test]
async fn a_daily_quota_sets_ses_aside_for_an_hour() {
    let p = pair(AKID, Duration::from_secs(10), 1, 1).await;
    p.fake.set_behavior(SesBehavior::fail(429, "TooManyRequestsException", "Daily message quota exceeded."));
    let (status, mut mta) = send_one(&p.cluster).await;
    assert_eq!(status.provider, "sendgrid", "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Transient);
    let ses = circuit(&mut mta, "ses").await;
    assert_eq!(ses.circuit(), pb::CircuitState::Open);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(ses.open_until_unix_ms > now + 50 * 60 * 1000, "{ses:?}");
}

#[tokio::test]
async fn a_bad_signature_or_a_paused_account_sets_ses_aside() {
    // Signed with an access key SES does not know: 403 UnrecognizedClientException.
    let p = pair("AKIDUNKNOWN", Duration::from_secs(5), 3, 3).await;
    let (status, mut mta) = send_one(&p.cluster).await;
    assert_eq!(status.provider, "sendgrid", "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("UnrecognizedClientException"), "{:?}", status.attempts[0]);
    assert_eq!(p.fake.requests(), 1, "the SDK does not retry a refusal");
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Open);
    let (next, _) = send_one(&p.cluster).await;
    assert_eq!((next.provider.as_str(), next.attempts.len()), ("sendgrid", 1), "SES is skipped: {next:?}");

    let p = pair(AKID, Duration::from_secs(5), 3, 3).await;
    p.fake.set_behavior(SesBehavior::fail(400, "SendingPausedException", "Sending is paused for this account."));
    let (status, mut mta) = send_one(&p.cluster).await;
    assert_eq!(status.provider, "sendgrid", "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("Sending is paused"), "{:?}", status.attempts[0]);
    let ses = circuit(&mut mta, "ses").await;
    assert_eq!(ses.circuit(), pb::CircuitState::Open);
    assert!(ses.last_error.contains("SendingPausedException"), "{ses:?}");
}

#[tokio::test]
async fn server_errors_are_transient_and_open_the_circuit_after_the_threshold() {
    let p = pair(AKID, Duration::from_secs(10), 2, 2).await;
    p.fake.set_behavior(SesBehavior::fail(500, "InternalFailure", "Internal error."));
    let (status, mut mta) = send_one(&p.cluster).await;
    assert_eq!(status.provider, "sendgrid", "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Transient);
    assert_eq!(p.fake.requests(), 2);
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Closed);
    let (_, mut mta) = send_one(&p.cluster).await;
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Open);
    assert_eq!(p.sg.received().len(), 2);
}

#[tokio::test]
async fn a_rejected_message_fails_without_trying_another_provider() {
    let p = pair(AKID, Duration::from_secs(5), 3, 1).await;
    p.fake.set_behavior(SesBehavior::fail(400, "MessageRejected", "Illegal header 'X-Bad'."));
    let (status, mut mta) = send_one(&p.cluster).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:?}");
    assert_eq!(status.attempts.len(), 1);
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::MessageRejected);
    assert!(status.error.contains("Illegal header"), "{status:?}");
    assert!(p.sg.received().is_empty());
    assert_eq!(circuit(&mut mta, "ses").await.circuit(), pb::CircuitState::Closed, "even at threshold 1");
}

#[tokio::test]
async fn a_hang_after_the_request_is_ambiguous_within_the_time_budget() {
    // Three tries allowed, one second in all: the first try hangs and uses the budget,
    // so the SDK sends nothing more.
    let p = pair(AKID, Duration::from_secs(1), 3, 3).await;
    p.fake.set_behavior(SesBehavior::Hang);
    let (status, _) = send_one(&p.cluster).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "sendgrid");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Ambiguous);
    assert!(status.possible_duplicate, "SES may have taken it: {status:?}");
    assert_eq!(p.fake.requests(), 1);
}

#[tokio::test]
async fn nothing_listening_is_transient_not_ambiguous() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(10);
    let providers = vec![ses(format!("http://{closed}"), AKID, t, 2), sendgrid("sendgrid", &sg, t)];
    let cluster = Cluster::start_with(providers, false, |c| c.scheduler = SchedulerKind::Priority).await;
    let (status, _) = send_one(&cluster).await;
    assert_eq!(status.provider, "sendgrid", "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Transient);
    assert!(status.attempts[0].detail.contains("cannot connect"), "{:?}", status.attempts[0]);
    assert!(!status.possible_duplicate);
}
