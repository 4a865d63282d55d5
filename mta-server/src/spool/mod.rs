//! The spool: every accepted message, its status and its schedule, in one redb file.
//!
//! Why redb: an embedded, pure-Rust, single-file store with ACID transactions whose
//! commits are checksummed and fsync'd (`Durability::Immediate`), so a crash or kill -9
//! leaves either the old or the new state, never a torn one; a corrupt file is reported
//! when opened, not silently emptied. It compiles fast and needs no C toolchain.
//!
//! Tables (`schema.rs`), sixteen of them:
//! - `messages`: id → [`record::MessageRecord`] (removed once the message is sent or
//!   failed: the body is no longer needed);
//! - `statuses`: id → [`record::Status`];
//! - `due`: (due time in ms, id) → (): the schedule. Delivery reads it in order from the
//!   start up to "now", so finding work costs what is due, not what is queued;
//! - `idempotency`: key → (id, accepted at ms), and `idempotency_by_time`:
//!   (accepted at ms, key) → (), so that expired keys are found without a scan;
//! - `health`: provider name → encoded provider health;
//! - `webhook_seen` (and `webhook_seen_by_time`: (seen at ms, key) → (), for pruning):
//!   provider event ids and Mailgun tokens already taken, so a webhook delivered twice
//!   stores its events once (`webhook.rs`);
//! - `suppressions`: lowercased address → [`record::SuppressionRecord`]
//!   (`suppression.rs`);
//! - `unfinished`: (submitted at ms, or the scheduled time when later, id) → () for
//!   every message not yet sent or failed,
//!   so the age of the oldest is one read;
//! - `event_log`, `event_log_by_tenant`, `event_seq`: each tenant's changes and provider
//!   events in order, paged with a cursor (`event_log.rs`);
//! - `outbox`: webhook id → how far this node delivered the event log to it;
//! - `ledger` and `campaigns`: the campaigns' per-subscriber ledger, written in the
//!   transaction of each copy, and each campaign's figures and cursor (`ledger.rs`).
//!
//! The modules:
//! - [`record`]: the stored records (prost), apart from the wire types;
//! - `schema.rs`: the table definitions and time windows;
//! - `read.rs`: reads, off the async threads;
//! - `writer.rs`: the group-commit writer thread: batching, commit, answering;
//! - `apply.rs`: what each write does to the tables (accept, update, health), with
//!   `prune.rs`, `webhook.rs` (events) and `suppression.rs` (the list and its rule).
//!
//! Group commit: one writer thread owns every write. It takes all operations waiting in
//! its channel (up to `MAX_BATCH`, 4096), applies them in one transaction, commits once
//! (one fsync), then answers each caller. Concurrent submissions thus share a commit,
//! and a caller is answered only once its change is on disk.
//!
//! Reads never run on an async worker thread: they are `async` and run on tokio's
//! blocking pool, or named `*_blocking` for use inside `spawn_blocking`. The backlog,
//! the oldest unfinished message and the file size are figures the writer keeps after
//! each commit, read without touching the disk.
//!
//! Retention (`prune.rs`): once a minute, `Spool::prune` removes idempotency keys past
//! their 24 hours and the statuses of sent or failed messages older than the configured
//! retention, oldest first (ids are UUIDv7, so id order is submission order), at most
//! `PRUNE_BATCH` (2048) of each kind per commit, so that submissions never wait long
//! behind it and the file stops growing under a steady load. It also forgets webhook
//! event ids and Mailgun tokens after 3 days (`WEBHOOK_MEMORY_MS`).
//!
//! The page cache (`spool.cache_bytes`) bounds the memory the spool uses, whatever the
//! backlog.
//!
//! Events are appended to a message's status by the writer only, so a delivery round's
//! later update of the status keeps them.
//!
//! At least once: a submission can be committed and the process die before the answer
//! leaves; the caller saw an error and the message is still delivered. Retry with an
//! idempotency key (kept 24 hours) to be safe.

mod apply;
mod event_log;
pub(crate) mod ledger;
mod prune;
mod read;
pub mod record;
mod schema;
mod suppression;
mod webhook;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redb::{Database, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use backend_server::redb_file::Reopenable;

use crate::config::SpoolConfig;
use crate::events::Batch;
use crate::message::Message;
use record::{MessageRecord, Status, SuppressionRecord};
use schema::Tables;
use writer::{Figures, Gauges, MAX_BATCH, Op, Writer};

pub(crate) use prune::Pruned;
pub(crate) use schema::PRUNE_BATCH;
pub use suppression::SuppressionRules;
pub(crate) use webhook::Stored;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full: {used} bytes on disk, quota {quota} bytes")]
    Full { used: u64, quota: u64 },
    #[error("cannot open the spool {path}: {reason}; the file was left untouched")]
    Open { path: PathBuf, reason: String },
    #[error("the spool's disk is full: {0}")]
    DiskFull(String),
    #[error("spool storage failed: {0}")]
    Storage(String),
    /// The spool file is being reopened after a failed commit; try again shortly.
    #[error("the spool is recovering from a storage failure; try again")]
    Recovering,
    #[error("the spool is shutting down")]
    Closed,
}

fn storage(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(e.to_string())
}

/// A failed write: [`SpoolError::DiskFull`] when the disk (or the file size limit) is
/// full, else [`SpoolError::Storage`].
fn write_failure(e: impl Into<redb::Error>) -> SpoolError {
    let e: redb::Error = e.into();
    if backend_server::redb_file::is_full(&e) { SpoolError::DiskFull(e.to_string()) } else { storage(e) }
}

/// Opens the spool's file again; the writer calls it after a failed commit.
pub(crate) type Opener = Box<dyn Fn() -> Result<Database, redb::DatabaseError> + Send>;

/// What `Spool::accept` did.
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

impl From<&SpoolConfig> for SpoolSettings {
    fn from(c: &SpoolConfig) -> Self {
        SpoolSettings { max_bytes: c.max_bytes, cache_bytes: c.cache_bytes }
    }
}

/// A handle on the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    file: Arc<Reopenable>,
    tx: mpsc::Sender<Op>,
    events: broadcast::Sender<Status>,
    gauges: Arc<Gauges>,
    quota: u64,
}

impl Spool {
    /// Opens (or creates) the spool file and starts its writer thread. A file that is
    /// not a valid spool is reported and left as it is. Blocking (it may create the
    /// tables, one commit): called once, at start.
    pub fn open(path: &Path, settings: SpoolSettings) -> Result<Spool, SpoolError> {
        let (file, cache) = (path.to_owned(), settings.cache_bytes);
        Self::open_with(path, settings, Box::new(move || open_file(&file, cache)))
    }

    /// [`Spool::open`] with the file opened (and reopened after a failure) by `open`.
    pub(crate) fn open_with(path: &Path, settings: SpoolSettings, open: Opener) -> Result<Spool, SpoolError> {
        let fail = |reason: String| SpoolError::Open { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = open().map_err(|e| fail(e.to_string()))?;
        let figures = create_tables(&db).map_err(|e| fail(e.to_string()))?;
        let file = Arc::new(Reopenable::new(db));
        let gauges = Arc::new(Gauges::new(path, figures));
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        let (events, _) = broadcast::channel(4096);
        let writer = Writer {
            events: events.clone(),
            file: file.clone(),
            open,
            path: path.to_owned(),
            gauges: gauges.clone(),
            quota: settings.max_bytes,
        };
        std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        Ok(Spool { file, tx, events, gauges, quota: settings.max_bytes })
    }

    /// The open file, for a read; [`SpoolError::Recovering`] while the writer reopens it.
    fn db(&self) -> Result<Arc<Database>, SpoolError> {
        self.file.current().ok_or_else(|| {
            // Full channel: writes are queued, and the next batch reopens anyway.
            let _ = self.tx.try_send(Op::Reopen);
            SpoolError::Recovering
        })
    }

    /// Sends `op` to the writer and waits until it is committed (or refused).
    async fn write<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T, SpoolError>>) -> Op) -> Result<T, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(op(reply)).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Stores a new message, durably, and schedules it for delivery now, or for
    /// `not_before_ms` when given (a time to come: it waits in the spool until then,
    /// and its maximum age counts from then). With an idempotency key already used in
    /// the last 24 hours, stores nothing and answers the first message's id. The message
    /// is `tenant`'s; idempotency keys are the caller's to scope (service.rs prefixes
    /// them with the tenant). The tests' shorthand for [`Spool::accept_for`].
    #[cfg(test)]
    pub(crate) async fn accept(
        &self,
        message: &Message,
        tenant: &str,
        key: Option<String>,
        not_before_ms: Option<u64>,
    ) -> Result<Accepted, SpoolError> {
        self.accept_for(message, tenant, key, not_before_ms, false, None).await
    }

    /// [`Spool::accept`], with the status flagged `possible_duplicate` from the start
    /// when `possible_duplicate` (a submission retried here after an ambiguous failure
    /// on another node), and for a campaign's copy when `ledger` names one: then
    /// its ledger entry is written in the same transaction, and a (campaign,
    /// subscriber) that has an entry already answers that copy's id and stores nothing.
    pub(crate) async fn accept_for(
        &self,
        message: &Message,
        tenant: &str,
        key: Option<String>,
        not_before_ms: Option<u64>,
        possible_duplicate: bool,
        ledger: Option<ledger::LedgerKey>,
    ) -> Result<Accepted, SpoolError> {
        let used = self.bytes_on_disk();
        if used >= self.quota {
            return Err(SpoolError::Full { used, quota: self.quota });
        }
        let record = MessageRecord { possible_duplicate, ..MessageRecord::from(message) };
        self.write(|reply| Op::Accept { record, tenant: tenant.to_owned(), key, not_before_ms, ledger, reply }).await
    }

    /// Records that the subscriber of `key` gets no copy of the campaign, for `why`
    /// (unsubscribed, suppressed, refused): durable when answered.
    pub(crate) async fn skip_subscriber(&self, key: ledger::LedgerKey, why: String) -> Result<(), SpoolError> {
        self.write(|reply| Op::Skip { key, why, reply }).await
    }

    /// Moves `campaign`'s cursor past `cursor`, durably.
    pub(crate) async fn move_cursor(&self, campaign: String, cursor: String) -> Result<(), SpoolError> {
        self.write(|reply| Op::Cursor { campaign, cursor, reply }).await
    }

    /// Replaces a message's status, durably, moving its place in the schedule to
    /// `status.due_ms` (0: off the schedule). With `drop_body`, the message body is
    /// removed too.
    pub(crate) async fn update(&self, status: Status, drop_body: bool) -> Result<(), SpoolError> {
        self.write(|reply| Op::Update { status, drop_body, reply }).await
    }

    /// Removes idempotency keys older than their window and the statuses of messages
    /// that were sent or failed and submitted more than `keep_status_ms` before
    /// `now_ms`, at most [`PRUNE_BATCH`] of each in one commit: call again while it
    /// answers full batches.
    pub(crate) async fn prune(&self, now_ms: u64, keep_status_ms: u64) -> Result<Pruned, SpoolError> {
        self.write(|reply| Op::Prune { now_ms, keep_status_ms, reply }).await
    }

    /// Stores a verified webhook's events with their messages' statuses, once each,
    /// and suppresses the addresses of hard bounces and complaints.
    pub(crate) async fn record_events(
        &self,
        batch: Batch,
        rules: SuppressionRules,
        now_ms: u64,
    ) -> Result<Stored, SpoolError> {
        self.write(|reply| Op::Events { batch, rules, now_ms, reply }).await
    }

    /// Adds or replaces a suppression of `address` (lowercased by the caller) for
    /// `record.tenant` (empty: every tenant).
    pub(crate) async fn suppress(&self, address: String, record: SuppressionRecord) -> Result<(), SpoolError> {
        self.write(|reply| Op::Suppress { address, record, reply }).await
    }

    /// Removes `tenant`'s suppression of `address` (empty: the one for every tenant);
    /// false when there was none.
    pub(crate) async fn unsuppress(&self, address: String, tenant: String) -> Result<bool, SpoolError> {
        self.write(|reply| Op::Unsuppress { address, tenant, reply }).await
    }

    /// Stores how far a webhook got (`None`: forgets it, for a deleted webhook).
    pub(crate) async fn save_outbox(
        &self,
        webhook: &str,
        state: Option<record::OutboxState>,
    ) -> Result<(), SpoolError> {
        let webhook = webhook.to_owned();
        self.write(|reply| Op::Outbox { webhook, state, reply }).await
    }

    /// Records a provider's health; written with the next commit.
    pub(crate) async fn save_health(&self, provider: &str, encoded: Vec<u8>) {
        let _ = self.tx.send(Op::Health { provider: provider.to_owned(), encoded }).await;
    }

    /// Every status change from now on, once it is on disk. A receiver that falls more
    /// than 4096 changes behind skips ahead (and is told it lagged).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Status> {
        self.events.subscribe()
    }

    /// The number of messages on the schedule (queued, sending or deferred), as of the
    /// last commit. Reads no disk; never fails (a `Result` for its callers' sake).
    pub(crate) fn backlog(&self) -> Result<u64, SpoolError> {
        Ok(self.gauges.backlog.load(Ordering::Relaxed))
    }

    /// When the oldest message not yet sent or failed was submitted (ms), if any, as of
    /// the last commit. Reads no disk; never fails (a `Result` for its callers' sake).
    pub(crate) fn oldest_unfinished(&self) -> Result<Option<u64>, SpoolError> {
        let at = self.gauges.oldest_unfinished.load(Ordering::Relaxed);
        Ok((at != u64::MAX).then_some(at))
    }

    /// The spool file's size after the last commit.
    pub(crate) fn bytes_on_disk(&self) -> u64 {
        self.gauges.size.load(Ordering::Relaxed)
    }
}

/// Opens (or creates) the spool's file.
fn open_file(path: &Path, cache_bytes: usize) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(cache_bytes).create(path)
}

/// Creates the tables up front, so readers never meet a missing one, and answers the
/// figures of what the file holds.
fn create_tables(db: &Database) -> Result<Figures, redb::Error> {
    let txn: WriteTransaction = db.begin_write()?;
    let figures = Figures::read(&Tables::open(&txn)?)?;
    txn.commit()?;
    Ok(figures)
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod tests;
