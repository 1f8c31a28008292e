//! A backend decorator written once: [`Layered`] puts a [`BackendLayer`] around every
//! engine call of an inner backend, so a decorator (the metered backend) says only what
//! it does around a call, and a method added to [`Backend`] is forwarded here once for
//! all of them.
//!
//! Forgetting one is caught twice: the impl denies `clippy::missing_trait_methods`, so
//! a provided method left to its default (which would skip the wrapped backend's own
//! version) fails the lint, and a unit test drives every method over a recording
//! backend and checks it arrived.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Backend, BackendError, BindOutput, Deployment, Execution, Info};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::port::PortWant;
use crate::domain::resource::Holding;

/// Which engine call of [`Backend`] a call is: the methods that ask the engine and can
/// fail with a [`BackendError`]. The others (names, manifest checks, the dashboard URL,
/// the change stream) are plain forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// [`Backend::host_ports`].
    HostPorts,
    /// [`Backend::provision`].
    Provision,
    /// [`Backend::update`].
    Update,
    /// [`Backend::deprovision`].
    Deprovision,
    /// [`Backend::bind`].
    Bind,
    /// [`Backend::unbind`].
    Unbind,
    /// [`Backend::info`].
    Info,
    /// [`Backend::held`].
    Held,
    /// One page of [`Backend::listing`].
    Listing,
    /// [`Backend::remove_instance`].
    RemoveInstance,
    /// [`Backend::observe`].
    Observe,
    /// [`Backend::probe`].
    Probe,
}

impl Call {
    /// The method's name (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            Self::HostPorts => "host_ports",
            Self::Provision => "provision",
            Self::Update => "update",
            Self::Deprovision => "deprovision",
            Self::Bind => "bind",
            Self::Unbind => "unbind",
            Self::Info => "info",
            Self::Held => "held",
            Self::Listing => "listing",
            Self::RemoveInstance => "remove_instance",
            Self::Observe => "observe",
            Self::Probe => "probe",
        }
    }
}

/// The call a layer wraps: a future of the inner backend's answer.
pub trait Work<T>: Future<Output = Result<T, BackendError>> + Send {}

impl<T, F: Future<Output = Result<T, BackendError>> + Send> Work<T> for F {}

/// What a decorator does around each engine call to the backend it wraps.
pub trait BackendLayer: Send + Sync + 'static {
    /// Runs `work`, the call `call` to the inner backend (named `backend`), and answers
    /// what the caller gets. Each page of a listing comes through here as it arrives
    /// ([`Call::Listing`]), its work already done.
    fn around<T: Send>(
        &self,
        backend: &'static str,
        call: Call,
        work: impl Work<T>,
    ) -> impl Future<Output = Result<T, BackendError>> + Send;
}

/// A backend whose engine calls go through `layer`.
pub struct Layered<L> {
    inner: Arc<dyn Backend>,
    layer: L,
}

impl<L: BackendLayer> Layered<L> {
    /// `inner`, with `layer` around its calls.
    pub fn over(inner: Arc<dyn Backend>, layer: L) -> Self {
        Self { inner, layer }
    }

    async fn through<T: Send>(&self, call: Call, work: impl Work<T>) -> Result<T, BackendError> {
        self.layer.around(self.inner.name(), call, work).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<L: BackendLayer> Backend for Layered<L> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        self.inner.manifest_types()
    }

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
        self.through(Call::HostPorts, self.inner.host_ports(manifest)).await
    }

    fn host_port_held_elsewhere(&self, protocol: &str, port: u16) -> bool {
        self.inner.host_port_held_elsewhere(protocol, port)
    }

    async fn demand(&self, manifest: &Manifest) -> Result<crate::backend::Demand, BackendError> {
        self.inner.demand(manifest).await
    }

    fn dashboard_url(&self, instance: &ServiceInstance, manifest: &Manifest) -> Option<String> {
        self.inner.dashboard_url(instance, manifest)
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.through(Call::Provision, self.inner.provision(instance, manifest)).await
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.through(Call::Update, self.inner.update(instance, manifest)).await
    }

    async fn deprovision(&self, instance: &ServiceInstance, manifest: Option<&Manifest>) -> Result<(), BackendError> {
        self.through(Call::Deprovision, self.inner.deprovision(instance, manifest)).await
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        self.through(Call::Bind, self.inner.bind(instance, binding, manifest)).await
    }

    async fn unbind(
        &self,
        instance: &ServiceInstance,
        binding: &Binding,
        manifest: &Manifest,
    ) -> Result<(), BackendError> {
        self.through(Call::Unbind, self.inner.unbind(instance, binding, manifest)).await
    }

    async fn info(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Info, BackendError> {
        self.through(Call::Info, self.inner.info(instance, manifest)).await
    }

    async fn held(&self, owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        self.through(Call::Held, self.inner.held(owner)).await
    }

    fn listing(&self) -> BoxStream<'_, Result<Vec<Holding>, BackendError>> {
        self.inner.listing().then(move |page| self.through(Call::Listing, async { page })).boxed()
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.through(Call::RemoveInstance, self.inner.remove_instance(instance_id)).await
    }

    async fn observe(&self, instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        self.through(Call::Observe, self.inner.observe(instance)).await
    }

    fn changes(&self) -> Option<BoxStream<'static, String>> {
        self.inner.changes()
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.through(Call::Probe, self.inner.probe()).await
    }
}

#[cfg(test)]
#[path = "layered_tests.rs"]
mod tests;
