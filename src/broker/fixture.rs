//! What the broker's unit tests build on: a broker over a store and backends that
//! reads Tokio's clock (so a test may pause time), and one bindable service `s` with
//! plan `p` whose manifest `m` has the type and content a test names.

use std::sync::Arc;

use serde_json::json;

use crate::backend::{Backend, Backends};
use crate::broker::{Broker, BrokerSettings};
use crate::clock::Clock;
use crate::domain::manifest::Manifest;
use crate::store::Store;
use crate::wire::ProvisionRequest;

/// Settings for a test: the defaults, on Tokio's clock.
pub(crate) fn settings() -> BrokerSettings {
    BrokerSettings { clock: Clock::tokio(), ..BrokerSettings::default() }
}

/// A broker over `store` and `backend`, on Tokio's clock.
pub(crate) fn broker(store: Arc<dyn Store>, backend: Arc<dyn Backend>) -> Arc<Broker> {
    Broker::new(store, Backends::new().with(backend), settings())
}

/// Registers service `s`, plan `p` and manifest `m` (`manifest_type`, `content`).
pub(crate) async fn register_plan(broker: &Arc<Broker>, manifest_type: &str, content: &str) {
    let service = json!({"id": "s", "name": "s", "description": "d", "bindable": true,
        "plans": [{"id": "p", "name": "p", "description": "d"}]});
    broker.registrar().register_service(serde_json::from_value(service).expect("service")).await.expect("registers");
    register_manifest(broker, "s", "p", manifest_type, content).await;
}

/// Registers manifest `m` for plan `plan_id` of service `service_id` (`manifest_type`,
/// `content`).
pub(crate) async fn register_manifest(
    broker: &Arc<Broker>,
    service_id: &str,
    plan_id: &str,
    manifest_type: &str,
    content: &str,
) {
    let manifest = Manifest {
        id: String::new(),
        service_id: service_id.into(),
        plan_id: plan_id.into(),
        manifest_type: manifest_type.into(),
        manifest_content: content.into(),
        endpoints: None,
        config: None,
    };
    broker.registrar().register_manifest("m", manifest).await.expect("registers");
}

/// A provision of plan `p`.
pub(crate) fn provision_request() -> ProvisionRequest {
    let request = json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s"});
    serde_json::from_value(request).expect("a provision request")
}
