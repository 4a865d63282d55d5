//! `adaptive`: shares follow live success and latency, so a slow or failing provider
//! gets less traffic on its own, and regains it when it recovers.
//!
//! Per provider it keeps exponentially weighted moving averages of success (1 for an
//! accepted or message-rejected answer, 0 for a transient, refused or ambiguous one) and
//! of latency. A provider's score is `success² / (latency_ms + 50)`; the first choice
//! is drawn in proportion to the scores (never below a 2 % floor, so every provider keeps
//! being measured), the others follow by decreasing score.

use std::sync::Mutex;
use std::time::Duration;

use bitmail_runtime::sync::lock;

use super::{Scheduler, draw, rest_by};
use crate::message::Message;
use crate::provider::OutcomeClass;

/// How much one new observation moves an average.
const ALPHA: f64 = 0.2;
/// The smallest share of first choices any provider keeps.
const FLOOR: f64 = 0.02;

#[derive(Clone, Copy)]
struct Ewma {
    success: f64,
    latency_ms: f64,
}

pub struct Adaptive {
    stats: Mutex<Vec<Ewma>>,
}

impl Adaptive {
    pub fn new(providers: usize) -> Self {
        // Start optimistic and equal: everyone is tried and measured.
        Self { stats: Mutex::new(vec![Ewma { success: 1.0, latency_ms: 100.0 }; providers]) }
    }

    fn scores(&self, providers: usize) -> Vec<f64> {
        let stats = lock(&self.stats);
        let raw: Vec<f64> = (0..providers)
            .map(|i| stats.get(i).map_or(0.0, |s| s.success * s.success / (s.latency_ms + 50.0)))
            .collect();
        let total: f64 = raw.iter().sum();
        if total <= 0.0 {
            return vec![1.0; providers];
        }
        raw.iter().map(|r| (r / total).max(FLOOR)).collect()
    }
}

impl Scheduler for Adaptive {
    fn plan(&self, _message: &Message, providers: usize) -> Vec<usize> {
        let scores = self.scores(providers);
        let first = draw(&scores, fastrand::f64());
        rest_by(first, providers, |i| scores[i])
    }

    fn observe(&self, provider: usize, outcome: OutcomeClass, latency: Duration) {
        let ok = matches!(outcome, OutcomeClass::Accepted | OutcomeClass::MessageRejected);
        let mut stats = lock(&self.stats);
        if let Some(s) = stats.get_mut(provider) {
            s.success += ALPHA * (f64::from(u8::from(ok)) - s.success);
            s.latency_ms += ALPHA * (latency.as_secs_f64() * 1000.0 - s.latency_ms);
        }
    }
}
