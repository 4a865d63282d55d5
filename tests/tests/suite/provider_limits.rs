//! Per-provider limits: attempts in flight, attempts per second, and message size. A
//! provider at its limit is passed over for the next one; when no other can take the
//! message, delivery waits for a slot instead of deferring; a message too large for one
//! provider goes to one it fits, and one too large for all fails with a clear error.

use crate::common;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use common::{Cluster, sendgrid, settled, submission};
use mta_server::config::{ProviderConfig, SchedulerKind};
use mta_server::limits::ProviderLimits;

fn limited(mut config: ProviderConfig, limits: ProviderLimits) -> ProviderConfig {
    match &mut config {
        ProviderConfig::Sendgrid(c) => c.limits = limits,
        _ => unreachable!("these tests use SendGrid fakes"),
    }
    config
}

async fn submit_many(cluster: &Cluster, n: usize) -> Vec<pb::MessageStatus> {
    let mut ids = Vec::new();
    for i in 0..n {
        let mut mta = cluster.mta_client().await;
        ids.push(tokio::spawn(async move {
            mta.submit(submission(&format!("r{i}@example.net"))).await.unwrap().into_inner().message_id
        }));
    }
    let mut mta = cluster.mta_client().await;
    let mut out = Vec::new();
    for id in ids {
        out.push(settled(&mut mta, &id.await.unwrap(), Duration::from_secs(20)).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_provider_is_passed_over_and_its_in_flight_cap_holds() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let b = FakeSendGrid::start(common::KEY).await.unwrap();
    a.set_behavior(Behavior::Delay(Duration::from_millis(800)));
    let t = Duration::from_secs(5);
    let cluster = Cluster::start_with(
        vec![
            limited(sendgrid("a", &a, t), ProviderLimits { in_flight: Some(1), ..Default::default() }),
            sendgrid("b", &b, t),
        ],
        false,
        |c| c.scheduler = SchedulerKind::Priority,
    )
    .await;
    let statuses = submit_many(&cluster, 6).await;
    assert!(statuses.iter().all(|s| s.state() == pb::DeliveryState::Sent), "{statuses:?}");
    assert_eq!(a.max_concurrent(), 1, "a never had more than one request at once");
    assert!(b.received().len() >= 4, "the others went to b at once: a={} b={}", a.requests(), b.requests());
    // Passed over, not tried: no attempt at `a` was recorded for the messages `b` sent.
    for s in statuses.iter().filter(|s| s.provider == "b") {
        assert!(s.attempts.iter().all(|at| at.provider == "b"), "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_provider_the_messages_wait_for_a_slot_and_none_is_deferred() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    a.set_behavior(Behavior::Delay(Duration::from_millis(100)));
    let limits = ProviderLimits { in_flight: Some(2), per_second: Some(10.0), ..Default::default() };
    let cluster = Cluster::start(vec![limited(sendgrid("a", &a, Duration::from_secs(5)), limits)], false).await;
    let statuses = submit_many(&cluster, 16).await;
    for s in &statuses {
        assert_eq!(s.state(), pb::DeliveryState::Sent, "{s:?}");
        assert_eq!(s.attempts.len(), 1, "one attempt each, never deferred: {s:?}");
    }
    assert!(a.max_concurrent() <= 2, "in flight at once: {}", a.max_concurrent());
    // 10 per second with a burst of 10: 16 requests need at least 0.6 s.
    let times = a.request_times();
    let span = *times.last().unwrap() - times[0];
    assert!(span >= Duration::from_millis(550), "16 requests within {span:?}");
    // Never more than the burst plus what the rate refills in any window.
    for (i, t) in times.iter().enumerate() {
        let within_a_second = times[i..].iter().take_while(|u| **u - *t < Duration::from_secs(1)).count();
        assert!(within_a_second <= 20, "{within_a_second} requests within one second");
    }
}

#[tokio::test]
async fn a_message_too_large_for_one_provider_goes_to_another_and_too_large_for_all_fails() {
    let small = FakeSendGrid::start(common::KEY).await.unwrap();
    let big = FakeSendGrid::start(common::KEY).await.unwrap();
    let t = Duration::from_secs(5);
    let cap = |n| ProviderLimits { max_message_bytes: Some(n), ..Default::default() };
    let cluster = Cluster::start_with(
        vec![limited(sendgrid("small", &small, t), cap(2_000)), limited(sendgrid("big", &big, t), cap(20_000))],
        false,
        |c| c.scheduler = SchedulerKind::Priority,
    )
    .await;
    let mut mta = cluster.mta_client().await;
    let with_file = |bytes: usize| pb::SubmitRequest {
        attachments: vec![pb::Attachment {
            filename: "data.bin".into(),
            content: vec![7; bytes],
            ..Default::default()
        }],
        ..submission("bob@example.net")
    };

    let id = mta.submit(with_file(6_000)).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!((status.state(), status.provider.as_str()), (pb::DeliveryState::Sent, "big"), "{status:?}");
    assert_eq!(status.attempts.len(), 1, "small was not tried: {status:?}");
    assert_eq!(small.requests(), 0);

    // 16,000 bytes are 21,336 base64-encoded: over both.
    let id = mta.submit(with_file(16_000)).await.unwrap().into_inner().message_id;
    let status = settled(&mut mta, &id, Duration::from_secs(10)).await;
    assert_eq!(status.state(), pb::DeliveryState::Failed, "{status:?}");
    assert!(status.error.contains("over every provider's limit"), "{}", status.error);
    assert!(status.error.contains("big takes at most 20000 bytes"), "{}", status.error);
    assert!(status.attempts.is_empty());
    assert_eq!(big.requests(), 1);
}

#[tokio::test]
async fn bad_limits_are_config_errors_naming_the_key() {
    let toml = r#"
        [[providers]]
        name = "a"
        kind = "sendgrid"
        api_key = "k"
        limits = { in_flight = 0, per_second = -1.0, max_message_bytes = 0 }
    "#;
    let err = bitmail_runtime::config::parse::<mta_server::config::Config>(toml, "mta.toml").unwrap_err().to_string();
    for key in
        ["providers[0].limits.in_flight", "providers[0].limits.per_second", "providers[0].limits.max_message_bytes"]
    {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    let err = bitmail_runtime::config::parse::<mta_server::config::Config>(
        "[[providers]]\nname = \"a\"\nkind = \"sendgrid\"\napi_key = \"k\"\nlimits = { inflight = 2 }\n",
        "mta.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("inflight"), "{err}");
}
