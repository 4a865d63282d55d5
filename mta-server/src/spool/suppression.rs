//! The suppression list: [`key`] (the lowercased address, and the tenant for a tenant's
//! own entry) → [`SuppressionRecord`] in the `suppressions` table. Hard bounces and
//! complaints add to it (the rule is [`for_event`]), operators add and remove entries,
//! and Submit refuses a message to an address with a suppression in force for every
//! tenant or for the sending tenant.
//!
//! Whose entry: a hard bounce is for every tenant (the address is dead for everyone); a
//! complaint is the tenant's whose message caused it (another tenant's mail to that
//! person is not the complained-of mail); an operator's entry is the tenant's it names,
//! or everyone's. Entries stored before tenants existed are everyone's.
//!
//! A hard bounce (a permanent bounce) or a complaint reported by webhook puts the
//! recipient's lowercased address on the list, with the reason, the source event and an
//! expiry from `[suppression]` (hard bounces 30 days by default, complaints for ever; 0
//! means for ever). `Submit` refuses a suppressed recipient with `INVALID_ARGUMENT` naming
//! the field, the address, the reason and until when. Operators list, add and remove
//! entries over gRPC (`ListSuppressions`, `AddSuppression`, `RemoveSuppression`).

use prost::Message as _;
use redb::{ReadTransaction, ReadableDatabase, ReadableTableMetadata};

use super::record::SuppressionRecord;
use super::schema::{SUPPRESSIONS, Tables};
use super::{Spool, SpoolError, storage};
use crate::config::SuppressionConfig;
use crate::events::Event;
use bitmail_proto::v1::EventKind;

/// How long a hard bounce or a complaint suppresses its address (0: for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppressionRules {
    pub hard_bounce_ms: u64,
    pub complaint_ms: u64,
}

impl From<&SuppressionConfig> for SuppressionRules {
    fn from(c: &SuppressionConfig) -> Self {
        let ms = |days: u64| days.saturating_mul(24 * 3600 * 1000);
        SuppressionRules { hard_bounce_ms: ms(c.hard_bounce_days), complaint_ms: ms(c.complaint_days) }
    }
}

/// Between the address and the tenant in a key: no address holds a control character.
const SEPARATOR: char = '\u{1f}';

/// The table key of `address`'s entry for `tenant` (empty: every tenant). A tenant's
/// entries sort right after the address's own, so listing in key order lists by address.
pub(crate) fn key(address: &str, tenant: &str) -> String {
    if tenant.is_empty() { address.to_owned() } else { format!("{address}{SEPARATOR}{tenant}") }
}

/// The address of a table key.
fn address_of(key: &str) -> &str {
    key.split(SEPARATOR).next().unwrap_or(key)
}

/// The suppression an event calls for: a hard bounce (for every tenant) or a complaint
/// (for `tenant`, the sender of the complained-of message, when it is known) with a
/// recipient, for as long as `rules` say from `now_ms`, naming the event as its source.
pub(crate) fn for_event(
    event: &Event,
    tenant: Option<&str>,
    rules: SuppressionRules,
    now_ms: u64,
) -> Option<SuppressionRecord> {
    if !event.suppresses() || event.record.recipient.is_empty() {
        return None;
    }
    let complaint = event.kind() == EventKind::Complained;
    let (reason, ttl) =
        if complaint { ("complaint", rules.complaint_ms) } else { ("hard bounce", rules.hard_bounce_ms) };
    let detail = &event.record.detail;
    Some(SuppressionRecord {
        reason: if detail.is_empty() { reason.to_owned() } else { format!("{reason}: {detail}") },
        source: format!("{} event {}", event.record.provider, event.record.event_id),
        created_ms: now_ms,
        expires_ms: if ttl == 0 { 0 } else { now_ms.saturating_add(ttl) },
        tenant: if complaint { tenant.unwrap_or_default().to_owned() } else { String::new() },
    })
}

/// Adds or replaces the suppression of `address` for `record.tenant` (in the writer's
/// transaction).
pub(crate) fn suppress(t: &mut Tables<'_>, address: &str, record: &SuppressionRecord) -> Result<(), redb::Error> {
    t.suppressions.insert(key(address, &record.tenant).as_str(), record.encode_to_vec().as_slice())?;
    Ok(())
}

/// Removes the suppression of `address` for `tenant`; false when there was none.
pub(crate) fn unsuppress(t: &mut Tables<'_>, address: &str, tenant: &str) -> Result<bool, redb::Error> {
    Ok(t.suppressions.remove(key(address, tenant).as_str())?.is_some())
}

impl Spool {
    /// The first of `addresses` (lowercased) with a suppression in force at `now_ms`
    /// for every tenant or for `tenant`. Blocking (a read transaction, two lookups per
    /// address): call it inside `spawn_blocking`, since the caller's iterator is consumed
    /// there.
    pub(crate) fn suppressed_blocking<'a>(
        &self,
        addresses: impl IntoIterator<Item = &'a str>,
        tenant: &str,
        now_ms: u64,
    ) -> Result<Option<(&'a str, SuppressionRecord)>, SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let table = txn.open_table(SUPPRESSIONS).map_err(storage)?;
        if table.is_empty().map_err(storage)? {
            return Ok(None);
        }
        for address in addresses {
            for k in [key(address, ""), key(address, tenant)] {
                if let Some(v) = table.get(k.as_str()).map_err(storage)? {
                    let record = SuppressionRecord::decode(v.value()).map_err(storage)?;
                    if record.active(now_ms) {
                        return Ok(Some((address, record)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Suppressions in address order after the key `after` (an address, or what
    /// [`key`] makes), at most `limit`, expired ones left out; only `tenant`'s own when
    /// it is given. Reads on tokio's blocking pool.
    pub(crate) async fn suppressions(
        &self,
        after: &str,
        tenant: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(String, SuppressionRecord)>, SpoolError> {
        let after = after.to_owned();
        let tenant = tenant.map(str::to_owned);
        self.read(move |txn| list(txn, &after, tenant.as_deref(), limit, now_ms)).await
    }
}

fn list(
    txn: &ReadTransaction,
    after: &str,
    tenant: Option<&str>,
    limit: usize,
    now_ms: u64,
) -> Result<Vec<(String, SuppressionRecord)>, SpoolError> {
    let table = txn.open_table(SUPPRESSIONS).map_err(storage)?;
    let mut out = Vec::new();
    for entry in table.range(after..).map_err(storage)? {
        let (k, v) = entry.map_err(storage)?;
        if k.value() == after {
            continue;
        }
        let record = SuppressionRecord::decode(v.value()).map_err(storage)?;
        if record.active(now_ms) && tenant.is_none_or(|t| t == record.tenant) {
            out.push((address_of(k.value()).to_owned(), record));
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}
