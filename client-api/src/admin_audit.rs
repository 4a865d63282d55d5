//! The admin console's JSON API, part three: the audit log, one page at a time, filtered
//! by actor, tenant and time. The CSV export of every page is in `admin_csv`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::Query;
use bitmail_proto::v1 as pb;
use serde_json::{Value, json};

use crate::admin::Admin;
use crate::admin_ops::query_number;
use crate::error::ApiError;

/// The filters of `GET /api/admin/audit` (and `audit.csv`), as `ListAudit` takes them.
pub(crate) fn audit_request(query: &HashMap<String, String>) -> Result<pb::ListAuditRequest, ApiError> {
    let text = |name: &str| query.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
    Ok(pb::ListAuditRequest {
        actor: text("actor"),
        tenant: text("tenant"),
        since_unix_ms: query_number(query, "since_ms")?.unwrap_or(0),
        until_unix_ms: query_number(query, "until_ms")?.unwrap_or(0),
        limit: query_number(query, "limit")?.unwrap_or(0),
        page_token: text("page_token"),
    })
}

fn entry_json(e: &pb::AuditEntry) -> Value {
    json!({
        "id": e.id, "at_ms": e.at_unix_ms, "actor": e.actor, "address": e.address, "action": e.action,
        "tenant": e.tenant, "target": e.target, "before": e.before, "after": e.after,
    })
}

/// `GET /api/admin/audit?actor=&tenant=&since_ms=&until_ms=&page_token=&limit=`: oldest
/// first; `before` and `after` are the JSON text mta-server recorded (empty: none).
pub(crate) async fn audit(admin: Admin, Query(query): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
    let request = audit_request(&query)?;
    let page = admin.upstream.admin().list_audit(admin.request(request)).await?.into_inner();
    Ok(Json(json!({
        "entries": page.entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    })))
}
