//! A verified webhook's events, stored once each with their messages' statuses.
//!
//! `webhook_seen` remembers each event id (`ev:{provider}:{event id}`) and each
//! single-use token (`tok:{provider}:{token}`, with the event id it signed) for
//! [`super::schema::WEBHOOK_MEMORY_MS`]; `webhook_seen_by_time` lets pruning find the
//! old ones without a scan.

use prost::Message as _;
use redb::ReadableTable;

use super::record::Status;
use super::schema::Tables;
use super::suppression::{self, SuppressionRules};
use crate::events::{Batch, Event};

/// What [`super::Spool::record_events`] did with a webhook's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub stored: u32,
    pub duplicates: u32,
    /// About no message this spool knows (sent by another installation, or pruned).
    pub unknown: u32,
    /// The webhook's single-use token was used before for another event.
    pub replay: bool,
}

/// Stores `batch`'s events not seen before, appends each to its message's status
/// (pushed to `changed`), and suppresses the addresses the rules say to. A replayed
/// token stores nothing.
pub(crate) fn record_events(
    t: &mut Tables<'_>,
    batch: Batch,
    rules: SuppressionRules,
    now_ms: u64,
    changed: &mut Vec<Status>,
) -> Result<Stored, redb::Error> {
    let mut result = Stored::default();
    if let Some((token, event_id)) = &batch.nonce
        && !take_token(t, token, event_id, now_ms)?
    {
        result.replay = true;
        return Ok(result);
    }
    for event in batch.events {
        if !first_sight(t, &event, now_ms)? {
            result.duplicates += 1;
            continue;
        }
        let recipient = event.record.recipient.clone();
        let suppression = |tenant: Option<&str>| suppression::for_event(&event, tenant, rules, now_ms);
        let (record, status) = match status_of(t, &event)? {
            // A complaint is about the tenant whose message it was.
            Some(status) => (suppression(Some(status.tenant())), append(t, status, event)?),
            None => (suppression(None), None),
        };
        if let Some(record) = record {
            suppression::suppress(t, &recipient, &record)?;
        }
        match status {
            Some(status) => {
                result.stored += 1;
                changed.push(status);
            }
            None => result.unknown += 1,
        }
    }
    Ok(result)
}

/// Remembers a webhook's single-use token (scoped by its provider: `mailgun:TOKEN`);
/// false when it was used before for another event.
fn take_token(t: &mut Tables<'_>, token: &str, event_id: &str, now_ms: u64) -> Result<bool, redb::Error> {
    let key = format!("tok:{token}");
    let earlier = t.seen.get(key.as_str())?.map(|v| v.value().0.to_owned());
    match earlier {
        Some(earlier) => Ok(earlier == event_id),
        None => {
            t.seen.insert(key.as_str(), (event_id, now_ms))?;
            t.seen_by_time.insert((now_ms, key.as_str()), ())?;
            Ok(true)
        }
    }
}

/// Remembers an event's id; false when it was seen before. Events without an id are
/// always new.
fn first_sight(t: &mut Tables<'_>, event: &Event, now_ms: u64) -> Result<bool, redb::Error> {
    if event.record.event_id.is_empty() {
        return Ok(true);
    }
    let key = format!("ev:{}:{}", event.record.provider, event.record.event_id);
    if t.seen.get(key.as_str())?.is_some() {
        return Ok(false);
    }
    t.seen.insert(key.as_str(), ("", now_ms))?;
    t.seen_by_time.insert((now_ms, key.as_str()), ())?;
    Ok(true)
}

/// The status of the event's message; `None` when the spool has no such status.
fn status_of(t: &mut Tables<'_>, event: &Event) -> Result<Option<Status>, redb::Error> {
    Ok(t.statuses.get(event.message_id.as_str())?.and_then(|v| Status::decode(v.value()).ok()))
}

/// Appends the event to its message's status and stores it.
fn append(t: &mut Tables<'_>, mut status: Status, event: Event) -> Result<Option<Status>, redb::Error> {
    let record = event.record.into();
    super::event_log::provider_event(t, &status, &record)?;
    super::ledger::event(t, &status, &record)?;
    status.events.push(record);
    t.statuses.insert(status.id.as_str(), status.encode_to_vec().as_slice())?;
    Ok(Some(status))
}
