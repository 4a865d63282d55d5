//! The gRPC `bitmail.v1.Mta` service: validation at the edge, then the spool.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_server::MtaServer;
use tokio::sync::Notify;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::events::Batch;
use crate::health::{Circuit, Health};
use crate::message::{Limits, validate};
use crate::receive::{Received, Webhook};
use crate::spool::record::{self, AttemptOutcome, State, SuppressionRecord};
use crate::spool::{Accepted, Spool, SpoolError, SuppressionRules};
use bitmail_runtime::metrics::Registry;
use bitmail_runtime::time::now_ms;

pub struct MtaService {
    spool: Spool,
    limits: Limits,
    health: Arc<Health>,
    /// Tells delivery that a message was accepted or is due again.
    wake: Arc<Notify>,
    /// Each provider's webhook verifier, by provider name (only those configured).
    webhooks: HashMap<String, Webhook>,
    suppression: SuppressionRules,
    metrics: Registry,
}

impl MtaService {
    pub fn new(
        spool: Spool,
        limits: Limits,
        health: Arc<Health>,
        wake: Arc<Notify>,
        webhooks: HashMap<String, Webhook>,
        suppression: SuppressionRules,
        metrics: Registry,
    ) -> Self {
        Self { spool, limits, health, wake, webhooks, suppression, metrics }
    }

    fn count_submission(&self, result: &str) {
        self.metrics.count("bitmail_mta_submissions_total", "Submit calls, by result.", &[("result", result)], 1);
    }

    /// INVALID_ARGUMENT naming the first recipient on the suppression list.
    async fn check_suppressions(&self, message: &crate::message::Message) -> Result<(), Status> {
        let fields: Vec<(String, String)> = [("to", &message.to), ("cc", &message.cc), ("bcc", &message.bcc)]
            .into_iter()
            .flat_map(|(name, list)| {
                list.iter().enumerate().map(move |(i, m)| (format!("{name}[{i}]"), m.email.to_ascii_lowercase()))
            })
            .collect();
        let spool = self.spool.clone();
        let now = now_ms();
        let found = tokio::task::spawn_blocking(move || {
            let hit = spool.suppressed_blocking(fields.iter().map(|(_, a)| a.as_str()), now)?;
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
                    ms => format!("until {}", iso_date(ms)),
                };
                Err(Status::invalid_argument(format!("{field}: {address} is suppressed ({}, {until})", r.reason)))
            }
        }
    }

    async fn load_status(&self, id: &str) -> Result<record::Status, Status> {
        if id.is_empty() {
            return Err(Status::invalid_argument("message_id: required"));
        }
        let found = self.spool.status(id).await?;
        found.ok_or_else(|| Status::not_found(format!("no message with id {id:?}")))
    }

    fn provider_status(&self, index: usize) -> pb::ProviderStatus {
        let snapshot = self.health.snapshot(now_ms()).swap_remove(index);
        provider_to_wire(snapshot)
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<pb::ProviderStatus, Status> {
        let index = self.health.index(name).ok_or_else(|| Status::not_found(format!("no provider named {name:?}")))?;
        if let Some((name, record)) = self.health.set_paused(index, paused) {
            self.spool.save_health(&name, record).await;
        }
        info!(provider = name, paused, "operator changed a provider");
        if !paused {
            self.wake.notify_one();
        }
        Ok(self.provider_status(index))
    }

    /// The tonic server, accepting requests a little over the message limit so that an
    /// oversized body gets a clear INVALID_ARGUMENT naming the field rather than a
    /// transport error, and webhook requests carrying received mail.
    pub fn into_server(self) -> MtaServer<Self> {
        // Inbound mail webhooks forwarded by the edge may be larger than outgoing mail.
        let max = self.limits.max_message_bytes.max(crate::inbound::MAX_BODY).saturating_add(256 * 1024);
        MtaServer::new(self).max_decoding_message_size(max)
    }
}

impl From<SpoolError> for Status {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::Full { .. } => Status::resource_exhausted(e.to_string()),
            SpoolError::Closed => Status::unavailable(e.to_string()),
            SpoolError::Open { .. } | SpoolError::Storage(_) => {
                tracing::error!(error = %e, "spool failure");
                Status::internal("the spool cannot store or read messages right now")
            }
        }
    }
}

fn unix_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn state_to_wire(s: State) -> pb::DeliveryState {
    match s {
        State::Queued => pb::DeliveryState::Queued,
        State::Sending => pb::DeliveryState::Sending,
        State::Sent => pb::DeliveryState::Sent,
        State::Deferred => pb::DeliveryState::Deferred,
        State::Failed => pb::DeliveryState::Failed,
    }
}

fn outcome_to_wire(o: AttemptOutcome) -> pb::AttemptOutcome {
    match o {
        AttemptOutcome::InProgress => pb::AttemptOutcome::Unspecified,
        AttemptOutcome::Accepted => pb::AttemptOutcome::Accepted,
        AttemptOutcome::Transient => pb::AttemptOutcome::Transient,
        AttemptOutcome::ProviderRefused => pb::AttemptOutcome::ProviderRefused,
        AttemptOutcome::MessageRejected => pb::AttemptOutcome::MessageRejected,
        AttemptOutcome::Ambiguous => pb::AttemptOutcome::Ambiguous,
    }
}

fn provider_to_wire(p: crate::health::Snapshot) -> pb::ProviderStatus {
    let circuit = match p.circuit {
        Circuit::Closed => pb::CircuitState::Closed,
        Circuit::Open => pb::CircuitState::Open,
        Circuit::HalfOpen => pb::CircuitState::HalfOpen,
        Circuit::Paused => pb::CircuitState::Paused,
    };
    let ms = |d: Option<std::time::Duration>| d.map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
    pb::ProviderStatus {
        name: p.name,
        circuit: circuit as i32,
        open_until_unix_ms: if p.circuit == Circuit::Closed { 0 } else { unix_ms(p.open_until_ms) },
        success_rate: p.success_rate.unwrap_or(0.0),
        attempts: u32::try_from(p.attempts).unwrap_or(u32::MAX),
        latency_p50_ms: ms(p.latency_p50),
        latency_p99_ms: ms(p.latency_p99),
        in_flight: p.in_flight,
        last_error: p.last_error,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::MessageStatus, Status>> + Send>>;

fn status_to_wire(s: record::Status) -> pb::MessageStatus {
    let state = s.state();
    pb::MessageStatus {
        state: state_to_wire(state) as i32,
        next_attempt_at_unix_ms: if state == State::Deferred { unix_ms(s.due_ms) } else { 0 },
        message_id: s.id,
        provider: s.provider,
        provider_message_id: s.provider_message_id,
        error: s.error,
        submitted_at_unix_ms: unix_ms(s.submitted_at_ms),
        attempts: s
            .attempts
            .into_iter()
            .map(|a| pb::Attempt {
                outcome: outcome_to_wire(a.outcome()) as i32,
                provider: a.provider,
                started_at_unix_ms: unix_ms(a.started_at_ms),
                duration_ms: a.duration_ms,
                provider_message_id: a.provider_message_id,
                detail: a.detail,
            })
            .collect(),
        possible_duplicate: s.possible_duplicate,
        events: s
            .events
            .into_iter()
            .map(|e| pb::DeliveryEvent {
                kind: e.kind,
                recipient: e.recipient,
                at_unix_ms: unix_ms(e.at_ms),
                provider: e.provider,
                provider_event_id: e.event_id,
                detail: e.detail,
                permanent: e.permanent,
            })
            .collect(),
    }
}

/// `YYYY-MM-DD` (UTC) of a time in ms since the epoch.
fn iso_date(ms: u64) -> String {
    let c = bitmail_runtime::time::civil(ms / 1000);
    format!("{:04}-{:02}-{:02}", c.year, c.month, c.day)
}

fn suppression_to_wire(address: String, r: SuppressionRecord) -> pb::Suppression {
    pb::Suppression {
        address,
        reason: r.reason,
        source: r.source,
        created_unix_ms: unix_ms(r.created_ms),
        expires_unix_ms: unix_ms(r.expires_ms),
    }
}

#[tonic::async_trait]
impl pb::mta_server::Mta for MtaService {
    async fn submit(&self, request: Request<pb::SubmitRequest>) -> Result<Response<pb::SubmitResponse>, Status> {
        let request = request.into_inner();
        let key = (!request.idempotency_key.is_empty()).then(|| request.idempotency_key.clone());
        let id = uuid::Uuid::now_v7().to_string();
        let message = validate(request, id.clone(), self.limits).map_err(|e| {
            self.count_submission("invalid");
            Status::invalid_argument(e.to_string())
        })?;
        self.check_suppressions(&message).await.inspect_err(|_| self.count_submission("suppressed"))?;
        let recipients = message.recipients().count();
        let accepted = self.spool.accept(&message, key).await.inspect_err(|e| {
            self.count_submission(if matches!(e, SpoolError::Full { .. }) { "spool_full" } else { "error" })
        })?;
        match accepted {
            Accepted::New => {
                self.count_submission("accepted");
                info!(message_id = %id, recipients, "accepted");
                self.wake.notify_one();
                Ok(Response::new(pb::SubmitResponse { message_id: id, duplicate: false }))
            }
            Accepted::Existing(first) => {
                self.count_submission("duplicate");
                info!(message_id = %first, "idempotency key seen before; nothing stored");
                Ok(Response::new(pb::SubmitResponse { message_id: first, duplicate: true }))
            }
        }
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::MessageStatus>, Status> {
        let status = self.load_status(&request.into_inner().message_id).await?;
        Ok(Response::new(status_to_wire(status)))
    }

    async fn list_providers(
        &self,
        _request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let now = now_ms();
        let spool = self.spool.clone();
        let backlog = tokio::task::spawn_blocking(move || spool.backlog())
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::ListProvidersResponse {
            providers: self.health.snapshot(now).into_iter().map(provider_to_wire).collect(),
            degraded: self.health.degraded(now),
            backlog,
        }))
    }

    type WatchMessagesStream = WatchStream;

    async fn watch_messages(
        &self,
        request: Request<pb::WatchMessagesRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let only = request.into_inner().message_id;
        let stream = BroadcastStream::new(self.spool.subscribe()).filter_map(move |change| match change {
            Ok(status) if only.is_empty() || status.id == only => Some(Ok(status_to_wire(status))),
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
        self.set_paused(&request.into_inner().name, true).await.map(Response::new)
    }

    async fn resume_provider(
        &self,
        request: Request<pb::ProviderRequest>,
    ) -> Result<Response<pb::ProviderStatus>, Status> {
        self.set_paused(&request.into_inner().name, false).await.map(Response::new)
    }

    async fn retry_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::MessageStatus>, Status> {
        let mut status = self.load_status(&request.into_inner().message_id).await?;
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
        info!(message_id = %status.id, "operator asked for a retry now");
        self.wake.notify_one();
        Ok(Response::new(status_to_wire(status)))
    }

    async fn receive_webhook(
        &self,
        request: Request<pb::WebhookRequest>,
    ) -> Result<Response<pb::WebhookResponse>, Status> {
        let request = request.into_inner();
        let answer =
            |http_status: u32, message: String| pb::WebhookResponse { http_status, message, ..Default::default() };
        let Some(webhook) = self.webhooks.get(&request.provider) else {
            return Ok(Response::new(answer(
                404,
                format!("no provider {:?} with a webhook key configured", request.provider),
            )));
        };
        let kind = pb::WebhookKind::try_from(request.kind).unwrap_or(pb::WebhookKind::Events);
        let headers: Vec<(String, String)> = request.headers.into_iter().map(|h| (h.name, h.value)).collect();
        let now = now_ms();
        let received = match webhook.receive(&request.provider, kind, &headers, &request.body, now).await {
            Ok(received) => received,
            Err(refused) => {
                let status = refused.http_status().to_string();
                self.metrics.count(
                    "bitmail_mta_webhooks_refused_total",
                    "Webhook requests refused (bad signature, stale, malformed), by HTTP status.",
                    &[("provider", &request.provider), ("status", &status)],
                    1,
                );
                warn!(provider = %request.provider, reason = %refused, "webhook refused; nothing stored");
                return Ok(Response::new(answer(refused.http_status(), refused.to_string())));
            }
        };
        let batch = match received {
            Received::Events(batch) => batch,
            Received::Nothing(why) => {
                info!(provider = %request.provider, "webhook: {why}");
                return Ok(Response::new(answer(200, why)));
            }
            Received::Mail { mail, nonce, unknown_recipients_status } => {
                if nonce.is_some() {
                    let seen = self.spool.record_events(Batch { events: vec![], nonce }, self.suppression, now).await?;
                    if seen.replay {
                        warn!(provider = %request.provider, "inbound mail with a token used before for another message; refused as a replay");
                        return Ok(Response::new(answer(
                            401,
                            "signature: this token was used before (a replay)".into(),
                        )));
                    }
                }
                self.metrics.count(
                    "bitmail_mta_inbound_total",
                    "Received mail verified and parsed, by provider.",
                    &[("provider", &request.provider)],
                    1,
                );
                info!(provider = %request.provider, key = %mail.dedupe_key, attachments = mail.attachments.len(), "inbound mail verified");
                return Ok(Response::new(pb::WebhookResponse {
                    http_status: 200,
                    mail: Some(*mail),
                    unknown_recipients_status,
                    ..Default::default()
                }));
            }
        };
        let stored = self.spool.record_events(batch, self.suppression, now).await?;
        for (result, n) in
            [("stored", stored.stored), ("duplicate", stored.duplicates), ("unknown_message", stored.unknown)]
        {
            if n > 0 {
                self.metrics.count(
                    "bitmail_mta_webhook_events_total",
                    "Delivery events received by webhook, by result.",
                    &[("provider", &request.provider), ("result", result)],
                    u64::from(n),
                );
            }
        }
        if stored.replay {
            warn!(provider = %request.provider, "webhook token used before for another event; refused as a replay");
            return Ok(Response::new(answer(401, "signature: this token was used before (a replay)".into())));
        }
        info!(provider = %request.provider, stored = stored.stored, duplicates = stored.duplicates, unknown = stored.unknown, "webhook events");
        Ok(Response::new(pb::WebhookResponse {
            http_status: 200,
            stored: stored.stored,
            duplicates: stored.duplicates,
            ..Default::default()
        }))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => 100,
            n @ 1..=1000 => n as usize,
            n => return Err(Status::invalid_argument(format!("limit: {n} is over 1000"))),
        };
        let found = self.spool.suppressions(&request.after.to_ascii_lowercase(), limit, now_ms()).await?;
        Ok(Response::new(pb::ListSuppressionsResponse {
            suppressions: found.into_iter().map(|(a, r)| suppression_to_wire(a, r)).collect(),
        }))
    }

    async fn add_suppression(&self, request: Request<pb::Suppression>) -> Result<Response<pb::Suppression>, Status> {
        let request = request.into_inner();
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
        };
        self.spool.suppress(address.clone(), record.clone()).await?;
        info!(%address, "suppression added");
        Ok(Response::new(suppression_to_wire(address, record)))
    }

    async fn remove_suppression(
        &self,
        request: Request<pb::RemoveSuppressionRequest>,
    ) -> Result<Response<pb::RemoveSuppressionResponse>, Status> {
        let address = request.into_inner().address.trim().to_ascii_lowercase();
        if self.spool.unsuppress(address.clone()).await? {
            info!(%address, "suppression removed");
            Ok(Response::new(pb::RemoveSuppressionResponse {}))
        } else {
            Err(Status::not_found(format!("{address} is not suppressed")))
        }
    }
}
