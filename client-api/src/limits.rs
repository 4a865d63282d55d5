//! What bounds the edge's work, so that neither a burst nor a slow client can take it
//! down (`[limits]` in the config, [`EdgeLimits`]):
//!
//! - every request: at most `max_concurrent_requests` at once, more answered 503 with
//!   `Retry-After` at once (never queued), and `request_timeout_ms` from its headers to
//!   its response's headers (its body read included), then 504 and the handler dropped;
//! - `/webhooks/*`, whose bodies are read before anything can authenticate them (the
//!   signature is checked by mta-server, over the bytes): a tighter cap of their own,
//!   `webhook_max_concurrent`, and a body budget, `webhook_max_body_bytes` for events
//!   (`max_inbound_bytes` for received mail). A declared `Content-Length` over it is
//!   answered 413 before a byte of the body is read; a chunked body is cut at the budget;
//! - connections: see [`crate::conn_cap`] (the cap) and [`crate::server`] (the TLS
//!   handshake, header read and first request timeouts).
//!
//! - live update streams (`GET /api/events`, [`crate::live`]): the request's slot and
//!   timeout end with the stream's headers; the streams have a cap of their own,
//!   `max_live_streams`, and last at most `live_stream_secs` each.
//!
//! Every refusal is counted in `bitmail_http_shed_total{reason}`: `concurrency`,
//! `webhook_concurrency`, `timeout`, `connections`, `live_streams`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bitmail_runtime::metrics::Registry;
use serde::Deserialize;
use tokio::sync::Semaphore;

/// `[limits]` of client-api's config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EdgeLimits {
    /// From a request's headers to its response's headers; then 504.
    pub request_timeout_ms: u64,
    /// Requests in progress at once; more: 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// `/webhooks/*` requests in progress at once (within the above); more: 503.
    pub webhook_max_concurrent: usize,
    /// The largest event webhook body (`/webhooks/{provider}/events`); more: 413.
    pub webhook_max_body_bytes: usize,
    /// Open connections (TLS handshakes included); more are closed at once.
    pub max_connections: usize,
    /// The TLS handshake of a new connection.
    pub tls_handshake_timeout_ms: u64,
    /// A request's headers, from the first byte read for it (HTTP/1.1; the first request
    /// of a connection, whatever its protocol, too).
    pub header_read_timeout_ms: u64,
    /// The `Retry-After` of a 503.
    pub retry_after_secs: u64,
    /// Live update streams (`GET /api/events`) open at once; more: 503.
    pub max_live_streams: usize,
    /// How long one live stream lasts before the browser reconnects (and its session is
    /// checked again).
    pub live_stream_secs: u64,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            request_timeout_ms: 30_000,
            max_concurrent_requests: 512,
            webhook_max_concurrent: 32,
            webhook_max_body_bytes: 2 << 20,
            max_connections: 1024,
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            retry_after_secs: 1,
            max_live_streams: 1024,
            live_stream_secs: 600,
        }
    }
}

impl EdgeLimits {
    pub fn validate(&self, problems: &mut Vec<String>) {
        let mut within = |key: &str, value: u64, low: u64, high: u64| {
            if !(low..=high).contains(&value) {
                problems.push(format!("limits.{key}: {value} is not within {low} to {high}"));
            }
        };
        let cap = 1 << 20;
        within("request_timeout_ms", self.request_timeout_ms, 1, 3_600_000);
        within("max_concurrent_requests", self.max_concurrent_requests as u64, 1, cap);
        within("webhook_max_concurrent", self.webhook_max_concurrent as u64, 1, self.max_concurrent_requests as u64);
        within("webhook_max_body_bytes", self.webhook_max_body_bytes as u64, 1024, 1 << 30);
        within("max_connections", self.max_connections as u64, 1, cap);
        within("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms, 1, 600_000);
        within("header_read_timeout_ms", self.header_read_timeout_ms, 1, 600_000);
        within("retry_after_secs", self.retry_after_secs, 1, 3600);
        within("max_live_streams", self.max_live_streams as u64, 1, cap);
        within("live_stream_secs", self.live_stream_secs, 1, 86_400);
    }
}

/// Counts one refusal.
pub(crate) fn shed(metrics: &Registry, reason: &str) {
    metrics.count(
        "bitmail_http_shed_total",
        "Requests and connections refused by the edge's limits, by reason (concurrency, webhook_concurrency, timeout, connections, live_streams).",
        &[("reason", reason)],
        1,
    );
}

/// A cap on requests in progress, and optionally their time.
#[derive(Clone)]
pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    timeout: Option<Duration>,
    retry_after_secs: u64,
    reason: &'static str,
    metrics: Registry,
}

impl Gate {
    /// Every request: the concurrency cap and the timeout.
    pub fn all(limits: &EdgeLimits, metrics: Registry) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            timeout: Some(Duration::from_millis(limits.request_timeout_ms)),
            retry_after_secs: limits.retry_after_secs,
            reason: "concurrency",
            metrics,
        }
    }

    /// `/webhooks/*`: their own cap (the timeout is already around every request).
    pub fn webhooks(limits: &EdgeLimits, metrics: Registry) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.webhook_max_concurrent)),
            timeout: None,
            retry_after_secs: limits.retry_after_secs,
            reason: "webhook_concurrency",
            metrics,
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// The middleware of a [`Gate`]: a slot, or 503 with `Retry-After` at once; then the
/// request, or 504 when its time is up. The slot is held until the response's headers.
pub(crate) async fn gate(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let Ok(_slot) = gate.slots.clone().try_acquire_owned() else {
        shed(&gate.metrics, gate.reason);
        let mut busy =
            plain(StatusCode::SERVICE_UNAVAILABLE, format!("busy: retry after {} s\n", gate.retry_after_secs));
        busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(gate.retry_after_secs));
        return busy;
    };
    let Some(limit) = gate.timeout else {
        return next.run(req).await;
    };
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            shed(&gate.metrics, "timeout");
            plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the request took longer than the edge's limit of {} ms\n", limit.as_millis()),
            )
        }
    }
}

/// 413 at once for a declared `Content-Length` over `budget`: not a byte of the body is
/// read. (A body without one is cut at the budget by `DefaultBodyLimit`.)
pub(crate) async fn declared_length(State(budget): State<usize>, req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > budget as u64) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over this endpoint's {budget} bytes\n"));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_named() {
        let mut problems = Vec::new();
        EdgeLimits::default().validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let bad = EdgeLimits {
            max_concurrent_requests: 4,
            webhook_max_concurrent: 5,
            max_connections: 0,
            header_read_timeout_ms: 0,
            ..Default::default()
        };
        bad.validate(&mut problems);
        let all = problems.join("\n");
        for key in ["webhook_max_concurrent", "max_connections", "header_read_timeout_ms"] {
            assert!(all.contains(&format!("limits.{key}")), "{key} missing in {all}");
        }
    }
}
