//! The loop that delivers each webhook's events, on every node, from its own spool.
//!
//! Every `POLL` it reads the registrations (at most every `REFRESH`, keeping the last
//! good list when the store is down) and starts one delivery for each webhook that has
//! none running, is due, and may have something new (the spool stored a change since it
//! was last found caught up): the next `BATCH` entries of its tenant's log after its
//! cursor, POSTed at once. A 2xx moves the cursor past them, durably; anything else
//! keeps it and sets the next attempt (doubling from `retry_initial_ms`), until the
//! batch has failed for `give_up_hours`: then it is dropped and counted. One delivery
//! per webhook at a time keeps each webhook's events in order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tracing::{info, warn};

use super::payload;
use super::store::{Webhook, Webhooks};
use crate::config::OutboxConfig;
use crate::spool::record::OutboxState;
use crate::spool::{Spool, SpoolError};
use bitmail_runtime::time::now_ms;

const POLL: Duration = Duration::from_millis(250);
const REFRESH: Duration = Duration::from_secs(2);
const BATCH: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the loop keeps of a webhook between ticks, to leave it alone while there is
/// nothing to do: it waits for a retry, or it had caught up and the spool stored
/// nothing since (so an idle gateway reads nothing).
#[derive(Debug, Clone, Copy, Default)]
struct Memo {
    next_attempt_ms: u64,
    /// The count of stored changes when its log was found read to the end.
    caught_up_at: Option<u64>,
}

impl Memo {
    fn idle(&self, now_ms: u64, generation: u64) -> bool {
        self.next_attempt_ms > now_ms || self.caught_up_at == Some(generation)
    }
}

/// How a failing webhook is retried.
#[derive(Debug, Clone, Copy)]
pub struct OutboxSettings {
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub give_up: Duration,
    /// `[outbox] allow_private_urls`: checked again before each attempt, since a name
    /// may resolve elsewhere than when it was registered.
    pub allow_private: bool,
}

impl From<&OutboxConfig> for OutboxSettings {
    fn from(c: &OutboxConfig) -> Self {
        OutboxSettings {
            retry_initial: Duration::from_millis(c.retry_initial_ms),
            retry_max: Duration::from_millis(c.retry_max_ms),
            give_up: Duration::from_secs(c.give_up_hours * 3600),
            allow_private: c.allow_private_urls,
        }
    }
}

pub struct Dispatcher {
    spool: Spool,
    webhooks: Webhooks,
    settings: OutboxSettings,
    client: reqwest::Client,
}

impl Dispatcher {
    pub fn new(spool: Spool, webhooks: Webhooks, settings: OutboxSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Dispatcher { spool, webhooks, settings, client })
    }

    /// Delivers until `shutdown` resolves; deliveries in flight are then dropped, their
    /// cursors unmoved (the events go again after the restart).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let this = Arc::new(self);
        let mut known: Vec<Webhook> = Vec::new();
        let mut refreshed: Option<Instant> = None;
        let mut running: JoinSet<(String, Option<Memo>)> = JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut memos: HashMap<String, Memo> = HashMap::new();
        // Counts the spool's stored changes: every event log entry comes with one.
        let mut changes = this.spool.subscribe();
        let mut generation = 0u64;
        // One ticker for the whole loop: the other branches must not postpone it.
        let mut ticks = tokio::time::interval(POLL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticks.tick() => {}
                change = changes.recv() => {
                    if matches!(change, Err(tokio::sync::broadcast::error::RecvError::Closed)) { break; }
                    generation += 1;
                    continue;
                }
                Some(done) = running.join_next() => {
                    if let Ok((id, memo)) = done {
                        in_flight.remove(&id);
                        match memo { Some(m) => memos.insert(id, m), None => memos.remove(&id) };
                    }
                    continue;
                }
            }
            if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
                match this.webhooks.list(None).await {
                    Ok(list) => known = list,
                    Err(e) => warn!(error = %e, "cannot read the webhooks; delivering to those known"),
                }
                memos.retain(|id, _| known.iter().any(|w| &w.id == id));
                refreshed = Some(Instant::now());
            }
            let now = now_ms();
            for webhook in &known {
                let idle = memos.get(&webhook.id).is_some_and(|m| m.idle(now, generation));
                if !idle && in_flight.insert(webhook.id.clone()) {
                    let (this, webhook) = (this.clone(), webhook.clone());
                    running.spawn(async move {
                        let memo = this.deliver(&webhook, generation).await;
                        if let Err(e) = &memo {
                            warn!(webhook = %webhook.id, error = %e, "webhook delivery not recorded");
                        }
                        (webhook.id, memo.ok())
                    });
                }
            }
        }
    }

    /// One attempt at `webhook`'s next batch, if it is due and there is one; what to
    /// remember of it until the next.
    async fn deliver(&self, webhook: &Webhook, generation: u64) -> Result<Memo, SpoolError> {
        let mut state = self.spool.outbox(&webhook.id).await?;
        let now = now_ms();
        if state.next_attempt_ms > now {
            return Ok(Memo { next_attempt_ms: state.next_attempt_ms, caught_up_at: None });
        }
        let entries = self.spool.events(&webhook.tenant, state.after_seq, BATCH).await?;
        let Some(&(last, _)) = entries.last() else {
            return Ok(Memo { next_attempt_ms: 0, caught_up_at: Some(generation) });
        };
        // A webhook gets the events from its registration on, not the log's history.
        let entries: Vec<_> = entries.into_iter().filter(|(_, e)| e.logged_ms >= webhook.created_ms).collect();
        let body = if entries.is_empty() { None } else { payload::body(webhook.format, &webhook.id, &entries) };
        let Some(body) = body else {
            state.after_seq = last;
            self.spool.save_outbox(&webhook.id, Some(state)).await?;
            return Ok(Memo::default());
        };
        let answer = match super::check_url(&webhook.url, self.settings.allow_private).await {
            Ok(()) => self.post(webhook, body).await,
            Err(e) => Err((0, e.to_string())),
        };
        state.last_attempt_ms = now;
        match answer {
            Ok(status) => {
                state = OutboxState { after_seq: last, delivered: state.delivered + entries.len() as u64, ..state };
                state.last_status = status;
                state.last_error.clear();
                (state.failures, state.failing_since_ms, state.next_attempt_ms) = (0, 0, 0);
            }
            Err((status, error)) => self.failed(webhook, &mut state, status, error, last, entries.len(), now),
        }
        let memo = Memo { next_attempt_ms: state.next_attempt_ms, caught_up_at: None };
        self.spool.save_outbox(&webhook.id, Some(state)).await?;
        Ok(memo)
    }

    /// Records a failed attempt: retry later, or past `give_up`, drop the batch.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &self,
        webhook: &Webhook,
        state: &mut OutboxState,
        status: u32,
        error: String,
        last: u64,
        n: usize,
        now: u64,
    ) {
        if state.failures == 0 {
            state.failing_since_ms = now;
        }
        state.failures += 1;
        state.last_status = status;
        state.last_error = error;
        let failing_for = Duration::from_millis(now.saturating_sub(state.failing_since_ms));
        if failing_for >= self.settings.give_up {
            warn!(webhook = %webhook.id, events = n, "webhook failing too long: events dropped");
            state.dropped += n as u64;
            state.after_seq = last;
            (state.failures, state.failing_since_ms, state.next_attempt_ms) = (0, 0, 0);
            return;
        }
        let doubled = self.settings.retry_initial.saturating_mul(1 << state.failures.min(20).saturating_sub(1));
        let delay = doubled.min(self.settings.retry_max);
        state.next_attempt_ms = now + delay.as_millis() as u64;
        info!(webhook = %webhook.id, failures = state.failures, delay_ms = delay.as_millis() as u64, "webhook failed; retrying later");
    }

    /// POSTs `body`, signed; the status of a 2xx, else the status (0: none) and why.
    async fn post(&self, webhook: &Webhook, body: Vec<u8>) -> Result<u32, (u32, String)> {
        let timestamp = now_ms() / 1000;
        let signature = payload::signature(&webhook.secret, timestamp, &body);
        let sendgrid = webhook.signing_key.as_deref().and_then(|k| payload::sendgrid_signature(k, timestamp, &body));
        let mut headers: HashMap<&str, String> = HashMap::from([
            ("content-type", "application/json".to_owned()),
            ("x-bitmail-signature", signature),
            ("x-bitmail-webhook-id", webhook.id.clone()),
            ("user-agent", format!("BitMail/{}", env!("CARGO_PKG_VERSION"))),
        ]);
        if let Some(sendgrid) = sendgrid {
            headers.insert("x-twilio-email-event-webhook-signature", sendgrid);
            headers.insert("x-twilio-email-event-webhook-timestamp", timestamp.to_string());
        }
        let mut request = self.client.post(&webhook.url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(u32::from(r.status().as_u16())),
            Ok(r) => Err((u32::from(r.status().as_u16()), format!("answered {}", r.status()))),
            Err(e) => Err((0, format!("no answer: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_left_alone_while_it_waits_for_a_retry_or_nothing_was_stored_since() {
        let waiting = Memo { next_attempt_ms: 2000, caught_up_at: None };
        assert!(waiting.idle(1000, 7));
        assert!(!waiting.idle(2000, 7), "its retry is due");
        let caught_up = Memo { next_attempt_ms: 0, caught_up_at: Some(7) };
        assert!(caught_up.idle(1000, 7));
        assert!(!caught_up.idle(1000, 8), "the spool stored a change since");
        assert!(!Memo::default().idle(1000, 0), "nothing known: look");
    }
}
