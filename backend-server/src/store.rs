//! The contract of a document store engine.

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

/// What a caller must tell apart when a store operation fails.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("no document with id {0:?}")]
    NotFound(String),
    #[error("document {id:?} is at version {actual}, not the expected {expected}")]
    VersionMismatch { id: String, expected: u64, actual: u64 },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// The largest `limit` a lookup accepts; the default when none is given is
/// [`DEFAULT_LOOKUP_LIMIT`].
pub const MAX_LOOKUP_LIMIT: usize = 1000;
pub const DEFAULT_LOOKUP_LIMIT: usize = 100;

/// A document store engine. Held as `Arc<dyn Store>`; every method may be called
/// concurrently.
///
/// Ids are assigned by the store, are opaque non-empty strings, and sort in creation
/// order. Every method is cancel-safe in the sense that a cancelled call either took
/// full effect or none.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new document at version 1 and returns its id. Not idempotent: two calls
    /// store two documents. Cost: O(fields · log n).
    async fn put(&self, fields: Fields) -> Result<Document, StoreError>;

    /// The document with this id. Cost: O(log n + size of the document).
    async fn get(&self, id: &str) -> Result<Document, StoreError>;

    /// Sets `fields` (adding or replacing), removes the keys in `remove`, and bumps the
    /// version. With `expected_version`, fails with [`StoreError::VersionMismatch`] and
    /// changes nothing when the stored version differs (optimistic concurrency).
    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError>;

    /// Removes the document. [`StoreError::NotFound`] when there is none.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Every document containing all pairs of `subset`, in id order, after the document
    /// named by `page_token`, at most `limit` (1..=[`MAX_LOOKUP_LIMIT`]). Cost follows the
    /// size of the answer (and of the smallest index entry of `subset`), not of the
    /// store.
    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError>;
}
