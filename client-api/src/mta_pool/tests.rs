use std::time::Duration;

use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::Bearer;
use tonic::Status;
use tonic::metadata::MetadataMap;
use tonic::transport::Endpoint;

use super::*;

fn node(url: &str, id: &str) -> (MtaNode, Channel) {
    let config = MtaNode { key: "mta_urls[0]".into(), url: url.into(), server_name: None, node_id: Some(id.into()) };
    (config, Endpoint::from_shared(url.to_owned()).unwrap().connect_lazy())
}

fn pool(urls: &[&str], timeout: Duration) -> MtaPool {
    let nodes = urls.iter().enumerate().map(|(i, u)| node(u, &format!("mta-{}", i + 1))).collect();
    MtaPool::new(nodes, timeout, Registry::new())
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn healthy_nodes_take_turns_and_a_key_has_a_home() {
    let p = pool(&["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"], Duration::from_secs(1));
    let firsts: Vec<usize> = (0..6).map(|_| p.order(None)[0]).collect();
    assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
    assert_eq!(p.order(None), [0, 1, 2], "every node once");
    assert_eq!(p.order(Some(4)), [1, 2, 0]);
    assert_eq!(p.order(Some(4)), [1, 2, 0], "the same start for the same key, whatever the turn");
}

#[tokio::test(start_paused = true)]
async fn a_failing_node_is_skipped_for_a_growing_back_off_then_probed_once() {
    let p = pool(&["http://127.0.0.1:1", "http://127.0.0.1:2"], Duration::from_secs(1));
    p.failed(0, "refused");
    assert!(!p.nodes()[0].health().reachable);
    assert_eq!(p.order(Some(0)), [1, 0], "failing: last, still tried before giving up");
    assert_eq!(p.probe_due(), Vec::<usize>::new());
    tokio::time::advance(Duration::from_millis(499)).await;
    assert_eq!(p.probe_due(), Vec::<usize>::new());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(p.probe_due(), [0], "back-off over: probed");
    assert_eq!(p.probe_due(), Vec::<usize>::new(), "one probe at a time");
    assert_eq!(p.order(Some(0)), [1, 0], "no user's call is the probe");
    p.failed(0, "refused again");
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(p.probe_due(), Vec::<usize>::new(), "the second back-off is twice as long");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(p.probe_due(), [0]);
    p.succeeded(0);
    assert!(p.nodes()[0].health().reachable);
    assert_eq!(p.order(Some(0)), [0, 1]);
    assert_eq!((backoff(1), backoff(2), backoff(3)), (BACKOFF_MIN, BACKOFF_MIN * 2, BACKOFF_MIN * 4));
    assert_eq!((backoff(7), backoff(u32::MAX)), (BACKOFF_MAX, BACKOFF_MAX));
}

#[tokio::test]
async fn a_probe_makes_a_serving_node_healthy_and_keeps_a_dead_one_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = format!("http://{}", listener.local_addr().unwrap());
    let (_reporter, health) = tonic_health::server::health_reporter();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming(incoming));
    let p = pool(&[&live, &format!("http://127.0.0.1:{}", closed_port())], Duration::from_secs(1));
    p.failed(0, "was down");
    p.failed(1, "is down");
    p.probe(0).await;
    p.probe(1).await;
    assert!(p.nodes()[0].health().reachable, "serving again");
    assert_eq!(p.nodes()[1].health().failures, 2, "a longer back-off");
    server.abort();
}

#[tokio::test]
async fn a_refused_connection_was_never_sent_and_codes_are_answers_or_ambiguous() {
    let p = pool(&[&format!("http://127.0.0.1:{}", closed_port())], Duration::from_secs(5));
    let err =
        p.nodes()[0].mta(&Bearer::new(Some("k")).unwrap()).submit(pb::SubmitRequest::default()).await.unwrap_err();
    assert_eq!(classify(&err), Failure::NotSent, "{err:?}");
    assert_eq!(classify(&Status::unavailable("spool recovering")), Failure::Ambiguous);
    assert_eq!(classify(&Status::cancelled("Timeout expired")), Failure::Ambiguous);
    for answer in [Status::invalid_argument("to[0]"), Status::resource_exhausted("q"), Status::permission_denied("f")] {
        assert_eq!(classify(&answer), Failure::Answer);
    }
}

#[tokio::test]
async fn a_submit_tries_each_node_once_and_says_which_may_have_stored_it() {
    // A node that takes the connection and never answers, and one that refuses it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let refused_url = format!("http://127.0.0.1:{}", closed_port());
    let metrics = Registry::new();
    let nodes = vec![node(&silent_url, "mta-1"), node(&refused_url, "mta-2")];
    let p = MtaPool::new(nodes, Duration::from_millis(300), metrics.clone());
    let bearer = Bearer::new(Some("k")).unwrap();
    let err = p.submit(&bearer, &MetadataMap::new(), pb::SubmitRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    let message = err.message();
    assert!(message.contains("mta-1: may have stored it (no answer within 300 ms)"), "{message}");
    assert!(message.contains("mta-2: not reached"), "{message}");
    let tries = message.matches("may have stored it").count() + message.matches("not reached").count();
    assert_eq!(tries, 2, "one try per node: {message}");
    assert!(!p.nodes()[0].health().reachable && !p.nodes()[1].health().reachable);
    let text = metrics.render();
    for series in [
        "bitmail_edge_submit_failovers_total{node=\"mta-1\",reason=\"ambiguous\"} 1",
        "bitmail_edge_submit_failovers_total{node=\"mta-2\",reason=\"not_sent\"} 1",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    held.abort();
}

#[tokio::test]
async fn get_message_names_the_nodes_it_could_not_ask() {
    let p = pool(&[&format!("http://127.0.0.1:{}", closed_port())], Duration::from_secs(5));
    let err = p.get_message(&Bearer::new(Some("k")).unwrap(), "m1", None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("it may be waiting on mta-1, which cannot be reached"), "{}", err.message());
    // Known to be failing now: not asked again (a hung node would cost a timeout each).
    let again = p.get_message(&Bearer::new(Some("k")).unwrap(), "m1", None).await.unwrap_err();
    assert_eq!((again.code(), p.nodes()[0].health().failures), (tonic::Code::Unavailable, 1));
}
