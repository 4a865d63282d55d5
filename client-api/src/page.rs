//! `GET /` and every path no route claims: the webmail's files (and, under `/admin/`,
//! the admin console's bundle, see [`crate::assets`]), or the bare page when no build is
//! configured.

use std::sync::Arc;

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;

use crate::error::ApiError;
use crate::state::AppState;

const BARE_PAGE: &str = include_str!("index.html");

/// The bare page's policy: its own inline script and style, by hash, and nothing else.
static BARE_PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = |open: &str, close: &str| {
        let start = BARE_PAGE.find(open).map_or(0, |i| i + open.len());
        let end = BARE_PAGE[start..].find(close).map_or(start, |i| start + i);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &BARE_PAGE.as_bytes()[start..end]);
        format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest.as_ref()))
    };
    format!(
        "default-src 'self'; script-src {}; style-src {}; img-src 'self' data:; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        hash("<script>", "</script>"),
        hash("<style>", "</style>")
    )
});

/// Every answer of the edge, which speaks only HTTPS, tells browsers to keep to HTTPS
/// (HSTS, a year).
pub(crate) async fn https_only(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    response
}

/// The webmail's files; the bare page when no build is configured.
pub(crate) async fn page(State(state): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    match &state.web {
        Some(web) => web
            .respond(uri.path(), &headers)
            .unwrap_or_else(|| ApiError::NotFound(format!("no file {}", uri.path())).into_response()),
        None if uri.path() == "/" => {
            let mut page = Html(BARE_PAGE).into_response();
            if let Ok(csp) = HeaderValue::from_str(&BARE_PAGE_CSP) {
                page.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
            }
            page.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
            page
        }
        None => ApiError::NotFound(format!("no file {}", uri.path())).into_response(),
    }
}
