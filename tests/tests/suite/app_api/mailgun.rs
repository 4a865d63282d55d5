//! `POST /v3/{domain}/messages` and `.mime` through the official Python `mailgun` SDK.

use base64::prelude::*;
use bitmail_proto::v1 as pb;
use serde_json::json;

use super::{App, one_a_day};

#[tokio::test]
async fn recipient_variables_make_one_message_per_recipient_with_files_headers_and_variables() {
    let app = App::start().await;
    let answer = app.sdk("mailgun_rich", json!({})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = answer.json();
    assert_eq!(body["message"], "Queued. Thank you.");
    let ids = answer.ids();
    assert_eq!(ids.len(), 2, "{answer:?}");
    assert_eq!(body["id"], format!("<{}@bitmail.test>", ids[0]));

    let bob = app.delivered(&ids[0]).await;
    assert_eq!(bob["personalizations"][0]["to"], json!([{ "email": "bob@example.net", "name": "Bob" }]));
    assert_eq!(bob["from"], json!({ "email": "ada@bitmail.test", "name": "Ada Lovelace" }));
    assert_eq!(bob["subject"], "Hello Bob");
    assert_eq!(bob["content"][0]["value"], "Your code is 11.");
    assert_eq!(bob["content"][1]["value"], "<p>Your code is 11.</p><img src=\"cid:logo.png\">");
    assert_eq!(bob["headers"]["X-Campaign"], "spring");
    assert_eq!(bob["custom_args"]["order"], "11");
    assert_eq!(bob["categories"], json!(["welcome"]));
    let files = bob["attachments"].as_array().unwrap();
    assert_eq!(
        (files[0]["filename"].as_str(), files[0]["type"].as_str()),
        (Some("report.pdf"), Some("application/pdf"))
    );
    assert_eq!(BASE64_STANDARD.decode(files[0]["content"].as_str().unwrap()).unwrap(), b"%PDF-1.4 report");
    assert_eq!((files[1]["disposition"].as_str(), files[1]["content_id"].as_str()), (Some("inline"), Some("logo.png")));

    let eve = app.delivered(&ids[1]).await;
    assert_eq!(eve["personalizations"][0]["to"], json!([{ "email": "eve@example.net" }]));
    assert_eq!((eve["subject"].as_str(), eve["custom_args"]["order"].as_str()), (Some("Hello Eve"), Some("22")));
    assert_eq!(app.status(&ids[1]).await.tenant, "default");
}

#[tokio::test]
async fn a_mime_message_is_sent_to_the_to_field() {
    let app = App::start().await;
    let answer = app.sdk("mailgun_mime", json!({})).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = &answer.ids()[0];
    let sent = app.delivered(id).await;
    assert_eq!(sent["subject"], "Raw hello");
    assert_eq!(sent["personalizations"][0]["to"], json!([{ "email": "bob@example.net" }]));
    assert_eq!(sent["content"][0]["value"].as_str().unwrap().trim(), "Hello from MIME.");
    assert_eq!(sent["headers"]["X-Campaign"], "mime");
    assert_eq!(BASE64_STANDARD.decode(sent["attachments"][0]["content"].as_str().unwrap()).unwrap(), b"%PDF");
}

#[tokio::test]
async fn test_mode_checks_answers_as_sent_and_sends_nothing() {
    let app = App::start().await;
    let answer = app.sdk("mailgun_plain", json!({ "extra": { "o:testmode": "yes" } })).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["message"], "Queued. Thank you.");
    let outside =
        app.sdk("mailgun_plain", json!({ "extra": { "o:testmode": "yes" }, "from": "ada@elsewhere.test" })).await;
    assert_eq!(outside.status, 403, "{outside:?}");
    assert_eq!(app.received_after_a_moment().await, 0);
}

#[tokio::test]
async fn errors_reach_the_sdk_in_mailguns_shape_and_nothing_is_sent() {
    let app = App::start_with(|c| c.max_message_bytes = 100_000).await;

    let wrong = app.sdk("mailgun_plain", json!({ "key": "bmk_000000000000_wrongsecretwrongsecret" })).await;
    assert_eq!((wrong.status, wrong.body.as_str()), (401, "Forbidden"), "{wrong:?}");

    let unknown = app.sdk("mailgun_plain", json!({ "domain": "not-ours.test" })).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.json()["message"].as_str().unwrap().contains("Domain not found"), "{unknown:?}");

    let outside = app.sdk("mailgun_plain", json!({ "from": "ada@elsewhere.test" })).await;
    assert_eq!(outside.status, 403, "{outside:?}");

    let big = app.sdk("mailgun_plain", json!({ "attachment_bytes": 200_000 })).await;
    assert_eq!(big.status, 413, "{big:?}");

    for (extra, field) in [
        (json!({ "h:X-Bad": "a\r\nBcc: victim@example.org" }), "h:X-Bad"),
        (json!({ "o:deliverytime": "Thu, 13 Oct 2005 15:00:00 +0000" }), "o:deliverytime"),
        (json!({ "template": "welcome" }), "template"),
        (json!({ "recipient-variables": "{not json" }), "recipient-variables"),
    ] {
        let answer = app.sdk("mailgun_plain", json!({ "extra": extra })).await;
        assert_eq!(answer.status, 400, "{field}: {answer:?}");
        assert!(answer.json()["message"].as_str().unwrap().starts_with(field), "{field}: {answer:?}");
    }
    let injected =
        app.sdk("mailgun_plain", json!({ "from": "Ada\r\nBcc: victim@example.org <ada@bitmail.test>" })).await;
    assert_eq!(injected.status, 400, "{injected:?}");
    assert_eq!(app.received_after_a_moment().await, 0, "nothing was sent");
}

#[tokio::test]
async fn over_quota_is_429_with_retry_after_and_the_sdk_retries_a_rate_limit_as_told() {
    let app = App::start().await;
    let key = app.tenant("quota", "quota.test", one_a_day()).await;
    let send = json!({ "key": key, "from": "ada@quota.test", "domain": "quota.test" });
    assert_eq!(app.sdk("mailgun_plain", send.clone()).await.status, 200);
    let second = app.sdk("mailgun_plain", send).await;
    assert_eq!(second.status, 429, "{second:?}");
    let retry_after: u64 = second.header("retry-after").parse().expect("a Retry-After in seconds");
    assert!((1..=86_400).contains(&retry_after), "{second:?}");

    // One message a second: the second is refused for about a second, and the SDK,
    // honouring Retry-After, sends it again and gets it through.
    let rate = pb::Quotas { per_second: 1.0, burst: 1, per_day: 1000, ..one_a_day() };
    let key = app.tenant("rate", "rate.test", rate).await;
    let send = json!({ "key": key, "from": "ada@rate.test", "domain": "rate.test", "retries": 3 });
    assert_eq!(app.sdk("mailgun_plain", send.clone()).await.status, 200);
    let started = std::time::Instant::now();
    let retried = app.sdk("mailgun_plain", send).await;
    assert_eq!(retried.status, 200, "{retried:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(500), "it waited as told");
}

#[tokio::test]
async fn delivery_time_keeps_the_message_in_the_spool_until_then() {
    let app = App::start().await;
    // RFC 2822 has whole seconds: 3 s from now, rounded up.
    let at_secs = bitmail_runtime::time::now_ms() / 1000 + 3;
    let date = mail_date(at_secs);
    let answer = app.sdk("mailgun_plain", json!({ "extra": { "o:deliverytime": date } })).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let id = &answer.ids()[0];
    assert_eq!(app.status(id).await.state(), pb::DeliveryState::Queued);
    assert!(app.fake.received().is_empty(), "not before its time");
    app.delivered(id).await;
    assert!(bitmail_runtime::time::now_ms() / 1000 >= at_secs, "delivered at its time");
}

/// `Tue, 01 Dec 2026 23:30:00 +0000` for a Unix time.
fn mail_date(secs: u64) -> String {
    let c = bitmail_runtime::time::civil(secs);
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let weekday = weekdays[(secs / 86_400 % 7) as usize];
    let month = months[c.month as usize - 1];
    format!("{weekday}, {:02} {month} {} {:02}:{:02}:{:02} +0000", c.day, c.year, c.hour, c.minute, c.second)
}
