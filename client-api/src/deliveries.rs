//! The deliveries of the last hour, kept in memory for the status page.
//!
//! mta-server keeps no history, so client-api follows `WatchMessages` from its start
//! ([`crate::status::follow`]) and records each outcome (sent or failed) here, at most
//! [`MAX_EVENTS`]. Each message this edge submitted is noted with its sender
//! ([`DeliveryLog::note_sender`]), so that a user sees only their own deliveries.

use bitmail_runtime::sync::lock;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

const HOUR_MS: u64 = 3600 * 1000;
pub(crate) const MAX_EVENTS: usize = 20_000;
/// The chart's bars: twelve of five minutes.
pub(crate) const BUCKET_MS: u64 = 5 * 60 * 1000;
const BUCKETS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub(crate) at_ms: u64,
    pub(crate) provider: String,
    pub(crate) state: &'static str,
    pub(crate) message_id: String,
}

/// The outcomes of the last hour, oldest first.
#[derive(Default)]
pub(crate) struct DeliveryLog {
    events: Mutex<VecDeque<Delivery>>,
    /// Who submitted each recent message (mta id to user id), oldest first, at most
    /// [`MAX_EVENTS`].
    senders: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl DeliveryLog {
    pub(crate) fn record(&self, d: Delivery) {
        let mut events = lock(&self.events);
        while events.front().is_some_and(|e| e.at_ms + HOUR_MS < d.at_ms) || events.len() >= MAX_EVENTS {
            events.pop_front();
        }
        events.push_back(d);
    }

    /// Notes that user `user_id` submitted message `mta_id`.
    pub(crate) fn note_sender(&self, mta_id: &str, user_id: &str) {
        let mut senders = lock(&self.senders);
        let (by_id, order) = &mut *senders;
        if order.len() >= MAX_EVENTS
            && let Some(oldest) = order.pop_front()
        {
            by_id.remove(&oldest);
        }
        by_id.insert(mta_id.to_owned(), user_id.to_owned());
        order.push_back(mta_id.to_owned());
    }

    /// The user who submitted `mta_id` through this edge, if one did (among its last
    /// [`MAX_EVENTS`] submissions since it started).
    pub(crate) fn sender_of(&self, mta_id: &str) -> Option<String> {
        lock(&self.senders).0.get(mta_id).cloned()
    }

    /// The newest `n` outcomes, newest first: everyone's (`None`, for admins), or only
    /// those of the messages user `Some(id)` submitted.
    pub(crate) fn recent(&self, n: usize, of_user: Option<&str>) -> Vec<Delivery> {
        let events = lock(&self.events);
        let senders = lock(&self.senders);
        let mine = |d: &&Delivery| of_user.is_none_or(|u| senders.0.get(&d.message_id).is_some_and(|s| s == u));
        events.iter().rev().filter(mine).take(n).cloned().collect()
    }

    /// Messages sent per provider in each five-minute bucket of the hour before `now`,
    /// oldest bucket first.
    pub(crate) fn per_provider(&self, now: u64) -> BTreeMap<String, [u32; BUCKETS]> {
        let since = now.saturating_sub(BUCKET_MS * BUCKETS as u64);
        let mut out: BTreeMap<String, [u32; BUCKETS]> = BTreeMap::new();
        let events = lock(&self.events);
        for e in events.iter().filter(|e| e.state == "sent" && e.at_ms >= since && e.at_ms <= now) {
            let bucket = (((e.at_ms - since) / BUCKET_MS) as usize).min(BUCKETS - 1);
            out.entry(e.provider.clone()).or_insert([0; BUCKETS])[bucket] += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(at_ms: u64, provider: &str, state: &'static str) -> Delivery {
        Delivery { at_ms, provider: provider.into(), state, message_id: "m".into() }
    }

    #[test]
    fn the_log_keeps_an_hour_and_buckets_sent_mail_per_provider() {
        let log = DeliveryLog::default();
        let now = 10 * HOUR_MS;
        log.record(d(now - 2 * HOUR_MS, "a", "sent"));
        log.record(d(now - 59 * 60 * 1000, "a", "sent"));
        log.record(d(now - 1000, "a", "sent"));
        log.record(d(now - 500, "b", "sent"));
        log.record(d(now - 400, "b", "failed"));
        log.record(d(now, "b", "sent"));
        assert_eq!(log.recent(100, None).len(), 5, "the event older than an hour is gone");
        assert_eq!(log.recent(1, None)[0].at_ms, now);
        let chart = log.per_provider(now);
        assert_eq!(chart["a"][0], 1);
        assert_eq!(chart["a"][BUCKETS - 1], 1);
        assert_eq!(chart["b"][BUCKETS - 1], 2, "failed is not counted");
    }

    #[test]
    fn a_user_sees_the_deliveries_of_their_own_messages_only() {
        let log = DeliveryLog::default();
        let delivery = |id: &str| {
            let mut e = d(1, "a", "sent");
            e.message_id = id.into();
            log.record(e);
        };
        delivery("m-ada");
        delivery("m-bob");
        // The note may come after the outcome (a fast provider): it still counts.
        log.note_sender("m-ada", "u-ada");
        log.note_sender("m-bob", "u-bob");
        let ids = |list: Vec<Delivery>| list.into_iter().map(|d| d.message_id).collect::<Vec<_>>();
        assert_eq!(ids(log.recent(10, Some("u-ada"))), vec!["m-ada"]);
        assert_eq!(ids(log.recent(10, Some("u-eve"))), Vec::<String>::new());
        assert_eq!(ids(log.recent(10, None)), vec!["m-bob", "m-ada"]);
    }
}
