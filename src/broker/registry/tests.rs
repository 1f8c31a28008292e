//! The registry is read from the store when it changes, not per request.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::backend::dummy::DummyBackend;
use crate::broker::{Answer, Broker, REGISTRY_CHECK_EVERY, fixture};
use crate::store::switchable::SwitchableStore;

fn broker(store: Arc<SwitchableStore>) -> Arc<Broker> {
    fixture::broker(store, Arc::new(DummyBackend::new()))
}

/// Service `s` with plan `p`, deployed by a synchronous dummy manifest, and `others`
/// more services.
async fn register(broker: &Arc<Broker>, others: usize) {
    for n in 0..=others {
        let id = if n == 0 { "s".to_owned() } else { format!("other-{n}") };
        let plan = if n == 0 { "p".to_owned() } else { format!("other-{n}-plan") };
        let service = json!({"id": id, "name": id, "description": "d", "bindable": true,
                             "plans": [{"id": plan, "name": "p", "description": "d"}]});
        broker
            .registrar()
            .register_service(serde_json::from_value(service).expect("a service"))
            .await
            .expect("registers");
    }
    fixture::register_manifest(broker, "s", "p", "dummy", "x-esm-dummy: {mode: sync}\n").await;
}

async fn provision_and_bind(broker: &Arc<Broker>, id: &str) {
    let answer = broker.instances().provision(id, fixture::provision_request(), false).await;
    assert!(matches!(answer.expect("provisions"), Answer::Done(_)), "synchronous");
    let request = json!({"service_id": "s", "plan_id": "p"});
    let answer =
        broker.bindings().bind(id, &format!("{id}-b"), serde_json::from_value(request).expect("request"), false).await;
    assert!(matches!(answer.expect("binds"), Answer::Done(_)), "synchronous");
}

/// Full reads and version reads of the registry record.
fn registry_reads(store: &SwitchableStore) -> (usize, usize) {
    (store.reads(Collection::Registry, "get"), store.reads(Collection::Registry, "version"))
}

#[tokio::test]
async fn provisions_binds_and_pool_rounds_do_not_read_an_unchanged_registry() {
    let store = Arc::new(SwitchableStore::default());
    let broker = broker(store.clone());
    register(&broker, 20).await;
    let pool = json!({"size": 1});
    broker.pools().set("p", serde_json::from_value(pool).expect("a pool")).await.expect("sets the pool");
    let before = registry_reads(&store);
    for n in 0..5 {
        provision_and_bind(&broker, &format!("i-{n}")).await;
        broker.pools().pool_round().await.expect("a pool round");
        broker.instances().fetch(&format!("i-{n}")).await.expect("fetches");
    }
    broker.registrar().catalog().await.expect("the catalog");
    assert_eq!(registry_reads(&store), before, "the registry is not read while it is unchanged");
    assert!(store.reads(Collection::Instances, "get") > 0, "the instances are read from the store");

    // A change of this process replaces the copy at once: the next request reads nothing either.
    register(&broker, 21).await;
    let before = registry_reads(&store);
    provision_and_bind(&broker, "after-change").await;
    assert_eq!(registry_reads(&store), before);
    assert_eq!(broker.registrar().catalog().await.expect("the catalog").services.len(), 22);
}

#[tokio::test(start_paused = true)]
async fn on_a_shared_store_a_provision_reads_the_registrys_version_not_the_record() {
    let store = Arc::new(SwitchableStore::new(true, Duration::ZERO));
    let broker = broker(store.clone());
    broker.registrar().spawn_registry_watch();
    register(&broker, 20).await;
    // Let the watcher vouch for the copy.
    tokio::time::advance(Duration::from_millis(10)).await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    provision_and_bind(&broker, "first").await;
    let (gets, versions) = registry_reads(&store);
    provision_and_bind(&broker, "second").await;
    let (gets_after, versions_after) = registry_reads(&store);
    assert_eq!(gets_after, gets, "the record is not read (nor decoded) while its version stands");
    // The retirement protocol's check after the instance is written reads the version
    // (a plan another replica is removing must be seen at once, not within the bound);
    // the watcher reads it too.
    assert!(versions_after > versions, "the version is what is read");
    // Idle, the watcher reads the version alone, twice a second.
    tokio::time::advance(REGISTRY_CHECK_EVERY * 4).await;
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let (gets_idle, versions_idle) = registry_reads(&store);
    assert_eq!(gets_idle, gets_after, "the watcher does not read the record");
    assert!(versions_idle > versions_after, "the watcher reads the version");
    broker.shutdown().await;
}

#[tokio::test]
async fn a_change_by_another_writer_is_decoded_once_and_a_stale_copy_is_never_kept_over_a_newer_one() {
    let store = Arc::new(SwitchableStore::default());
    let broker = broker(store.clone());
    register(&broker, 0).await;
    let copy = broker.registrar().registry().await.expect("the registry");
    // A write behind the broker's back, as another replica's would be (the generation
    // is bumped as the watcher would).
    let mut changed = serde_json::to_value(&*copy.record).expect("encodes");
    changed["services"][0]["description"] = json!("changed");
    let changed: Registry = serde_json::from_value(changed).expect("decodes");
    let version = broker.records().replace(copy.version, &changed).await.expect("writes");
    broker.registrar().registry_written();
    let gets = store.reads(Collection::Registry, "get");
    let registrar = broker.registrar();
    let read = futures_util::future::join_all((0..8).map(|_| registrar.registry())).await;
    assert_eq!(store.reads(Collection::Registry, "get") - gets, 1, "decoded once for eight readers");
    for registry in read {
        let registry = registry.expect("the registry");
        assert_eq!((registry.version, registry.record.services[0].description.as_str()), (version, "changed"));
    }
    // A read that started before the change does not replace the copy made after it.
    let generation = broker.registrar().room.watch.current();
    broker.registrar().room.watch.keep(generation, &copy);
    assert_eq!(broker.registrar().registry().await.expect("the registry").version, version);
}
