//! The [`Backend`] both Docker backends are: the stored manifest parsed under the
//! operator's policy, the deployment template run on a [`DockerRuntime`], and what
//! runs read back for instance details and bindings. Written once; the runtimes
//! (containers, swarm services) hold everything that differs.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use super::DockerSettings;
use super::deploy::{self, Order, Runtime};
use super::engine::Engine;
use super::events;
use super::report::{self, Observed};
use super::spec;
use crate::backend::{Backend, BackendError, BindOutput, Deployment, Execution, Info};
use crate::backend::{host_port, labels};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::port::PortWant;
use crate::domain::resource::Holding;
use crate::manifest::Compose;

/// The runtime of a Docker backend, whichever units it runs: the engine and the
/// settings. `U` names the units ([`super::compose::Containers`],
/// [`super::swarm::Services`]); what differs between them is in their
/// [`DockerRuntime`] and [`Runtime`] implementations for `Units<U>`.
#[derive(Debug, Clone)]
pub struct Units<U> {
    /// The engine the units run on.
    pub(super) engine: Engine,
    /// The backend's settings.
    pub(super) settings: DockerSettings,
    /// Which units: a marker, no value.
    kind: PhantomData<U>,
}

impl<U> Units<U> {
    /// The runtime on `engine`.
    fn new(engine: Engine, settings: DockerSettings) -> Self {
        Self { engine, settings, kind: PhantomData }
    }
}

/// A [`Runtime`] on a Docker engine, with what the [`Backend`] needs besides deploying.
#[async_trait]
pub trait DockerRuntime: Runtime + Sized {
    /// The backend's name, for logs and `/health`.
    const NAME: &'static str;
    /// Whether it runs a service's `replicas` (a swarm), or one container each.
    const REPLICATED: bool = false;
    /// The `manifest_type` values it deploys.
    const MANIFEST_TYPES: &'static [&'static str];

    /// Refuses at registration what the manifest model accepts but this runtime cannot
    /// run.
    fn refuse(_compose: &Compose) -> Result<(), String> {
        Ok(())
    }

    /// The instance's containers on the engine, as esm reports them, by name.
    async fn observe(&self, instance_id: &str) -> Result<Vec<Observed>, BackendError>;

    /// Each component of the instance as it is now, for liveness
    /// ([`Backend::observe`]): one engine call when all is well.
    async fn components(&self, instance: &ServiceInstance) -> Result<Vec<Component>, BackendError>;

    /// The units (containers, services) with these label filters, and the host ports
    /// they publish.
    async fn units_held(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Holding>, BackendError>;

    /// Checks that the engine answers and can run these units, for `/health`.
    async fn probe(&self) -> Result<String, BackendError>;
}

/// A Docker backend: [`super::ComposeBackend`] or [`super::SwarmBackend`].
#[derive(Debug, Clone)]
pub struct DockerBackend<U>(Units<U>);

impl<U> DockerBackend<U>
where
    Units<U>: DockerRuntime,
{
    /// A backend on the engine `DOCKER_HOST` (or the local socket) names, which need not
    /// be up yet: esm starts without it, and connects once its socket appears.
    pub fn new(settings: DockerSettings) -> Result<Self, BackendError> {
        Ok(Self::on(Engine::connect()?, settings))
    }

    /// A backend on `engine` (one of a fleet's engines).
    pub fn on(engine: Engine, settings: DockerSettings) -> Self {
        Self(Units::new(engine, settings))
    }

    /// Parses a stored manifest under the operator's policy, off the runtime's workers.
    async fn parse(&self, manifest: &Manifest) -> Result<Compose, BackendError> {
        Compose::parse_off_runtime(&manifest.manifest_content, &self.0.settings.policy).await.map_err(BackendError::new)
    }

    /// The deployment of `instance` from `manifest`, parsed as `compose`.
    fn order<'a>(&'a self, instance: &'a ServiceInstance, manifest: &'a Manifest, compose: &'a Compose) -> Order<'a> {
        let settings = &self.0.settings;
        Order {
            instance_id: &instance.id,
            parameters: instance.parameters.as_ref(),
            manifest_id: &manifest.id,
            compose,
            owner: &settings.owner,
            ready_timeout: settings.ready_timeout,
            host_ports: &instance.host_ports,
        }
    }
}

#[async_trait]
impl<U> Backend for DockerBackend<U>
where
    U: Send + Sync,
    Units<U>: DockerRuntime,
{
    fn name(&self) -> &'static str {
        Units::<U>::NAME
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        Units::<U>::MANIFEST_TYPES
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        Units::<U>::refuse(&Compose::parse(&manifest.manifest_content, &self.0.settings.policy)?)
    }

    /// Two deployments cannot hold one fixed host port: only manifests that publish
    /// ephemeral ports can be deployed ahead.
    async fn poolable(&self, manifest: &Manifest) -> Result<(), String> {
        let compose = self.parse(manifest).await.map_err(|e| e.message)?;
        for (name, service) in &compose.services {
            if let Some(port) = service.ports.iter().find_map(|p| p.published) {
                return Err(format!(
                    "service {name} publishes the fixed host port {port}, which only one deployment can hold"
                ));
            }
        }
        Ok(())
    }

    /// Told only where the engine runs on this host (a local socket) and so publishes
    /// where esm can bind: a remote engine, or esm in a network namespace of its own,
    /// is never asked, and the engine's refusal stays the failure.
    fn host_port_held_elsewhere(&self, protocol: &str, port: u16) -> bool {
        self.0.engine.is_local() && host_port::held_elsewhere(self.0.settings.publish_address, protocol, port)
    }

    async fn demand(&self, manifest: &Manifest) -> Result<crate::backend::Demand, BackendError> {
        Ok(self.parse(manifest).await?.demand(Units::<U>::REPLICATED))
    }

    async fn host_ports(&self, manifest: &Manifest) -> Result<Vec<PortWant>, BackendError> {
        let compose = self.parse(manifest).await?;
        Ok(compose
            .services
            .iter()
            .flat_map(|(name, service)| service.ports.iter().map(move |port| spec::want(name, port)))
            .collect())
    }

    fn execution(&self, _manifest: &Manifest, _kind: OperationKind) -> Execution {
        // Asynchronous when the platform polls; within the request for clients that
        // never send accepts_incomplete (the ElasTest platform).
        Execution::Either
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let compose = self.parse(manifest).await?;
        deploy::provision(&self.0, &self.order(instance, manifest, &compose)).await
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let compose = self.parse(manifest).await?;
        deploy::update(&self.0, &self.order(instance, manifest, &compose)).await
    }

    async fn deprovision(&self, instance: &ServiceInstance, _manifest: Option<&Manifest>) -> Result<(), BackendError> {
        deploy::deprovision(&self.0, &instance.id).await
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        _binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        let compose = self.parse(manifest).await?;
        let observed = self.0.observe(&instance.id).await?;
        report::bind_output(&instance.id, &observed, &compose, &self.0.settings.advertise_host)
    }

    async fn info(&self, instance: &ServiceInstance, _manifest: &Manifest) -> Result<Info, BackendError> {
        Ok(report::info(&self.0.observe(&instance.id).await?))
    }

    /// Units and their ports, networks and volumes, by esm's labels: four engine calls.
    async fn held(&self, owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        let esm = &self.0.settings.owner;
        let filters = owner.map_or_else(|| labels::filter_owner(esm), |id| labels::filter_instance(esm, id));
        let mut held = self.0.units_held(&filters).await?;
        let engine = &self.0.engine;
        for (kind, listed) in
            [("network", engine.networks(&filters).await?), ("volume", engine.volumes(&filters).await?)]
        {
            for (name, mut found) in listed {
                let kept = found.get(labels::KEEP).map(String::as_str) == Some("true");
                if let Some(owner) = found.remove(labels::INSTANCE) {
                    held.push(Holding { kept, ..Holding::new(kind, name, owner) });
                }
            }
        }
        Ok(held)
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.0.clear(instance_id, false).await
    }

    async fn observe(&self, instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        self.0.components(instance).await.map(Some)
    }

    /// From the call on: what happens between the call and the engine subscribing the
    /// stream is not lost.
    fn changes(&self) -> Option<BoxStream<'static, String>> {
        let since = SystemTime::now();
        Some(events::instance_changes(&self.0.engine, &self.0.settings.owner, None, since))
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.0.probe().await
    }
}
