//! Tenants, keys and audit entries as the `Admin` answers show them, and back.

use bitmail_proto::v1 as pb;
use serde_json::json;
use tonic::Status;

use crate::tenant::audit::Entry;
use crate::tenant::{ApiKey, Quotas, RegistryError, Scope, Tenant, TenantState, Versioned};

fn unix_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A time from the wire: 0 (or less) is "none".
pub(super) fn from_unix_ms(ms: i64) -> Option<u64> {
    u64::try_from(ms).ok().filter(|&ms| ms > 0)
}

pub(super) fn quotas_to_wire(q: &Quotas) -> pb::Quotas {
    pb::Quotas {
        per_day: q.per_day,
        per_second: q.per_second,
        burst: q.burst,
        max_recipients: q.max_recipients,
        max_message_bytes: q.max_message_bytes,
    }
}

pub(super) fn quotas_from_wire(q: &pb::Quotas) -> Quotas {
    Quotas {
        per_day: q.per_day,
        per_second: q.per_second,
        burst: q.burst,
        max_recipients: q.max_recipients,
        max_message_bytes: q.max_message_bytes,
    }
}

pub(super) fn state_name(state: TenantState) -> &'static str {
    match state {
        TenantState::Active => "active",
        TenantState::Suspended => "suspended",
    }
}

pub(super) fn tenant_to_wire(t: &Versioned<Tenant>) -> pb::Tenant {
    let v = &t.value;
    pb::Tenant {
        id: v.id.clone(),
        display_name: v.display_name.clone(),
        domains: v.domains.clone(),
        addresses: v.addresses.clone(),
        quotas: Some(quotas_to_wire(&v.quotas)),
        state: state_name(v.state).into(),
        created_at_unix_ms: unix_ms(v.created_ms),
        updated_at_unix_ms: unix_ms(v.updated_ms),
        version: t.version,
    }
}

/// The audit log's JSON of a tenant.
pub(super) fn tenant_json(t: &Tenant) -> String {
    json!({
        "id": t.id, "display_name": t.display_name, "domains": t.domains, "addresses": t.addresses,
        "quotas": t.quotas, "state": state_name(t.state),
    })
    .to_string()
}

pub(super) fn key_to_wire(k: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.clone(),
        prefix: k.prefix(),
        tenant: k.tenant.clone(),
        name: k.name.clone(),
        scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at_unix_ms: unix_ms(k.created_ms),
        expires_at_unix_ms: k.expires_ms.map_or(0, unix_ms),
        revoked_at_unix_ms: k.revoked_ms.map_or(0, unix_ms),
        last_used_at_unix_ms: k.last_used_ms.map_or(0, unix_ms),
        created_by: k.created_by.clone(),
    }
}

/// The audit log's JSON of a key: never its hash.
pub(super) fn key_json(k: &ApiKey) -> String {
    json!({
        "prefix": k.prefix(), "tenant": k.tenant, "name": k.name,
        "scopes": k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "expires_ms": k.expires_ms, "revoked_ms": k.revoked_ms,
    })
    .to_string()
}

pub(super) fn scopes_from_wire(names: &[String]) -> Result<std::collections::BTreeSet<Scope>, Status> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Scope::parse(name.trim()).ok_or_else(|| {
                Status::invalid_argument(format!("scopes[{i}]: unknown scope {name:?} (send, read, admin, service)"))
            })
        })
        .collect()
}

pub(super) fn entry_to_wire(e: Entry) -> pb::AuditEntry {
    pb::AuditEntry {
        id: e.id,
        at_unix_ms: unix_ms(e.at_ms),
        actor: e.actor,
        address: e.address,
        action: e.action,
        tenant: e.tenant,
        target: e.target,
        before: e.before,
        after: e.after,
    }
}

impl From<RegistryError> for Status {
    fn from(e: RegistryError) -> Self {
        match &e {
            RegistryError::Invalid(_) => Status::invalid_argument(e.to_string()),
            RegistryError::NoTenant(_) | RegistryError::NoKey(_) => Status::not_found(e.to_string()),
            RegistryError::TenantExists(_) => Status::already_exists(e.to_string()),
            RegistryError::Conflict { .. } => Status::aborted(e.to_string()),
            RegistryError::AlreadyRevoked(_) | RegistryError::LastAdmin => Status::failed_precondition(e.to_string()),
            RegistryError::Store(inner) => {
                tracing::warn!(error = %inner, "tenant store failure");
                Status::unavailable(e.to_string())
            }
        }
    }
}
