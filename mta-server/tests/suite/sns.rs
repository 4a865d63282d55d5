//! Amazon SNS message verification against the SNS stand-in (a real HTTPS server with a
//! throwaway CA serving the signing certificate), and SES's events read from verified
//! notifications.

use bitmail_proto::v1::EventKind;
use bitmail_tests::sns::{SnsStandIn, iso8601, now_ms};
use mta_server::events::Refused;
use mta_server::events::ses;
use mta_server::events::sns::{SnsKind, SnsMessage, SnsSettings, Verifier};
use serde_json::{Value, json};

const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:bitmail-events";

fn verifier(sns: &SnsStandIn) -> Verifier {
    Verifier::new(SnsSettings {
        topics: vec![TOPIC.to_owned()],
        cert_hosts: vec![sns.cert_host.clone()],
        extra_roots_pem: Some(sns.ca_pem.clone().into_bytes()),
    })
    .unwrap()
}

fn unauthorized(result: Result<SnsMessage, Refused>, why: &str) -> String {
    match result {
        Err(Refused::Unauthorized(reason)) => {
            assert!(reason.contains(why), "{reason:?} should say {why:?}");
            reason
        }
        other => panic!("expected Unauthorized ({why}), got {other:?}"),
    }
}

/// A notification's fields as SNS sends them, before signing.
fn fields(message: &str, timestamp_ms: u64) -> serde_json::Map<String, Value> {
    json!({
        "Type": "Notification",
        "MessageId": "6f6e1a2b-0000-4000-8000-000000000001",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": message,
        "Timestamp": iso8601(timestamp_ms),
    })
    .as_object()
    .cloned()
    .unwrap()
}

#[tokio::test]
async fn signature_versions_1_and_2_verify_and_the_certificate_is_fetched_once() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    for version in [1, 2, 1, 2] {
        let body = sns.notification(TOPIC, r#"{"eventType":"Send"}"#, version);
        let message = verifier.verify(body.as_bytes(), now_ms()).await.unwrap();
        assert_eq!(message.kind, SnsKind::Notification);
        assert_eq!(message.topic_arn, TOPIC);
        assert_eq!(message.message, r#"{"eventType":"Send"}"#);
        assert!(now_ms().abs_diff(message.timestamp_ms) < 60_000);
    }
    // With a Subject (part of the signed string when present).
    let body = sns.sign(fields("hello\nworld", now_ms()), 2, &sns.cert_url);
    let message = verifier.verify(body.as_bytes(), now_ms()).await.unwrap();
    assert_eq!(message.subject.as_deref(), Some("Amazon SES Email Event Notification"));
    assert_eq!(message.message, "hello\nworld");
    assert_eq!(sns.cert_fetches(), 1, "one certificate URL: fetched once");
    assert_eq!(verifier.cached_certificates(), 1);
}

#[tokio::test]
async fn tampered_messages_and_other_topics_are_refused() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    for version in [1, 2] {
        let body = sns.notification(TOPIC, r#"{"eventType":"Bounce"}"#, version);
        let mut value: Value = serde_json::from_str(&body).unwrap();
        value["Message"] = r#"{"eventType":"Delivery"}"#.into();
        unauthorized(verifier.verify(value.to_string().as_bytes(), now_ms()).await, "does not match");

        // A Subject added after signing is part of the signed string: refused.
        let mut value: Value = serde_json::from_str(&body).unwrap();
        value["Subject"] = "added".into();
        unauthorized(verifier.verify(value.to_string().as_bytes(), now_ms()).await, "does not match");
    }

    let other = "arn:aws:sns:eu-west-1:123456789012:someone-else";
    let body = sns.notification(other, "{}", 2);
    match verifier.verify(body.as_bytes(), now_ms()).await {
        Err(Refused::Forbidden(why)) => assert!(why.contains("is not one BitMail accepts"), "{why}"),
        other => panic!("expected 403 for another topic, got {other:?}"),
    }

    let mut value: Value = serde_json::from_str(&sns.notification(TOPIC, "{}", 2)).unwrap();
    value["SignatureVersion"] = "3".into();
    unauthorized(verifier.verify(value.to_string().as_bytes(), now_ms()).await, "SignatureVersion");
    value.as_object_mut().unwrap().remove("Signature");
    value["SignatureVersion"] = "2".into();
    unauthorized(verifier.verify(value.to_string().as_bytes(), now_ms()).await, "not signed");
}

#[tokio::test]
async fn certificates_only_over_https_from_allowed_hosts() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    let port = sns.addr().port();
    for (url, why) in [
        (format!("http://localhost:{port}/SimpleNotificationService-test.pem"), "not https"),
        (format!("https://127.0.0.1:{port}/SimpleNotificationService-test.pem"), "not on an SNS host"),
        (format!("https://localhost:{}/SimpleNotificationService-test.pem", port ^ 1), "not on an SNS host"),
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem".to_owned(), "not on an SNS host"),
        (format!("https://localhost:{port}/SimpleNotificationService-test.txt"), ".pem"),
        (format!("https://localhost:{port}/SimpleNotificationService-test.pem?v=1"), "query"),
        (format!("https://localhost:{port}/SimpleNotificationService-test.pem#x"), "query or fragment"),
    ] {
        let body = sns.sign(fields("{}", now_ms()), 2, &url);
        unauthorized(verifier.verify(body.as_bytes(), now_ms()).await, why);
    }
    assert_eq!(sns.cert_fetches(), 0, "nothing was fetched from a refused URL");

    // By default only SNS's own hosts are allowed, so the stand-in's is refused too.
    let default = Verifier::new(SnsSettings { topics: vec![TOPIC.to_owned()], ..Default::default() }).unwrap();
    let body = sns.notification(TOPIC, "{}", 2);
    unauthorized(default.verify(body.as_bytes(), now_ms()).await, "not on an SNS host");
    assert_eq!(sns.cert_fetches(), 0);
}

#[tokio::test]
async fn a_server_not_trusted_or_not_answering_is_unavailable_not_accepted() {
    let sns = SnsStandIn::start().await.unwrap();
    // Without the stand-in's CA, its TLS certificate is not trusted.
    let untrusting = Verifier::new(SnsSettings {
        topics: vec![TOPIC.to_owned()],
        cert_hosts: vec![sns.cert_host.clone()],
        extra_roots_pem: None,
    })
    .unwrap();
    let body = sns.notification(TOPIC, "{}", 2);
    match untrusting.verify(body.as_bytes(), now_ms()).await {
        Err(e @ Refused::Unavailable(_)) => assert_eq!(e.http_status(), 503),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(untrusting.cached_certificates(), 0);

    let verifier = verifier(&sns);
    let missing = format!("{}/no-such-cert.pem", sns.base_url);
    let body = sns.sign(fields("{}", now_ms()), 2, &missing);
    assert!(
        matches!(verifier.verify(body.as_bytes(), now_ms()).await, Err(Refused::Unavailable(m)) if m.contains("404"))
    );
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    let now = now_ms();
    let stale = sns.notification_at(TOPIC, "{}", 2, now - 3_601_000);
    unauthorized(verifier.verify(stale.as_bytes(), now).await, "old");
    let future = sns.notification_at(TOPIC, "{}", 2, now + 3_600_000);
    unauthorized(verifier.verify(future.as_bytes(), now).await, "future");
    // SNS retries keep the first Timestamp: 59 minutes old is still taken.
    let retried = sns.notification_at(TOPIC, "{}", 2, now - 59 * 60_000);
    verifier.verify(retried.as_bytes(), now).await.unwrap();
}

#[tokio::test]
async fn what_is_not_an_sns_message_is_malformed() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    for body in [&b"not json"[..], b"[1, 2]", br#"{"Type": "Notification"}"#, br#"{"Type": "Other", "MessageId": "m"}"#]
    {
        match verifier.verify(body, now_ms()).await {
            Err(e @ Refused::Malformed(_)) => assert_eq!(e.http_status(), 400),
            other => panic!("{:?}: expected Malformed, got {other:?}", String::from_utf8_lossy(body)),
        }
    }
    assert_eq!(sns.cert_fetches(), 0);
}

#[tokio::test]
async fn a_subscription_confirmation_is_verified_then_confirmed() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    let body = sns.subscription_confirmation(TOPIC);
    let message = verifier.verify(body.as_bytes(), now_ms()).await.unwrap();
    assert_eq!(message.kind, SnsKind::SubscriptionConfirmation);
    assert!(message.subscribe_url.as_deref().unwrap().starts_with(&format!("{}/confirm?", sns.base_url)));
    assert_eq!(sns.confirmations(), 0, "verifying does not confirm");
    verifier.confirm(&message).await.unwrap();
    assert_eq!(sns.confirmations(), 1);
    assert!(sns.confirmation_queries()[0].contains(&format!("TopicArn={TOPIC}")));

    // The Token is signed.
    let mut value: Value = serde_json::from_str(&body).unwrap();
    value["Token"] = "another".into();
    unauthorized(verifier.verify(value.to_string().as_bytes(), now_ms()).await, "does not match");

    // A SubscribeURL elsewhere is not visited, and a notification is not a confirmation.
    let mut elsewhere = message.clone();
    elsewhere.subscribe_url = Some("https://example.com/confirm?Token=x".into());
    assert!(verifier.confirm(&elsewhere).await.unwrap_err().contains("not on an SNS host"));
    let notification = verifier.verify(sns.notification(TOPIC, "{}", 2).as_bytes(), now_ms()).await.unwrap();
    assert!(verifier.confirm(&notification).await.is_err());
    // A refused confirmation (SNS answers 400 to a bad token) is an error.
    let mut bad = message.clone();
    bad.subscribe_url = Some(format!("{}/confirm?Action=Other", sns.base_url));
    assert!(verifier.confirm(&bad).await.unwrap_err().contains("400"));
    assert_eq!(sns.confirmations(), 1);
}

// --- SES events -------------------------------------------------------------------

fn sns_message(message: Value) -> SnsMessage {
    SnsMessage {
        kind: SnsKind::Notification,
        message_id: "sns-1".into(),
        topic_arn: TOPIC.into(),
        subject: None,
        message: message.to_string(),
        timestamp_ms: 1_700_000_000_000,
        subscribe_url: None,
    }
}

fn mail(destination: &[&str]) -> Value {
    json!({
        "timestamp": "2023-11-14T22:13:20.000Z",
        "source": "sender@example.com",
        "messageId": "0100018bd5f1-ses",
        "destination": destination,
        "tags": { "ses:configuration-set": ["bitmail"], "bitmail_id": ["m-42"] },
    })
}

#[tokio::test]
async fn a_permanent_bounce_of_two_recipients_from_a_verified_notification() {
    let sns = SnsStandIn::start().await.unwrap();
    let verifier = verifier(&sns);
    let event = json!({
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                { "emailAddress": "Ann@Example.com", "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown" },
                { "emailAddress": "bob@example.com", "action": "failed", "status": "5.1.1" }
            ],
            "timestamp": "2023-11-14T22:13:25.500Z",
            "feedbackId": "fb-1"
        },
        "mail": mail(&["ann@example.com", "bob@example.com", "cy@example.com"]),
    });
    let body = sns.notification(TOPIC, &event.to_string(), 1);
    let message = verifier.verify(body.as_bytes(), now_ms()).await.unwrap();
    let events = ses::events("ses-main", &message).unwrap();
    assert_eq!(events.len(), 2);
    for (event, recipient) in events.iter().zip(["ann@example.com", "bob@example.com"]) {
        assert_eq!(event.message_id, "m-42");
        assert_eq!(event.kind(), EventKind::Bounced);
        assert!(event.record.permanent && event.suppresses());
        assert_eq!(event.record.recipient, recipient);
        assert_eq!(event.record.provider, "ses-main");
        assert_eq!(event.record.at_ms, 1_700_000_005_500);
        assert_eq!(event.record.event_id, format!("{}:{recipient}", message.message_id));
    }
    assert_eq!(events[0].record.detail, "smtp; 550 5.1.1 user unknown; Permanent General");
    assert_eq!(events[1].record.detail, "5.1.1; Permanent General");
}

#[test]
fn a_transient_bounce_is_soft() {
    let event = json!({
        "eventType": "Bounce",
        "bounce": { "bounceType": "Transient", "bounceSubType": "MailboxFull",
                    "bouncedRecipients": [{ "emailAddress": "ann@example.com" }] },
        "mail": mail(&["ann@example.com"]),
    });
    let events = ses::events("ses", &sns_message(event)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind(), EventKind::Bounced);
    assert!(!events[0].record.permanent && !events[0].suppresses());
    assert_eq!(events[0].record.at_ms, 1_700_000_000_000, "no bounce timestamp: the mail's");
}

#[test]
fn delivery_complaint_and_delay() {
    let delivery = json!({
        "eventType": "Delivery",
        "delivery": { "timestamp": "2023-11-14T22:13:21.000Z", "processingTimeMillis": 1000,
                      "recipients": ["ann@example.com"], "smtpResponse": "250 2.6.0 Message received" },
        "mail": mail(&["ann@example.com", "bob@example.com"]),
    });
    let events = ses::events("ses", &sns_message(delivery)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind(), EventKind::Delivered);
    assert_eq!((events[0].record.recipient.as_str(), events[0].record.at_ms), ("ann@example.com", 1_700_000_001_000));
    assert_eq!(events[0].record.detail, "250 2.6.0 Message received");

    // An identity notification: no tags, the id in the original headers.
    let mut no_tags = mail(&["bob@example.com"]);
    no_tags.as_object_mut().unwrap().remove("tags");
    no_tags["headers"] =
        json!([{ "name": "From", "value": "a@example.com" }, { "name": "x-bitmail-id", "value": "m-7" }]);
    let complaint = json!({
        "notificationType": "Complaint",
        "complaint": { "complainedRecipients": [{ "emailAddress": "bob@example.com" }],
                       "timestamp": "2023-11-14T22:20:00.000Z", "complaintFeedbackType": "abuse" },
        "mail": no_tags,
    });
    let events = ses::events("ses", &sns_message(complaint)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message_id, "m-7");
    assert_eq!(events[0].kind(), EventKind::Complained);
    assert!(events[0].suppresses());
    assert_eq!(events[0].record.detail, "abuse");
    assert_eq!(events[0].record.event_id, "sns-1:bob@example.com");

    let delay = json!({
        "eventType": "DeliveryDelay",
        "deliveryDelay": { "delayType": "TransientCommunicationFailure", "timestamp": "2023-11-14T22:30:00.000Z",
                           "delayedRecipients": [{ "emailAddress": "cy@example.com", "status": "4.4.1",
                                                   "diagnosticCode": "smtp; 421 4.4.1 try later" }] },
        "mail": mail(&["cy@example.com"]),
    });
    let events = ses::events("ses", &sns_message(delay)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind(), EventKind::Deferred);
    assert_eq!(events[0].record.detail, "smtp; 421 4.4.1 try later; TransientCommunicationFailure");
    assert!(!events[0].suppresses());
}

#[test]
fn send_open_click_reject_and_unsubscribe_cover_every_destination() {
    let cases = [
        (json!({ "eventType": "Send", "send": {} }), EventKind::Accepted, ""),
        (json!({ "eventType": "Open", "open": { "timestamp": "2023-11-14T23:00:00.000Z" } }), EventKind::Opened, ""),
        (
            json!({ "eventType": "Click", "click": { "timestamp": "2023-11-14T23:00:00.000Z", "link": "https://example.com/x" } }),
            EventKind::Clicked,
            "https://example.com/x",
        ),
        (json!({ "eventType": "Reject", "reject": { "reason": "Bad content" } }), EventKind::Dropped, "Bad content"),
        (
            json!({ "eventType": "Rendering Failure", "failure": { "errorMessage": "Attribute 'name' is not present", "templateName": "welcome" } }),
            EventKind::Dropped,
            "Attribute 'name' is not present; welcome",
        ),
        (
            json!({ "eventType": "Subscription", "subscription": { "contactList": "news", "timestamp": "2023-11-14T23:00:00.000Z",
                    "newTopicPreferences": { "unsubscribeAll": true } } }),
            EventKind::Unsubscribed,
            "news",
        ),
    ];
    for (mut event, kind, detail) in cases {
        event["mail"] = mail(&["ann@example.com", "bob@example.com"]);
        let events = ses::events("ses", &sns_message(event.clone())).unwrap();
        assert_eq!(events.len(), 2, "{event}");
        assert!(
            events.iter().all(|e| e.kind() == kind && e.record.detail == detail && e.message_id == "m-42"),
            "{events:?}"
        );
        assert_eq!(events[1].record.recipient, "bob@example.com");
    }
}

#[test]
fn received_mail_foreign_mail_and_garbage() {
    let received = json!({ "notificationType": "Received", "mail": mail(&["inbox@example.org"]),
                           "receipt": {}, "content": "From: a@example.com\r\n\r\nhi" });
    assert_eq!(ses::events("ses", &sns_message(received)).unwrap(), vec![]);

    // Not sent by BitMail (no tag, no header): skipped.
    let mut foreign = mail(&["ann@example.com"]);
    foreign.as_object_mut().unwrap().remove("tags");
    let delivery =
        json!({ "eventType": "Delivery", "delivery": { "recipients": ["ann@example.com"] }, "mail": foreign });
    assert_eq!(ses::events("ses", &sns_message(delivery)).unwrap(), vec![]);

    // A subscription change that opts nobody out is no event.
    let subscribed = json!({ "eventType": "Subscription", "mail": mail(&["ann@example.com"]),
        "subscription": { "newTopicPreferences": { "unsubscribeAll": false,
            "topicSubscriptionStatus": [{ "topicName": "news", "subscriptionStatus": "OptIn" }] } } });
    assert_eq!(ses::events("ses", &sns_message(subscribed)).unwrap(), vec![]);

    for bad in [json!("just text"), json!({ "eventType": "Send" })] {
        assert!(matches!(ses::events("ses", &sns_message(bad)), Err(Refused::Malformed(_))));
    }
    let mut not_json = sns_message(json!({}));
    not_json.message = "not json".into();
    assert!(matches!(ses::events("ses", &not_json), Err(Refused::Malformed(_))));
}
