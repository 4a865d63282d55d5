//! The gRPC `bitmail.v1.Mta` service: who may call what, validation at the edge, then
//! the spool.
//!
//! Every call arrives authenticated ([`crate::auth::Authenticated`]); each handler
//! checks the scope it needs and keeps a tenant to its own messages: another tenant's
//! message id answers `NOT_FOUND` exactly as an unknown id does.
//!
//! - `submit`: `Submit` (tenant, `From` rule, quotas, suppressions, spool);
//! - `receive`: `ReceiveWebhook`;
//! - `events`: `ListEvents`, a page of the tenant's event log;
//! - `webhooks`: `CreateWebhook`, `ListWebhooks`, `DeleteWebhook`, the apps' webhooks;
//! - `wire`: statuses, providers and suppressions as the answers show them.

mod events;
mod receive;
mod spool_status;
mod submit;
mod webhooks;
mod wire;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_server::MtaServer;
use tokio::sync::Notify;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::auth::{Actor, caller};
use crate::health::Health;
use crate::message::Limits;
use crate::receive::Webhook;
use crate::spool::record::{self, State, SuppressionRecord};
use crate::spool::{Spool, SpoolError, SuppressionRules};
use crate::tenant::audit::{self, Audit};
use crate::tenant::{Caller, Quota, Registry, Scope};
use bitmail_runtime::metrics::Registry as Metrics;
use bitmail_runtime::time::now_ms;
use wire::{provider_to_wire, status_to_wire, suppression_to_wire};

/// What the service knows of tenants: the registry (tenants named by service keys), the
/// quotas, and the audit log of operator changes.
#[derive(Clone)]
pub struct Tenancy {
    pub registry: Registry,
    pub quota: Arc<Quota>,
    pub audit: Audit,
}

pub struct MtaService {
    spool: Spool,
    limits: Limits,
    health: Arc<Health>,
    /// Tells delivery that a message was accepted or is due again.
    wake: Arc<Notify>,
    /// Each provider's webhook verifier, by provider name (only those configured).
    webhooks: HashMap<String, Webhook>,
    suppression: SuppressionRules,
    metrics: Metrics,
    tenancy: Tenancy,
    tenants: submit::TenantCache,
    /// `[outbox] allow_private_urls`: webhook URLs may be http or private addresses.
    allow_private_webhooks: bool,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::MessageStatus, Status>> + Send>>;

impl MtaService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        spool: Spool,
        limits: Limits,
        health: Arc<Health>,
        wake: Arc<Notify>,
        webhooks: HashMap<String, Webhook>,
        suppression: SuppressionRules,
        metrics: Metrics,
        tenancy: Tenancy,
    ) -> Self {
        Self {
            spool,
            limits,
            health,
            wake,
            webhooks,
            suppression,
            metrics,
            tenancy,
            tenants: Default::default(),
            allow_private_webhooks: false,
        }
    }

    /// Lets tenants register http and private-address webhook URLs (tests, labs).
    pub fn allow_private_webhooks(mut self, allow: bool) -> Self {
        self.allow_private_webhooks = allow;
        self
    }

    fn count_submission(&self, result: &str) {
        self.metrics.count("bitmail_mta_submissions_total", "Submit calls, by result.", &[("result", result)], 1);
    }

    /// INVALID_ARGUMENT naming the first recipient on the suppression list, for every
    /// tenant or for `tenant`.
    async fn check_suppressions(&self, message: &crate::message::Message, tenant: &str) -> Result<(), Status> {
        let fields: Vec<(String, String)> = [("to", &message.to), ("cc", &message.cc), ("bcc", &message.bcc)]
            .into_iter()
            .flat_map(|(name, list)| {
                list.iter().enumerate().map(move |(i, m)| (format!("{name}[{i}]"), m.email.to_ascii_lowercase()))
            })
            .collect();
        let spool = self.spool.clone();
        let now = now_ms();
        let tenant = tenant.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let hit = spool.suppressed_blocking(fields.iter().map(|(_, a)| a.as_str()), &tenant, now)?;
            let hit = hit.and_then(|(address, r)| {
                let field = fields.iter().find(|(_, a)| a == address)?.0.clone();
                Some((field, address.to_owned(), r))
            });
            Ok::<_, SpoolError>(hit)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        match found {
            None => Ok(()),
            Some((field, address, r)) => {
                let until = match r.expires_ms {
                    0 => "until removed".to_owned(),
                    ms => format!("until {}", bitmail_runtime::time::date(ms)),
                };
                Err(Status::invalid_argument(format!("{field}: {address} is suppressed ({}, {until})", r.reason)))
            }
        }
    }

    /// The status of message `id` if `caller` may see it; `NOT_FOUND` alike for an
    /// unknown id and another tenant's message.
    async fn visible_status(&self, caller: &Caller, id: &str) -> Result<record::Status, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("message_id: required"));
        }
        let not_found = || Status::not_found(format!("no message with id {id:?}"));
        let status = self.spool.status(id).await?.ok_or_else(not_found)?;
        if caller.may_read(status.tenant()) { Ok(status) } else { Err(not_found()) }
    }

    fn provider_status(&self, index: usize) -> pb::ProviderStatus {
        let snapshot = self.health.snapshot(now_ms()).swap_remove(index);
        provider_to_wire(snapshot)
    }

    async fn set_paused(&self, actor: Actor, name: &str, paused: bool) -> Result<pb::ProviderStatus, Status> {
        let index = self.health.index(name).ok_or_else(|| Status::not_found(format!("no provider named {name:?}")))?;
        let before = self.provider_status(index).circuit().as_str_name();
        let action = if paused { "provider.pause" } else { "provider.resume" };
        if let Some((name, record)) = self.health.set_paused(index, paused) {
            self.spool.save_health(&name, record).await;
        }
        let after = self.provider_status(index);
        self.audit(actor, action, "", name, json_state(before), json_state(after.circuit().as_str_name())).await?;
        info!(provider = name, paused, "operator changed a provider");
        if !paused {
            self.wake.notify_one();
        }
        Ok(after)
    }

    /// Writes an audit entry; the change is answered only once it is in the log.
    async fn audit(
        &self,
        actor: Actor,
        action: &str,
        tenant: &str,
        target: &str,
        before: String,
        after: String,
    ) -> Result<(), Status> {
        let entry = audit::Entry {
            at_ms: now_ms(),
            actor: actor.name,
            address: actor.address,
            action: action.into(),
            tenant: tenant.into(),
            target: target.into(),
            before,
            after,
            ..Default::default()
        };
        self.tenancy.audit.record(entry).await.map(drop).map_err(|e| {
            tracing::error!(error = %e, action, "cannot write the audit log");
            Status::unavailable(format!("cannot write the audit log: {e}"))
        })
    }

    /// Whose suppression entry a caller adds or removes: an admin's, the tenant it names
    /// (empty: every tenant's); anyone else's (with `send`), its own tenant's.
    async fn suppression_tenant(&self, caller: &Caller, named: &str) -> Result<String, Status> {
        if caller.require(Scope::Admin).is_ok() {
            if !named.is_empty() {
                self.tenants.get(&self.tenancy.registry, named).await?;
            }
            return Ok(named.to_owned());
        }
        caller.require(Scope::Send)?;
        if !named.is_empty() && named != caller.tenant.id {
            return Err(Status::permission_denied(format!("tenant: only an admin edits tenant {named:?}'s entries")));
        }
        Ok(caller.tenant.id.clone())
    }

    /// The tonic server, accepting requests a little over the message limit so that an
    /// oversized body gets a clear INVALID_ARGUMENT naming the field rather than a
    /// transport error, and webhook requests carrying received mail.
    pub fn into_server(self) -> MtaServer<Self> {
        Arc::new(self).shared_server()
    }

    /// The gRPC server of a service that other surfaces (SMTP) share.
    pub fn shared_server(self: &Arc<Self>) -> MtaServer<Self> {
        // Inbound mail webhooks forwarded by the edge may be larger than outgoing mail.
        let max = self.limits.max_message_bytes.max(crate::inbound::MAX_BODY).saturating_add(256 * 1024);
        MtaServer::from_arc(self.clone()).max_decoding_message_size(max)
    }

    /// The tenant named `id`, as recently read (5 s): what a surface that sends as a
    /// configured tenant (SMTP's local listener) uses.
    pub(crate) async fn tenant_named(&self, id: &str) -> Result<Arc<crate::tenant::Tenant>, Status> {
        self.tenants.get(&self.tenancy.registry, id).await
    }

    /// One message's allowance of `tenant`'s rate quotas, taken now (given back unless
    /// committed by [`MtaService::submit_as`]).
    pub(crate) async fn admit(
        &self,
        tenant: &crate::tenant::Tenant,
    ) -> Result<crate::tenant::Admitted, crate::tenant::OverQuota> {
        self.tenancy.quota.admit(tenant, now_ms()).await
    }

    /// Why `address` may not be sent to by `tenant` (a hard bounce anyone's, a complaint
    /// the tenant's), with until when; `None` when it may.
    pub(crate) async fn suppression_of(&self, address: &str, tenant: &str) -> Result<Option<String>, Status> {
        let spool = self.spool.clone();
        let (address, tenant) = (address.to_ascii_lowercase(), tenant.to_owned());
        let found = tokio::task::spawn_blocking(move || {
            spool.suppressed_blocking([address.as_str()], &tenant, now_ms()).map(|hit| hit.map(|(_, r)| r))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(found.map(|r| match r.expires_ms {
            0 => format!("{}, until removed", r.reason),
            ms => format!("{}, until {}", r.reason, bitmail_runtime::time::date(ms)),
        }))
    }
}

fn json_state(state: &str) -> String {
    serde_json::json!({ "circuit": state }).to_string()
}

fn json_suppression(address: &str, r: &SuppressionRecord) -> String {
    serde_json::json!({
        "address": address, "reason": r.reason, "source": r.source, "expires_ms": r.expires_ms
    })
    .to_string()
}

/// `ListProviders` is for operators and for the edge's status page.
fn may_see_providers(caller: &Caller) -> Result<(), Status> {
    if caller.scopes.contains(&Scope::Service) {
        return Ok(());
    }
    Ok(caller.require(Scope::Admin)?)
}

#[tonic::async_trait]
impl pb::mta_server::Mta for MtaService {
    async fn submit(&self, request: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        MtaService::submit(self, request).await
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::MessageStatus>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Read)?;
        let status = self.visible_status(&caller, &request.into_inner().message_id).await?;
        Ok(Response::new(status_to_wire(status)))
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        may_see_providers(&caller(&request)?)?;
        let now = now_ms();
        Ok(Response::new(pb::ListProvidersResponse {
            providers: self.health.snapshot(now).into_iter().map(provider_to_wire).collect(),
            degraded: self.health.degraded(now),
            backlog: self.spool.backlog()?,
        }))
    }

    type WatchMessagesStream = WatchStream;

    async fn watch_messages(
        &self,
        request: Request<pb::WatchMessagesRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Read)?;
        let only = request.into_inner().message_id;
        let stream = BroadcastStream::new(self.spool.subscribe()).filter_map(move |change| match change {
            Ok(status) if (only.is_empty() || status.id == only) && caller.may_read(status.tenant()) => {
                Some(Ok(status_to_wire(status)))
            }
            Ok(_) => None,
            // Too slow: changes were skipped. Say so, and go on with the next ones.
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "a WatchMessages client fell behind");
                None
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn pause_provider(
        &self,
        request: Request<pb::ProviderRequest>,
    ) -> Result<Response<pb::ProviderStatus>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Admin)?;
        let actor = Actor::of(&request, &caller);
        self.set_paused(actor, &request.into_inner().name, true).await.map(Response::new)
    }

    async fn resume_provider(
        &self,
        request: Request<pb::ProviderRequest>,
    ) -> Result<Response<pb::ProviderStatus>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Admin)?;
        let actor = Actor::of(&request, &caller);
        self.set_paused(actor, &request.into_inner().name, false).await.map(Response::new)
    }

    async fn retry_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::MessageStatus>, Status> {
        let caller = caller(&request)?;
        caller.require(Scope::Send)?;
        let id = request.into_inner().message_id;
        let mut status = self.visible_status(&caller, &id).await?;
        match status.state() {
            State::Failed | State::Deferred => {}
            State::Sent => return Err(Status::failed_precondition("the message was already sent")),
            State::Queued | State::Sending => {
                return Err(Status::failed_precondition("the message is already queued or being delivered"));
            }
        }
        if self.spool.message(&status.id).await?.is_none() {
            return Err(Status::failed_precondition("the message body is no longer in the spool"));
        }
        status.requeue(now_ms());
        self.spool.update(status.clone(), false).await?;
        info!(message_id = %status.id, key = %caller.prefix(), "retry asked for now");
        self.wake.notify_one();
        Ok(Response::new(status_to_wire(status)))
    }

    async fn receive_webhook(
        &self,
        request: Request<pb::WebhookRequest>,
    ) -> Result<Response<pb::WebhookResponse>, Status> {
        caller(&request)?.require(Scope::Service)?;
        self.receive(request.into_inner()).await
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        MtaService::list_events(self, request).await
    }

    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::AppWebhook>, Status> {
        MtaService::create_webhook(self, request).await
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        MtaService::list_webhooks(self, request).await
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::AppWebhook>, Status> {
        MtaService::delete_webhook(self, request).await
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        let caller = caller(&request)?;
        // Admins see every entry; a tenant its own.
        let only = if caller.require(Scope::Admin).is_ok() {
            None
        } else {
            caller.require(Scope::Read)?;
            Some(caller.tenant.id.clone())
        };
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 100,
            n @ 1..=1000 => n as usize,
            n => return Err(Status::invalid_argument(format!("limit: {n} is over 1000"))),
        };
        let found =
            self.spool.suppressions(&request.after.to_ascii_lowercase(), only.as_deref(), limit, now_ms()).await?;
        Ok(Response::new(pb::ListSuppressionsResponse {
            suppressions: found.into_iter().map(|(a, r)| suppression_to_wire(a, r)).collect(),
        }))
    }

    async fn add_suppression(&self, request: Request<pb::Suppression>) -> Result<Response<pb::Suppression>, Status> {
        let caller = caller(&request)?;
        let actor = Actor::of(&request, &caller);
        let request = request.into_inner();
        let tenant = self.suppression_tenant(&caller, &request.tenant).await?;
        let address = crate::message::parse_mailbox("address", &request.address)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .email
            .to_ascii_lowercase();
        let expires_ms = u64::try_from(request.expires_unix_ms)
            .map_err(|_| Status::invalid_argument("expires_unix_ms: must not be negative"))?;
        let record = SuppressionRecord {
            reason: if request.reason.trim().is_empty() { "added by an operator".into() } else { request.reason },
            source: if request.source.trim().is_empty() { "operator".into() } else { request.source },
            created_ms: now_ms(),
            expires_ms,
            tenant: tenant.clone(),
        };
        self.spool.suppress(address.clone(), record.clone()).await?;
        let after = json_suppression(&address, &record);
        self.audit(actor, "suppression.add", &tenant, &address, String::new(), after).await?;
        info!(%address, "suppression added");
        Ok(Response::new(suppression_to_wire(address, record)))
    }

    async fn remove_suppression(
        &self,
        request: Request<pb::RemoveSuppressionRequest>,
    ) -> Result<Response<pb::RemoveSuppressionResponse>, Status> {
        let caller = caller(&request)?;
        let actor = Actor::of(&request, &caller);
        let request = request.into_inner();
        let tenant = self.suppression_tenant(&caller, &request.tenant).await?;
        let address = request.address.trim().to_ascii_lowercase();
        if self.spool.unsuppress(address.clone(), tenant.clone()).await? {
            let before = serde_json::json!({ "address": address, "tenant": tenant }).to_string();
            self.audit(actor, "suppression.remove", &tenant, &address, before, String::new()).await?;
            info!(%address, "suppression removed");
            Ok(Response::new(pb::RemoveSuppressionResponse {}))
        } else {
            Err(Status::not_found(format!("{address} is not suppressed")))
        }
    }
}
