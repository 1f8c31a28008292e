//! The store conformance suite against every store: memory, embedded, and MongoDB
//! (behind the breaker, as esm runs it).
//!
//! The MongoDB run needs a server: set `ESM_TEST_MONGO_URI` (CI starts one and sets it).
//! When it is set and no server answers, the test fails; it never silently passes.

use std::sync::Arc;

use esm::metrics::Metrics;
use esm::metrics::store_calls::MeteredStore;
use esm::store::Store;
use esm::store::breaker::BreakerStore;
use esm::store::conformance;
use esm::store::embedded::EmbeddedStore;
use esm::store::memory::MemoryStore;
use esm::store::mongo::MongoStore;

use crate::support::mongo_uri;

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_store_behind_the_breaker_conforms() {
    let store = BreakerStore::new(Arc::new(MemoryStore::new()));
    let store = Arc::new(store);
    conformance::run(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn a_store_behind_the_meter_conforms() {
    let store = MeteredStore::new(Arc::new(MemoryStore::new()), Metrics::new());
    conformance::run(Arc::new(store)).await;
}

#[tokio::test]
async fn embedded_store_conforms() {
    let dir = tempfile::Builder::new().prefix("esm-stores-").tempdir().expect("temp dir");
    let store =
        EmbeddedStore::open(dir.path(), esm::store::embedded::DEFAULT_CACHE_BYTES).expect("embedded store opens");
    conformance::run(Arc::new(store)).await;
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test]
async fn mongodb_store_conforms() {
    let uri = mongo_uri();
    let db = format!("esm_conformance_{}", uuid::Uuid::new_v4().simple());
    let store = MongoStore::connect(&uri, &db).await.expect("MongoDB URI is valid");
    store.ping().await.unwrap_or_else(|e| panic!("ESM_TEST_MONGO_URI is set but MongoDB does not answer: {e}"));
    let store = Arc::new(BreakerStore::new(Arc::new(store)));
    conformance::run(store.clone()).await;
    store.close().await;
}
