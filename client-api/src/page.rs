//! `GET /` and every path no route claims: the webmail's files (and, under `/admin/`,
//! the admin console's bundle, see [`crate::assets`]), or the bare page when no build is
//! configured. The webmail's own URLs (`/inbox`, `/sent`, `/compose`, `/status`,
//! `/mail/ID`: it routes in the browser) answer its page, so a reload keeps the place.

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

/// Whether `path` is one of the webmail's pages (see `web/src/route.rs`).
fn webmail_page(path: &str) -> bool {
    matches!(path, "/inbox" | "/sent" | "/compose" | "/status")
        || path.strip_prefix("/mail/").is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The webmail's files; the bare page when no build is configured.
pub(crate) async fn page(State(state): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    match &state.web {
        Some(web) => web
            .respond(if webmail_page(uri.path()) { "/" } else { uri.path() }, &headers)
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

#[cfg(test)]
mod tests {
    use super::webmail_page;

    #[test]
    fn the_webmails_pages_are_its_urls_only() {
        for path in ["/inbox", "/sent", "/compose", "/status", "/mail/abc123"] {
            assert!(webmail_page(path), "{path}");
        }
        for path in ["/", "/mail/", "/mail/a/b", "/inboxes", "/assets/app.js", "/admin/", "/api/session"] {
            assert!(!webmail_page(path), "{path}");
        }
    }
}
