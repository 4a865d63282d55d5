//! `POST /v3/mail/send` through the official Python `sendgrid` SDK.

use base64::prelude::*;
use bitmail_proto::v1 as pb;
use serde_json::{Value, json};

use super::{App, one_a_day};

/// The recipients of one delivered request, as emails.
fn emails(body: &Value, list: &str) -> Vec<String> {
    body["personalizations"][0][list]
        .as_array()
        .map(|a| a.iter().map(|m| m["email"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn each_personalization_reaches_the_provider_as_its_own_message_with_everything_intact() {
    let app = App::start().await;
    let answer = app.sdk("sendgrid_rich", json!({})).await;
    assert_eq!((answer.status, answer.raised.as_deref()), (202, None), "{answer:?}");
    assert_eq!(answer.body, "");
    let ids = answer.ids();
    assert_eq!(ids.len(), 2, "{answer:?}");
    assert_eq!(answer.header("x-message-id"), ids[0]);

    // The SDK puts each personalization it is given first: find the copies by recipient.
    let (first, second) = (app.delivered(&ids[0]).await, app.delivered(&ids[1]).await);
    let (bob, eve) = if emails(&first, "to") == ["bob@example.net"] { (first, second) } else { (second, first) };
    assert_eq!(emails(&bob, "to"), ["bob@example.net"]);
    assert_eq!(emails(&bob, "cc"), ["carol@example.net"]);
    assert_eq!(bob["personalizations"][0]["to"][0]["name"], "Bob");
    assert_eq!(bob["from"], json!({ "email": "ada@bitmail.test", "name": "Ada Lovelace" }));
    assert_eq!(bob["subject"], "Your report");
    assert_eq!(bob["content"][0], json!({ "type": "text/plain", "value": "See the attached report." }));
    assert_eq!(bob["content"][1]["value"], "<p>See the report.</p><img src=\"cid:logo\">");
    assert_eq!(bob["headers"]["X-Campaign"], "spring");
    assert_eq!(bob["categories"], json!(["reports"]));
    assert_eq!(bob["custom_args"]["app"], "billing");
    assert_eq!(bob["custom_args"]["user"], "bob");
    let attachment =
        |name: &str| bob["attachments"].as_array().unwrap().iter().find(|a| a["filename"] == name).cloned().unwrap();
    let (report, logo) = (attachment("report.pdf"), attachment("logo.png"));
    assert_eq!(
        (report["type"].as_str(), report["disposition"].as_str()),
        (Some("application/pdf"), Some("attachment"))
    );
    assert_eq!(BASE64_STANDARD.decode(report["content"].as_str().unwrap()).unwrap(), b"%PDF-1.4 report");
    assert_eq!((logo["disposition"].as_str(), logo["content_id"].as_str()), (Some("inline"), Some("logo")));
    assert_eq!(BASE64_STANDARD.decode(logo["content"].as_str().unwrap()).unwrap(), b"\x89PNG logo");

    assert_eq!(emails(&eve, "to"), ["eve@example.net"]);
    assert!(emails(&eve, "cc").is_empty(), "Carol was in Bob's personalization only");
    assert_eq!(eve["subject"], "Eve's report");
    assert_eq!(eve["custom_args"]["user"], "eve");
    assert_eq!(eve["attachments"].as_array().unwrap().len(), 2);

    // Each copy is a message of the tenant, visible through gRPC with the app's key.
    for id in &ids {
        let status = app.status(id).await;
        assert_eq!(status.tenant, "default");
    }
}

#[tokio::test]
async fn sandbox_mode_checks_and_answers_200_and_sends_nothing() {
    let app = App::start().await;
    let answer = app.sdk("sendgrid_plain", json!({ "sandbox": true })).await;
    assert_eq!((answer.status, answer.raised.as_deref()), (200, None), "{answer:?}");
    assert!(answer.ids().is_empty());
    // Still checked: a From outside the tenant's domains is refused in sandbox mode too.
    let refused = app.sdk("sendgrid_plain", json!({ "sandbox": true, "from": "ada@elsewhere.test" })).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(app.received_after_a_moment().await, 0);
}

#[tokio::test]
async fn errors_reach_the_sdk_in_sendgrids_shape_and_nothing_is_sent() {
    let app = App::start_with(|c| c.max_message_bytes = 100_000).await;

    let wrong = app.sdk("sendgrid_plain", json!({ "key": "bmk_000000000000_wrongsecretwrongsecret" })).await;
    assert_eq!((wrong.status, wrong.raised.as_deref()), (401, Some("UnauthorizedError")), "{wrong:?}");
    assert_eq!(
        wrong.json()["errors"][0]["message"],
        "The provided authorization grant is invalid, expired, or revoked"
    );

    let outside = app.sdk("sendgrid_plain", json!({ "from": "ada@elsewhere.test" })).await;
    assert_eq!((outside.status, outside.raised.as_deref()), (403, Some("ForbiddenError")), "{outside:?}");
    assert_eq!(outside.json()["errors"][0]["field"], "from.email");

    let big = app.sdk("sendgrid_plain", json!({ "attachment_bytes": 200_000 })).await;
    assert_eq!((big.status, big.raised.as_deref()), (413, Some("PayloadTooLargeError")), "{big:?}");
    assert_eq!(big.json()["errors"][0]["field"], "attachments.0.content");

    let past = app.sdk("sendgrid_plain", json!({ "send_at": 1_000_000_000 })).await;
    assert_eq!((past.status, past.json()["errors"][0]["field"].as_str()), (400, Some("send_at")), "{past:?}");

    let mail = |personalizations: Value| {
        json!({ "personalizations": personalizations, "from": { "email": "ada@bitmail.test" }, "subject": "Hi",
                "content": [{ "type": "text/plain", "value": "x" }] })
    };
    let one = json!([{ "to": [{ "email": "bob@example.net" }] }]);
    let with_field = |mut body: Value, key: &str, value: Value| {
        body[key] = value;
        body
    };
    let many: Vec<Value> = (0..1001).map(|i| json!({ "to": [{ "email": format!("r{i}@example.net") }] })).collect();
    let bodies = [
        (mail(Value::Array(many)), "personalizations"),
        (
            json!({ "personalizations": [{ "to": [{ "email": "bob@example.net" }] }], "from": { "email": "ada@bitmail.test" },
                    "subject": "Hi", "content": [{ "type": "text/plain", "value": "a" }, { "type": "text/plain", "value": "b" }] }),
            "content.1.type",
        ),
        (
            mail(json!([{ "to": [{ "email": "bob@example.net", "name": "Bob\r\nBcc: victim@example.org" }] }])),
            "personalizations.0.to.0.name",
        ),
        (
            mail(
                json!([{ "to": [{ "email": "bob@example.net" }], "headers": { "X-Bad": "a\r\nBcc: victim@example.org" } }]),
            ),
            "headers",
        ),
        // The second copy's bad address: the first is not sent either.
        (
            mail(json!([{ "to": [{ "email": "bob@example.net" }] }, { "to": [{ "email": "not-an-address" }] }])),
            "personalizations.1.to.0",
        ),
        (
            with_field(mail(one.clone()), "attachments", json!([{ "content": "not base64!", "filename": "a.txt" }])),
            "attachments.0.content",
        ),
        (
            with_field(mail(one.clone()), "send_at", json!(bitmail_runtime::time::now_ms() / 1000 + 365 * 86_400)),
            "send_at",
        ),
        (with_field(mail(one.clone()), "template_id", json!("d-0123")), "template_id"),
        (json!({ "personalizations": "not a list" }), ""),
    ];
    for (body, field) in bodies {
        let answer = app.sdk("sendgrid_raw", json!({ "body": body })).await;
        assert_eq!((answer.status, answer.raised.as_deref()), (400, Some("BadRequestsError")), "{field}: {answer:?}");
        let expected = if field.is_empty() { Value::Null } else { json!(field) };
        assert_eq!(answer.json()["errors"][0]["field"], expected, "{answer:?}");
    }
    // Malformed JSON, and over SendGrid's 30 MB (refused before it is read whole), in
    // SendGrid's shape.
    let (http, base) = app.cluster.https_client();
    let malformed =
        http.post(format!("{base}/v3/mail/send")).bearer_auth(&app.key).body("{not json").send().await.unwrap();
    assert_eq!(malformed.status().as_u16(), 400);
    let body: Value = malformed.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("not valid Mail Send JSON"), "{body}");
    let huge = format!("{{\"subject\":\"{}\"}}", "x".repeat(31 << 20));
    let response = http
        .post(format!("{base}/v3/mail/send"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("30 MB"), "{body}");
    assert_eq!(app.received_after_a_moment().await, 0, "nothing was sent");
}

#[tokio::test]
async fn over_quota_is_429_with_retry_after_and_an_idempotency_key_is_honoured() {
    let app = App::start().await;
    let key = app.tenant("quota", "quota.test", one_a_day()).await;
    let send = json!({ "key": key, "from": "ada@quota.test" });
    let first = app.sdk("sendgrid_plain", send.clone()).await;
    assert_eq!(first.status, 202, "{first:?}");
    let second = app.sdk("sendgrid_plain", send).await;
    assert_eq!((second.status, second.raised.as_deref()), (429, Some("TooManyRequestsError")), "{second:?}");
    let retry_after: u64 = second.header("retry-after").parse().expect("a Retry-After in seconds");
    assert!((1..=86_400).contains(&retry_after), "{second:?}");
    assert_eq!(second.header("x-ratelimit-remaining"), "0");
    assert!(second.json()["errors"][0]["message"].as_str().unwrap().contains("per_day"), "{second:?}");

    // The same request twice with one Idempotency-Key: one message, the same ids.
    let mail = json!({ "personalizations": [{ "to": [{ "email": "bob@example.net" }] }, { "to": [{ "email": "eve@example.net" }] }],
                       "from": { "email": "ada@bitmail.test" }, "subject": "Once", "content": [{ "type": "text/plain", "value": "x" }] });
    let (http, _) = app.cluster.https_client();
    let post = || {
        http.post(format!("https://localhost:{}/v3/mail/send", app.cluster.edge.unwrap().port()))
            .bearer_auth(&app.key)
            .header("idempotency-key", "order-42")
            .json(&mail)
            .send()
    };
    let (a, b) = (post().await.unwrap(), post().await.unwrap());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (202, 202));
    let ids = |r: &reqwest::Response| r.headers()["x-bitmail-message-ids"].to_str().unwrap().to_owned();
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(ids(&a).split(',').count(), 2);
    app.fake.wait_for(3, std::time::Duration::from_secs(10)).await;
    app.received_after_a_moment().await;
    let once = app.fake.received().into_iter().filter(|r| r.body["subject"] == "Once").count();
    assert_eq!(once, 2, "each copy once");
}

#[tokio::test]
async fn send_at_keeps_the_message_in_the_spool_until_then() {
    let app = App::start().await;
    let at = bitmail_runtime::time::now_ms() / 1000 + 3;
    let answer = app.sdk("sendgrid_plain", json!({ "send_at": at })).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let id = answer.header("x-message-id").to_owned();
    assert_eq!(app.status(&id).await.state(), pb::DeliveryState::Queued);
    assert!(app.fake.received().is_empty(), "not before its time");
    app.delivered(&id).await;
    assert!(bitmail_runtime::time::now_ms() / 1000 >= at, "delivered at its time");
}
