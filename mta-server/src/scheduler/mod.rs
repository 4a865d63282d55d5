//! The order in which providers are tried for one message.

mod round_robin;

use std::time::Duration;

pub use round_robin::RoundRobin;

use crate::message::Message;
use crate::provider::OutcomeClass;

/// Chooses, per message, the order in which providers are tried, and learns from every
/// outcome. Held as `Arc<dyn Scheduler>` and called concurrently by delivery workers.
///
/// `plan` is called once per delivery round and must be cheap (no I/O, no awaiting): it
/// returns indices into the provider list, each at most once; the first is tried first,
/// the others follow as fail-over. Leaving an index out means "do not try it for this
/// message". `observe` is told the outcome and latency of every attempt.
pub trait Scheduler: Send + Sync + 'static {
    fn plan(&self, message: &Message, providers: usize) -> Vec<usize>;

    fn observe(&self, provider: usize, outcome: OutcomeClass, latency: Duration);
}
