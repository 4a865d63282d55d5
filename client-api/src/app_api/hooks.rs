//! The app's webhooks, registered with the key it sends with (scope `send`; `read` to
//! list): every event of its messages is POSTed to them, signed (mta-server's
//! `outbox`).
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /app/v1/webhooks` | `{url, format?}` (`bitmail` or `sendgrid`): the webhook, with its `secret` this once |
//! | `GET /app/v1/webhooks` | the tenant's webhooks, with how delivery is going |
//! | `DELETE /app/v1/webhooks/{id}` | removes one |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Refusal;
use super::read::{key_of, respond};
use super::submit::Upstream;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    #[serde(default)]
    format: String,
}

pub(crate) async fn create(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let answer = async {
        let upstream = Upstream::new(&state, &key_of(&headers)?)?;
        let new: NewWebhook = serde_json::from_slice(&body).map_err(|e| {
            Refusal::new(StatusCode::BAD_REQUEST, None, format!("the body must be {{url, format?}}: {e}"))
        })?;
        let request = pb::CreateWebhookRequest { url: new.url, format: new.format, tenant: String::new() };
        let created = upstream.mta().create_webhook(request).await.map_err(|s| super::submit::refusal(&s))?;
        Ok(webhook_json(&created.into_inner()))
    };
    respond(answer.await)
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let answer = async {
        let upstream = Upstream::new(&state, &key_of(&headers)?)?;
        let listed = upstream.mta().list_webhooks(pb::ListWebhooksRequest::default()).await;
        let listed = listed.map_err(|s| super::submit::refusal(&s))?.into_inner();
        Ok(json!({ "webhooks": listed.webhooks.iter().map(webhook_json).collect::<Vec<_>>() }))
    };
    respond(answer.await)
}

pub(crate) async fn delete(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let answer = async {
        let upstream = Upstream::new(&state, &key_of(&headers)?)?;
        let request = pb::DeleteWebhookRequest { id, tenant: String::new() };
        let deleted = upstream.mta().delete_webhook(request).await.map_err(|s| super::submit::refusal(&s))?;
        Ok(webhook_json(&deleted.into_inner()))
    };
    respond(answer.await)
}

/// A webhook as JSON; the secret only when the answer has it (creation).
pub(crate) fn webhook_json(w: &pb::AppWebhook) -> Value {
    let d = w.delivery.clone().unwrap_or_default();
    let mut v = json!({
        "id": w.id, "tenant": w.tenant, "url": w.url, "format": w.format, "created_at_ms": w.created_at_unix_ms,
        "delivery": {
            "delivered": d.delivered, "dropped": d.dropped, "failures": d.failures,
            "failing_since_ms": d.failing_since_unix_ms, "next_attempt_at_ms": d.next_attempt_unix_ms,
            "last_attempt_at_ms": d.last_attempt_unix_ms, "last_status": d.last_status, "last_error": d.last_error,
            "cursor": d.cursor,
        },
    });
    if !w.secret.is_empty() {
        v["secret"] = json!(w.secret);
    }
    if !w.public_key.is_empty() {
        v["public_key"] = json!(w.public_key);
    }
    v
}
