//! Provider health as an operator sees it through `ListProviders`: a failing provider's
//! circuit opens after the threshold and new mail stops going to it; a rejected message
//! does not harm a provider; with every provider set aside the gateway says it is
//! degraded and keeps mail on disk without churning; pause, resume and retry-now work;
//! WatchMessages streams the changes.

use crate::common;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use common::{Cluster, sendgrid, settled, submission};
use tokio_stream::StreamExt;

async fn providers(mta: &mut common::Mta) -> pb::ListProvidersResponse {
    mta.list_providers(pb::ListProvidersRequest {}).await.unwrap().into_inner()
}

fn circuit(list: &pb::ListProvidersResponse, name: &str) -> pb::CircuitState {
    list.providers.iter().find(|p| p.name == name).unwrap().circuit()
}

#[tokio::test]
async fn a_failing_provider_is_skipped_once_its_circuit_opens() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let b = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(5);
    let cluster = Cluster::start_with(vec![sendgrid("a", &a, t), sendgrid("b", &b, t)], false, |c| {
        c.health.failure_threshold = 2;
        c.health.cool_down_secs = 3600;
    })
    .await;
    a.set_behavior(Behavior::Fail { status: 502, body: String::new() });
    let mut mta = cluster.mta_client().await;

    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(mta.submit(submission(&format!("r{i}@example.net"))).await.unwrap().into_inner().message_id);
        settled(&mut mta, ids.last().unwrap(), Duration::from_secs(10)).await;
    }
    for id in &ids {
        let status = mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
        assert_eq!(status.state(), pb::DeliveryState::Sent);
        assert_eq!(status.provider, "b");
    }
    assert_eq!(a.requests(), 2, "after two failures a is no longer tried");
    let list = providers(&mut mta).await;
    assert_eq!(circuit(&list, "a"), pb::CircuitState::Open);
    assert_eq!(circuit(&list, "b"), pb::CircuitState::Closed);
    assert!(!list.degraded);
    let a_status = list.providers.iter().find(|p| p.name == "a").unwrap();
    assert!(a_status.last_error.contains("502"), "{a_status:?}");
    assert_eq!(a_status.success_rate, 0.0);
    assert_eq!(list.providers.iter().find(|p| p.name == "b").unwrap().success_rate, 1.0);

    // An operator fixed a: resuming closes its circuit and it gets traffic again.
    a.set_behavior(Behavior::Accept);
    let resumed = mta.resume_provider(pb::ProviderRequest { name: "a".into() }).await.unwrap().into_inner();
    assert_eq!(resumed.circuit(), pb::CircuitState::Closed);
    for i in 0..4 {
        let id = mta.submit(submission(&format!("s{i}@example.net"))).await.unwrap().into_inner().message_id;
        settled(&mut mta, &id, Duration::from_secs(10)).await;
    }
    assert!(!a.received().is_empty(), "round-robin sends to a again");

    let unknown = mta.pause_provider(pb::ProviderRequest { name: "nope".into() }).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn rejected_messages_leave_the_provider_healthy() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start_with(vec![sendgrid("a", &a, Duration::from_secs(5))], false, |c| {
        c.health.failure_threshold = 2;
    })
    .await;
    a.set_behavior(Behavior::Fail {
        status: 400,
        body: r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#
            .into(),
    });
    let mut mta = cluster.mta_client().await;
    for i in 0..5 {
        let id = mta.submit(submission(&format!("r{i}@example.net"))).await.unwrap().into_inner().message_id;
        assert_eq!(settled(&mut mta, &id, Duration::from_secs(10)).await.state(), pb::DeliveryState::Failed);
    }
    let list = providers(&mut mta).await;
    assert_eq!(circuit(&list, "a"), pb::CircuitState::Closed);
    assert_eq!(a.requests(), 5);
}

#[tokio::test]
async fn paused_everywhere_means_degraded_and_mail_waits_until_resumed() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("a", &a, Duration::from_secs(5))], false).await;
    let mut mta = cluster.mta_client().await;

    let paused = mta.pause_provider(pb::ProviderRequest { name: "a".into() }).await.unwrap().into_inner();
    assert_eq!(paused.circuit(), pb::CircuitState::Paused);

    let mut watch =
        mta.watch_messages(pb::WatchMessagesRequest { message_id: String::new() }).await.unwrap().into_inner();
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;

    // Accepted, and then left alone on disk: with nobody to send it, no round runs.
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((first.message_id.as_str(), first.state()), (id.as_str(), pb::DeliveryState::Queued));
    // What is tested here is that nothing happens, so there is no event to wait for: a
    // fixed wait is the test. Submit woke the dispatcher, so a round that was going to
    // start would have stored "sending" (or "deferred") well within this time.
    let change = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
    assert!(change.is_err(), "no status change while every provider is paused: {change:?}");
    let list = providers(&mut mta).await;
    assert!(list.degraded);
    assert_eq!(list.backlog, 1);
    assert_eq!(a.requests(), 0);
    let status = mta.get_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(status.state(), pb::DeliveryState::Queued);
    assert!(status.attempts.is_empty(), "no provider was tried: {status:?}");

    // Resuming the provider lets the waiting message go at once.
    mta.resume_provider(pb::ProviderRequest { name: "a".into() }).await.unwrap();
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent);
    assert!(!providers(&mut mta).await.degraded);

    let again = mta.retry_message(pb::GetMessageRequest { message_id: id }).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(again.message().contains("already sent"));
}

#[tokio::test]
async fn retry_now_sends_a_failed_message_again() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let cluster = Cluster::start(vec![sendgrid("a", &a, Duration::from_secs(5))], false).await;
    a.set_behavior(Behavior::Fail { status: 400, body: r#"{"errors":[{"message":"temporarily odd"}]}"#.into() });
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    assert_eq!(settled(&mut mta, &id, Duration::from_secs(10)).await.state(), pb::DeliveryState::Failed);

    a.set_behavior(Behavior::Accept);
    let retried = mta.retry_message(pb::GetMessageRequest { message_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(retried.state(), pb::DeliveryState::Queued);
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Sent);
    assert_eq!(status.attempts.len(), 2);
    assert_eq!(a.received().len(), 1);
}
