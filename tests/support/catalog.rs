//! An in-process broker's catalog for tests that drive the broker without HTTP:
//! service `s`, plan `p`, a dummy manifest `m`.

use std::sync::Arc;

use serde_json::json;

use esm::broker::Broker;
use esm::domain::catalog::Service;
use esm::domain::manifest::Manifest;
use esm::wire::ProvisionRequest;

/// Registers service `s` with plan `p` (taking `plan_extra`) deployed by a dummy `script`.
pub async fn register(broker: &Arc<Broker>, plan_extra: serde_json::Value, script: &str) {
    let mut plan = json!({"id": "p", "name": "p", "description": "d"});
    if let (Some(plan), Some(extra)) = (plan.as_object_mut(), plan_extra.as_object()) {
        plan.extend(extra.clone());
    }
    let service: Service =
        serde_json::from_value(json!({"id": "s", "name": "s", "description": "d", "bindable": true, "plans": [plan]}))
            .expect("service");
    broker.registrar().register_service(service).await.expect("service registers");
    let manifest = Manifest {
        id: String::new(),
        service_id: "s".into(),
        plan_id: "p".into(),
        manifest_type: "dummy".into(),
        manifest_content: script.into(),
        endpoints: None,
        config: None,
    };
    broker.registrar().register_manifest("m", manifest).await.expect("manifest registers");
}

/// A provision of plan `p`.
pub fn provision_request() -> ProvisionRequest {
    serde_json::from_value(json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s"}))
        .expect("request")
}
