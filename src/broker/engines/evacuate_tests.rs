//! A move under store faults: the store goes away while the new deployment is being
//! made, so the move's result cannot be written. The instance stays where it was,
//! working, with the move in progress; once the store answers and the lease lapses, the
//! move is resumed, deploys in the same place (the same deployment, not a second one)
//! and finishes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use crate::backend::dummy::DummyBackend;
use crate::backend::{Backend, BackendError, Backends};
use crate::broker::{Broker, EngineFactory, FleetSettings, ScheduleChange, fixture};
use crate::domain::bounded::EngineName;
use crate::domain::engine::{EngineSpec, Source};
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::{Operation, OperationKind, OperationState};
use crate::store::Store;
use crate::store::switchable::SwitchableStore;

/// One dummy per engine name, kept so a test can release its holds.
#[derive(Default)]
struct Dummies(Mutex<HashMap<String, Arc<DummyBackend>>>);

impl Dummies {
    fn of(&self, name: &str) -> Arc<DummyBackend> {
        let mut dummies = self.0.lock().expect("dummies");
        Arc::clone(dummies.entry(name.to_owned()).or_insert_with(|| Arc::new(DummyBackend::new())))
    }
}

#[async_trait]
impl EngineFactory for Dummies {
    async fn build(&self, name: &str, _spec: &EngineSpec) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(self.of(name))
    }
}

async fn declare(broker: &Arc<Broker>, name: &str) {
    let spec = serde_json::from_value(json!({"backend": "dummy", "labels": {"zone": "a"}})).expect("spec");
    broker.engines().put(&EngineName::parse(name).expect("name"), spec, Source::Api).await.expect("declared");
}

fn engine(name: &str) -> EngineName {
    EngineName::parse(name).expect("name")
}

async fn stored(store: &Arc<SwitchableStore>, id: &str) -> ServiceInstance {
    let store: Arc<dyn Store> = store.clone();
    let records = crate::store::Records::new(store);
    records.get::<ServiceInstance>(id).await.expect("reads").expect("stored").record
}

async fn running_move(store: &Arc<SwitchableStore>) -> Option<Operation> {
    let instance = stored(store, "i").await;
    instance.operations.running().filter(|op| op.kind == OperationKind::Relocate).cloned()
}

#[tokio::test(start_paused = true)]
async fn a_move_whose_result_cannot_be_written_is_resumed_once_the_store_answers() {
    let store = Arc::new(SwitchableStore::new(false, Duration::from_millis(10)));
    let dummies = Arc::new(Dummies::default());
    let engines = FleetSettings { factory: dummies.clone(), ..FleetSettings::default() };
    let settings = crate::broker::BrokerSettings { engines, ..fixture::settings() };
    let broker = Broker::new(store.clone(), Backends::new().with(Arc::new(DummyBackend::new())), settings);
    let placement = json!({"placement": {"requires": {"zone": "a"}, "relocatable": true}});
    let service = json!({"id": "s", "name": "s", "description": "d", "bindable": true,
        "plans": [{"id": "p", "name": "p", "description": "d", "metadata": placement}]});
    broker.registrar().register_service(serde_json::from_value(service).expect("service")).await.expect("registers");
    fixture::register_manifest(&broker, "s", "p", "dummy", "x-esm-dummy: {mode: sync, hold: [provision]}").await;
    declare(&broker, "e1").await;
    dummies.of("e1").holds().release(OperationKind::Provision, "i");
    broker.instances().provision("i", fixture::provision_request(), false).await.expect("placed on e1");
    declare(&broker, "e2").await;
    broker.engines().probe_round().await.expect("probes");

    let changed = broker.engines().change_schedule(&engine("e1"), ScheduleChange::Drain).await;
    assert_eq!(changed.expect("drain").state.as_str(), "draining");
    let mut op = None;
    for _ in 0..100 {
        op = running_move(&store).await;
        if op.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let op = op.expect("the drain's round started a move");
    let moved_id = op.moved_id().expect("a move's deployment");
    // The store goes away while e2 deploys: the result's write fails.
    store.set_down(true);
    dummies.of("e2").holds().release(OperationKind::Provision, &moved_id);
    for _ in 0..100 {
        if broker.operations().running_ops().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(broker.operations().running_ops().is_empty(), "the run ended");
    store.set_down(false);
    let instance = stored(&store, "i").await;
    assert_eq!((instance.engine(), instance.retiring.is_none()), ("e1", true), "not moved: {instance:?}");
    assert!(running_move(&store).await.is_some(), "the move is still to be finished");

    // Once its lease has lapsed, the sweep resumes it: the same deployment on e2.
    let lease = crate::broker::BrokerSettings::default().operation_lease;
    tokio::time::sleep(lease + Duration::from_secs(1)).await;
    dummies.of("e2").holds().release(OperationKind::Provision, &moved_id);
    assert_eq!(broker.operations().claim_orphaned_operations(false).await.expect("claims"), 1);
    for _ in 0..100 {
        if stored(&store, "i").await.operations.last().is_some_and(|op| !op.in_progress()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let instance = stored(&store, "i").await;
    assert_eq!(instance.operations.last().map(|op| op.state), Some(OperationState::Succeeded));
    assert_eq!((instance.engine(), instance.deployed_id()), ("e2", moved_id.as_str()));
    broker.engines().evacuate_round().await.expect("a round finishes the move");
    let held = dummies.of("e2").held(None).await.expect("held");
    let deployments: Vec<&str> = held.iter().filter(|h| h.kind == "deployment").map(|h| h.owner.as_str()).collect();
    assert_eq!(deployments, [moved_id.as_str()], "one deployment on e2");
    let left = dummies.of("e1").held(None).await.expect("held");
    assert!(left.iter().all(|h| h.kind != "deployment"), "the old deployment is gone: {left:?}");
}
