//! The docker-compose backend: a manifest's services run as containers through the
//! Docker Engine API, on a bridge network, one project per instance.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::models::{ContainerStateStatusEnum, EndpointSettings, HealthStatusEnum, NetworkConnectRequest};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use futures_util::stream::BoxStream;

use super::backend::{DockerBackend, DockerRuntime, Units};
use super::deploy::{Handle, Need, Runtime, UnitState};
use super::engine::failed;
use super::events;
use super::liveness::{self, CONTAINER};
use super::report::{Observed, observe_instance};
use super::spec::{self, Unit};
use crate::backend::{BackendError, labels};
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::resource::Holding;

/// How often a deployment reads its containers' state while it waits: only a fallback,
/// since the engine's events tell every start, exit and health change.
const POLL: Duration = Duration::from_secs(1);

/// The docker-compose backend.
pub type ComposeBackend = DockerBackend<Containers>;

/// The units of the docker-compose backend ([`Units`]): containers, started as soon
/// as they are made.
#[derive(Debug, Clone)]
pub enum Containers {}

#[async_trait]
impl DockerRuntime for Units<Containers> {
    const NAME: &'static str = "docker-compose";
    const MANIFEST_TYPES: &'static [&'static str] = &["docker-compose", "docker"];

    /// The instance's containers, listed by label, each inspected: the listing lags
    /// the engine's events (engine 20.10 tells a container's death or health change
    /// before its listing shows it), while an inspection waits for the engine to have
    /// taken it in.
    async fn components(&self, instance: &ServiceInstance) -> Result<Vec<Component>, BackendError> {
        let mut seen = Vec::new();
        for listed in self.engine.containers(&labels::filter_instance(&self.settings.owner, &instance.id)).await? {
            let service = listed.labels.as_ref().and_then(|l| l.get(labels::SERVICE).cloned());
            let name = service
                .or_else(|| Some(listed.names.as_ref()?.first()?.trim_start_matches('/').to_owned()))
                .unwrap_or_default();
            let Some(id) = listed.id else { continue };
            seen.push(match self.engine.inspect_if_present(&id).await? {
                Some(inspected) => liveness::container(&name, &inspected.state.unwrap_or_default()),
                None => liveness::down(&name, CONTAINER, "removed"),
            });
        }
        Ok(liveness::with_removed(seen, instance.deployment.get(self.units()), CONTAINER))
    }

    async fn observe(&self, instance_id: &str) -> Result<Vec<Observed>, BackendError> {
        observe_instance(&self.engine, &self.settings.owner, instance_id).await
    }

    /// Containers, and the host ports they publish (listed once per address family:
    /// the first address stands for the port).
    async fn units_held(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Holding>, BackendError> {
        let mut held = Vec::new();
        for container in self.engine.containers(filters).await? {
            let Some(owner) = container.labels.and_then(|mut l| l.remove(labels::INSTANCE)) else { continue };
            let Some(name) = container.names.as_ref().and_then(|n| n.first()) else { continue };
            held.push(Holding::new("container", name.trim_start_matches('/'), owner.clone()));
            for port in container.ports.unwrap_or_default() {
                let (Some(public), Some(protocol)) = (port.public_port, port.typ) else { continue };
                let protocol = protocol.to_string();
                if !held.iter().any(|h| h.port.as_ref().is_some_and(|p| p.port == public && p.protocol == protocol)) {
                    held.push(Holding::port(port.ip, public, &protocol, owner.clone()));
                }
            }
        }
        Ok(held)
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.engine.ping().await
    }
}

#[async_trait]
impl Runtime for Units<Containers> {
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

    /// A container restarting (its restart policy) is starting again; one stopped
    /// fails the deployment with the reason liveness would give.
    async fn unit_state(&self, unit: &Unit<'_>, handle: &Handle) -> Result<UnitState, BackendError> {
        let state = self.engine.inspect(&handle.id).await?.state.unwrap_or_default();
        if state.restarting == Some(true) || state.status == Some(ContainerStateStatusEnum::CREATED) {
            return Ok(UnitState::Starting);
        }
        if state.running != Some(true) {
            return Ok(UnitState::Failed(format!(
                "container {} stopped ({})",
                unit.name,
                liveness::stop_reason(&state)
            )));
        }
        Ok(match state.health.and_then(|h| h.status) {
            Some(HealthStatusEnum::UNHEALTHY) => UnitState::Failed(format!("container {} is unhealthy", unit.name)),
            Some(HealthStatusEnum::STARTING) => UnitState::Running { healthy: false },
            Some(HealthStatusEnum::HEALTHY | HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => {
                UnitState::Running { healthy: true }
            }
        })
    }

    fn changes(&self, instance_id: &str, since: SystemTime) -> Option<BoxStream<'static, ()>> {
        Some(events::unit_changes(&self.engine, &self.settings.owner, instance_id, since))
    }

    fn poll_interval(&self) -> Duration {
        POLL
    }
}
