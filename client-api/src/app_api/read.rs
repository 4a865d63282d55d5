//! The read API for apps that poll, with the same key they send with
//! (`Authorization: Bearer KEY` or Basic `api:KEY`; the key needs the `read` scope):
//!
//! | method and path | what |
//! | --- | --- |
//! | `GET /app/v1/messages/{id}` | one message: its state, attempts and the providers' events |
//! | `GET /app/v1/events?after=CURSOR&limit=N` | the tenant's event log after a cursor, oldest first |
//!
//! Answers are JSON; errors `{"error": {"code", "message"}}` (401 wrong key, 403 no
//! `read` scope, 404 not the tenant's message, 400 a bad cursor or limit). Times are
//! milliseconds since the epoch.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Refusal;
use super::submit::{Upstream, unauthorized};
use crate::state::AppState;

pub(crate) async fn message(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let upstream = Upstream::new(&state, &key_of(&headers)?)?;
        Ok(message_json(upstream.get_message(&id).await?))
    };
    respond(answer.await)
}

#[derive(Deserialize)]
pub(crate) struct Page {
    #[serde(default)]
    after: String,
    #[serde(default)]
    limit: u32,
}

pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Response {
    let answer = async {
        let upstream = Upstream::new(&state, &key_of(&headers)?)?;
        let found = upstream.list_events(page.after, page.limit).await?;
        let events: Vec<Value> = found.events.into_iter().map(event_json).collect();
        Ok(json!({ "events": events, "next_cursor": found.next_cursor }))
    };
    respond(answer.await)
}

pub(crate) fn respond(answer: Result<Value, Refusal>) -> Response {
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(r) => {
            r.log();
            let code = r.status.canonical_reason().unwrap_or("error").to_ascii_lowercase().replace(' ', "_");
            (r.status, Json(json!({ "error": { "code": code, "message": r.message } }))).into_response()
        }
    }
}

/// The key of `Authorization: Bearer KEY` or Basic `api:KEY`.
pub(crate) fn key_of(headers: &HeaderMap) -> Result<String, Refusal> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
    if let Some(key) = value.strip_prefix("Bearer ").map(str::trim).filter(|k| !k.is_empty()) {
        return Ok(key.to_owned());
    }
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(unauthorized)?;
    match decoded.split_once(':') {
        Some(("api", key)) if !key.is_empty() => Ok(key.to_owned()),
        _ => Err(unauthorized()),
    }
}

fn name(state: pb::DeliveryState) -> String {
    state.as_str_name().trim_start_matches("DELIVERY_STATE_").to_ascii_lowercase()
}

fn message_json(s: pb::MessageStatus) -> Value {
    let attempts: Vec<Value> = s
        .attempts
        .iter()
        .map(|a| {
            json!({
                "provider": a.provider, "started_at_ms": a.started_at_unix_ms, "duration_ms": a.duration_ms,
                "outcome": a.outcome().as_str_name().trim_start_matches("ATTEMPT_OUTCOME_").to_ascii_lowercase(),
                "provider_message_id": a.provider_message_id, "detail": a.detail,
            })
        })
        .collect();
    let events: Vec<Value> = s
        .events
        .iter()
        .map(|e| {
            json!({
                "event": e.kind().as_str_name().trim_start_matches("EVENT_KIND_").to_ascii_lowercase(),
                "recipient": e.recipient, "at_ms": e.at_unix_ms, "provider": e.provider,
                "detail": e.detail, "permanent": e.permanent,
            })
        })
        .collect();
    json!({
        "id": s.message_id, "state": name(s.state()), "tenant": s.tenant, "provider": s.provider,
        "provider_message_id": s.provider_message_id, "error": s.error, "submitted_at_ms": s.submitted_at_unix_ms,
        "next_attempt_at_ms": s.next_attempt_at_unix_ms, "possible_duplicate": s.possible_duplicate,
        "attempts": attempts, "events": events,
    })
}

fn event_json(e: pb::LoggedEvent) -> Value {
    json!({
        "cursor": e.cursor, "message_id": e.message_id, "event": e.event, "source": e.source,
        "recipient": e.recipient, "at_ms": e.at_unix_ms, "detail": e.detail, "permanent": e.permanent,
        "metadata": e.metadata,
    })
}
