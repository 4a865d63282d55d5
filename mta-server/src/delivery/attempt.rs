//! One attempt at one provider, as a value that owns what the attempt holds: a slot at
//! the provider's [`Limiter`](crate::limits::Limiter) and a claim on its
//! [`Health`](crate::health::Health) (the half-open probe, when the circuit is
//! half-open).
//!
//! [`Attempt::send`] calls the provider and learns from the answer: the slot is freed,
//! the scheduler and the health are told, a change of health is saved. An attempt
//! dropped before that (a round cancelled at shutdown, a panic, an error saving the
//! status) gives its slot and claim back in `Drop`, so no provider is left with a slot
//! taken for ever or stuck half-open with a probe that never ends.

use std::time::{Duration, Instant};

use super::Shared;
use crate::health::Unavailable;
use crate::limits::AtLimit;
use crate::message::Message;
use crate::provider::Outcome;

/// Why a provider cannot be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotNow {
    /// At its in-flight or rate limit: worth waiting for.
    AtLimit(AtLimit),
    /// Paused, open, or half-open with its probe under way.
    Unavailable(Unavailable),
}

pub(crate) struct Attempt<'a> {
    shared: &'a Shared,
    index: usize,
    phase: Phase,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Slot and claim held; the provider has not been called.
    Claimed,
    /// The provider is being called.
    Calling,
    /// The outcome was recorded: nothing is held any more.
    Recorded,
}

impl<'a> Attempt<'a> {
    /// Takes a limiter slot and a health claim for provider `index`, or says why not
    /// (holding neither).
    pub(crate) fn claim(shared: &'a Shared, index: usize, now: u64) -> Result<Self, NotNow> {
        shared.limiter.acquire(index, now).map_err(NotNow::AtLimit)?;
        if let Err(why) = shared.health.claim(index, now) {
            shared.limiter.cancel(index);
            return Err(NotNow::Unavailable(why));
        }
        Ok(Attempt { shared, index, phase: Phase::Claimed })
    }

    /// Calls the provider once, then records the outcome with the limiter, the
    /// scheduler and the health. Answers the outcome and how long the call took.
    pub(crate) async fn send(mut self, message: &Message) -> (Outcome, Duration) {
        let shared = self.shared;
        let index = self.index;
        self.phase = Phase::Calling;
        let clock = Instant::now();
        let outcome = shared.providers[index].send(message).await;
        let took = clock.elapsed();

        self.phase = Phase::Recorded;
        shared.limiter.finish(index);
        shared.scheduler.observe(index, outcome.class(), took);
        if let Some((name, record)) = shared.health.record(index, &outcome, took, shared.now_ms()) {
            shared.spool.save_health(&name, record).await;
        }
        (outcome, took)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let (limiter, health) = (&self.shared.limiter, &self.shared.health);
        match self.phase {
            Phase::Recorded => return,
            // The provider may have taken the request: the rate token stays spent.
            Phase::Calling => limiter.finish(self.index),
            Phase::Claimed => limiter.cancel(self.index),
        }
        // Nothing was learnt; a half-open probe is given back for the next round.
        health.release(self.index);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::delivery::{AmbiguousPolicy, RetryPolicy};
    use crate::health::{Health, HealthSettings};
    use crate::limits::{Limiter, ProviderLimits};
    use crate::message::Mailbox;
    use crate::provider::{Provider, RefusalScope};
    use crate::scheduler::RoundRobin;
    use crate::spool::{Spool, SpoolSettings};
    use bitmail_runtime::time::now_ms;

    /// Never answers, or answers a provider-wide refusal.
    struct Scripted {
        hang: bool,
    }

    #[async_trait::async_trait]
    impl Provider for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        async fn send(&self, _: &Message) -> Outcome {
            if self.hang {
                std::future::pending::<()>().await;
            }
            Outcome::ProviderRefused { detail: "bad key".into(), scope: RefusalScope::Provider }
        }
    }

    fn shared(hang: bool, name: &str) -> Shared {
        let path = std::env::temp_dir().join(format!("bitmail-attempt-{}-{name}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let spool = Spool::open(&path, SpoolSettings { max_bytes: u64::MAX, cache_bytes: 1 << 20 }).unwrap();
        let settings = HealthSettings {
            failure_threshold: 1,
            cool_down: Duration::from_secs(1),
            refused_cool_down: Duration::from_secs(1),
        };
        Shared {
            spool,
            providers: vec![Arc::new(Scripted { hang })],
            scheduler: Arc::new(RoundRobin::new()),
            health: Arc::new(Health::new(vec!["scripted".into()], settings)),
            limiter: Arc::new(Limiter::new([(
                ProviderLimits { in_flight: Some(1), per_second: Some(1.0), ..Default::default() },
                None,
            )])),
            retry: RetryPolicy {
                initial: Duration::from_secs(1),
                max_delay: Duration::from_secs(1),
                max_age: Duration::from_secs(60),
            },
            ambiguous: AmbiguousPolicy::FailOver,
            in_flight: Mutex::new(HashSet::new()),
            clock: crate::delivery::Clock::system(),
        }
    }

    fn message() -> Message {
        Message {
            id: "m".into(),
            from: Mailbox { name: None, email: "ada@example.org".into() },
            to: vec![Mailbox { name: None, email: "bob@example.net".into() }],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
            headers: vec![],
            attachments: vec![],
            tags: vec![],
            metadata: Default::default(),
            submitted_at: std::time::SystemTime::now(),
            raw: None,
            already_sent_to: Default::default(),
        }
    }

    /// Opens the circuit with a refusal, and lets the cool-down pass: the next claim is
    /// the half-open probe.
    async fn half_open(shared: &Shared, now: u64) {
        let attempt = Attempt::claim(shared, 0, now).unwrap();
        let (outcome, _) = attempt.send(&message()).await;
        assert_eq!(outcome.class(), crate::provider::OutcomeClass::ProviderRefused);
        assert_eq!(shared.health.snapshot(now)[0].circuit, crate::health::Circuit::Open);
    }

    #[tokio::test]
    async fn a_claim_dropped_before_the_call_gives_back_its_slot_its_token_and_the_probe() {
        let shared = shared(false, "claimed");
        half_open(&shared, now_ms()).await;
        let later = now_ms() + 5_000;
        let probe = Attempt::claim(&shared, 0, later).unwrap();
        assert_eq!(Attempt::claim(&shared, 0, later).err(), Some(NotNow::AtLimit(AtLimit::Busy)));
        drop(probe);
        // The slot, the rate token (1 a second) and the probe are all free again.
        let probe = Attempt::claim(&shared, 0, later).expect("slot and probe given back");
        drop(probe);
    }

    #[tokio::test]
    async fn an_attempt_cancelled_during_the_call_leaves_no_provider_stuck_half_open() {
        let shared = shared(true, "cancelled");
        let later = now_ms() + 5_000;
        shared.health.record(
            0,
            &Outcome::ProviderRefused { detail: "x".into(), scope: RefusalScope::Provider },
            Duration::ZERO,
            now_ms(),
        );
        let probe = Attempt::claim(&shared, 0, later).unwrap();
        let message = message();
        let call = tokio::time::timeout(Duration::from_millis(20), probe.send(&message)).await;
        assert!(call.is_err(), "the scripted provider never answers");
        // The call was cut short: the in-flight slot is free, the rate token spent (it may
        // have reached the provider), and the half-open probe can be tried again.
        assert!(matches!(Attempt::claim(&shared, 0, later), Err(NotNow::AtLimit(AtLimit::Rate(_)))));
        assert!(Attempt::claim(&shared, 0, later + 1_000).is_ok());
        assert_eq!(shared.health.snapshot(later)[0].in_flight, 0);
    }
}
