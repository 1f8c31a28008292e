//! docker-compose manifests on Kubernetes: each compose service becomes a Deployment
//! (its pods labelled `esm.service`) and, when it has ports, a Service of the same name;
//! each named volume a PersistentVolumeClaim. What has no faithful translation is
//! refused at registration rather than dropped silently; the table in docs/kubernetes.md
//! lists both.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::objects::{Kind, Object, Objects};
use super::policy::{self, KubernetesPolicy};
use super::{Exposure, dns_label};
use crate::backend::labels;
use crate::manifest::{Compose, Healthcheck, Mount, MountSource, Service};

/// The pod label that ties a compose service's Deployment, pods and Service together.
pub const SERVICE_LABEL: &str = labels::SERVICE;
/// The annotation keeping the compose service's name verbatim (flat keys use it).
pub const SERVICE_ANNOTATION: &str = labels::SERVICE;
/// The size asked for each named volume: compose manifests do not say.
pub const VOLUME_SIZE: &str = "1Gi";

/// The objects a compose manifest deploys, Services of type `exposure`; refuses what
/// does not translate. The objects are checked under `policy` as a Kubernetes manifest
/// would be.
pub fn translate(compose: &Compose, exposure: Exposure, policy: &KubernetesPolicy) -> Result<Objects, String> {
    let mut objects = Vec::new();
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for (name, volume) in &compose.volumes {
        if volume.external {
            return Err(format!("volume {name}: external volumes do not translate to Kubernetes"));
        }
        if volume.keep {
            return Err(format!(
                "volume {name}: x-esm-keep does not translate (an instance's claims go with its namespace)"
            ));
        }
        objects.push(claim(name, dns_label(name)));
    }
    for (name, network) in &compose.networks {
        if network.external {
            return Err(format!("network {name}: external networks do not translate to Kubernetes"));
        }
    }
    for (name, service) in &compose.services {
        let k8s_name = service_name(name);
        if let Some(other) = names.insert(k8s_name.clone(), name) {
            return Err(format!("services {other} and {name} would both be named {k8s_name} on Kubernetes"));
        }
        let refused = refused_keys(service);
        if let Some(key) = refused.first() {
            return Err(format!("service {name}: {key} does not translate to Kubernetes"));
        }
        objects.push(deployment(name, &k8s_name, service));
        if let Some(svc) = service_object(name, &k8s_name, service, exposure) {
            objects.push(svc);
        }
    }
    for object in &objects {
        policy::check(object, policy).map_err(|e| format!("{}: {e}", object.key()))?;
    }
    policy::check_references(&objects)?;
    Ok(Objects::ordered(objects))
}

/// The Kubernetes name of a compose service: a DNS label starting with a letter.
fn service_name(name: &str) -> String {
    let label = dns_label(name);
    if label.starts_with(|c: char| c.is_ascii_lowercase()) { label } else { dns_label(&format!("s-{name}")) }
}

/// Keys a service sets that have no faithful translation.
fn refused_keys(service: &Service) -> Vec<&'static str> {
    let mut refused = Vec::new();
    if !service.devices.is_empty() {
        refused.push("devices");
    }
    if service.networks.values().any(|aliases| !aliases.is_empty()) {
        refused.push("networks.aliases");
    }
    if service.user.as_deref().is_some_and(|u| user_ids(u).is_none()) {
        refused.push("user (only numeric uid[:gid])");
    }
    if service.hostname.as_deref().is_some_and(|h| !super::is_dns_label(h)) {
        refused.push("hostname (only a DNS label)");
    }
    refused
}

/// `uid[:gid]`, numeric.
fn user_ids(user: &str) -> Option<(i64, Option<i64>)> {
    let (uid, gid) = user.split_once(':').map_or((user, None), |(u, g)| (u, Some(g)));
    Some((uid.parse().ok()?, gid.map(str::parse).transpose().ok()?))
}

/// A named volume's claim.
fn claim(compose_name: &str, name: String) -> Object {
    let body = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "annotations": {SERVICE_ANNOTATION: compose_name}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}},
    });
    Object { kind: Kind::PersistentVolumeClaim, name, body }
}

/// A service's Deployment.
fn deployment(compose_name: &str, name: &str, service: &Service) -> Object {
    let mut container = Map::new();
    container.insert("name".into(), json!(name));
    container.insert("image".into(), json!(service.image));
    if let Some(entrypoint) = &service.entrypoint {
        container.insert("command".into(), json!(entrypoint));
    }
    if let Some(command) = &service.command {
        container.insert("args".into(), json!(command));
    }
    if !service.environment.is_empty() {
        let env: Vec<Value> = service.environment.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
        container.insert("env".into(), Value::Array(env));
    }
    let mut ports: Vec<Value> = Vec::new();
    for (port, protocol) in container_ports(service) {
        ports.push(json!({"containerPort": port, "protocol": protocol.to_uppercase()}));
    }
    if !ports.is_empty() {
        container.insert("ports".into(), Value::Array(ports));
    }
    if let Some(dir) = &service.working_dir {
        container.insert("workingDir".into(), json!(dir));
    }
    let mut limits = Map::new();
    if let Some(bytes) = service.memory_bytes {
        limits.insert("memory".into(), json!(bytes.to_string()));
    }
    if let Some(nano) = service.nano_cpus {
        limits.insert("cpu".into(), json!(format!("{}m", (nano / 1_000_000).max(1))));
    }
    if !limits.is_empty() {
        container.insert("resources".into(), json!({"limits": limits}));
    }
    if let Some(probe) = service.healthcheck.as_ref().and_then(readiness_probe) {
        container.insert("readinessProbe".into(), probe);
    }
    let mut security = Map::new();
    if service.privileged {
        security.insert("privileged".into(), json!(true));
    }
    if !service.cap_add.is_empty() {
        security.insert("capabilities".into(), json!({"add": service.cap_add}));
    }
    if let Some((uid, gid)) = service.user.as_deref().and_then(user_ids) {
        security.insert("runAsUser".into(), json!(uid));
        if let Some(gid) = gid {
            security.insert("runAsGroup".into(), json!(gid));
        }
    }
    if !security.is_empty() {
        container.insert("securityContext".into(), Value::Object(security));
    }
    let (mounts, volumes) = mounts(&service.volumes);
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), Value::Array(mounts));
    }
    let mut pod = Map::new();
    pod.insert("containers".into(), json!([container]));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), Value::Array(volumes));
    }
    if let Some(hostname) = &service.hostname {
        pod.insert("hostname".into(), json!(hostname));
    }
    if service.host_network {
        pod.insert("hostNetwork".into(), json!(true));
    }
    if service.pid_host {
        pod.insert("hostPID".into(), json!(true));
    }
    let mut pod_labels: Map<String, Value> =
        service.labels.iter().filter(|(k, _)| valid_label(k)).map(|(k, v)| (k.clone(), json!(v))).collect();
    pod_labels.insert(SERVICE_LABEL.into(), json!(name));
    let body = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "annotations": {SERVICE_ANNOTATION: compose_name}},
        "spec": {
            "replicas": service.replicas.unwrap_or(1),
            "selector": {"matchLabels": {SERVICE_LABEL: name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod},
        },
    });
    Object { kind: Kind::Deployment, name: name.to_owned(), body }
}

/// Compose labels that are also valid Kubernetes label keys (others stay off the pods).
fn valid_label(key: &str) -> bool {
    !key.starts_with(labels::RESERVED_PREFIX)
        && key.len() <= 63
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The container ports a service listens on: published and exposed, once each.
fn container_ports(service: &Service) -> Vec<(u16, String)> {
    let mut ports: Vec<(u16, String)> = service.ports.iter().map(|p| (p.target, p.protocol.clone())).collect();
    for expose in &service.expose {
        let (port, protocol) = expose.split_once('/').unwrap_or((expose, "tcp"));
        if let Ok(port) = port.parse() {
            ports.push((port, protocol.to_owned()));
        }
    }
    ports.sort();
    ports.dedup();
    ports
}

/// A compose health check as a readiness probe; `NONE` is none.
fn readiness_probe(check: &Healthcheck) -> Option<Value> {
    let command: Vec<String> = match check.test.split_first() {
        Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
        Some((kind, rest)) if kind == "CMD-SHELL" => vec!["/bin/sh".into(), "-c".into(), rest.join(" ")],
        _ => return None,
    };
    let mut probe = Map::new();
    probe.insert("exec".into(), json!({"command": command}));
    let seconds = |d: std::time::Duration| json!(d.as_secs().max(1));
    if let Some(interval) = check.interval {
        probe.insert("periodSeconds".into(), seconds(interval));
    }
    if let Some(timeout) = check.timeout {
        probe.insert("timeoutSeconds".into(), seconds(timeout));
    }
    if let Some(retries) = check.retries {
        probe.insert("failureThreshold".into(), json!(retries.max(1)));
    }
    if let Some(start) = check.start_period {
        probe.insert("initialDelaySeconds".into(), json!(start.as_secs()));
    }
    Some(Value::Object(probe))
}

/// A service's mounts and the pod volumes behind them.
fn mounts(mounts: &[Mount]) -> (Vec<Value>, Vec<Value>) {
    let (mut container, mut pod) = (Vec::new(), Vec::new());
    for (n, mount) in mounts.iter().enumerate() {
        let volume = format!("v{n}");
        let source = match &mount.source {
            MountSource::Volume(name) => json!({"persistentVolumeClaim": {"claimName": dns_label(name)}}),
            MountSource::Anonymous => json!({"emptyDir": {}}),
            MountSource::Bind(path) => json!({"hostPath": {"path": path}}),
        };
        let mut entry = source.as_object().cloned().unwrap_or_default();
        entry.insert("name".into(), json!(volume));
        pod.push(Value::Object(entry));
        container.push(json!({"name": volume, "mountPath": mount.target, "readOnly": mount.read_only}));
    }
    (container, pod)
}

/// A service's Service, when it has ports: each port as itself, a published host port
/// as the node port when Services are exposed on node ports.
fn service_object(compose_name: &str, name: &str, service: &Service, exposure: Exposure) -> Option<Object> {
    let ports = container_ports(service);
    if ports.is_empty() {
        return None;
    }
    let entries: Vec<Value> = ports
        .iter()
        .map(|(port, protocol)| {
            let mut entry = json!({"name": format!("{}-{port}", protocol.to_lowercase()), "port": port,
                                   "targetPort": port, "protocol": protocol.to_uppercase()});
            let published = service.ports.iter().find(|p| p.target == *port && &p.protocol == protocol);
            if let (Exposure::NodePort, Some(fixed)) = (exposure, published.and_then(|p| p.published)) {
                entry["nodePort"] = json!(fixed);
            }
            entry
        })
        .collect();
    let body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "annotations": {SERVICE_ANNOTATION: compose_name}},
        "spec": {"type": exposure.service_type(), "selector": {SERVICE_LABEL: name}, "ports": entries},
    });
    Some(Object { kind: Kind::Service, name: name.to_owned(), body })
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
