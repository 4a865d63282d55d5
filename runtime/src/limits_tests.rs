//! The layer around a small service: a call that waits until told, or that never ends.

use std::convert::Infallible;

use tokio::sync::Notify;
use tower::{Layer, Service};

use super::*;

/// Answers `/slow` only once `release` is notified, `/stream` with a body that never
/// ends, anything else at once.
#[derive(Clone)]
struct Fake {
    release: Arc<Notify>,
}

impl tower::Service<http::Request<()>> for Fake {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<()>) -> Self::Future {
        let release = self.release.clone();
        Box::pin(async move {
            match request.uri().path() {
                "/slow" => release.notified().await,
                "/stream" => {
                    return Ok(http::Response::new(never_ending()));
                }
                _ => {}
            }
            Ok(http::Response::new(tonic::body::Body::empty()))
        })
    }
}

/// A body that stays open until dropped.
fn never_ending() -> tonic::body::Body {
    struct Never;
    impl HttpBody for Never {
        type Data = tonic::codegen::Bytes;
        type Error = tonic::Status;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            Poll::Pending
        }
    }
    tonic::body::Body::new(Never)
}

fn request(path: &str) -> http::Request<()> {
    http::Request::builder().uri(path).body(()).unwrap()
}

fn grpc_status(response: &Response) -> Option<(String, Option<String>)> {
    let status = response.headers().get("grpc-status")?.to_str().ok()?.to_owned();
    let retry = response.headers().get("retry-after-ms").map(|v| v.to_str().unwrap().to_owned());
    Some((status, retry))
}

fn service(limits: GrpcLimits, metrics: &Registry) -> (Limited<Fake>, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    (LimitLayer::new(&limits, metrics.clone()).layer(Fake { release: release.clone() }), release)
}

#[tokio::test]
async fn over_the_limit_is_shed_at_once_and_a_freed_slot_is_reused() {
    let metrics = Registry::new();
    let limits = GrpcLimits { max_concurrent_calls: 1, retry_after_ms: 250, ..Default::default() };
    let (mut svc, release) = service(limits, &metrics);
    let held = tokio::spawn(svc.call(request("/slow")));
    tokio::task::yield_now().await;
    let shed = svc.call(request("/x.Y/Z")).await.unwrap();
    // RESOURCE_EXHAUSTED is 8.
    assert_eq!(grpc_status(&shed), Some(("8".into(), Some("250".into()))));
    // Health and metrics are still answered.
    for path in ["/grpc.health.v1.Health/Check", "/metrics"] {
        assert_eq!(grpc_status(&svc.call(request(path)).await.unwrap()), None, "{path}");
    }
    release.notify_one();
    held.await.unwrap().unwrap();
    assert_eq!(grpc_status(&svc.call(request("/x.Y/Z")).await.unwrap()), None);
    assert!(metrics.render().contains("bitmail_grpc_shed_total{reason=\"concurrency\"} 1"));
}

#[tokio::test]
async fn a_stream_holds_its_slot_until_its_body_is_dropped() {
    let metrics = Registry::new();
    let (mut svc, _) = service(GrpcLimits { max_concurrent_calls: 1, ..Default::default() }, &metrics);
    let stream = svc.call(request("/stream")).await.unwrap();
    assert_eq!(grpc_status(&svc.call(request("/x.Y/Z")).await.unwrap()).unwrap().0, "8");
    drop(stream);
    assert_eq!(grpc_status(&svc.call(request("/x.Y/Z")).await.unwrap()), None);
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_cancelled_at_the_timeout_but_a_long_stream_is_not() {
    let metrics = Registry::new();
    let (mut svc, _) = service(GrpcLimits { request_timeout_ms: 500, ..Default::default() }, &metrics);
    let started = tokio::time::Instant::now();
    let answer = svc.call(request("/slow")).await.unwrap();
    // DEADLINE_EXCEEDED is 4.
    assert_eq!(grpc_status(&answer).unwrap().0, "4");
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert!(metrics.render().contains("bitmail_grpc_shed_total{reason=\"timeout\"} 1"));

    let mut stream = svc.call(request("/stream")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let frame = std::future::poll_fn(|cx| Poll::Ready(Pin::new(stream.body_mut()).poll_frame(cx))).await;
    assert!(frame.is_pending(), "the stream is still open after an hour");
}

#[test]
fn bad_limits_are_named() {
    let mut problems = Vec::new();
    GrpcLimits { request_timeout_ms: 0, max_concurrent_calls: 0, retry_after_ms: 0 }.validate(&mut problems);
    let all = problems.join("\n");
    for key in ["limits.request_timeout_ms", "limits.max_concurrent_calls", "limits.retry_after_ms"] {
        assert!(all.contains(key), "{key} missing in {all}");
    }
    let mut none = Vec::new();
    GrpcLimits::default().validate(&mut none);
    assert!(none.is_empty(), "{none:?}");
}
