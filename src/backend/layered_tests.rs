//! Every [`Backend`] method reaches the inner backend through [`Layered`], and every
//! engine call passes the layer.

use std::sync::Mutex;

use crate::backend::Demand;

use super::*;
use crate::backend::conformance::{instance, manifest};

/// Records each method it is asked, and fails every engine call, so the layer sees the
/// errors too. It overrides every method (the lint makes sure), so a method the layered
/// backend left to its default would not be recorded.
#[derive(Default)]
struct Recorder(Mutex<Vec<&'static str>>);

impl Recorder {
    fn saw(&self, method: &'static str) {
        self.0.lock().expect("not poisoned").push(method);
    }

    fn failed<T>(&self, method: &'static str) -> Result<T, BackendError> {
        self.saw(method);
        Err(BackendError::new(method))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl Backend for Recorder {
    fn name(&self) -> &'static str {
        self.saw("name");
        "recorder"
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        self.saw("manifest_types");
        &["recorder"]
    }

    fn check_manifest(&self, _manifest: &Manifest) -> Result<(), String> {
        self.saw("check_manifest");
        Ok(())
    }

    fn execution(&self, _manifest: &Manifest, _kind: OperationKind) -> Execution {
        self.saw("execution");
        Execution::Either
    }

    fn requires_app(&self, _manifest: &Manifest) -> bool {
        self.saw("requires_app");
        true
    }

    async fn poolable(&self, _manifest: &Manifest) -> Result<(), String> {
        self.saw("poolable");
        Ok(())
    }

    async fn host_ports(&self, _manifest: &Manifest) -> Result<Vec<PortWant>, BackendError> {
        self.failed("host_ports")
    }

    async fn demand(&self, _manifest: &Manifest) -> Result<Demand, BackendError> {
        self.saw("demand");
        Ok(Demand { cpu_millis: 1500, memory_bytes: 1 << 30 })
    }

    fn host_port_held_elsewhere(&self, _protocol: &str, _port: u16) -> bool {
        self.saw("host_port_held_elsewhere");
        true
    }

    fn dashboard_url(&self, _instance: &ServiceInstance, _manifest: &Manifest) -> Option<String> {
        self.saw("dashboard_url");
        Some("javascript:alert(1)".into())
    }

    async fn provision(&self, _instance: &ServiceInstance, _manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.failed("provision")
    }

    async fn update(&self, _instance: &ServiceInstance, _manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.failed("update")
    }

    async fn deprovision(&self, _instance: &ServiceInstance, _manifest: Option<&Manifest>) -> Result<(), BackendError> {
        self.failed("deprovision")
    }

    async fn bind(&self, _: &ServiceInstance, _: &Binding, _: &Manifest) -> Result<BindOutput, BackendError> {
        self.failed("bind")
    }

    async fn unbind(&self, _: &ServiceInstance, _: &Binding, _: &Manifest) -> Result<(), BackendError> {
        self.failed("unbind")
    }

    async fn info(&self, _instance: &ServiceInstance, _manifest: &Manifest) -> Result<Info, BackendError> {
        self.failed("info")
    }

    async fn held(&self, _owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        self.failed("held")
    }

    fn listing(&self) -> BoxStream<'_, Result<Vec<Holding>, BackendError>> {
        self.saw("listing");
        futures_util::stream::iter([Ok(Vec::new()), Err(BackendError::new("listing"))]).boxed()
    }

    async fn remove_instance(&self, _instance_id: &str) -> Result<(), BackendError> {
        self.failed("remove_instance")
    }

    async fn observe(&self, _instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        self.failed("observe")
    }

    fn changes(&self) -> Option<BoxStream<'static, String>> {
        self.saw("changes");
        None
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.failed("probe")
    }
}

/// Notes each call it sees and whether it failed.
#[derive(Default)]
struct Notes(Mutex<Vec<(Call, bool)>>);

impl BackendLayer for Arc<Notes> {
    async fn around<T: Send>(&self, backend: &'static str, call: Call, work: impl Work<T>) -> Result<T, BackendError> {
        assert_eq!(backend, "recorder");
        let result = work.await;
        self.0.lock().expect("not poisoned").push((call, result.is_err()));
        result
    }
}

#[tokio::test]
async fn every_method_reaches_the_inner_backend_and_every_engine_call_the_layer() {
    let inner = Arc::new(Recorder::default());
    let notes = Arc::new(Notes::default());
    let layered = Layered::over(inner.clone(), notes.clone());
    let m = manifest("t", "recorder", String::new());
    let i = instance("i-1", &m);
    let b: Binding = serde_json::from_value(serde_json::json!({
        "id": "b-1", "instance_id": "i-1", "service_id": "svc", "plan_id": "plan",
        "status": "bound", "created_at": "2026-01-01T00:00:00.000Z"
    }))
    .expect("a binding");

    // The answers are the inner backend's, unchanged (the dashboard URL unfiltered).
    assert_eq!(layered.manifest_types(), ["recorder"]);
    assert!(layered.check_manifest(&m).is_ok());
    assert_eq!(layered.execution(&m, OperationKind::Bind), Execution::Either);
    assert!(layered.requires_app(&m));
    assert!(layered.poolable(&m).await.is_ok());
    assert!(layered.host_port_held_elsewhere("tcp", 80));
    assert_eq!(layered.dashboard_url(&i, &m).as_deref(), Some("javascript:alert(1)"));
    assert!(layered.changes().is_none());
    assert!(layered.host_ports(&m).await.is_err());
    assert_eq!(layered.demand(&m).await, Ok(Demand { cpu_millis: 1500, memory_bytes: 1 << 30 }));
    assert!(layered.provision(&i, &m).await.is_err());
    assert!(layered.update(&i, &m).await.is_err());
    assert!(layered.deprovision(&i, Some(&m)).await.is_err());
    assert!(layered.bind(&i, &b, &m).await.is_err());
    assert!(layered.unbind(&i, &b, &m).await.is_err());
    assert!(layered.info(&i, &m).await.is_err());
    assert!(layered.held(None).await.is_err());
    let pages: Vec<_> = layered.listing().collect().await;
    assert_eq!(pages.iter().map(Result::is_err).collect::<Vec<_>>(), [false, true]);
    assert!(layered.remove_instance("i-1").await.is_err());
    assert!(layered.observe(&i).await.is_err());
    assert!(layered.probe().await.is_err());
    assert_eq!(layered.name(), "recorder");

    let mut seen = inner.0.lock().expect("not poisoned").clone();
    seen.sort_unstable();
    seen.dedup();
    let mut every = [
        "name",
        "manifest_types",
        "check_manifest",
        "execution",
        "requires_app",
        "poolable",
        "host_ports",
        "demand",
        "host_port_held_elsewhere",
        "dashboard_url",
        "provision",
        "update",
        "deprovision",
        "bind",
        "unbind",
        "info",
        "held",
        "listing",
        "remove_instance",
        "observe",
        "changes",
        "probe",
    ];
    every.sort_unstable();
    assert_eq!(seen, every, "every method reached the inner backend");

    use Call::*;
    let calls = notes.0.lock().expect("not poisoned").clone();
    let expected = [
        (HostPorts, true),
        (Provision, true),
        (Update, true),
        (Deprovision, true),
        (Bind, true),
        (Unbind, true),
        (Info, true),
        (Held, true),
        (Listing, false),
        (Listing, true),
        (RemoveInstance, true),
        (Observe, true),
        (Probe, true),
    ];
    assert_eq!(calls, expected, "every engine call passed the layer, each page of a listing too");
}
