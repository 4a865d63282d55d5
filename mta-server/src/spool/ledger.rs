//! The campaigns' ledger: one entry per (campaign, subscriber), written in the same
//! transaction as the copy it records, so that "submitted" and "in the spool" can never
//! disagree, whatever moment a crash picks.
//!
//! Tables (`schema.rs`):
//! - `ledger`: (campaign id, subscriber id) → [`LedgerEntry`]: the copy's message id and
//!   where it is (`submitted`, `sent`, `failed`, `delivered`, `bounced`, `complained`,
//!   or `skipped: WHY` for a subscriber passed over without a copy);
//! - `campaigns`: campaign id → [`CampaignRecord`]: the figures, kept in step with the
//!   ledger by the same transactions, and the cursor (the last subscriber id of the last
//!   page whose every subscriber has an entry).
//!
//! An accepted copy whose (campaign, subscriber) already has an entry is not stored: the
//! first copy's id is the answer ([`super::Accepted::Existing`]), with no time limit,
//! unlike idempotency keys. A copy's later life (sent, failed, flagged a possible
//! duplicate, delivered, bounced, complained) moves its entry and the figures, found
//! through the status's metadata (`bitmail_campaign`, `bitmail_subscriber`, which only
//! BitMail sets: `message::validate` refuses them from callers).

use std::collections::HashSet;

use prost::Message as _;
use redb::ReadableTable;

use super::record::{EventRecord, Status};
use super::schema::{CAMPAIGNS, LEDGER, Tables};
use super::{Spool, SpoolError, storage};

/// The metadata key naming a copy's campaign.
pub const CAMPAIGN_KEY: &str = "bitmail_campaign";
/// The metadata key naming a copy's subscriber.
pub const SUBSCRIBER_KEY: &str = "bitmail_subscriber";

/// Which (campaign, subscriber) a copy is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerKey {
    pub campaign: String,
    pub subscriber: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LedgerEntry {
    #[prost(string, tag = "1")]
    pub message_id: String,
    #[prost(string, tag = "2")]
    pub state: String,
    #[prost(uint64, tag = "3")]
    pub at_ms: u64,
}

/// A campaign's figures on this node, and how far its walk over the subscribers got.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CampaignRecord {
    #[prost(string, tag = "1")]
    pub cursor: String,
    #[prost(uint64, tag = "2")]
    pub submitted: u64,
    #[prost(uint64, tag = "3")]
    pub skipped: u64,
    #[prost(uint64, tag = "4")]
    pub sent: u64,
    #[prost(uint64, tag = "5")]
    pub failed: u64,
    #[prost(uint64, tag = "6")]
    pub delivered: u64,
    #[prost(uint64, tag = "7")]
    pub bounced: u64,
    #[prost(uint64, tag = "8")]
    pub complained: u64,
    #[prost(uint64, tag = "9")]
    pub possible_duplicates: u64,
}

fn record(t: &Tables<'_>, campaign: &str) -> Result<CampaignRecord, redb::Error> {
    Ok(t.campaigns.get(campaign)?.and_then(|v| CampaignRecord::decode(v.value()).ok()).unwrap_or_default())
}

fn save(t: &mut Tables<'_>, campaign: &str, r: &CampaignRecord) -> Result<(), redb::Error> {
    t.campaigns.insert(campaign, r.encode_to_vec().as_slice())?;
    Ok(())
}

fn entry(t: &Tables<'_>, key: &LedgerKey) -> Result<Option<LedgerEntry>, redb::Error> {
    let k = (key.campaign.as_str(), key.subscriber.as_str());
    Ok(t.ledger.get(k)?.and_then(|v| LedgerEntry::decode(v.value()).ok()))
}

fn put(t: &mut Tables<'_>, key: &LedgerKey, e: &LedgerEntry) -> Result<(), redb::Error> {
    t.ledger.insert((key.campaign.as_str(), key.subscriber.as_str()), e.encode_to_vec().as_slice())?;
    Ok(())
}

/// The first copy's id when `key` already has an entry with a copy.
pub(super) fn existing(t: &Tables<'_>, key: &LedgerKey) -> Result<Option<String>, redb::Error> {
    Ok(entry(t, key)?.map(|e| e.message_id).filter(|id| !id.is_empty()))
}

/// Records the copy `message_id`, accepted at `now_ms`, for `key`.
pub(super) fn submitted(t: &mut Tables<'_>, key: &LedgerKey, message_id: &str, now_ms: u64) -> Result<(), redb::Error> {
    put(t, key, &LedgerEntry { message_id: message_id.to_owned(), state: "submitted".into(), at_ms: now_ms })?;
    let mut r = record(t, &key.campaign)?;
    r.submitted += 1;
    save(t, &key.campaign, &r)
}

/// Records that `key`'s subscriber gets no copy, for `why`; nothing when it has an entry.
pub(super) fn skipped(t: &mut Tables<'_>, key: &LedgerKey, why: &str, now_ms: u64) -> Result<(), redb::Error> {
    if entry(t, key)?.is_some() {
        return Ok(());
    }
    put(t, key, &LedgerEntry { message_id: String::new(), state: format!("skipped: {why}"), at_ms: now_ms })?;
    let mut r = record(t, &key.campaign)?;
    r.skipped += 1;
    save(t, &key.campaign, &r)
}

/// Moves the cursor of `campaign` to `cursor`.
pub(super) fn cursor(t: &mut Tables<'_>, campaign: &str, cursor: String) -> Result<(), redb::Error> {
    let mut r = record(t, campaign)?;
    r.cursor = cursor;
    save(t, campaign, &r)
}

fn key_of(status: &Status) -> Option<LedgerKey> {
    Some(LedgerKey {
        campaign: status.metadata.get(CAMPAIGN_KEY)?.clone(),
        subscriber: status.metadata.get(SUBSCRIBER_KEY)?.clone(),
    })
}

/// Follows a copy's status change from `old` to `new` (sent, failed, flagged).
pub(super) fn status_changed(t: &mut Tables<'_>, old: Option<&Status>, new: &Status) -> Result<(), redb::Error> {
    let Some(key) = key_of(new) else { return Ok(()) };
    let was_final = old.is_some_and(Status::is_final);
    let was_flagged = old.is_some_and(|s| s.possible_duplicate);
    let became_final = new.is_final() && !was_final;
    let flagged = new.possible_duplicate && !was_flagged;
    if !became_final && !flagged {
        return Ok(());
    }
    let mut r = record(t, &key.campaign)?;
    if flagged {
        r.possible_duplicates += 1;
    }
    if became_final {
        let sent = new.state() == super::record::State::Sent;
        if sent {
            r.sent += 1
        } else {
            r.failed += 1
        }
        if let Some(mut e) = entry(t, &key)? {
            e.state = if sent { "sent" } else { "failed" }.into();
            put(t, &key, &e)?;
        }
    }
    save(t, &key.campaign, &r)
}

/// Follows a provider's report on a copy (delivered, bounced, complained).
pub(super) fn event(t: &mut Tables<'_>, status: &Status, event: &EventRecord) -> Result<(), redb::Error> {
    use bitmail_proto::v1::EventKind;
    let Some(key) = key_of(status) else { return Ok(()) };
    let kind = EventKind::try_from(event.kind).unwrap_or(EventKind::Unspecified);
    let seen = |k: EventKind| status.events.iter().any(|e| e.kind == k as i32);
    let mut r = record(t, &key.campaign)?;
    let state = match kind {
        EventKind::Delivered if !seen(EventKind::Delivered) => {
            r.delivered += 1;
            "delivered"
        }
        EventKind::Bounced if event.permanent && !status.events.iter().any(|e| e.kind == event.kind && e.permanent) => {
            r.bounced += 1;
            "bounced"
        }
        EventKind::Complained if !seen(EventKind::Complained) => {
            r.complained += 1;
            "complained"
        }
        _ => return Ok(()),
    };
    save(t, &key.campaign, &r)?;
    if let Some(mut e) = entry(t, &key)? {
        e.state = state.into();
        put(t, &key, &e)?;
    }
    Ok(())
}

impl Spool {
    /// Which of `subscribers` already have an entry in `campaign`'s ledger.
    pub(crate) async fn in_ledger(
        &self,
        campaign: &str,
        subscribers: Vec<String>,
    ) -> Result<HashSet<String>, SpoolError> {
        let campaign = campaign.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(LEDGER).map_err(storage)?;
            let mut held = HashSet::new();
            for s in subscribers {
                if table.get((campaign.as_str(), s.as_str())).map_err(storage)?.is_some() {
                    held.insert(s);
                }
            }
            Ok(held)
        })
        .await
    }

    /// `campaign`'s figures and cursor on this node (all zero before its first copy).
    pub(crate) async fn campaign_record(&self, campaign: &str) -> Result<CampaignRecord, SpoolError> {
        let campaign = campaign.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(CAMPAIGNS).map_err(storage)?;
            let found = table.get(campaign.as_str()).map_err(storage)?;
            Ok(found.and_then(|v| CampaignRecord::decode(v.value()).ok()).unwrap_or_default())
        })
        .await
    }

    /// One ledger entry.
    #[cfg(test)]
    pub(crate) async fn ledger_entry(&self, key: LedgerKey) -> Result<Option<LedgerEntry>, SpoolError> {
        self.read(move |txn| {
            let table = txn.open_table(LEDGER).map_err(storage)?;
            let found = table.get((key.campaign.as_str(), key.subscriber.as_str())).map_err(storage)?;
            Ok(found.and_then(|v| LedgerEntry::decode(v.value()).ok()))
        })
        .await
    }
}
