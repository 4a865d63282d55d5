//! The status page's data: mta-server's providers (health, circuit, success rate), the
//! queue depth, the deliveries of the last hour, and every mta-server node
//! ([`crate::node_status`]).
//!
//! mta-server keeps no history, so client-api follows `WatchMessages` from its start and
//! keeps the last hour of outcomes (sent or failed) in memory, in [`crate::deliveries`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::grpc::WithKey;
use bitmail_runtime::time::now_ms;
use serde_json::{Value, json};

use crate::accounts::Role;
use crate::deliveries::{BUCKET_MS, Delivery, DeliveryLog};
use crate::error::ApiError;
use crate::extract::CurrentUser;
use crate::live::Change;
use crate::mailbox::Mailbox;
use crate::sent_status::state_name;
use crate::state::AppState;

/// Follows mta-server's status changes until the task is aborted, reconnecting after a
/// pause whenever the stream ends: outcomes go into `log`, and the final statuses and
/// later events of the messages this edge submitted into their mail documents
/// ([`crate::sent_status::remember`]).
pub(crate) async fn follow(mta: MtaClient<WithKey>, node: String, log: Arc<DeliveryLog>, mailbox: Mailbox) {
    loop {
        match mta.clone().watch_messages(pb::WatchMessagesRequest { message_id: String::new() }).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(status)) = stream.message().await {
                    let state = state_name(status.state);
                    // Every state, as it changes, to the sender's open webmails.
                    let sender = log.sender_of(&status.message_id);
                    if let Some(sender) = &sender {
                        mailbox.live().publish(sender, Change::status(&status.message_id, state));
                    }
                    if !matches!(state, "sent" | "failed") {
                        continue;
                    }
                    let provider = if status.provider.is_empty() {
                        status.attempts.last().map(|a| a.provider.clone()).unwrap_or_default()
                    } else {
                        status.provider.clone()
                    };
                    if status.events.is_empty() {
                        log.record(Delivery {
                            at_ms: now_ms(),
                            provider,
                            state,
                            message_id: status.message_id.clone(),
                        });
                    }
                    if sender.is_some() {
                        // Off the stream's task, so that a slow store never makes it lag.
                        let mailbox = mailbox.clone();
                        tokio::spawn(async move { crate::sent_status::remember(&mailbox, &status).await });
                    }
                }
            }
            Err(e) => tracing::debug!(node, error = %e, "cannot follow mta-server's deliveries yet"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn circuit_name(c: i32) -> &'static str {
    match pb::CircuitState::try_from(c).unwrap_or(pb::CircuitState::Unspecified) {
        pb::CircuitState::Closed => "closed",
        pb::CircuitState::Open => "open",
        pb::CircuitState::HalfOpen => "half-open",
        pb::CircuitState::Paused => "paused",
        pb::CircuitState::Unspecified => "unknown",
    }
}

/// `GET /api/status`. Providers' health and the queue are everyone's; the recent
/// deliveries are the user's own messages, and the providers' last errors (which may
/// name anyone's recipients) are shown to admins only.
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let admin = state.accounts.current_role(&user).await? == Role::Admin;
    let crate::node_status::Nodes { lists, json: nodes, unreachable } = crate::node_status::nodes(&state).await;
    // Providers are configured alike on every node; their health is the first
    // answering node's (the admin console shows each node's own).
    let Some(list) = lists.first().cloned() else {
        return Err(ApiError::Upstream(format!("no mta-server answers: {}", unreachable.join(", "))));
    };
    // Degraded: no provider can be tried now on some node that answered; the nodes that
    // did not answer are named apart.
    let degraded = lists.iter().any(|l| l.degraded);
    let backlog: u64 = lists.iter().map(|l| l.backlog).sum();
    let providers: Vec<Value> = list
        .providers
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "circuit": circuit_name(p.circuit), "success_rate": p.success_rate,
                "attempts": p.attempts, "latency_p50_ms": p.latency_p50_ms, "latency_p99_ms": p.latency_p99_ms,
                "in_flight": p.in_flight,
                "last_error": (admin && !p.last_error.is_empty()).then_some(&p.last_error),
                "open_until_ms": (p.open_until_unix_ms > 0).then_some(p.open_until_unix_ms),
            })
        })
        .collect();
    let now = now_ms();
    let recent: Vec<Value> = state
        .deliveries
        .recent(20, (!admin).then_some(user.id.as_str()))
        .into_iter()
        .map(|d| json!({ "at_ms": d.at_ms, "provider": d.provider, "state": d.state, "message_id": d.message_id }))
        .collect();
    let chart: BTreeMap<String, Vec<u32>> =
        state.deliveries.per_provider(now).into_iter().map(|(k, v)| (k, v.to_vec())).collect();
    Ok(Json(json!({
        "degraded": degraded, "queue_depth": backlog, "providers": providers, "recent": recent,
        "nodes": nodes, "unreachable_nodes": unreachable,
        "chart": { "now_ms": now, "bucket_minutes": BUCKET_MS / 60_000, "sent": chart },
    })))
}
