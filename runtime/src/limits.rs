//! The limits every gRPC server applies to every call, as one tower layer around all of
//! its routes ([`crate::grpc::serve`]):
//!
//! - **a concurrency limit with load shedding**: at most `max_concurrent_calls` calls at
//!   once across all connections. A call over it is answered at once with
//!   `RESOURCE_EXHAUSTED` and `retry-after-ms` metadata (also named in the message); it is
//!   never queued, so a burst cannot grow a backlog that outlives it. A call holds its
//!   slot until its response body ends or is dropped: a server-streaming call
//!   (`Mta/WatchMessages`, `Store/Lookup`) counts for as long as it streams.
//! - **a timeout per call**: `request_timeout_ms` bounds the handler, that is a unary call
//!   from its request to its answer (request body included), and a streaming call only
//!   until its stream starts: a `WatchMessages` that streams for hours is never cut. A
//!   call over it is cancelled (dropped, as a client's cancellation would) and answered
//!   `DEADLINE_EXCEEDED`. A client's shorter `grpc-timeout` still applies (tonic).
//!
//! Health (`grpc.health.v1.Health`), reflection and `GET /metrics` are exempt from the
//! concurrency limit, so a saturated server still answers its probes and scrapes.
//! Refusals are counted in `bitmail_grpc_shed_total{reason}` (`concurrency`, `timeout`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::Body as HttpBody;
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::Registry;

/// `[limits]` of a gRPC service's config.
///
/// ```toml
/// [limits]
/// request_timeout_ms = 30000      # a unary call, or a streaming call until it streams
/// max_concurrent_calls = 1024     # across connections; more: RESOURCE_EXHAUSTED
/// retry_after_ms = 1000           # the hint given with RESOURCE_EXHAUSTED
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct GrpcLimits {
    pub request_timeout_ms: u64,
    pub max_concurrent_calls: usize,
    pub retry_after_ms: u64,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self { request_timeout_ms: 30_000, max_concurrent_calls: 1024, retry_after_ms: 1000 }
    }
}

impl GrpcLimits {
    /// Pushes a problem per bad key, named `limits.KEY`.
    pub fn validate(&self, problems: &mut Vec<String>) {
        if !(1..=3_600_000).contains(&self.request_timeout_ms) {
            problems.push(format!(
                "limits.request_timeout_ms: {} is not within 1 to 3600000 (one hour)",
                self.request_timeout_ms
            ));
        }
        if !(1..=Semaphore::MAX_PERMITS.min(1 << 20)).contains(&self.max_concurrent_calls) {
            problems
                .push(format!("limits.max_concurrent_calls: {} is not within 1 to 1048576", self.max_concurrent_calls));
        }
        if !(1..=3_600_000).contains(&self.retry_after_ms) {
            problems.push(format!("limits.retry_after_ms: {} is not within 1 to 3600000", self.retry_after_ms));
        }
    }
}

/// The layer: one semaphore shared by every connection of the server.
#[derive(Clone)]
pub struct LimitLayer {
    slots: Arc<Semaphore>,
    timeout: Duration,
    retry_after_ms: u64,
    metrics: Registry,
}

impl LimitLayer {
    pub fn new(limits: &GrpcLimits, metrics: Registry) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_calls)),
            timeout: Duration::from_millis(limits.request_timeout_ms),
            retry_after_ms: limits.retry_after_ms,
            metrics,
        }
    }
}

impl<S> tower::Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited { inner, limits: self.clone() }
    }
}

/// A service behind [`LimitLayer`].
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: LimitLayer,
}

type Response = http::Response<tonic::body::Body>;

/// Calls that must stay answerable when the server is saturated.
fn exempt(path: &str) -> bool {
    path == "/metrics" || path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

fn shed(metrics: &Registry, reason: &str) {
    metrics.count(
        "bitmail_grpc_shed_total",
        "gRPC calls refused by the server's limits, by reason (concurrency, timeout).",
        &[("reason", reason)],
        1,
    );
}

impl<S, B> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The clone that was made ready serves this call; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limits = self.limits.clone();
        let permit = if exempt(request.uri().path()) {
            None
        } else {
            match limits.slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    shed(&limits.metrics, "concurrency");
                    tracing::debug!(path = request.uri().path(), "gRPC call shed: at the concurrency limit");
                    return Box::pin(async move { Ok(overloaded(limits.retry_after_ms)) });
                }
            }
        };
        Box::pin(async move {
            match tokio::time::timeout(limits.timeout, inner.call(request)).await {
                Ok(Ok(response)) => Ok(match permit {
                    Some(permit) => response.map(|body| tonic::body::Body::new(Holding { body, _permit: permit })),
                    None => response,
                }),
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    shed(&limits.metrics, "timeout");
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the call took longer than the server's limit of {} ms",
                        limits.timeout.as_millis()
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// `RESOURCE_EXHAUSTED`, with when to retry in `retry-after-ms` and in words.
fn overloaded(retry_after_ms: u64) -> Response {
    let mut status = tonic::Status::resource_exhausted(format!(
        "the server is at its limit of concurrent calls; retry after {retry_after_ms} ms"
    ));
    status.metadata_mut().insert("retry-after-ms", retry_after_ms.into());
    status.into_http()
}

/// A response body that holds its call's slot until it ends or is dropped.
struct Holding {
    body: tonic::body::Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for Holding {
    type Data = <tonic::body::Body as HttpBody>::Data;
    type Error = <tonic::body::Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
