//! Per-provider limits: how many attempts may be in flight at once, how many may start
//! per second, and how large a message may be (limits come from `[providers.limits]`
//! and are always respected).
//!
//! A provider at its limit is skipped for this round like a provider with an open
//! circuit, so the next provider in the plan takes the message; when every provider
//! that could take it is only at its limit, the round waits for a slot instead of
//! deferring the message by minutes.
//!
//! The rate is a token bucket holding one second's worth of attempts (at least one). The
//! size limit is the smaller of the configured `max_message_bytes` and the provider's
//! documented limit, counted as sent (attachments base64-encoded). A round waiting on
//! limits waits at most 100 ms at a time, then looks again. A message over every
//! provider's size limit fails at once, the error naming each limit. Passing over a
//! provider at its limit records no attempt.

use std::sync::Mutex;
use std::time::Duration;

use bitmail_runtime::sync::lock;

/// Configured in each `[[providers]]` section; kept here under its old path.
pub use crate::config::ProviderLimits;

/// Why a provider cannot start an attempt right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtLimit {
    /// As many attempts are in flight as allowed.
    Busy,
    /// The rate allows the next attempt after this long.
    Rate(Duration),
}

struct Gate {
    max_in_flight: u32,
    in_flight: u32,
    /// Attempts per millisecond, and the bucket's size.
    rate: Option<(f64, f64)>,
    tokens: f64,
    refilled_ms: u64,
    max_bytes: usize,
}

/// The limits of every provider, by index.
pub struct Limiter {
    gates: Vec<Mutex<Gate>>,
    freed: tokio::sync::Notify,
}

impl Limiter {
    /// One entry per provider: its configured limits and its own documented size limit.
    pub fn new(limits: impl IntoIterator<Item = (ProviderLimits, Option<usize>)>) -> Self {
        let gates = limits
            .into_iter()
            .map(|(l, own_max)| {
                let burst = l.per_second.map_or(0.0, |r| r.max(1.0));
                Mutex::new(Gate {
                    max_in_flight: l.in_flight.unwrap_or(u32::MAX),
                    in_flight: 0,
                    rate: l.per_second.map(|r| (r / 1000.0, burst)),
                    tokens: burst,
                    refilled_ms: 0,
                    max_bytes: l.max_message_bytes.unwrap_or(usize::MAX).min(own_max.unwrap_or(usize::MAX)),
                })
            })
            .collect();
        Limiter { gates, freed: tokio::sync::Notify::new() }
    }

    fn gate(&self, i: usize) -> std::sync::MutexGuard<'_, Gate> {
        // Plain arithmetic under this lock.
        lock(&self.gates[i])
    }

    /// The largest message provider `i` takes.
    pub fn max_bytes(&self, i: usize) -> usize {
        self.gate(i).max_bytes
    }

    /// Takes a slot for one attempt at `now_ms`, or says what stands in the way. A
    /// taken slot must be given back with [`Limiter::finish`] or [`Limiter::cancel`].
    pub fn acquire(&self, i: usize, now_ms: u64) -> Result<(), AtLimit> {
        let mut g = self.gate(i);
        if g.in_flight >= g.max_in_flight {
            return Err(AtLimit::Busy);
        }
        if let Some((per_ms, burst)) = g.rate {
            let elapsed = now_ms.saturating_sub(g.refilled_ms) as f64;
            g.tokens = (g.tokens + elapsed * per_ms).min(burst);
            g.refilled_ms = now_ms;
            if g.tokens < 1.0 {
                let wait_ms = ((1.0 - g.tokens) / per_ms).ceil() as u64;
                return Err(AtLimit::Rate(Duration::from_millis(wait_ms.max(1))));
            }
            g.tokens -= 1.0;
        }
        g.in_flight += 1;
        Ok(())
    }

    /// The attempt is over.
    pub fn finish(&self, i: usize) {
        let mut g = self.gate(i);
        g.in_flight = g.in_flight.saturating_sub(1);
        drop(g);
        self.freed.notify_waiters();
    }

    /// The slot was taken but no attempt was made: give back the rate token too.
    pub fn cancel(&self, i: usize) {
        let mut g = self.gate(i);
        g.in_flight = g.in_flight.saturating_sub(1);
        if let Some((_, burst)) = g.rate {
            g.tokens = (g.tokens + 1.0).min(burst);
        }
        drop(g);
        self.freed.notify_waiters();
    }

    /// Waits until a slot may have freed: an attempt finished, or `at_most` passed.
    pub async fn wait(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.freed.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_capped_and_freed() {
        let l = Limiter::new([(ProviderLimits { in_flight: Some(2), ..Default::default() }, None)]);
        assert_eq!(l.acquire(0, 0), Ok(()));
        assert_eq!(l.acquire(0, 0), Ok(()));
        assert_eq!(l.acquire(0, 0), Err(AtLimit::Busy));
        l.finish(0);
        assert_eq!(l.acquire(0, 0), Ok(()));
    }

    #[test]
    fn the_rate_allows_a_bursts_worth_then_one_per_interval() {
        let l = Limiter::new([(ProviderLimits { per_second: Some(4.0), ..Default::default() }, None)]);
        let start = 1_000_000;
        for _ in 0..4 {
            assert_eq!(l.acquire(0, start), Ok(()));
            l.finish(0);
        }
        assert_eq!(l.acquire(0, start), Err(AtLimit::Rate(Duration::from_millis(250))));
        assert_eq!(l.acquire(0, start + 100), Err(AtLimit::Rate(Duration::from_millis(150))));
        assert_eq!(l.acquire(0, start + 250), Ok(()));
        // A cancelled slot gives its token back.
        l.cancel(0);
        assert_eq!(l.acquire(0, start + 250), Ok(()));
    }

    #[test]
    fn the_size_limit_is_the_smaller_of_config_and_the_providers_own() {
        let l = Limiter::new([
            (ProviderLimits { max_message_bytes: Some(1000), ..Default::default() }, Some(30_000_000)),
            (ProviderLimits::default(), Some(25_000_000)),
            (ProviderLimits::default(), None),
        ]);
        assert_eq!((l.max_bytes(0), l.max_bytes(1), l.max_bytes(2)), (1000, 25_000_000, usize::MAX));
    }
}
