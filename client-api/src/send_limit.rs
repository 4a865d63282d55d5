//! The webmail's own limits on one account's sending, before mta-server's tenant quotas:
//! messages per user per minute (a sliding window) and recipients per message. They keep
//! one account (a stolen password, a runaway script) from spending the tenant's quota
//! and the providers' reputation on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitmail_runtime::sync::lock;

use crate::error::ApiError;

const WINDOW: Duration = Duration::from_secs(60);

/// Sends per user within the last minute.
pub(crate) struct SendLimiter {
    per_minute: u32,
    max_recipients: usize,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SendLimiter {
    pub(crate) fn new(per_minute: u32, max_recipients: usize) -> Self {
        SendLimiter { per_minute, max_recipients, sent: Mutex::default() }
    }

    /// 400 when one message has more recipients (To, Cc and Bcc together) than allowed.
    pub(crate) fn check_recipients(&self, count: usize) -> Result<(), ApiError> {
        if count > self.max_recipients {
            return Err(ApiError::BadRequest(format!(
                "to: {count} recipients (to, cc and bcc together) are more than the {} a message may have",
                self.max_recipients
            )));
        }
        Ok(())
    }

    /// Counts one send of `user` now, or answers 429 (counting nothing) when the user has
    /// sent `per_minute` messages within the last minute.
    pub(crate) fn acquire(&self, user: &str) -> Result<(), ApiError> {
        self.acquire_at(user, Instant::now())
    }

    fn acquire_at(&self, user: &str, now: Instant) -> Result<(), ApiError> {
        let mut sent = lock(&self.sent);
        // Keep the map bounded: forget users whose window is empty.
        if sent.len() > 100_000 {
            sent.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let times = sent.entry(user.to_owned()).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= self.per_minute as usize {
            let wait = times.front().map_or(WINDOW, |t| WINDOW.saturating_sub(now.duration_since(*t)));
            return Err(ApiError::TooManyRequests(format!(
                "you have sent {} messages within a minute, the most allowed; try again in {} s",
                self.per_minute,
                wait.as_secs().max(1)
            )));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_over_the_rate_waits_for_the_window_and_others_do_not() {
        let l = SendLimiter::new(2, 3);
        let t0 = Instant::now();
        assert!(l.acquire_at("ada", t0).is_ok());
        assert!(l.acquire_at("ada", t0 + Duration::from_secs(1)).is_ok());
        assert!(matches!(l.acquire_at("ada", t0 + Duration::from_secs(2)), Err(ApiError::TooManyRequests(_))));
        assert!(l.acquire_at("bob", t0 + Duration::from_secs(2)).is_ok());
        assert!(l.acquire_at("ada", t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn recipients_are_capped() {
        let l = SendLimiter::new(2, 3);
        assert!(l.check_recipients(3).is_ok());
        assert!(matches!(l.check_recipients(4), Err(ApiError::BadRequest(m)) if m.contains("more than the 3")));
    }
}
