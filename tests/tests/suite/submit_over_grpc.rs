//! A message submitted to mta-server over gRPC reaches SendGrid with every field, and
//! GetMessage reports it sent with SendGrid's id. Bad submissions are refused with the
//! field named, and nothing reaches the provider.

use crate::common;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::FakeSendGrid;
use common::{Cluster, sendgrid, settled, submission};
use serde_json::json;

#[tokio::test]
async fn a_submitted_message_reaches_sendgrid_and_is_reported_sent() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;

    let request = pb::SubmitRequest {
        from: "Ada Lovelace <ada@bitmail.test>".into(),
        to: vec!["bob@example.net".into(), "Carol <carol@example.net>".into()],
        cc: vec!["dan@example.net".into()],
        subject: "Engine notes".into(),
        text: "See the notes.".into(),
        html: "<p>See the <b>notes</b>.</p>".into(),
        headers: vec![pb::Header { name: "X-Project".into(), value: "analytical".into() }],
        ..Default::default()
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    assert!(!id.is_empty());

    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    let received = fake.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(status.provider, "sendgrid");
    assert_eq!(status.provider_message_id, got.message_id);
    assert_eq!(status.attempts.len(), 1);
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Accepted);

    let body = &got.body;
    assert_eq!(body["from"], json!({ "email": "ada@bitmail.test", "name": "Ada Lovelace" }));
    assert_eq!(
        body["personalizations"][0]["to"],
        json!([{ "email": "bob@example.net" }, { "email": "carol@example.net", "name": "Carol" }])
    );
    assert_eq!(body["personalizations"][0]["cc"], json!([{ "email": "dan@example.net" }]));
    assert_eq!(body["subject"], "Engine notes");
    assert_eq!(
        body["content"],
        json!([
            { "type": "text/plain", "value": "See the notes." },
            { "type": "text/html", "value": "<p>See the <b>notes</b>.</p>" }
        ])
    );
    assert_eq!(body["headers"]["X-Project"], "analytical");
    assert_eq!(body["custom_args"]["bitmail_id"], id.as_str());
}

#[tokio::test]
async fn bad_submissions_name_the_field_and_send_nothing() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_with(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false, |c| {
        c.max_message_bytes = 64 * 1024;
    })
    .await;
    let mut mta = cluster.mta_client().await;

    let cases: Vec<(pb::SubmitRequest, &str)> = vec![
        (pb::SubmitRequest { to: vec!["bob at example".into()], ..submission("x@y.org") }, "to[0]"),
        (pb::SubmitRequest { from: "nobody".into(), ..submission("bob@example.net") }, "from"),
        (pb::SubmitRequest { to: vec![], ..submission("bob@example.net") }, "to"),
        (
            pb::SubmitRequest { subject: "Hi\r\nBcc: all@example.net".into(), ..submission("bob@example.net") },
            "subject",
        ),
        (
            pb::SubmitRequest {
                headers: vec![pb::Header { name: "X-Note".into(), value: "a\nb".into() }],
                ..submission("bob@example.net")
            },
            "headers[0].value",
        ),
        (pb::SubmitRequest { text: "x".repeat(100 * 1024), ..submission("bob@example.net") }, "text"),
    ];
    for (request, field) in cases {
        let err = mta.submit(request).await.expect_err(field);
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(&format!("{field}: ")), "{field}: {}", err.message());
    }

    // A good one afterwards still goes through, and is the only thing SendGrid saw.
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    assert_eq!(settled(&mut mta, &id, Duration::from_secs(10)).await.state(), pb::DeliveryState::Sent);
    assert_eq!(fake.requests(), 1);

    let err = mta.get_message(pb::GetMessageRequest { message_id: "no-such-id".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn an_idempotency_key_sends_once_and_answers_the_first_id() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest { idempotency_key: "invoice-2026-0042".into(), ..submission("bob@example.net") };

    let first = mta.submit(request.clone()).await.unwrap().into_inner();
    assert!(!first.duplicate);
    let again = mta.submit(request.clone()).await.unwrap().into_inner();
    assert_eq!(again.message_id, first.message_id);
    assert!(again.duplicate);
    settled(&mut mta, &first.message_id, Duration::from_secs(10)).await;
    let third = mta.submit(request).await.unwrap().into_inner();
    assert_eq!(third.message_id, first.message_id, "still the same after delivery");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.received().len(), 1);

    let bad = pb::SubmitRequest { idempotency_key: "tab\there".into(), ..submission("bob@example.net") };
    let err = mta.submit(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("idempotency_key: "), "{}", err.message());
}

#[tokio::test]
async fn over_the_disk_quota_submissions_are_refused_with_resource_exhausted() {
    let fake = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_with(vec![sendgrid("sendgrid", &fake, Duration::from_secs(5))], false, |c| {
        c.spool.max_bytes = 1;
    })
    .await;
    let mut mta = cluster.mta_client().await;
    let err = mta.submit(submission("bob@example.net")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("quota"), "{}", err.message());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.requests(), 0);
}
