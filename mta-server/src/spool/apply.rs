//! What each write does to the tables, inside the writer's transaction: one function
//! per [`Op`]. Accepting, updating and health are here; pruning, webhook events and
//! suppressions have files of their own.

use prost::Message as _;
use redb::ReadableTable;

use super::record::{MessageRecord, Status};
use super::schema::{IDEMPOTENCY_WINDOW_MS, Tables};
use super::writer::{Applied, Op, Reply};
use super::{Accepted, SpoolError, event_log, ledger, prune, suppression, webhook};

impl Applied {
    /// Applies one operation, keeping its answer and the statuses it changed. An error
    /// is a storage failure: the whole transaction is given up, and the operation's
    /// answer is kept all the same, for the commit's error to reach its caller.
    pub(crate) fn apply(&mut self, t: &mut Tables<'_>, op: Op) -> Result<(), redb::Error> {
        match op {
            Op::Accept { record, tenant, key, not_before_ms, ledger, reply } => {
                match accept(t, &record, tenant, key.as_deref(), not_before_ms, ledger.as_ref()) {
                    Ok((accepted, status)) => {
                        self.changed.extend(status);
                        self.replies.push(Reply::Accept(reply, Ok(accepted)));
                    }
                    Err(e) => return self.failed(Reply::Accept(reply, Err(SpoolError::Closed)), e),
                }
            }
            Op::Update { status, drop_body, reply } => match update(t, status, drop_body) {
                Ok(status) => {
                    self.changed.push(status);
                    self.replies.push(Reply::Done(reply, Ok(())));
                }
                Err(e) => return self.failed(Reply::Done(reply, Err(SpoolError::Closed)), e),
            },
            Op::Reopen => {}
            Op::Health { provider, encoded } => {
                t.health.insert(provider.as_str(), encoded.as_slice())?;
            }
            Op::Prune { now_ms, keep_status_ms, reply } => match prune::prune(t, now_ms, keep_status_ms) {
                Ok(pruned) => self.replies.push(Reply::Prune(reply, Ok(pruned))),
                Err(e) => return self.failed(Reply::Prune(reply, Err(SpoolError::Closed)), e),
            },
            Op::Events { batch, rules, now_ms, reply } => {
                match webhook::record_events(t, batch, rules, now_ms, &mut self.changed) {
                    Ok(stored) => self.replies.push(Reply::Events(reply, Ok(stored))),
                    Err(e) => return self.failed(Reply::Events(reply, Err(SpoolError::Closed)), e),
                }
            }
            Op::Suppress { address, record, reply } => match suppression::suppress(t, &address, &record) {
                Ok(()) => self.replies.push(Reply::Done(reply, Ok(()))),
                Err(e) => return self.failed(Reply::Done(reply, Err(SpoolError::Closed)), e),
            },
            Op::Outbox { webhook, state, reply } => {
                let saved = match state {
                    Some(state) => t.outbox.insert(webhook.as_str(), state.encode_to_vec().as_slice()).map(drop),
                    None => t.outbox.remove(webhook.as_str()).map(drop),
                };
                match saved {
                    Ok(()) => self.replies.push(Reply::Done(reply, Ok(()))),
                    Err(e) => return self.failed(Reply::Done(reply, Err(SpoolError::Closed)), e.into()),
                }
            }
            Op::Skip { key, why, reply } => match ledger::skipped(t, &key, &why, super::record::now_ms()) {
                Ok(()) => self.replies.push(Reply::Done(reply, Ok(()))),
                Err(e) => return self.failed(Reply::Done(reply, Err(SpoolError::Closed)), e),
            },
            Op::Cursor { campaign, cursor, reply } => match ledger::cursor(t, &campaign, cursor) {
                Ok(()) => self.replies.push(Reply::Done(reply, Ok(()))),
                Err(e) => return self.failed(Reply::Done(reply, Err(SpoolError::Closed)), e),
            },
            Op::Unsuppress { address, tenant, reply } => match suppression::unsuppress(t, &address, &tenant) {
                Ok(removed) => self.replies.push(Reply::Removed(reply, Ok(removed))),
                Err(e) => return self.failed(Reply::Removed(reply, Err(SpoolError::Closed)), e),
            },
        }
        Ok(())
    }

    /// Keeps `reply` (its placeholder error is replaced by the commit's) and gives up.
    fn failed(&mut self, reply: Reply, e: redb::Error) -> Result<(), redb::Error> {
        self.replies.push(reply);
        Err(e)
    }
}

/// Stores a new message, queued and due at once (or at `not_before_ms`), unless `key`
/// was used within its window: then nothing is stored and the first message's id is
/// the answer. Also answers the new status, if any.
fn accept(
    t: &mut Tables<'_>,
    record: &MessageRecord,
    tenant: String,
    key: Option<&str>,
    not_before_ms: Option<u64>,
    campaign: Option<&ledger::LedgerKey>,
) -> Result<(Accepted, Option<Status>), redb::Error> {
    let now = record.submitted_at_ms;
    let id = record.id.as_str();
    if let Some(key) = campaign {
        if let Some(first) = ledger::existing(t, key)? {
            return Ok((Accepted::Existing(first), None));
        }
        ledger::submitted(t, key, id, now)?;
    }
    if let Some(key) = key {
        let existing = t.keys.get(key)?.map(|v| {
            let (id, at) = v.value();
            (id.to_owned(), at)
        });
        if let Some((first, at)) = existing
            && now.saturating_sub(at) < IDEMPOTENCY_WINDOW_MS
        {
            return Ok((Accepted::Existing(first), None));
        }
        t.keys.insert(key, (id, now))?;
        t.keys_by_time.insert((now, key), ())?;
    }
    let mut status = Status::new(record.id.clone(), tenant, now);
    status.metadata = record.metadata.clone();
    status.possible_duplicate = record.possible_duplicate;
    if let Some(at) = not_before_ms.filter(|at| *at > now) {
        status.due_ms = at;
        status.not_before_ms = at;
    }
    event_log::queued(t, &status)?;
    t.messages.insert(id, record.encode_to_vec().as_slice())?;
    t.statuses.insert(id, status.encode_to_vec().as_slice())?;
    t.due.insert((status.due_ms, id), ())?;
    t.unfinished.insert((unfinished_since(&status), id), ())?;
    Ok((Accepted::New, Some(status)))
}

/// A message's key in the unfinished index: when it was submitted, or when it was
/// scheduled for if later (a message waiting for its time is not late).
fn unfinished_since(status: &Status) -> u64 {
    status.submitted_at_ms.max(status.not_before_ms)
}

/// Replaces a message's status, moving its place in the schedule and in the unfinished
/// index; with `drop_body`, removes the body too. Answers the status as stored.
fn update(t: &mut Tables<'_>, mut status: Status, drop_body: bool) -> Result<Status, redb::Error> {
    let id = status.id.clone();
    let id = id.as_str();
    let old = t.statuses.get(id)?.and_then(|v| Status::decode(v.value()).ok());
    let old_due = old.as_ref().map(|s| s.due_ms);
    let was_final = old.as_ref().is_some_and(Status::is_final);
    event_log::state_change(t, old.as_ref(), &status)?;
    ledger::status_changed(t, old.as_ref(), &status)?;
    // Events are the writer's to append; a round's copy may be older.
    if let Some(old) = old {
        status.events = old.events;
    }
    if let Some(old) = old_due.filter(|d| *d != 0 && *d != status.due_ms) {
        t.due.remove((old, id))?;
    }
    if status.due_ms != 0 {
        t.due.insert((status.due_ms, id), ())?;
    }
    if status.is_final() {
        t.unfinished.remove((unfinished_since(&status), id))?;
    } else if was_final {
        // A failed message retried by an operator is unfinished again.
        t.unfinished.insert((unfinished_since(&status), id), ())?;
    }
    t.statuses.insert(id, status.encode_to_vec().as_slice())?;
    if drop_body {
        t.messages.remove(id)?;
    }
    Ok(status)
}
