//! `GET /metrics` on mta-server's port: Prometheus text with the send pipeline's
//! series, filled by what happened.

mod common;

use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_tests::sendgrid::{Behavior, FakeSendGrid};
use common::{Cluster, sendgrid, settled, submission};

#[tokio::test]
async fn mta_metrics_count_submissions_attempts_and_latency() {
    let a = FakeSendGrid::start(common::KEY).await.unwrap();
    let b = FakeSendGrid::start(common::KEY).await.unwrap();
    a.set_behavior(Behavior::Fail { status: 503, body: String::new() });
    let t = Duration::from_secs(5);
    let cluster = Cluster::start_with(vec![sendgrid("a", &a, t), sendgrid("b", &b, t)], false, |c| {
        c.scheduler = mta_server::config::SchedulerKind::Priority;
    })
    .await;
    let mut mta = cluster.mta_client().await;
    let id = mta.submit(submission("bob@example.net")).await.unwrap().into_inner().message_id;
    settled(&mut mta, &id, Duration::from_secs(10)).await;
    let bad = pb::SubmitRequest { to: vec!["not an address".into()], ..submission("x@example.net") };
    mta.submit(bad).await.unwrap_err();

    let response = reqwest::get(format!("http://{}/metrics", cluster.mta)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    for line in [
        "bitmail_mta_submissions_total{result=\"accepted\"} 1",
        "bitmail_mta_submissions_total{result=\"invalid\"} 1",
        "bitmail_mta_attempts_total{provider=\"a\",outcome=\"transient\"} 1",
        "bitmail_mta_attempts_total{provider=\"b\",outcome=\"accepted\"} 1",
        "bitmail_mta_send_seconds_count{provider=\"b\"} 1",
        "bitmail_mta_queue_depth 0",
        "bitmail_mta_oldest_queued_seconds 0",
        "bitmail_mta_provider_up{provider=\"b\"} 1",
        "bitmail_mta_provider_in_flight{provider=\"a\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("# TYPE bitmail_mta_send_seconds histogram"), "{text}");
}
