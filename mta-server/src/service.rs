//! The gRPC `bitmail.v1.Mta` service: validation at the edge, then the queue.

use std::time::{SystemTime, UNIX_EPOCH};

use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_server::MtaServer;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::message::{Limits, validate};
use crate::provider::OutcomeClass;
use crate::queue::{self, Queue, State};

pub struct MtaService {
    queue: Queue,
    limits: Limits,
}

impl MtaService {
    pub fn new(queue: Queue, limits: Limits) -> Self {
        Self { queue, limits }
    }

    /// The tonic server, accepting requests a little over the message limit so that an
    /// oversized body gets a clear INVALID_ARGUMENT naming the field rather than a
    /// transport error.
    pub fn into_server(self) -> MtaServer<Self> {
        let max = self.limits.max_message_bytes.saturating_add(256 * 1024);
        MtaServer::new(self).max_decoding_message_size(max)
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

fn outcome_to_wire(o: OutcomeClass) -> pb::AttemptOutcome {
    match o {
        OutcomeClass::Accepted => pb::AttemptOutcome::Accepted,
        OutcomeClass::Transient => pb::AttemptOutcome::Transient,
        OutcomeClass::ProviderRefused => pb::AttemptOutcome::ProviderRefused,
        OutcomeClass::MessageRejected => pb::AttemptOutcome::MessageRejected,
        OutcomeClass::Ambiguous => pb::AttemptOutcome::Ambiguous,
    }
}

fn status_to_wire(s: queue::Status) -> pb::MessageStatus {
    pb::MessageStatus {
        message_id: s.id,
        state: state_to_wire(s.state) as i32,
        provider: s.provider.unwrap_or_default(),
        provider_message_id: s.provider_message_id.unwrap_or_default(),
        error: s.error.unwrap_or_default(),
        submitted_at_unix_ms: unix_ms(s.submitted_at),
        next_attempt_at_unix_ms: s.next_attempt_at.map_or(0, unix_ms),
        attempts: s
            .attempts
            .into_iter()
            .map(|a| pb::Attempt {
                provider: a.provider,
                started_at_unix_ms: unix_ms(a.started_at),
                duration_ms: u32::try_from(a.duration.as_millis()).unwrap_or(u32::MAX),
                outcome: outcome_to_wire(a.outcome) as i32,
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
        let id = uuid::Uuid::now_v7().to_string();
        let message = validate(request.into_inner(), id.clone(), self.limits)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let recipients = message.recipients().count();
        self.queue
            .submit(message)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        info!(message_id = %id, recipients, "accepted");
        Ok(Response::new(pb::SubmitResponse { message_id: id }))
    }

    async fn get_message(
        &self,
        request: Request<pb::GetMessageRequest>,
    ) -> Result<Response<pb::MessageStatus>, Status> {
        let id = request.into_inner().message_id;
        if id.is_empty() {
            return Err(Status::invalid_argument("message_id: required"));
        }
        let status = self
            .queue
            .status(&id)
            .ok_or_else(|| Status::not_found(format!("no message with id {id:?}")))?;
        Ok(Response::new(status_to_wire(status)))
    }
}
