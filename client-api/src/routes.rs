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
//! | `GET /`, `GET /assets/*` | the webmail (`web_dir`), compressed, with cache headers |
//! | `POST /webhooks/{provider}/events` | a provider's event webhook, see [`crate::webhooks`] |
//! | `POST /webhooks/{provider}/inbound` | a provider's inbound mail webhook, see [`crate::webhooks`] |
//!
//! CSRF: every state change except signing in needs the session's CSRF token in
//! `X-CSRF-Token` (see [`crate::session`]); besides, the session cookie is
//! `SameSite=Strict`, bodies are JSON (a cross-site form cannot send JSON without a CORS
//! preflight, which is never granted), and a state change whose `Origin` is not this
//! host is refused. Every mail endpoint answers 404 for another user's message.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::metrics::Registry;
use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::accounts::{Accounts, User};
use crate::assets::WebAssets;
use crate::error::ApiError;
use crate::mailbox::Mailbox;
use crate::session::{CSRF_HEADER, LoginLimiter, csrf_token};
use crate::status::DeliveryLog;
use crate::{compose, mail, session, status};

pub const SESSION_COOKIE: &str = "bitmail_session";

/// What every handler shares.
pub struct AppState {
    pub accounts: Accounts,
    pub mailbox: Mailbox,
    pub mta: MtaClient<Channel>,
    pub mta_channel: Channel,
    pub backend_channel: Channel,
    pub mail_domain: String,
    pub session_secs: u64,
    pub limiter: LoginLimiter,
    pub max_attachment_bytes: usize,
    /// The built webmail; None serves the bare page.
    pub web: Option<WebAssets>,
    pub deliveries: Arc<DeliveryLog>,
    pub metrics: Registry,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize, max_inbound_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/session", get(session::whoami).post(session::sign_in).delete(session::sign_out))
        .route("/api/folders/{folder}", get(mail::list))
        .route("/api/mail/{id}", get(mail::read).patch(mail::mark).delete(mail::delete))
        .route("/api/mail/{id}/attachments/{index}", get(mail::attachment))
        .route("/api/messages", post(compose::send))
        .route("/api/preview", post(compose::preview))
        .route("/api/status", get(status::status))
        .route("/metrics", get(metrics))
        .route("/api/{*rest}", axum::routing::any(|| async { ApiError::NotFound("no such endpoint".into()) }))
        .merge(crate::webhooks::routes(max_inbound_bytes))
        .fallback(page)
        .layer(middleware::from_fn(csrf_checked_writes))
        .layer(middleware::from_fn(same_origin_writes))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// Counts every request by status class, and times it.
async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
async fn metrics(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if !peer.ip().is_loopback() {
        return ApiError::NotFound("no such endpoint".into()).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

/// A JSON body whose rejections (wrong content type, bad JSON, unknown field, too
/// large) are JSON errors like every other.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge("the request body is larger than this server accepts".into()))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The signed-in user; a handler taking it answers 401 without a valid session.
pub struct CurrentUser(pub User);

impl FromRequestParts<Arc<AppState>> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let token = session_token(&parts.headers).ok_or(ApiError::Unauthorized)?;
        Ok(CurrentUser(state.accounts.session_user(&token).await?))
    }
}

/// Refuses a state change sent from another origin.
async fn same_origin_writes(req: Request, next: Next) -> Response {
    if is_write(req.method())
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        // HTTP/1.1 names the host in `Host`; HTTP/2 (what browsers speak here) in the
        // request's `:authority`, which is the URI's authority.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
        if host.is_none() || origin_host != host {
            return ApiError::Forbidden("cross-origin request refused".into()).into_response();
        }
    }
    next.run(req).await
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a state change of a session that lacks the session's CSRF token. Signing in
/// needs none (there is no session yet); a request without a session cookie goes on to
/// be answered 401 by its handler.
async fn csrf_checked_writes(req: Request, next: Next) -> Response {
    let signing_in = req.method() == Method::POST && req.uri().path() == "/api/session";
    if is_write(req.method())
        && !signing_in
        && let Some(token) = session_token(req.headers())
    {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let expected = csrf_token(&token);
        // Equal lengths always (64 hex digits); compare without an early exit anyway.
        let same = sent.len() == expected.len()
            && sent.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if !same {
            return ApiError::Csrf.into_response();
        }
    }
    next.run(req).await
}

/// The webmail's files; the bare page when no build is configured.
async fn page(State(state): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    match &state.web {
        Some(web) => web
            .respond(uri.path(), &headers)
            .unwrap_or_else(|| ApiError::NotFound(format!("no file {}", uri.path())).into_response()),
        None if uri.path() == "/" => Html(include_str!("index.html")).into_response(),
        None => ApiError::NotFound(format!("no file {}", uri.path())).into_response(),
    }
}

async fn upstream_health(channel: Channel) -> &'static str {
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest { service: String::new() });
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(r)) if r.get_ref().status() == ServingStatus::Serving => "serving",
        Ok(Ok(_)) => "not serving",
        _ => "unreachable",
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let (mta, backend) =
        tokio::join!(upstream_health(state.mta_channel.clone()), upstream_health(state.backend_channel.clone()));
    let ok = mta == "serving" && backend == "serving";
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({ "status": if ok { "ok" } else { "degraded" }, "mta": mta, "backend": backend });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; bitmail_session=abc; b=2".parse().unwrap());
        assert_eq!(session_token(&h).as_deref(), Some("abc"));
        assert_eq!(session_token(&HeaderMap::new()), None);
    }
}
