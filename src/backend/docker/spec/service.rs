//! A manifest service as a swarm service (the docker-swarm backend). compose's
//! `entrypoint` is the swarm command and compose's `command` its args.

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec, Limit,
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::{Unit, attachments, environment, healthcheck, mounts, non_empty, unit_labels};
use crate::manifest::Service;

/// The service's name: `<project>_<service name>` (a swarm service has no
/// `container_name`; its tasks' containers are named by the engine).
pub fn service_name(unit: &Unit<'_>) -> String {
    format!("{}_{}", unit.project, unit.name)
}

/// How many tasks the service runs: `deploy.replicas`, one by default.
pub fn replicas(service: &Service) -> u64 {
    service.replicas.unwrap_or(1)
}

/// The engine's description of the unit's swarm service.
pub fn service_spec(unit: &Unit<'_>) -> ServiceSpec {
    let service = unit.service;
    let labels = unit_labels(unit);
    let networks = attachments(unit)
        .into_iter()
        .map(|(target, aliases)| NetworkAttachmentConfig {
            target: Some(target),
            aliases: Some(aliases),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(service_name(unit)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(service.image.clone()),
                labels: Some(labels),
                command: service.entrypoint.clone(),
                args: service.command.clone(),
                hostname: service.hostname.clone(),
                env: Some(environment(unit)),
                dir: service.working_dir.clone(),
                user: service.user.clone(),
                mounts: Some(mounts(unit)),
                health_check: healthcheck(service),
                capability_add: non_empty(service.cap_add.clone()),
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit { nano_cpus: service.nano_cpus, memory_bytes: service.memory_bytes, pids: None }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(restart_condition(service.restart.as_deref())),
                ..Default::default()
            }),
            networks: Some(networks),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::try_from(replicas(service)).unwrap_or(1)),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec { ports: Some(ports(unit)), ..Default::default() }),
        ..Default::default()
    }
}

/// The published ports: through the routing mesh, or on the task's node with the
/// long syntax's `mode: host`.
fn ports(unit: &Unit<'_>) -> Vec<EndpointPortConfig> {
    unit.service
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(if p.protocol == "udp" {
                EndpointPortConfigProtocolEnum::UDP
            } else {
                EndpointPortConfigProtocolEnum::TCP
            }),
            target_port: Some(i64::from(p.target)),
            published_port: unit.host_port(p).map(i64::from),
            publish_mode: Some(if p.mode.as_deref() == Some("host") {
                EndpointPortConfigPublishModeEnum::HOST
            } else {
                EndpointPortConfigPublishModeEnum::INGRESS
            }),
            ..Default::default()
        })
        .collect()
}

/// compose's `restart` as a swarm restart condition: swarm restarts by default.
fn restart_condition(restart: Option<&str>) -> TaskSpecRestartPolicyConditionEnum {
    match restart.map(|r| r.split(':').next().unwrap_or_default()) {
        Some("no") => TaskSpecRestartPolicyConditionEnum::NONE,
        Some("on-failure") => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        _ => TaskSpecRestartPolicyConditionEnum::ANY,
    }
}
