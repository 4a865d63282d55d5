//! `Submit`: who sends for which tenant, then validation, the tenant's `From` rule and
//! quotas, suppressions, and the spool, in that order, so that a refused message
//! stores nothing and counts against nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitmail_proto::v1 as pb;
use tonic::{Request, Response, Status};
use tracing::info;

use super::MtaService;
use crate::auth::{caller, quota_status};
use crate::message::validate;
use crate::spool::ledger::{CAMPAIGN_KEY, LedgerKey, SUBSCRIBER_KEY};
use crate::spool::{Accepted, SpoolError};
use crate::tenant::{Admitted, Caller, Registry, RegistryError, Scope, Tenant, quota};
use bitmail_runtime::sync::lock;
use bitmail_runtime::time::now_ms;

/// How long a tenant named by a service key is trusted as read (as the key check trusts
/// keys): an edit or a suspension is seen within this.
const TENANT_TTL: Duration = Duration::from_secs(5);

/// Tenants named in `SubmitRequest.tenant` by service keys, as recently read.
#[derive(Default)]
pub(super) struct TenantCache {
    read: Mutex<HashMap<String, (Instant, Arc<Tenant>)>>,
}

impl TenantCache {
    pub(super) async fn get(&self, registry: &Registry, id: &str) -> Result<Arc<Tenant>, Status> {
        if let Some((at, tenant)) = lock(&self.read).get(id)
            && at.elapsed() < TENANT_TTL
        {
            return Ok(tenant.clone());
        }
        let started = Instant::now();
        let tenant = match registry.get_tenant(id).await {
            Ok(found) => Arc::new(found.value),
            Err(RegistryError::NoTenant(_)) => {
                return Err(Status::invalid_argument(format!("tenant: no tenant {id:?}")));
            }
            Err(e) => return Err(Status::unavailable(format!("cannot read tenant {id:?}: {e}"))),
        };
        let mut read = lock(&self.read);
        if read.len() > 10_000 {
            read.clear();
        }
        read.insert(id.to_owned(), (started, tenant.clone()));
        Ok(tenant)
    }
}

/// How far ahead a message may be scheduled (`not_before_unix_ms`).
pub(crate) const MAX_SCHEDULE_AHEAD_MS: u64 = 7 * 24 * 3600 * 1000;

/// When a message may first be delivered (ms), if later than now (a time already past
/// means now); INVALID_ARGUMENT when negative or past [`MAX_SCHEDULE_AHEAD_MS`].
fn not_before(at_ms: i64, now_ms: u64) -> Result<Option<u64>, Status> {
    let Ok(at) = u64::try_from(at_ms) else {
        return Err(Status::invalid_argument("not_before_unix_ms: must not be negative (0 sends now)"));
    };
    if at <= now_ms {
        return Ok(None);
    }
    if at - now_ms > MAX_SCHEDULE_AHEAD_MS {
        return Err(Status::invalid_argument("not_before_unix_ms: at most 7 days ahead"));
    }
    Ok(Some(at))
}

impl MtaService {
    pub(super) async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let tenant =
            self.tenant_for(&caller, &request.tenant).await.inspect_err(|_| self.count_submission("forbidden"))?;
        self.submit_as(&tenant, &caller.prefix(), request, None, None).await.map(Response::new)
    }

    /// A submission for `tenant`, made with the key `key` (its `bmk_<id>` prefix, for
    /// the log): validation, the `From` rule, quotas, suppressions, then the spool.
    /// `admitted` is an allowance already taken (SMTP takes it at `MAIL`); without one,
    /// it is taken here. `raw`: the client's own MIME, which `request` was read from
    /// (SMTP). Every surface that accepts mail ends here.
    pub(crate) async fn submit_as(
        &self,
        tenant: &Arc<Tenant>,
        key: &str,
        request: pb::SubmitRequest,
        admitted: Option<Admitted>,
        raw: Option<Vec<u8>>,
    ) -> Result<pb::SubmitResponse, Status> {
        self.submit_with(tenant, key, request, admitted, raw, None).await
    }

    /// A campaign's copy for one subscriber (`ledger`): [`MtaService::submit_as`], with
    /// the copy's ledger entry written in the same commit as the copy, and the answer
    /// the first copy's id (`duplicate`) when the subscriber already has one.
    pub(crate) async fn submit_copy(
        &self,
        tenant: &Arc<Tenant>,
        request: pb::SubmitRequest,
        ledger: LedgerKey,
    ) -> Result<pb::SubmitResponse, Status> {
        let key = format!("campaign:{}", ledger.campaign);
        self.submit_with(tenant, &key, request, None, None, Some(ledger)).await
    }

    async fn submit_with(
        &self,
        tenant: &Arc<Tenant>,
        key: &str,
        request: pb::SubmitRequest,
        admitted: Option<Admitted>,
        raw: Option<Vec<u8>>,
        ledger: Option<LedgerKey>,
    ) -> Result<pb::SubmitResponse, Status> {
        // Idempotency keys are per tenant: another tenant's key neither collides nor
        // reveals a message id. Tenant ids hold no `:`.
        let idempotency =
            (!request.idempotency_key.is_empty()).then(|| format!("{}:{}", tenant.id, request.idempotency_key));
        let validate_only = request.validate_only;
        let possible_duplicate = request.possible_duplicate;
        let not_before_ms = not_before(request.not_before_unix_ms, now_ms()).inspect_err(|_| {
            self.count_submission("invalid");
        })?;
        let id = uuid::Uuid::now_v7().to_string();
        let mut message = validate(request, id.clone(), self.limits).map_err(|e| {
            self.count_submission("invalid");
            Status::invalid_argument(e.to_string())
        })?;
        message.raw = raw.map(Arc::from);
        if let Some(l) = &ledger {
            message.metadata.insert(CAMPAIGN_KEY.into(), l.campaign.clone());
            message.metadata.insert(SUBSCRIBER_KEY.into(), l.subscriber.clone());
        }
        if !tenant.may_send_from(&message.from.email) {
            self.count_submission("forbidden");
            return Err(Status::permission_denied(format!(
                "from: {} is not a sending domain or address of tenant {:?}",
                message.from.email, tenant.id
            )));
        }
        let recipients = message.recipients().count();
        quota::check_message(&tenant.quotas, recipients, message.wire_bytes() as u64).map_err(|e| {
            self.count_submission("over_quota");
            quota_status(&e)
        })?;
        self.check_suppressions(&message, &tenant.id).await.inspect_err(|_| self.count_submission("suppressed"))?;
        if validate_only {
            // Nothing admitted: an allowance already taken goes back when dropped.
            self.count_submission("validated");
            return Ok(pb::SubmitResponse { message_id: String::new(), duplicate: false });
        }
        let admitted = match admitted {
            Some(admitted) => admitted,
            None => self.tenancy.quota.admit(tenant, now_ms()).await.map_err(|e| {
                self.count_submission("over_quota");
                quota_status(&e)
            })?,
        };
        let accepted =
            self.spool.accept_for(&message, &tenant.id, idempotency, not_before_ms, possible_duplicate, ledger);
        let accepted = accepted.await.inspect_err(|e| {
            self.count_submission(if matches!(e, SpoolError::Full { .. } | SpoolError::DiskFull(_)) {
                "spool_full"
            } else {
                "error"
            })
        })?;
        match accepted {
            Accepted::New => {
                admitted.commit();
                self.count_submission("accepted");
                info!(message_id = %id, tenant = %tenant.id, key, recipients, "accepted");
                self.wake.notify_one();
                Ok(pb::SubmitResponse { message_id: id, duplicate: false })
            }
            Accepted::Existing(first) => {
                // Nothing stored: the allowance goes back when `admitted` is dropped.
                self.count_submission("duplicate");
                info!(message_id = %first, "idempotency key seen before; nothing stored");
                Ok(pb::SubmitResponse { message_id: first, duplicate: true })
            }
        }
    }

    /// The tenant a submission is for: the key's own, or the one it names when its key
    /// may send for others (`service`, `admin`).
    async fn tenant_for(&self, caller: &Caller, named: &str) -> Result<Arc<Tenant>, Status> {
        if named.is_empty() || named == caller.tenant.id {
            caller.require(Scope::Send)?;
            return Ok(caller.tenant.clone());
        }
        caller.may_submit_for(named)?;
        let tenant = self.tenants.get(&self.tenancy.registry, named).await?;
        if !tenant.is_active() {
            return Err(Status::permission_denied(format!("tenant {named:?} is suspended")));
        }
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_a_time_to_come_at_most_seven_days_ahead() {
        let now = 1_000_000;
        assert_eq!(not_before(0, now).unwrap(), None);
        assert!(not_before(-5, now).unwrap_err().message().contains("must not be negative"));
        assert_eq!(not_before(999_999, now).unwrap(), None);
        assert_eq!(not_before(1_000_001, now).unwrap(), Some(1_000_001));
        let limit = (now + MAX_SCHEDULE_AHEAD_MS) as i64;
        assert_eq!(not_before(limit, now).unwrap(), Some(limit as u64));
        let e = not_before(limit + 1, now).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().starts_with("not_before_unix_ms:"), "{}", e.message());
    }
}
