//! What the examples share: a broker on the memory store with service `s`, plan `p`
//! (its `metadata` as given) and a dummy manifest that deploys at once.

use std::sync::Arc;

use esm::backend::Backends;
use esm::backend::dummy::DummyBackend;
use esm::broker::{Broker, BrokerSettings};
use esm::domain::catalog::Service;
use esm::domain::manifest::Manifest;
use esm::store::Store;
use esm::store::memory::MemoryStore;
use serde_json::{Value, json};

/// A broker whose plan `p` has `metadata` (none: a plan without a placement rule).
pub async fn broker_with_plan(metadata: Option<Value>) -> Arc<Broker> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let broker = Broker::new(store, Backends::new().with(Arc::new(DummyBackend::new())), BrokerSettings::default());
    let mut plan = json!({"id": "p", "name": "p", "description": "d"});
    if let Some(metadata) = metadata {
        plan["metadata"] = metadata;
    }
    let service: Service =
        serde_json::from_value(json!({"id": "s", "name": "s", "description": "d", "bindable": true, "plans": [plan]}))
            .expect("a service");
    broker.registrar().register_service(service).await.expect("registers");
    let manifest = Manifest {
        id: String::new(),
        service_id: "s".into(),
        plan_id: "p".into(),
        manifest_type: "dummy".into(),
        manifest_content: "x-esm-dummy: {mode: sync}\n".into(),
        endpoints: None,
        config: None,
    };
    broker.registrar().register_manifest("m", manifest).await.expect("registers");
    broker
}
