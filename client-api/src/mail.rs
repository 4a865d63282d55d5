//! Reading mail: folder pages, one message, read/unread, delete, attachments, the
//! delivery status of sent messages (from mta-server), and `GET /api/events`, the live
//! stream of the mailbox's changes ([`crate::live`]).
//!
//! Folders list newest first, paged, with the unread count. The delivery status of a sent
//! message is kept in its document once final (`sent_status.rs`). Attachments
//! are served as downloads under `Content-Security-Policy: sandbox; default-src 'none'`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::compose::addresses_json;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, CurrentUser};
use crate::mailbox::{Folder, Summary};
use crate::sanitize;
use crate::sent_status::delivery;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    #[serde(default)]
    page: usize,
    #[serde(default = "default_per_page")]
    per_page: usize,
}

fn default_per_page() -> usize {
    50
}

pub(crate) fn summary_json(mail: &Summary) -> Value {
    json!({
        "id": mail.id,
        "folder": mail.field("folder"),
        "from": mail.field("from"),
        "to": addresses_json(&mail.fields, "to"),
        "cc": addresses_json(&mail.fields, "cc"),
        "subject": mail.field("subject"),
        "date_ms": mail.date_ms(),
        "read": mail.read(),
        "preview": mail.field("preview"),
        "attachments": mail.attachments().len(),
    })
}

/// `GET /api/folders/{folder}`: a page of a folder, newest first.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    Path(folder): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let folder = Folder::parse(&folder)?;
    if !(1..=200).contains(&q.per_page) {
        return Err(ApiError::BadRequest("per_page: 1 to 200".into()));
    }
    let page = state.mailbox.page(&user, folder, q.page, q.per_page).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for mail in &page.items {
        let mut item = summary_json(mail);
        if folder == Folder::Sent {
            // An unreachable mta-server still lets the list show; the badge says so.
            item["status"] = delivery(&state, mail).await;
        }
        items.push(item);
    }
    Ok(Json(json!({
        "folder": folder.name(), "total": page.total, "unread": page.unread,
        "page": q.page, "per_page": q.per_page, "messages": items,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadQuery {
    #[serde(default)]
    images: bool,
}

/// `GET /api/mail/{id}`: one message, its HTML sanitized.
pub(crate) async fn read(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ReadQuery>,
) -> Result<Json<Value>, ApiError> {
    let mail = state.mailbox.owned(&user, &id).await?;
    let (text, html) = state.mailbox.body(&mail).await?;
    let inline: HashMap<String, String> = mail
        .attachments()
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.content_id.is_empty())
        .map(|(i, a)| (a.content_id.clone(), format!("/api/mail/{}/attachments/{i}", mail.id)))
        .collect();
    let clean = (!html.is_empty()).then(|| sanitize::mail_html(&html, q.images, &inline));
    let mut out = summary_json(&mail);
    out["text"] = json!(text);
    out["html"] = json!(clean.as_ref().map(|c| c.html.clone()));
    out["remote_images_blocked"] = json!(clean.is_some_and(|c| c.remote_images_blocked));
    out["attachments"] = json!(
        mail.attachments()
            .iter()
            .enumerate()
            .map(|(i, a)| json!({ "index": i, "filename": a.filename, "content_type": a.content_type, "size": a.size, "inline": !a.content_id.is_empty() }))
            .collect::<Vec<_>>()
    );
    // The other messages of its conversation, newest first, when there are any.
    let thread = mail.field("thread");
    if !thread.is_empty() {
        let others: Vec<Value> = state
            .mailbox
            .conversation(thread, 51)
            .await?
            .iter()
            .filter(|m| m.id != mail.id)
            .map(summary_json)
            .collect();
        if !others.is_empty() {
            out["conversation"] = json!(others);
        }
    }
    if mail.field("folder") == "sent" {
        out["bcc"] = addresses_json(&mail.fields, "bcc");
        out["status"] = delivery(&state, &mail).await;
    } else {
        out["origin"] = crate::verdicts::of(&mail, &state.mail_domain);
        // Where a reply goes: the Reply-To (a group's own address for its mail).
        let reply_to: Vec<String> = mail.list("reply_to");
        out["reply_to"] = json!((!reply_to.is_empty()).then(|| reply_to.join("; ")));
        out["group"] = json!(Some(mail.field("group")).filter(|g| !g.is_empty()));
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Mark {
    read: bool,
}

/// `PATCH /api/mail/{id}`: `{"read": true|false}`.
pub(crate) async fn mark(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Mark>,
) -> Result<Json<Value>, ApiError> {
    let mut mail = state.mailbox.owned(&user, &id).await?;
    state.mailbox.set_read(&mail, body.read).await?;
    mail.fields.insert("read".to_owned(), body.read.to_string());
    Ok(Json(summary_json(&mail)))
}

/// `DELETE /api/mail/{id}`.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mail = state.mailbox.owned(&user, &id).await?;
    state.mailbox.delete(&mail).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/mail/{id}/attachments/{index}`: the file, as a download.
pub(crate) async fn attachment(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
    ApiPath((id, index)): ApiPath<(String, usize)>,
) -> Result<Response, ApiError> {
    let mail = state.mailbox.owned(&user, &id).await?;
    let file = state.mailbox.attachment(&mail, index).await?;
    let mut response = (StatusCode::OK, Body::from(file.content)).into_response();
    let headers = response.headers_mut();
    let content_type = HeaderValue::from_str(&file.meta.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    // Always a download, never shown in this origin: a hostile HTML attachment runs nothing.
    let ascii: String = file
        .meta
        .filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' { c } else { '_' })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}

/// `GET /api/events`: the signed-in user's live stream ([`crate::live`]).
pub(crate) async fn events(State(state): State<Arc<AppState>>, CurrentUser(user): CurrentUser) -> Response {
    state.mailbox.live().open(&user.id).unwrap_or_else(IntoResponse::into_response)
}
