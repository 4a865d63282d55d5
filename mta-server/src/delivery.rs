//! Delivery: taking due messages from the spool and handing them to providers.
//!
//! A dispatcher reads the spool's schedule for messages that are due, at most as many as
//! there are free workers (`concurrency`), and runs one delivery round per message. A
//! round asks the scheduler for an order of providers and tries them in turn:
//!
//! - before each provider call, the attempt is recorded as in progress, durably: if the
//!   process dies during the call, the restart sees it, retries the message, and flags
//!   it as a possible duplicate;
//! - accepted: sent; message-rejected: failed, no other provider is tried;
//! - transient, provider-refused, ambiguous: the next provider, at once;
//! - every provider failed: deferred with exponential backoff and jitter, until the
//!   maximum age, then failed.
//!
//! The message stays on the schedule until its round has recorded an outcome, so a
//! restart resumes everything that was queued, deferred or being sent.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::health::Health;
use crate::limits::{AtLimit, Limiter};
use crate::message::Message;
use crate::provider::{Outcome, OutcomeClass, Provider, RefusalScope};
use crate::scheduler::Scheduler;
use crate::spool::record::{Attempt, AttemptOutcome, State, Status, now_ms};
use crate::spool::{Spool, SpoolError};
use bitmail_runtime::metrics::Registry;
use bitmail_runtime::sync::lock;

/// How deferred messages are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The delay after the first failed round; it doubles each round.
    pub initial: Duration,
    /// The longest delay between rounds.
    pub max_delay: Duration,
    /// After this long since submission, a message that still failed is failed for good.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// The delay after failed round `round` (1-based): `initial · 2^(round-1)`, capped at
    /// `max_delay`, times a factor in [0.8, 1.2) from `jitter` in [0, 1), so that
    /// retries do not move in lockstep.
    pub fn delay(&self, round: u32, jitter: f64) -> Duration {
        let exp = 2f64.powi(round.saturating_sub(1).min(30) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
    }
}

/// What to do when a provider took the request and never answered: it may have
/// accepted the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AmbiguousPolicy {
    /// Try the next provider at once; the message is flagged as a possible duplicate.
    FailOver,
    /// Try again later, from the first provider of a new round (flagged likewise).
    Defer,
    /// Never risk a duplicate: mark the message failed.
    Fail,
}

#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// Delivery rounds running at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub ambiguous: AmbiguousPolicy,
}

/// What delivery rounds share.
struct Shared {
    spool: Spool,
    providers: Vec<Arc<dyn Provider>>,
    scheduler: Arc<dyn Scheduler>,
    health: Arc<Health>,
    limiter: Arc<Limiter>,
    metrics: Registry,
    retry: RetryPolicy,
    ambiguous: AmbiguousPolicy,
    in_flight: Mutex<HashSet<String>>,
}

/// The delivery side; [`Delivery::run`] drives it until shutdown.
pub struct Delivery {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    concurrency: usize,
}

/// The providers and what decides between them, by the same index.
pub struct Providers {
    pub list: Vec<Arc<dyn Provider>>,
    pub scheduler: Arc<dyn Scheduler>,
    pub health: Arc<Health>,
    pub limiter: Arc<Limiter>,
}

impl Delivery {
    /// `wake` is notified by the submission side when a message was accepted.
    pub fn new(
        spool: Spool,
        providers: Providers,
        metrics: Registry,
        settings: DeliverySettings,
        wake: Arc<Notify>,
    ) -> Self {
        let shared = Arc::new(Shared {
            spool,
            providers: providers.list,
            scheduler: providers.scheduler,
            health: providers.health,
            limiter: providers.limiter,
            metrics,
            retry: settings.retry,
            ambiguous: settings.ambiguous,
            in_flight: Mutex::new(HashSet::new()),
        });
        Delivery { shared, wake, concurrency: settings.concurrency.max(1) }
    }

    /// Delivers due messages until `shutdown` resolves; then waits up to `grace` for
    /// the rounds in flight. A round cut short is resumed by the next start.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) {
        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let mut rounds = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while rounds.try_join_next().is_some() {}
            let free = semaphore.available_permits();
            // With no provider to try, leave the backlog on disk rather than run rounds
            // that can only defer it again; wait for a circuit to half-open, a probe to
            // end, or an operator.
            let blocked = !self.shared.health.any_claimable(now_ms());
            let found = if free == 0 || blocked {
                Ok((Vec::new(), None))
            } else {
                let shared = self.shared.clone();
                tokio::task::spawn_blocking(move || {
                    let in_flight = lock(&shared.in_flight).clone();
                    shared.spool.due(now_ms(), free, |id| in_flight.contains(id))
                })
                .await
                .unwrap_or_else(|e| Err(SpoolError::Storage(e.to_string())))
            };
            let (ids, next_due) = match found {
                Ok(_) if blocked => (Vec::new(), self.shared.health.next_reopening()),
                Ok(found) => found,
                Err(e) => {
                    error!(error = %e, "cannot read the spool's schedule");
                    (Vec::new(), Some(now_ms() + 1000))
                }
            };
            let idle = ids.is_empty();
            for id in ids {
                let Ok(permit) = semaphore.clone().try_acquire_owned() else {
                    break;
                };
                lock(&self.shared.in_flight).insert(id.clone());
                let shared = self.shared.clone();
                let span = info_span!("deliver", message_id = %id);
                rounds.spawn(
                    async move {
                        if let Err(e) = deliver(&shared, &id).await {
                            error!(error = %e, "delivery round failed to record its outcome; it will be retried");
                        }
                        lock(&shared.in_flight).remove(&id);
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            if !idle && semaphore.available_permits() > 0 {
                continue;
            }
            // Sleep until something is due, a message arrives, a worker frees up, or
            // shutdown. Never longer than a second, so a clock change cannot strand work.
            let wait = next_due.map_or(Duration::from_secs(1), |due| {
                Duration::from_millis(due.saturating_sub(now_ms())).min(Duration::from_secs(1))
            });
            // While blocked by a probe under way, the reopening time is already past:
            // poll gently rather than spin.
            let wait = if blocked { wait.max(Duration::from_millis(100)) } else { wait };
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                Some(_) = rounds.join_next(), if !rounds.is_empty() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }

        if tokio::time::timeout(grace, async { while rounds.join_next().await.is_some() {} }).await.is_err() {
            warn!(
                still_sending = rounds.len(),
                "delivery rounds still running at the end of the grace period; they resume at the next start"
            );
        }
    }
}

/// The `outcome` label of an attempt.
fn outcome_label(class: OutcomeClass) -> &'static str {
    match class {
        OutcomeClass::Accepted => "accepted",
        OutcomeClass::Transient => "transient",
        OutcomeClass::ProviderRefused => "provider_refused",
        OutcomeClass::MessageRejected => "message_rejected",
        OutcomeClass::Ambiguous => "ambiguous",
    }
}

/// How long a round waits at most before looking again at providers that were at their
/// in-flight or rate limit.
const LIMIT_POLL: Duration = Duration::from_millis(100);

/// `message` without the recipients earlier attempts already delivered to.
fn with_sent_to(mut message: Message, sent_to: &[String]) -> Message {
    message.already_sent_to.extend(sent_to.iter().cloned());
    message
}

/// One delivery round for one message.
async fn deliver(shared: &Shared, id: &str) -> Result<(), SpoolError> {
    let (Some(mut status), message) = (shared.spool.status(id)?, shared.spool.message(id)?) else {
        return Ok(());
    };
    if status.is_final() {
        return Ok(());
    }
    let Some(mut message) = message.map(|m| Arc::new(with_sent_to(m, &status.sent_to))) else {
        status.state = State::Failed as i32;
        status.error = "the message body is missing from the spool".into();
        status.due_ms = 0;
        error!("message body missing from the spool; marking failed");
        return shared.spool.update(status, true).await;
    };
    // An attempt left in progress by a process that died during the call may have been
    // accepted: treat it as ambiguous.
    for attempt in &mut status.attempts {
        if attempt.outcome() == AttemptOutcome::InProgress {
            attempt.outcome = AttemptOutcome::Ambiguous as i32;
            attempt.detail = "the process stopped during this attempt".into();
        }
    }
    let order = shared.scheduler.plan(&message, shared.providers.len());
    let mut last_error = String::from("no provider is configured");
    let mut attempted = false;
    let size = message.wire_bytes();
    let too_large: Vec<String> = order
        .iter()
        .filter(|&&i| size > shared.limiter.max_bytes(i))
        .map(|&i| format!("{} takes at most {} bytes", shared.providers[i].name(), shared.limiter.max_bytes(i)))
        .collect();
    if !order.is_empty() && too_large.len() == order.len() {
        status.state = State::Failed as i32;
        status.error =
            format!("the message is {size} bytes as sent, over every provider's limit ({})", too_large.join("; "));
        status.due_ms = 0;
        warn!(error = %status.error, "no provider takes a message this large");
        return shared.spool.update(status, false).await;
    }

    // Rounds over the plan until one attempt was made, or nothing but a provider's
    // in-flight or rate limit stood in the way (then wait for a slot and go again).
    loop {
        let mut wait: Option<Duration> = None;
        for &index in &order {
            let provider = &shared.providers[index];
            if size > shared.limiter.max_bytes(index) {
                continue;
            }
            match shared.limiter.acquire(index, now_ms()) {
                Ok(()) => {}
                Err(at) => {
                    let until = match at {
                        AtLimit::Busy => LIMIT_POLL,
                        AtLimit::Rate(d) => d.min(LIMIT_POLL),
                    };
                    wait = Some(wait.map_or(until, |w| w.min(until)));
                    last_error = format!("provider {} is at its limit ({at:?})", provider.name());
                    continue;
                }
            }
            if let Err(why) = shared.health.claim(index, now_ms()) {
                shared.limiter.cancel(index);
                last_error = format!("provider {} is unavailable ({why:?})", provider.name());
                continue;
            }
            if !attempted {
                attempted = true;
                status.rounds += 1;
            }
            if status.attempts.iter().any(|a| a.outcome() == AttemptOutcome::Ambiguous) {
                status.possible_duplicate = true;
            }
            status.state = State::Sending as i32;
            status.attempts.push(Attempt {
                provider: provider.name().to_owned(),
                started_at_ms: now_ms(),
                outcome: AttemptOutcome::InProgress as i32,
                ..Default::default()
            });
            // On disk before the provider hears of it.
            if let Err(e) = shared.spool.update(status.clone(), false).await {
                shared.health.release(index);
                shared.limiter.cancel(index);
                return Err(e);
            }

            let clock = Instant::now();
            let outcome = provider.send(&message).await;
            let duration = clock.elapsed();
            shared.limiter.finish(index);
            let labels = [("provider", provider.name()), ("outcome", outcome_label(outcome.class()))];
            shared.metrics.count("bitmail_mta_attempts_total", "Provider calls, by how they ended.", &labels, 1);
            shared.metrics.observe(
                "bitmail_mta_send_seconds",
                "Time of one provider call.",
                &[("provider", provider.name())],
                duration,
            );
            shared.scheduler.observe(index, outcome.class(), duration);
            if let Some((name, record)) = shared.health.record(index, &outcome, duration, now_ms()) {
                shared.spool.save_health(&name, record).await;
            }
            if let Some(attempt) = status.attempts.last_mut() {
                attempt.duration_ms = u32::try_from(duration.as_millis()).unwrap_or(u32::MAX);
                attempt.outcome = AttemptOutcome::from(outcome.class()) as i32;
                attempt.detail = outcome.detail().to_owned();
                match &outcome {
                    Outcome::Accepted { provider_message_id } => {
                        attempt.provider_message_id = provider_message_id.clone();
                    }
                    Outcome::PartlyAccepted { sent_to, provider_message_id, .. } => {
                        attempt.provider_message_id = provider_message_id.clone();
                        attempt.detail =
                            format!("accepted for {} recipients, then: {}", sent_to.len(), outcome.detail());
                    }
                    _ => {}
                }
            }
            // What was delivered stays delivered; the rest of the round acts on how the
            // failed call ended, for the recipients still to reach.
            let outcome = match outcome {
                Outcome::PartlyAccepted { sent_to, then, .. } => {
                    info!(provider = provider.name(), delivered = sent_to.len(), "delivered to some recipients");
                    status.sent_to.extend(sent_to);
                    message = Arc::new(with_sent_to((*message).clone(), &status.sent_to));
                    *then
                }
                other => other,
            };

            match outcome {
                Outcome::Accepted { provider_message_id } => {
                    info!(provider = provider.name(), %provider_message_id, "sent");
                    status.state = State::Sent as i32;
                    status.provider = provider.name().to_owned();
                    status.provider_message_id = provider_message_id;
                    status.error.clear();
                    status.due_ms = 0;
                    return shared.spool.update(status, true).await;
                }
                Outcome::MessageRejected { detail } => {
                    warn!(provider = provider.name(), %detail, "message rejected; not retrying");
                    status.state = State::Failed as i32;
                    status.error = detail;
                    status.due_ms = 0;
                    return shared.spool.update(status, false).await;
                }
                Outcome::ProviderRefused { detail, scope: RefusalScope::Provider } => {
                    // Health logs the alert once, when it sets the provider aside.
                    last_error = detail;
                }
                partial @ Outcome::PartlyAccepted { .. } => last_error = partial.detail().to_owned(),
                Outcome::ProviderRefused { detail, scope: RefusalScope::Message } => {
                    warn!(provider = provider.name(), %detail, "provider refused this message; trying the next");
                    last_error = detail;
                }
                Outcome::Transient { detail, .. } => {
                    warn!(provider = provider.name(), %detail, "transient failure; trying the next provider");
                    last_error = detail;
                }
                Outcome::Ambiguous { detail } => {
                    warn!(provider = provider.name(), %detail, policy = ?shared.ambiguous, "no answer after sending; a retry may duplicate");
                    match shared.ambiguous {
                        AmbiguousPolicy::FailOver => last_error = detail,
                        AmbiguousPolicy::Defer => return defer(shared, status, &message, detail, true).await,
                        AmbiguousPolicy::Fail => {
                            status.state = State::Failed as i32;
                            status.error = format!(
                                "no answer from {} after sending (it may have been sent): {detail}",
                                provider.name()
                            );
                            status.due_ms = 0;
                            return shared.spool.update(status, false).await;
                        }
                    }
                }
            }
        }
        if attempted {
            break;
        }
        match wait {
            Some(d) => shared.limiter.wait(d).await,
            None => break,
        }
    }
    defer(shared, status, &message, last_error, attempted).await
}

/// Every provider failed this round, or none could be tried: schedule the next round,
/// or fail past the maximum age. When no provider could be tried (all paused or with
/// open circuits), no round is counted and the next try is when a circuit half-opens,
/// spread over a second so that a returning provider is not hit by the whole backlog
/// at once.
async fn defer(
    shared: &Shared,
    mut status: Status,
    message: &Message,
    last_error: String,
    attempted: bool,
) -> Result<(), SpoolError> {
    let delay = if attempted {
        shared.retry.delay(status.rounds.max(1), fastrand::f64())
    } else {
        let fallback = shared.retry.max_delay.min(Duration::from_secs(60));
        let until =
            shared.health.next_reopening().map_or(fallback, |at| Duration::from_millis(at.saturating_sub(now_ms())));
        until + Duration::from_millis(fastrand::u64(0..1000))
    };
    let next = now_ms() + delay.as_millis() as u64;
    let submitted = crate::spool::record::to_ms(message.submitted_at);
    if Duration::from_millis(next.saturating_sub(submitted)) > shared.retry.max_age {
        warn!(rounds = status.rounds, error = %last_error, "giving up: past the maximum age");
        status.state = State::Failed as i32;
        status.error = format!("not delivered after {} round(s); last error: {last_error}", status.rounds);
        status.due_ms = 0;
        return shared.spool.update(status, false).await;
    }
    info!(rounds = status.rounds, delay_ms = delay.as_millis() as u64, error = %last_error, "deferred");
    status.state = State::Deferred as i32;
    status.error = last_error;
    status.due_ms = next;
    shared.spool.update(status, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let p = RetryPolicy {
            initial: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_age: Duration::from_secs(3600),
        };
        assert_eq!(p.delay(1, 0.5), Duration::from_secs(10));
        assert_eq!(p.delay(2, 0.5), Duration::from_secs(20));
        assert_eq!(p.delay(3, 0.5), Duration::from_secs(40));
        assert_eq!(p.delay(4, 0.5), Duration::from_secs(60));
        assert_eq!(p.delay(100, 0.5), Duration::from_secs(60));
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(8));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(12));
    }
}
