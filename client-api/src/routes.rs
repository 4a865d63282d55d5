//! The HTTP API and the page.
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /healthz` | 200 when mta-server and backend-server answer, else 503 |
//! | `POST /api/session` | `{name, password}`: signs in, sets the session cookie |
//! | `GET /api/session` | who is signed in |
//! | `DELETE /api/session` | signs out |
//! | `POST /api/messages` | `{to, cc, bcc, subject, text, html}`: sends through mta-server |
//! | `GET /api/messages` | the messages this user sent |
//! | `GET /api/messages/{id}` | delivery status of one of them |
//! | `POST /webhooks/{provider}/events` | a provider's event webhook, see [`crate::webhooks`] |
//!
//! CSRF: the session cookie is `SameSite=Strict`, every state change takes a JSON body
//! or none (a cross-site form cannot send JSON without a CORS preflight, which is never
//! granted), and a state change whose `Origin` is not this host is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::accounts::{Accounts, User};
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "bitmail_session";

/// What every handler shares.
pub struct AppState {
    pub accounts: Accounts,
    pub mta: MtaClient<Channel>,
    pub mta_channel: Channel,
    pub backend_channel: Channel,
    pub mail_domain: String,
    pub session_secs: u64,
    pub limiter: LoginLimiter,
}

pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/api/session", get(whoami).post(sign_in).delete(sign_out))
        .route("/api/messages", get(list_sent).post(send))
        .route("/api/messages/{id}", get(message_status))
        .merge(crate::webhooks::routes())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn(same_origin_writes))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
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

fn session_token(headers: &HeaderMap) -> Option<String> {
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
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest);
        if host.is_none() || origin_host != host {
            return ApiError::Forbidden("cross-origin request refused".into()).into_response();
        }
    }
    next.run(req).await
}

/// Failed sign-ins per name: after `MAX_FAILURES` within `WINDOW`, that name is refused
/// until the window ends, which bounds password guessing.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(15 * 60);

impl LoginLimiter {
    fn check(&self, name: &str) -> Result<(), ApiError> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(name) {
            Some((n, since)) if since.elapsed() < WINDOW && *n >= MAX_FAILURES => {
                Err(ApiError::TooManyRequests("too many failed sign-ins for this name; try again later".into()))
            }
            Some((_, since)) if since.elapsed() >= WINDOW => {
                map.remove(name);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn failed(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the map bounded: forget windows that are over.
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        map.entry(name.to_owned()).or_insert((0, Instant::now())).0 += 1;
    }

    fn succeeded(&self, name: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    name: String,
    password: String,
}

fn user_json(user: &User, domain: &str) -> Value {
    json!({ "name": user.name, "address": format!("{}@{domain}", user.name) })
}

async fn sign_in(State(state): State<Arc<AppState>>, ApiJson(body): ApiJson<SignIn>) -> Result<Response, ApiError> {
    let name = body.name.trim().to_ascii_lowercase();
    state.limiter.check(&name)?;
    let user = match state.accounts.sign_in(&name, &body.password).await {
        Ok(user) => user,
        Err(ApiError::Unauthorized) => {
            state.limiter.failed(&name);
            return Err(ApiError::Unauthorized);
        }
        Err(e) => return Err(e),
    };
    state.limiter.succeeded(&name);
    let token = state.accounts.open_session(&user).await?;
    let cookie =
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", state.session_secs);
    Ok(([(header::SET_COOKIE, cookie)], Json(user_json(&user, &state.mail_domain))).into_response())
}

async fn whoami(State(state): State<Arc<AppState>>, CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(user_json(&user, &state.mail_domain))
}

async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.accounts.close_session(&token).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Compose {
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    cc: Vec<String>,
    #[serde(default)]
    bcc: Vec<String>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    html: String,
}

async fn send(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<Compose>,
) -> Result<Response, ApiError> {
    let request = pb::SubmitRequest {
        from: format!("{}@{}", user.name, state.mail_domain),
        to: body.to.clone(),
        cc: body.cc,
        bcc: body.bcc,
        subject: body.subject.clone(),
        text: body.text,
        html: body.html,
        ..Default::default()
    };
    let id = state.mta.clone().submit(request).await?.into_inner().message_id;
    let summary = HashMap::from([
        ("subject".to_owned(), body.subject),
        ("to".to_owned(), serde_json::to_string(&body.to).unwrap_or_default()),
    ]);
    if let Err(e) = state.accounts.record_sent(&user, &id, summary).await {
        // The message is accepted and will be delivered; only the Sent view misses it.
        tracing::error!(message_id = %id, error = %e, "message accepted but not recorded in Sent");
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

async fn list_sent(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let docs = state.accounts.sent(&user, 1000).await?;
    let items: Vec<Value> = docs
        .into_iter()
        .map(|d| {
            let f = |k: &str| d.fields.get(k).cloned().unwrap_or_default();
            let to: Value = serde_json::from_str(&f("to")).unwrap_or(Value::Array(vec![]));
            json!({ "id": f("mta_id"), "subject": f("subject"), "to": to, "created_at": f("created_at").parse::<u64>().unwrap_or(0) })
        })
        .collect();
    Ok(Json(json!({ "messages": items })))
}

fn state_name(state: i32) -> &'static str {
    match pb::DeliveryState::try_from(state).unwrap_or(pb::DeliveryState::Unspecified) {
        pb::DeliveryState::Queued => "queued",
        pb::DeliveryState::Sending => "sending",
        pb::DeliveryState::Sent => "sent",
        pb::DeliveryState::Deferred => "deferred",
        pb::DeliveryState::Failed => "failed",
        pb::DeliveryState::Unspecified => "unknown",
    }
}

async fn message_status(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    // Someone else's message id answers exactly like an unknown one.
    if !state.accounts.owns(&user, &id).await? {
        return Err(ApiError::NotFound(format!("no message with id {id:?}")));
    }
    let s = state.mta.clone().get_message(pb::GetMessageRequest { message_id: id }).await?.into_inner();
    let non_empty = |v: String| (!v.is_empty()).then_some(v);
    Ok(Json(json!({
        "id": s.message_id,
        "state": state_name(s.state),
        "provider": non_empty(s.provider),
        "provider_message_id": non_empty(s.provider_message_id),
        "error": non_empty(s.error),
        "possible_duplicate": s.possible_duplicate,
        "attempts": s.attempts.len(),
    })))
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

    #[test]
    fn the_limiter_blocks_after_repeated_failures_only_for_that_name() {
        let l = LoginLimiter::default();
        for _ in 0..MAX_FAILURES {
            assert!(l.check("ada").is_ok());
            l.failed("ada");
        }
        assert!(matches!(l.check("ada"), Err(ApiError::TooManyRequests(_))));
        assert!(l.check("bob").is_ok());
        l.succeeded("ada");
        assert!(l.check("ada").is_ok());
    }
}
