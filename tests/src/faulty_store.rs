//! A [`Store`] that misbehaves on purpose around a real engine: the next writes (`put`
//! and `create`) of documents of one `kind` fail with `Unavailable`, as when the storage
//! node goes away midway through a multi-document write; or they wait for each other,
//! so that requests racing reach the store together; or the next deletes of documents
//! of one kind fail (a clean-up that does not happen). Everything else is the engine's.

use std::sync::{Arc, Mutex};

use backend_server::store::{Count, Document, Fields, Page, Query, Store, StoreError};
use tokio::sync::Barrier;

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    /// Writes of this kind fail, this many more times.
    failing: Mutex<Option<(String, usize)>>,
    /// Deletes of documents of this kind fail, this many more times.
    failing_deletes: Mutex<Option<(String, usize)>>,
    /// Writes of this kind wait at the barrier, this many more of them.
    held: Mutex<Option<(String, usize, Arc<Barrier>)>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, failing: Mutex::new(None), failing_deletes: Mutex::new(None), held: Mutex::new(None) }
    }

    /// The next `times` writes of documents with `kind` fail with `Unavailable`.
    pub fn fail_writes_of(&self, kind: &str, times: usize) {
        *self.failing.lock().unwrap() = Some((kind.to_owned(), times));
    }

    /// The next `times` deletes of documents with `kind` fail with `Unavailable`.
    pub fn fail_deletes_of(&self, kind: &str, times: usize) {
        *self.failing_deletes.lock().unwrap() = Some((kind.to_owned(), times));
    }

    /// The next `count` writes of documents with `kind` wait until all `count` arrived.
    pub fn hold_writes_of(&self, kind: &str, count: usize) {
        *self.held.lock().unwrap() = Some((kind.to_owned(), count, Arc::new(Barrier::new(count))));
    }

    async fn before_write(&self, fields: &Fields) -> Result<(), StoreError> {
        let kind = fields.get("kind").map_or("", String::as_str);
        let barrier = {
            let mut held = self.held.lock().unwrap();
            match held.as_mut() {
                Some((k, left, barrier)) if k == kind => {
                    let barrier = barrier.clone();
                    *left -= 1;
                    if *left == 0 {
                        *held = None;
                    }
                    Some(barrier)
                }
                _ => None,
            }
        };
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
        if take_one(&self.failing, kind) {
            return Err(StoreError::Unavailable(format!("a {kind} write failed on purpose")));
        }
        Ok(())
    }
}

/// Whether `slot` is armed for `kind`; if so, one use of it is spent.
fn take_one(slot: &Mutex<Option<(String, usize)>>, kind: &str) -> bool {
    let mut slot = slot.lock().unwrap();
    match slot.as_mut() {
        Some((k, left)) if k == kind => {
            *left -= 1;
            if *left == 0 {
                *slot = None;
            }
            true
        }
        _ => false,
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn put(&self, fields: Fields) -> Result<Document, StoreError> {
        self.before_write(&fields).await?;
        self.inner.put(fields).await
    }

    async fn create(&self, unique_key: &str, fields: Fields) -> Result<Document, StoreError> {
        self.before_write(&fields).await?;
        self.inner.create(unique_key, fields).await
    }

    async fn get(&self, id: &str) -> Result<Document, StoreError> {
        self.inner.get(id).await
    }

    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError> {
        self.inner.update(id, fields, remove, expected_version).await
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let armed = self.failing_deletes.lock().unwrap().is_some();
        if armed {
            let kind = self.inner.get(id).await.ok().and_then(|d| d.fields.get("kind").cloned()).unwrap_or_default();
            if take_one(&self.failing_deletes, &kind) {
                return Err(StoreError::Unavailable(format!("a {kind} delete failed on purpose")));
            }
        }
        self.inner.delete(id).await
    }

    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        self.inner.lookup(subset, limit, page_token).await
    }

    async fn find(&self, query: &Query, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        self.inner.find(query, limit, page_token).await
    }

    async fn count(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
        self.inner.count(subset, at_most).await
    }
}
