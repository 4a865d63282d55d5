//! Quotas, enforced before anything is stored: a token bucket per tenant for the rate
//! (per node, in memory) and the daily count across nodes, through the store.
//!
//! The daily count lives in one usage document per (tenant, UTC day): `kind=usage`,
//! `tenant`, `day=YYYY-MM-DD`, and per node `reserved.<node id>` (messages this node may
//! accept that day) and `used.<node id>` (messages it did accept, flushed at most once a
//! second). A node writes only its own fields. It admits from the allowance it has
//! reserved; when that runs out, it reads the document, sums every node's `reserved.*`,
//! and reserves a block more (never past `per_day`) with an update at the version it
//! read, so of two nodes reserving at once one re-reads and re-sums. The block is two
//! seconds of the tenant's rate, at least `block` (the constructor's) and at most a tenth
//! of `per_day` (but never under `block`): a busy tenant reserves about once every two
//! seconds per node, not every few dozen messages, since the submissions that find the
//! allowance spent wait for that store round trip.
//!
//! The bound: the messages admitted across all nodes in a day never exceed `per_day`
//! (no overshoot, also when a node restarts: it counts what it had reserved before as
//! spent). They can fall short of it by what nodes reserved and did not use: at most
//! `nodes × block` while the nodes run, plus one block per restart of a node that day
//! (block as above: for the default quotas, 100 messages).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backend_server::store::{Document, Fields, Store, StoreError};

use super::model::{Quotas, Tenant};
use super::registry::{oldest, put_unique};

pub const DAY_MS: u64 = 86_400_000;
/// The default block a node reserves at once.
pub const DEFAULT_BLOCK: u64 = 50;
const KIND: &str = "usage";

/// Which quota refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaName {
    PerSecond,
    PerDay,
    MaxRecipients,
    MaxMessageBytes,
}

impl QuotaName {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaName::PerSecond => "per_second",
            QuotaName::PerDay => "per_day",
            QuotaName::MaxRecipients => "max_recipients",
            QuotaName::MaxMessageBytes => "max_message_bytes",
        }
    }
}

/// A refusal: gRPC `RESOURCE_EXHAUSTED` (HTTP 429), nothing stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OverQuota {
    /// `retry_after_ms`: from the `now_ms` given, when the next message is allowed (for
    /// `per_day`, the next UTC midnight).
    #[error("over the {} quota of {limit}; the next message is allowed in {retry_after_ms} ms", .quota.as_str())]
    Rate { quota: QuotaName, limit: String, retry_after_ms: u64 },
    /// A message too big or with too many recipients: retrying it cannot help.
    #[error("over the {} quota: {value}, at most {limit}", .quota.as_str())]
    Size { quota: QuotaName, limit: u64, value: u64 },
    /// The usage document could not be read or written: nothing admitted. gRPC
    /// `UNAVAILABLE`.
    #[error("cannot count the daily quota now: {0}")]
    Unavailable(String),
}

impl OverQuota {
    pub fn quota(&self) -> Option<QuotaName> {
        match self {
            OverQuota::Rate { quota, .. } | OverQuota::Size { quota, .. } => Some(*quota),
            OverQuota::Unavailable(_) => None,
        }
    }
}

/// Refuses a message over the tenant's recipient or size limit; no state, no store.
pub fn check_message(quotas: &Quotas, recipients: usize, message_bytes: u64) -> Result<(), OverQuota> {
    let recipients = recipients as u64;
    if recipients > u64::from(quotas.max_recipients) {
        let limit = u64::from(quotas.max_recipients);
        return Err(OverQuota::Size { quota: QuotaName::MaxRecipients, limit, value: recipients });
    }
    if message_bytes > quotas.max_message_bytes {
        let limit = quotas.max_message_bytes;
        return Err(OverQuota::Size { quota: QuotaName::MaxMessageBytes, limit, value: message_bytes });
    }
    Ok(())
}

/// The quotas of one node; cheap to clone.
#[derive(Clone)]
pub struct Quota {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    node_id: String,
    block: u64,
    buckets: Mutex<HashMap<String, Bucket>>,
    days: Mutex<HashMap<(String, u64), Arc<Day>>>,
}

struct Bucket {
    tokens: f64,
    last_ms: u64,
}

/// One tenant's day on this node.
struct Day {
    tenant: String,
    day: u64,
    /// Admitted here, given-back ones taken off again.
    used: AtomicU64,
    /// Granted to this process by its reservations.
    allowance: AtomicU64,
    doc: tokio::sync::Mutex<DayDoc>,
}

#[derive(Default)]
struct DayDoc {
    id: Option<String>,
    /// This node's `reserved` in the document as last seen.
    reserved: u64,
    /// This node's `used` in the document when this process first read it.
    used_before: u64,
    /// The `used` last written.
    flushed: u64,
    /// The `per_day` at which every node's reservations reached the limit: reservations
    /// are never handed back, so until the limit is raised the answer is known without
    /// reading the store.
    exhausted_at: Option<u64>,
}

/// A message admitted: counted unless given back. Dropping it without
/// [`Admitted::commit`] gives the allowance back (the submission failed to store).
#[must_use = "dropping it gives the allowance back"]
pub struct Admitted {
    inner: Arc<Inner>,
    day: Arc<Day>,
    committed: bool,
}

impl Admitted {
    /// The message is stored: it counts.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitted").field("tenant", &self.day.tenant).field("day", &self.day.day).finish()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.committed {
            self.day.used.fetch_sub(1, Ordering::AcqRel);
            if let Some(bucket) = lock(&self.inner.buckets).get_mut(&self.day.tenant) {
                bucket.tokens += 1.0;
            }
        }
    }
}

impl Quota {
    /// The quotas of node `node_id` (unique among the nodes sharing `store`, and the
    /// same across restarts of one node), reserving `block` messages of a day at once
    /// ([`DEFAULT_BLOCK`]).
    pub fn new(store: Arc<dyn Store>, node_id: &str, block: u64) -> Self {
        let inner = Inner {
            store,
            node_id: node_id.to_owned(),
            block: block.max(1),
            buckets: Mutex::default(),
            days: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Admits one message of `tenant` at `now_ms` (ms since the epoch), or names the
    /// quota that refuses and when it allows the next. The rate is checked first (in
    /// memory); the daily count reads the store only when this node's reserved allowance
    /// is spent. Cancel-safe: a cancelled call admits nothing (a reservation it made is
    /// picked up by the next call).
    pub async fn admit(&self, tenant: &Tenant, now_ms: u64) -> Result<Admitted, OverQuota> {
        let quotas = &tenant.quotas;
        self.take_token(&tenant.id, quotas, now_ms)?;
        let day = self.day(&tenant.id, now_ms / DAY_MS);
        // From here, a refusal gives the token back (the guard's drop does it).
        day.used.fetch_add(1, Ordering::AcqRel);
        let admitted = Admitted { inner: self.inner.clone(), day: day.clone(), committed: false };
        if day.used.load(Ordering::Acquire) <= day.allowance.load(Ordering::Acquire) {
            return Ok(admitted);
        }
        let mut doc = day.doc.lock().await;
        while day.used.load(Ordering::Acquire) > day.allowance.load(Ordering::Acquire) {
            self.reserve(&day, &mut doc, (quotas.per_second, quotas.per_day), now_ms).await?;
        }
        Ok(admitted)
    }

    /// Messages accepted per UTC day for `tenant`, as flushed by every node: `days`
    /// days ending today (at `now_ms`), oldest first, as (`YYYY-MM-DD`, count).
    pub async fn usage(&self, tenant: &str, days: u32, now_ms: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let today = now_ms / DAY_MS;
        let mut out = Vec::with_capacity(days as usize);
        for day in (0..u64::from(days)).rev().filter_map(|back| today.checked_sub(back)) {
            let date = date(day);
            let doc = oldest(&*self.inner.store, &subset(tenant, &date)).await?;
            let used = doc.map_or(0, |d| sum(&d, "used."));
            out.push((date, used));
        }
        Ok(out)
    }

    /// Writes this node's `used` counts that changed since the last flush; drops the days
    /// before yesterday. [`Quota::spawn_flusher`] calls it every second.
    pub async fn flush(&self, now_ms: u64) -> Result<(), StoreError> {
        let days: Vec<Arc<Day>> = lock(&self.inner.days).values().cloned().collect();
        for day in days {
            let mut doc = day.doc.lock().await;
            let used = doc.used_before + day.used.load(Ordering::Acquire);
            if let Some(id) = doc.id.clone()
                && used != doc.flushed
            {
                let fields = Fields::from([(format!("used.{}", self.inner.node_id), used.to_string())]);
                self.inner.store.update(&id, fields, vec![], None).await?;
                doc.flushed = used;
            }
        }
        let today = now_ms / DAY_MS;
        lock(&self.inner.days).retain(|(_, day), _| day + 1 >= today);
        Ok(())
    }

    /// Flushes every second until the handle is aborted (flush once more before, on
    /// shutdown).
    pub fn spawn_flusher(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = this.flush(super::now_ms()).await {
                    tracing::warn!(error = %e, "could not write quota usage");
                }
            }
        })
    }

    fn take_token(&self, tenant: &str, quotas: &Quotas, now_ms: u64) -> Result<(), OverQuota> {
        let burst = f64::from(quotas.burst);
        let mut buckets = lock(&self.inner.buckets);
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket { tokens: burst, last_ms: now_ms });
        let elapsed = now_ms.saturating_sub(bucket.last_ms) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * quotas.per_second).min(burst);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let retry_after_ms = ((1.0 - bucket.tokens) / quotas.per_second * 1000.0).ceil().max(1.0) as u64;
        Err(OverQuota::Rate {
            quota: QuotaName::PerSecond,
            limit: format!("{}/s, burst {}", quotas.per_second, quotas.burst),
            retry_after_ms,
        })
    }

    fn day(&self, tenant: &str, day: u64) -> Arc<Day> {
        lock(&self.inner.days)
            .entry((tenant.to_owned(), day))
            .or_insert_with(|| {
                Arc::new(Day {
                    tenant: tenant.to_owned(),
                    day,
                    used: AtomicU64::new(0),
                    allowance: AtomicU64::new(0),
                    doc: tokio::sync::Mutex::default(),
                })
            })
            .clone()
    }

    /// How many messages one reservation asks for: two seconds of the tenant's rate,
    /// at least the configured block, at most a tenth of the day's quota (but never under
    /// the configured block).
    fn block_for(&self, per_second: f64, per_day: u64) -> u64 {
        let floor = self.inner.block;
        let two_seconds = (2.0 * per_second).ceil() as u64;
        two_seconds.max(floor).min((per_day / 10).max(floor))
    }

    /// One attempt to grow this node's allowance for the day (the caller loops).
    async fn reserve(
        &self,
        day: &Day,
        doc: &mut DayDoc,
        (rate, per_day): (f64, u64),
        now_ms: u64,
    ) -> Result<(), OverQuota> {
        let unavailable = |e: StoreError| OverQuota::Unavailable(e.to_string());
        let store = &*self.inner.store;
        let over = || OverQuota::Rate {
            quota: QuotaName::PerDay,
            limit: per_day.to_string(),
            retry_after_ms: (now_ms / DAY_MS + 1) * DAY_MS - now_ms,
        };
        if doc.exhausted_at.is_some_and(|limit| limit >= per_day) {
            return Err(over());
        }
        let mine_field = format!("reserved.{}", self.inner.node_id);
        let current = match &doc.id {
            Some(id) => store.get(id).await.map_err(unavailable)?,
            None => {
                let subset = subset(&day.tenant, &date(day.day));
                let (current, _) = put_unique(store, &subset, subset.clone()).await.map_err(unavailable)?;
                // What this node reserved before this process started counts as spent.
                doc.reserved = number(&current, &mine_field);
                doc.used_before = number(&current, &format!("used.{}", self.inner.node_id));
                doc.flushed = doc.used_before;
                doc.id = Some(current.id.clone());
                current
            }
        };
        let mine = number(&current, &mine_field);
        if mine > doc.reserved {
            // A reservation whose answer was lost (cancelled, or `Unavailable`) took effect.
            day.allowance.fetch_add(mine - doc.reserved, Ordering::AcqRel);
            doc.reserved = mine;
            return Ok(());
        }
        let total = sum(&current, "reserved.");
        if total >= per_day {
            doc.exhausted_at = Some(per_day);
            return Err(over());
        }
        let grant = self.block_for(rate, per_day).min(per_day - total);
        let fields = Fields::from([(mine_field, (mine + grant).to_string())]);
        match store.update(&current.id, fields, vec![], Some(current.version)).await {
            Ok(_) => {
                doc.reserved = mine + grant;
                day.allowance.fetch_add(grant, Ordering::AcqRel);
                Ok(())
            }
            // Another node reserved meanwhile: the caller loops, re-reading and re-summing.
            Err(StoreError::VersionMismatch { .. }) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn subset(tenant: &str, date: &str) -> Fields {
    Fields::from([
        ("kind".to_owned(), KIND.to_owned()),
        ("tenant".to_owned(), tenant.to_owned()),
        ("day".to_owned(), date.to_owned()),
    ])
}

/// `YYYY-MM-DD` of a day number since the epoch.
fn date(day: u64) -> String {
    bitmail_runtime::time::date(day * 86_400_000)
}

fn number(doc: &Document, field: &str) -> u64 {
    doc.fields.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn sum(doc: &Document, prefix: &str) -> u64 {
    doc.fields.iter().filter(|(k, _)| k.starts_with(prefix)).filter_map(|(_, v)| v.parse::<u64>().ok()).sum()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod block_tests {
    use super::*;

    #[test]
    fn a_block_is_two_seconds_of_rate_within_a_floor_and_a_tenth_of_the_day() {
        let quota = Quota::new(Arc::new(backend_server::memory::MemoryStore::new()), "n", 50);
        assert_eq!(quota.block_for(50.0, 100_000), 100, "the default quotas");
        assert_eq!(quota.block_for(1.0, 100_000), 50, "the floor");
        assert_eq!(quota.block_for(100_000.0, 1_000_000), 100_000, "a tenth of the day");
        assert_eq!(quota.block_for(10_000.0, 200), 50, "never under the floor");
    }
}
