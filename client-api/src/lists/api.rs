//! The JSON API's callers ([`Caller`], either way in) and its handlers for lists,
//! subscribers, import and export (the routes and shapes are in [`super`] and
//! [`super::json`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::Bearer;
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::{Code, Status};

use super::Upstream;
use super::json::{ListBody, SubscriberBody, list_json, list_patch, subscriber_json, task_json};
use crate::admin::Admin;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// What an mta-server older than the lists answers (an edge upgraded first).
pub(crate) const NOT_SERVED: &str = "mta-server does not serve mailing lists (bitmail.v1.Lists) yet: upgrade it";

/// The largest CSV an import takes (mta-server's limit too).
pub(crate) const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// Who calls, and for which tenant: a signed-in admin under
/// `/api/admin/tenants/{id}/...` (for tenant `{id}`, with `mta_admin_key`), or an app
/// under `/app/v1/...` (its key forwarded, for its own tenant).
pub(crate) struct Caller {
    pub(crate) upstream: Upstream,
    /// Empty: the key's own tenant.
    pub(crate) tenant: String,
    /// An app: mta-server's UNAUTHENTICATED is its key's fault (401), not the edge's.
    app: bool,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if parts.uri.path().starts_with("/api/admin/") {
            let admin = Admin::from_request_parts(parts, state).await?;
            let ApiPath(params) = ApiPath::<HashMap<String, String>>::from_request_parts(parts, state).await?;
            let tenant = params.get("id").cloned().unwrap_or_default();
            let actor = Some(format!("user:{}", admin.user.name));
            let upstream = Upstream::new(admin.upstream.pool.clone(), admin.upstream.bearer.clone(), actor);
            return Ok(Caller { upstream, tenant, app: false });
        }
        let key = crate::app_api::read::key_of(&parts.headers).map_err(|_| ApiError::BadKey)?;
        let bearer = Bearer::new(Some(&key)).map_err(|_| ApiError::BadKey)?;
        Ok(Caller { upstream: Upstream::new(state.pool.clone(), bearer, None), tenant: String::new(), app: true })
    }
}

impl Caller {
    /// mta-server's refusal as the caller should see it.
    pub(crate) fn error(&self, s: Status) -> ApiError {
        match s.code() {
            Code::Unauthenticated if self.app => ApiError::BadKey,
            Code::ResourceExhausted if s.metadata().get("retry-after-ms").is_some() => {
                ApiError::TooManyRequests(s.message().to_owned())
            }
            // tonic's refusal of a message over mta-server's decoding limit.
            Code::OutOfRange => ApiError::PayloadTooLarge(s.message().to_owned()),
            Code::Unimplemented => ApiError::Unavailable(NOT_SERVED.into()),
            _ => ApiError::from(s),
        }
    }
}

/// A path parameter of the route (always there: the router matched it).
pub(crate) fn param(params: &HashMap<String, String>, name: &str) -> String {
    params.get(name).cloned().unwrap_or_default()
}

/// `caller.upstream.call` with the caller's error mapping.
macro_rules! rpc {
    ($caller:expr, $method:ident, $request:expr) => {{
        let caller = &$caller;
        caller.upstream.call($request, |mut c, r| async move { c.$method(r).await }).await.map_err(|s| caller.error(s))
    }};
}
pub(crate) use rpc;

/// `GET P/lists`.
pub(crate) async fn list_lists(caller: Caller) -> Result<Json<Value>, ApiError> {
    let found = rpc!(caller, list_lists, pb::ListListsRequest { tenant: caller.tenant.clone() })?;
    Ok(Json(json!({ "lists": found.lists.iter().map(list_json).collect::<Vec<_>>() })))
}

/// `POST P/lists`.
pub(crate) async fn create_list(caller: Caller, ApiJson(body): ApiJson<ListBody>) -> Result<Json<Value>, ApiError> {
    let request = pb::CreateListRequest { tenant: caller.tenant.clone(), list: Some(body.into_list()) };
    Ok(Json(list_json(&rpc!(caller, create_list, request)?)))
}

/// `GET P/lists/{list_id}`.
pub(crate) async fn get_list(
    caller: Caller,
    ApiPath(p): ApiPath<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let request = pb::GetListRequest { tenant: caller.tenant.clone(), list_id: param(&p, "list_id") };
    Ok(Json(list_json(&rpc!(caller, get_list, request)?)))
}

/// `PATCH P/lists/{list_id}`: the fields present in the body are replaced.
pub(crate) async fn update_list(
    caller: Caller,
    ApiPath(p): ApiPath<HashMap<String, String>>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (list, update_fields) = list_patch(body)?;
    let request = pb::UpdateListRequest {
        tenant: caller.tenant.clone(),
        list_id: param(&p, "list_id"),
        list: Some(list),
        update_fields,
    };
    Ok(Json(list_json(&rpc!(caller, update_list, request)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscribersQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    limit: u32,
    #[serde(default)]
    page_token: String,
}

/// `GET P/lists/{list_id}/subscribers?state&limit&page_token`: one page.
pub(crate) async fn subscribers(
    caller: Caller,
    ApiPath(p): ApiPath<HashMap<String, String>>,
    ApiQuery(q): ApiQuery<SubscribersQuery>,
) -> Result<Json<Value>, ApiError> {
    let request = pb::ListSubscribersRequest {
        tenant: caller.tenant.clone(),
        list_id: param(&p, "list_id"),
        state: q.state,
        limit: q.limit,
        page_token: q.page_token,
    };
    let page = rpc!(caller, list_subscribers, request)?;
    let subscribers: Vec<Value> = page.subscribers.iter().map(subscriber_json).collect();
    Ok(Json(json!({ "subscribers": subscribers, "next_page_token": page.next_page_token })))
}

/// `POST P/lists/{list_id}/subscribers`.
pub(crate) async fn add_subscriber(
    caller: Caller,
    ApiPath(p): ApiPath<HashMap<String, String>>,
    ApiJson(body): ApiJson<SubscriberBody>,
) -> Result<Json<Value>, ApiError> {
    let request = pb::SubscribeRequest {
        tenant: caller.tenant.clone(),
        list_id: param(&p, "list_id"),
        email: body.email,
        name: body.name,
        language: body.language,
        attributes: body.attributes,
        client_address: String::new(),
        confirmed: body.confirmed,
    };
    let answer = rpc!(caller, subscribe, request)?;
    let subscriber = answer.subscriber.as_ref().map_or(Value::Null, subscriber_json);
    Ok(Json(json!({ "subscriber": subscriber, "confirmation_sent": answer.confirmation_sent })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportQuery {
    #[serde(default)]
    confirmed: bool,
}

/// Whether `Content-Type` says CSV (`text/csv`, or `application/csv`).
fn is_csv(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    matches!(essence.as_str(), "text/csv" | "application/csv")
}

/// The raw body, at most `limit` bytes: refused before reading when `Content-Length`
/// says more, else at the limit.
pub(crate) async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::PayloadTooLarge(format!("the CSV is larger than {} MiB, the limit", limit >> 20));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
    Ok(bytes.to_vec())
}

/// `POST P/lists/{list_id}/import?confirmed=true|false`, the CSV as the body.
pub(crate) async fn import(
    caller: Caller,
    ApiPath(p): ApiPath<HashMap<String, String>>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    if !is_csv(&headers) {
        return Err(ApiError::BadRequest("send the CSV itself as the body, with Content-Type: text/csv".into()));
    }
    let csv = read_limited(&headers, body, MAX_IMPORT_BYTES).await?;
    if csv.is_empty() {
        return Err(ApiError::BadRequest("the CSV is empty: it needs at least its header row".into()));
    }
    let request =
        pb::ImportRequest { tenant: caller.tenant.clone(), list_id: param(&p, "list_id"), csv, confirmed: q.confirmed };
    Ok(Json(task_json(&rpc!(caller, import_subscribers, request)?)))
}

/// `POST P/lists/{list_id}/export`.
pub(crate) async fn export(
    caller: Caller,
    ApiPath(p): ApiPath<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let request = pb::ExportRequest { tenant: caller.tenant.clone(), list_id: param(&p, "list_id") };
    Ok(Json(task_json(&rpc!(caller, export_subscribers, request)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_csv() {
        let mut headers = HeaderMap::new();
        assert!(!is_csv(&headers));
        for (value, csv) in [
            ("text/csv", true),
            ("text/csv; charset=utf-8", true),
            ("Application/CSV", true),
            ("application/json", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_csv(&headers), csv, "{value}");
        }
    }

    #[tokio::test]
    async fn an_import_over_16_mib_is_refused_naming_the_limit() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, (MAX_IMPORT_BYTES + 1).to_string().parse().unwrap());
        let Err(ApiError::PayloadTooLarge(message)) = read_limited(&headers, Body::empty(), MAX_IMPORT_BYTES).await
        else {
            panic!("not refused")
        };
        assert!(message.contains("16 MiB"), "{message}");
        // Without a length, at the limit as it is read.
        let body = Body::from(vec![b'a'; 2049]);
        assert!(matches!(read_limited(&HeaderMap::new(), body, 2048).await, Err(ApiError::PayloadTooLarge(_))));
        let body = Body::from("email\na@b.co\n");
        assert_eq!(read_limited(&HeaderMap::new(), body, 2048).await.unwrap(), b"email\na@b.co\n");
    }

    #[test]
    fn refused_app_keys_are_401_and_quotas_429() {
        let app = |app| Caller {
            upstream: Upstream::new(
                Arc::new(crate::mta_pool::MtaPool::new(
                    Vec::new(),
                    std::time::Duration::from_secs(1),
                    Default::default(),
                )),
                Bearer::new(None).unwrap(),
                None,
            ),
            tenant: String::new(),
            app,
        };
        assert!(matches!(app(true).error(Status::unauthenticated("revoked")), ApiError::BadKey));
        assert!(matches!(app(false).error(Status::unauthenticated("revoked")), ApiError::Unavailable(_)));
        let mut quota = Status::resource_exhausted("over the per_day quota");
        quota.metadata_mut().insert("retry-after-ms", "1000".parse().unwrap());
        assert!(matches!(app(true).error(quota), ApiError::TooManyRequests(_)));
        assert!(matches!(app(true).error(Status::failed_precondition("done")), ApiError::Conflict(_)));
        assert!(matches!(app(true).error(Status::not_found("no list")), ApiError::NotFound(_)));
        assert!(matches!(app(true).error(Status::invalid_argument("name: empty")), ApiError::BadRequest(_)));
        assert!(matches!(app(false).error(Status::unimplemented("")), ApiError::Unavailable(m) if m == NOT_SERVED));
    }
}
