//! The backend conformance suite (`esm::backend::conformance`) against the dummy
//! backend, alone and behind the meter, as esm runs it. The Docker backends' runs of the
//! same suite are in the Docker tier (`tests/docker/conformance.rs`), the Kubernetes
//! backend's in `tests/kubernetes/backend.rs`.

use std::sync::Arc;

use esm::backend::conformance::{self, Subject};
use esm::backend::dummy::DummyBackend;
use esm::domain::manifest::Manifest;
use esm::metrics::Metrics;
use esm::metrics::backend_calls::MeteredBackend;
use esm::store::memory::MemoryStore;

use crate::support::docker::IMAGE;

fn manifest(manifest_type: &str, content: String) -> Manifest {
    conformance::manifest("conformance", manifest_type, content)
}

#[tokio::test]
async fn the_dummy_backend_conforms() {
    let services = format!("services:\n  app:\n    image: {IMAGE}\n");
    conformance::run(Subject {
        new_backend: Box::new(|| Arc::new(DummyBackend::new())),
        manifest: manifest("dummy", services.clone()),
        failing: manifest("dummy", format!("x-esm-dummy: {{fail: [provision]}}\n{services}")),
    })
    .await;
}

/// The dummy as esm runs it, behind the decorator that counts failed calls: it
/// forwards every call, and the failing provision of the suite is counted.
#[tokio::test]
async fn the_dummy_backend_behind_the_meter_conforms() {
    let metrics = Metrics::new();
    let counted = metrics.clone();
    let services = format!("services:\n  app:\n    image: {IMAGE}\n");
    conformance::run(Subject {
        new_backend: Box::new(move || Arc::new(MeteredBackend::new(Arc::new(DummyBackend::new()), counted.clone()))),
        manifest: manifest("dummy", services.clone()),
        failing: manifest("dummy", format!("x-esm-dummy: {{fail: [provision]}}\n{services}")),
    })
    .await;
    let text = metrics.render(&MemoryStore::new()).await;
    let failed = r#"esm_backend_errors_total{backend="dummy",call="provision"} "#;
    assert!(text.lines().any(|l| l.starts_with(failed)), "{text}");
}
