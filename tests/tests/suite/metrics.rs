//! `GET /metrics` on mta-server's port: Prometheus text with the send pipeline's
//! series, filled by what happened.

use crate::common;

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

#[tokio::test]
async fn the_store_and_the_edge_have_their_series_too() {
    let cluster = Cluster::start(vec![], true).await;
    let (client, base) = cluster.https_client();
    let sign_in = client
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({"name": "ada", "password": "analytical engine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 200);
    assert_eq!(client.get(format!("{base}/api/nothing-here")).send().await.unwrap().status(), 404);

    let edge = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for line in ["bitmail_http_requests_total{status=\"200\"} 1", "bitmail_http_requests_total{status=\"404\"} 1"] {
        assert!(edge.lines().any(|l| l == line), "missing {line:?} in\n{edge}");
    }
    assert!(edge.contains("# TYPE bitmail_http_request_seconds histogram"), "{edge}");

    let store = reqwest::get(format!("http://{}/metrics", cluster.backend)).await.unwrap().text().await.unwrap();
    // Signing in the first time looks the name up and stores the user and a session.
    for needle in [
        "bitmail_store_operations_total{op=\"lookup\",result=\"ok\"}",
        "bitmail_store_operations_total{op=\"put\",result=\"ok\"}",
        "bitmail_store_operation_seconds_count{op=\"put\"}",
    ] {
        assert!(store.contains(needle), "missing {needle:?} in\n{store}");
    }
}
