//! A [`Store`] that times every call of the engine it wraps and counts how each ended,
//! for `GET /metrics`: whatever the engine, the same series.

use std::sync::Arc;
use std::time::Instant;

use bitmail_runtime::metrics::Registry;

use crate::store::{Count, Document, Fields, Page, Query, Store, StoreError};

pub(crate) struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Registry,
}

impl MeteredStore {
    pub(crate) fn new(inner: Arc<dyn Store>, metrics: Registry) -> Self {
        Self { inner, metrics }
    }

    fn record<T>(&self, op: &'static str, started: Instant, result: &Result<T, StoreError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(StoreError::NotFound(_)) => "not_found",
            Err(StoreError::VersionMismatch { .. }) => "version_mismatch",
            Err(StoreError::AlreadyExists { .. }) => "already_exists",
            Err(StoreError::InvalidArgument(_)) => "invalid_argument",
            Err(StoreError::Full(_)) => "full",
            Err(StoreError::Unavailable(_)) => "unavailable",
        };
        self.metrics.observe(
            "bitmail_store_operation_seconds",
            "Time of one store operation, by operation.",
            &[("op", op)],
            started.elapsed(),
        );
        self.metrics.count(
            "bitmail_store_operations_total",
            "Store operations, by operation and how they ended.",
            &[("op", op), ("result", outcome)],
            1,
        );
    }
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn put(&self, fields: Fields) -> Result<Document, StoreError> {
        let started = Instant::now();
        let result = self.inner.put(fields).await;
        self.record("put", started, &result);
        result
    }

    async fn create(&self, unique_key: &str, fields: Fields) -> Result<Document, StoreError> {
        let started = Instant::now();
        let result = self.inner.create(unique_key, fields).await;
        self.record("create", started, &result);
        result
    }

    async fn get(&self, id: &str) -> Result<Document, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(id).await;
        self.record("get", started, &result);
        result
    }

    async fn update(
        &self,
        id: &str,
        fields: Fields,
        remove: Vec<String>,
        expected_version: Option<u64>,
    ) -> Result<Document, StoreError> {
        let started = Instant::now();
        let result = self.inner.update(id, fields, remove, expected_version).await;
        self.record("update", started, &result);
        result
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(id).await;
        self.record("delete", started, &result);
        result
    }

    async fn lookup(&self, subset: &Fields, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        let started = Instant::now();
        let result = self.inner.lookup(subset, limit, page_token).await;
        self.record("lookup", started, &result);
        result
    }

    async fn find(&self, query: &Query, limit: usize, page_token: Option<&str>) -> Result<Page, StoreError> {
        let started = Instant::now();
        let result = self.inner.find(query, limit, page_token).await;
        self.record(if query.terms.is_empty() { "lookup" } else { "search" }, started, &result);
        result
    }

    async fn count(&self, subset: &Fields, at_most: usize) -> Result<Count, StoreError> {
        let started = Instant::now();
        let result = self.inner.count(subset, at_most).await;
        self.record("count", started, &result);
        result
    }
}
