//! Reads, against the last committed state. A redb read transaction may wait on the
//! disk, so no read runs on an async worker thread: the `async` ones run on tokio's
//! blocking pool, and the few named `*_blocking` are for code already on a blocking
//! thread (inside `spawn_blocking`), because they take a borrowed callback or iterator
//! the caller evaluates there.

use prost::Message as _;
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::record::{MessageRecord, Status};
use super::schema::{DUE, HEALTH, MESSAGES, STATUSES};
use super::{Spool, SpoolError, storage};
use crate::message::Message;

impl Spool {
    /// Runs `read` in a read transaction on tokio's blocking pool. Dropping the future
    /// leaves the read to finish on its own; it changes nothing.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ReadTransaction) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let db = self.db()?;
        tokio::task::spawn_blocking(move || read(&db.begin_read().map_err(storage)?))
            .await
            .map_err(|e| SpoolError::Storage(format!("a spool read did not finish: {e}")))?
    }

    /// A message's status, if the spool still has it.
    pub(crate) async fn status(&self, id: &str) -> Result<Option<Status>, SpoolError> {
        let id = id.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(STATUSES).map_err(storage)?;
            let Some(v) = table.get(id.as_str()).map_err(storage)? else {
                return Ok(None);
            };
            Status::decode(v.value()).map(Some).map_err(storage)
        })
        .await
    }

    /// A message, while it is not yet sent or failed (its body is dropped then).
    pub(crate) async fn message(&self, id: &str) -> Result<Option<Message>, SpoolError> {
        let id = id.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(MESSAGES).map_err(storage)?;
            let Some(v) = table.get(id.as_str()).map_err(storage)? else {
                return Ok(None);
            };
            MessageRecord::decode(v.value()).map(|r| Some(r.into())).map_err(storage)
        })
        .await
    }

    /// Up to `limit` of `tenant`'s event log entries after sequence number `after`
    /// (0: from the start), in order, with their sequence numbers.
    pub(crate) async fn events(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, super::record::LoggedEvent)>, SpoolError> {
        let tenant = tenant.to_owned();
        self.read(move |txn| super::event_log::page(txn, &tenant, after, limit)).await
    }

    /// How far a webhook got on this node (the default: nothing delivered yet).
    pub(crate) async fn outbox(&self, webhook: &str) -> Result<super::record::OutboxState, SpoolError> {
        let webhook = webhook.to_owned();
        self.read(move |txn| {
            let table = txn.open_table(super::schema::OUTBOX).map_err(storage)?;
            let Some(v) = table.get(webhook.as_str()).map_err(storage)? else { return Ok(Default::default()) };
            super::record::OutboxState::decode(v.value()).map_err(storage)
        })
        .await
    }

    /// Every saved provider health.
    pub(crate) async fn load_health(&self) -> Result<Vec<(String, Vec<u8>)>, SpoolError> {
        self.read(|txn| {
            let table = txn.open_table(HEALTH).map_err(storage)?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(storage)? {
                let (k, v) = entry.map_err(storage)?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    /// Up to `limit` scheduled ids due at or before `now_ms`, earliest first, leaving
    /// out those `skip` says are already being delivered. Also answers the due time of
    /// the first entry after `now_ms`, if any, so the caller knows how long to sleep.
    /// Blocking: call it inside `spawn_blocking` (where `skip` can look at the
    /// dispatcher's in-flight set).
    pub(crate) fn due_blocking(
        &self,
        now_ms: u64,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, Option<u64>), SpoolError> {
        let txn = self.db()?.begin_read().map_err(storage)?;
        let table = txn.open_table(DUE).map_err(storage)?;
        let mut ids = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            let (due, id) = key.value();
            if due > now_ms || ids.len() == limit {
                return Ok((ids, Some(due)));
            }
            if !skip(id) {
                ids.push(id.to_owned());
            }
        }
        Ok((ids, None))
    }
}
