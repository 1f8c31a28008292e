//! A store that times every call and counts its errors into [`Metrics`]
//! (`esm_store_call_duration_seconds`, `esm_store_errors_total`).
//!
//! A [`StoreLayer`] like the breaker, so no store implementation knows about metrics;
//! `app.rs` puts it in front of whatever store esm runs (in front of the breaker too,
//! so a call the breaker fails at once is measured as what the caller saw).

use std::sync::Arc;
use std::time::Instant;

use super::Metrics;
use crate::store::layered::{Call, Layered, StoreLayer, Work};
use crate::store::{Store, StoreError};

/// The layer that measures a store's calls into [`Metrics`].
pub struct StoreCalls(Metrics);

/// A store whose calls are measured.
pub type MeteredStore = Layered<StoreCalls>;

impl MeteredStore {
    /// Measures the calls to `inner` into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Self {
        Layered::over(inner, StoreCalls(metrics))
    }
}

impl StoreLayer for StoreCalls {
    async fn around<T: Send>(&self, store: &'static str, call: Call, work: impl Work<T>) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = work.await;
        self.0.store_call(store, call.name(), started.elapsed(), result.as_ref().err());
        result
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::Collection;
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
