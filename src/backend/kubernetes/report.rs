//! What the Kubernetes backend reports about a deployment: the original ESM's flat keys
//! with real addresses (never a placeholder: a Service without an address yet has no
//! `_Ip` key), a structured form, and binding credentials from the Services.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service};
use serde_json::{Map, Value, json};

use super::readiness::{self, Seen};
use crate::backend::{BackendError, BindOutput, Info};
use crate::domain::binding::Endpoint;
use crate::domain::liveness::ComponentStatus;
use crate::manifest::CredentialSource;

/// Where a Service is reached from outside it: a host and, by `port/protocol`, the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The compose service (or Service) name it is reported under.
    pub name: String,
    /// The address.
    pub host: String,
    /// `"8080/tcp"` → the port to connect to.
    pub ports: BTreeMap<String, u16>,
}

/// A Service's address as its type gives it: the cluster IP and ports, a node's address
/// and the node ports, or the load balancer's ingress and ports. `None` while the
/// cluster has not assigned it, and for headless Services.
pub fn address(service: &Service, node_address: Option<&str>) -> Option<Address> {
    let spec = service.spec.as_ref()?;
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let host = match kind {
        "NodePort" => node_address?.to_owned(),
        "LoadBalancer" => {
            let ingress = service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?;
            ingress.ip.clone().or_else(|| ingress.hostname.clone())?
        }
        _ => spec.cluster_ip.clone().filter(|ip| !ip.is_empty() && ip != "None")?,
    };
    let mut ports = BTreeMap::new();
    for port in spec.ports.iter().flatten() {
        let key = format!("{}/{}", port.port, port.protocol.as_deref().unwrap_or("TCP").to_lowercase());
        let reached = if kind == "NodePort" { port.node_port? } else { port.port };
        ports.insert(key, u16::try_from(reached).ok()?);
    }
    Some(Address { name: readiness::display_name(service), host, ports })
}

/// The flat and structured views of a deployment in `namespace`.
pub fn info(namespace: &str, seen: &Seen, addresses: &[Address]) -> Info {
    let mut flat = Map::new();
    flat.insert("namespace_name".into(), json!(namespace));
    let mut containers = Vec::new();
    let mut problems = Vec::new();
    for component in readiness::components(seen) {
        let name = &component.name;
        let up = component.status == ComponentStatus::Up;
        let state = if up { "Up" } else { "Down" };
        flat.insert(format!("{name}_state"), json!(state));
        let address = addresses.iter().find(|a| &a.name == name);
        let ports: Vec<Value> = address
            .into_iter()
            .flat_map(|a| a.ports.iter())
            .map(|(key, port)| {
                let (target, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
                json!({"container_port": target.parse::<u16>().ok(), "protocol": protocol, "port": port})
            })
            .collect();
        containers.push(json!({"service": name, "kind": component.kind, "state": state, "running": up,
                               "ip": address.map(|a| a.host.clone()), "ports": ports}));
        if let Some(reason) = component.reason.filter(|_| !up) {
            problems.push(format!("{} {name} is down: {reason}", component.kind));
        }
    }
    for deployment in &seen.deployments {
        let image = first_container(deployment).and_then(|c| c.image.clone());
        if let Some(image) = image {
            flat.insert(format!("{}_image_name", readiness::display_name(deployment)), json!(image));
        }
    }
    for address in addresses {
        flat.insert(format!("{}_Ip", address.name), json!(address.host));
        for (key, port) in &address.ports {
            flat.insert(format!("{}_{key}/HostIp", address.name), json!(address.host));
            flat.insert(format!("{}_{key}/HostPort", address.name), json!(port.to_string()));
        }
    }
    if seen.deployments.is_empty() && seen.stateful_sets.is_empty() {
        problems.push("no workloads found for the instance (removed outside esm?)".into());
    }
    Info { flat, containers, problem: (!problems.is_empty()).then(|| problems.join("; ")) }
}

/// Binding credentials: every Service's address and ports, plus what a compose
/// manifest's `x-esm-credentials` names (read from the live Deployments).
pub fn bind_output(
    instance_id: &str,
    addresses: &[Address],
    deployments: &[Deployment],
    credentials: &BTreeMap<String, CredentialSource>,
) -> Result<BindOutput, BackendError> {
    let Some(first) = addresses.first() else {
        return Err(BackendError::new(format!("instance {instance_id} has no Service with an address to bind to")));
    };
    let mut services = Map::new();
    let mut endpoints = Vec::new();
    for address in addresses {
        services.insert(address.name.clone(), json!({"host": address.host, "ports": address.ports}));
        for (key, port) in &address.ports {
            endpoints.extend(Endpoint::published(&address.host, port, key));
        }
    }
    let mut output = Map::new();
    output.insert("host".into(), json!(first.host));
    output.insert("services".into(), Value::Object(services));
    for (key, source) in credentials {
        let value = match source {
            CredentialSource::Literal(value) => Some(value.clone()),
            CredentialSource::Environment { service, variable } => deployments
                .iter()
                .find(|d| &readiness::display_name(*d) == service)
                .and_then(|d| env_value(d, variable)),
        };
        if let Some(value) = value {
            output.insert(key.clone(), json!(value));
        }
    }
    Ok(BindOutput { credentials: Value::Object(output), endpoints: Some(endpoints) })
}

/// A Deployment's first container: the one a compose service runs.
fn first_container(deployment: &Deployment) -> Option<&Container> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers.first()
}

/// A literal environment variable of a Deployment's first container.
fn env_value(deployment: &Deployment, variable: &str) -> Option<String> {
    let env = first_container(deployment)?.env.as_ref()?;
    env.iter().find(|e| e.name == variable)?.value.clone()
}

/// Every Service's address, by name.
pub fn addresses(services: &[Service], node_address: Option<&str>) -> Vec<Address> {
    let mut addresses: Vec<Address> = services.iter().filter_map(|s| address(s, node_address)).collect();
    addresses.sort_by(|a, b| a.name.cmp(&b.name));
    addresses
}

/// Whether any Service is reached on node ports (the node's address is then needed).
pub fn uses_node_ports(services: &[Service]) -> bool {
    services.iter().any(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("NodePort"))
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
