//! Subscriptions per client address, in this process: the hosted form is open to
//! anyone, so one address may post it [`MAX_PER_ADDRESS`] times in [`WINDOW`], then is
//! answered 429 with when to retry. As the sign-up count in `limiter.rs`: a fixed window
//! per address that starts with its first post, forgotten once over, the map bounded.
//! IPv6 addresses count per /64 (what one host is usually given), so a client cannot
//! step around the limit by changing its interface id. mta-server limits confirmation
//! mails per subscribed address besides (one per address and list every 10 minutes).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitmail_runtime::sync::lock;

pub(crate) const MAX_PER_ADDRESS: u32 = 10;
pub(crate) const WINDOW: Duration = Duration::from_secs(10 * 60);
/// Addresses remembered before windows that are over are dropped.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy)]
struct Window {
    posts: u32,
    since: Instant,
}

pub(crate) struct SubscribeLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
    max: u32,
    window: Duration,
}

impl Default for SubscribeLimiter {
    fn default() -> Self {
        Self::new(MAX_PER_ADDRESS, WINDOW)
    }
}

/// The address subscriptions are counted under: IPv4 as it is, IPv6 by its /64 (an
/// IPv4-mapped one as its IPv4).
fn subject(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

impl SubscribeLimiter {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        Self { windows: Mutex::default(), max, window }
    }

    /// Counts one post from `address`, or answers how long until it may post again.
    pub(crate) fn check(&self, address: IpAddr) -> Result<(), Duration> {
        self.check_at(address, Instant::now())
    }

    fn check_at(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = subject(address);
        let mut windows = lock(&self.windows);
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now.duration_since(w.since) < self.window);
        }
        let w = windows.entry(key).or_insert(Window { posts: 0, since: now });
        if now.duration_since(w.since) >= self.window {
            *w = Window { posts: 0, since: now };
        }
        if w.posts >= self.max {
            return Err((w.since + self.window).saturating_duration_since(now).max(Duration::from_secs(1)));
        }
        w.posts += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_posts_per_address_in_ten_minutes() {
        let l = SubscribeLimiter::default();
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..MAX_PER_ADDRESS {
            l.check_at(here, t0).unwrap();
        }
        let wait = l.check_at(here, t0 + Duration::from_secs(60)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(9 * 60), "until the window that began at the first post ends");
        // Another address is not held back; the window ends and the address starts over.
        l.check_at("192.0.2.2".parse().unwrap(), t0).unwrap();
        l.check_at(here, t0 + WINDOW).unwrap();
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = SubscribeLimiter::new(2, WINDOW);
        let t0 = Instant::now();
        l.check_at("2001:db8:1:2::1".parse().unwrap(), t0).unwrap();
        l.check_at("2001:db8:1:2:ffff::9".parse().unwrap(), t0).unwrap();
        assert!(l.check_at("2001:db8:1:2:abcd::1".parse().unwrap(), t0).is_err(), "the same /64");
        l.check_at("2001:db8:1:3::1".parse().unwrap(), t0).unwrap();
        l.check_at("198.51.100.7".parse().unwrap(), t0).unwrap();
        l.check_at("::ffff:198.51.100.7".parse().unwrap(), t0).unwrap();
        assert!(l.check_at("198.51.100.7".parse().unwrap(), t0).is_err());
    }
}
