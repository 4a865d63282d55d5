//! The JSON API's handlers for campaigns, triggers and background tasks, and the CSV
//! of a finished export streamed from mta-server as it comes.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use super::api::{Caller, param, rpc};
use super::json::{CampaignBody, TriggerBody, campaign_json, one_key, task_json};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

type Params = ApiPath<HashMap<String, String>>;

/// The `Idempotency-Key` header, checked as the app API checks it.
fn header_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    crate::app_api::submit::idempotency_key(headers).map_err(|r| ApiError::BadRequest(r.message))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignsQuery {
    #[serde(default)]
    list_id: String,
}

/// `GET P/campaigns?list_id=`.
pub(crate) async fn list(caller: Caller, ApiQuery(q): ApiQuery<CampaignsQuery>) -> Result<Json<Value>, ApiError> {
    let request = pb::ListCampaignsRequest { tenant: caller.tenant.clone(), list_id: q.list_id };
    let found = rpc!(caller, list_campaigns, request)?;
    Ok(Json(json!({ "campaigns": found.campaigns.iter().map(campaign_json).collect::<Vec<_>>() })))
}

/// `POST P/campaigns`.
pub(crate) async fn create(
    caller: Caller,
    headers: axum::http::HeaderMap,
    ApiJson(mut body): ApiJson<CampaignBody>,
) -> Result<Json<Value>, ApiError> {
    let key = one_key(body.idempotency_key.take(), header_key(&headers)?)?.unwrap_or_default();
    let request = pb::CreateCampaignRequest { tenant: caller.tenant.clone(), campaign: Some(body.into_campaign(key)?) };
    Ok(Json(campaign_json(&rpc!(caller, create_campaign, request)?)))
}

fn campaign_request(caller: &Caller, p: &HashMap<String, String>) -> pb::CampaignRequest {
    pb::CampaignRequest { tenant: caller.tenant.clone(), campaign_id: param(p, "campaign_id") }
}

/// `GET P/campaigns/{campaign_id}`.
pub(crate) async fn get(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(campaign_json(&rpc!(caller, get_campaign, campaign_request(&caller, &p))?)))
}

/// `POST P/campaigns/{campaign_id}/pause`.
pub(crate) async fn pause(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(campaign_json(&rpc!(caller, pause_campaign, campaign_request(&caller, &p))?)))
}

/// `POST P/campaigns/{campaign_id}/resume`.
pub(crate) async fn resume(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(campaign_json(&rpc!(caller, resume_campaign, campaign_request(&caller, &p))?)))
}

/// `POST P/campaigns/{campaign_id}/cancel`.
pub(crate) async fn cancel(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(campaign_json(&rpc!(caller, cancel_campaign, campaign_request(&caller, &p))?)))
}

/// `POST P/lists/{list_id}/trigger`: one of the list's templates to the subscribers
/// matching `filter`, once per idempotency key (required, in the body or the header).
pub(crate) async fn trigger(
    caller: Caller,
    ApiPath(p): Params,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<TriggerBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(key) = one_key(body.idempotency_key, header_key(&headers)?)? else {
        return Err(ApiError::BadRequest(
            "idempotency_key: required (in the body or the Idempotency-Key header), so that a trigger sent again notifies once"
                .into(),
        ));
    };
    let request = pb::TriggerRequest {
        tenant: caller.tenant.clone(),
        list_id: param(&p, "list_id"),
        template: body.template,
        filter: body.filter,
        idempotency_key: key,
    };
    Ok(Json(campaign_json(&rpc!(caller, trigger, request)?)))
}

/// `GET P/tasks`.
pub(crate) async fn tasks(caller: Caller) -> Result<Json<Value>, ApiError> {
    let found = rpc!(caller, list_tasks, pb::ListTasksRequest { tenant: caller.tenant.clone() })?;
    Ok(Json(json!({ "tasks": found.tasks.iter().map(task_json).collect::<Vec<_>>() })))
}

fn task_request(caller: &Caller, p: &HashMap<String, String>) -> pb::TaskRequest {
    pb::TaskRequest { tenant: caller.tenant.clone(), task_id: param(p, "task_id") }
}

/// `GET P/tasks/{task_id}`.
pub(crate) async fn task(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(task_json(&rpc!(caller, get_task, task_request(&caller, &p))?)))
}

/// `POST P/tasks/{task_id}/cancel`.
pub(crate) async fn cancel_task(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(task_json(&rpc!(caller, cancel_task, task_request(&caller, &p))?)))
}

/// `POST P/tasks/{task_id}/retry`.
pub(crate) async fn retry_task(caller: Caller, ApiPath(p): Params) -> Result<Json<Value>, ApiError> {
    Ok(Json(task_json(&rpc!(caller, retry_task, task_request(&caller, &p))?)))
}

/// `GET P/tasks/{task_id}/export.csv`: the CSV as a download, streamed. The first chunk
/// is awaited before answering, so that an export not yet done is a 409 rather than an
/// empty file; a failure later cuts the download short (the client sees it incomplete).
pub(crate) async fn export_csv(caller: Caller, ApiPath(p): Params) -> Result<Response, ApiError> {
    let task_id = param(&p, "task_id");
    let mut stream = rpc!(caller, read_export, task_request(&caller, &p))?;
    let first = stream.message().await.map_err(|s| caller.error(s))?;
    let head = tokio_stream::iter(first.map(|c| Ok::<_, tonic::Status>(c.data)));
    let rest = stream.map(|chunk| chunk.map(|c| c.data));
    let body = Body::from_stream(head.chain(rest).map(|chunk| {
        chunk.map_err(|s| {
            tracing::warn!(code = ?s.code(), error = %s.message(), "export download cut short");
            std::io::Error::other(s.message().to_owned())
        })
    }));
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    // The task id is mta-server's (a UUID); anything else is left out of the name.
    let safe: String = task_id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"export-{safe}.csv\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}
