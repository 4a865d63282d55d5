//! The edge's own metrics: every request counted by status and timed, served at
//! `GET /metrics` to this host only.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Counts every request by status class, and times it.
pub(crate) async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    state.metrics.count("bitmail_http_requests_total", "HTTP requests answered, by status.", &[("status", &status)], 1);
    state.metrics.observe(
        "bitmail_http_request_seconds",
        "Time to answer an HTTP request (to the headers).",
        &[],
        started.elapsed(),
    );
    response
}

/// `GET /metrics`, for a scraper on this host only: the edge faces the internet.
pub(crate) async fn metrics(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return ApiError::NotFound("no such endpoint".into()).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}
