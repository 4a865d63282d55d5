//! The providers' webhooks: `POST /webhooks/{provider}/events`, where `{provider}` is
//! the provider's name in mta-server's config. The request's headers and body bytes go
//! to mta-server untouched (`bitmail.v1.Mta/ReceiveWebhook`), where the provider's
//! module verifies the signature over the raw bytes and parses the events; its answer
//! becomes the HTTP status the provider gets (200, 400, 401, 404). Bodies over the
//! edge's limit are refused with 413 before anything is forwarded.
//!
//! No session or same-origin rule applies: the provider's signature is the only
//! credential, and mta-server checks it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bitmail_proto::v1 as pb;

use crate::error::ApiError;
use crate::routes::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/webhooks/{provider}/events", post(events))
}

async fn events(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let headers = headers
        .iter()
        .filter_map(|(name, value)| {
            Some(pb::Header { name: name.as_str().to_owned(), value: value.to_str().ok()?.to_owned() })
        })
        .collect();
    let request = pb::WebhookRequest { provider, headers, body: body.to_vec() };
    // An unreachable mta-server answers 502/503, which providers retry later.
    let answer = state.mta.clone().receive_webhook(request).await?.into_inner();
    let status = u16::try_from(answer.http_status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = if status == StatusCode::OK {
        format!("stored {}, seen before {}\n", answer.stored, answer.duplicates)
    } else {
        format!("{}\n", answer.message)
    };
    Ok((status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}
