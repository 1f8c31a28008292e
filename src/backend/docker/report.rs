//! What the Docker backends report about a deployment: the original ESM's flat keys
//! and a structured form for `/v2/et/service_instances`, and binding credentials built
//! from the published ports. Shared by the compose and swarm backends.

use bollard::models::ContainerInspectResponse;
use serde_json::{Map, Value, json};

use super::engine::Engine;
use super::project;
use crate::backend::{BackendError, BindOutput, Info, labels};
use crate::domain::binding::Endpoint;
use crate::manifest::{Compose, CredentialSource};

/// One container as esm reports it.
pub struct Observed {
    pub(super) service: String,
    pub(super) container: String,
    pub(super) running: bool,
    pub(super) state: String,
    pub(super) image: String,
    pub(super) image_id: String,
    pub(super) cmd: String,
    pub(super) ip: String,
    pub(super) network: String,
    pub(super) environment: Vec<(String, String)>,
    /// `(container port key, host ip, host port)`
    pub(super) ports: Vec<(String, String, String)>,
}

/// What runs of an instance owned by `owner`: its containers (running or not), found by
/// label and inspected, sorted by container name. One removed between the listing and
/// its inspection is gone, and left out.
pub async fn observe_instance(engine: &Engine, owner: &str, instance_id: &str) -> Result<Vec<Observed>, BackendError> {
    let project = project(owner, instance_id);
    let mut observed = Vec::new();
    for container in engine.containers(&labels::filter_instance(owner, instance_id)).await? {
        let Some(id) = container.id else { continue };
        let Ok(inspected) = engine.inspect(&id).await else { continue };
        observed.push(observe(&inspected, &project));
    }
    observed.sort_by(|a, b| a.container.cmp(&b.container));
    Ok(observed)
}

pub fn observe(inspected: &ContainerInspectResponse, project: &str) -> Observed {
    let container = inspected.name.clone().unwrap_or_default().trim_start_matches('/').to_owned();
    let config = inspected.config.clone().unwrap_or_default();
    let state = inspected.state.clone().unwrap_or_default();
    // A paused container is not serving, like a stopped one: liveness says it is down
    // (`liveness::container`), and so does the listing.
    let paused = state.paused == Some(true);
    let running = state.running.unwrap_or(false) && !paused;
    let state_text = if running {
        "Up".to_owned()
    } else if paused {
        "Paused".to_owned()
    } else {
        match state.status.map(|s| s.to_string()).as_deref() {
            Some("exited") => format!("Exit {}", state.exit_code.unwrap_or_default()),
            Some(other) => other.to_owned(),
            None => "unknown".to_owned(),
        }
    };
    let settings = inspected.network_settings.clone().unwrap_or_default();
    let networks = settings.networks.unwrap_or_default();
    let preferred = format!("{project}_default");
    let (network, endpoint) = networks
        .get_key_value(&preferred)
        .or_else(|| networks.iter().min_by(|a, b| a.0.cmp(b.0)))
        .map(|(n, e)| (n.clone(), e.clone()))
        .unwrap_or_default();
    let mut ports = Vec::new();
    for (key, bindings) in settings.ports.unwrap_or_default() {
        for binding in bindings.unwrap_or_default() {
            ports.push((key.clone(), binding.host_ip.unwrap_or_default(), binding.host_port.unwrap_or_default()));
        }
    }
    ports.sort();
    Observed {
        service: config.labels.as_ref().and_then(|l| l.get(labels::SERVICE).cloned()).unwrap_or_default(),
        container,
        running,
        state: state_text,
        image: config.image.clone().unwrap_or_default(),
        image_id: inspected.image.clone().unwrap_or_default(),
        cmd: config.cmd.clone().unwrap_or_default().join(" "),
        ip: endpoint.ip_address.unwrap_or_default(),
        network,
        environment: config
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e, String::new()),
            })
            .collect(),
        ports,
    }
}

/// The flat and structured views of a deployment.
pub(super) fn info(observed: &[Observed]) -> Info {
    let mut flat = Map::new();
    let mut containers = Vec::new();
    let mut problems = Vec::new();
    for c in observed {
        let name = &c.container;
        flat.insert(format!("{name}_state"), json!(c.state));
        flat.insert(format!("{name}_image_name"), json!(c.image));
        flat.insert(format!("{name}_image_id"), json!(c.image_id));
        flat.insert(format!("{name}_cmd"), json!(c.cmd));
        flat.insert(format!("{name}_Ip"), json!(c.ip));
        flat.insert(format!("{name}_net_name"), json!(c.network));
        for (var, value) in &c.environment {
            flat.insert(format!("{name}_environment_{var}"), json!(value));
        }
        for (key, host_ip, host_port) in &c.ports {
            flat.insert(format!("{name}_{key}/HostIp"), json!(host_ip));
            flat.insert(format!("{name}_{key}/HostPort"), json!(host_port));
        }
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|(key, host_ip, host_port)| {
                let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
                json!({"container_port": port.parse::<u16>().ok(), "protocol": protocol,
                       "host_ip": host_ip, "host_port": host_port.parse::<u16>().ok()})
            })
            .collect();
        containers.push(json!({"service": c.service, "container": name, "state": c.state,
                               "running": c.running, "image": c.image, "ip": c.ip, "ports": ports}));
        if !c.running {
            problems.push(format!("container {name} is not running ({})", c.state));
        }
    }
    if observed.is_empty() {
        problems.push("no containers found for the instance (removed outside esm?)".into());
    }
    Info { flat, containers, problem: (!problems.is_empty()).then(|| problems.join("; ")) }
}

/// Binding credentials: the advertised host and the published port of every service
/// port, plus what the manifest's `x-esm-credentials` names.
pub(super) fn bind_output(
    instance_id: &str,
    observed: &[Observed],
    compose: &Compose,
    host: &str,
) -> Result<BindOutput, BackendError> {
    if observed.is_empty() {
        return Err(BackendError::new(format!("instance {instance_id} has no containers to bind to")));
    }
    let mut services = Map::new();
    let mut endpoints = Vec::new();
    for container in observed {
        let mut ports = Map::new();
        for (key, _, host_port) in &container.ports {
            if let Ok(port) = host_port.parse::<u16>() {
                ports.insert(key.clone(), json!(port));
                endpoints.extend(Endpoint::published(host, host_port, key));
            }
        }
        services.insert(container.service.clone(), json!({"host": host, "ports": ports}));
    }
    let mut credentials = Map::new();
    credentials.insert("host".into(), json!(host));
    credentials.insert("services".into(), Value::Object(services));
    for (key, source) in &compose.credentials {
        let value = match source {
            CredentialSource::Literal(value) => Some(value.clone()),
            CredentialSource::Environment { service, variable } => observed
                .iter()
                .find(|c| &c.service == service)
                .and_then(|c| c.environment.iter().find(|(k, _)| k == variable).map(|(_, v)| v.clone())),
        };
        if let Some(value) = value {
            credentials.insert(key.clone(), json!(value));
        }
    }
    Ok(BindOutput { credentials: Value::Object(credentials), endpoints: Some(endpoints) })
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerState, ContainerStateStatusEnum};

    use super::*;

    fn inspected(state: ContainerState) -> ContainerInspectResponse {
        ContainerInspectResponse { name: Some("/p_web".into()), state: Some(state), ..Default::default() }
    }

    #[test]
    fn a_paused_container_is_reported_not_running_like_a_killed_one() {
        let paused = ContainerState {
            status: Some(ContainerStateStatusEnum::PAUSED),
            running: Some(true),
            paused: Some(true),
            ..Default::default()
        };
        let killed = ContainerState {
            status: Some(ContainerStateStatusEnum::EXITED),
            running: Some(false),
            exit_code: Some(137),
            ..Default::default()
        };
        let running = ContainerState {
            status: Some(ContainerStateStatusEnum::RUNNING),
            running: Some(true),
            ..Default::default()
        };
        let seen =
            [observe(&inspected(paused), "p"), observe(&inspected(killed), "p"), observe(&inspected(running), "p")];
        let states: Vec<(&str, bool)> = seen.iter().map(|o| (o.state.as_str(), o.running)).collect();
        assert_eq!(states, [("Paused", false), ("Exit 137", false), ("Up", true)]);
        let problem = info(&seen[..1]).problem.expect("a paused container is a problem");
        assert_eq!(problem, "container p_web is not running (Paused)");
        assert_eq!(info(&seen[2..]).problem, None);
    }
}
