//! The docker swarm backend: the same compose manifests deployed as swarm services on
//! an overlay network, through the services API.
//!
//! Per instance: an attachable overlay network `<project>_default`, and one service
//! `<project>_<service>` per manifest service (compose `entrypoint` becomes the swarm
//! command, compose `command` its args). Ports are published through the ingress
//! routing mesh, or on the task's node with the long port syntax's `mode: host`; named volumes are made on the node by the engine, labelled through
//! the mount's volume options. Everything carries esm's labels and is found by them.
//! Instance details come from the task containers on the node esm talks to (a
//! single-node swarm, or the manager's own tasks).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, HealthConfig,
    Limit, Mount, MountType, MountVolumeOptions, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListServicesOptionsBuilder, ListTasksOptionsBuilder};
use serde_json::{Map, Value, json};

use super::compose::with_parameters;
use super::engine::{Engine, MIN_UPTIME, failed, is_not_found};
use super::model::{Compose, MountSource};
use super::report::{Observed, observe};
use super::{DockerSettings, project, report};
use crate::backend::{Backend, BackendError, BindOutput, Deployment, Execution, Info, labels};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;

/// The docker swarm backend.
#[derive(Debug, Clone)]
pub struct SwarmBackend {
    engine: Engine,
    settings: DockerSettings,
}

impl SwarmBackend {
    /// A backend on the engine `DOCKER_HOST` (or the local socket) names, which need not
    /// be up yet (see [`Engine::connect`]); it must be a swarm manager.
    pub fn new(settings: DockerSettings) -> Result<Self, BackendError> {
        Ok(Self { engine: Engine::connect()?, settings })
    }

    async fn parse(&self, manifest: &Manifest) -> Result<Compose, BackendError> {
        Compose::parse_off_runtime(&manifest.manifest_content, &self.settings.policy).await.map_err(BackendError::new)
    }

    /// Removes an instance's services, then (once their tasks are gone) its networks
    /// and, unless kept, volumes. Idempotent.
    async fn remove(&self, instance_id: &str, keep_volumes: bool) -> Result<(), BackendError> {
        let docker = self.engine.docker()?;
        let filter = labels::filter_instance(&self.settings.owner, instance_id);
        let options = ListServicesOptionsBuilder::new().filters(&filter).build();
        let services = docker.list_services(Some(options)).await.map_err(|e| failed("cannot list services", e))?;
        for service in services {
            let Some(id) = service.id else { continue };
            match docker.delete_service(&id).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(failed(&format!("cannot remove service {id}"), e)),
            }
        }
        // Task containers stop asynchronously; networks and volumes are free after.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.engine.containers(&filter).await?.is_empty() {
            if Instant::now() >= deadline {
                return Err(BackendError::new(format!("the containers of instance {instance_id} did not stop")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.engine.remove_instance(&self.settings.owner, instance_id, keep_volumes).await
    }

    async fn deploy(
        &self,
        instance: &ServiceInstance,
        manifest: &Manifest,
        fresh: bool,
    ) -> Result<Deployment, BackendError> {
        let compose = self.parse(manifest).await?;
        self.remove(&instance.id, true).await?;
        match self.create(instance, manifest, &compose).await {
            Ok(deployment) => Ok(deployment),
            Err(e) => {
                if let Err(cleanup) = self.remove(&instance.id, !fresh).await {
                    tracing::error!(instance_id = %instance.id, error = %cleanup, "could not remove a failed deployment");
                }
                Err(e)
            }
        }
    }

    async fn create(
        &self,
        instance: &ServiceInstance,
        manifest: &Manifest,
        compose: &Compose,
    ) -> Result<Deployment, BackendError> {
        let docker = self.engine.docker()?;
        let project = project(&instance.id);
        let base_labels = labels::for_instance(&self.settings.owner, &instance.id, &manifest.id);
        for service in compose.services.values() {
            self.engine.ensure_image(&service.image, self.settings.pull).await?;
        }
        let networks = self.engine.make_networks(compose, &project, "overlay", &base_labels).await?;
        for (name, volume) in compose.volumes.iter().filter(|(_, v)| v.external) {
            let engine_name = volume.name.as_deref().unwrap_or(name);
            self.engine.check_external_volume(engine_name, self.settings.policy.allow_bind_mounts).await?;
        }

        let mut services = Map::new();
        for name in &compose.start_order {
            let service = &compose.services[name];
            let service_name = format!("{project}_{name}");
            let mut service_labels = labels::with_esm_labels(&service.labels, &base_labels);
            service_labels.insert(labels::SERVICE.into(), name.clone());
            let environment = with_parameters(service, instance);
            let mounts = service
                .volumes
                .iter()
                .map(|m| {
                    let mut volume_labels = base_labels.clone();
                    if let MountSource::Volume(v) = &m.source
                        && compose.volumes.get(v).is_some_and(|v| v.keep)
                    {
                        volume_labels.insert(labels::KEEP.into(), "true".into());
                    }
                    Mount {
                        target: Some(m.target.clone()),
                        source: match &m.source {
                            MountSource::Volume(v) => Some(
                                compose
                                    .volumes
                                    .get(v)
                                    .filter(|v| v.external)
                                    .map(|ext| ext.name.clone().unwrap_or_else(|| v.clone()))
                                    .unwrap_or_else(|| format!("{project}_{v}")),
                            ),
                            MountSource::Bind(path) => Some(path.clone()),
                            MountSource::Anonymous => None,
                        },
                        typ: Some(if matches!(m.source, MountSource::Bind(_)) {
                            MountType::BIND
                        } else {
                            MountType::VOLUME
                        }),
                        read_only: Some(m.read_only),
                        volume_options: (!matches!(m.source, MountSource::Bind(_)))
                            .then(|| MountVolumeOptions { labels: Some(volume_labels), ..Default::default() }),
                        ..Default::default()
                    }
                })
                .collect();
            let joined: Vec<(String, Vec<String>)> = if service.networks.is_empty() {
                vec![("default".to_owned(), Vec::new())]
            } else {
                service.networks.iter().map(|(n, a)| (n.clone(), a.clone())).collect()
            };
            let attachments = joined
                .into_iter()
                .filter_map(|(network, extra)| {
                    let mut aliases = vec![name.clone()];
                    aliases.extend(service.container_name.clone());
                    aliases.extend(extra);
                    Some(NetworkAttachmentConfig {
                        target: Some(networks.get(&network)?.clone()),
                        aliases: Some(aliases),
                        ..Default::default()
                    })
                })
                .collect();
            let ports = service
                .ports
                .iter()
                .map(|p| EndpointPortConfig {
                    protocol: Some(if p.protocol == "udp" {
                        EndpointPortConfigProtocolEnum::UDP
                    } else {
                        EndpointPortConfigProtocolEnum::TCP
                    }),
                    target_port: Some(i64::from(p.target)),
                    published_port: p.published.map(i64::from),
                    publish_mode: Some(if p.mode.as_deref() == Some("host") {
                        EndpointPortConfigPublishModeEnum::HOST
                    } else {
                        EndpointPortConfigPublishModeEnum::INGRESS
                    }),
                    ..Default::default()
                })
                .collect();
            let nanos = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            let condition = match service.restart.as_deref().map(|r| r.split(':').next().unwrap_or_default()) {
                Some("no") => TaskSpecRestartPolicyConditionEnum::NONE,
                Some("on-failure") => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
                _ => TaskSpecRestartPolicyConditionEnum::ANY,
            };
            let spec = ServiceSpec {
                name: Some(service_name.clone()),
                labels: Some(service_labels.clone()),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(service.image.clone()),
                        labels: Some(service_labels),
                        command: service.entrypoint.clone(),
                        args: service.command.clone(),
                        hostname: service.hostname.clone(),
                        env: Some(environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                        dir: service.working_dir.clone(),
                        user: service.user.clone(),
                        mounts: Some(mounts),
                        health_check: service.healthcheck.as_ref().map(|h| HealthConfig {
                            test: Some(h.test.clone()),
                            interval: nanos(h.interval),
                            timeout: nanos(h.timeout),
                            retries: h.retries,
                            start_period: nanos(h.start_period),
                            start_interval: None,
                        }),
                        capability_add: Some(service.cap_add.clone()).filter(|c| !c.is_empty()),
                        ..Default::default()
                    }),
                    resources: Some(TaskSpecResources {
                        limits: Some(Limit {
                            nano_cpus: service.nano_cpus,
                            memory_bytes: service.memory_bytes,
                            pids: None,
                        }),
                        ..Default::default()
                    }),
                    restart_policy: Some(TaskSpecRestartPolicy { condition: Some(condition), ..Default::default() }),
                    networks: Some(attachments),
                    ..Default::default()
                }),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(i64::try_from(service.replicas.unwrap_or(1)).unwrap_or(1)),
                    }),
                    ..Default::default()
                }),
                endpoint_spec: Some(EndpointSpec { ports: Some(ports), ..Default::default() }),
                ..Default::default()
            };
            let created = docker
                .create_service(spec, None)
                .await
                .map_err(|e| failed(&format!("cannot create service {service_name}"), e))?;
            services.insert(name.clone(), json!({"id": created.id, "name": service_name}));
        }
        self.wait_running(compose, &project).await?;
        let mut details = Map::new();
        details.insert("project".into(), json!(project));
        details.insert("services".into(), Value::Object(services));
        Ok(Deployment { details })
    }

    /// Waits until every service has its replicas running for [`MIN_UPTIME`]; a task
    /// that fails or is rejected fails the deployment with the engine's reason.
    async fn wait_running(&self, compose: &Compose, project: &str) -> Result<(), BackendError> {
        let docker = self.engine.docker()?;
        let deadline = Instant::now() + self.settings.ready_timeout;
        let mut running_since: HashMap<String, Instant> = HashMap::new();
        loop {
            let mut ready = true;
            for (name, service) in &compose.services {
                let service_name = format!("{project}_{name}");
                let filters = HashMap::from([("service".to_owned(), vec![service_name.clone()])]);
                let tasks = docker
                    .list_tasks(Some(ListTasksOptionsBuilder::new().filters(&filters).build()))
                    .await
                    .map_err(|e| failed(&format!("cannot list the tasks of {service_name}"), e))?;
                let wanted = usize::try_from(service.replicas.unwrap_or(1)).unwrap_or(1);
                let mut running = 0;
                for task in tasks {
                    let status = task.status.unwrap_or_default();
                    match status.state {
                        Some(TaskState::RUNNING) => running += 1,
                        Some(TaskState::FAILED | TaskState::REJECTED) => {
                            return Err(BackendError::new(format!(
                                "service {name} failed to start: {}",
                                status.err.or(status.message).unwrap_or_else(|| "no reason given".into())
                            )));
                        }
                        _ => {}
                    }
                }
                let since = if running >= wanted {
                    *running_since.entry(service_name).or_insert_with(Instant::now)
                } else {
                    running_since.remove(&service_name);
                    Instant::now()
                };
                ready &= running >= wanted && since.elapsed() >= MIN_UPTIME;
            }
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BackendError::new(format!(
                    "the services were not running within {}s",
                    self.settings.ready_timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The instance's task containers on this node, with the ports the routing mesh
    /// publishes for their service.
    async fn observe_all(&self, instance_id: &str) -> Result<Vec<Observed>, BackendError> {
        let docker = self.engine.docker()?;
        let project = project(instance_id);
        let filter = labels::filter_instance(&self.settings.owner, instance_id);
        let options = ListServicesOptionsBuilder::new().filters(&filter).build();
        let mut published: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
        for service in docker.list_services(Some(options)).await.map_err(|e| failed("cannot list services", e))? {
            let name = service
                .spec
                .as_ref()
                .and_then(|s| s.labels.as_ref())
                .and_then(|l| l.get(labels::SERVICE).cloned())
                .unwrap_or_default();
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
        let mut observed = Vec::new();
        for container in self.engine.containers(&filter).await? {
            let Some(id) = container.id else { continue };
            let Ok(inspected) = self.engine.inspect(&id).await else { continue };
            let mut seen = observe(&inspected, &project);
            // Host-mode ports are the task container's own; ingress ones the service's.
            if seen.ports.is_empty() {
                seen.ports = published.get(&seen.service).cloned().unwrap_or_default();
            }
            observed.push(seen);
        }
        observed.sort_by(|a, b| a.container.cmp(&b.container));
        Ok(observed)
    }
}

#[async_trait]
impl Backend for SwarmBackend {
    fn name(&self) -> &'static str {
        "docker-swarm"
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        &["docker-swarm"]
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        let compose = Compose::parse(&manifest.manifest_content, &self.settings.policy)?;
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

    fn execution(&self, _manifest: &Manifest, _kind: OperationKind) -> Execution {
        Execution::Either
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.deploy(instance, manifest, true).await
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.deploy(instance, manifest, false).await.map_err(|mut e| {
            e.instance_usable = Some(false);
            e.update_repeatable = Some(true);
            e
        })
    }

    async fn deprovision(&self, instance: &ServiceInstance, _manifest: Option<&Manifest>) -> Result<(), BackendError> {
        self.remove(&instance.id, false).await.map_err(|mut e| {
            e.instance_usable = Some(false);
            e
        })
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        _binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        let compose = self.parse(manifest).await?;
        let observed = self.observe_all(&instance.id).await?;
        report::bind_output(&instance.id, &observed, &compose, &self.settings.advertise_host)
    }

    async fn unbind(
        &self,
        _instance: &ServiceInstance,
        _binding: &Binding,
        _manifest: &Manifest,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    async fn info(&self, instance: &ServiceInstance, _manifest: &Manifest) -> Result<Info, BackendError> {
        Ok(report::info(&self.observe_all(&instance.id).await?))
    }

    async fn probe(&self) -> Result<String, BackendError> {
        let info = self.engine.docker()?.info().await.map_err(|e| failed("the Docker engine does not answer", e))?;
        let swarm = info.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            return Err(BackendError::new("the Docker engine is not a swarm manager (docker swarm init)"));
        }
        Ok(format!("swarm manager, node {}", swarm.node_id.unwrap_or_default()))
    }

    async fn owned_instances(&self) -> Result<BTreeSet<String>, BackendError> {
        let filter = labels::filter_owner(&self.settings.owner);
        let options = ListServicesOptionsBuilder::new().filters(&filter).build();
        let services =
            self.engine.docker()?.list_services(Some(options)).await.map_err(|e| failed("cannot list services", e))?;
        Ok(services.into_iter().filter_map(|s| s.spec?.labels?.remove(labels::INSTANCE)).collect())
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.remove(instance_id, false).await
    }
}
