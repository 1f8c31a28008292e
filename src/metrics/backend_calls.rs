//! A backend whose failed calls are counted into [`Metrics`]
//! (`esm_backend_errors_total{backend, call}`).
//!
//! A decorator, so no backend knows about metrics; `app.rs` wraps each configured
//! backend. It forwards every method of [`Backend`], the provided ones too: a method
//! added to the trait with a default body must be forwarded here as well, or the
//! wrapped backend's own version would never be called.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use futures_util::stream::BoxStream;

use super::Metrics;
use crate::backend::{Backend, BackendError, BindOutput, Deployment, Execution, Info};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::port::PortWant;
use crate::domain::resource::Holding;

/// A [`Backend`] whose failures are counted.
pub struct MeteredBackend {
    inner: Arc<dyn Backend>,
    metrics: Metrics,
}

impl MeteredBackend {
    /// Counts the failed calls to `inner` into `metrics`.
    pub fn new(inner: Arc<dyn Backend>, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    fn count<T>(&self, call: &'static str, result: Result<T, BackendError>) -> Result<T, BackendError> {
        if result.is_err() {
            self.metrics.backend_error(self.inner.name(), call);
        }
        result
    }
}

#[async_trait]
impl Backend for MeteredBackend {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        self.inner.manifest_types()
    }

    /// A refused manifest is the registering client's error, not the backend's: not
    /// counted.
    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        self.inner.check_manifest(manifest)
    }

    fn execution(&self, manifest: &Manifest, kind: OperationKind) -> Execution {
        self.inner.execution(manifest, kind)
    }

    fn requires_app(&self, manifest: &Manifest) -> bool {
        self.inner.requires_app(manifest)
    }

    async fn poolable(&self, manifest: &Manifest) -> Result<(), String> {
        self.inner.poolable(manifest).await
    }

    async fn host_ports(&self, manifest: &Manifest) -> Result<Vec<PortWant>, BackendError> {
        self.inner.host_ports(manifest).await
    }

    fn host_port_held_elsewhere(&self, protocol: &str, port: u16) -> bool {
        self.inner.host_port_held_elsewhere(protocol, port)
    }

    fn dashboard_url(&self, instance: &ServiceInstance, manifest: &Manifest) -> Option<String> {
        self.inner.dashboard_url(instance, manifest).filter(|url| crate::backend::check_dashboard_url(url).is_ok())
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.count("provision", self.inner.provision(instance, manifest).await)
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.count("update", self.inner.update(instance, manifest).await)
    }

    async fn deprovision(&self, instance: &ServiceInstance, manifest: Option<&Manifest>) -> Result<(), BackendError> {
        self.count("deprovision", self.inner.deprovision(instance, manifest).await)
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        self.count("bind", self.inner.bind(instance, binding, manifest).await)
    }

    async fn unbind(
        &self,
        instance: &ServiceInstance,
        binding: &Binding,
        manifest: &Manifest,
    ) -> Result<(), BackendError> {
        self.count("unbind", self.inner.unbind(instance, binding, manifest).await)
    }

    async fn info(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Info, BackendError> {
        self.count("info", self.inner.info(instance, manifest).await)
    }

    async fn held(&self, owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        self.count("held", self.inner.held(owner).await)
    }

    fn listing(&self) -> BoxStream<'_, Result<Vec<Holding>, BackendError>> {
        let (metrics, name) = (self.metrics.clone(), self.inner.name());
        Box::pin(self.inner.listing().inspect_err(move |_| metrics.backend_error(name, "held")))
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.count("remove_instance", self.inner.remove_instance(instance_id).await)
    }

    async fn observe(&self, instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        self.count("observe", self.inner.observe(instance).await)
    }

    fn changes(&self) -> Option<BoxStream<'static, String>> {
        self.inner.changes()
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.count("probe", self.inner.probe().await)
    }
}
