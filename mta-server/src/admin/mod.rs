//! The gRPC `bitmail.v1.Admin` service: tenants, API keys, usage, the audit log and the
//! refused key uses, for operators (`admin` scope) and, through client-api's `service`
//! key, for the webmail's admin console.
//!
//! Every change is checked whole before anything is stored (bad input: `INVALID_ARGUMENT`
//! naming each bad field, nothing changed), then written to the audit log before it is
//! answered, with who made it (the key; the person a service key acts for), from where,
//! and the value before and after. A change of a tenant or a key is forgotten by this
//! node's key check at once ([`KeyCheck::forget`]) and seen by the others within their
//! cache's TTL.
//!
//! - `wire`: tenants, keys and audit entries on the wire, and the errors' statuses.

mod wire;

use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::admin_server::AdminServer;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::auth::{Actor, caller};
use crate::tenant::audit::{self, Audit, Filter};
use crate::tenant::{Caller, KeyCheck, KeyRequest, Quota, Registry, Scope, Tenant, TenantEdit, TenantState};
use bitmail_runtime::time::now_ms;
use wire::*;

pub struct AdminService {
    registry: Registry,
    keys: Arc<KeyCheck>,
    quota: Arc<Quota>,
    audit: Audit,
}

/// One change for the audit log.
struct Change<'a> {
    action: &'a str,
    tenant: &'a str,
    target: &'a str,
    before: String,
    after: String,
}

impl AdminService {
    pub fn new(registry: Registry, keys: Arc<KeyCheck>, quota: Arc<Quota>, audit: Audit) -> Self {
        AdminService { registry, keys, quota, audit }
    }

    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }

    /// The caller, when its key grants `admin`.
    fn admin<T>(request: &Request<T>) -> Result<(Caller, Actor), Status> {
        let caller = caller(request)?;
        caller.require(Scope::Admin)?;
        let actor = Actor::of(request, &caller);
        Ok((caller, actor))
    }

    async fn record(&self, actor: Actor, change: Change<'_>) -> Result<(), Status> {
        let entry = audit::Entry {
            at_ms: now_ms(),
            actor: actor.name,
            address: actor.address,
            action: change.action.into(),
            tenant: change.tenant.into(),
            target: change.target.into(),
            before: change.before,
            after: change.after,
            ..Default::default()
        };
        info!(action = change.action, target = change.target, actor = %entry.actor, "administrative change");
        self.audit.record(entry).await.map(drop).map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
            Status::unavailable(format!("the change was made, but the audit log cannot be written: {e}"))
        })
    }

    /// Applies an `UpdateTenantRequest` whose `state` is handled apart.
    async fn edit_tenant(&self, request: &pb::UpdateTenantRequest) -> Result<(), Status> {
        let edit = TenantEdit {
            display_name: request.display_name.clone(),
            domains: request.domains.as_ref().map(|d| d.values.clone()),
            addresses: request.addresses.as_ref().map(|d| d.values.clone()),
            quotas: request.quotas.as_ref().map(quotas_from_wire),
        };
        if edit == TenantEdit::default() {
            return Ok(());
        }
        let version = match request.expected_version {
            0 => self.registry.get_tenant(&request.id).await?.version,
            v => v,
        };
        self.registry.update_tenant(&request.id, version, edit).await?;
        Ok(())
    }
}

fn page_limit(limit: u32) -> Result<usize, Status> {
    match limit {
        0 => Ok(100),
        n @ 1..=1000 => Ok(n as usize),
        n => Err(Status::invalid_argument(format!("limit: {n} is over 1000"))),
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(pb::WhoAmIResponse {
            tenant: caller.tenant.id.clone(),
            key_prefix: caller.prefix(),
            scopes: caller.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            domains: caller.tenant.domains.clone(),
            addresses: caller.tenant.addresses.clone(),
        }))
    }

    async fn create_tenant(&self, request: Request<pb::Tenant>) -> Result<Response<pb::Tenant>, Status> {
        let (_, actor) = Self::admin(&request)?;
        let t = request.into_inner();
        let quotas = t.quotas.as_ref().map_or_else(Default::default, quotas_from_wire);
        let mut tenant = Tenant::new(&t.id, &t.display_name, &t.domains, &t.addresses, quotas, now_ms())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if t.state == "suspended" {
            tenant.state = TenantState::Suspended;
        } else if !t.state.is_empty() && t.state != "active" {
            return Err(Status::invalid_argument(format!("state: {:?} is not active or suspended", t.state)));
        }
        let created = self.registry.create_tenant(tenant).await?;
        let after = tenant_json(&created.value);
        let change = Change { action: "tenant.create", tenant: &t.id, target: &t.id, before: String::new(), after };
        self.record(actor, change).await?;
        Ok(Response::new(tenant_to_wire(&created)))
    }

    async fn get_tenant(&self, request: Request<pb::GetTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let caller = caller(&request)?;
        let id = request.into_inner().id;
        // A tenant's own keys may read it; only admins read the others.
        if id != caller.tenant.id {
            caller.require(Scope::Admin)?;
        }
        Ok(Response::new(tenant_to_wire(&self.registry.get_tenant(&id).await?)))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        Self::admin(&request)?;
        let request = request.into_inner();
        let token = (!request.page_token.is_empty()).then_some(request.page_token.as_str());
        let (tenants, next) = self.registry.list_tenants(page_limit(request.limit)?, token).await?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.iter().map(tenant_to_wire).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn update_tenant(&self, request: Request<pb::UpdateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let (_, actor) = Self::admin(&request)?;
        let request = request.into_inner();
        let before = self.registry.get_tenant(&request.id).await?;
        if request.expected_version != 0 && request.expected_version != before.version {
            return Err(Status::aborted(format!(
                "tenant {:?} is at version {}, not the expected {}; read it again",
                request.id, before.version, request.expected_version
            )));
        }
        let state = match request.state.as_deref() {
            None | Some("") => None,
            Some("active") => Some(TenantState::Active),
            Some("suspended") => Some(TenantState::Suspended),
            Some(other) => {
                return Err(Status::invalid_argument(format!("state: {other:?} is not active or suspended")));
            }
        };
        self.edit_tenant(&request).await?;
        match state {
            Some(TenantState::Suspended) if before.value.state != TenantState::Suspended => {
                self.registry.suspend(&request.id).await?;
            }
            Some(TenantState::Active) if before.value.state != TenantState::Active => {
                self.registry.resume(&request.id).await?;
            }
            _ => {}
        }
        self.keys.forget_all();
        let after = self.registry.get_tenant(&request.id).await?;
        let change = Change {
            action: "tenant.update",
            tenant: &request.id,
            target: &request.id,
            before: tenant_json(&before.value),
            after: tenant_json(&after.value),
        };
        self.record(actor, change).await?;
        Ok(Response::new(tenant_to_wire(&after)))
    }

    async fn create_key(&self, request: Request<pb::CreateKeyRequest>) -> Result<Response<pb::CreatedKey>, Status> {
        let (_, actor) = Self::admin(&request)?;
        let request = request.into_inner();
        let expires_ms = from_unix_ms(request.expires_at_unix_ms);
        if expires_ms.is_some_and(|at| at <= now_ms()) {
            return Err(Status::invalid_argument("expires_at_unix_ms: must be in the future (0: never)"));
        }
        let key = KeyRequest {
            tenant: request.tenant.clone(),
            name: request.name,
            scopes: scopes_from_wire(&request.scopes)?,
            expires_ms,
            created_by: actor.name.clone(),
        };
        let created = self.registry.create_key(key).await?;
        let record = created.record.clone();
        let change = Change {
            action: "key.create",
            tenant: &record.tenant,
            target: &record.prefix(),
            before: String::new(),
            after: key_json(&record),
        };
        self.record(actor, change).await?;
        Ok(Response::new(pb::CreatedKey { key: Some(key_to_wire(&record)), secret: created.expose().to_owned() }))
    }

    async fn list_keys(&self, request: Request<pb::ListKeysRequest>) -> Result<Response<pb::ListKeysResponse>, Status> {
        Self::admin(&request)?;
        let tenant = request.into_inner().tenant;
        let keys = self.registry.list_keys(&tenant).await?;
        Ok(Response::new(pb::ListKeysResponse { keys: keys.iter().map(key_to_wire).collect() }))
    }

    async fn revoke_key(&self, request: Request<pb::RevokeKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let (_, actor) = Self::admin(&request)?;
        let id = request.into_inner().id;
        let id = id.strip_prefix(crate::tenant::key::PREFIX).unwrap_or(&id).to_owned();
        let before = self.registry.get_key(&id).await?;
        let revoked = self.registry.revoke_key(&id).await?;
        self.keys.forget(&id);
        let change = Change {
            action: "key.revoke",
            tenant: &revoked.tenant,
            target: &revoked.prefix(),
            before: key_json(&before),
            after: key_json(&revoked),
        };
        self.record(actor, change).await?;
        Ok(Response::new(key_to_wire(&revoked)))
    }

    async fn get_usage(&self, request: Request<pb::GetUsageRequest>) -> Result<Response<pb::Usage>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let tenant = if request.tenant.is_empty() { caller.tenant.id.clone() } else { request.tenant };
        if tenant == caller.tenant.id {
            caller.require(Scope::Read)?;
        } else {
            caller.require(Scope::Admin)?;
        }
        let days = match request.days {
            0 => 31,
            n @ 1..=366 => n,
            n => return Err(Status::invalid_argument(format!("days: {n} is over 366"))),
        };
        let per_day = self.registry.get_tenant(&tenant).await?.value.quotas.per_day;
        let counts = self
            .quota
            .usage(&tenant, days, now_ms())
            .await
            .map_err(|e| Status::unavailable(format!("cannot read usage: {e}")))?;
        Ok(Response::new(pb::Usage {
            tenant,
            days: counts.into_iter().map(|(day, messages)| pb::UsageDay { day, messages }).collect(),
            per_day,
        }))
    }

    async fn list_audit(
        &self,
        request: Request<pb::ListAuditRequest>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        Self::admin(&request)?;
        let r = request.into_inner();
        let filter = Filter {
            actor: r.actor,
            tenant: r.tenant,
            since_ms: from_unix_ms(r.since_unix_ms),
            until_ms: from_unix_ms(r.until_unix_ms),
        };
        let token = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let (entries, next) = self
            .audit
            .list(&filter, page_limit(r.limit)?, token)
            .await
            .map_err(|e| Status::unavailable(format!("cannot read the audit log: {e}")))?;
        Ok(Response::new(pb::ListAuditResponse {
            entries: entries.into_iter().map(entry_to_wire).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    async fn list_refused_keys(
        &self,
        request: Request<pb::ListRefusedKeysRequest>,
    ) -> Result<Response<pb::ListRefusedKeysResponse>, Status> {
        Self::admin(&request)?;
        let refused = self
            .keys
            .refused_snapshot()
            .into_iter()
            .map(|r| pb::RefusedKeyUses { prefix: r.prefix, address: r.addr.to_string(), count: r.count })
            .collect();
        Ok(Response::new(pb::ListRefusedKeysResponse { refused }))
    }
}
