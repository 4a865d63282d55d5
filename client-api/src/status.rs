//! The status page's data: mta-server's providers (health, circuit, success rate), the
//! queue depth, and the deliveries of the last hour.
//!
//! mta-server keeps no history, so client-api follows `WatchMessages` from its start and
//! keeps the last hour of outcomes (sent or failed) in memory, at most [`MAX_EVENTS`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::sync::lock;
use bitmail_runtime::time::now_ms;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::error::ApiError;
use crate::mail::state_name;
use crate::routes::{AppState, CurrentUser};

const HOUR_MS: u64 = 3600 * 1000;
pub const MAX_EVENTS: usize = 20_000;
/// The chart's bars: twelve of five minutes.
const BUCKET_MS: u64 = 5 * 60 * 1000;
const BUCKETS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub at_ms: u64,
    pub provider: String,
    pub state: &'static str,
    pub message_id: String,
}

/// The outcomes of the last hour, oldest first.
#[derive(Default)]
pub struct DeliveryLog {
    events: Mutex<VecDeque<Delivery>>,
}

impl DeliveryLog {
    pub fn record(&self, d: Delivery) {
        let mut events = lock(&self.events);
        while events.front().is_some_and(|e| e.at_ms + HOUR_MS < d.at_ms) || events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(d);
    }

    /// The newest `n` outcomes, newest first.
    pub fn recent(&self, n: usize) -> Vec<Delivery> {
        let events = lock(&self.events);
        events.iter().rev().take(n).cloned().collect()
    }

    /// Messages sent per provider in each five-minute bucket of the hour before `now`,
    /// oldest bucket first.
    pub fn per_provider(&self, now: u64) -> BTreeMap<String, [u32; BUCKETS]> {
        let since = now.saturating_sub(BUCKET_MS * BUCKETS as u64);
        let mut out: BTreeMap<String, [u32; BUCKETS]> = BTreeMap::new();
        let events = lock(&self.events);
        for e in events.iter().filter(|e| e.state == "sent" && e.at_ms >= since && e.at_ms <= now) {
            let bucket = (((e.at_ms - since) / BUCKET_MS) as usize).min(BUCKETS - 1);
            out.entry(e.provider.clone()).or_insert([0; BUCKETS])[bucket] += 1;
        }
        out
    }
}

/// Follows mta-server's status changes into `log` until the task is aborted,
/// reconnecting after a pause whenever the stream ends.
pub async fn follow(mta: MtaClient<Channel>, log: Arc<DeliveryLog>) {
    loop {
        match mta.clone().watch_messages(pb::WatchMessagesRequest { message_id: String::new() }).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                while let Ok(Some(status)) = stream.message().await {
                    let state = state_name(status.state);
                    if matches!(state, "sent" | "failed") {
                        let provider = if status.provider.is_empty() {
                            status.attempts.last().map(|a| a.provider.clone()).unwrap_or_default()
                        } else {
                            status.provider.clone()
                        };
                        log.record(Delivery { at_ms: now_ms(), provider, state, message_id: status.message_id });
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot follow mta-server's deliveries yet"),
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

/// `GET /api/status`.
pub async fn status(State(state): State<Arc<AppState>>, _user: CurrentUser) -> Result<Json<Value>, ApiError> {
    let list = state.mta.clone().list_providers(pb::ListProvidersRequest {}).await?.into_inner();
    let providers: Vec<Value> = list
        .providers
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "circuit": circuit_name(p.circuit), "success_rate": p.success_rate,
                "attempts": p.attempts, "latency_p50_ms": p.latency_p50_ms, "latency_p99_ms": p.latency_p99_ms,
                "in_flight": p.in_flight, "last_error": (!p.last_error.is_empty()).then_some(&p.last_error),
                "open_until_ms": (p.open_until_unix_ms > 0).then_some(p.open_until_unix_ms),
            })
        })
        .collect();
    let now = now_ms();
    let recent: Vec<Value> = state
        .deliveries
        .recent(20)
        .into_iter()
        .map(|d| json!({ "at_ms": d.at_ms, "provider": d.provider, "state": d.state, "message_id": d.message_id }))
        .collect();
    let chart: BTreeMap<String, Vec<u32>> =
        state.deliveries.per_provider(now).into_iter().map(|(k, v)| (k, v.to_vec())).collect();
    Ok(Json(json!({
        "degraded": list.degraded, "queue_depth": list.backlog, "providers": providers, "recent": recent,
        "chart": { "now_ms": now, "bucket_minutes": BUCKET_MS / 60_000, "sent": chart },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(at_ms: u64, provider: &str, state: &'static str) -> Delivery {
        Delivery { at_ms, provider: provider.into(), state, message_id: "m".into() }
    }

    #[test]
    fn the_log_keeps_an_hour_and_buckets_sent_mail_per_provider() {
        let log = DeliveryLog::default();
        let now = 10 * HOUR_MS;
        log.record(d(now - 2 * HOUR_MS, "a", "sent"));
        log.record(d(now - 59 * 60 * 1000, "a", "sent"));
        log.record(d(now - 1000, "a", "sent"));
        log.record(d(now - 500, "b", "sent"));
        log.record(d(now - 400, "b", "failed"));
        log.record(d(now, "b", "sent"));
        assert_eq!(log.recent(100).len(), 5, "the event older than an hour is gone");
        assert_eq!(log.recent(1)[0].at_ms, now);
        let chart = log.per_provider(now);
        assert_eq!(chart["a"][0], 1);
        assert_eq!(chart["a"][BUCKETS - 1], 1);
        assert_eq!(chart["b"][BUCKETS - 1], 2, "failed is not counted");
    }
}
