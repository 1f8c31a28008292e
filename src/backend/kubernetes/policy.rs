//! What an object may do to the cluster's nodes and to resources outside its namespace,
//! under the operator's allow settings (the same as for Docker):
//! - `ESM_DOCKER_ALLOW_PRIVILEGED`: `hostNetwork`, `hostPID`, `hostIPC`, privileged
//!   containers, added capabilities, privilege escalation, unmasked `/proc`, and
//!   Service `externalIPs` (which can take over other traffic on the nodes);
//! - `ESM_DOCKER_ALLOW_BIND_MOUNTS`: `hostPath` volumes;
//! - `ESM_DOCKER_ALLOW_EXTERNAL`: volumes of storage esm did not make (`nfs`, `csi`,
//!   `iscsi`, ...) and claims naming an existing PersistentVolume (`volumeName`);
//! - `ESM_HOST_PORT_RANGE`: the only `hostPort` and `nodePort` values a manifest may name.

use serde_json::Value;

use super::objects::{Kind, Object};
use crate::backend::docker::model::Policy;

/// Volume sources that stay inside the instance's namespace and pod.
const OWN_VOLUMES: &[&str] =
    &["configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI", "ephemeral", "name"];

/// Checks `object` under `policy`.
pub fn check(object: &Object, policy: &Policy) -> Result<(), String> {
    for (what, port) in fixed_ports(object) {
        allowed_port(what, port, policy)?;
    }
    let body = &object.body;
    if object.kind.has_pods() {
        let pod = body.pointer("/spec/template/spec").ok_or("spec.template.spec is missing")?;
        check_pod(pod, policy)?;
    }
    match object.kind {
        Kind::Service => check_service(body, policy),
        Kind::PersistentVolumeClaim if body.pointer("/spec/volumeName").is_some() && !policy.allow_external => {
            Err("spec.volumeName claims an existing volume (needs ESM_DOCKER_ALLOW_EXTERNAL)".into())
        }
        _ => Ok(()),
    }
}

/// A pod template's spec.
fn check_pod(pod: &Value, policy: &Policy) -> Result<(), String> {
    if !policy.allow_privileged {
        for key in ["hostNetwork", "hostPID", "hostIPC"] {
            if pod.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(format!("{key} shares the node's namespaces (needs ESM_DOCKER_ALLOW_PRIVILEGED)"));
            }
        }
    }
    for volume in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = volume.get("name").and_then(Value::as_str).unwrap_or_default();
        for source in volume.as_object().into_iter().flat_map(|v| v.keys()) {
            if source == "hostPath" && !policy.allow_bind_mounts {
                return Err(format!(
                    "volume {name}: hostPath mounts a node's files (needs ESM_DOCKER_ALLOW_BIND_MOUNTS)"
                ));
            }
            if source != "hostPath" && !OWN_VOLUMES.contains(&source.as_str()) && !policy.allow_external {
                return Err(format!(
                    "volume {name}: {source} is storage esm did not make (needs ESM_DOCKER_ALLOW_EXTERNAL)"
                ));
            }
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in pod.get(list).and_then(Value::as_array).into_iter().flatten() {
            let name = container.get("name").and_then(Value::as_str).unwrap_or_default();
            check_container(container, policy).map_err(|e| format!("container {name}: {e}"))?;
        }
    }
    Ok(())
}

/// The fixed ports on the nodes an object names: its containers' `hostPort`s and a
/// Service's `nodePort`s. Only one deployment can hold each.
pub fn fixed_ports(object: &Object) -> Vec<(&'static str, u64)> {
    let body = &object.body;
    let ports = |value: Option<&Value>, key: &'static str| -> Vec<(&'static str, u64)> {
        let listed = value.and_then(Value::as_array).into_iter().flatten();
        listed.filter_map(|port| Some((key, port.get(key)?.as_u64()?))).collect()
    };
    let mut found =
        if object.kind == Kind::Service { ports(body.pointer("/spec/ports"), "nodePort") } else { Vec::new() };
    if object.kind.has_pods() {
        for list in ["initContainers", "containers"] {
            let containers = body.pointer(&format!("/spec/template/spec/{list}")).and_then(Value::as_array);
            for container in containers.into_iter().flatten() {
                found.extend(ports(container.get("ports"), "hostPort"));
            }
        }
    }
    found
}

/// One container of a pod.
fn check_container(container: &Value, policy: &Policy) -> Result<(), String> {
    if policy.allow_privileged {
        return Ok(());
    }
    let Some(security) = container.get("securityContext") else { return Ok(()) };
    let refuse = |what: &str| Err(format!("{what} (needs ESM_DOCKER_ALLOW_PRIVILEGED)"));
    if security.get("privileged").and_then(Value::as_bool) == Some(true) {
        return refuse("privileged");
    }
    if security.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(true) {
        return refuse("allowPrivilegeEscalation");
    }
    if security.pointer("/capabilities/add").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return refuse("capabilities.add");
    }
    if security.get("procMount").and_then(Value::as_str) == Some("Unmasked") {
        return refuse("procMount: Unmasked");
    }
    Ok(())
}

/// A Service.
fn check_service(service: &Value, policy: &Policy) -> Result<(), String> {
    if service.pointer("/spec/externalIPs").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
        && !policy.allow_privileged
    {
        return Err(
            "spec.externalIPs takes traffic for addresses on the nodes (needs ESM_DOCKER_ALLOW_PRIVILEGED)".into()
        );
    }
    Ok(())
}

/// A fixed port on the nodes: only inside `ESM_HOST_PORT_RANGE`, as for Docker.
fn allowed_port(what: &str, port: u64, policy: &Policy) -> Result<(), String> {
    match policy.host_ports {
        Some((low, high)) if (u64::from(low)..=u64::from(high)).contains(&port) => Ok(()),
        Some((low, high)) => Err(format!("{what} {port} is outside ESM_HOST_PORT_RANGE {low}-{high}")),
        None => Err(format!("{what} {port} names a fixed port on the nodes (allowed only inside ESM_HOST_PORT_RANGE)")),
    }
}
