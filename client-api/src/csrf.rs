//! The two checks every state change goes through, and the CSRF token they compare.
//!
//! A state change whose `Origin` is not this host is refused; a state change of a
//! session must carry the session's CSRF token in `X-CSRF-Token`. The token is derived
//! from the session token (SHA-256 of a fixed label and the token): a page of this
//! origin learns it from `POST`/`GET /api/session` and sends it back with every state
//! change. Another site can neither read the HttpOnly cookie nor our answers, so it
//! cannot know the token.

use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::session_token;

/// The header that carries the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of a session.
pub(crate) fn csrf_token(session_token: &str) -> String {
    let mut input = b"bitmail-csrf-v1:".to_vec();
    input.extend_from_slice(session_token.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The public list pages (`/lists/...`): their POSTs come from other origins by design
/// (the embeddable subscribe form on a tenant's site, a mail provider's RFC 8058
/// one-click unsubscribe), carry no session and change nothing a session owns; a
/// signed token (or, for a subscription, the double opt-in) is their authority. The
/// only writes exempt from both checks below.
pub(crate) fn is_public_list_page(path: &str) -> bool {
    path.starts_with("/lists/")
}

/// Refuses a state change sent from another origin.
pub(crate) async fn same_origin_writes(req: Request, next: Next) -> Response {
    if is_write(req.method())
        && !is_public_list_page(req.uri().path())
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
pub(crate) async fn csrf_checked_writes(req: Request, next: Next) -> Response {
    let signing_in = req.method() == Method::POST && req.uri().path() == "/api/session";
    if is_write(req.method())
        && !signing_in
        && !is_public_list_page(req.uri().path())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_list_pages_are_exempt() {
        for path in ["/lists/0193/subscribe", "/lists/u/tok", "/lists/confirm/tok", "/lists/prefs/tok"] {
            assert!(is_public_list_page(path), "{path}");
        }
        for path in ["/api/admin/tenants/t/lists", "/app/v1/lists", "/lists", "/api/messages", "/listsx/u/t"] {
            assert!(!is_public_list_page(path), "{path}");
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        assert_eq!(csrf_token("a").len(), 64);
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a"), csrf_token("a"));
    }
}
