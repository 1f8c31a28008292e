//! The docker-compose backend: a manifest's services run as containers through the
//! Docker Engine API, on a bridge network, one project per instance.

use std::collections::BTreeSet;

use async_trait::async_trait;
use bollard::models::{EndpointSettings, HealthStatusEnum, NetworkConnectRequest};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use super::deploy::{self, Handle, Need, Runtime, UnitState};
use super::engine::{Engine, failed};
use super::model::Compose;
use super::report::{self, Observed, observe};
use super::spec::{self, Unit};
use super::{DockerSettings, project};
use crate::backend::{Backend, BackendError, BindOutput, Deployment, Execution, Info, labels};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;

/// The docker-compose backend.
#[derive(Debug, Clone)]
pub struct ComposeBackend {
    engine: Engine,
    settings: DockerSettings,
}

impl ComposeBackend {
    /// A backend on the engine `DOCKER_HOST` (or the local socket) names, which need not
    /// be up yet (see [`Engine::connect`]).
    pub fn new(settings: DockerSettings) -> Result<Self, BackendError> {
        Ok(Self { engine: Engine::connect()?, settings })
    }

    /// The instance's containers as esm reports them, by name.
    async fn observe_all(&self, instance_id: &str) -> Result<Vec<Observed>, BackendError> {
        let project = project(instance_id);
        let mut observed = Vec::new();
        for container in self.engine.containers(&labels::filter_instance(&self.settings.owner, instance_id)).await? {
            let Some(id) = container.id else { continue };
            // Removed between listing and inspecting: it is gone.
            let Ok(inspected) = self.engine.inspect(&id).await else { continue };
            observed.push(observe(&inspected, &project));
        }
        observed.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(observed)
    }
}

/// Units are containers, started as soon as they are made.
#[async_trait]
impl Runtime for ComposeBackend {
    fn units(&self) -> &'static str {
        "containers"
    }

    async fn clear(&self, instance_id: &str, keep_volumes: bool) -> Result<(), BackendError> {
        self.engine.remove_instance(&self.settings.owner, instance_id, keep_volumes).await
    }

    async fn provide(&self, need: Need<'_>) -> Result<(), BackendError> {
        self.engine.provide(need, &self.settings, "bridge").await
    }

    async fn create_unit(&self, unit: &Unit<'_>) -> Result<Handle, BackendError> {
        let docker = self.engine.docker()?;
        let name = spec::container_name(unit);
        let (body, more_networks) = spec::container_body(unit, self.settings.publish_address);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| failed(&format!("cannot create container {name}"), e))?;
        for (network, aliases) in more_networks {
            let request = NetworkConnectRequest {
                container: created.id.clone(),
                endpoint_config: Some(EndpointSettings { aliases: Some(aliases), ..Default::default() }),
            };
            docker
                .connect_network(&network, request)
                .await
                .map_err(|e| failed(&format!("cannot connect {name} to {network}"), e))?;
        }
        docker
            .start_container(&created.id, None)
            .await
            .map_err(|e| failed(&format!("cannot start container {name}"), e))?;
        Ok(Handle { id: created.id, name })
    }

    async fn unit_state(&self, unit: &Unit<'_>, handle: &Handle) -> Result<UnitState, BackendError> {
        let state = self.engine.inspect(&handle.id).await?.state.unwrap_or_default();
        if !state.running.unwrap_or(false) {
            if state.status.is_some_and(|s| s.to_string() != "created") {
                return Ok(UnitState::Failed(format!(
                    "container {} stopped (exit code {}){}",
                    unit.name,
                    state.exit_code.unwrap_or_default(),
                    state.error.filter(|e| !e.is_empty()).map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
            return Ok(UnitState::Starting);
        }
        Ok(match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::UNHEALTHY) => UnitState::Failed(format!("container {} is unhealthy", unit.name)),
            Some(HealthStatusEnum::STARTING) => UnitState::Running { healthy: false },
            Some(HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => {
                UnitState::Running { healthy: true }
            }
        })
    }
}

#[async_trait]
impl Backend for ComposeBackend {
    fn name(&self) -> &'static str {
        "docker-compose"
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        &["docker-compose", "docker"]
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        Compose::parse(&manifest.manifest_content, &self.settings.policy).map(|_| ())
    }

    fn execution(&self, _manifest: &Manifest, _kind: OperationKind) -> Execution {
        // Asynchronous when the platform polls; within the request for clients that
        // never send accepts_incomplete (the ElasTest platform).
        Execution::Either
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let compose = self.settings.parse(manifest).await?;
        deploy::provision(self, &self.settings.order(instance, manifest, &compose)).await
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let compose = self.settings.parse(manifest).await?;
        deploy::update(self, &self.settings.order(instance, manifest, &compose)).await
    }

    async fn deprovision(&self, instance: &ServiceInstance, _manifest: Option<&Manifest>) -> Result<(), BackendError> {
        deploy::deprovision(self, &instance.id).await
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        _binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        let compose = self.settings.parse(manifest).await?;
        let observed = self.observe_all(&instance.id).await?;
        report::bind_output(&instance.id, &observed, &compose, &self.settings.advertise_host)
    }

    async fn unbind(
        &self,
        _instance: &ServiceInstance,
        _binding: &Binding,
        _manifest: &Manifest,
    ) -> Result<(), BackendError> {
        // The credentials are addresses of the deployment: nothing to revoke.
        Ok(())
    }

    async fn info(&self, instance: &ServiceInstance, _manifest: &Manifest) -> Result<Info, BackendError> {
        Ok(report::info(&self.observe_all(&instance.id).await?))
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.engine.ping().await
    }

    async fn owned_instances(&self) -> Result<BTreeSet<String>, BackendError> {
        let containers = self.engine.containers(&labels::filter_owner(&self.settings.owner)).await?;
        Ok(containers.into_iter().filter_map(|c| c.labels?.remove(labels::INSTANCE)).collect())
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.clear(instance_id, false).await
    }
}
