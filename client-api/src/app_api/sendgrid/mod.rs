//! `POST /v3/mail/send`, SendGrid Mail Send v3's shape: a JSON body, `Authorization:
//! Bearer KEY`, 202 with an empty body and `X-Message-Id` (the first copy's BitMail id;
//! `X-BitMail-Message-Ids` lists every copy's), 200 in sandbox mode, errors as
//! `{"errors":[{"message","field","help"}]}`.
//!
//! Each personalization is its own message: its `to`/`cc`/`bcc`, its `subject`,
//! `headers`, `custom_args` and `send_at` over the request's, its `substitutions`
//! replaced in the subject and content, its own `from` if it has one.
//!
//! Taken: `personalizations`, `from`, `reply_to`, `reply_to_list`, `subject`,
//! `content` (`text/plain`, `text/html`), `attachments` (inline ones with
//! `content_id`), `headers`, `categories` (at most 3, BitMail's tags: characters other
//! than letters, digits, `_` and `-` become `_`), `custom_args` (at most 10, BitMail's
//! metadata), `send_at`, `mail_settings.sandbox_mode`. Accepted and ignored:
//! `asm`, `ip_pool_name`, `batch_id`, `tracking_settings` and the other
//! `mail_settings`. Answered 400 naming the field: `template_id` and
//! `dynamic_template_data` (templates stored at SendGrid), any other field.
//!
//! Here: the handler, its key, its answers and SendGrid's names of mta-server's fields;
//! `copies`: the body's model, checked, made into one submission per personalization.

mod copies;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bitmail_runtime::time::now_ms;
use serde_json::{Value, json};

use super::form::read_body;
use super::submit::{Upstream, idempotency_key, unauthorized};
use super::{Refusal, SENDGRID_MAX_BYTES};
use crate::state::AppState;
use copies::{Mail, copies};

pub(crate) async fn send(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    match accept(&state, &headers, body).await {
        Ok(response) => response,
        Err(refusal) => {
            refusal.log();
            error_response(&refusal)
        }
    }
}

async fn accept(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, Refusal> {
    let key = bearer(headers)?;
    let idempotency = idempotency_key(headers)?;
    let bytes = read_body(body, SENDGRID_MAX_BYTES).await?;
    let (sandbox, copies) = parse(&bytes, now_ms() as i64 / 1000)?;
    let upstream = Upstream::new(state, &key)?;
    let ids = upstream
        .submit(copies, idempotency.as_deref(), sandbox)
        .await
        .map_err(|(copy, r)| Refusal { field: r.field.as_deref().map(|f| sendgrid_field(f, copy)), ..r })?;
    tracing::info!(copies = ids.len(), sandbox, "accepted a SendGrid-shaped request");
    Ok(success(sandbox, &ids))
}

/// A Mail Send body: whether it is in sandbox mode, and its copies (one a
/// personalization) as of `now_secs`.
pub(crate) fn parse(body: &[u8], now_secs: i64) -> Result<(bool, Vec<bitmail_proto::v1::SubmitRequest>), Refusal> {
    let mail: Mail = serde_json::from_slice(body).map_err(|e| {
        Refusal::new(StatusCode::BAD_REQUEST, None, format!("The request body is not valid Mail Send JSON: {e}"))
    })?;
    Ok((mail.sandbox(), copies(mail, now_secs)?))
}

/// The key of `Authorization: Bearer KEY`.
fn bearer(headers: &HeaderMap) -> Result<String, Refusal> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match value.strip_prefix("Bearer ").map(str::trim) {
        Some(key) if !key.is_empty() => Ok(key.to_owned()),
        _ if value.is_empty() => Err(Refusal::new(StatusCode::UNAUTHORIZED, None, "authorization required")),
        _ => Err(unauthorized()),
    }
}

fn success(sandbox: bool, ids: &[String]) -> Response {
    if sandbox {
        return StatusCode::OK.into_response();
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    if let Some(first) = ids.first().and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("x-message-id", first);
    }
    if let Ok(all) = HeaderValue::from_str(&ids.join(",")) {
        headers.insert("x-bitmail-message-ids", all);
    }
    response
}

/// SendGrid's error shape; a 429 with `Retry-After` and `X-RateLimit-*`.
pub(crate) fn error_response(r: &Refusal) -> Response {
    let body = json!({ "errors": [{ "message": r.message, "field": r.field, "help": Value::Null }] });
    let mut response = (r.status, axum::Json(body)).into_response();
    if let Some(secs) = r.retry_after_secs {
        let headers = response.headers_mut();
        let reset = now_ms() / 1000 + secs;
        for (name, value) in [
            ("retry-after", secs.to_string()),
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-reset", reset.to_string()),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    response
}
/// mta-server's name of a field (`to[1]`, `attachments[0].content`) as SendGrid names
/// it, in personalization `copy`.
fn sendgrid_field(mta: &str, copy: usize) -> String {
    let (head, rest) = mta.split_once('[').map_or((mta, ""), |(h, r)| (h, r));
    let index = rest.split(']').next().unwrap_or_default();
    let after = rest.split_once("].").map_or("", |(_, a)| a);
    match head {
        "to" | "cc" | "bcc" if !index.is_empty() => format!("personalizations.{copy}.{head}.{index}"),
        "to" | "cc" | "bcc" => format!("personalizations.{copy}.to"),
        "from" => "from.email".into(),
        "reply_to" => "reply_to".into(),
        "subject" => "subject".into(),
        "text" | "html" => "content".into(),
        "headers" => "headers".into(),
        "attachments" if !after.is_empty() => format!("attachments.{index}.{after}"),
        "attachments" => format!("attachments.{index}"),
        "tags" => "categories".into(),
        "metadata" => "custom_args".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mta_server_fields_are_named_as_sendgrid_names_them() {
        assert_eq!(sendgrid_field("to[1]", 3), "personalizations.3.to.1");
        assert_eq!(sendgrid_field("attachments[0].content_type", 0), "attachments.0.content_type");
        assert_eq!(sendgrid_field("metadata[\"k\"]", 0), "custom_args");
        assert_eq!(sendgrid_field("headers[2].name", 0), "headers");
        assert_eq!(sendgrid_field("from", 0), "from.email");
    }
}
