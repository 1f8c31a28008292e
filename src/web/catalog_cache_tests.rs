use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::backend::dummy::DummyBackend;
use crate::broker::{CATALOG_STALE_BOUND, REGISTRY_CHECK_EVERY};
use crate::store::switchable::SwitchableStore;

fn broker(store: Arc<SwitchableStore>) -> Arc<Broker> {
    crate::broker::fixture::broker(store, Arc::new(DummyBackend::new()))
}

async fn register(broker: &Arc<Broker>, id: &str) {
    let service = json!({"id": id, "name": id, "description": "d",
                         "plans": [{"id": format!("{id}-plan"), "name": "p", "description": "d",
                                    "plan_updateable": true}]});
    broker.registrar().register_service(serde_json::from_value(service).expect("a service")).await.expect("registers");
}

fn ids(rendered: &Rendered) -> Vec<String> {
    let catalog: Value = serde_json::from_slice(&rendered.body).expect("JSON");
    catalog["services"].as_array().expect("services").iter().map(|s| s["id"].as_str().unwrap_or("").into()).collect()
}

/// Lets the watcher run what is due now (paused time).
async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_catalog_is_served_from_memory_until_this_esm_changes_it() {
    let store = Arc::new(SwitchableStore::default());
    let broker = broker(store.clone());
    let cache = CatalogCache::new();
    register(&broker, "a").await;
    let first = cache.get(&broker, ApiVersion::NEWEST).await.expect("catalog");
    let calls = store.calls();
    for _ in 0..10 {
        let again = cache.get(&broker, ApiVersion::NEWEST).await.expect("catalog");
        assert!(Arc::ptr_eq(&first, &again), "the same rendering");
    }
    assert_eq!(store.calls(), calls, "no store access while the registry is unchanged");
    register(&broker, "b").await;
    let changed = cache.get(&broker, ApiVersion::NEWEST).await.expect("catalog");
    assert_eq!(ids(&changed), ["a", "b"]);
    assert_ne!(changed.etag, first.etag);
    // A manifest changes the registry too (not what the catalog shows): rendered anew,
    // the same bytes have the same ETag.
    crate::broker::fixture::register_manifest(&broker, "a", "a-plan", "dummy", "x-esm-dummy: {mode: sync}\n").await;
    let after_manifest = cache.get(&broker, ApiVersion::NEWEST).await.expect("catalog");
    assert!(!Arc::ptr_eq(&changed, &after_manifest), "rendered again");
    assert_eq!((&after_manifest.body, &after_manifest.etag), (&changed.body, &changed.etag));
}

#[tokio::test]
async fn each_version_has_its_own_rendering_and_later_versions_share_the_newest() {
    let broker = broker(Arc::new(SwitchableStore::default()));
    let cache = CatalogCache::new();
    register(&broker, "a").await;
    let old = cache.get(&broker, ApiVersion(12)).await.expect("catalog");
    let new = cache.get(&broker, ApiVersion::NEWEST).await.expect("catalog");
    let old_json: Value = serde_json::from_slice(&old.body).expect("JSON");
    let new_json: Value = serde_json::from_slice(&new.body).expect("JSON");
    assert_eq!(old_json["services"][0].get("instances_retrievable"), None, "2.12 does not define it");
    assert_eq!(new_json["services"][0]["instances_retrievable"], true);
    assert_ne!(old.etag, new.etag);
    assert!(Arc::ptr_eq(&old, &cache.get(&broker, ApiVersion(12)).await.expect("catalog")));
    assert!(Arc::ptr_eq(&new, &cache.get(&broker, ApiVersion(99)).await.expect("catalog")));
    // 2.15 added plan_updateable on plans: between the two.
    let middle = cache.get(&broker, ApiVersion(15)).await.expect("catalog");
    assert_ne!(middle.body, old.body);
    assert_eq!(slot(ApiVersion(2)), slot(ApiVersion(12)));
    assert_eq!(slot(ApiVersion(u32::MAX)), VARIANTS - 1);
}

#[tokio::test(start_paused = true)]
async fn on_a_shared_store_another_replicas_change_is_seen_within_the_bound() {
    let store = Arc::new(SwitchableStore::new(true, Duration::ZERO));
    let (writer, reader) = (broker(store.clone()), broker(store.clone()));
    reader.registrar().spawn_registry_watch();
    let cache = CatalogCache::new();
    register(&writer, "a").await;
    // Until the watcher has looked, the cache cannot vouch for anything: the store is read.
    assert_eq!(ids(&cache.get(&reader, ApiVersion::NEWEST).await.expect("catalog")), ["a"]);
    settle().await;
    let cached = cache.get(&reader, ApiVersion::NEWEST).await.expect("catalog");
    let calls = store.calls();
    assert!(Arc::ptr_eq(&cached, &cache.get(&reader, ApiVersion::NEWEST).await.expect("catalog")));
    assert_eq!(store.calls(), calls, "served from memory");

    register(&writer, "b").await;
    let changed_at = tokio::time::Instant::now();
    let stale = cache.get(&reader, ApiVersion::NEWEST).await.expect("catalog");
    assert!(Arc::ptr_eq(&stale, &cached), "served from memory until the watcher looks again");
    loop {
        let rendered = cache.get(&reader, ApiVersion::NEWEST).await.expect("catalog");
        if ids(&rendered) == ["a", "b"] {
            assert_ne!(rendered.etag, cached.etag);
            break;
        }
        assert!(changed_at.elapsed() < CATALOG_STALE_BOUND, "stale for {:?}", changed_at.elapsed());
        tokio::time::advance(Duration::from_millis(50)).await;
        settle().await;
    }
    assert!(changed_at.elapsed() <= REGISTRY_CHECK_EVERY + Duration::from_millis(50), "seen at the next check");
    reader.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn when_the_watcher_cannot_read_the_store_the_cache_stands_aside() {
    let store = Arc::new(SwitchableStore::new(true, Duration::ZERO));
    let broker = broker(store.clone());
    broker.registrar().spawn_registry_watch();
    let cache = CatalogCache::new();
    register(&broker, "a").await;
    settle().await;
    cache.get(&broker, ApiVersion::NEWEST).await.expect("catalog");
    store.set_down(true);
    let down_at = tokio::time::Instant::now();
    // Served from memory for as long as the last good check vouches for, then the store
    // is asked (and its failure answered) rather than a catalog that may be stale.
    while cache.get(&broker, ApiVersion::NEWEST).await.is_ok() {
        assert!(down_at.elapsed() < CATALOG_STALE_BOUND, "served unchecked for {:?}", down_at.elapsed());
        tokio::time::advance(Duration::from_millis(50)).await;
        settle().await;
    }
    store.set_down(false);
    tokio::time::advance(REGISTRY_CHECK_EVERY).await;
    settle().await;
    assert_eq!(ids(&cache.get(&broker, ApiVersion::NEWEST).await.expect("back")), ["a"]);
    broker.shutdown().await;
}
