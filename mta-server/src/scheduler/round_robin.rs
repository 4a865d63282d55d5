//! `round-robin`: the first choice rotates over the providers; the others follow in
//! order as fail-over.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Scheduler;
use crate::message::Message;
use crate::provider::OutcomeClass;

#[derive(Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for RoundRobin {
    fn plan(&self, _message: &Message, providers: usize) -> Vec<usize> {
        if providers == 0 {
            return Vec::new();
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed) % providers;
        (0..providers).map(|i| (first + i) % providers).collect()
    }

    fn observe(&self, _provider: usize, _outcome: OutcomeClass, _latency: Duration) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tests::message;

    #[test]
    fn first_choice_rotates_and_every_provider_follows() {
        let rr = RoundRobin::new();
        let m = message();
        assert_eq!(rr.plan(&m, 3), vec![0, 1, 2]);
        assert_eq!(rr.plan(&m, 3), vec![1, 2, 0]);
        assert_eq!(rr.plan(&m, 3), vec![2, 0, 1]);
        assert_eq!(rr.plan(&m, 3), vec![0, 1, 2]);
        assert!(rr.plan(&m, 0).is_empty());
    }
}
