//! Signing in and out, who is signed in, the CSRF token, and the sign-in limiter.
//!
//! The CSRF token is derived from the session token (SHA-256 of a fixed label and the
//! token): a page of this origin learns it from `POST`/`GET /api/session` and sends it
//! back in `X-CSRF-Token` with every state change. Another site can neither read the
//! HttpOnly cookie nor our answers, so it cannot know the token.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bitmail_runtime::sync::lock;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::User;
use crate::error::ApiError;
use crate::routes::{ApiJson, AppState, CurrentUser, SESSION_COOKIE, session_token};

/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session.
pub fn csrf_token(session_token: &str) -> String {
    let mut input = b"bitmail-csrf-v1:".to_vec();
    input.extend_from_slice(session_token.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Failed sign-ins per name and per client address: after the limit within `WINDOW`,
/// that name (or address) is refused until the window ends, which bounds password
/// guessing against one account and from one place.
#[derive(Default)]
pub struct LoginLimiter {
    names: Mutex<HashMap<String, (u32, Instant)>>,
    addresses: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

pub const MAX_FAILURES_PER_NAME: u32 = 10;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 50;
const WINDOW: Duration = Duration::from_secs(15 * 60);

fn over<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (u32, Instant)>>, key: &K, max: u32) -> bool {
    let mut map = lock(map);
    match map.get(key) {
        Some((n, since)) if since.elapsed() < WINDOW => *n >= max,
        Some(_) => {
            map.remove(key);
            false
        }
        None => false,
    }
}

fn count<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (u32, Instant)>>, key: K) {
    let mut map = lock(map);
    // Keep the map bounded: forget windows that are over.
    if map.len() > 100_000 {
        map.retain(|_, (_, since)| since.elapsed() < WINDOW);
    }
    map.entry(key).or_insert((0, Instant::now())).0 += 1;
}

impl LoginLimiter {
    pub fn check(&self, name: &str, address: IpAddr) -> Result<(), ApiError> {
        if over(&self.names, &name.to_owned(), MAX_FAILURES_PER_NAME) {
            return Err(ApiError::TooManyRequests("too many failed sign-ins for this name; try again later".into()));
        }
        if over(&self.addresses, &address, MAX_FAILURES_PER_ADDRESS) {
            return Err(ApiError::TooManyRequests(
                "too many failed sign-ins from this address; try again later".into(),
            ));
        }
        Ok(())
    }

    pub fn failed(&self, name: &str, address: IpAddr) {
        count(&self.names, name.to_owned());
        count(&self.addresses, address);
    }

    pub fn succeeded(&self, name: &str) {
        lock(&self.names).remove(name);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    name: String,
    password: String,
}

fn user_json(user: &User, domain: &str, token: &str) -> Value {
    json!({ "name": user.name, "address": format!("{}@{domain}", user.name), "csrf_token": csrf_token(token) })
}

pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let name = body.name.trim().to_ascii_lowercase();
    state.limiter.check(&name, peer.ip())?;
    let user = match state.accounts.sign_in(&name, &body.password).await {
        Ok(user) => user,
        Err(ApiError::Unauthorized) => {
            state.limiter.failed(&name, peer.ip());
            return Err(ApiError::WrongPassword);
        }
        Err(e) => return Err(e),
    };
    state.limiter.succeeded(&name);
    let token = state.accounts.open_session(&user).await?;
    let cookie =
        format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}", state.session_secs);
    Ok(([(header::SET_COOKIE, cookie)], Json(user_json(&user, &state.mail_domain, &token))).into_response())
}

pub async fn whoami(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    headers: HeaderMap,
) -> Json<Value> {
    let token = session_token(&headers).unwrap_or_default();
    Json(user_json(&user, &state.mail_domain, &token))
}

pub async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = session_token(&headers) {
        state.accounts.close_session(&token).await?;
    }
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_a_name_and_an_address() {
        let l = LoginLimiter::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_NAME {
            assert!(l.check("ada", here).is_ok());
            l.failed("ada", here);
        }
        assert!(matches!(l.check("ada", there), Err(ApiError::TooManyRequests(_))));
        assert!(l.check("bob", here).is_ok());
        l.succeeded("ada");
        assert!(l.check("ada", here).is_ok());
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            l.failed(&format!("name{i}"), there);
        }
        assert!(matches!(l.check("carol", there), Err(ApiError::TooManyRequests(_))));
        assert!(l.check("carol", here).is_ok());
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        assert_eq!(csrf_token("a").len(), 64);
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a"), csrf_token("a"));
    }
}
