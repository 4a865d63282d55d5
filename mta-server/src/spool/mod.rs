//! The spool: every accepted message, its status and its schedule, in one redb file.
//!
//! Why redb: an embedded, pure-Rust, single-file store with ACID transactions whose
//! commits are checksummed and fsync'd (`Durability::Immediate`), so a crash or kill -9
//! leaves either the old or the new state, never a torn one; a corrupt file is reported
//! when opened, not silently emptied. It compiles fast and needs no C toolchain.
//!
//! Tables:
//! - `messages`: id → [`record::MessageRecord`] (removed once the message is sent or
//!   failed: the body is no longer needed);
//! - `statuses`: id → [`record::Status`];
//! - `due`: (due time in ms, id) → (): the schedule. Delivery reads it in order from the
//!   start up to "now", so finding work costs what is due, not what is queued;
//! - `idempotency`: key → (id, accepted at ms), and `idempotency_by_time`:
//!   (accepted at ms, key) → (), so that expired keys are found without a scan;
//! - `health`: provider name → encoded provider health;
//! - `webhook_seen` (and `webhook_seen_by_time` for pruning): provider event ids and
//!   Mailgun tokens already taken, so a webhook delivered twice stores its events once;
//! - `suppressions`: lowercased address → [`record::SuppressionRecord`];
//! - `unfinished`: (submitted at ms, id) → () for every message not yet sent or failed,
//!   so the age of the oldest is one read.
//!
//! Retention: [`Spool::prune`] removes idempotency keys past their 24 hours and the
//! statuses of sent or failed messages older than the configured retention, oldest
//! first (ids are UUIDv7, so id order is submission order) and a bounded number per
//! commit, so that the file stops growing under a steady load.
//!
//! Group commit: one writer thread owns every write. It takes all operations waiting in
//! its channel (up to [`MAX_BATCH`]), applies them in one transaction, commits once (one
//! fsync), then answers each caller. Concurrent submissions thus share a commit, and a
//! caller is answered only once its change is on disk.

pub mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::events::Batch;
use crate::message::Message;
use record::{MessageRecord, Status, SuppressionRecord};

const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
const STATUSES: TableDefinition<&str, &[u8]> = TableDefinition::new("statuses");
const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("due");
const IDEMPOTENCY: TableDefinition<&str, (&str, u64)> = TableDefinition::new("idempotency");
const IDEMPOTENCY_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("idempotency_by_time");
const HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("health");
/// "ev:{provider}:{event id}" or "tok:{provider}:{token}" → (event id, seen at ms).
const WEBHOOK_SEEN: TableDefinition<&str, (&str, u64)> = TableDefinition::new("webhook_seen");
const WEBHOOK_SEEN_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("webhook_seen_by_time");
const SUPPRESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("suppressions");
const UNFINISHED: TableDefinition<(u64, &str), ()> = TableDefinition::new("unfinished");

/// How long an event id or token is remembered: past the providers' retry periods
/// (SendGrid retries for 24 hours), and past [`crate::events::MAX_SKEW`] for tokens.
pub const WEBHOOK_MEMORY_MS: u64 = 3 * 24 * 3600 * 1000;

/// The most entries one prune commit removes, so that it never holds up submissions.
pub const PRUNE_BATCH: usize = 2048;

/// The most operations one commit takes.
pub const MAX_BATCH: usize = 4096;

/// How long an idempotency key keeps answering the first message's id.
pub const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full: {used} bytes on disk, quota {quota} bytes")]
    Full { used: u64, quota: u64 },
    #[error("cannot open the spool {path}: {reason}; the file was left untouched")]
    Open { path: PathBuf, reason: String },
    #[error("spool storage failed: {0}")]
    Storage(String),
    #[error("the spool is shutting down")]
    Closed,
}

fn storage(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(e.to_string())
}

/// What [`Spool::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The message is on disk under its own id.
    New,
    /// The idempotency key was used within the window: nothing was stored, and this is
    /// the id of the first message.
    Existing(String),
}

#[derive(Debug, Clone, Copy)]
pub struct SpoolSettings {
    /// Past this file size, new messages are refused ([`SpoolError::Full`]).
    pub max_bytes: u64,
    /// redb's page cache: bounds the spool's memory whatever the backlog.
    pub cache_bytes: usize,
}

enum Op {
    Accept { record: MessageRecord, key: Option<String>, reply: oneshot::Sender<Result<Accepted, SpoolError>> },
    Update { status: Status, drop_body: bool, reply: oneshot::Sender<Result<(), SpoolError>> },
    Health { provider: String, encoded: Vec<u8> },
    Prune { now_ms: u64, keep_status_ms: u64, reply: oneshot::Sender<Result<Pruned, SpoolError>> },
    Events { batch: Batch, rules: SuppressionRules, now_ms: u64, reply: oneshot::Sender<Result<Stored, SpoolError>> },
    Suppress { address: String, record: SuppressionRecord, reply: oneshot::Sender<Result<(), SpoolError>> },
    Unsuppress { address: String, reply: oneshot::Sender<Result<bool, SpoolError>> },
}

/// How long a hard bounce or a complaint suppresses its address (0: for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppressionRules {
    pub hard_bounce_ms: u64,
    pub complaint_ms: u64,
}

/// What [`Spool::record_events`] did with a webhook's events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub stored: u32,
    pub duplicates: u32,
    /// About no message this spool knows (sent by another installation, or pruned).
    pub unknown: u32,
    /// The webhook's single-use token was used before for another event.
    pub replay: bool,
}

/// What one [`Spool::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub statuses: usize,
    pub keys: usize,
}

/// A handle on the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    db: Arc<Database>,
    tx: mpsc::Sender<Op>,
    events: broadcast::Sender<Status>,
    size: Arc<AtomicU64>,
    quota: u64,
}

impl Spool {
    /// Opens (or creates) the spool file and starts its writer thread. A file that is
    /// not a valid spool is reported and left as it is.
    pub fn open(path: &Path, settings: SpoolSettings) -> Result<Spool, SpoolError> {
        let fail = |reason: String| SpoolError::Open { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db =
            Database::builder().set_cache_size(settings.cache_bytes).create(path).map_err(|e| fail(e.to_string()))?;
        // Create the tables up front so readers never meet a missing one.
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        {
            txn.open_table(MESSAGES).map_err(|e| fail(e.to_string()))?;
            txn.open_table(STATUSES).map_err(|e| fail(e.to_string()))?;
            txn.open_table(DUE).map_err(|e| fail(e.to_string()))?;
            txn.open_table(IDEMPOTENCY).map_err(|e| fail(e.to_string()))?;
            txn.open_table(IDEMPOTENCY_BY_TIME).map_err(|e| fail(e.to_string()))?;
            txn.open_table(HEALTH).map_err(|e| fail(e.to_string()))?;
            txn.open_table(WEBHOOK_SEEN).map_err(|e| fail(e.to_string()))?;
            txn.open_table(WEBHOOK_SEEN_BY_TIME).map_err(|e| fail(e.to_string()))?;
            txn.open_table(SUPPRESSIONS).map_err(|e| fail(e.to_string()))?;
            txn.open_table(UNFINISHED).map_err(|e| fail(e.to_string()))?;
        }
        txn.commit().map_err(|e| fail(e.to_string()))?;

        let db = Arc::new(db);
        let size = Arc::new(AtomicU64::new(file_size(path)));
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let (events, _) = broadcast::channel(4096);
        let writer = Writer {
            events: events.clone(),
            db: db.clone(),
            path: path.to_owned(),
            size: size.clone(),
            quota: settings.max_bytes,
        };
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        Ok(Spool { db, tx, events, size, quota: settings.max_bytes })
    }

    /// Stores a new message, durably, and schedules it for delivery now. With an
    /// idempotency key already used in the last 24 hours, stores nothing and answers the
    /// first message's id.
    pub async fn accept(&self, message: &Message, key: Option<String>) -> Result<Accepted, SpoolError> {
        let used = self.size.load(Ordering::Relaxed);
        if used >= self.quota {
            return Err(SpoolError::Full { used, quota: self.quota });
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Op::Accept { record: MessageRecord::from(message), key, reply })
            .await
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Replaces a message's status, durably, moving its place in the schedule to
    /// `status.due_ms` (0: off the schedule). With `drop_body`, the message body is
    /// removed too.
    pub async fn update(&self, status: Status, drop_body: bool) -> Result<(), SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Op::Update { status, drop_body, reply }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Removes idempotency keys older than their window and the statuses of messages
    /// that were sent or failed and submitted more than `keep_status_ms` before
    /// `now_ms`, at most [`PRUNE_BATCH`] of each in one commit: call again while it
    /// answers full batches.
    pub async fn prune(&self, now_ms: u64, keep_status_ms: u64) -> Result<Pruned, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Op::Prune { now_ms, keep_status_ms, reply }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Stores a verified webhook's events with their messages' statuses, once each,
    /// and suppresses the addresses of hard bounces and complaints.
    pub async fn record_events(
        &self,
        batch: Batch,
        rules: SuppressionRules,
        now_ms: u64,
    ) -> Result<Stored, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Op::Events { batch, rules, now_ms, reply }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Adds or replaces a suppression of `address` (lowercased by the caller).
    pub async fn suppress(&self, address: String, record: SuppressionRecord) -> Result<(), SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Op::Suppress { address, record, reply }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Removes a suppression; false when there was none.
    pub async fn unsuppress(&self, address: String) -> Result<bool, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Op::Unsuppress { address, reply }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// The first of `addresses` (lowercased) with a suppression in force at `now_ms`.
    pub fn suppressed<'a>(
        &self,
        addresses: impl IntoIterator<Item = &'a str>,
        now_ms: u64,
    ) -> Result<Option<(&'a str, SuppressionRecord)>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SUPPRESSIONS).map_err(storage)?;
        if table.is_empty().map_err(storage)? {
            return Ok(None);
        }
        for address in addresses {
            if let Some(v) = table.get(address).map_err(storage)? {
                let record = SuppressionRecord::decode(v.value()).map_err(storage)?;
                if record.active(now_ms) {
                    return Ok(Some((address, record)));
                }
            }
        }
        Ok(None)
    }

    /// Suppressions in address order after `after`, at most `limit`, expired ones left out.
    pub fn suppressions(
        &self,
        after: &str,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<(String, SuppressionRecord)>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(SUPPRESSIONS).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.range(after..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            if k.value() == after {
                continue;
            }
            let record = SuppressionRecord::decode(v.value()).map_err(storage)?;
            if record.active(now_ms) {
                out.push((k.value().to_owned(), record));
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// When the oldest message not yet sent or failed was submitted (ms), if any.
    pub fn oldest_unfinished(&self) -> Result<Option<u64>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(UNFINISHED).map_err(storage)?;
        let first = table.first().map_err(storage)?;
        Ok(first.map(|(k, _)| k.value().0))
    }

    /// The number of stored statuses and idempotency keys.
    pub fn counts(&self) -> Result<(u64, u64), SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let statuses = txn.open_table(STATUSES).map_err(storage)?.len().map_err(storage)?;
        let keys = txn.open_table(IDEMPOTENCY).map_err(storage)?.len().map_err(storage)?;
        Ok((statuses, keys))
    }

    /// Every status change from now on, once it is on disk. A receiver that falls more
    /// than 4096 changes behind skips ahead (and is told it lagged).
    pub fn subscribe(&self) -> broadcast::Receiver<Status> {
        self.events.subscribe()
    }

    /// Records a provider's health; written with the next commit.
    pub async fn save_health(&self, provider: &str, encoded: Vec<u8>) {
        let _ = self.tx.send(Op::Health { provider: provider.to_owned(), encoded }).await;
    }

    /// Every saved provider health.
    pub fn load_health(&self) -> Result<Vec<(String, Vec<u8>)>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(HEALTH).map_err(storage)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn status(&self, id: &str) -> Result<Option<Status>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(STATUSES).map_err(storage)?;
        let Some(v) = table.get(id).map_err(storage)? else {
            return Ok(None);
        };
        Status::decode(v.value()).map(Some).map_err(storage)
    }

    pub fn message(&self, id: &str) -> Result<Option<Message>, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(MESSAGES).map_err(storage)?;
        let Some(v) = table.get(id).map_err(storage)? else {
            return Ok(None);
        };
        MessageRecord::decode(v.value()).map(|r| Some(r.into())).map_err(storage)
    }

    /// Up to `limit` scheduled ids due at or before `now_ms`, earliest first, leaving
    /// out those `skip` says are already being delivered. Also answers the due time of
    /// the first entry after `now_ms`, if any, so the caller knows how long to sleep.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, Option<u64>), SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(DUE).map_err(storage)?;
        let mut ids = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            let (due, id) = key.value();
            if due > now_ms {
                return Ok((ids, Some(due)));
            }
            if ids.len() == limit {
                return Ok((ids, Some(due)));
            }
            if !skip(id) {
                ids.push(id.to_owned());
            }
        }
        Ok((ids, None))
    }

    /// The number of messages on the schedule (queued, sending or deferred).
    pub fn backlog(&self) -> Result<u64, SpoolError> {
        let txn = self.db.begin_read().map_err(storage)?;
        txn.open_table(DUE).map_err(storage)?.len().map_err(storage)
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

struct Writer {
    db: Arc<Database>,
    events: broadcast::Sender<Status>,
    path: PathBuf,
    size: Arc<AtomicU64>,
    quota: u64,
}

/// The answer owed to one operation of a batch, sent after the commit.
enum Reply {
    Accept(oneshot::Sender<Result<Accepted, SpoolError>>, Result<Accepted, SpoolError>),
    Update(oneshot::Sender<Result<(), SpoolError>>, Result<(), SpoolError>),
    Prune(oneshot::Sender<Result<Pruned, SpoolError>>, Result<Pruned, SpoolError>),
    Events(oneshot::Sender<Result<Stored, SpoolError>>, Result<Stored, SpoolError>),
    Done(oneshot::Sender<Result<(), SpoolError>>, Result<(), SpoolError>),
    Removed(oneshot::Sender<Result<bool, SpoolError>>, Result<bool, SpoolError>),
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let (replies, changed, committed) = self.apply(batch.drain(..));
            if committed.is_ok() {
                for status in changed {
                    // No subscriber is fine.
                    let _ = self.events.send(status);
                }
            }
            for reply in replies {
                match reply {
                    Reply::Accept(tx, r) => {
                        let _ = tx.send(committed.clone().and(r));
                    }
                    Reply::Update(tx, r) => {
                        let _ = tx.send(committed.clone().and(r));
                    }
                    Reply::Prune(tx, r) => {
                        let _ = tx.send(committed.clone().and(r));
                    }
                    Reply::Events(tx, r) => {
                        let _ = tx.send(committed.clone().and(r));
                    }
                    Reply::Done(tx, r) => {
                        let _ = tx.send(committed.clone().and(r));
                    }
                    Reply::Removed(tx, r) => {
                        let _ = tx.send(committed.clone().and(r));
                    }
                }
            }
            self.size.store(file_size(&self.path), Ordering::Relaxed);
        }
    }

    /// Applies a batch in one transaction. Each operation gets its own result; the
    /// commit's result applies to all.
    fn apply(&self, ops: impl Iterator<Item = Op>) -> (Vec<Reply>, Vec<Status>, Result<(), SpoolError>) {
        let mut replies = Vec::new();
        let mut changed = Vec::new();
        let txn = match self.db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let err = storage(e);
                for op in ops {
                    match op {
                        Op::Accept { reply, .. } => replies.push(Reply::Accept(reply, Err(err.clone()))),
                        Op::Update { reply, .. } => replies.push(Reply::Update(reply, Err(err.clone()))),
                        Op::Prune { reply, .. } => replies.push(Reply::Prune(reply, Err(err.clone()))),
                        Op::Events { reply, .. } => replies.push(Reply::Events(reply, Err(err.clone()))),
                        Op::Suppress { reply, .. } => replies.push(Reply::Done(reply, Err(err.clone()))),
                        Op::Unsuppress { reply, .. } => replies.push(Reply::Removed(reply, Err(err.clone()))),
                        Op::Health { .. } => {}
                    }
                }
                return (replies, changed, Err(err));
            }
        };
        let result = (|| -> Result<(), redb::Error> {
            let mut messages = txn.open_table(MESSAGES)?;
            let mut statuses = txn.open_table(STATUSES)?;
            let mut due = txn.open_table(DUE)?;
            let mut keys = txn.open_table(IDEMPOTENCY)?;
            let mut keys_by_time = txn.open_table(IDEMPOTENCY_BY_TIME)?;
            let mut health = txn.open_table(HEALTH)?;
            let mut seen = txn.open_table(WEBHOOK_SEEN)?;
            let mut seen_by_time = txn.open_table(WEBHOOK_SEEN_BY_TIME)?;
            let mut suppressions = txn.open_table(SUPPRESSIONS)?;
            let mut unfinished = txn.open_table(UNFINISHED)?;
            let over_quota = file_size(&self.path) >= self.quota;
            for op in ops {
                match op {
                    Op::Accept { record, key, reply } => {
                        if over_quota {
                            let used = file_size(&self.path);
                            replies.push(Reply::Accept(reply, Err(SpoolError::Full { used, quota: self.quota })));
                            continue;
                        }
                        let now = record.submitted_at_ms;
                        if let Some(key) = &key {
                            let existing = keys.get(key.as_str())?.map(|v| {
                                let (id, at) = v.value();
                                (id.to_owned(), at)
                            });
                            if let Some((id, at)) = existing
                                && now.saturating_sub(at) < IDEMPOTENCY_WINDOW_MS
                            {
                                replies.push(Reply::Accept(reply, Ok(Accepted::Existing(id))));
                                continue;
                            }
                            keys.insert(key.as_str(), (record.id.as_str(), now))?;
                            keys_by_time.insert((now, key.as_str()), ())?;
                        }
                        let status = Status::new(record.id.clone(), now);
                        messages.insert(record.id.as_str(), record.encode_to_vec().as_slice())?;
                        statuses.insert(record.id.as_str(), status.encode_to_vec().as_slice())?;
                        due.insert((now, record.id.as_str()), ())?;
                        unfinished.insert((now, record.id.as_str()), ())?;
                        replies.push(Reply::Accept(reply, Ok(Accepted::New)));
                        changed.push(status);
                    }
                    Op::Update { mut status, drop_body, reply } => {
                        let id = status.id.clone();
                        let id = id.as_str();
                        let old = statuses.get(id)?.and_then(|v| Status::decode(v.value()).ok());
                        let old_due = old.as_ref().map(|s| s.due_ms);
                        let was_final = old.as_ref().is_some_and(Status::is_final);
                        // Events are the writer's to append; a round's copy may be older.
                        if let Some(old) = old {
                            status.events = old.events;
                        }
                        if let Some(old) = old_due.filter(|d| *d != 0 && *d != status.due_ms) {
                            due.remove((old, id))?;
                        }
                        if status.due_ms != 0 {
                            due.insert((status.due_ms, id), ())?;
                        }
                        if status.is_final() {
                            unfinished.remove((status.submitted_at_ms, id))?;
                        } else if was_final {
                            // A failed message retried by an operator is unfinished again.
                            unfinished.insert((status.submitted_at_ms, id), ())?;
                        }
                        statuses.insert(id, status.encode_to_vec().as_slice())?;
                        if drop_body {
                            messages.remove(id)?;
                        }
                        replies.push(Reply::Update(reply, Ok(())));
                        changed.push(status);
                    }
                    Op::Health { provider, encoded } => {
                        health.insert(provider.as_str(), encoded.as_slice())?;
                    }
                    Op::Prune { now_ms, keep_status_ms, reply } => {
                        let mut pruned = Pruned::default();
                        // Keys: oldest first, up to the window.
                        let expired_before = now_ms.saturating_sub(IDEMPOTENCY_WINDOW_MS);
                        let mut expired = Vec::new();
                        for entry in keys_by_time.range((0, "")..(expired_before, ""))?.take(PRUNE_BATCH) {
                            let (k, _) = entry?;
                            let (at, key) = k.value();
                            expired.push((at, key.to_owned()));
                        }
                        for (at, key) in expired {
                            keys_by_time.remove((at, key.as_str()))?;
                            // A key used again after its window has a newer entry: keep it.
                            let current = keys.get(key.as_str())?.map(|v| v.value().1);
                            if current == Some(at) {
                                keys.remove(key.as_str())?;
                                pruned.keys += 1;
                            }
                        }
                        // Statuses: in id (submission) order, final ones past retention.
                        let cutoff = now_ms.saturating_sub(keep_status_ms);
                        let mut old = Vec::new();
                        for entry in statuses.iter()? {
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
                            statuses.remove(id.as_str())?;
                            messages.remove(id.as_str())?;
                        }
                        pruned.statuses = old.len();
                        // Webhook event ids and tokens past their memory.
                        let forget_before = now_ms.saturating_sub(WEBHOOK_MEMORY_MS);
                        let mut forgotten = Vec::new();
                        for entry in seen_by_time.range((0, "")..(forget_before, ""))?.take(PRUNE_BATCH) {
                            let (k, _) = entry?;
                            let (at, key) = k.value();
                            forgotten.push((at, key.to_owned()));
                        }
                        for (at, key) in forgotten {
                            seen_by_time.remove((at, key.as_str()))?;
                            seen.remove(key.as_str())?;
                        }
                        replies.push(Reply::Prune(reply, Ok(pruned)));
                    }
                    Op::Events { batch, rules, now_ms, reply } => {
                        let mut result = Stored::default();
                        if let Some((token, event_id)) = &batch.nonce {
                            // The token is scoped by its provider (`mailgun:TOKEN`).
                            let key = format!("tok:{token}");
                            let earlier = seen.get(key.as_str())?.map(|v| v.value().0.to_owned());
                            match earlier {
                                Some(earlier) if earlier != *event_id => {
                                    result.replay = true;
                                    replies.push(Reply::Events(reply, Ok(result)));
                                    continue;
                                }
                                Some(_) => {}
                                None => {
                                    seen.insert(key.as_str(), (event_id.as_str(), now_ms))?;
                                    seen_by_time.insert((now_ms, key.as_str()), ())?;
                                }
                            }
                        }
                        for event in batch.events {
                            let key = format!("ev:{}:{}", event.record.provider, event.record.event_id);
                            if !event.record.event_id.is_empty() {
                                if seen.get(key.as_str())?.is_some() {
                                    result.duplicates += 1;
                                    continue;
                                }
                                seen.insert(key.as_str(), ("", now_ms))?;
                                seen_by_time.insert((now_ms, key.as_str()), ())?;
                            }
                            if event.suppresses() && !event.record.recipient.is_empty() {
                                let (reason, ttl) = if event.kind() == bitmail_proto::v1::EventKind::Complained {
                                    ("complaint", rules.complaint_ms)
                                } else {
                                    ("hard bounce", rules.hard_bounce_ms)
                                };
                                let record = SuppressionRecord {
                                    reason: if event.record.detail.is_empty() {
                                        reason.to_owned()
                                    } else {
                                        format!("{reason}: {}", event.record.detail)
                                    },
                                    source: format!("{} event {}", event.record.provider, event.record.event_id),
                                    created_ms: now_ms,
                                    expires_ms: if ttl == 0 { 0 } else { now_ms.saturating_add(ttl) },
                                };
                                suppressions
                                    .insert(event.record.recipient.as_str(), record.encode_to_vec().as_slice())?;
                            }
                            let status =
                                statuses.get(event.message_id.as_str())?.and_then(|v| Status::decode(v.value()).ok());
                            let Some(mut status) = status else {
                                result.unknown += 1;
                                continue;
                            };
                            status.events.push(event.record);
                            statuses.insert(status.id.as_str(), status.encode_to_vec().as_slice())?;
                            result.stored += 1;
                            changed.push(status);
                        }
                        replies.push(Reply::Events(reply, Ok(result)));
                    }
                    Op::Suppress { address, record, reply } => {
                        suppressions.insert(address.as_str(), record.encode_to_vec().as_slice())?;
                        replies.push(Reply::Done(reply, Ok(())));
                    }
                    Op::Unsuppress { address, reply } => {
                        let removed = suppressions.remove(address.as_str())?.is_some();
                        replies.push(Reply::Removed(reply, Ok(removed)));
                    }
                }
            }
            Ok(())
        })();
        let committed = match result {
            Ok(()) => txn.commit().map_err(storage),
            Err(e) => Err(storage(e)),
        };
        if let Err(e) = &committed {
            tracing::error!(error = %e, "spool commit failed; the batch was not stored");
        }
        (replies, changed, committed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Mailbox;
    use record::State;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("bitmail-spool-{}-{name}.redb", std::process::id()))
    }

    fn settings() -> SpoolSettings {
        SpoolSettings { max_bytes: u64::MAX, cache_bytes: 4 << 20 }
    }

    fn message(id: &str) -> Message {
        Message {
            id: id.into(),
            from: Mailbox { name: Some("Ada".into()), email: "ada@example.org".into() },
            to: vec![Mailbox { name: None, email: "bob@example.net".into() }],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
            headers: vec![("X-A".into(), "1".into())],
            attachments: vec![crate::message::Attachment {
                filename: "a.bin".into(),
                content_type: "application/octet-stream".into(),
                content: vec![0, 1, 2, 255],
                content_id: None,
            }],
            tags: vec!["t".into()],
            metadata: [("k".to_owned(), "v".to_owned())].into(),
            submitted_at: std::time::SystemTime::now(),
            already_sent_to: Default::default(),
        }
    }

    #[tokio::test]
    async fn accepted_messages_survive_reopening_and_follow_the_schedule() {
        let path = temp_path("reopen");
        let _ = std::fs::remove_file(&path);
        {
            let spool = Spool::open(&path, settings()).unwrap();
            for id in ["m1", "m2"] {
                assert_eq!(spool.accept(&message(id), None).await.unwrap(), Accepted::New);
            }
            let mut s = spool.status("m1").unwrap().unwrap();
            s.state = State::Deferred as i32;
            s.due_ms = record::now_ms() + 60_000;
            spool.update(s, false).await.unwrap();
            let mut s = spool.status("m2").unwrap().unwrap();
            s.state = State::Sent as i32;
            s.due_ms = 0;
            spool.update(s, true).await.unwrap();
        }
        // The writer thread may still hold the file for an instant after the handles go.
        let spool = loop {
            match Spool::open(&path, settings()) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        assert_eq!(spool.message("m1").unwrap().unwrap(), message_with_time("m1", &spool));
        assert_eq!(spool.message("m2").unwrap(), None, "a sent message's body is dropped");
        assert_eq!(spool.status("m2").unwrap().unwrap().state(), State::Sent);
        let (now, next) = spool.due(record::now_ms(), 10, |_| false).unwrap();
        assert!(now.is_empty(), "m1 is deferred, m2 is done");
        assert!(next.is_some());
        let (later, _) = spool.due(record::now_ms() + 120_000, 10, |_| false).unwrap();
        assert_eq!(later, vec!["m1".to_owned()]);
        drop(spool);
        let _ = std::fs::remove_file(&path);
    }

    fn message_with_time(id: &str, spool: &Spool) -> Message {
        let stored = spool.message(id).unwrap().unwrap();
        Message { submitted_at: stored.submitted_at, ..message(id) }
    }

    #[tokio::test]
    async fn prune_forgets_expired_keys_and_old_final_statuses_only() {
        let path = temp_path("prune");
        let _ = std::fs::remove_file(&path);
        let spool = Spool::open(&path, settings()).unwrap();
        let day = 24 * 3600 * 1000;
        for (id, key) in [("m1", "k1"), ("m2", "k2"), ("m3", "k3")] {
            spool.accept(&message(id), Some(key.into())).await.unwrap();
        }
        let submitted = spool.status("m1").unwrap().unwrap().submitted_at_ms;
        // m1 sent, m2 failed, m3 still deferred.
        for (id, state) in [("m1", State::Sent), ("m2", State::Failed), ("m3", State::Deferred)] {
            let mut st = spool.status(id).unwrap().unwrap();
            st.state = state as i32;
            st.due_ms = if state == State::Deferred { submitted + 1000 } else { 0 };
            spool.update(st, state != State::Deferred).await.unwrap();
        }

        // Within the windows nothing goes.
        assert_eq!(spool.prune(submitted + 1000, 30 * day).await.unwrap(), Pruned::default());
        assert_eq!(spool.counts().unwrap(), (3, 3));

        // A day later the keys expire (and the key answers no more), statuses stay.
        let later = submitted + day + 60_000;
        assert_eq!(spool.prune(later, 30 * day).await.unwrap(), Pruned { statuses: 0, keys: 3 });
        assert_eq!(spool.counts().unwrap(), (3, 0));

        // Past retention, the final statuses go; the deferred one stays.
        let much_later = submitted + 31 * day;
        assert_eq!(spool.prune(much_later, 30 * day).await.unwrap(), Pruned { statuses: 2, keys: 0 });
        assert!(spool.status("m1").unwrap().is_none());
        assert!(spool.status("m3").unwrap().is_some());
        assert_eq!(spool.backlog().unwrap(), 1);
        drop(spool);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn an_idempotency_key_answers_the_first_id() {
        let path = temp_path("idem");
        let _ = std::fs::remove_file(&path);
        let spool = Spool::open(&path, settings()).unwrap();
        let key = Some("order-42".to_owned());
        assert_eq!(spool.accept(&message("a"), key.clone()).await.unwrap(), Accepted::New);
        assert_eq!(spool.accept(&message("b"), key).await.unwrap(), Accepted::Existing("a".into()));
        assert!(spool.status("b").unwrap().is_none());
        assert_eq!(spool.backlog().unwrap(), 1);
        drop(spool);
        let _ = std::fs::remove_file(&path);
    }

    #[tokio::test]
    async fn over_quota_refuses_new_mail_and_keeps_the_old() {
        let path = temp_path("quota");
        let _ = std::fs::remove_file(&path);
        let spool = Spool::open(&path, SpoolSettings { max_bytes: 1, cache_bytes: 4 << 20 }).unwrap();
        assert!(matches!(spool.accept(&message("a"), None).await, Err(SpoolError::Full { .. })));
        drop(spool);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_corrupt_file_is_reported_and_left_alone() {
        let path = temp_path("corrupt");
        std::fs::write(&path, b"this is not a spool, but someone's data").unwrap();
        let err = Spool::open(&path, settings()).err().expect("refused");
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"this is not a spool, but someone's data");
        let _ = std::fs::remove_file(&path);
    }
}
