//! The spool's one writer thread: group commit.
//!
//! Every write goes through a bounded channel to this thread. It takes every operation
//! waiting (up to [`MAX_BATCH`]), applies them in order in one write transaction
//! ([`super::apply`]), commits once (one fsync), and only then publishes the changed
//! statuses and answers each caller. An operation refused on its own (an idempotency key
//! already used, the quota reached) does not affect the others; a storage failure aborts
//! the whole transaction, and every caller of the batch gets the error
//! ([`SpoolError::DiskFull`] for a full disk or file size limit, else
//! [`SpoolError::Storage`]).
//!
//! After a failed commit redb refuses every later write on that handle, so the writer
//! marks the file broken (reads answer [`SpoolError::Recovering`]) and reopens it before
//! its next batch (`backend_server::redb_file`): a disk that has room again needs no
//! restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTable, ReadableTableMetadata, WriteTransaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::record::{MessageRecord, Status, SuppressionRecord};
use super::schema::Tables;
use super::{Accepted, Pruned, SpoolError, Stored, SuppressionRules, write_failure};
use crate::events::Batch;
use backend_server::redb_file::{Reopen, Reopenable};

/// The most operations one commit takes.
pub(crate) const MAX_BATCH: usize = 4096;

type Answer<T> = oneshot::Sender<Result<T, SpoolError>>;

/// One write, with the caller waiting for its answer (except [`Op::Health`] and
/// [`Op::Reopen`]).
pub(crate) enum Op {
    /// Nothing to write: a read found the file closed after a failure, and this makes
    /// the writer open it again (and commit an empty transaction) without waiting for
    /// the next write.
    Reopen,
    Accept {
        record: MessageRecord,
        tenant: String,
        key: Option<String>,
        not_before_ms: Option<u64>,
        /// A campaign's copy: its ledger entry is written with it.
        ledger: Option<super::ledger::LedgerKey>,
        reply: Answer<Accepted>,
    },
    Skip {
        key: super::ledger::LedgerKey,
        why: String,
        reply: Answer<()>,
    },
    Cursor {
        campaign: String,
        cursor: String,
        reply: Answer<()>,
    },
    Update {
        status: Status,
        drop_body: bool,
        reply: Answer<()>,
    },
    Health {
        provider: String,
        encoded: Vec<u8>,
    },
    Prune {
        now_ms: u64,
        keep_status_ms: u64,
        reply: Answer<Pruned>,
    },
    Events {
        batch: Batch,
        rules: SuppressionRules,
        now_ms: u64,
        reply: Answer<Stored>,
    },
    Suppress {
        address: String,
        record: SuppressionRecord,
        reply: Answer<()>,
    },
    Unsuppress {
        address: String,
        tenant: String,
        reply: Answer<bool>,
    },
    Outbox {
        webhook: String,
        state: Option<super::record::OutboxState>,
        reply: Answer<()>,
    },
}

/// The answer owed to one operation of a batch, sent after the commit.
pub(crate) enum Reply {
    Accept(Answer<Accepted>, Result<Accepted, SpoolError>),
    Done(Answer<()>, Result<(), SpoolError>),
    Prune(Answer<Pruned>, Result<Pruned, SpoolError>),
    Events(Answer<Stored>, Result<Stored, SpoolError>),
    Removed(Answer<bool>, Result<bool, SpoolError>),
}

impl Reply {
    /// The operation's own result, unless the commit failed.
    fn send(self, committed: &Result<(), SpoolError>) {
        match self {
            Reply::Accept(tx, r) => answer(tx, committed, r),
            Reply::Done(tx, r) => answer(tx, committed, r),
            Reply::Prune(tx, r) => answer(tx, committed, r),
            Reply::Events(tx, r) => answer(tx, committed, r),
            Reply::Removed(tx, r) => answer(tx, committed, r),
        }
    }
}

fn answer<T>(tx: Answer<T>, committed: &Result<(), SpoolError>, result: Result<T, SpoolError>) {
    // A caller that stopped waiting is fine: its change is stored all the same.
    let _ = tx.send(committed.clone().and(result));
}

impl Op {
    /// The answer to an operation that was never applied.
    fn refused(self, err: &SpoolError) -> Option<Reply> {
        let err = err.clone();
        match self {
            Op::Accept { reply, .. } => Some(Reply::Accept(reply, Err(err))),
            Op::Update { reply, .. }
            | Op::Suppress { reply, .. }
            | Op::Outbox { reply, .. }
            | Op::Skip { reply, .. }
            | Op::Cursor { reply, .. } => Some(Reply::Done(reply, Err(err))),
            Op::Prune { reply, .. } => Some(Reply::Prune(reply, Err(err))),
            Op::Events { reply, .. } => Some(Reply::Events(reply, Err(err))),
            Op::Unsuppress { reply, .. } => Some(Reply::Removed(reply, Err(err))),
            Op::Health { .. } | Op::Reopen => None,
        }
    }
}

/// What a batch did, answered and published once its commit is known.
#[derive(Default)]
pub(crate) struct Applied {
    pub(crate) replies: Vec<Reply>,
    /// New and changed statuses, in order, for [`super::Spool::subscribe`].
    pub(crate) changed: Vec<Status>,
}

/// Figures kept up to date by the writer after each commit, so that reading them
/// (metrics scrapes, quota checks) never touches the disk.
pub(crate) struct Gauges {
    /// The spool file's size in bytes.
    pub(crate) size: AtomicU64,
    /// Entries in the `due` table: messages queued, being sent or deferred.
    pub(crate) backlog: AtomicU64,
    /// When the oldest unfinished message was submitted (ms); `u64::MAX`: none.
    pub(crate) oldest_unfinished: AtomicU64,
}

impl Gauges {
    pub(crate) fn new(path: &Path, figures: Figures) -> Self {
        let gauges = Gauges {
            size: AtomicU64::new(file_size(path)),
            backlog: AtomicU64::new(0),
            oldest_unfinished: AtomicU64::new(u64::MAX),
        };
        gauges.store(figures);
        gauges
    }

    fn store(&self, figures: Figures) {
        self.backlog.store(figures.backlog, Ordering::Relaxed);
        self.oldest_unfinished.store(figures.oldest_unfinished.unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// The backlog and oldest unfinished message of a transaction's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Figures {
    backlog: u64,
    oldest_unfinished: Option<u64>,
}

impl Figures {
    /// Two cheap reads: a table's length is kept in its header, `first` is one descent.
    pub(crate) fn read(tables: &Tables<'_>) -> Result<Self, redb::StorageError> {
        let backlog = tables.due.len()?;
        let oldest_unfinished = tables.unfinished.first()?.map(|(k, _)| k.value().0);
        Ok(Figures { backlog, oldest_unfinished })
    }
}

pub(crate) fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

pub(crate) struct Writer {
    pub(crate) file: Arc<Reopenable>,
    pub(crate) open: super::Opener,
    pub(crate) events: broadcast::Sender<Status>,
    pub(crate) path: PathBuf,
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) quota: u64,
}

impl Writer {
    /// Batches, commits and answers until every [`super::Spool`] handle is gone.
    pub(crate) fn run(self, mut rx: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let (applied, committed) = self.commit(batch.drain(..));
            if committed.is_ok() {
                for status in applied.changed {
                    // No subscriber is fine.
                    let _ = self.events.send(status);
                }
            }
            for reply in applied.replies {
                reply.send(&committed);
            }
            self.gauges.size.store(file_size(&self.path), Ordering::Relaxed);
        }
    }

    /// Applies a batch in one transaction and commits it. Each operation gets its own
    /// result; the commit's result applies to all.
    fn commit(&self, ops: impl Iterator<Item = Op>) -> (Applied, Result<(), SpoolError>) {
        let mut applied = Applied::default();
        let db = match self.reopened() {
            Ok(db) => db,
            Err(err) => {
                applied.replies.extend(ops.filter_map(|op| op.refused(&err)));
                return (applied, Err(err));
            }
        };
        let committed = match db.begin_write() {
            Ok(txn) => match self.apply_all(&txn, ops, &mut applied) {
                Ok(figures) => txn.commit().map_err(write_failure).map(|()| self.gauges.store(figures)),
                Err(e) => Err(write_failure(e)),
            },
            Err(e) => {
                let err = write_failure(e);
                applied.replies.extend(ops.filter_map(|op| op.refused(&err)));
                Err(err)
            }
        };
        if let Err(e) = &committed {
            tracing::error!(error = %e, "spool commit failed; the batch was not stored; reopening the file");
            // redb refuses every later write on this handle: open the file again now,
            // so that reads go on, or else before the next batch.
            drop(db);
            self.file.set_broken();
            let _ = self.reopened();
        }
        (applied, committed)
    }

    /// The open file, reopening it first after a failed commit. A file that cannot be
    /// opened yet answers [`SpoolError::DiskFull`] when the disk is full (opening after
    /// a failure may need to write), else [`SpoolError::Recovering`].
    fn reopened(&self) -> Result<Arc<Database>, SpoolError> {
        let was_open = self.file.current().is_some();
        match self.file.current_or_reopen(&self.open) {
            Ok(db) => {
                if !was_open {
                    tracing::info!(path = %self.path.display(), "spool reopened after a storage failure");
                }
                Ok(db)
            }
            Err(e) => {
                tracing::error!(reason = %e, "cannot reopen the spool after a storage failure");
                let full = match e {
                    Reopen::Failed(e) => backend_server::redb_file::is_full(&e.into()),
                    Reopen::Busy => false,
                };
                Err(if full {
                    SpoolError::DiskFull("cannot open the spool again".into())
                } else {
                    SpoolError::Recovering
                })
            }
        }
    }

    /// Applies every operation in order. On a storage error the transaction is given
    /// up: every operation of the batch is answered with the commit's error.
    fn apply_all(
        &self,
        txn: &WriteTransaction,
        mut ops: impl Iterator<Item = Op>,
        applied: &mut Applied,
    ) -> Result<Figures, redb::Error> {
        let mut tables = match Tables::open(txn) {
            Ok(tables) => tables,
            Err(e) => {
                applied.replies.extend(ops.filter_map(|op| op.refused(&SpoolError::Closed)));
                return Err(e.into());
            }
        };
        // Checked once a batch: the quota is a bound on growth, not an exact size.
        let over_quota = file_size(&self.path) >= self.quota;
        while let Some(op) = ops.next() {
            let done = match op {
                Op::Accept { reply, .. } if over_quota => {
                    applied.replies.push(Reply::Accept(reply, Err(self.full())));
                    Ok(())
                }
                op => applied.apply(&mut tables, op),
            };
            if let Err(e) = done {
                applied.replies.extend(ops.filter_map(|op| op.refused(&SpoolError::Closed)));
                return Err(e);
            }
        }
        Ok(Figures::read(&tables)?)
    }

    fn full(&self) -> SpoolError {
        SpoolError::Full { used: file_size(&self.path), quota: self.quota }
    }
}
