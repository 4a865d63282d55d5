//! The HTTP API, the webmail's files, and what every request goes through.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /healthz` | 200 when mta-server and backend-server answer, else 503 |
//! | `POST /api/session` | `{name, password}`: signs in, sets the session cookie; answers the CSRF token |
//! | `GET /api/session` | who is signed in, with the CSRF token |
//! | `DELETE /api/session` | signs out |
//! | `GET /api/folders/{inbox,sent}?page&per_page` | a page of a folder, newest first; total and unread counts; delivery status in `sent` |
//! | `GET /api/mail/{id}?images=true` | one message, HTML sanitized, remote images removed unless asked |
//! | `PATCH /api/mail/{id}` | `{read}`: marks it read or unread |
//! | `DELETE /api/mail/{id}` | deletes it |
//! | `GET /api/mail/{id}/attachments/{n}` | an attachment, as a download |
//! | `POST /api/messages` | `{to, cc, bcc, subject, markdown \| text/html, attachments}`: sends |
//! | `POST /api/preview` | `{markdown}`: the HTML it would be sent as |
//! | `GET /api/status` | providers, queue depth, recent deliveries, sent per provider over the last hour |
//! | `GET /metrics` | Prometheus metrics, to this host only |
//! | `GET /`, `GET /assets/*` | the webmail (`web_dir`), compressed, with cache headers |
//! | `POST /webhooks/{provider}/events` | a provider's event webhook, see [`crate::webhooks`] |
//! | `POST /webhooks/{provider}/inbound` | a provider's inbound mail webhook, see [`crate::webhooks`] |
//!
//! CSRF: every state change except signing in needs the session's CSRF token in
//! `X-CSRF-Token` (see [`crate::csrf`]); besides, the session cookie is
//! `SameSite=Strict`, bodies are JSON (a cross-site form cannot send JSON without a CORS
//! preflight, which is never granted), and a state change whose `Origin` is not this
//! host is refused. Every mail endpoint answers 404 for another user's message.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::state::AppState;
use crate::{compose, csrf, health, mail, metrics, page, session, status, webhooks};

pub(crate) fn router(state: Arc<AppState>, max_body_bytes: usize, max_inbound_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/api/session", get(session::whoami).post(session::sign_in).delete(session::sign_out))
        .route("/api/folders/{folder}", get(mail::list))
        .route("/api/mail/{id}", get(mail::read).patch(mail::mark).delete(mail::delete))
        .route("/api/mail/{id}/attachments/{index}", get(mail::attachment))
        .route("/api/messages", post(compose::send))
        .route("/api/preview", post(compose::preview))
        .route("/api/status", get(status::status))
        .route("/metrics", get(metrics::metrics))
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::NotFound("no such endpoint".into()) }))
        .merge(webhooks::routes(max_inbound_bytes))
        .fallback(page::page)
        .layer(middleware::from_fn(csrf::csrf_checked_writes))
        .layer(middleware::from_fn(csrf::same_origin_writes))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count_requests))
        .with_state(state)
}
