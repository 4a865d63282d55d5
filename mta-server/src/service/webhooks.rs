//! `CreateWebhook`, `ListWebhooks`, `DeleteWebhook`: the apps' webhooks
//! ([`crate::outbox`]), each change in the audit log. A tenant's own with `send` (`read`
//! to list); another tenant's with `admin`.

use bitmail_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::MtaService;
use super::wire::unix_ms;
use crate::auth::{Actor, caller};
use crate::outbox::{Webhook, WebhookError, WebhookFormat, Webhooks};
use crate::spool::record::OutboxState;
use crate::tenant::{Caller, Scope};
use bitmail_runtime::time::now_ms;

impl MtaService {
    fn app_webhooks(&self) -> Webhooks {
        Webhooks::new(self.tenancy.registry.store().clone())
    }

    pub(super) async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::AppWebhook>, Status> {
        let caller = caller(&request)?;
        let actor = Actor::of(&request, &caller);
        let request = request.into_inner();
        let tenant = whose(&caller, &request.tenant, Scope::Send)?;
        let format = WebhookFormat::parse(&request.format)
            .ok_or_else(|| webhook_status(WebhookError::Format(request.format.clone())))?;
        let created = self
            .app_webhooks()
            .create(&tenant, request.url.trim(), format, self.allow_private_webhooks, now_ms())
            .await
            .map_err(webhook_status)?;
        let after = serde_json::json!({ "url": created.url, "format": format.as_str() }).to_string();
        self.audit(actor, "webhook.create", &tenant, &created.id, String::new(), after).await?;
        let mut wire = to_wire(&created, &OutboxState::default());
        wire.secret = created.secret;
        Ok(Response::new(wire))
    }

    pub(super) async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let caller = caller(&request)?;
        let tenant = whose(&caller, &request.into_inner().tenant, Scope::Read)?;
        let mut webhooks = Vec::new();
        for w in self.app_webhooks().list(Some(&tenant)).await.map_err(webhook_status)? {
            webhooks.push(to_wire(&w, &self.spool.outbox(&w.id).await?));
        }
        Ok(Response::new(pb::ListWebhooksResponse { webhooks }))
    }

    pub(super) async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::AppWebhook>, Status> {
        let caller = caller(&request)?;
        let actor = Actor::of(&request, &caller);
        let request = request.into_inner();
        let tenant = whose(&caller, &request.tenant, Scope::Send)?;
        let deleted = self.app_webhooks().delete(&tenant, &request.id).await.map_err(webhook_status)?;
        let state = self.spool.outbox(&deleted.id).await?;
        self.spool.save_outbox(&deleted.id, None).await?;
        let before = serde_json::json!({ "url": deleted.url, "format": deleted.format.as_str() }).to_string();
        self.audit(actor, "webhook.delete", &tenant, &deleted.id, before, String::new()).await?;
        Ok(Response::new(to_wire(&deleted, &state)))
    }
}

/// The tenant a call is about: the caller's own (with `scope`), another (with `admin`).
fn whose(caller: &Caller, named: &str, scope: Scope) -> Result<String, Status> {
    if named.is_empty() || named == caller.tenant.id {
        caller.require(scope)?;
        return Ok(caller.tenant.id.clone());
    }
    caller.require(Scope::Admin)?;
    Ok(named.to_owned())
}

fn webhook_status(e: WebhookError) -> Status {
    match e {
        WebhookError::Url(_) | WebhookError::Format(_) | WebhookError::TooMany(_) => {
            Status::invalid_argument(e.to_string())
        }
        WebhookError::NotFound(_) => Status::not_found(e.to_string()),
        WebhookError::Store(_) => Status::unavailable(format!("cannot reach the webhooks: {e}")),
    }
}

fn to_wire(w: &Webhook, s: &OutboxState) -> pb::AppWebhook {
    pb::AppWebhook {
        id: w.id.clone(),
        tenant: w.tenant.clone(),
        url: w.url.clone(),
        format: w.format.as_str().to_owned(),
        secret: String::new(),
        public_key: w.public_key().unwrap_or_default(),
        created_at_unix_ms: unix_ms(w.created_ms),
        delivery: Some(pb::WebhookDelivery {
            delivered: s.delivered,
            dropped: s.dropped,
            failures: s.failures,
            failing_since_unix_ms: unix_ms(s.failing_since_ms),
            next_attempt_unix_ms: unix_ms(s.next_attempt_ms),
            last_attempt_unix_ms: unix_ms(s.last_attempt_ms),
            last_status: s.last_status,
            last_error: s.last_error.clone(),
            cursor: s.after_seq.to_string(),
        }),
    }
}
