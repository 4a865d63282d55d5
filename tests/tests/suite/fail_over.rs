//! What happens when a provider fails: a transient error or refusal moves the message to
//! the next provider at once; a message rejected by a provider is failed without trying
//! another; a provider that never answers is an ambiguous attempt, and the copy sent
//! elsewhere is flagged as a possible duplicate (or, by policy, deferred or failed).

use crate::common;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use common::{Cluster, deferred, sendgrid, settled, submission};

const SENDGRID_500: &str = r#"{"errors":[{"message":"Internal error","field":null,"help":null}]}"#;

async fn two_providers(timeout: Duration) -> (FakeSendGrid, FakeSendGrid, Cluster) {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let b = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("a", &a, timeout), sendgrid("b", &b, timeout)], false).await;
    (a, b, cluster)
}

#[tokio::test]
async fn a_5xx_from_one_provider_sends_through_the_other_at_once() {
    let (a, b, cluster) = two_providers(Duration::from_secs(5)).await;
    a.set_behavior(Behavior::Fail { status: 500, body: SENDGRID_500.into() });
    let mut mta = cluster.mta_client().await;

    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(mta.submit(submission(&format!("r{i}@example.net"))).await.unwrap().into_inner().message_id);
    }
    for id in &ids {
        let status = settled(&mut mta, id, Duration::from_secs(10)).await;
        assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
        assert_eq!(status.provider, "b");
        assert!(!status.possible_duplicate);
        if status.attempts.len() == 2 {
            assert_eq!(status.attempts[0].provider, "a");
            assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Transient);
            assert!(status.attempts[0].detail.contains("Internal error"), "{:?}", status.attempts[0]);
        }
    }
    assert_eq!(b.received().len(), 4);
    assert!(a.received().is_empty());
    assert!(a.requests() >= 1, "round-robin put a first for some of them");
}

#[tokio::test]
async fn bad_credentials_set_the_provider_aside_for_this_message() {
    let a = FakeSendGrid::start("a-different-key").await.unwrap();
    let b = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(5);
    let cluster = Cluster::start(vec![sendgrid("a", &a, t), sendgrid("b", &b, t)], false).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent);
    assert_eq!(status.provider, "b");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::ProviderRefused);
    assert!(status.attempts[0].detail.contains("401"), "{:?}", status.attempts[0]);
}

#[tokio::test]
async fn a_rejected_message_fails_without_trying_another_provider() {
    let (a, b, cluster) = two_providers(Duration::from_secs(5)).await;
    let invalid = r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":null}]}"#;
    a.set_behavior(Behavior::Fail { status: 400, body: invalid.into() });
    b.set_behavior(Behavior::Fail { status: 400, body: invalid.into() });
    let mut mta = cluster.mta_client().await;

    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:?}");
    assert_eq!(status.attempts.len(), 1, "no second provider is tried");
    assert!(status.error.contains("Does not contain a valid address"), "{}", status.error);
    assert_eq!(a.requests() + b.requests(), 1);
}

#[tokio::test]
async fn a_provider_that_never_answers_is_ambiguous_and_the_resend_is_flagged() {
    let (a, b, cluster) = two_providers(Duration::from_millis(300)).await;
    a.set_behavior(Behavior::Hang);
    b.set_behavior(Behavior::Hang);
    let mut mta = cluster.mta_client().await;

    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    // Both hang: the first round ends deferred, with two ambiguous attempts.
    let status = deferred(&mta, &id).await;
    assert_eq!(status.attempts.len(), 2, "{status:?}");
    assert!(status.attempts.iter().all(|a| a.outcome() == pb::AttemptOutcome::Ambiguous), "{status:?}");
    assert!(status.next_attempt_at_unix_ms > 0);

    // One recovers; the retry delivers, flagged as a possible duplicate.
    b.set_behavior(Behavior::Accept);
    a.set_behavior(Behavior::Accept);
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert!(status.possible_duplicate);
}

#[tokio::test]
async fn with_every_provider_down_messages_are_deferred_then_delivered() {
    let (a, b, cluster) = two_providers(Duration::from_secs(5)).await;
    a.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    b.set_behavior(Behavior::Fail { status: 429, body: String::new() });
    let mut mta = cluster.mta_client().await;

    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = deferred(&mta, &id).await;
    assert!(status.error.contains("429") || status.error.contains("503"), "{}", status.error);

    a.set_behavior(Behavior::Accept);
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert_eq!(status.provider, "a");
    assert!(!status.possible_duplicate);
}

/// Provider `a` never answers, `b` works; the scheduler tries `a` first.
async fn hang_then_working(policy: mta_server::delivery::AmbiguousPolicy) -> (FakeSendGrid, FakeSendGrid, Cluster) {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let b = FakeSendGrid::start(common::KEY).await.unwrap();
    a.set_behavior(Behavior::Hang);
    let t = Duration::from_millis(300);
    let cluster = Cluster::start_with(vec![sendgrid("a", &a, t), sendgrid("b", &b, t)], false, |c| {
        c.scheduler = mta_server::config::SchedulerKind::Priority;
        c.delivery.ambiguous = policy;
    })
    .await;
    (a, b, cluster)
}

#[tokio::test]
async fn the_defer_policy_waits_before_resending_and_flags_the_resend() {
    let (a, b, cluster) = hang_then_working(mta_server::delivery::AmbiguousPolicy::Defer).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    // Not handed to b at once: deferred after the one ambiguous attempt.
    let status = deferred(&mta, &id).await;
    assert_eq!(status.attempts.len(), 1, "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Ambiguous);
    assert_eq!(b.requests(), 0);

    // The next round (retry.initial_secs = 1 in tests) sends it, flagged.
    a.set_behavior(Behavior::Accept);
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent, "{status:?}");
    assert!(status.possible_duplicate, "{status:?}");
    assert_eq!(status.attempts.len(), 2);
}

#[tokio::test]
async fn the_fail_policy_never_risks_a_duplicate() {
    let (_a, b, cluster) = hang_then_working(mta_server::delivery::AmbiguousPolicy::Fail).await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:?}");
    assert!(status.error.contains("may have been sent"), "{}", status.error);
    assert!(!status.possible_duplicate);
    assert_eq!(status.attempts.len(), 1);
    assert_eq!(b.requests(), 0, "no second copy went out");
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_is_ambiguous_and_the_resend_is_flagged() {
    let (a, b, cluster) = hang_then_working(mta_server::delivery::AmbiguousPolicy::FailOver).await;
    a.set_behavior(Behavior::Drop);
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "b"), "{status:?}");
    assert_eq!(status.attempts[0].outcome(), pb::AttemptOutcome::Ambiguous, "{status:?}");
    assert!(status.attempts[0].detail.contains("connection"), "{}", status.attempts[0].detail);
    assert!(status.possible_duplicate);
    assert_eq!((a.requests(), b.received().len()), (1, 1));
}
