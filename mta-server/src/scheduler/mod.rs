//! The order in which providers are tried for one message: the [`Scheduler`] trait, one
//! strategy per file ([`RoundRobin`], the default; [`Priority`]; [`Weighted`];
//! [`Adaptive`]), and [`from_config`], the strategy the config names.
//!
//! Contract: `plan(message, n)` returns the order in which to try the `n` configured
//! providers for one message, each index at most once (leaving one out means "not for
//! this message"). It is called once per delivery round, must be cheap, and never
//! awaits. `observe(index, class, latency)` is told every attempt's outcome. Health and
//! limits are not the scheduler's job: the round passes over providers that are
//! unavailable or at their limit, in the planned order.

mod adaptive;
mod from_config;
mod priority;
mod round_robin;
mod weighted;

use std::time::Duration;

pub use adaptive::Adaptive;
pub use from_config::from_config;
pub use priority::Priority;
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

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

/// The index drawn from `weights` by `u` in [0, 1): index i with probability
/// `weights[i] / sum`. With no positive weight, the first.
fn draw(weights: &[f64], u: f64) -> usize {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return 0;
    }
    let mut target = u * total;
    for (i, w) in weights.iter().enumerate() {
        if *w > 0.0 {
            if target < *w {
                return i;
            }
            target -= w;
        }
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

/// `first`, then every other index by decreasing `key` (ties in configuration order).
fn rest_by(first: usize, providers: usize, key: impl Fn(usize) -> f64) -> Vec<usize> {
    if providers == 0 {
        return Vec::new();
    }
    let mut rest: Vec<usize> = (0..providers).filter(|i| *i != first).collect();
    rest.sort_by(|a, b| key(*b).total_cmp(&key(*a)));
    std::iter::once(first).chain(rest).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::message::Mailbox;

    pub(crate) fn message() -> Message {
        Message {
            id: "m".into(),
            from: Mailbox { name: None, email: "a@b.c".into() },
            to: vec![],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "s".into(),
            text: None,
            html: None,
            headers: vec![],
            attachments: vec![],
            tags: vec![],
            metadata: Default::default(),
            submitted_at: std::time::SystemTime::now(),
            raw: None,
            already_sent_to: Default::default(),
        }
    }

    fn first_choices(s: &dyn Scheduler, providers: usize, rounds: usize) -> Vec<usize> {
        let mut counts = vec![0; providers];
        for _ in 0..rounds {
            let plan = s.plan(&message(), providers);
            let mut sorted = plan.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..providers).collect::<Vec<_>>(), "each provider once: {plan:?}");
            counts[plan[0]] += 1;
        }
        counts
    }

    #[test]
    fn draw_follows_the_weights() {
        assert_eq!(draw(&[70.0, 20.0, 10.0], 0.0), 0);
        assert_eq!(draw(&[70.0, 20.0, 10.0], 0.69), 0);
        assert_eq!(draw(&[70.0, 20.0, 10.0], 0.71), 1);
        assert_eq!(draw(&[70.0, 20.0, 10.0], 0.95), 2);
        assert_eq!(draw(&[0.0, 5.0], 0.0), 1);
        assert_eq!(draw(&[0.0, 0.0], 0.5), 0);
    }

    #[test]
    fn priority_is_the_configured_order() {
        assert_eq!(Priority.plan(&message(), 3), vec![0, 1, 2]);
    }

    #[test]
    fn weighted_shares_match_the_weights_and_zero_is_backup_only() {
        let w = Weighted::new(vec![70, 20, 10]);
        let counts = first_choices(&w, 3, 10_000);
        assert!((6500..7500).contains(&counts[0]), "{counts:?}");
        assert!((1500..2500).contains(&counts[1]), "{counts:?}");
        assert!((600..1400).contains(&counts[2]), "{counts:?}");

        let backup = Weighted::new(vec![1, 0]);
        assert_eq!(first_choices(&backup, 2, 1000), vec![1000, 0]);
        assert_eq!(backup.plan(&message(), 2), vec![0, 1]);
    }

    #[test]
    fn adaptive_moves_traffic_away_from_a_slow_provider_and_back() {
        let a = Adaptive::new(2);
        let even = first_choices(&a, 2, 2000);
        assert!((800..1200).contains(&even[0]), "equal at first: {even:?}");

        for _ in 0..30 {
            a.observe(0, OutcomeClass::Accepted, Duration::from_millis(800));
            a.observe(1, OutcomeClass::Accepted, Duration::from_millis(20));
        }
        let shifted = first_choices(&a, 2, 2000);
        assert!(shifted[1] > 1700, "the fast one takes most first choices: {shifted:?}");
        assert!(shifted[0] > 0, "the slow one is still measured: {shifted:?}");

        for _ in 0..30 {
            a.observe(0, OutcomeClass::Accepted, Duration::from_millis(20));
            a.observe(1, OutcomeClass::Transient, Duration::from_millis(20));
        }
        let back = first_choices(&a, 2, 2000);
        assert!(back[0] > 1700, "a failing provider loses its share: {back:?}");
    }
}
