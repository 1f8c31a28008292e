//! A store that times every call and counts its errors into [`Metrics`]
//! (`esm_store_call_duration_seconds`, `esm_store_errors_total`).
//!
//! A decorator like the breaker, so no store implementation knows about metrics;
//! `app.rs` puts it in front of whatever store esm runs (in front of the breaker too,
//! so a call the breaker fails at once is measured as what the caller saw).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::{Collection, Document, Query, Store, StoreError};
use crate::metrics::Metrics;

/// A [`Store`] whose calls are measured.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Metrics,
}

impl MeteredStore {
    /// Measures the calls to `inner` into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn measure<T>(
        &self,
        call: &'static str,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = work.await;
        self.metrics.store_call(self.inner.kind(), call, started.elapsed(), result.as_ref().err());
        result
    }
}

#[async_trait]
impl Store for MeteredStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.measure("insert", self.inner.insert(collection, id, body)).await
    }

    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.measure("upsert", self.inner.upsert(collection, id, body)).await
    }

    async fn replace(
        &self,
        collection: Collection,
        id: &str,
        expected_version: u64,
        body: Value,
    ) -> Result<u64, StoreError> {
        self.measure("replace", self.inner.replace(collection, id, expected_version, body)).await
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.measure("get", self.inner.get(collection, id)).await
    }

    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        self.measure("version", self.inner.version(collection, id)).await
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        self.measure("list", self.inner.list(collection)).await
    }

    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        self.measure("page", self.inner.page(collection, query)).await
    }

    async fn page_ids(&self, collection: Collection, query: &Query) -> Result<Vec<String>, StoreError> {
        self.measure("page_ids", self.inner.page_ids(collection, query)).await
    }

    async fn expired(
        &self,
        collection: Collection,
        field: &str,
        below: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.measure("expired", self.inner.expired(collection, field, below, limit)).await
    }

    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.measure("counts", self.inner.counts(collection, field)).await
    }

    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError> {
        self.measure("last_id", self.inner.last_id(collection)).await
    }

    async fn delete(
        &self,
        collection: Collection,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.measure("delete", self.inner.delete(collection, id, expected_version)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.measure("ping", self.inner.ping()).await
    }

    async fn health(&self) -> Result<String, StoreError> {
        self.measure("health", self.inner.health()).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    #[cfg(any(test, feature = "test-support"))]
    fn visits(&self) -> Option<u64> {
        self.inner.visits()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn every_call_is_timed_and_every_error_counted_by_class() {
        let metrics = Metrics::new();
        let store = MeteredStore::new(Arc::new(MemoryStore::new()), metrics.clone());
        store.insert(Collection::Instances, "a", json!({})).await.expect("inserts");
        assert!(store.insert(Collection::Instances, "a", json!({})).await.is_err());
        assert!(store.replace(Collection::Instances, "b", 1, json!({})).await.is_err());
        let text = metrics.render(&MemoryStore::new()).await;
        assert!(text.contains(r#"esm_store_call_duration_seconds_count{store="memory",call="insert"} 2"#), "{text}");
        assert!(text.contains(r#"esm_store_errors_total{store="memory",call="insert",error="conflict"} 1"#), "{text}");
        assert!(
            text.contains(r#"esm_store_errors_total{store="memory",call="replace",error="not_found"} 1"#),
            "{text}"
        );
    }
}
