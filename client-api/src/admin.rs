//! The admin console's JSON API, part one: who may use it ([`Admin`]), tenants, their
//! keys and their usage. Providers and suppressions are in `admin_ops`, the audit log in
//! `admin_audit` and `admin_csv`; the paths are in `routes`.
//!
//! Every call goes to mta-server's `Admin` (or `Mta`) service with `mta_admin_key` and
//! `x-bitmail-actor: user:NAME`, so its audit log names the person as well as the key.
//! mta-server checks and records every change; this module only translates JSON to the
//! wire and back (times in ms since the epoch, 0 for none). A key's secret is in the
//! answer to its creation only, and never logged.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{Role, User, acting_for};
use crate::error::ApiError;
use crate::extract::{ApiJson, CurrentUser};
use crate::state::{AdminUpstream, AppState};

/// A signed-in admin and the upstream to act with. Not signed in: 401; not an admin
/// (as stored now, not as at sign-in): 403; no `mta_admin_key`: 503.
pub(crate) struct Admin {
    pub(crate) user: User,
    pub(crate) upstream: AdminUpstream,
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if state.accounts.current_role(&user).await? != Role::Admin {
            return Err(ApiError::Forbidden("the admin console is for admins only".into()));
        }
        let upstream = state.admin.clone().ok_or_else(|| {
            ApiError::Unavailable("the admin console is not configured: client-api has no mta_admin_key".into())
        })?;
        Ok(Admin { user, upstream })
    }
}

impl Admin {
    /// A request to mta-server on this admin's behalf.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        acting_for(&self.user, message)
    }
}

fn quotas_json(q: Option<&pb::Quotas>) -> Value {
    let q = q.cloned().unwrap_or_default();
    json!({
        "per_day": q.per_day, "per_second": q.per_second, "burst": q.burst,
        "max_recipients": q.max_recipients, "max_message_bytes": q.max_message_bytes,
    })
}

pub(crate) fn tenant_json(t: &pb::Tenant) -> Value {
    json!({
        "id": t.id, "display_name": t.display_name, "domains": t.domains, "addresses": t.addresses,
        "quotas": quotas_json(t.quotas.as_ref()), "state": t.state,
        "created_ms": t.created_at_unix_ms, "updated_ms": t.updated_at_unix_ms, "version": t.version,
    })
}

pub(crate) fn key_json(k: &pb::ApiKey) -> Value {
    json!({
        "id": k.id, "prefix": k.prefix, "tenant": k.tenant, "name": k.name, "scopes": k.scopes,
        "created_ms": k.created_at_unix_ms, "expires_ms": k.expires_at_unix_ms,
        "revoked_ms": k.revoked_at_unix_ms, "last_used_ms": k.last_used_at_unix_ms, "created_by": k.created_by,
    })
}

/// Quotas in a new tenant: all of them, when given at all.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotasBody {
    per_day: u64,
    per_second: f64,
    burst: u32,
    max_recipients: u32,
    max_message_bytes: u64,
}

impl From<QuotasBody> for pb::Quotas {
    fn from(q: QuotasBody) -> Self {
        pb::Quotas {
            per_day: q.per_day,
            per_second: q.per_second,
            burst: q.burst,
            max_recipients: q.max_recipients,
            max_message_bytes: q.max_message_bytes,
        }
    }
}

/// Quotas in an edit: those not given stay as they are.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotasPatch {
    per_day: Option<u64>,
    per_second: Option<f64>,
    burst: Option<u32>,
    max_recipients: Option<u32>,
    max_message_bytes: Option<u64>,
}

impl QuotasPatch {
    fn over(self, q: pb::Quotas) -> pb::Quotas {
        pb::Quotas {
            per_day: self.per_day.unwrap_or(q.per_day),
            per_second: self.per_second.unwrap_or(q.per_second),
            burst: self.burst.unwrap_or(q.burst),
            max_recipients: self.max_recipients.unwrap_or(q.max_recipients),
            max_message_bytes: self.max_message_bytes.unwrap_or(q.max_message_bytes),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTenant {
    id: String,
    display_name: String,
    domains: Vec<String>,
    #[serde(default)]
    addresses: Vec<String>,
    quotas: Option<QuotasBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantPatch {
    display_name: Option<String>,
    domains: Option<Vec<String>>,
    addresses: Option<Vec<String>>,
    quotas: Option<QuotasPatch>,
    state: Option<String>,
    expected_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_ms: i64,
}

/// `GET /api/admin/tenants`: every tenant, all pages.
pub(crate) async fn list_tenants(admin: Admin) -> Result<Json<Value>, ApiError> {
    let mut tenants = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = admin.request(pb::ListTenantsRequest { limit: 1000, page_token });
        let page = admin.upstream.admin().list_tenants(request).await?.into_inner();
        tenants.extend(page.tenants.iter().map(tenant_json));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(Json(json!({ "tenants": tenants })))
}

/// `POST /api/admin/tenants`.
pub(crate) async fn create_tenant(admin: Admin, ApiJson(body): ApiJson<NewTenant>) -> Result<Json<Value>, ApiError> {
    let tenant = pb::Tenant {
        id: body.id,
        display_name: body.display_name,
        domains: body.domains,
        addresses: body.addresses,
        quotas: body.quotas.map(Into::into),
        ..Default::default()
    };
    let created = admin.upstream.admin().create_tenant(admin.request(tenant)).await?.into_inner();
    Ok(Json(tenant_json(&created)))
}

/// `PATCH /api/admin/tenants/{id}`: the fields given; quotas merged with the stored ones.
pub(crate) async fn update_tenant(
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TenantPatch>,
) -> Result<Json<Value>, ApiError> {
    let mut client = admin.upstream.admin();
    let quotas = match body.quotas {
        Some(patch) => {
            let current = client.get_tenant(admin.request(pb::GetTenantRequest { id: id.clone() })).await?;
            Some(patch.over(current.into_inner().quotas.unwrap_or_default()))
        }
        None => None,
    };
    let request = pb::UpdateTenantRequest {
        id,
        expected_version: body.expected_version.unwrap_or(0),
        display_name: body.display_name,
        domains: body.domains.map(|values| pb::DomainList { values }),
        addresses: body.addresses.map(|values| pb::DomainList { values }),
        quotas,
        state: body.state,
    };
    let updated = client.update_tenant(admin.request(request)).await?.into_inner();
    Ok(Json(tenant_json(&updated)))
}

/// `GET /api/admin/tenants/{id}/keys`.
pub(crate) async fn list_keys(admin: Admin, Path(tenant): Path<String>) -> Result<Json<Value>, ApiError> {
    let list = admin.upstream.admin().list_keys(admin.request(pb::ListKeysRequest { tenant })).await?;
    Ok(Json(json!({ "keys": list.into_inner().keys.iter().map(key_json).collect::<Vec<_>>() })))
}

/// `GET /api/admin/tenants/{id}/webhooks`: the tenant's app webhooks and how their
/// delivery is going (last attempt, status, error, failures in a row, dropped events).
pub(crate) async fn list_webhooks(admin: Admin, Path(tenant): Path<String>) -> Result<Json<Value>, ApiError> {
    let list = admin.upstream.mta().list_webhooks(admin.request(pb::ListWebhooksRequest { tenant })).await?;
    let webhooks: Vec<Value> = list.into_inner().webhooks.iter().map(crate::app_api::hooks::webhook_json).collect();
    Ok(Json(json!({ "webhooks": webhooks })))
}

/// `POST /api/admin/tenants/{id}/keys`: the secret is in this answer only.
pub(crate) async fn create_key(
    admin: Admin,
    Path(tenant): Path<String>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<Json<Value>, ApiError> {
    let request =
        pb::CreateKeyRequest { tenant, name: body.name, scopes: body.scopes, expires_at_unix_ms: body.expires_ms };
    let created = admin.upstream.admin().create_key(admin.request(request)).await?.into_inner();
    let key = created.key.as_ref().map_or(Value::Null, key_json);
    Ok(Json(json!({ "key": key, "secret": created.secret })))
}

/// `POST /api/admin/keys/{id}/revoke`.
pub(crate) async fn revoke_key(admin: Admin, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let revoked = admin.upstream.admin().revoke_key(admin.request(pb::RevokeKeyRequest { id })).await?;
    Ok(Json(key_json(&revoked.into_inner())))
}

/// `GET /api/admin/tenants/{id}/usage`: today and the 30 days before, oldest first.
pub(crate) async fn usage(admin: Admin, Path(tenant): Path<String>) -> Result<Json<Value>, ApiError> {
    let usage = admin.upstream.admin().get_usage(admin.request(pb::GetUsageRequest { tenant, days: 31 })).await?;
    let usage = usage.into_inner();
    let days: Vec<Value> = usage.days.iter().map(|d| json!({ "day": d.day, "messages": d.messages })).collect();
    Ok(Json(json!({ "tenant": usage.tenant, "per_day": usage.per_day, "days": days })))
}
