//! The tenants' event log: what became of each message, in the order it was stored,
//! for apps that poll (`ListEvents`) with a cursor.
//!
//! Written by the writer in the same transaction as the change it describes, so an
//! entry is on disk exactly when its change is: `queued` when a message is accepted;
//! `sent`, `deferred` and `failed` when a delivery round stores that state (source
//! `bitmail`); each provider event stored from a webhook (source the provider). Every
//! entry names the message and carries its metadata (SendGrid `custom_args`, Mailgun
//! `v:`), so the app can match it.
//!
//! `event_log`: sequence number → entry; `event_log_by_tenant`: (tenant, sequence) → ()
//! for a tenant's page; `event_seq`: the next sequence number (numbers only grow, also
//! across restarts, so a cursor is never reused). Pruned with the statuses, past
//! `keep_statuses_days`.

use prost::Message as _;
use redb::{ReadTransaction, ReadableTable};

use super::record::{EventRecord, LoggedEvent, State, Status, now_ms};
use super::schema::PRUNE_BATCH;
use super::schema::{EVENT_LOG, EVENT_LOG_BY_TENANT, Tables};
use super::{SpoolError, storage};

const NEXT: &str = "next";

/// Appends `event`; answers its sequence number.
pub(crate) fn append(t: &mut Tables<'_>, event: &LoggedEvent) -> Result<u64, redb::Error> {
    let seq = t.event_seq.get(NEXT)?.map_or(1, |v| v.value());
    let event = LoggedEvent { logged_ms: now_ms(), ..event.clone() };
    t.event_log.insert(seq, event.encode_to_vec().as_slice())?;
    t.event_log_by_tenant.insert((event.tenant.as_str(), seq), ())?;
    t.event_seq.insert(NEXT, seq + 1)?;
    Ok(seq)
}

fn entry(status: &Status, event: &str, source: &str) -> LoggedEvent {
    LoggedEvent {
        tenant: status.tenant().to_owned(),
        message_id: status.id.clone(),
        event: event.to_owned(),
        source: source.to_owned(),
        at_ms: now_ms(),
        metadata: status.metadata.clone(),
        ..Default::default()
    }
}

/// `queued`, for a message just accepted.
pub(crate) fn queued(t: &mut Tables<'_>, status: &Status) -> Result<(), redb::Error> {
    append(t, &entry(status, "queued", "bitmail")).map(drop)
}

/// `sent`, `deferred` or `failed` when `new` reaches that state from another.
pub(crate) fn state_change(t: &mut Tables<'_>, old: Option<&Status>, new: &Status) -> Result<(), redb::Error> {
    if old.is_some_and(|o| o.state == new.state) {
        return Ok(());
    }
    let (event, detail) = match new.state() {
        State::Sent => ("sent", new.provider_message_id.clone()),
        State::Deferred => ("deferred", new.error.clone()),
        State::Failed => ("failed", new.error.clone()),
        State::Queued | State::Sending => return Ok(()),
    };
    let mut logged = entry(new, event, "bitmail");
    logged.detail = detail;
    if new.state() == State::Sent {
        logged.source = new.provider.clone();
    }
    append(t, &logged).map(drop)
}

/// A provider's event about `status`'s message.
pub(crate) fn provider_event(t: &mut Tables<'_>, status: &Status, e: &EventRecord) -> Result<(), redb::Error> {
    let name = bitmail_proto::v1::EventKind::try_from(e.kind)
        .map_or("unknown".to_owned(), |k| k.as_str_name().trim_start_matches("EVENT_KIND_").to_ascii_lowercase());
    let mut logged = entry(status, &name, &e.provider);
    logged.recipient = e.recipient.clone();
    logged.at_ms = e.at_ms;
    logged.detail = e.detail.clone();
    logged.permanent = e.permanent;
    append(t, &logged).map(drop)
}

/// Entries stored before `before_ms`, oldest first, at most [`PRUNE_BATCH`].
pub(crate) fn prune(t: &mut Tables<'_>, before_ms: u64) -> Result<usize, redb::Error> {
    let mut old = Vec::new();
    for entry in t.event_log.iter()?.take(PRUNE_BATCH) {
        let (seq, v) = entry?;
        let Ok(logged) = LoggedEvent::decode(v.value()) else { continue };
        if logged.logged_ms.max(logged.at_ms) >= before_ms {
            break;
        }
        old.push((seq.value(), logged.tenant));
    }
    for (seq, tenant) in &old {
        t.event_log.remove(*seq)?;
        t.event_log_by_tenant.remove((tenant.as_str(), *seq))?;
    }
    Ok(old.len())
}

/// Up to `limit` of `tenant`'s entries after sequence number `after`, in order.
pub(crate) fn page(
    txn: &ReadTransaction,
    tenant: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, LoggedEvent)>, SpoolError> {
    let index = txn.open_table(EVENT_LOG_BY_TENANT).map_err(storage)?;
    let log = txn.open_table(EVENT_LOG).map_err(storage)?;
    let mut out = Vec::new();
    let start = after.saturating_add(1);
    for entry in index.range((tenant, start)..=(tenant, u64::MAX)).map_err(storage)?.take(limit) {
        let (key, _) = entry.map_err(storage)?;
        let seq = key.value().1;
        if let Some(v) = log.get(seq).map_err(storage)? {
            out.push((seq, LoggedEvent::decode(v.value()).map_err(storage)?));
        }
    }
    Ok(out)
}
