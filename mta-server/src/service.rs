//! The gRPC `bitmail.v1.Mta` service: validation at the edge, then the spool.

use std::sync::Arc;

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_server::MtaServer;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::message::{Limits, validate};
use crate::spool::record::{self, AttemptOutcome, State};
use crate::spool::{Accepted, Spool, SpoolError};

pub struct MtaService {
    spool: Spool,
    limits: Limits,
    /// Tells delivery that a message was accepted.
    wake: Arc<Notify>,
}

impl MtaService {
    pub fn new(spool: Spool, limits: Limits, wake: Arc<Notify>) -> Self {
        Self {
            spool,
            limits,
            wake,
        }
    }

    /// The tonic server, accepting requests a little over the message limit so that an
    /// oversized body gets a clear INVALID_ARGUMENT naming the field rather than a
    /// transport error.
    pub fn into_server(self) -> MtaServer<Self> {
        let max = self.limits.max_message_bytes.saturating_add(256 * 1024);
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

fn status_to_wire(s: record::Status) -> pb::MessageStatus {
    let state = s.state();
    pb::MessageStatus {
        state: state_to_wire(state) as i32,
        next_attempt_at_unix_ms: if state == State::Deferred {
            unix_ms(s.due_ms)
        } else {
            0
        },
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
    }
}

#[tonic::async_trait]
impl pb::mta_server::Mta for MtaService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let request = request.into_inner();
        let key = (!request.idempotency_key.is_empty()).then(|| request.idempotency_key.clone());
        let id = uuid::Uuid::now_v7().to_string();
        let message = validate(request, id.clone(), self.limits)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let recipients = message.recipients().count();
        match self.spool.accept(&message, key).await? {
            Accepted::New => {
                info!(message_id = %id, recipients, "accepted");
                self.wake.notify_one();
                Ok(Response::new(pb::SubmitResponse {
                    message_id: id,
                    duplicate: false,
                }))
            }
            Accepted::Existing(first) => {
                info!(message_id = %first, "idempotency key seen before; nothing stored");
                Ok(Response::new(pb::SubmitResponse {
                    message_id: first,
                    duplicate: true,
                }))
            }
        }
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::MessageStatus>, Status> {
        let id = request.into_inner().message_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("message_id: required"));
        }
        let spool = self.spool.clone();
        let lookup = id.clone();
        let found = tokio::task::spawn_blocking(move || spool.status(&lookup))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        let status =
            found.ok_or_else(|| Status::not_found(format!("no message with id {id:?}")))?;
        Ok(Response::new(status_to_wire(status)))
    }
}
