//! Accepted messages, their delivery status, and the delivery workers.
//!
//! [`Queue::submit`] takes a validated message into a bounded channel (full is an answer:
//! [`QueueFull`]). A dispatcher hands each message to a worker task, at most
//! `concurrency` at once; a worker runs one delivery round: it asks the scheduler for an
//! order, tries the providers in that order, and records every attempt. When every
//! provider fails, the message is deferred with exponential backoff and jitter until its
//! maximum age, then failed.
//!
//! This queue is in memory: a message accepted but not yet sent is lost if the process
//! stops. The durable spool (issue "The MTA container") replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info, info_span, warn};

use crate::message::Message;
use crate::provider::{Outcome, OutcomeClass, Provider, RefusalScope};
use crate::scheduler::Scheduler;

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Sending,
    Sent,
    Deferred,
    Failed,
}

/// One provider call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub provider: String,
    pub started_at: SystemTime,
    pub duration: Duration,
    pub outcome: OutcomeClass,
    pub provider_message_id: String,
    pub detail: String,
}

/// What is known of one message.
#[derive(Debug, Clone)]
pub struct Status {
    pub id: String,
    pub state: State,
    /// The provider that accepted it, and its id there.
    pub provider: Option<String>,
    pub provider_message_id: Option<String>,
    /// Why it failed, or the last error while deferred.
    pub error: Option<String>,
    pub submitted_at: SystemTime,
    pub next_attempt_at: Option<SystemTime>,
    pub attempts: Vec<Attempt>,
    /// An attempt whose answer never came was followed by another attempt.
    pub possible_duplicate: bool,
    had_ambiguous: bool,
    rounds: u32,
}

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
    /// `max_delay`, times a random factor in [0.8, 1.2) so that retries do not move in
    /// lockstep.
    pub fn delay(&self, round: u32, jitter: f64) -> Duration {
        let exp = 2f64.powi(round.saturating_sub(1).min(30) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(base * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
    }
}

/// The queue is full: the submission was not taken.
#[derive(Debug, thiserror::Error)]
#[error("the delivery queue is full ({0} messages); try again later")]
pub struct QueueFull(pub usize);

/// Settings of the delivery side.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub capacity: usize,
    pub concurrency: usize,
    pub retry: RetryPolicy,
}

struct Shared {
    statuses: Mutex<HashMap<String, Status>>,
    providers: Vec<Arc<dyn Provider>>,
    scheduler: Arc<dyn Scheduler>,
    retry: RetryPolicy,
    tx: mpsc::Sender<Arc<Message>>,
    capacity: usize,
}

impl Shared {
    fn statuses(&self) -> MutexGuard<'_, HashMap<String, Status>> {
        // Every update under this lock is a plain assignment: a panic elsewhere cannot
        // leave a status half-written, so a poisoned lock is still consistent.
        self.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Status)) {
        if let Some(status) = self.statuses().get_mut(id) {
            f(status);
        }
    }
}

/// The handle services use: submit, and read statuses. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

/// The delivery side; [`Workers::run`] drives it until shutdown.
pub struct Workers {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Arc<Message>>,
    concurrency: usize,
}

impl Queue {
    pub fn new(
        providers: Vec<Arc<dyn Provider>>,
        scheduler: Arc<dyn Scheduler>,
        settings: QueueSettings,
    ) -> (Queue, Workers) {
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let shared = Arc::new(Shared {
            statuses: Mutex::new(HashMap::new()),
            providers,
            scheduler,
            retry: settings.retry,
            tx,
            capacity: settings.capacity,
        });
        let workers = Workers {
            shared: shared.clone(),
            rx,
            concurrency: settings.concurrency.max(1),
        };
        (Queue { shared }, workers)
    }

    /// Takes a validated message for delivery, or answers [`QueueFull`] and takes nothing.
    pub fn submit(&self, message: Message) -> Result<(), QueueFull> {
        let message = Arc::new(message);
        let permit = self
            .shared
            .tx
            .try_reserve()
            .map_err(|_| QueueFull(self.shared.capacity))?;
        let status = Status {
            id: message.id.clone(),
            state: State::Queued,
            provider: None,
            provider_message_id: None,
            error: None,
            submitted_at: message.submitted_at,
            next_attempt_at: None,
            attempts: Vec::new(),
            possible_duplicate: false,
            had_ambiguous: false,
            rounds: 0,
        };
        self.shared.statuses().insert(message.id.clone(), status);
        permit.send(message);
        Ok(())
    }

    pub fn status(&self, id: &str) -> Option<Status> {
        self.shared.statuses().get(id).cloned()
    }

    /// The provider names, in configuration order.
    pub fn provider_names(&self) -> Vec<String> {
        self.shared
            .providers
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }
}

impl Workers {
    /// Delivers queued messages until `shutdown` resolves; then waits up to `grace` for
    /// the rounds in flight to finish.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) {
        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let mut in_flight = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = semaphore.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let message = tokio::select! {
                () = &mut shutdown => break,
                m = self.rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
            };
            let shared = self.shared.clone();
            let span = info_span!("deliver", message_id = %message.id);
            in_flight.spawn(
                async move {
                    deliver(&shared, message).await;
                    drop(permit);
                }
                .instrument(span),
            );
            // Reap finished rounds so the set does not grow.
            while in_flight.try_join_next().is_some() {}
        }

        let pending = self.rx.len();
        if tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            warn!(
                still_sending = in_flight.len(),
                "delivery rounds still running at the end of the grace period"
            );
        }
        if pending > 0 {
            warn!(
                pending,
                "stopping with queued messages not yet sent; the queue is in memory and they are lost"
            );
        }
    }
}

/// One delivery round for one message.
async fn deliver(shared: &Shared, message: Arc<Message>) {
    shared.update(&message.id, |s| {
        s.state = State::Sending;
        s.next_attempt_at = None;
        s.rounds += 1;
    });
    let order = shared.scheduler.plan(&message, shared.providers.len());
    let mut last_error = String::from("no provider is configured");

    for index in order {
        let provider = &shared.providers[index];
        let started_at = SystemTime::now();
        let clock = Instant::now();
        shared.update(&message.id, |s| s.possible_duplicate |= s.had_ambiguous);
        let outcome = provider.send(&message).await;
        let duration = clock.elapsed();
        shared.scheduler.observe(index, outcome.class(), duration);

        let attempt = Attempt {
            provider: provider.name().to_owned(),
            started_at,
            duration,
            outcome: outcome.class(),
            provider_message_id: match &outcome {
                Outcome::Accepted {
                    provider_message_id,
                } => provider_message_id.clone(),
                _ => String::new(),
            },
            detail: outcome.detail().to_owned(),
        };
        shared.update(&message.id, |s| s.attempts.push(attempt));

        match outcome {
            Outcome::Accepted {
                provider_message_id,
            } => {
                info!(provider = provider.name(), %provider_message_id, "sent");
                shared.update(&message.id, |s| {
                    s.state = State::Sent;
                    s.provider = Some(provider.name().to_owned());
                    s.provider_message_id = Some(provider_message_id);
                    s.error = None;
                });
                return;
            }
            Outcome::MessageRejected { detail } => {
                warn!(provider = provider.name(), %detail, "message rejected; not retrying");
                shared.update(&message.id, |s| {
                    s.state = State::Failed;
                    s.error = Some(detail);
                });
                return;
            }
            Outcome::ProviderRefused {
                detail,
                scope: RefusalScope::Provider,
            } => {
                error!(provider = provider.name(), %detail, "provider refuses to send: check its credentials and account");
                last_error = detail;
            }
            Outcome::ProviderRefused {
                detail,
                scope: RefusalScope::Message,
            } => {
                warn!(provider = provider.name(), %detail, "provider refused this message; trying the next");
                last_error = detail;
            }
            Outcome::Transient { detail, .. } => {
                warn!(provider = provider.name(), %detail, "transient failure; trying the next provider");
                last_error = detail;
            }
            Outcome::Ambiguous { detail } => {
                warn!(provider = provider.name(), %detail, "no answer after sending; a retry may duplicate");
                shared.update(&message.id, |s| s.had_ambiguous = true);
                last_error = detail;
            }
        }
    }
    defer(shared, message, last_error);
}

/// Every provider failed this round: retry later, or fail for good past the maximum age.
fn defer(shared: &Shared, message: Arc<Message>, last_error: String) {
    let rounds = shared.statuses().get(&message.id).map_or(1, |s| s.rounds);
    let delay = shared.retry.delay(rounds, fastrand::f64());
    let next = SystemTime::now() + delay;
    let age_at_next = next
        .duration_since(message.submitted_at)
        .unwrap_or_default();
    if age_at_next > shared.retry.max_age {
        warn!(rounds, error = %last_error, "giving up: past the maximum age");
        shared.update(&message.id, |s| {
            s.state = State::Failed;
            s.error = Some(format!(
                "not delivered after {rounds} round(s); last error: {last_error}"
            ));
        });
        return;
    }
    info!(rounds, delay_ms = delay.as_millis() as u64, error = %last_error, "deferred");
    shared.update(&message.id, |s| {
        s.state = State::Deferred;
        s.error = Some(last_error);
        s.next_attempt_at = Some(next);
    });
    let tx = shared.tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        // A closed channel means the server is stopping; the message stays deferred.
        let _ = tx.send(message).await;
    });
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
