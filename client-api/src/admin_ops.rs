//! The admin console's JSON API, part two: the providers (health, pause, resume) and the
//! suppression list (search, add, remove), through mta-server's `Mta` service with the
//! console's admin key. See [`crate::admin`] for who may call them.

use std::collections::HashMap;
use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::Admin;
use crate::error::ApiError;
use crate::extract::ApiJson;

/// A number in the query string, named in the error when it is not one.
pub(crate) fn query_number<T: FromStr>(query: &HashMap<String, String>, name: &str) -> Result<Option<T>, ApiError> {
    match query.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| ApiError::BadRequest(format!("{name}: {v:?} is not a number"))),
    }
}

fn circuit_name(c: i32) -> &'static str {
    match pb::CircuitState::try_from(c).unwrap_or(pb::CircuitState::Unspecified) {
        pb::CircuitState::Closed => "closed",
        pb::CircuitState::Open => "open",
        pb::CircuitState::HalfOpen => "half_open",
        pb::CircuitState::Paused => "paused",
        pb::CircuitState::Unspecified => "unknown",
    }
}

fn provider_json(p: &pb::ProviderStatus) -> Value {
    json!({
        "name": p.name, "circuit": circuit_name(p.circuit), "success_rate": p.success_rate,
        "latency_p50_ms": p.latency_p50_ms, "latency_p99_ms": p.latency_p99_ms,
        "in_flight": p.in_flight, "last_error": p.last_error,
    })
}

fn suppression_json(s: &pb::Suppression) -> Value {
    json!({
        "address": s.address, "reason": s.reason, "source": s.source,
        "created_ms": s.created_unix_ms, "expires_ms": s.expires_unix_ms, "tenant": s.tenant,
    })
}

/// `GET /api/admin/providers`.
pub(crate) async fn providers(admin: Admin) -> Result<Json<Value>, ApiError> {
    let list = admin.upstream.mta().list_providers(admin.request(pb::ListProvidersRequest {})).await?;
    let list = list.into_inner();
    Ok(Json(json!({
        "providers": list.providers.iter().map(provider_json).collect::<Vec<_>>(),
        "degraded": list.degraded, "backlog": list.backlog,
    })))
}

/// `POST /api/admin/providers/{name}/pause`.
pub(crate) async fn pause(admin: Admin, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let status = admin.upstream.mta().pause_provider(admin.request(pb::ProviderRequest { name })).await?;
    Ok(Json(provider_json(&status.into_inner())))
}

/// `POST /api/admin/providers/{name}/resume`.
pub(crate) async fn resume(admin: Admin, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let status = admin.upstream.mta().resume_provider(admin.request(pb::ProviderRequest { name })).await?;
    Ok(Json(provider_json(&status.into_inner())))
}

/// `GET /api/admin/suppressions?q=&limit=`: addresses from `q` on.
pub(crate) async fn suppressions(
    admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let request = pb::ListSuppressionsRequest {
        after: query.get("q").map(|q| q.trim().to_owned()).unwrap_or_default(),
        limit: query_number(&query, "limit")?.unwrap_or(0),
    };
    let list = admin.upstream.mta().list_suppressions(admin.request(request)).await?.into_inner();
    Ok(Json(json!({ "suppressions": list.suppressions.iter().map(suppression_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSuppression {
    address: String,
    #[serde(default)]
    reason: String,
    /// The tenant the entry is for; empty: every tenant.
    #[serde(default)]
    tenant: String,
}

/// `POST /api/admin/suppressions`.
pub(crate) async fn add_suppression(
    admin: Admin,
    ApiJson(body): ApiJson<NewSuppression>,
) -> Result<Json<Value>, ApiError> {
    let entry =
        pb::Suppression { address: body.address, reason: body.reason, tenant: body.tenant, ..Default::default() };
    let added = admin.upstream.mta().add_suppression(admin.request(entry)).await?;
    Ok(Json(suppression_json(&added.into_inner())))
}

/// `DELETE /api/admin/suppressions/{address}?tenant=`: 204. Without `tenant`, the
/// entry for every tenant.
pub(crate) async fn remove_suppression(
    admin: Admin,
    Path(address): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let tenant = query.get("tenant").cloned().unwrap_or_default();
    let request = pb::RemoveSuppressionRequest { address, tenant };
    admin.upstream.mta().remove_suppression(admin.request(request)).await?;
    Ok(StatusCode::NO_CONTENT)
}
