//! Received mail through each provider's inbound webhook, end to end: the test posts to
//! client-api what the provider would post (signed or authenticated the way it does it,
//! with keys the test made), and reads the result as the recipient does, through the
//! webmail's JSON API. Covered: SendGrid Inbound Parse (raw and parsed), Mailgun route
//! forwards (fields and `body-mime`), SES `Received` through SNS (signature versions 1
//! and 2, subscription confirmation); stored once when delivered twice; attachments and
//! inline images; unknown recipients refused the way each provider understands; bad or
//! missing credentials, stale signatures, other topics, malformed and oversized bodies
//! refused with nothing stored. SES's delivery events come through SNS the same way:
//! stored once with their message, a permanent bounce suppressing the address.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::prelude::*;
use bitmail_runtime::config::Secret;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use bitmail_tests::sns::SnsStandIn;
use common::{Cluster, Session, mailgun, sendgrid};
use mta_server::config::{ProviderConfig, SesConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MAILGUN_KEY: &str = "mailgun-webhook-signing-key";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:bitmail-inbound";
const INBOUND_PASSWORD: &str = "inbound-parse-password";
/// The edge's limit for one inbound request in this test.
const MAX_INBOUND: usize = 512 * 1024;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

struct Setup {
    cluster: Cluster,
    http: reqwest::Client,
    base: String,
    ada: Session,
    bob: Session,
    sns: SnsStandIn,
    _fakes: (FakeSendGrid, FakeMailgun),
}

async fn setup() -> Setup {
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let mg = FakeMailgun::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(5);
    let mut sg_config = sendgrid("sendgrid", &sg, t);
    if let ProviderConfig::Sendgrid(c) = &mut sg_config {
        c.inbound_password = Some(Secret::new(INBOUND_PASSWORD));
    }
    let mut mg_config = mailgun("mailgun", &mg, t);
    if let ProviderConfig::Mailgun(c) = &mut mg_config {
        c.webhook_signing_key = Some(Secret::new(MAILGUN_KEY));
    }
    // SES is never sent through here; its SNS topic brings mail in.
    let sns = SnsStandIn::start().await.unwrap();
    let ca_file = std::env::temp_dir().join(format!("bitmail-sns-ca-{}-{}.pem", std::process::id(), sns.addr().port()));
    std::fs::write(&ca_file, &sns.ca_pem).unwrap();
    let ses_config = ProviderConfig::Ses(SesConfig {
        name: "ses".into(),
        region: "eu-west-1".into(),
        access_key_id: Secret::new("AKIDINBOUNDTEST"),
        secret_access_key: Secret::new("inbound-test-secret"),
        session_token: None,
        endpoint_url: Some("http://127.0.0.1:9".into()),
        configuration_set: None,
        sns_topics: vec![TOPIC.into()],
        sns_cert_hosts: vec![sns.cert_host.clone()],
        sns_ca_file: Some(ca_file),
        connect_timeout_ms: 1000,
        timeout_ms: 5000,
        max_attempts: 1,
        weight: 1,
        limits: Default::default(),
    });
    let cluster = Cluster::start_full(
        vec![sg_config, mg_config, ses_config],
        true,
        |_| {},
        |c| c.max_inbound_bytes = MAX_INBOUND,
    )
    .await;
    let ada = Session::new(&cluster, "ada").await;
    let bob = Session::new(&cluster, "bob").await;
    let (http, base) = cluster.https_client();
    Setup { cluster, http, base, ada, bob, sns, _fakes: (sg, mg) }
}

/// A MIME message with an attachment and an inline image, as a mail client sends it.
fn mime_message(subject: &str, to: &str) -> String {
    let png = BASE64_STANDARD.encode(b"\x89PNG\r\n\x1a\nnot really a picture");
    let pdf = BASE64_STANDARD.encode(b"%PDF-1.4 the report");
    format!(
        "From: Carol Danvers <carol@example.net>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1-{subject_id}@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n\
         --rel\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the logo and the report.\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>See the <b>logo</b>: <img src=\"cid:logo@example.net\"><script>alert(1)</script></p>\r\n\
         --alt--\r\n\
         --rel\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\nContent-ID: <logo@example.net>\r\n\
         Content-Disposition: inline; filename=\"logo.png\"\r\n\r\n{png}\r\n--rel--\r\n\
         --outer\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"report.pdf\"\r\n\r\n{pdf}\r\n--outer--\r\n",
        subject_id = subject.replace(' ', "-"),
    )
}

fn form(fields: &[(&str, &str)]) -> reqwest::multipart::Form {
    fields.iter().fold(reqwest::multipart::Form::new(), |f, (k, v)| f.text(k.to_string(), v.to_string()))
}

impl Setup {
    async fn post(&self, request: reqwest::RequestBuilder) -> (StatusCode, String) {
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn sendgrid(&self, form: reqwest::multipart::Form, password: Option<&str>) -> (StatusCode, String) {
        let mut request = self.http.post(self.url("/webhooks/sendgrid/inbound")).multipart(form);
        if let Some(password) = password {
            request = request.basic_auth("bitmail", Some(password));
        }
        self.post(request).await
    }

    async fn mailgun(&self, fields: Vec<(String, String)>) -> (StatusCode, String) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        let request = self
            .http
            .post(self.url("/webhooks/mailgun/inbound"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.post(request).await
    }
}

impl Setup {
    async fn sns(&self, path: &str, body: String) -> (StatusCode, String) {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "text/plain; charset=UTF-8")
            .header("x-amz-sns-message-type", "Notification")
            .body(body);
        self.post(request).await
    }
}

/// The Message of an SES `Received` notification, the mail in `content`.
fn ses_received(message_id: &str, recipients: &[&str], mime: &str, base64: bool) -> String {
    let content = if base64 { BASE64_STANDARD.encode(mime) } else { mime.to_owned() };
    serde_json::json!({
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-23T10:00:00.000Z",
            "source": "carol@example.net",
            "messageId": message_id,
            "destination": recipients,
            "commonHeaders": { "subject": "ignored: the MIME decides" },
        },
        "receipt": {
            "recipients": recipients,
            "spamVerdict": { "status": "PASS" },
            "virusVerdict": { "status": "PASS" },
            "spfVerdict": { "status": "PASS" },
            "dkimVerdict": { "status": "GRAY" },
            "dmarcVerdict": { "status": "PASS" },
            "action": { "type": "SNS", "topicArn": TOPIC, "encoding": if base64 { "BASE64" } else { "UTF8" } },
        },
        "content": content,
    })
    .to_string()
}

/// Mailgun's signature fields over `timestamp` + `token`.
fn mailgun_signed(timestamp: u64, token: &str, key: &str) -> Vec<(String, String)> {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), format!("{timestamp}{token}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    vec![("timestamp".into(), timestamp.to_string()), ("token".into(), token.into()), ("signature".into(), hex)]
}

async fn inbox_of(user: &Session) -> Value {
    let (status, inbox) = user.get("/api/folders/inbox").await;
    assert_eq!(status, StatusCode::OK, "{inbox}");
    inbox
}

#[tokio::test]
async fn sendgrid_inbound_parse_raw_mode_lands_once_with_attachments_and_inline_images() {
    let s = setup().await;
    let raw = mime_message("Quarterly report", "Ada <ada@bitmail.test>");
    let fields = || {
        form(&[
            ("email", &raw),
            ("envelope", r#"{"to":["ada@bitmail.test"],"from":"carol@example.net"}"#),
            ("spam_score", "0.1"),
            ("SPF", "pass"),
        ])
    };
    let (status, text) = s.sendgrid(fields(), Some(INBOUND_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // SendGrid delivers again when an answer is lost: still one message.
    let (status, text) = s.sendgrid(fields(), Some(INBOUND_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("already there in 1"), "{text}");

    let inbox = inbox_of(&s.ada).await;
    assert_eq!(inbox["total"], 1, "{inbox}");
    assert_eq!(inbox["unread"], 1);
    let listed = &inbox["messages"][0];
    assert_eq!(listed["subject"], "Quarterly report");
    assert!(listed["from"].as_str().unwrap().contains("carol@example.net"), "{listed}");
    assert_eq!(listed["attachments"], 2);
    let id = listed["id"].as_str().unwrap();

    let (status, mail) = s.ada.get(&format!("/api/mail/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mail["text"].as_str().unwrap().trim(), "See the logo and the report.");
    let html = mail["html"].as_str().unwrap();
    assert!(!html.contains("<script"), "{html}");
    let attachments = mail["attachments"].as_array().unwrap();
    let logo = attachments.iter().find(|a| a["filename"] == "logo.png").expect("the inline image");
    assert_eq!(logo["inline"], true);
    let logo_url = format!("/api/mail/{id}/attachments/{}", logo["index"]);
    assert!(html.contains(&format!("src=\"{logo_url}\"")), "the inline image shows from here: {html}");
    let report = attachments.iter().find(|a| a["filename"] == "report.pdf").expect("the attachment");
    assert_eq!(report["content_type"], "application/pdf");
    let response = s
        .http
        .get(s.url(&format!("/api/mail/{id}/attachments/{}", report["index"])))
        .header("cookie", &s.ada.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"%PDF-1.4 the report");
    // Nobody else got it.
    assert_eq!(inbox_of(&s.bob).await["total"], 0);
}

#[tokio::test]
async fn sendgrid_parsed_mode_and_its_refusals() {
    let s = setup().await;
    let parsed = || {
        form(&[
            ("headers", "Message-ID: <parsed-1@example.net>\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n"),
            ("from", "Carol <carol@example.net>"),
            ("to", "bob@bitmail.test"),
            ("subject", "Parsed mode"),
            ("text", "Plain words"),
            ("html", "<p>Plain <i>words</i></p>"),
            ("envelope", r#"{"to":["bob@bitmail.test"],"from":"carol@example.net"}"#),
            ("charsets", r#"{"to":"UTF-8","from":"UTF-8","subject":"UTF-8","text":"UTF-8","html":"UTF-8"}"#),
            ("attachments", "0"),
        ])
    };
    // Without the password, or with a wrong one: refused, nothing stored.
    assert_eq!(s.sendgrid(parsed(), None).await.0, StatusCode::UNAUTHORIZED);
    let (status, text) = s.sendgrid(parsed(), Some("guess")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!text.contains(INBOUND_PASSWORD) && !text.contains("guess"), "{text}");
    assert_eq!(inbox_of(&s.bob).await["total"], 0);

    let (status, text) = s.sendgrid(parsed(), Some(INBOUND_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let inbox = inbox_of(&s.bob).await;
    assert_eq!(inbox["total"], 1);
    assert_eq!(inbox["messages"][0]["subject"], "Parsed mode");

    // Mail for nobody here: taken (SendGrid would retry anything else for days), stored nowhere.
    let nobody = form(&[
        ("email", &mime_message("Lost", "nobody@bitmail.test")),
        ("envelope", r#"{"to":["nobody@bitmail.test"],"from":"carol@example.net"}"#),
    ]);
    let (status, text) = s.sendgrid(nobody, Some(INBOUND_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("no such recipient here: nobody@bitmail.test"), "{text}");

    // A body that is not the multipart it says it is.
    let broken = s
        .http
        .post(s.url("/webhooks/sendgrid/inbound"))
        .basic_auth("bitmail", Some(INBOUND_PASSWORD))
        .header("content-type", "multipart/form-data; boundary=xyz")
        .body("--xyz\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nunterminated");
    assert_eq!(s.post(broken).await.0, StatusCode::BAD_REQUEST);
    // Over the edge's limit: 413 before anything is forwarded.
    let huge = form(&[("email", &"x".repeat(MAX_INBOUND + 1))]);
    assert_eq!(s.sendgrid(huge, Some(INBOUND_PASSWORD)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(s.ada.get("/api/folders/inbox").await.1["total"], 0);
}

#[tokio::test]
async fn mailgun_route_forwards_are_verified_and_unknown_recipients_get_406() {
    let s = setup().await;
    let ts = now_secs();
    let parsed = |token: &str, recipient: &str| {
        let mut fields = mailgun_signed(ts, token, MAILGUN_KEY);
        fields.extend(
            [
                ("recipient", recipient),
                ("sender", "carol@example.net"),
                ("from", "Carol <carol@example.net>"),
                ("subject", "Through a route"),
                ("body-plain", "Routed words"),
                ("body-html", "<p>Routed words</p>"),
                ("message-headers", r#"[["Message-Id","<route-1@example.net>"],["X-Mailgun-Sflag","No"]]"#),
                ("attachment-count", "0"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        fields
    };
    let (status, text) = s.mailgun(parsed("token-1", "bob@bitmail.test")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // The same forward again (Mailgun retrying): stored once.
    let (status, _) = s.mailgun(parsed("token-1", "bob@bitmail.test")).await;
    assert_eq!(status, StatusCode::OK);
    let inbox = inbox_of(&s.bob).await;
    assert_eq!(inbox["total"], 1, "{inbox}");
    assert_eq!(inbox["messages"][0]["subject"], "Through a route");

    // body-mime mode, with its attachments.
    let mut mime = mailgun_signed(ts, "token-2", MAILGUN_KEY);
    mime.extend([
        ("recipient".to_owned(), "ada@bitmail.test".to_owned()),
        ("sender".to_owned(), "carol@example.net".to_owned()),
        ("body-mime".to_owned(), mime_message("Raw through a route", "ada@bitmail.test")),
    ]);
    let (status, text) = s.mailgun(mime).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let ada = inbox_of(&s.ada).await;
    assert_eq!(ada["messages"][0]["subject"], "Raw through a route");
    assert_eq!(ada["messages"][0]["attachments"], 2);

    // Nobody here: 406, which Mailgun takes as a refusal without retrying.
    let (status, text) = s.mailgun(parsed("token-3", "nobody@bitmail.test")).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{text}");

    // A wrong key, a stale timestamp, a token reused for another message: 401, nothing stored.
    let mut forged = parsed("token-4", "bob@bitmail.test");
    forged.splice(0..3, mailgun_signed(ts, "token-4", "another key"));
    assert_eq!(s.mailgun(forged).await.0, StatusCode::UNAUTHORIZED);
    let mut stale = parsed("token-5", "bob@bitmail.test");
    stale.splice(0..3, mailgun_signed(ts - 3600, "token-5", MAILGUN_KEY));
    assert_eq!(s.mailgun(stale).await.0, StatusCode::UNAUTHORIZED);
    let mut replay = parsed("token-1", "bob@bitmail.test");
    for (k, v) in &mut replay {
        if k == "message-headers" {
            *v = r#"[["Message-Id","<another@example.net>"]]"#.into();
        }
    }
    let (status, text) = s.mailgun(replay).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert_eq!(inbox_of(&s.bob).await["total"], 1);
    drop(s.cluster);
}

#[tokio::test]
async fn ses_mail_through_sns_is_verified_confirmed_and_delivered_once() {
    let s = setup().await;
    // The subscription is confirmed once its message verifies.
    let (status, text) = s.sns("/webhooks/ses/inbound", s.sns.subscription_confirmation(TOPIC)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(s.sns.confirmations(), 1);

    let mime = mime_message("Through SES", "ada@bitmail.test");
    for version in [1, 2] {
        let body =
            s.sns.notification(TOPIC, &ses_received("ses-1", &["ada@bitmail.test"], &mime, version == 2), version);
        let (status, text) = s.sns("/webhooks/ses/inbound", body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        // SNS delivering the same notification again.
        assert_eq!(s.sns("/webhooks/ses/inbound", body).await.0, StatusCode::OK);
    }
    let inbox = inbox_of(&s.ada).await;
    assert_eq!(inbox["total"], 1, "stored once: {inbox}");
    let listed = &inbox["messages"][0];
    assert_eq!(listed["subject"], "Through SES");
    assert_eq!(listed["attachments"], 2);
    let (_, mail) = s.ada.get(&format!("/api/mail/{}", listed["id"].as_str().unwrap())).await;
    assert!(mail["html"].as_str().unwrap().contains("/attachments/"), "{mail}");

    // Another topic: 403. A changed message: 401. For nobody here: taken, stored nowhere.
    let other = "arn:aws:sns:eu-west-1:123456789012:someone-else";
    let body = s.sns.notification(other, &ses_received("ses-2", &["bob@bitmail.test"], &mime, false), 2);
    assert_eq!(s.sns("/webhooks/ses/inbound", body).await.0, StatusCode::FORBIDDEN);
    let body = s.sns.notification(TOPIC, &ses_received("ses-3", &["bob@bitmail.test"], &mime, false), 2);
    let tampered = body.replace("Through SES", "Through SES, changed");
    assert_ne!(tampered, body);
    assert_eq!(s.sns("/webhooks/ses/inbound", tampered).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(inbox_of(&s.bob).await["total"], 0);
    let body = s.sns.notification(TOPIC, &ses_received("ses-4", &["nobody@bitmail.test"], &mime, false), 2);
    let (status, text) = s.sns("/webhooks/ses/inbound", body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("no such recipient"), "{text}");
    // The certificate was fetched once for all of it.
    assert_eq!(s.sns.cert_fetches(), 1);
}

#[tokio::test]
async fn ses_events_through_sns_are_stored_once_and_a_hard_bounce_suppresses() {
    use bitmail_proto::v1 as pb;
    let s = setup().await;
    let mut mta = s.cluster.mta_client().await;
    let id = mta.submit(common::submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let bounce = serde_json::json!({
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{ "emailAddress": "bob@example.net", "diagnosticCode": "smtp; 550 5.1.1 no such user" }],
            "timestamp": "2026-11-23T10:00:01.000Z",
        },
        "mail": {
            "timestamp": "2026-11-23T10:00:00.000Z",
            "messageId": "0100-ses-id",
            "destination": ["bob@example.net"],
            "tags": { "bitmail_id": [id.clone()] },
        },
    })
    .to_string();
    let body = s.sns.notification(TOPIC, &bounce, 2);
    let (status, text) = s.sns("/webhooks/ses/events", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text, "stored 1, seen before 0\n");
    let (status, text) = s.sns("/webhooks/ses/events", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, "stored 0, seen before 1\n");
    let tampered = s.sns.notification(TOPIC, &bounce, 1).replace("no such user", "fine");
    assert_eq!(s.sns("/webhooks/ses/events", tampered).await.0, StatusCode::UNAUTHORIZED);

    let status = mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(status.events.len(), 1, "{:?}", status.events);
    assert_eq!(status.events[0].kind(), pb::EventKind::Bounced);
    assert!(status.events[0].permanent);
    assert_eq!(status.events[0].recipient, "bob@example.net");
    let refused = mta.submit(common::submission("bob@example.net")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("bob@example.net is suppressed (hard bounce"), "{}", refused.message());
}

#[tokio::test]
async fn outside_mail_claiming_our_domain_or_failing_its_checks_is_shown_with_a_warning() {
    let s = setup().await;
    let forged = "From: The Boss <boss@bitmail.test>\r\nTo: ada@bitmail.test\r\nSubject: Wire the money\r\n\
                  Message-ID: <forged-1@evil.example>\r\n\r\nToday please.\r\n";
    let honest = "From: Carol <carol@example.net>\r\nTo: ada@bitmail.test\r\nSubject: Lunch\r\n\
                  Message-ID: <lunch-1@example.net>\r\n\r\nNoon?\r\n";
    for (raw, spf) in [(forged, "softfail"), (honest, "pass")] {
        let fields = form(&[
            ("email", raw),
            ("envelope", r#"{"to":["ada@bitmail.test"],"from":"x@evil.example"}"#),
            ("spam_score", "0.2"),
            ("SPF", spf),
        ]);
        let (status, text) = s.sendgrid(fields, Some(INBOUND_PASSWORD)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    let inbox = inbox_of(&s.ada).await;
    let id_of = |subject: &str| {
        let m = inbox["messages"].as_array().unwrap().iter().find(|m| m["subject"] == subject).unwrap();
        m["id"].as_str().unwrap().to_owned()
    };

    let (status, mail) = s.ada.get(&format!("/api/mail/{}", id_of("Wire the money"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mail["origin"]["warnings"], serde_json::json!(["claims_local_domain", "failed_checks"]), "{mail}");
    assert_eq!(mail["origin"]["verdicts"]["spf"], "softfail");
    assert_eq!(mail["origin"]["external"], true);

    let (_, mail) = s.ada.get(&format!("/api/mail/{}", id_of("Lunch"))).await;
    assert_eq!(mail["origin"]["warnings"], serde_json::json!([]), "{mail}");
    assert_eq!(mail["origin"]["verdicts"]["spf"], "pass");

    // Mail between users of the webmail claims our domain rightly: no warning.
    s.bob.send(serde_json::json!({ "to": "ada@bitmail.test", "subject": "Internal", "text": "hi" })).await;
    let inbox = inbox_of(&s.ada).await;
    let internal = inbox["messages"].as_array().unwrap().iter().find(|m| m["subject"] == "Internal").unwrap();
    let (_, mail) = s.ada.get(&format!("/api/mail/{}", internal["id"].as_str().unwrap())).await;
    assert_eq!(mail["origin"]["warnings"], serde_json::json!([]), "{mail}");
    assert_eq!(mail["origin"]["external"], false);
}

/// A received message whose body is larger than one store document may be (16 MiB) is
/// stored in pieces and opens whole; deleting it removes every piece.
#[tokio::test]
async fn a_body_larger_than_a_document_is_stored_and_read_whole() {
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let mut sg_config = sendgrid("sendgrid", &sg, Duration::from_secs(5));
    if let ProviderConfig::Sendgrid(c) = &mut sg_config {
        c.inbound_password = Some(Secret::new(INBOUND_PASSWORD));
    }
    let cluster = Cluster::start_full(vec![sg_config], true, |_| {}, |c| c.max_inbound_bytes = 30 << 20).await;
    let ada = Session::new(&cluster, "ada").await;
    // 17 MB of text, with two-byte characters so that pieces end inside one.
    let text = format!("x{}", "é".repeat(8_500_000));
    let raw = format!(
        "From: carol@example.net\r\nTo: ada@bitmail.test\r\nSubject: The archive\r\nMessage-ID: <big-1@example.net>\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{text}\r\n"
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
    let status = response.status();
    assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());

    let inbox = inbox_of(&ada).await;
    let id = inbox["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, mail) = ada.get(&format!("/api/mail/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let opened = mail["text"].as_str().unwrap().trim_end();
    assert_eq!(opened.len(), text.len(), "the whole body");
    assert!(opened == text, "the same body, in order");

    let (status, _) = ada.call(reqwest::Method::DELETE, &format!("/api/mail/{id}"), None).await;
    assert!(status.is_success(), "{status}");
    let mut store = cluster.store_client().await;
    let request = bitmail_proto::v1::LookupRequest {
        subset: [("kind".to_owned(), "body".to_owned())].into(),
        limit: 100,
        page_token: String::new(),
        newest_first: false,
    };
    let mut stream = store.lookup(request).await.unwrap().into_inner();
    let mut left = 0;
    while let Some(item) = stream.message().await.unwrap() {
        left += usize::from(matches!(item.item, Some(bitmail_proto::v1::lookup_response::Item::Document(_))));
    }
    assert_eq!(left, 0, "every piece of the body is deleted with the message");
}

/// Received mail to a group and one of its members: each member's inbox gets it once
/// (the member named directly too), the content once; the provider's retry adds nothing;
/// a member's copy replies to the group.
#[tokio::test]
async fn mail_to_a_group_reaches_each_member_once_and_a_retry_adds_nothing() {
    let s = setup().await;
    let (status, group) =
        s.ada.call(reqwest::Method::POST, "/api/groups", Some(json!({ "name": "board", "members": ["bob"] }))).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let raw = mime_message("Board agenda", "board@bitmail.test, Ada <ada@bitmail.test>");
    let fields = || {
        form(&[
            ("email", &raw),
            ("envelope", r#"{"to":["board@bitmail.test","ada@bitmail.test"],"from":"carol@example.net"}"#),
        ])
    };
    let (status, text) = s.sendgrid(fields(), Some(INBOUND_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = s.sendgrid(fields(), Some(INBOUND_PASSWORD)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("already there in 2"), "{text}");

    for who in [&s.ada, &s.bob] {
        let inbox = inbox_of(who).await;
        assert_eq!(inbox["total"], 1, "{inbox}");
        assert_eq!(inbox["messages"][0]["subject"], "Board agenda");
    }
    let id = inbox_of(&s.bob).await["messages"][0]["id"].as_str().unwrap().to_owned();
    let (_, mail) = s.bob.get(&format!("/api/mail/{id}")).await;
    assert_eq!(mail["reply_to"], "board@bitmail.test", "a member replies to the group");
    assert_eq!(mail["attachments"].as_array().unwrap().len(), 2);
    let store =
        bitmail_proto::v1::store_client::StoreClient::connect(format!("http://{}", s.cluster.backend)).await.unwrap();
    let count = |subset: Vec<(&str, &str)>| {
        let subset = subset.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let mut store = store.clone();
        async move { store.count(bitmail_proto::v1::CountRequest { subset, at_most: 0 }).await.unwrap().into_inner().count }
    };
    let doc = store.clone().get(bitmail_proto::v1::GetRequest { id }).await.unwrap().into_inner();
    let content = doc.fields["content_ref"].clone();
    assert_eq!(count(vec![("kind", "body"), ("mail_id", &content)]).await, 1, "one body for both inboxes");
    assert_eq!(count(vec![("kind", "mail"), ("content_ref", &content)]).await, 2);
}

/// A plain message as another mail program sends it, with threading headers.
fn threaded(n: &str, subject: &str, headers: &str) -> String {
    format!(
        "From: Carol <carol@example.net>\r\nTo: ada@bitmail.test\r\nSubject: {subject}\r\n\
         Date: Mon, 23 Nov 2026 10:0{n}:00 +0000\r\nMessage-ID: <{n}@example.net>\r\n{headers}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMessage {n}.\r\n"
    )
}

/// Conversations from real-world threading headers (issue 18): References and
/// In-Reply-To as Thunderbird and Outlook write them join a conversation, newest first;
/// a reply without them joins by its `Re:` subject; headers that name the message
/// itself, loop or are garbage start a conversation of their own and corrupt nothing;
/// a webmail reply (`in_reply_to`) joins the conversation on both sides, and one to a
/// message of someone else's is refused.
#[tokio::test]
async fn conversations_follow_threading_headers_and_survive_broken_ones() {
    let s = setup().await;
    let s = &s;
    let deliver = |raw: String| {
        let envelope = r#"{"to":["ada@bitmail.test"],"from":"carol@example.net"}"#;
        let form = form(&[("email", &raw), ("envelope", envelope)]);
        async move {
            let (status, text) = s.sendgrid(form, Some(INBOUND_PASSWORD)).await;
            assert_eq!(status, StatusCode::OK, "{text}");
        }
    };
    deliver(threaded("1", "Water pump", "")).await;
    // Thunderbird: References folded, In-Reply-To the parent.
    deliver(threaded("2", "Re: Water pump", "In-Reply-To: <1@example.net>\r\nReferences: <1@example.net>\r\n")).await;
    // Outlook: In-Reply-To only, and the subject changed.
    deliver(threaded("3", "RE: Pump parts", "In-Reply-To: <2@example.net>\r\n")).await;
    // No headers, but a reply's subject: joins by subject.
    deliver(threaded("4", "AW: Water pump", "")).await;
    // Broken: names itself, a loop of unknown ids, garbage.
    deliver(threaded("5", "Re: Other", "In-Reply-To: <5@example.net>\r\nReferences: <x@y> <x@y> not-an-id\r\n")).await;
    // The same subject without a reply's prefix and without headers: a new conversation.
    deliver(threaded("6", "Water pump", "")).await;

    let inbox = inbox_of(&s.ada).await;
    let by_subject: std::collections::HashMap<String, String> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (format!("{}{}", m["subject"].as_str().unwrap(), m["date_ms"]), m["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(by_subject.len(), 6, "{inbox}");
    let id_of = |subject: &str| -> String {
        by_subject.iter().find(|(k, _)| k.starts_with(subject)).map(|(_, v)| v.clone()).unwrap()
    };
    let subjects_of = |mail: &Value| -> Vec<String> {
        mail["conversation"]
            .as_array()
            .map(|l| l.iter().map(|m| m["subject"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };
    let (_, pump) = s.ada.get(&format!("/api/mail/{}", id_of("RE: Pump parts"))).await;
    assert_eq!(
        subjects_of(&pump),
        ["AW: Water pump", "Re: Water pump", "Water pump"],
        "the others of its conversation, newest first"
    );
    let (_, broken) = s.ada.get(&format!("/api/mail/{}", id_of("Re: Other"))).await;
    assert!(broken["conversation"].is_null(), "a message of its own: {broken}");
    let latest_pump = inbox["messages"][0].clone();
    assert_eq!(latest_pump["subject"], "Water pump", "the newest, in a conversation of its own");
    let (_, alone) = s.ada.get(&format!("/api/mail/{}", latest_pump["id"].as_str().unwrap())).await;
    assert!(alone["conversation"].is_null(), "{alone}");

    // The webmail's reply joins on both sides.
    let (status, sent) = s.ada.send(json!({ "to": "bob@bitmail.test", "subject": "Lunch", "markdown": "Noon?" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let bobs = inbox_of(&s.bob).await["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, reply) = s
        .bob
        .send(json!({ "to": "ada@bitmail.test", "subject": "Re: Lunch", "markdown": "Yes", "in_reply_to": bobs }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
    let (_, ada_sent) = s.ada.get(&format!("/api/mail/{}", sent["id"].as_str().unwrap())).await;
    assert_eq!(subjects_of(&ada_sent), ["Re: Lunch"], "bob's reply, beside ada's Sent copy");
    let (_, bob_sent) = s.bob.get(&format!("/api/mail/{}", reply["id"].as_str().unwrap())).await;
    assert_eq!(subjects_of(&bob_sent), ["Lunch"], "what bob replied to, beside his reply");
    let (status, refused) = s
        .bob
        .send(json!({ "to": "ada@bitmail.test", "subject": "x", "markdown": "x", "in_reply_to": sent["id"] }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "ada's message is not bob's to reply to: {refused}");
    assert_eq!(inbox_of(&s.ada).await["total"], 7, "six received, bob's reply; nothing for the refused one");
}
