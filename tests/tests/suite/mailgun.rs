//! Mailgun as a provider: a message reaches the Mailgun API with every field, BitMail's
//! id rides along as `v:bitmail_id`, and a failing SendGrid fails over to Mailgun.

use crate::common;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use common::{Cluster, deferred, mailgun, sendgrid, settled, submission};
use mta_server::config::SchedulerKind;

#[tokio::test]
async fn a_message_reaches_mailgun_with_every_field() {
    let fake = FakeMailgun::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![mailgun("mailgun", &fake, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;
    let request = pb::SubmitRequest {
        from: "Ada Lovelace <ada@bitmail.test>".into(),
        to: vec!["bob@example.net".into(), "\"Doe, Carol\" <carol@example.net>".into()],
        cc: vec!["dan@example.net".into()],
        bcc: vec!["eve@example.net".into()],
        reply_to: vec!["replies@bitmail.test".into()],
        subject: "Engine notes".into(),
        text: "See the notes.".into(),
        html: "<p>See the notes.</p>".into(),
        headers: vec![pb::Header { name: "X-Project".into(), value: "analytical".into() }],
        ..Default::default()
    };
    let id = mta.submit(request).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");

    let got = fake.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.domain, "mg.bitmail.test");
    assert_eq!(status.provider_message_id, m.message_id.trim_matches(['<', '>']));
    assert_eq!(m.field("from"), Some("Ada Lovelace <ada@bitmail.test>"));
    assert_eq!(m.all("to"), ["bob@example.net", "\"Doe, Carol\" <carol@example.net>"]);
    assert_eq!(m.all("cc"), ["dan@example.net"]);
    assert_eq!(m.all("bcc"), ["eve@example.net"]);
    assert_eq!(m.field("subject"), Some("Engine notes"));
    assert_eq!(m.field("text"), Some("See the notes."));
    assert_eq!(m.field("html"), Some("<p>See the notes.</p>"));
    assert_eq!(m.field("h:Reply-To"), Some("replies@bitmail.test"));
    assert_eq!(m.field("h:X-Project"), Some("analytical"));
    assert_eq!(m.field("v:bitmail_id"), Some(id.as_str()));
    assert!(!m.test_mode);
}

#[tokio::test]
async fn a_failing_sendgrid_fails_over_to_mailgun_and_a_bad_key_is_refused() {
    let sg = FakeSendGrid::start(common::KEY).await.unwrap();
    let mg = FakeMailgun::start(common::KEY).await.unwrap();
    sg.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    let t = Duration::from_secs(5);
    let cluster = Cluster::start_with(vec![sendgrid("sendgrid", &sg, t), mailgun("mailgun", &mg, t)], false, |c| {
        c.scheduler = SchedulerKind::Priority;
    })
    .await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent);
    assert_eq!(status.provider, "mailgun");
    assert_eq!(status.attempts[0].provider, "sendgrid");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Transient);
    assert_eq!(mg.received().len(), 1);

    // Mailgun with the wrong key: plain-text 401 Forbidden, classified as refused.
    let wrong = FakeMailgun::start("another-key").await.unwrap();
    let cluster = Cluster::start(vec![mailgun("mailgun", &wrong, t)], false).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = deferred(&mta, &id).await;
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("Forbidden"), "{:?}", status.attempts[0]);
}
