//! A [`Store`] that misbehaves on purpose around a real engine: the next writes (`put`
//! and `create`) of documents of one `kind` fail with `Unavailable`, as when the storage
//! node goes away midway through a multi-document write; or they wait for each other,
//! so that two requests racing reach the store together. Everything else is the engine's.

use std::sync::{Arc, Mutex};

use backend_server::store::{Document, Fields, Page, Store, StoreError};
use tokio::sync::Barrier;

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    /// Writes of this kind fail, this many more times.
    failing: Mutex<Option<(String, usize)>>,
    /// Writes of this kind wait at the barrier, this many more of them.
    held: Mutex<Option<(String, usize, Arc<Barrier>)>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, failing: Mutex::new(None), held: Mutex::new(None) }
    }

    /// The next `times` writes of documents with `kind` fail with `Unavailable`.
    pub fn fail_writes_of(&self, kind: &str, times: usize) {
        *self.failing.lock().unwrap() = Some((kind.to_owned(), times));
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
        let mut failing = self.failing.lock().unwrap();
        if let Some((k, left)) = failing.as_mut()
            && k == kind
        {
            *left -= 1;
            if *left == 0 {
                *failing = None;
            }
            return Err(StoreError::Unavailable(format!("a {kind} write failed on purpose")));
        }
        Ok(())
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
        self.inner.delete(id).await
    }

    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        self.inner.lookup(subset, limit, page_token).await
    }
}
