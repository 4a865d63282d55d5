//! Delivery: taking due messages from the spool and handing them to providers.
//!
//! - this file: the dispatcher. It reads the spool's schedule for messages that are
//!   due, at most as many as there are free workers (`concurrency`), and runs one
//!   delivery round per message;
//! - `round`: one round: order the providers, try each, act on the class of the
//!   outcome, and record sent, failed or deferred;
//! - `attempt`: one attempt at one provider, a value owning the provider's limiter
//!   slot and health claim, given back when it is dropped;
//! - [`Clock`] (`clock.rs`): the time the dispatcher and rounds read, the system clock
//!   or, in tests, tokio's.
//!
//! The message stays on the schedule until its round has recorded an outcome, so a
//! restart resumes everything that was queued, deferred or being sent.
//!
//! While no provider can be tried at all (none configured, all paused, or all open with
//! no probe possible), the dispatcher starts no rounds: the backlog stays due on disk,
//! untouched, until a circuit half-opens, a probe ends or an operator resumes a provider.
//! (A round that finds every provider unavailable anyway, a race, counts no round and is
//! due again when the first circuit half-opens, spread over a second.) While every
//! provider is paused or open, gRPC health reports `bitmail.v1.Mta.delivery` NOT_SERVING
//! and `ListProviders` degraded, while `bitmail.v1.Mta` stays SERVING: mail is still
//! accepted into the spool.

mod attempt;
mod clock;
mod round;

pub use clock::Clock;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::{Instrument, error, info_span, warn};

use crate::config::{DeliveryConfig, RetryConfig};
use crate::health::Health;
use crate::limits::Limiter;
use crate::provider::Provider;
use crate::provider::metered::Metered;
use crate::scheduler::Scheduler;
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

impl From<&RetryConfig> for RetryPolicy {
    fn from(c: &RetryConfig) -> Self {
        RetryPolicy {
            initial: Duration::from_secs(c.initial_secs),
            max_delay: Duration::from_secs(c.max_delay_secs),
            max_age: Duration::from_secs(c.max_age_secs),
        }
    }
}

/// Configured as `[delivery] ambiguous`; kept here under its old path.
pub use crate::config::AmbiguousPolicy;

#[derive(Debug, Clone, Copy)]
pub struct DeliverySettings {
    /// Delivery rounds running at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub ambiguous: AmbiguousPolicy,
}

impl DeliverySettings {
    /// From the `[delivery]` and `[retry]` sections.
    pub fn from_config(delivery: &DeliveryConfig, retry: &RetryConfig) -> Self {
        DeliverySettings { concurrency: delivery.concurrency, retry: retry.into(), ambiguous: delivery.ambiguous }
    }
}

/// What delivery rounds share.
struct Shared {
    spool: Spool,
    /// Each counted and timed ([`Metered`]).
    providers: Vec<Arc<dyn Provider>>,
    scheduler: Arc<dyn Scheduler>,
    health: Arc<Health>,
    limiter: Arc<Limiter>,
    retry: RetryPolicy,
    ambiguous: AmbiguousPolicy,
    /// The messages whose round is running.
    in_flight: Mutex<HashSet<String>>,
    clock: Clock,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
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
            providers: providers.list.into_iter().map(|p| Metered::wrap(p, metrics.clone())).collect(),
            scheduler: providers.scheduler,
            health: providers.health,
            limiter: providers.limiter,
            retry: settings.retry,
            ambiguous: settings.ambiguous,
            in_flight: Mutex::new(HashSet::new()),
            clock: Clock::system(),
        });
        Delivery { shared, wake, concurrency: settings.concurrency.max(1) }
    }

    /// Reads the time from `clock` instead of the system clock (tests: [`Clock::tokio`]).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        Arc::get_mut(&mut self.shared).expect("not running yet").clock = clock;
        self
    }

    /// Delivers due messages until `shutdown` resolves; then waits up to `grace` for
    /// the rounds in flight. A round cut short is resumed by the next start.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>, grace: Duration) {
        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let mut rounds = JoinSet::new();
        let mut pause = Pause::default();
        tokio::pin!(shutdown);
        loop {
            while let Some(ended) = rounds.try_join_next() {
                pause.note(ended.unwrap_or(true));
            }
            if let Some(until) = pause.until {
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep_until(until) => {}
                }
                pause.until = None;
            }
            let (ids, wait) = self.due(semaphore.available_permits()).await;
            let idle = ids.is_empty();
            for id in ids {
                let Ok(permit) = semaphore.clone().try_acquire_owned() else { break };
                let running = Running::start(self.shared.clone(), id);
                let span = info_span!("deliver", message_id = %running.id);
                rounds.spawn(
                    async move {
                        let recorded = round::deliver(&running.shared, &running.id).await;
                        if let Err(e) = &recorded {
                            error!(error = %e, "delivery round failed to record its outcome; it will be retried");
                        }
                        drop(permit);
                        recorded.is_ok()
                    }
                    .instrument(span),
                );
            }
            if !idle && semaphore.available_permits() > 0 {
                continue;
            }
            // Sleep until something is due, a message arrives, a worker frees up, or
            // shutdown.
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                Some(ended) = rounds.join_next(), if !rounds.is_empty() => pause.note(ended.unwrap_or(true)),
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

    /// Up to `free` due messages whose round is not running, and how long to wait
    /// before looking again when there are none: until the next is due, never more than
    /// a second (so that a clock change cannot strand work).
    async fn due(&self, free: usize) -> (Vec<String>, Duration) {
        let now = self.shared.now_ms();
        let until = |at: Option<u64>| {
            at.map_or(Duration::from_secs(1), |at| {
                Duration::from_millis(at.saturating_sub(now)).min(Duration::from_secs(1))
            })
        };
        // With no provider to try, leave the backlog on disk rather than run rounds
        // that can only defer it again; wait for a circuit to half-open, a probe to
        // end, or an operator. While a probe is under way the reopening time is already
        // past: poll gently rather than spin.
        if !self.shared.health.any_claimable(now) {
            return (Vec::new(), until(self.shared.health.next_reopening()).max(Duration::from_millis(100)));
        }
        if free == 0 {
            return (Vec::new(), Duration::from_secs(1));
        }
        let shared = self.shared.clone();
        let found = tokio::task::spawn_blocking(move || {
            let in_flight = lock(&shared.in_flight).clone();
            shared.spool.due_blocking(now, free, |id| in_flight.contains(id))
        })
        .await
        .unwrap_or_else(|e| Err(SpoolError::Storage(e.to_string())));
        match found {
            Ok((ids, next_due)) => (ids, until(next_due)),
            Err(e) => {
                error!(error = %e, "cannot read the spool's schedule");
                (Vec::new(), Duration::from_secs(1))
            }
        }
    }
}

/// After a round could not record its outcome (the spool failing: disk full, an I/O
/// error), the message is still due: starting it again at once would spin on the same
/// messages. The dispatcher waits 100 ms before starting more rounds, doubling with each
/// such round in a row up to 10 s, and not at all after a round that recorded.
#[derive(Debug, Default)]
struct Pause {
    failures: u32,
    until: Option<tokio::time::Instant>,
}

impl Pause {
    const FIRST: Duration = Duration::from_millis(100);
    const MOST: Duration = Duration::from_secs(10);

    /// Takes note of a round that ended; `recorded` is false when it could not record.
    fn note(&mut self, recorded: bool) {
        if recorded {
            self.failures = 0;
            return;
        }
        if self.until.is_some() {
            // The other rounds of the same moment: one pause for them all.
            return;
        }
        let wait = Self::FIRST.saturating_mul(1 << self.failures.min(10)).min(Self::MOST);
        self.failures = self.failures.saturating_add(1);
        self.until = Some(tokio::time::Instant::now() + wait);
    }
}

/// A message whose round is running: the dispatcher leaves it alone until this is
/// dropped, however the round ends (a panic included).
struct Running {
    shared: Arc<Shared>,
    id: String,
}

impl Running {
    fn start(shared: Arc<Shared>, id: String) -> Self {
        lock(&shared.in_flight).insert(id.clone());
        Running { shared, id }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.shared.in_flight).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_that_could_not_record_pauses_the_dispatcher_doubling_up_to_ten_seconds() {
        let mut pause = Pause::default();
        let waits: Vec<Duration> = (0..10)
            .map(|_| {
                let before = tokio::time::Instant::now();
                pause.note(false);
                let wait = pause.until.unwrap() - before;
                pause.until = None;
                wait
            })
            .collect();
        let ms: Vec<u128> = waits.iter().map(|w| (w.as_millis() / 100) * 100).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000]);
        pause.note(true);
        assert_eq!(pause.failures, 0);
        pause.note(false);
        assert!(pause.until.unwrap() - tokio::time::Instant::now() <= Duration::from_millis(100));
    }

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
