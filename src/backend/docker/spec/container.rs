//! A manifest service as a container (the docker-compose backend).

use std::collections::HashMap;
use std::net::IpAddr;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointSettings, HostConfig, NetworkingConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::{Unit, attachments, environment, healthcheck, mounts, non_empty, unit_labels};

/// The container's name: `<project>_<container_name or service name>`, unique per
/// instance whatever name the manifest gives it.
pub fn container_name(unit: &Unit<'_>) -> String {
    format!("{}_{}", unit.project, unit.service.container_name.as_deref().unwrap_or(unit.name))
}

/// The engine's description of the unit's container, with ports published on
/// `publish_address`, and the networks to connect it to after creation with their
/// aliases (the create call attaches only one).
pub fn container_body(unit: &Unit<'_>, publish_address: IpAddr) -> (ContainerCreateBody, Vec<(String, Vec<String>)>) {
    let service = unit.service;
    let (exposed, bindings) = ports(unit, publish_address);
    let mut attachments = attachments(unit);
    let (network_mode, networking_config) = if service.host_network {
        (Some("host".to_owned()), None)
    } else if attachments.is_empty() {
        (None, None)
    } else {
        let (first, aliases) = attachments.remove(0);
        let endpoints =
            HashMap::from([(first.clone(), EndpointSettings { aliases: Some(aliases), ..Default::default() })]);
        (Some(first), Some(NetworkingConfig { endpoints_config: Some(endpoints) }))
    };
    let body = ContainerCreateBody {
        image: Some(service.image.clone()),
        cmd: service.command.clone(),
        entrypoint: service.entrypoint.clone(),
        env: Some(environment(unit)),
        exposed_ports: Some(exposed),
        labels: Some(unit_labels(unit)),
        healthcheck: healthcheck(service),
        hostname: service.hostname.clone(),
        working_dir: service.working_dir.clone(),
        user: service.user.clone(),
        host_config: Some(HostConfig {
            port_bindings: Some(bindings),
            mounts: Some(mounts(unit)),
            network_mode,
            restart_policy: service.restart.as_deref().map(restart_policy),
            memory: service.memory_bytes,
            nano_cpus: service.nano_cpus,
            privileged: Some(service.privileged),
            cap_add: non_empty(service.cap_add.clone()),
            pid_mode: service.pid_host.then(|| "host".to_owned()),
            devices: non_empty(service.devices.iter().map(|d| device(d)).collect()),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    };
    (body, attachments)
}

/// The exposed port keys (`80/tcp`) and the published ports' bindings: always on the
/// publish address, on the manifest's host port or an ephemeral one.
fn ports(unit: &Unit<'_>, publish_address: IpAddr) -> (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>) {
    let service = unit.service;
    let mut exposed: Vec<String> =
        service.expose.iter().map(|e| if e.contains('/') { e.clone() } else { format!("{e}/tcp") }).collect();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &service.ports {
        let key = format!("{}/{}", port.target, port.protocol);
        exposed.push(key.clone());
        bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(PortBinding {
            host_ip: Some(publish_address.to_string()),
            host_port: Some(unit.host_port(port).map(|p| p.to_string()).unwrap_or_default()),
        });
    }
    (exposed, bindings)
}

/// compose's `restart` (`no`, `always`, `on-failure[:N]`, `unless-stopped`).
fn restart_policy(restart: &str) -> RestartPolicy {
    let (kind, count) = restart.split_once(':').unwrap_or((restart, ""));
    RestartPolicy {
        name: Some(match kind {
            "always" => RestartPolicyNameEnum::ALWAYS,
            "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
            "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
            _ => RestartPolicyNameEnum::NO,
        }),
        maximum_retry_count: count.parse().ok(),
    }
}

/// compose's `host[:container[:permissions]]` device syntax.
fn device(spec: &str) -> DeviceMapping {
    let mut parts = spec.split(':');
    let host = parts.next().unwrap_or_default().to_owned();
    let inside = parts.next().map_or_else(|| host.clone(), str::to_owned);
    let permissions = parts.next().unwrap_or("rwm").to_owned();
    DeviceMapping { path_on_host: Some(host), path_in_container: Some(inside), cgroup_permissions: Some(permissions) }
}
