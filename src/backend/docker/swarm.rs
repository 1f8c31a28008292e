//! The docker swarm backend: the same compose manifests deployed as swarm services on
//! attachable overlay networks, through the services API.
//!
//! Per instance: the networks and named volumes the compose backend would make (overlay
//! networks; volumes on this node, and, through the mounts' volume options, labelled
//! the same wherever the engine makes them), and one service `<project>_<service>` per
//! manifest service. Ports are published through the ingress routing mesh, or on the
//! task's node with the long port syntax's `mode: host`. Instance details come from
//! the task containers on the node esm talks to (a single-node swarm, or the manager's
//! own tasks).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::models::{Service, Task, TaskState};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use futures_util::stream::BoxStream;
use tokio::time::Instant;

use super::backend::{DockerBackend, DockerRuntime, Units};
use super::deploy::{Handle, Need, Runtime, UnitState};
use super::engine::{failed, is_not_found};
use super::events;
use super::liveness;
use super::report::{Observed, observe_instance};
use super::spec::{self, Unit};
use crate::backend::{BackendError, labels};
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::resource::Holding;
use crate::manifest::Compose;

/// How long the task containers of removed services may take to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The docker swarm backend.
pub type SwarmBackend = DockerBackend<Services>;

/// The units of the docker swarm backend ([`Units`]): services; a unit is running when all its replicas are (swarm reports a
/// task with a health check running only once it is healthy). The engine must be a
/// swarm manager.
#[derive(Debug, Clone)]
pub enum Services {}

impl Units<Services> {
    /// The services with these label filters.
    async fn services(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Service>, BackendError> {
        let options = ListServicesOptionsBuilder::new().filters(filters).build();
        self.engine.docker()?.list_services(Some(options)).await.map_err(|e| failed("cannot list services", e))
    }

    /// The tasks with these filters (a label filter matches the service's labels).
    async fn tasks(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Task>, BackendError> {
        let options = ListTasksOptionsBuilder::new().filters(filters).build();
        self.engine.docker()?.list_tasks(Some(options)).await.map_err(|e| failed("cannot list tasks", e))
    }
}

/// The manifest service a swarm service runs (its `esm.service` label).
fn service_label(service: &Service) -> String {
    service.spec.as_ref().and_then(|s| s.labels.as_ref()?.get(labels::SERVICE).cloned()).unwrap_or_default()
}

#[async_trait]
impl DockerRuntime for Units<Services> {
    const NAME: &'static str = "docker-swarm";
    const REPLICATED: bool = true;
    const MANIFEST_TYPES: &'static [&'static str] = &["docker-swarm"];

    /// The instance's services and all their tasks, in two listings: one component per
    /// desired replica (`service.N`). The containers of the tasks swarm wants running
    /// are inspected where they are on this node: a container event asks for a look
    /// before the manager has heard of the start or stop.
    async fn components(&self, instance: &ServiceInstance) -> Result<Vec<Component>, BackendError> {
        let filter = labels::filter_instance(&self.settings.owner, &instance.id);
        let services = self.services(&filter).await?;
        let tasks = self.tasks(&filter).await?;
        let mut containers = HashMap::new();
        let current = tasks.iter().filter(|t| matches!(t.desired_state, Some(TaskState::RUNNING | TaskState::READY)));
        for container in current.filter_map(liveness::container_of) {
            // Not on this node (or just removed): the manager's word stands.
            if let Some(inspected) = self.engine.inspect_if_present(container).await? {
                containers.insert(container.to_owned(), inspected.state.unwrap_or_default());
            }
        }
        let mut seen = Vec::new();
        for service in &services {
            let desired = service
                .spec
                .as_ref()
                .and_then(|s| s.mode.as_ref()?.replicated.as_ref()?.replicas)
                .and_then(|r| u64::try_from(r).ok())
                .unwrap_or(1);
            let own = tasks.iter().filter(|t| t.service_id.is_some() && t.service_id == service.id);
            seen.extend(liveness::tasks(&service_label(service), desired, own, &containers));
        }
        Ok(liveness::with_removed(seen, instance.deployment.get(self.units()), liveness::SERVICE))
    }

    fn refuse(compose: &Compose) -> Result<(), String> {
        // Swarm services cannot use these container settings.
        for (name, service) in &compose.services {
            if service.privileged || service.pid_host || service.host_network || !service.devices.is_empty() {
                return Err(format!(
                    "service {name}: privileged, pid: host, network_mode: host and devices are not available on swarm"
                ));
            }
        }
        Ok(())
    }

    /// The instance's task containers on this node, with the ports the routing mesh
    /// publishes for their service.
    async fn observe(&self, instance_id: &str) -> Result<Vec<Observed>, BackendError> {
        let filter = labels::filter_instance(&self.settings.owner, instance_id);
        let mut published: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
        for service in self.services(&filter).await? {
            let name = service_label(&service);
            let ports = service.endpoint.and_then(|e| e.ports).unwrap_or_default();
            let mapped = ports
                .into_iter()
                .filter_map(|p| {
                    let protocol = p.protocol.map(|p| p.to_string()).unwrap_or_else(|| "tcp".into());
                    Some((
                        format!("{}/{protocol}", p.target_port?),
                        "0.0.0.0".to_owned(),
                        p.published_port?.to_string(),
                    ))
                })
                .collect();
            published.insert(name, mapped);
        }
        let mut observed = observe_instance(&self.engine, &self.settings.owner, instance_id).await?;
        // Host-mode ports are the task container's own; ingress ones the service's.
        for seen in observed.iter_mut().filter(|seen| seen.ports.is_empty()) {
            seen.ports = published.get(&seen.service).cloned().unwrap_or_default();
        }
        Ok(observed)
    }

    /// Services, and the host ports the routing mesh publishes for them (on every
    /// address of every node).
    async fn units_held(&self, filters: &HashMap<String, Vec<String>>) -> Result<Vec<Holding>, BackendError> {
        let mut held = Vec::new();
        for service in self.services(filters).await? {
            let spec = service.spec.unwrap_or_default();
            let (Some(name), Some(owner)) = (spec.name, spec.labels.and_then(|mut l| l.remove(labels::INSTANCE)))
            else {
                continue;
            };
            held.push(Holding::new("service", name, owner.clone()));
            for port in service.endpoint.and_then(|e| e.ports).unwrap_or_default() {
                let Some(public) = port.published_port.and_then(|p| u16::try_from(p).ok()) else { continue };
                let protocol = port.protocol.map_or_else(|| "tcp".to_owned(), |p| p.to_string());
                held.push(Holding::port(Some("0.0.0.0".into()), public, &protocol, owner.clone()));
            }
        }
        Ok(held)
    }

    async fn probe(&self) -> Result<String, BackendError> {
        let info = self.engine.docker()?.info().await.map_err(|e| failed("the Docker engine does not answer", e))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            return Err(BackendError::new("the Docker engine is not a swarm manager (docker swarm init)"));
        }
        // What an engine's record shows as its facts: version, size, which node esm asks.
        Ok(format!(
            "Docker engine {}, swarm manager of {} nodes ({} managers), node {}",
            info.server_version.unwrap_or_default(),
            swarm.nodes.unwrap_or_default(),
            swarm.managers.unwrap_or_default(),
            swarm.node_id.unwrap_or_default()
        ))
    }
}

#[async_trait]
impl Runtime for Units<Services> {
    fn units(&self) -> &'static str {
        "services"
    }

    /// Removes the instance's services, then (once their tasks are gone) its networks
    /// and, unless kept, volumes.
    async fn clear(&self, instance_id: &str, keep_volumes: bool) -> Result<(), BackendError> {
        let docker = self.engine.docker()?;
        let filter = labels::filter_instance(&self.settings.owner, instance_id);
        for service in self.services(&filter).await? {
            let Some(id) = service.id else { continue };
            match docker.delete_service(&id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&format!("cannot remove service {id}"), e)),
            }
        }
        // Task containers stop asynchronously; networks and volumes are free after.
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !self.engine.containers(&filter).await?.is_empty() {
            if Instant::now() >= deadline {
                return Err(BackendError::new(format!("the containers of instance {instance_id} did not stop")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.engine.remove_instance(&self.settings.owner, instance_id, keep_volumes).await
    }

    async fn provide(&self, need: Need<'_>) -> Result<(), BackendError> {
        self.engine.provide(need, &self.settings, "overlay").await
    }

    async fn create_unit(&self, unit: &Unit<'_>) -> Result<Handle, BackendError> {
        let name = spec::service_name(unit);
        let created = self
            .engine
            .docker()?
            .create_service(spec::service_spec(unit), None)
            .await
            .map_err(|e| failed(&format!("cannot create service {name}"), e))?;
        Ok(Handle { id: created.id.unwrap_or_default(), name })
    }

    /// A failed or rejected task fails the deployment with the engine's reason.
    async fn unit_state(&self, unit: &Unit<'_>, handle: &Handle) -> Result<UnitState, BackendError> {
        // By the service's id: a name may be another deployment's too.
        let tasks = self.tasks(&HashMap::from([("service".to_owned(), vec![handle.id.clone()])])).await?;
        let mut running: u64 = 0;
        for task in tasks {
            let status = task.status.unwrap_or_default();
            match status.state {
                Some(TaskState::RUNNING) => running += 1,
                Some(TaskState::FAILED | TaskState::REJECTED) => {
                    return Ok(UnitState::Failed(format!(
                        "service {} failed to start: {}",
                        unit.name,
                        status.err.or(status.message).map_or("no reason given", |raw| {
                            crate::backend::said::in_esm_words(
                                "a swarm task",
                                &raw,
                                "the engine gave a reason esm does not know (the operator's log says it)",
                            )
                        })
                    )));
                }
                _ => {}
            }
        }
        let wanted = spec::replicas(unit.service);
        Ok(if running >= wanted { UnitState::Running { healthy: true } } else { UnitState::Starting })
    }

    fn changes(&self, instance_id: &str, since: SystemTime) -> Option<BoxStream<'static, ()>> {
        Some(events::unit_changes(&self.engine, &self.settings.owner, instance_id, since))
    }
}
