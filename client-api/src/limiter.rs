//! The sign-in limiter: failed sign-ins counted per name and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ApiError;
use bitmail_runtime::sync::lock;

/// Failed sign-ins per name and per client address: after the limit within `WINDOW`,
/// that name (or address) is refused until the window ends, which bounds password
/// guessing against one account and from one place.
#[derive(Default)]
pub(crate) struct LoginLimiter {
    names: Mutex<HashMap<String, (u32, Instant)>>,
    addresses: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

pub(crate) const MAX_FAILURES_PER_NAME: u32 = 10;
pub(crate) const MAX_FAILURES_PER_ADDRESS: u32 = 50;
const WINDOW: Duration = Duration::from_secs(15 * 60);

fn over<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (u32, Instant)>>, key: &K, max: u32) -> bool {
    let mut map = lock(map);
    match map.get(key) {
        Some((n, since)) if since.elapsed() < WINDOW => *n >= max,
        Some(_) => {
            map.remove(key);
            false
        }
        None => false,
    }
}

fn count<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, (u32, Instant)>>, key: K) {
    let mut map = lock(map);
    // Keep the map bounded: forget windows that are over.
    if map.len() > 100_000 {
        map.retain(|_, (_, since)| since.elapsed() < WINDOW);
    }
    map.entry(key).or_insert((0, Instant::now())).0 += 1;
}

impl LoginLimiter {
    pub(crate) fn check(&self, name: &str, address: IpAddr) -> Result<(), ApiError> {
        if over(&self.names, &name.to_owned(), MAX_FAILURES_PER_NAME) {
            return Err(ApiError::TooManyRequests("too many failed sign-ins for this name; try again later".into()));
        }
        if over(&self.addresses, &address, MAX_FAILURES_PER_ADDRESS) {
            return Err(ApiError::TooManyRequests(
                "too many failed sign-ins from this address; try again later".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn failed(&self, name: &str, address: IpAddr) {
        count(&self.names, name.to_owned());
        count(&self.addresses, address);
    }

    pub(crate) fn succeeded(&self, name: &str) {
        lock(&self.names).remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_blocks_a_name_and_an_address() {
        let l = LoginLimiter::default();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_NAME {
            assert!(l.check("ada", here).is_ok());
            l.failed("ada", here);
        }
        assert!(matches!(l.check("ada", there), Err(ApiError::TooManyRequests(_))));
        assert!(l.check("bob", here).is_ok());
        l.succeeded("ada");
        assert!(l.check("ada", here).is_ok());
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            l.failed(&format!("name{i}"), there);
        }
        assert!(matches!(l.check("carol", there), Err(ApiError::TooManyRequests(_))));
        assert!(l.check("carol", here).is_ok());
    }
}
