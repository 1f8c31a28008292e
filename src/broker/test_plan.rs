//! What the broker's unit tests register: one bindable service `s` with one plan `p`,
//! whose manifest `m` has the type and content a test names.

use crate::broker::Instances;
use serde_json::json;

use crate::domain::manifest::Manifest;

impl Instances<'_> {
    /// Registers service `s`, plan `p` and manifest `m` (`manifest_type`, `content`).
    pub(super) async fn register_test_plan(&self, manifest_type: &str, content: &str) {
        let service = json!({"id": "s", "name": "s", "description": "d", "bindable": true,
            "plans": [{"id": "p", "name": "p", "description": "d"}]});
        self.broker
            .registrar()
            .register_service(serde_json::from_value(service).expect("service"))
            .await
            .expect("registers");
        let manifest = Manifest {
            id: String::new(),
            service_id: "s".into(),
            plan_id: "p".into(),
            manifest_type: manifest_type.into(),
            manifest_content: content.into(),
            endpoints: None,
            config: None,
        };
        self.broker.registrar().register_manifest("m", manifest).await.expect("registers");
    }
}
