//! `priority`: always the configured order; the first provider is the primary, the
//! others are backups in turn.

use std::time::Duration;

use super::Scheduler;
use crate::message::Message;
use crate::provider::OutcomeClass;

#[derive(Default)]
pub struct Priority;

impl Scheduler for Priority {
    fn plan(&self, _message: &Message, providers: usize) -> Vec<usize> {
        (0..providers).collect()
    }

    fn observe(&self, _provider: usize, _outcome: OutcomeClass, _latency: Duration) {}
}
