//! The embedded durable engine, the default: one redb file.
//!
//! Tables:
//! - `documents`: id → version and fields (`record.rs`);
//! - `postings`: (hash of a `(key, value)` pair, id) → (): the inverted index. A lookup
//!   reads the ids of its pairs in id order from the page token on, intersecting the
//!   pairs by leapfrogging (each step a B-tree seek), so its cost follows the answer,
//!   not the store;
//! - `unique`: unique key → id, and `unique_of`: id → unique key, for
//!   [`Store::create`]: written in the transaction that stores the document, removed in
//!   the one that deletes it, so a crash never leaves a key without its document or the
//!   reverse. Files made before these tables gain them, empty, when opened;
//! - `meta`: the format marker, so that another redb file (the MTA's spool) is refused.
//!
//! Writes go through the group-commit thread in `writer.rs`: acknowledged only once
//! committed with `Durability::Immediate` (checksummed, fsync'd), so kill -9 loses no
//! acknowledged write and leaves no torn document. Reads run on tokio's blocking pool
//! against the last committed snapshot. A file that redb cannot open, or that is not a
//! BitMail store, is reported at start and left untouched.
//!
//! Why redb: the crate and version the MTA's spool uses (one version of each crate in the
//! workspace), embedded and pure Rust (no C toolchain, no server to run), ACID with
//! checksummed, fsync'd commits, typed tables with tuple keys (what an inverted index
//! needs), and a bounded page cache (`embedded.cache_bytes`). Commits use redb's quick
//! repair (allocator state saved with each commit), so opening after a crash takes
//! milliseconds instead of a walk of the whole file; the commit time that costs is spread
//! by group commit. Tested with 50 SIGKILLs of a writer process and with a file size
//! limit (`tests/tests/suite/store_crash.rs`).

mod record;
mod writer;

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::memory::query_groups;
use crate::redb_file::{self, Reopenable};
use crate::store::{Count, Document, Fields, Limits, Page, Query, Store, StoreError};
use crate::validate::{self, Request};
use crate::walk::{self, Postings};
use record::pair_hash;
use writer::{Op, Queued, Writer};

const DOCS: TableDefinition<&str, &[u8]> = TableDefinition::new("documents");
const POSTINGS: TableDefinition<([u8; 16], &str), ()> = TableDefinition::new("postings");
const UNIQUE: TableDefinition<&str, &str> = TableDefinition::new("unique");
const UNIQUE_OF: TableDefinition<&str, &str> = TableDefinition::new("unique_of");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FORMAT: &[u8] = b"bitmail-store/1";

/// Fields queued for the writer at most, in KiB: bounds the memory of waiting writes.
const QUEUE_BUDGET_KIB: usize = 256 << 10;

/// The embedded engine. Cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    handle: Arc<Reopenable>,
    tx: mpsc::Sender<Queued>,
    writer: std::thread::JoinHandle<()>,
    budget: Arc<Semaphore>,
    limits: Limits,
}

/// Maps a redb error: a full disk (or file size limit) is [`StoreError::Full`], anything
/// else [`StoreError::Unavailable`].
fn storage_error(e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    if redb_file::is_full(&e) {
        return StoreError::Full(format!("cannot write the store: {e}"));
    }
    StoreError::Unavailable(format!("storage failed: {e}"))
}

/// Opens (or creates) the file, checks it is a BitMail store, creates the tables.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let db = Database::builder().set_cache_size(cache_bytes).create(path).map_err(|e| e.to_string())?;
    let mut txn = db.begin_write().map_err(|e| e.to_string())?;
    txn.set_quick_repair(true);
    {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let format = meta.get("format").map_err(|e| e.to_string())?.map(|v| v.value().to_vec());
        match format {
            Some(f) if f == FORMAT => {}
            Some(f) => return Err(format!("unknown store format {:?}", String::from_utf8_lossy(&f))),
            None => {
                let others: Vec<String> = txn
                    .list_tables()
                    .map_err(|e| e.to_string())?
                    .map(|t| t.name().to_owned())
                    .filter(|n| n != "meta")
                    .collect();
                if !others.is_empty() {
                    return Err(format!("not a BitMail store (it holds the tables {others:?})"));
                }
                meta.insert("format", FORMAT).map_err(|e| e.to_string())?;
            }
        }
        txn.open_table(DOCS).map_err(|e| e.to_string())?;
        txn.open_table(POSTINGS).map_err(|e| e.to_string())?;
        txn.open_table(UNIQUE).map_err(|e| e.to_string())?;
        txn.open_table(UNIQUE_OF).map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())?;
    Ok(db)
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path` and starts its writer thread. A file that
    /// is damaged or not a BitMail store is reported ([`StoreError::Unavailable`] naming
    /// the file) and left as it is: never emptied, never overwritten.
    pub fn open(path: &Path, cache_bytes: usize, limits: Limits) -> Result<Self, StoreError> {
        let fail = |reason: String| {
            StoreError::Unavailable(format!(
                "cannot open the store {}: {reason}; the file was left untouched",
                path.display()
            ))
        };
        let db = open_database(path, cache_bytes).map_err(fail)?;
        let last_id = writer::last_id(&db)?;
        let handle = Arc::new(Reopenable::new(db));
        let (tx, rx) = mpsc::channel(writer::MAX_BATCH);
        let writer = Writer { handle: handle.clone(), path: PathBuf::from(path), cache_bytes, limits, last_id };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| fail(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { handle, tx, writer, budget: Arc::new(Semaphore::new(QUEUE_BUDGET_KIB)), limits })
    }

    /// Finishes the writes already queued, then closes the file (so that another process
    /// may open it). Dropping the store does the same without waiting.
    pub fn close(self) {
        let Self { handle, tx, writer, .. } = self;
        drop(tx);
        let _ = writer.join();
        drop(handle);
    }

    /// Queues a write and waits until it is committed (or refused).
    async fn write(&self, op: Op, bytes: usize) -> Result<Document, StoreError> {
        let closed = || StoreError::Unavailable("the store is shutting down".into());
        let kib = (bytes / 1024 + 1).min(QUEUE_BUDGET_KIB) as u32;
        let permit = self.budget.clone().acquire_many_owned(kib).await.map_err(|_| closed())?;
        let (reply, answer) = oneshot::channel();
        self.tx.send(Queued { op, bytes, reply, _permit: permit }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs a read on the blocking pool against the current database.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.handle.current().ok_or_else(|| {
            StoreError::Unavailable("the store is reopening after a storage failure; try again".into())
        })?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn put(&self, fields: Fields) -> Result<Document, StoreError> {
        validate::check(Request::Put { fields: &fields }, &self.limits)?;
        let bytes = validate::document_bytes(&fields);
        self.write(Op::Put { fields }, bytes).await
    }

    async fn create(&self, unique_key: &str, fields: Fields) -> Result<Document, StoreError> {
        validate::check(Request::Create { unique_key, fields: &fields }, &self.limits)?;
        let bytes = validate::document_bytes(&fields) + unique_key.len();
        self.write(Op::Create { unique_key: unique_key.to_owned(), fields }, bytes).await
    }

    async fn get(&self, id: &str) -> Result<Document, StoreError> {
        validate::check(Request::Get { id }, &self.limits)?;
        let id = id.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(storage_error)?;
            let docs = txn.open_table(DOCS).map_err(storage_error)?;
            load(&docs, &id)?.ok_or(StoreError::NotFound(id))
        })
        .await
    }

    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError> {
        validate::check(Request::Update { id, fields: &fields, remove: &remove }, &self.limits)?;
        let bytes = validate::document_bytes(&fields);
        self.write(Op::Update { id: id.to_owned(), fields, remove, expected_version }, bytes).await
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        validate::check(Request::Delete { id }, &self.limits)?;
        self.write(Op::Delete { id: id.to_owned() }, id.len()).await.map(|_| ())
    }

    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        validate::check(Request::Lookup { subset, limit, page_token }, &self.limits)?;
        let subset = subset.clone();
        let token = page_token.map(str::to_owned);
        self.read(move |db| lookup(db, &subset, limit, token.as_deref())).await
    }

    async fn find(&self, query: &Query, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        validate::check(Request::Find { query, limit, page_token }, &self.limits)?;
        let query = query.clone();
        let token = page_token.map(str::to_owned);
        self.read(move |db| find(db, &query, limit, token.as_deref())).await
    }

    async fn count(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
        validate::check(Request::Count { subset, at_most }, &self.limits)?;
        let subset = subset.clone();
        self.read(move |db| count(db, &subset, at_most)).await
    }
}

/// The postings table, as the leapfrog walk seeks in it.
struct Index<T>(T);

impl<T: ReadableTable<([u8; 16], &'static str), ()>> Postings for Index<T> {
    type List = [u8; 16];

    fn seek(&self, hash: &[u8; 16], from: Bound<&str>, newest: bool) -> Result<Option<String>, StoreError> {
        if !newest {
            return seek(&self.0, *hash, from);
        }
        // Every id sorts before U+10FFFF, so this bound is "the end of this pair's ids".
        let end = match from {
            Bound::Included(id) => Bound::Included((*hash, id)),
            Bound::Excluded(id) => Bound::Excluded((*hash, id)),
            Bound::Unbounded => Bound::Included((*hash, "\u{10FFFF}")),
        };
        let start = Bound::Included((*hash, ""));
        let mut range = self.0.range::<([u8; 16], &str)>((start, end)).map_err(storage_error)?;
        match range.next_back() {
            Some(entry) => {
                let (key, _) = entry.map_err(storage_error)?;
                Ok(Some(key.value().1.to_owned()))
            }
            None => Ok(None),
        }
    }
}

fn find(db: &Database, query: &Query, limit: usize, token: Option<&str>) -> Result<Page, StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let docs = txn.open_table(DOCS).map_err(storage_error)?;
    let start = token.map_or(Bound::Unbounded, Bound::Excluded);
    let mut documents: Vec<Document> = Vec::new();
    let mut more = false;
    let groups: Vec<Vec<[u8; 16]>> =
        query_groups(query).iter().map(|g| g.iter().map(|(k, v)| pair_hash(k, v)).collect()).collect();
    if groups.is_empty() {
        let range = if query.newest_first {
            docs.range::<&str>((Bound::Unbounded, start))
        } else {
            docs.range::<&str>((start, Bound::Unbounded))
        }
        .map_err(storage_error)?;
        let entries: Box<dyn Iterator<Item = _>> =
            if query.newest_first { Box::new(range.rev()) } else { Box::new(range) };
        for entry in entries {
            if documents.len() == limit {
                more = true;
                break;
            }
            let (k, _) = entry.map_err(storage_error)?;
            if let Some(doc) = load(&docs, k.value())? {
                documents.push(doc);
            }
        }
    } else {
        let index = Index(txn.open_table(POSTINGS).map_err(storage_error)?);
        walk::walk(&index, &groups, query.newest_first, start, |id| {
            // Two pairs may share a hash: the subset is checked on the document itself
            // (a search word's forms are trusted to their 128-bit hash).
            let Some(doc) = load(&docs, id)? else {
                return Ok(true);
            };
            if !query.subset.iter().all(|(k, v)| doc.fields.get(k) == Some(v)) {
                return Ok(true);
            }
            if documents.len() == limit {
                more = true;
                return Ok(false);
            }
            documents.push(doc);
            Ok(true)
        })?;
    }
    let next_page_token = if more { documents.last().map(|d| d.id.clone()) } else { None };
    Ok(Page { documents, next_page_token })
}

fn count(db: &Database, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    if subset.is_empty() {
        let docs = txn.open_table(DOCS).map_err(storage_error)?;
        let n = usize::try_from(docs.len().map_err(storage_error)?).unwrap_or(usize::MAX);
        return Ok(Count { count: n.min(at_most), capped: n > at_most });
    }
    let index = Index(txn.open_table(POSTINGS).map_err(storage_error)?);
    if let [(k, v)] = subset.iter().collect::<Vec<_>>()[..] {
        // One pair: its ids are one range of the index, read in order without seeks.
        let hash = pair_hash(k, v);
        let range = (Bound::Included((hash, "")), Bound::Included((hash, "\u{10FFFF}")));
        let mut count = Count { count: 0, capped: false };
        for entry in index.0.range::<([u8; 16], &str)>(range).map_err(storage_error)? {
            entry.map_err(storage_error)?;
            if count.count == at_most {
                count.capped = true;
                break;
            }
            count.count += 1;
        }
        return Ok(count);
    }
    let groups: Vec<Vec<[u8; 16]>> = subset.iter().map(|(k, v)| vec![pair_hash(k, v)]).collect();
    // The index alone: a 128-bit hash collision could count a document twice as
    // likely as never; a count is a figure to show, not a decision.
    walk::count(&index, &groups, at_most)
}

fn load(docs: &impl ReadableTable<&'static str, &'static [u8]>, id: &str) -> Result<Option<Document>, StoreError> {
    let Some(value) = docs.get(id).map_err(storage_error)? else {
        return Ok(None);
    };
    let (version, fields) = record::decode(value.value())
        .map_err(|e| StoreError::Unavailable(format!("document {id:?} is damaged on disk: {e}")))?;
    Ok(Some(Document { id: id.to_owned(), version, fields }))
}

/// The first id at or after `from` holding the pair `hash`.
fn seek(
    postings: &impl ReadableTable<([u8; 16], &'static str), ()>,
    hash: [u8; 16],
    from: Bound<&str>,
) -> Result<Option<String>, StoreError> {
    let start = match from {
        Bound::Included(id) => Bound::Included((hash, id)),
        Bound::Excluded(id) => Bound::Excluded((hash, id)),
        Bound::Unbounded => Bound::Included((hash, "")),
    };
    let mut range = postings.range::<([u8; 16], &str)>((start, Bound::Unbounded)).map_err(storage_error)?;
    match range.next() {
        Some(entry) => {
            let (key, _) = entry.map_err(storage_error)?;
            let (h, id) = key.value();
            Ok((h == hash).then(|| id.to_owned()))
        }
        None => Ok(None),
    }
}

fn lookup(db: &Database, subset: &Fields, limit: usize, token: Option<&str>) -> Result<Page, StoreError> {
    let txn = db.begin_read().map_err(storage_error)?;
    let docs = txn.open_table(DOCS).map_err(storage_error)?;
    let after = token.map_or(Bound::Unbounded, Bound::Excluded);
    let mut documents = Vec::new();
    let mut more = false;

    if subset.is_empty() {
        for entry in docs.range::<&str>((after, Bound::Unbounded)).map_err(storage_error)? {
            if documents.len() == limit {
                more = true;
                break;
            }
            let (k, v) = entry.map_err(storage_error)?;
            let id = k.value();
            let (version, fields) = record::decode(v.value())
                .map_err(|e| StoreError::Unavailable(format!("document {id:?} is damaged on disk: {e}")))?;
            documents.push(Document { id: id.to_owned(), version, fields });
        }
    } else {
        let postings = txn.open_table(POSTINGS).map_err(storage_error)?;
        let hashes: Vec<[u8; 16]> = subset.iter().map(|(k, v)| pair_hash(k, v)).collect();
        // Leapfrog: the candidate is the smallest id that every pair may hold; each pair
        // in turn moves it up to its own next id, until all agree.
        let mut candidate = seek(&postings, hashes[0], after)?;
        'walk: while let Some(id) = candidate.take() {
            for h in &hashes[1..] {
                match seek(&postings, *h, Bound::Included(&id))? {
                    None => break 'walk,
                    Some(next) if next != id => {
                        candidate = seek(&postings, hashes[0], Bound::Included(&next))?;
                        continue 'walk;
                    }
                    Some(_) => {}
                }
            }
            // Every pair's index entry holds this id; check the fields themselves, since
            // two pairs may share a hash.
            if let Some(doc) = load(&docs, &id)?
                && subset.iter().all(|(k, v)| doc.fields.get(k) == Some(v))
            {
                if documents.len() == limit {
                    more = true;
                    break;
                }
                documents.push(doc);
            }
            candidate = seek(&postings, hashes[0], Bound::Excluded(&id))?;
        }
    }
    let next_page_token = if more { documents.last().map(|d| d.id.clone()) } else { None };
    Ok(Page { documents, next_page_token })
}

#[cfg(test)]
mod tests;
