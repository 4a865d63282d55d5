//! Waiting for a condition instead of sleeping a fixed time.
//!
//! A test that sleeps and then asserts is slow when the system is fast and flaky when
//! it is slow. [`eventually`] looks again and again until the condition holds, answers
//! the value it saw, and at the deadline fails saying what it waited for and what it
//! last saw.
//!
//! The deadline is measured on the wall clock (`std::time::Instant`), not tokio's, so
//! it means the same in a test that pauses tokio's time: there a paused clock jumps
//! ahead whenever the runtime idles, and a deadline on it would pass at once.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long to wait between looks: short, so a test ends soon after its condition holds.
const POLL: Duration = Duration::from_millis(10);

/// Observes with `observe` until `done` holds for what it saw, and answers that; panics
/// after `within` with `what` (the condition, in words) and the last value observed.
///
/// ```text
/// let status = eventually(Duration::from_secs(10), "deferred", || get(&id), |s| s.state() == Deferred).await;
/// ```
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut observe: F, done: impl Fn(&T) -> bool) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + within;
    loop {
        let seen = observe().await;
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "not {what} after {within:?}; last observed: {seen:#?}");
        tokio::time::sleep(POLL).await;
    }
}
