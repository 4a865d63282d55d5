//! `weighted`: operator-set shares. The first choice is drawn with probability
//! proportional to each provider's weight (70/20/10 gives about 70 % of first attempts
//! to the first); the others follow by decreasing weight as fail-over. A weight of 0
//! makes a provider a backup only.

use std::time::Duration;

use super::{Scheduler, draw, rest_by};
use crate::message::Message;
use crate::provider::OutcomeClass;

pub struct Weighted {
    weights: Vec<f64>,
}

impl Weighted {
    /// One weight per provider, in configuration order.
    pub fn new(weights: Vec<u32>) -> Self {
        Self { weights: weights.into_iter().map(f64::from).collect() }
    }
}

impl Scheduler for Weighted {
    fn plan(&self, _message: &Message, providers: usize) -> Vec<usize> {
        let weights = &self.weights[..providers.min(self.weights.len())];
        let first = draw(weights, fastrand::f64());
        rest_by(first, providers, |i| weights.get(i).copied().unwrap_or(0.0))
    }

    fn observe(&self, _provider: usize, _outcome: OutcomeClass, _latency: Duration) {}
}
