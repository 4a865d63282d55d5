//! Connection caps and failed `AUTH` per client address, kept in memory on this node.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitmail_runtime::sync::lock;

/// Open sessions: at most `max_total` on this node, `max_per_client` from one address.
pub(crate) struct Gate {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    max_total: usize,
    max_per_client: usize,
}

/// Why a connection was refused at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    TooManyFromClient,
}

/// One open session; dropping it frees its place.
pub(crate) struct Pass {
    gate: Arc<Gate>,
    client: IpAddr,
}

impl Gate {
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Self {
        Self { open: Mutex::new((0, HashMap::new())), max_total, max_per_client }
    }

    pub(crate) fn enter(self: &Arc<Self>, client: IpAddr) -> Result<Pass, Refusal> {
        let mut open = lock(&self.open);
        if open.0 >= self.max_total {
            return Err(Refusal::Full);
        }
        let mine = open.1.entry(client).or_default();
        if *mine >= self.max_per_client {
            return Err(Refusal::TooManyFromClient);
        }
        *mine += 1;
        open.0 += 1;
        Ok(Pass { gate: self.clone(), client })
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut open = lock(&self.gate.open);
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.client);
            }
        }
    }
}

/// Refused `AUTH` attempts per client address within a sliding window: past `max`, the
/// address may not try again until the oldest failure leaves the window.
pub(crate) struct AuthFailures {
    seen: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    max: u32,
    window: Duration,
}

impl AuthFailures {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self { seen: Mutex::new(HashMap::new()), max, window }
    }

    /// Whether `client` has used up its attempts.
    pub(crate) fn blocked(&self, client: IpAddr, now: Instant) -> bool {
        let mut seen = lock(&self.seen);
        let Some(times) = seen.get_mut(&client) else { return false };
        while times.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            times.pop_front();
        }
        if times.is_empty() {
            seen.remove(&client);
            return false;
        }
        times.len() >= self.max as usize
    }

    pub(crate) fn failed(&self, client: IpAddr, now: Instant) {
        let mut seen = lock(&self.seen);
        // A bound on memory under a spray of addresses: forget everyone at once rather
        // than grow without end (each address then starts again from zero).
        if seen.len() > 100_000 {
            seen.clear();
        }
        let times = seen.entry(client).or_default();
        times.push_back(now);
        while times.len() > self.max as usize {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_frees_its_place_and_each_address_has_its_own_cap() {
        let gate = Arc::new(Gate::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let one = gate.enter(a).unwrap();
        let _two = gate.enter(a).unwrap();
        assert_eq!(gate.enter(a).err(), Some(Refusal::TooManyFromClient));
        let _three = gate.enter(b).unwrap();
        assert_eq!(gate.enter(b).err(), Some(Refusal::Full));
        drop(one);
        assert!(gate.enter(a).is_ok());
    }

    #[test]
    fn failures_block_an_address_until_they_leave_the_window() {
        let failures = AuthFailures::new(2, Duration::from_secs(60));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        failures.failed(a, t0);
        assert!(!failures.blocked(a, t0));
        failures.failed(a, t0 + Duration::from_secs(1));
        assert!(failures.blocked(a, t0 + Duration::from_secs(2)));
        assert!(!failures.blocked("10.0.0.9".parse().unwrap(), t0));
        assert!(!failures.blocked(a, t0 + Duration::from_secs(61)), "the first failure left the window");
    }
}
