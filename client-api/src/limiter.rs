//! The sign-in limiter: failed sign-ins counted per (name, client address), per client
//! address, and per name, in this process.
//!
//! An attempt is reserved before the password is checked ([`LoginLimiter::reserve`]):
//! the reservation counts as a failure until the check succeeds, so parallel guesses
//! cannot all slip in between a check and its count. What each count does:
//! - per (name, address): after [`FREE_FAILURES`] failures, each further attempt waits
//!   twice as long as the last (1 s, 2 s, 4 s... at most the window), so a guesser
//!   slows down while the owner, from another address, is not locked out;
//! - per address: [`MAX_FAILURES_PER_ADDRESS`] failures in the window, then refused
//!   (one address guessing many names);
//! - per name: [`MAX_FAILURES_PER_NAME`] failures in the window from all addresses
//!   together, then refused: the bound on guessing one account from many addresses.
//!   It is far above what one stranger can reach, whose own pair backs off first.
//!
//! The per-address and per-name caps also hold across every edge together
//! ([`LoginLimiter::check_shared`], counts in the store: [`crate::shared_counts`]); the
//! pair's back-off and the sign-up count stay per edge.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::ApiError;
use crate::shared_counts::SharedCounts;
use bitmail_runtime::sync::lock;
use bitmail_runtime::time::now_ms;

/// Failures of one (name, address) pair before each attempt must wait.
pub(crate) const FREE_FAILURES: u32 = 5;
pub(crate) const MAX_FAILURES_PER_ADDRESS: u32 = 50;
pub(crate) const MAX_FAILURES_PER_NAME: u32 = 200;
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failures within a window that started at `since`, the last at `last`.
#[derive(Clone, Copy)]
struct Count {
    failures: u32,
    since: Instant,
    last: Instant,
}

#[derive(Default)]
struct Counts {
    pairs: HashMap<(String, IpAddr), Count>,
    addresses: HashMap<IpAddr, Count>,
    names: HashMap<String, Count>,
}

pub(crate) struct LoginLimiter {
    counts: Mutex<Counts>,
    /// Accounts made by first logins, per client address.
    sign_ups: Mutex<HashMap<IpAddr, Count>>,
    per_address: u32,
    per_name: u32,
    /// The counts every edge sees; `None` in unit tests of this file.
    shared: Option<SharedCounts>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_NAME, None)
    }
}

/// Accounts one client address may make by first login within [`WINDOW`].
pub(crate) const MAX_SIGN_UPS_PER_ADDRESS: u32 = 10;

/// A reserved attempt: counted as failed unless [`Attempt::succeeded`] (or dropped
/// without an answer, when the check itself could not be made).
pub(crate) struct Attempt {
    limiter: Arc<LoginLimiter>,
    name: String,
    address: IpAddr,
    settled: bool,
}

fn current<K: Hash + Eq>(map: &mut HashMap<K, Count>, key: &K, now: Instant) -> Option<Count> {
    match map.get(key) {
        Some(c) if now.duration_since(c.since) < WINDOW => Some(*c),
        Some(_) => {
            map.remove(key);
            None
        }
        None => None,
    }
}

fn add<K: Hash + Eq>(map: &mut HashMap<K, Count>, key: K, now: Instant) {
    // Keep the map bounded: forget windows that are over.
    if map.len() > 100_000 {
        map.retain(|_, c| now.duration_since(c.since) < WINDOW);
    }
    let c = map.entry(key).or_insert(Count { failures: 0, since: now, last: now });
    c.failures += 1;
    c.last = now;
}

fn take<K: Hash + Eq>(map: &mut HashMap<K, Count>, key: &K) {
    if let Some(c) = map.get_mut(key) {
        c.failures = c.failures.saturating_sub(1);
    }
}

fn too_many(why: &str, wait: Duration) -> ApiError {
    ApiError::TooManyRequests(format!("{why}; try again in {} s", wait.as_secs().max(1)))
}

impl LoginLimiter {
    /// Failures allowed per address and per name in a window, here and (with `shared`)
    /// on every edge together.
    pub(crate) fn new(per_address: u32, per_name: u32, shared: Option<SharedCounts>) -> Self {
        Self { counts: Mutex::default(), sign_ups: Mutex::default(), per_address, per_name, shared }
    }

    /// Refuses `name` from `address` when every edge together has seen the cap of
    /// failures for either in the current window. Called after [`Self::reserve`].
    pub(crate) async fn check_shared(&self, name: &str, address: IpAddr) -> Result<(), ApiError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let now = now_ms();
        let (by_address, ends) = shared.failures("address", &address.to_string(), now).await?;
        let wait = |ends: u64| Duration::from_millis(ends.saturating_sub(now));
        if by_address >= self.per_address {
            return Err(too_many("too many failed sign-ins from this address", wait(ends)));
        }
        let (by_name, ends) = shared.failures("name", name, now).await?;
        if by_name >= self.per_name {
            return Err(too_many("too many failed sign-ins for this name", wait(ends)));
        }
        Ok(())
    }

    /// Counts a failed sign-in where every edge sees it. A count that cannot be written
    /// is logged: the local counts still hold.
    pub(crate) async fn count_shared(&self, name: &str, address: IpAddr) {
        let Some(shared) = &self.shared else { return };
        let now = now_ms();
        for (what, subject) in [("address", address.to_string()), ("name", name.to_owned())] {
            if let Err(e) = shared.add(what, &subject, now).await {
                tracing::warn!(what, error = %e, "could not count a failed sign-in for every edge");
            }
        }
    }

    /// Reserves one attempt for `name` from `address`, or says how long to wait.
    pub(crate) fn reserve(self: &Arc<Self>, name: &str, address: IpAddr) -> Result<Attempt, ApiError> {
        self.reserve_at(name, address, Instant::now())
    }

    fn reserve_at(self: &Arc<Self>, name: &str, address: IpAddr, now: Instant) -> Result<Attempt, ApiError> {
        let mut counts = lock(&self.counts);
        let pair = (name.to_owned(), address);
        if let Some(c) = current(&mut counts.pairs, &pair, now)
            && c.failures >= FREE_FAILURES
        {
            let delay = Duration::from_secs(1 << (c.failures - FREE_FAILURES).min(10)).min(WINDOW);
            let ready = c.last + delay;
            if now < ready {
                return Err(too_many("too many failed sign-ins for this name from here", ready - now));
            }
        }
        if let Some(c) = current(&mut counts.addresses, &address, now)
            && c.failures >= self.per_address
        {
            return Err(too_many("too many failed sign-ins from this address", c.since + WINDOW - now));
        }
        if let Some(c) = current(&mut counts.names, &pair.0, now)
            && c.failures >= self.per_name
        {
            return Err(too_many("too many failed sign-ins for this name", c.since + WINDOW - now));
        }
        add(&mut counts.pairs, pair, now);
        add(&mut counts.addresses, address, now);
        add(&mut counts.names, name.to_owned(), now);
        Ok(Attempt { limiter: self.clone(), name: name.to_owned(), address, settled: false })
    }

    /// Counts one sign-up from `address`, or refuses it past [`MAX_SIGN_UPS_PER_ADDRESS`].
    pub(crate) fn sign_up(&self, address: IpAddr) -> Result<(), ApiError> {
        let now = Instant::now();
        let mut sign_ups = lock(&self.sign_ups);
        if let Some(c) = current(&mut sign_ups, &address, now)
            && c.failures >= MAX_SIGN_UPS_PER_ADDRESS
        {
            return Err(too_many("too many new accounts from this address", c.since + WINDOW - now));
        }
        add(&mut sign_ups, address, now);
        Ok(())
    }

    fn give_back(&self, name: &str, address: IpAddr, forget_pair: bool) {
        let mut counts = lock(&self.counts);
        let pair = (name.to_owned(), address);
        if forget_pair {
            counts.pairs.remove(&pair);
        } else {
            take(&mut counts.pairs, &pair);
        }
        take(&mut counts.addresses, &address);
        take(&mut counts.names, &pair.0);
    }
}

impl Attempt {
    /// The password was right: this attempt is not a failure, and the pair starts over.
    pub(crate) fn succeeded(mut self) {
        self.settled = true;
        self.limiter.give_back(&self.name, self.address, true);
    }

    /// The password was wrong: the reservation stays counted, and the pair's wait runs
    /// from now (a slow check must not use it up).
    pub(crate) fn failed(self) {
        self.failed_at(Instant::now());
    }

    fn failed_at(mut self, now: Instant) {
        self.settled = true;
        let mut counts = lock(&self.limiter.counts);
        if let Some(c) = counts.pairs.get_mut(&(std::mem::take(&mut self.name), self.address)) {
            c.last = c.last.max(now);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // Neither answer (the store could not be read): not the caller's failure.
        if !self.settled {
            self.limiter.give_back(&self.name, self.address, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_backs_off_and_the_owner_elsewhere_is_not_locked_out() {
        let l = Arc::new(LoginLimiter::default());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            l.reserve_at("ada", here, t0).unwrap().failed_at(t0);
        }
        assert!(matches!(l.reserve_at("ada", here, t0), Err(ApiError::TooManyRequests(_))));
        // One second later the pair may try once more, then waits two.
        l.reserve_at("ada", here, t0 + Duration::from_secs(1)).unwrap().failed_at(t0 + Duration::from_secs(1));
        assert!(l.reserve_at("ada", here, t0 + Duration::from_millis(2500)).is_err());
        assert!(l.reserve_at("ada", here, t0 + Duration::from_secs(3)).is_ok());
        // ada herself, from elsewhere, signs in at once.
        l.reserve_at("ada", there, t0).unwrap().succeeded();
    }

    #[test]
    fn parallel_guesses_are_counted_before_they_are_checked() {
        let l = Arc::new(LoginLimiter::default());
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        // Reserved together, none answered yet: the sixth is already refused.
        let held: Vec<Attempt> = (0..FREE_FAILURES).map(|_| l.reserve_at("ada", here, t0).unwrap()).collect();
        assert!(l.reserve_at("ada", here, t0).is_err());
        // Attempts that could not be checked (store down) give their place back.
        drop(held);
        assert!(l.reserve_at("ada", here, t0).is_ok());
    }

    #[test]
    fn an_address_guessing_many_names_and_many_addresses_guessing_one_are_bounded() {
        let l = Arc::new(LoginLimiter::default());
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            l.reserve_at(&format!("name{i}"), there, t0).unwrap().failed_at(t0);
        }
        assert!(l.reserve_at("carol", there, t0).is_err());
        assert!(l.reserve_at("carol", "127.0.0.1".parse().unwrap(), t0).is_ok());
        for i in 0..MAX_FAILURES_PER_NAME {
            let address = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            l.reserve_at("dave", address, t0).unwrap().failed_at(t0);
        }
        assert!(l.reserve_at("dave", "10.9.9.9".parse().unwrap(), t0).is_err());
        assert!(l.reserve_at("dave", "10.9.9.9".parse().unwrap(), t0 + WINDOW).is_ok(), "the window ends");
    }
}
