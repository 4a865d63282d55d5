//! The embedded engine's one writer thread: group commit.
//!
//! Every write goes through a bounded channel to this thread. It takes every operation
//! waiting (up to [`MAX_BATCH`] operations or [`MAX_BATCH_BYTES`] of fields), applies
//! them in order in one write transaction, commits once (one fsync), and only then
//! answers each caller. An operation that fails on its own (unknown id, stale version,
//! merged document too large) writes nothing and does not affect the others; a storage
//! failure aborts the whole transaction, and every caller of the batch gets the error.
//!
//! After a storage failure, redb refuses every later operation until the database is
//! reopened; the thread does that (waiting for readers to let go of the old handle)
//! before its next batch, so a disk that was full and has room again needs no restart.
//!
//! Ids are made here, always above the last one. Waiting writes are bounded (256 MiB of
//! fields). A storage error is `Full` for `ENOSPC` and `EFBIG`, else `Unavailable`; while
//! the file is reopened, reads answer `Unavailable`.

use std::path::PathBuf;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::record::{self, pair_hash};
use super::{DOCS, POSTINGS, UNIQUE, UNIQUE_OF, open_database, storage_error};
use crate::redb_file::Reopenable;
use crate::store::{Document, Fields, Limits, StoreError};
use crate::text;
use crate::validate::{self, Request};

/// The most operations one commit takes.
pub(crate) const MAX_BATCH: usize = 1024;
/// A batch stops growing once its fields pass this size.
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;

pub(crate) type Reply = oneshot::Sender<Result<Document, StoreError>>;

pub(crate) enum Op {
    Put { fields: Fields },
    Create { unique_key: String, fields: Fields },
    Update { id: String, fields: Fields, remove: Vec<String>, expected_version: Option<u64> },
    Delete { id: String },
}

/// An operation with the caller waiting for it, and its share of the byte budget (given
/// back once answered).
pub(crate) struct Queued {
    pub(crate) op: Op,
    pub(crate) bytes: usize,
    pub(crate) reply: Reply,
    pub(crate) _permit: OwnedSemaphorePermit,
}

pub(crate) struct Writer {
    pub(crate) handle: Arc<Reopenable>,
    pub(crate) path: PathBuf,
    pub(crate) cache_bytes: usize,
    pub(crate) limits: Limits,
    /// The last id handed out; new ids are greater, whatever the clock does.
    pub(crate) last_id: u128,
}

impl Writer {
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Queued>) {
        let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.bytes;
            batch.push(first);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(q) => {
                        bytes += q.bytes;
                        batch.push(q);
                    }
                    Err(_) => break,
                }
            }
            let db = match self.database() {
                Ok(db) => db,
                Err(e) => {
                    for q in batch.drain(..) {
                        let _ = q.reply.send(Err(e.clone()));
                    }
                    continue;
                }
            };
            let ops: Vec<&Op> = batch.iter().map(|q| &q.op).collect();
            match self.apply(&db, &ops) {
                Ok(results) => {
                    for (q, r) in batch.drain(..).zip(results) {
                        let _ = q.reply.send(r);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, operations = batch.len(), "store commit failed; nothing of the batch was stored");
                    drop(db);
                    self.handle.set_broken();
                    for q in batch.drain(..) {
                        let _ = q.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// The open database, reopening it first if a storage failure closed it.
    fn database(&mut self) -> Result<Arc<Database>, StoreError> {
        let was_open = self.handle.current().is_some();
        match self.handle.current_or_reopen(|| open_database(&self.path, self.cache_bytes)) {
            Ok(db) => {
                if !was_open {
                    tracing::info!(path = %self.path.display(), "store reopened after a storage failure");
                }
                Ok(db)
            }
            Err(e) => Err(StoreError::Unavailable(format!("the store is closed after a storage failure: {e}"))),
        }
    }

    fn next_id(&mut self) -> String {
        let now = uuid::Uuid::now_v7().as_u128();
        self.last_id = now.max(self.last_id + 1);
        uuid::Uuid::from_u128(self.last_id).to_string()
    }

    /// Applies the batch in one transaction and commits. `Err` only for a storage
    /// failure, which stores nothing of the batch.
    fn apply(&mut self, db: &Database, ops: &[&Op]) -> Result<Vec<Result<Document, StoreError>>, StoreError> {
        let mut txn = db.begin_write().map_err(storage_error)?;
        // The allocator state is saved with each commit, so that opening after a crash
        // takes milliseconds instead of a walk of the whole file.
        txn.set_quick_repair(true);
        let mut results = Vec::with_capacity(ops.len());
        {
            let mut docs = txn.open_table(DOCS).map_err(storage_error)?;
            let mut postings = txn.open_table(POSTINGS).map_err(storage_error)?;
            let mut unique = txn.open_table(UNIQUE).map_err(storage_error)?;
            let mut unique_of = txn.open_table(UNIQUE_OF).map_err(storage_error)?;
            for op in ops {
                let result = match op {
                    Op::Put { fields } => Ok(insert(&mut docs, &mut postings, self.next_id(), fields)?),
                    Op::Create { unique_key, fields } => {
                        let holder =
                            unique.get(unique_key.as_str()).map_err(storage_error)?.map(|v| v.value().to_owned());
                        match holder {
                            Some(id) => Err(StoreError::AlreadyExists { id }),
                            None => {
                                let doc = insert(&mut docs, &mut postings, self.next_id(), fields)?;
                                unique.insert(unique_key.as_str(), doc.id.as_str()).map_err(storage_error)?;
                                unique_of.insert(doc.id.as_str(), unique_key.as_str()).map_err(storage_error)?;
                                Ok(doc)
                            }
                        }
                    }
                    Op::Update { id, fields, remove, expected_version } => {
                        let old = docs.get(id.as_str()).map_err(storage_error)?.map(|v| record::decode(v.value()));
                        match old {
                            None => Err(StoreError::NotFound(id.clone())),
                            Some(Err(e)) => Err(corrupt(id, e)),
                            Some(Ok((version, old_fields))) => match expected_version {
                                Some(expected) if *expected != version => Err(StoreError::VersionMismatch {
                                    id: id.clone(),
                                    expected: *expected,
                                    actual: version,
                                }),
                                _ => {
                                    let mut new_fields = old_fields.clone();
                                    for key in remove {
                                        new_fields.remove(key);
                                    }
                                    new_fields.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                                    match validate::check(Request::Merged { fields: &new_fields }, &self.limits) {
                                        Err(e) => Err(e),
                                        Ok(()) => {
                                            reindex(&mut postings, id, remove, fields, &old_fields, &new_fields)?;
                                            let new_version = version + 1;
                                            let bytes = record::encode(new_version, &new_fields);
                                            docs.insert(id.as_str(), bytes.as_slice()).map_err(storage_error)?;
                                            Ok(Document { id: id.clone(), version: new_version, fields: new_fields })
                                        }
                                    }
                                }
                            },
                        }
                    }
                    Op::Delete { id } => {
                        let old = docs.remove(id.as_str()).map_err(storage_error)?.map(|v| record::decode(v.value()));
                        match old {
                            None => Err(StoreError::NotFound(id.clone())),
                            Some(Err(e)) => Err(corrupt(id, e)),
                            Some(Ok((version, fields))) => {
                                for (k, v) in &text::all_pairs(&fields) {
                                    postings.remove((pair_hash(k, v), id.as_str())).map_err(storage_error)?;
                                }
                                let key =
                                    unique_of.remove(id.as_str()).map_err(storage_error)?.map(|v| v.value().to_owned());
                                if let Some(key) = key {
                                    unique.remove(key.as_str()).map_err(storage_error)?;
                                }
                                Ok(Document { id: id.clone(), version, fields })
                            }
                        }
                    }
                };
                results.push(result);
            }
        }
        txn.commit().map_err(storage_error)?;
        Ok(results)
    }
}

/// The index entries an update changes: the pairs of the keys it touches, compared in
/// place, and the searchable forms only when it touches a `_text.` field (a document's
/// other pairs cannot change, so a large one costs no more to update than a small one).
fn reindex(
    postings: &mut redb::Table<'_, ([u8; 16], &'static str), ()>,
    id: &str,
    remove: &[String],
    fields: &Fields,
    old: &Fields,
    new: &Fields,
) -> Result<(), StoreError> {
    let touched = || remove.iter().chain(fields.keys());
    for key in touched() {
        let (before, after) = (old.get(key), new.get(key));
        if before == after {
            continue;
        }
        if let Some(v) = before {
            postings.remove((pair_hash(key, v), id)).map_err(storage_error)?;
        }
        if let Some(v) = after {
            postings.insert((pair_hash(key, v), id), ()).map_err(storage_error)?;
        }
    }
    if touched().any(|k| k.starts_with(text::TEXT_PREFIX)) {
        let (before, after) = (text::index_pairs(old), text::index_pairs(new));
        for (k, v) in before.difference(&after) {
            postings.remove((pair_hash(k, v), id)).map_err(storage_error)?;
        }
        for (k, v) in after.difference(&before) {
            postings.insert((pair_hash(k, v), id), ()).map_err(storage_error)?;
        }
    }
    Ok(())
}

/// Stores a new document at version 1 with its index entries.
fn insert(
    docs: &mut redb::Table<'_, &'static str, &'static [u8]>,
    postings: &mut redb::Table<'_, ([u8; 16], &'static str), ()>,
    id: String,
    fields: &Fields,
) -> Result<Document, StoreError> {
    for (k, v) in &text::all_pairs(fields) {
        postings.insert((pair_hash(k, v), id.as_str()), ()).map_err(storage_error)?;
    }
    docs.insert(id.as_str(), record::encode(1, fields).as_slice()).map_err(storage_error)?;
    Ok(Document { id, version: 1, fields: fields.clone() })
}

fn corrupt(id: &str, reason: String) -> StoreError {
    StoreError::Unavailable(format!("document {id:?} is damaged on disk: {reason}"))
}

/// Ids are UUIDv7 strings; the greatest stored one, as a number.
pub(crate) fn last_id(db: &Database) -> Result<u128, StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let docs = txn.open_table(DOCS).map_err(storage_error)?;
    let last = docs.last().map_err(storage_error)?;
    Ok(last.and_then(|(k, _)| uuid::Uuid::parse_str(k.value()).ok()).map_or(0, |u| u.as_u128()))
}
