//! Signing in and out, and who is signed in. Sign-ins go through the
//! [`crate::limiter`]; both answers carry the session's CSRF token ([`crate::csrf`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::User;
use crate::csrf::csrf_token;
use crate::error::ApiError;
use crate::extract::{ApiJson, CurrentUser, SESSION_COOKIE, session_token};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    name: String,
    password: String,
}

fn user_json(user: &User, domain: &str, token: &str) -> Value {
    json!({
        "name": user.name, "address": format!("{}@{domain}", user.name), "csrf_token": csrf_token(token),
        "tenant": user.tenant, "role": user.role.as_str(),
    })
}

pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let name = body.name.trim().to_ascii_lowercase();
    let attempt = state.limiter.reserve(&name, peer.ip())?;
    state.limiter.check_shared(&name, peer.ip()).await?;
    let user = match state.accounts.sign_in(&name, &body.password, || state.limiter.sign_up(peer.ip())).await {
        Ok(user) => user,
        Err(ApiError::Unauthorized) => {
            attempt.failed();
            state.limiter.count_shared(&name, peer.ip()).await;
            return Err(ApiError::WrongPassword);
        }
        // Neither right nor wrong (the store is down): the reservation is given back.
        Err(e) => return Err(e),
    };
    attempt.succeeded();
    let token = state.accounts.open_session(&user).await?;
    let cookie =
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", state.session_secs);
    Ok(([(header::SET_COOKIE, cookie)], Json(user_json(&user, &state.mail_domain, &token))).into_response())
}

pub(crate) async fn whoami(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
) -> Json<Value> {
    let token = session_token(&headers).unwrap_or_default();
    Json(user_json(&user, &state.mail_domain, &token))
}

pub(crate) async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.accounts.close_session(&token).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}
