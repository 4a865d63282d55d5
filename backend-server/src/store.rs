//! The contract of a document store engine.
//!
//! Every engine (memory, embedded, proxy, and any added later) keeps the same contract,
//! checked by the one conformance suite in `tests/src/store_conformance.rs`. Bad input is
//! refused by the one shared check in `validate` before an engine touches
//! anything, so every engine answers it the same way.
//!
//! Documents are stored by `put` (always a new document) or by `create`, which stores
//! one only while no live document holds its unique key: the store's one way to say
//! "at most one of these", atomic in every engine, where a lookup followed by a put
//! leaves a race. A delete frees the key.

use std::collections::BTreeMap;

/// A document's fields. Ordered, so that answers and tests are deterministic.
pub type Fields = BTreeMap<String, String>;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub id: String,
    /// 1 when stored, one more after every update.
    pub version: u64,
    pub fields: Fields,
}

/// One page of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// In id order.
    pub documents: Vec<Document>,
    /// Pass back to get the next page; `None` when this page is the last.
    pub next_page_token: Option<String>,
}

/// One term of a full-text search: every word must match, in one of `fields` (the
/// NAMEs of `_text.NAME` fields) or, when empty, in any (see [`crate::text`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Term {
    pub words: String,
    pub fields: Vec<String>,
}

/// What [`Store::find`] answers: documents holding every pair of `subset` and matching
/// every term (none: every document holding the subset).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    pub subset: Fields,
    pub terms: Vec<Term>,
    /// Highest id first instead of id order.
    pub newest_first: bool,
}

/// What [`Store::count`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub count: usize,
    /// Counting stopped at the caller's bound: there may be more.
    pub capped: bool,
}

/// The most terms a search takes, and the longest term, in bytes.
pub const MAX_SEARCH_TERMS: usize = 64;
pub const MAX_TERM_BYTES: usize = 1024;
/// Count's bound over gRPC when the caller gives none.
pub const DEFAULT_COUNT_BOUND: usize = 1_000_000;

/// What a caller must tell apart when a store operation fails. Each variant has its own
/// gRPC status (see `service.rs`), and the proxy engine maps each status back to the
/// same variant.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// The id names no document (never stored, or deleted). gRPC `NOT_FOUND`.
    #[error("no document with id {0:?}")]
    NotFound(String),
    /// An update's expected version is not the stored one; nothing was changed. gRPC
    /// `ABORTED` (the caller should re-read and retry), with the stored version in the
    /// `bitmail-actual-version` metadata.
    #[error("document {id:?} is at version {actual}, not the expected {expected}")]
    VersionMismatch { id: String, expected: u64, actual: u64 },
    /// A [`Store::create`] found a live document holding its unique key: the one named
    /// here, left as it was; nothing was stored. gRPC `ALREADY_EXISTS`, with that
    /// document's id in the `bitmail-existing-id` metadata.
    #[error("document {id:?} already holds this unique key")]
    AlreadyExists { id: String },
    /// The request itself is wrong (see [`crate::validate`]); nothing was changed and
    /// retrying it cannot help. gRPC `INVALID_ARGUMENT`.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The storage is full (disk full, file size limit); nothing was changed. gRPC
    /// `RESOURCE_EXHAUSTED`.
    #[error("storage full: {0}")]
    Full(String),
    /// The storage cannot answer now (I/O error, remote store unreachable or too slow,
    /// shutting down). The change may or may not have been made if it was a write whose
    /// answer was lost. gRPC `UNAVAILABLE`.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The largest `limit` a lookup accepts. Over gRPC, a limit of 0 means
/// [`DEFAULT_LOOKUP_LIMIT`] (refused when the subset is empty: that would be a scan of
/// the whole store with no bound asked for).
pub const MAX_LOOKUP_LIMIT: usize = 1000;
pub const DEFAULT_LOOKUP_LIMIT: usize = 100;

/// The longest key (and id), in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// The default largest document: 16 MiB.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// Bounds every engine enforces, from config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest document: the sum of the byte lengths of its keys and values.
    pub max_document_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES }
    }
}

/// A document store engine. Held as `Arc<dyn Store>`; every method may be called
/// concurrently from many tasks.
///
/// Ids are assigned by the store: opaque, non-empty, at most [`MAX_KEY_BYTES`] long,
/// never reused, and sorting (as byte strings) in creation order within one store.
///
/// Every method first runs [`crate::validate::check`]; a refused call answers
/// [`StoreError::InvalidArgument`] and changes nothing. Every write is atomic: it takes
/// full effect or none, also when the calling future is dropped (cancelled) or the
/// process dies; a durable engine answers `Ok` only once the change is on disk.
/// `Unavailable` after a write means "unknown": the write may have been made.
///
/// Costs are given for a store of `n` documents; `d` is the size of the document
/// concerned.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new document at version 1 and answers it with its new id.
    ///
    /// Not idempotent: two calls store two documents. Never conflicts. Cost:
    /// O(fields · log n + d), plus one durable commit shared with concurrent writes.
    async fn put(&self, fields: Fields) -> Result<Document, StoreError>;

    /// Stores a new document at version 1, as [`Store::put`], only if no live document
    /// holds `unique_key`; the new document then holds it until it is deleted (an
    /// update keeps it; a delete frees it). Otherwise answers
    /// [`StoreError::AlreadyExists`] naming the document that holds it, and stores
    /// nothing. The key (1..=[`MAX_KEY_BYTES`] bytes, no U+0000) is not a field: it is
    /// not answered with the document and lookups do not see it; a caller that needs it
    /// later stores it in a field as well. Documents stored by `put` hold no key.
    ///
    /// Atomic with the document: of many concurrent creates with one key exactly one
    /// succeeds and the others name it. Idempotent in effect: a retry whose first answer
    /// was lost answers `AlreadyExists` with the first one's id. Cost: that of `put`,
    /// plus O(log n) for the key.
    async fn create(&self, unique_key: &str, fields: Fields) -> Result<Document, StoreError>;

    /// The document with this id, with its current version. Reads the last committed
    /// state. [`StoreError::NotFound`] when there is none. Cost: O(log n + d).
    async fn get(&self, id: &str) -> Result<Document, StoreError>;

    /// Sets `fields` (adding or replacing), removes the keys in `remove` (a key that is
    /// absent is fine; a key both set and removed ends up set), and adds one to the
    /// version, atomically: no concurrent update is lost.
    ///
    /// With `expected_version`, fails with [`StoreError::VersionMismatch`] and changes
    /// nothing when the stored version differs (optimistic concurrency: of many
    /// concurrent updates with the same expected version, exactly one succeeds).
    /// Without it, always applies. Not idempotent (the version moves each time); use
    /// `expected_version` to make a retry safe. [`StoreError::NotFound`] when there is
    /// no such document; [`StoreError::InvalidArgument`] when the merged document would
    /// exceed [`Limits::max_document_bytes`]. Cost: O(fields · log n + d).
    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError>;

    /// Removes the document, and frees its unique key if it holds one. [`StoreError::NotFound`]
    /// when there is none, so a retried delete whose first answer was lost answers
    /// `NotFound`. Cost: O(fields · log n).
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Every document containing all pairs of `subset` (an empty subset matches every
    /// document), in id order, after the document named by `page_token` (the previous
    /// page's `next_page_token`), at most `limit` (1..=[`MAX_LOOKUP_LIMIT`]).
    ///
    /// One page is a consistent snapshot. Paging through while others write never
    /// answers a document twice nor skips one that matched during the whole walk;
    /// documents created during the walk sort after the ones that existed before it, so
    /// they appear on later pages.
    ///
    /// Cost follows the size of the answer, not of the store: O(log n) per subset pair to
    /// find its index entry, then the walk of the ids holding the rarest pairs from the
    /// page token on, until `limit` documents matched.
    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError>;

    /// A lookup in either order, with full-text terms: the documents holding every pair
    /// of `query.subset` and matching every term ([`crate::text`]: words of the
    /// document's `_text.NAME` fields, by their forms), in id order or, with
    /// `newest_first`, highest id first, after `page_token` in that order, at most
    /// `limit`. Paging keeps the guarantees of [`Store::lookup`]; newest first, documents
    /// created during the walk are not answered by later pages (they sort before the
    /// token). Terms need a non-empty subset; a term with no word, more than
    /// [`MAX_SEARCH_TERMS`] terms or one over [`MAX_TERM_BYTES`] is refused.
    ///
    /// Cost follows the answer as for lookup: each subset pair and each query word's
    /// forms are index entries walked together (a word's forms as one merged walk).
    async fn find(&self, query: &Query, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError>;

    /// How many documents hold every pair of `subset` (an empty subset: every
    /// document), counting at most `at_most` (at least 1). Reads the index only, so it
    /// costs O(count) index steps and loads no document.
    async fn count(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError>;
}
