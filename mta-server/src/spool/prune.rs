//! Retention: what [`super::Spool::prune`] removes, oldest first and at most
//! [`PRUNE_BATCH`](super::schema::PRUNE_BATCH) of each kind per commit, so that pruning never holds up submissions.

use prost::Message as _;
use redb::{ReadableTable, Table};

use super::record::Status;
use super::schema::{IDEMPOTENCY_WINDOW_MS, PRUNE_BATCH, Tables, WEBHOOK_MEMORY_MS};

/// What one [`super::Spool::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub statuses: usize,
    pub keys: usize,
    pub events: usize,
}

/// Expired idempotency keys, final statuses and event log entries past
/// `keep_status_ms` (with any body left), and webhook event ids and tokens past their memory.
pub(crate) fn prune(t: &mut Tables<'_>, now_ms: u64, keep_status_ms: u64) -> Result<Pruned, redb::Error> {
    let keys = expired_keys(t, now_ms.saturating_sub(IDEMPOTENCY_WINDOW_MS))?;
    let statuses = old_statuses(t, now_ms.saturating_sub(keep_status_ms))?;
    let events = super::event_log::prune(t, now_ms.saturating_sub(keep_status_ms))?;
    forget_webhooks(t, now_ms.saturating_sub(WEBHOOK_MEMORY_MS))?;
    Ok(Pruned { statuses, keys, events })
}

/// The oldest entries of a by-time index before `before`, at most [`PRUNE_BATCH`].
fn oldest(index: &Table<'_, (u64, &'static str), ()>, before: u64) -> Result<Vec<(u64, String)>, redb::Error> {
    let mut found = Vec::new();
    for entry in index.range((0, "")..(before, ""))?.take(PRUNE_BATCH) {
        let (k, _) = entry?;
        let (at, key) = k.value();
        found.push((at, key.to_owned()));
    }
    Ok(found)
}

/// Idempotency keys used before `before`, oldest first.
fn expired_keys(t: &mut Tables<'_>, before: u64) -> Result<usize, redb::Error> {
    let mut removed = 0;
    for (at, key) in oldest(&t.keys_by_time, before)? {
        t.keys_by_time.remove((at, key.as_str()))?;
        // A key used again after its window has a newer entry: keep it.
        let current = t.keys.get(key.as_str())?.map(|v| v.value().1);
        if current == Some(at) {
            t.keys.remove(key.as_str())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Sent or failed messages submitted before `cutoff`, in id (submission) order.
fn old_statuses(t: &mut Tables<'_>, cutoff: u64) -> Result<usize, redb::Error> {
    let mut old = Vec::new();
    for entry in t.statuses.iter()? {
        let (id, v) = entry?;
        let Ok(status) = Status::decode(v.value()) else { continue };
        if status.submitted_at_ms >= cutoff || old.len() == PRUNE_BATCH {
            break;
        }
        if status.is_final() {
            old.push(id.value().to_owned());
        }
    }
    for id in &old {
        t.statuses.remove(id.as_str())?;
        t.messages.remove(id.as_str())?;
    }
    Ok(old.len())
}

/// Webhook event ids and tokens seen before `before`.
fn forget_webhooks(t: &mut Tables<'_>, before: u64) -> Result<(), redb::Error> {
    for (at, key) in oldest(&t.seen_by_time, before)? {
        t.seen_by_time.remove((at, key.as_str()))?;
        t.seen.remove(key.as_str())?;
    }
    Ok(())
}
