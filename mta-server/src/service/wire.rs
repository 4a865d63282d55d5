//! Between the wire and the domain: statuses, providers and suppressions as the gRPC
//! answers show them.

use bitmail_proto::v1 as pb;

use crate::health::Circuit;
use crate::spool::record::{self, AttemptOutcome, State, SuppressionRecord};

pub(super) fn unix_ms(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

pub(super) fn state_to_wire(s: State) -> pb::DeliveryState {
    match s {
        State::Queued => pb::DeliveryState::Queued,
        State::Sending => pb::DeliveryState::Sending,
        State::Sent => pb::DeliveryState::Sent,
        State::Deferred => pb::DeliveryState::Deferred,
        State::Failed => pb::DeliveryState::Failed,
    }
}

pub(super) fn outcome_to_wire(o: AttemptOutcome) -> pb::AttemptOutcome {
    match o {
        AttemptOutcome::InProgress => pb::AttemptOutcome::Unspecified,
        AttemptOutcome::Accepted => pb::AttemptOutcome::Accepted,
        AttemptOutcome::Transient => pb::AttemptOutcome::Transient,
        AttemptOutcome::ProviderRefused => pb::AttemptOutcome::ProviderRefused,
        AttemptOutcome::MessageRejected => pb::AttemptOutcome::MessageRejected,
        AttemptOutcome::Ambiguous => pb::AttemptOutcome::Ambiguous,
    }
}

pub(super) fn provider_to_wire(p: crate::health::Snapshot) -> pb::ProviderStatus {
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

pub(super) fn status_to_wire(s: record::Status) -> pb::MessageStatus {
    let state = s.state();
    let tenant = s.tenant().to_owned();
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
        tenant,
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

pub(super) fn suppression_to_wire(address: String, r: SuppressionRecord) -> pb::Suppression {
    pb::Suppression {
        address,
        reason: r.reason,
        source: r.source,
        created_unix_ms: unix_ms(r.created_ms),
        expires_unix_ms: unix_ms(r.expires_ms),
        tenant: r.tenant,
    }
}
