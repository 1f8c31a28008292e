//! CPU and memory capacity: an engine that counts them takes deployments while their
//! declared limits fit, says what it is short of when they do not, gives the room back
//! with the deployment, and is never overcommitted by replicas placing at once (each
//! unit is a slot the store's insert hands out once).

use std::sync::Arc;

use esm::broker::Broker;
use esm::clock::Clock;
use esm::domain::bounded::EngineName;
use esm::error::OsbError;
use esm::store::memory::MemoryStore;
use esm::store::{Collection, Store, index};
use serde_json::json;

use crate::placement::{PluggedEngines, broker, declare};
use crate::support::catalog::{provision_request, register};

/// A plan whose deployments declare half a CPU and 512 MiB.
const HALF_A_CPU: &str = "x-esm-dummy: {mode: sync}\nservices:\n  web: {cpus: 0.5, mem_limit: 512m}\n";

fn e1() -> EngineName {
    EngineName::parse("e1").expect("name")
}

async fn units_taken(store: &Arc<dyn Store>) -> usize {
    let query = index::Query::new([(index::TYPE, "slot"), (index::NAME, "e1")], 1000);
    let ids = store.page_ids(Collection::Resources, &query).await.expect("slots");
    ids.iter().filter(|id| id.starts_with("slot/e1/cpu/") || id.starts_with("slot/e1/memory/")).count()
}

#[tokio::test]
async fn declared_limits_count_against_cpu_and_memory_and_what_does_not_fit_is_refused_with_why() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let broker = broker(&store, Arc::new(PluggedEngines::default()), Clock::system());
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), HALF_A_CPU).await;
    declare(
        &broker,
        "e1",
        json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"cpus": 2, "memory": "1g"}}),
    )
    .await;
    for id in ["i-1", "i-2"] {
        broker.instances().provision(id, provision_request(), false).await.expect("fits");
    }
    let refused = broker.instances().provision("i-3", provision_request(), false).await.expect_err("no memory left");
    let OsbError::Unprocessable(why) = refused else { panic!("{refused:?}") };
    assert!(why.contains("e1: not enough memory (512 MiB wanted, 0 GiB of 1 GiB free)"), "{why}");
    let used = broker.engines().get(&e1()).await.expect("e1").used.expect("what is used");
    assert_eq!((used.cpus, used.memory), (Some(1.0), Some(1 << 30)));
    assert_eq!(units_taken(&store).await, 2 * (5 + 2));

    // A deprovision gives its room back.
    let query = serde_json::from_value(json!({"service_id": "s", "plan_id": "p"})).expect("query");
    broker.instances().deprovision("i-1", &query).await.expect("deprovisioned");
    assert_eq!(units_taken(&store).await, 5 + 2);
    broker.instances().provision("i-3", provision_request(), false).await.expect("fits again");
}

#[tokio::test]
async fn an_engine_that_does_not_count_units_takes_any_limits_and_a_manifest_without_limits_counts_nothing() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let broker = broker(&store, Arc::new(PluggedEngines::default()), Clock::system());
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), "x-esm-dummy: {mode: sync}")
        .await;
    declare(&broker, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"cpus": 0.5}})).await;
    for n in 0..5 {
        broker.instances().provision(&format!("i-{n}"), provision_request(), false).await.expect("counts nothing");
    }
    assert_eq!(units_taken(&store).await, 0);
    let used = broker.engines().get(&e1()).await.expect("e1").used.expect("what is used");
    assert_eq!((used.cpus, used.memory), (Some(0.0), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_placing_at_once_never_overcommit_cpu() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let replicas: Vec<Arc<Broker>> = (0..8).map(|_| broker(&store, engines.clone(), Clock::system())).collect();
    register(&replicas[0], json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), HALF_A_CPU).await;
    declare(&replicas[0], "e1", json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"cpus": 4}})).await;
    let mut attempts = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for n in 0..5 {
            let replica = Arc::clone(replica);
            let id = format!("i-{r}-{n}");
            attempts.push(tokio::spawn(
                async move { replica.instances().provision(&id, provision_request(), false).await },
            ));
        }
    }
    let mut placed = 0;
    for attempt in attempts {
        match attempt.await.expect("a provision task") {
            Ok(_) => placed += 1,
            Err(OsbError::Unprocessable(why)) => assert!(why.contains("e1: not enough CPU"), "{why}"),
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    // Replicas racing for the last units may both come short and give theirs back:
    // an engine is never overcommitted, and what is left is taken by the next ones.
    assert!(placed <= 8, "{placed} half-CPU deployments on 4 CPUs");
    assert_eq!(units_taken(&store).await, placed * 5, "5 units each, none left behind by a refusal");
    for n in placed..8 {
        replicas[0].instances().provision(&format!("late-{n}"), provision_request(), false).await.expect("room left");
    }
    assert_eq!(units_taken(&store).await, 40);
    let full = replicas[1].instances().provision("one-more", provision_request(), false).await;
    assert!(matches!(full, Err(OsbError::Unprocessable(_))), "{full:?}");
}
