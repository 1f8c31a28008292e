//! The docker-compose backend: a manifest's services run as containers through the
//! Docker Engine API, on a bridge network, one project per instance.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, DeviceMapping, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountType, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use serde_json::{Map, Value, json};

use super::engine::{Engine, failed};
use super::model::{self, Compose, MountSource, Service};
use super::report::{self, Observed, observe};
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

    async fn parse(&self, manifest: &Manifest) -> Result<Compose, BackendError> {
        Compose::parse_off_runtime(&manifest.manifest_content, &self.settings.policy).await.map_err(BackendError::new)
    }

    /// Deploys (or redeploys) an instance. On failure everything made is removed; the
    /// named volumes too when `fresh` (a first provision), never on a redeploy.
    async fn deploy(
        &self,
        instance: &ServiceInstance,
        manifest: &Manifest,
        fresh: bool,
    ) -> Result<Deployment, BackendError> {
        let compose = self.parse(manifest).await?;
        // A clean slate: what an interrupted attempt (or the previous deployment) left.
        self.engine.remove_instance(&self.settings.owner, &instance.id, true).await?;
        match self.create(instance, manifest, &compose).await {
            Ok(deployment) => Ok(deployment),
            Err(e) => {
                if let Err(cleanup) = self.engine.remove_instance(&self.settings.owner, &instance.id, !fresh).await {
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
        let networks = self.engine.make_networks(compose, &project, "bridge", &base_labels).await?;

        // Named volumes: made per instance, unless external.
        let mut volumes = HashMap::new();
        for (name, volume) in &compose.volumes {
            if volume.external {
                let engine_name = volume.name.clone().unwrap_or_else(|| name.clone());
                self.engine.check_external_volume(&engine_name, self.settings.policy.allow_bind_mounts).await?;
                volumes.insert(name.clone(), engine_name);
                continue;
            }
            let engine_name = format!("{project}_{name}");
            let mut volume_labels = labels::with_esm_labels(&volume.labels, &base_labels);
            if volume.keep {
                volume_labels.insert(labels::KEEP.into(), "true".into());
            }
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(engine_name.clone()),
                    labels: Some(volume_labels),
                    ..Default::default()
                })
                .await
                .map_err(|e| failed(&format!("cannot create volume {engine_name}"), e))?;
            volumes.insert(name.clone(), engine_name);
        }

        // Containers, dependencies first.
        let mut containers = Map::new();
        let mut started: HashMap<&str, String> = HashMap::new();
        for name in &compose.start_order {
            let service = &compose.services[name];
            for (dependency, condition) in &service.depends_on {
                if *condition == model::DependsOn::Healthy
                    && let Some(id) = started.get(dependency.as_str())
                {
                    let dependency = [(id.clone(), dependency.clone(), true)];
                    self.engine.wait_ready(&dependency, self.settings.ready_timeout).await?;
                }
            }
            let container_name = format!("{project}_{}", service.container_name.as_deref().unwrap_or(name));
            let mut container_labels = labels::with_esm_labels(&service.labels, &base_labels);
            container_labels.insert(labels::SERVICE.into(), name.clone());
            let (body, extra_networks) =
                self.container_body(instance, name, service, container_labels, &networks, &volumes);
            let options = CreateContainerOptionsBuilder::new().name(&container_name).build();
            let created = docker
                .create_container(Some(options), body)
                .await
                .map_err(|e| failed(&format!("cannot create container {container_name}"), e))?;
            for (network, aliases) in extra_networks {
                docker
                    .connect_network(
                        &network,
                        bollard::models::NetworkConnectRequest {
                            container: created.id.clone(),
                            endpoint_config: Some(EndpointSettings { aliases: Some(aliases), ..Default::default() }),
                        },
                    )
                    .await
                    .map_err(|e| failed(&format!("cannot connect {container_name} to {network}"), e))?;
            }
            docker
                .start_container(&created.id, None)
                .await
                .map_err(|e| failed(&format!("cannot start container {container_name}"), e))?;
            containers.insert(name.clone(), json!({"id": created.id, "name": container_name}));
            started.insert(name.as_str(), created.id);
        }
        let all: Vec<(String, String, bool)> = compose
            .start_order
            .iter()
            .filter_map(|name| {
                let service = &compose.services[name];
                let healthcheck =
                    service.healthcheck.as_ref().is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"));
                Some((started.get(name.as_str())?.clone(), name.clone(), healthcheck))
            })
            .collect();
        self.engine.wait_ready(&all, self.settings.ready_timeout).await?;
        let mut details = Map::new();
        details.insert("project".into(), json!(project));
        details.insert("containers".into(), Value::Object(containers));
        Ok(Deployment { details })
    }

    /// The engine's description of one service's container, and the networks to attach
    /// after creation (the create call attaches one).
    fn container_body(
        &self,
        instance: &ServiceInstance,
        name: &str,
        service: &Service,
        container_labels: HashMap<String, String>,
        networks: &HashMap<String, String>,
        volumes: &HashMap<String, String>,
    ) -> (ContainerCreateBody, Vec<(String, Vec<String>)>) {
        let environment = with_parameters(service, instance);
        let mut exposed: Vec<String> = service.expose.iter().map(|e| port_key(e)).collect();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &service.ports {
            let key = format!("{}/{}", port.target, port.protocol);
            exposed.push(key.clone());
            bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(PortBinding {
                host_ip: Some(self.settings.publish_address.to_string()),
                host_port: Some(port.published.map(|p| p.to_string()).unwrap_or_default()),
            });
        }
        let mounts = service
            .volumes
            .iter()
            .map(|m| Mount {
                target: Some(m.target.clone()),
                source: match &m.source {
                    MountSource::Volume(v) => volumes.get(v).cloned(),
                    MountSource::Bind(path) => Some(path.clone()),
                    MountSource::Anonymous => None,
                },
                typ: Some(match m.source {
                    MountSource::Bind(_) => MountType::BIND,
                    _ => MountType::VOLUME,
                }),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        let mut aliases = vec![name.to_owned()];
        aliases.extend(service.container_name.clone());
        aliases.extend(service.hostname.clone());
        let joined: Vec<(String, Vec<String>)> = if service.networks.is_empty() {
            vec![("default".to_owned(), Vec::new())]
        } else {
            service.networks.iter().map(|(n, a)| (n.clone(), a.clone())).collect()
        };
        let mut attachments: Vec<(String, Vec<String>)> = joined
            .into_iter()
            .filter_map(|(network, extra)| {
                let engine_name = networks.get(&network)?.clone();
                let mut all = aliases.clone();
                all.extend(extra);
                Some((engine_name, all))
            })
            .collect();
        let (network_mode, networking_config) = if service.host_network {
            attachments.clear();
            (Some("host".to_owned()), None)
        } else if attachments.is_empty() {
            (None, None)
        } else {
            let (first, first_aliases) = attachments.remove(0);
            let endpoints = HashMap::from([(
                first.clone(),
                EndpointSettings { aliases: Some(first_aliases), ..Default::default() },
            )]);
            (Some(first), Some(NetworkingConfig { endpoints_config: Some(endpoints) }))
        };
        let restart_policy = service.restart.as_deref().map(|r| {
            let (kind, count) = r.split_once(':').unwrap_or((r, ""));
            RestartPolicy {
                name: Some(match kind {
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
                    _ => RestartPolicyNameEnum::NO,
                }),
                maximum_retry_count: count.parse().ok(),
            }
        });
        let nanos = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let healthcheck = service.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: nanos(h.interval),
            timeout: nanos(h.timeout),
            retries: h.retries,
            start_period: nanos(h.start_period),
            start_interval: None,
        });
        let devices = service
            .devices
            .iter()
            .map(|d| {
                let mut parts = d.split(':');
                let host = parts.next().unwrap_or_default().to_owned();
                let inside = parts.next().map_or_else(|| host.clone(), str::to_owned);
                let permissions = parts.next().unwrap_or("rwm").to_owned();
                DeviceMapping {
                    path_on_host: Some(host),
                    path_in_container: Some(inside),
                    cgroup_permissions: Some(permissions),
                }
            })
            .collect::<Vec<_>>();
        let body = ContainerCreateBody {
            image: Some(service.image.clone()),
            cmd: service.command.clone(),
            entrypoint: service.entrypoint.clone(),
            env: Some(environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: Some(exposed),
            labels: Some(container_labels),
            healthcheck,
            hostname: service.hostname.clone(),
            working_dir: service.working_dir.clone(),
            user: service.user.clone(),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                mounts: Some(mounts),
                network_mode,
                restart_policy,
                memory: service.memory_bytes,
                nano_cpus: service.nano_cpus,
                privileged: Some(service.privileged),
                cap_add: Some(service.cap_add.clone()).filter(|c| !c.is_empty()),
                pid_mode: service.pid_host.then(|| "host".to_owned()),
                devices: Some(devices).filter(|d| !d.is_empty()),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        (body, attachments)
    }

    async fn inspect_all(&self, instance_id: &str) -> Result<Vec<ContainerInspectResponse>, BackendError> {
        let mut out = Vec::new();
        for container in self.engine.containers(&labels::filter_instance(&self.settings.owner, instance_id)).await? {
            if let Some(id) = container.id {
                match self.engine.inspect(&id).await {
                    Ok(inspected) => out.push(inspected),
                    // Removed between listing and inspecting: it is gone.
                    Err(_) => continue,
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A service's environment plus the instance parameters: like the original, parameters
/// reach every service as environment variables.
pub(super) fn with_parameters(service: &Service, instance: &ServiceInstance) -> BTreeMap<String, String> {
    let mut environment = service.environment.clone();
    if let Some(Value::Object(parameters)) = &instance.parameters {
        for (key, value) in parameters {
            environment.insert(key.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_owned));
        }
    }
    environment
}

/// `"80"` or `"53/udp"` as the engine's port key.
fn port_key(expose: &str) -> String {
    if expose.contains('/') { expose.to_owned() } else { format!("{expose}/tcp") }
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
        self.deploy(instance, manifest, true).await
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        self.deploy(instance, manifest, false).await.map_err(|mut e| {
            // The old containers are gone by now; the named volumes are kept.
            e.instance_usable = Some(false);
            e.update_repeatable = Some(true);
            e
        })
    }

    async fn deprovision(&self, instance: &ServiceInstance, _manifest: Option<&Manifest>) -> Result<(), BackendError> {
        self.engine.remove_instance(&self.settings.owner, &instance.id, false).await.map_err(|mut e| {
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
        let project = project(&instance.id);
        let observed: Vec<Observed> =
            self.inspect_all(&instance.id).await?.iter().map(|c| observe(c, &project)).collect();
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
        let project = project(&instance.id);
        let observed: Vec<Observed> =
            self.inspect_all(&instance.id).await?.iter().map(|c| observe(c, &project)).collect();
        Ok(report::info(&observed))
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.engine.ping().await
    }

    async fn owned_instances(&self) -> Result<BTreeSet<String>, BackendError> {
        let mut owned = BTreeSet::new();
        for container in self.engine.containers(&labels::filter_owner(&self.settings.owner)).await? {
            if let Some(id) = container.labels.and_then(|mut l| l.remove(labels::INSTANCE)) {
                owned.insert(id);
            }
        }
        Ok(owned)
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.engine.remove_instance(&self.settings.owner, instance_id, false).await
    }
}
