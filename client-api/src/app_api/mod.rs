//! The app-facing sending APIs, shaped like SendGrid's and Mailgun's so that their SDKs
//! and django-anymail work by changing only their base URL:
//!
//! | method and path | shape |
//! | --- | --- |
//! | `POST /v3/mail/send` | SendGrid Mail Send v3 ([`sendgrid`]) |
//! | `POST /v3/{domain}/messages` | Mailgun, fields (urlencoded or multipart) ([`mailgun`]) |
//! | `POST /v3/{domain}/messages.mime` | Mailgun, a whole MIME message in `message` ([`mime`]) |
//! | `GET /app/v1/messages/{id}`, `GET /app/v1/events` | the read API for apps that poll ([`read`]) |
//! | `POST`, `GET /app/v1/webhooks`, `DELETE /app/v1/webhooks/{id}` | the app's signed event webhooks ([`hooks`]) |
//!
//! The edge checks no key itself: it forwards the caller's own tenant key (SendGrid's
//! `Authorization: Bearer KEY`, Mailgun's Basic `api:KEY`) as the bearer of its calls to
//! mta-server, so that the one key check, the tenant's `From` rule, its quotas and the
//! suppression list apply as they do to gRPC callers ([`submit`]). Each personalization
//! or recipient-variables copy is its own `Submit`, its own message; a request of several
//! copies is checked whole first (`validate_only`), so that a bad copy sends nothing.
//! Sandbox and test modes stop after that check. mta-server's refusals come back as a
//! [`Refusal`], which each module answers in its provider's own shape.
//!
//! No session, CSRF or same-origin rule applies here: there is no cookie, and the key is
//! the only credential.

pub(crate) mod form;
pub(crate) mod hooks;
pub(crate) mod mailgun;
pub(crate) mod mime;
pub(crate) mod read;
pub(crate) mod sendgrid;
pub(crate) mod submit;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::state::AppState;

/// SendGrid's limit on a whole request ("less than 30 MB").
pub(crate) const SENDGRID_MAX_BYTES: usize = 30 * 1024 * 1024;
/// Mailgun's 25 MB message, and room for the form around it.
pub(crate) const MAILGUN_MAX_BYTES: usize = 26 * 1024 * 1024;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    // The body limits are checked by the handlers, which answer 413 in the provider's
    // shape rather than axum's plain text.
    Router::new()
        .route("/v3/mail/send", post(sendgrid::send))
        .route("/v3/{domain}/messages", post(mailgun::messages))
        .route("/v3/{domain}/messages.mime", post(mailgun::messages_mime))
        .layer(DefaultBodyLimit::disable())
        .route("/app/v1/messages/{id}", get(read::message))
        .route("/app/v1/events", get(read::events))
        .route("/app/v1/webhooks", get(hooks::list).post(hooks::create))
        .route("/app/v1/webhooks/{id}", axum::routing::delete(hooks::delete))
}

/// Why a request was refused, before each provider's module words it its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    /// The request field at fault, in the provider's naming when known.
    pub(crate) field: Option<String>,
    pub(crate) message: String,
    /// For 429: when to try again, in seconds.
    pub(crate) retry_after_secs: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Refusal { status, field: field.map(str::to_owned), message: message.into(), retry_after_secs: None }
    }

    pub(crate) fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    /// 5xx are ours to fix and logged; 4xx are the caller's and not.
    pub(crate) fn log(&self) {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %self.message, "app API request failed");
        }
    }
}
