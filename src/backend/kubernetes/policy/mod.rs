//! What an object may do to the cluster's nodes, to its scheduling and to resources
//! outside its namespace, under the operator's settings. Every field of a pod spec,
//! container, security context, volume source, Service and claim that can reach past
//! the instance has a verdict here (the table in `table_tests.rs` lists them all, and
//! fails when k8s-openapi knows a field it does not):
//! - `ESM_DOCKER_ALLOW_PRIVILEGED` (as for Docker): the node's namespaces
//!   (`hostNetwork`, `hostPID`, `hostIPC`), privileged containers, added capabilities,
//!   privilege escalation, unmasked `/proc`, SELinux options, seccomp and AppArmor
//!   profiles that are `Unconfined` or the node's own (`Localhost`, and the old
//!   annotations), `sysctls`, Windows host processes, `runtimeClassName`, bidirectional
//!   mount propagation, `gitRepo` volumes (git runs on the node), probes and hooks
//!   aimed at a `host` (the kubelet connects from the node), and Service addresses
//!   fixed by the manifest (`externalIPs`, `clusterIP`, `loadBalancerIP`);
//! - `ESM_DOCKER_ALLOW_BIND_MOUNTS`: `hostPath` volumes;
//! - `ESM_DOCKER_ALLOW_EXTERNAL`: storage and devices esm did not make (`nfs`, `csi`,
//!   claims naming a volume, selecting volumes or cloning from a snapshot or populator,
//!   `resourceClaims`), tokens for other audiences, and `ExternalName` Services;
//! - `ESM_K8S_ALLOW_SCHEDULING`: where and before whom pods run (`nodeName`,
//!   `nodeSelector`, `affinity`, `tolerations`, `schedulerName`, `priorityClassName`,
//!   `priority`, `preemptionPolicy`);
//! - `ESM_HOST_PORT_RANGE`: the only `hostPort`, `nodePort` and `healthCheckNodePort`
//!   values a manifest may name;
//! - caps: `replicas`, `parallelism` and `completions` (`ESM_K8S_MAX_REPLICAS`), a pod's
//!   and a container's `cpu`, `memory` (with hugepages and memory-backed `emptyDir`),
//!   `ephemeral-storage` and extended resources, and a claim's storage.
//!
//! Refused whatever the settings: another namespace (a claim's data source), a service
//! account other than the namespace's `default`, finalizers and owner references (they
//! would hold the namespace, or tie objects to what is not the instance's), and
//! references to Secrets, ConfigMaps and claims the manifest does not declare.

mod pod;
mod references;

use serde_json::Value;

pub use self::references::{check_references, check_reserved};
use super::objects::{Kind, Object};
use crate::manifest::Policy;
pub use crate::manifest::Quantity;
use crate::manifest::settings::{
    DEFAULT_MAX_CPU, DEFAULT_MAX_EPHEMERAL_STORAGE, DEFAULT_MAX_MEMORY, DEFAULT_MAX_REPLICAS, DEFAULT_MAX_STORAGE,
};

/// `ESM_DOCKER_ALLOW_PRIVILEGED`.
const PRIVILEGED: &str = "ESM_DOCKER_ALLOW_PRIVILEGED";
/// `ESM_DOCKER_ALLOW_BIND_MOUNTS`.
const BIND_MOUNTS: &str = "ESM_DOCKER_ALLOW_BIND_MOUNTS";
/// `ESM_DOCKER_ALLOW_EXTERNAL`.
const EXTERNAL: &str = "ESM_DOCKER_ALLOW_EXTERNAL";
/// `ESM_K8S_ALLOW_SCHEDULING`.
const SCHEDULING: &str = "ESM_K8S_ALLOW_SCHEDULING";

/// The container lists of a pod; every one under the same rules.
const CONTAINER_LISTS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

/// What manifests may do on a cluster: the Docker backends' settings, and those of
/// Kubernetes alone.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesPolicy {
    /// The allow settings, host ports and manifest limits shared with Docker.
    pub docker: Policy,
    /// Node selection and scheduling fields (`ESM_K8S_ALLOW_SCHEDULING`).
    pub allow_scheduling: bool,
    /// Most `replicas`, `parallelism` or `completions` of a workload.
    pub max_replicas: u64,
    /// Most cores a pod (or a container) may request or be limited to.
    pub max_cpu: Quantity,
    /// Most memory (with hugepages) a pod may request or be limited to.
    pub max_memory: Quantity,
    /// Most ephemeral storage a pod may request or be limited to.
    pub max_ephemeral_storage: Quantity,
    /// Most storage one claim may request.
    pub max_storage: Quantity,
    /// Most of each extended resource (`nvidia.com/gpu`, ...) a pod may ask for; 0: none.
    pub max_extended_resources: u64,
}

impl Default for KubernetesPolicy {
    fn default() -> Self {
        Self::from(Policy::default())
    }
}

/// The Docker settings `docker`, and Kubernetes' at their defaults.
impl From<Policy> for KubernetesPolicy {
    fn from(docker: Policy) -> Self {
        let quantity = |text: &str| text.parse().expect("the default quantities parse");
        Self {
            docker,
            allow_scheduling: false,
            max_replicas: DEFAULT_MAX_REPLICAS,
            max_cpu: quantity(DEFAULT_MAX_CPU),
            max_memory: quantity(DEFAULT_MAX_MEMORY),
            max_ephemeral_storage: quantity(DEFAULT_MAX_EPHEMERAL_STORAGE),
            max_storage: quantity(DEFAULT_MAX_STORAGE),
            max_extended_resources: 0,
        }
    }
}

/// `{path} {what} (needs {setting})` when `allowed` is false.
fn unless(allowed: bool, path: &str, what: &str, setting: &str) -> Result<(), String> {
    if allowed { Ok(()) } else { Err(format!("{path} {what} (needs {setting})")) }
}

/// Whether `value` has `key` set to something (not null, not an empty list or map).
fn is_set(value: &Value, key: &str) -> bool {
    match value.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// The items of the list `key` of `value`, with their index.
fn items<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    value.get(key).and_then(Value::as_array).into_iter().flatten().enumerate()
}

/// Checks `object` under `policy`.
pub fn check(object: &Object, policy: &KubernetesPolicy) -> Result<(), String> {
    for (what, port) in fixed_ports(object) {
        allowed_port(what, port, &policy.docker)?;
    }
    let body = &object.body;
    check_metadata(body, "metadata")?;
    let counts: &[&str] = match object.kind {
        Kind::Deployment | Kind::StatefulSet => &["replicas"],
        Kind::Job => &["parallelism", "completions"],
        _ => &[],
    };
    for key in counts {
        let count = body.pointer(&format!("/spec/{key}")).and_then(Value::as_u64).unwrap_or(0);
        if count > policy.max_replicas {
            return Err(format!("spec.{key} {count} is above ESM_K8S_MAX_REPLICAS ({})", policy.max_replicas));
        }
    }
    if object.kind.has_pods() {
        let template = body.pointer("/spec/template").ok_or("spec.template.spec is missing")?;
        check_metadata(template, "spec.template.metadata")?;
        let pod = template.get("spec").ok_or("spec.template.spec is missing")?;
        pod::check_annotations(template, "spec.template.metadata.annotations", &policy.docker)?;
        pod::check(pod, "spec.template.spec", policy)?;
    }
    for (n, claim) in items(body.get("spec").unwrap_or(&Value::Null), "volumeClaimTemplates") {
        let at = format!("spec.volumeClaimTemplates[{n}]");
        check_metadata(claim, &format!("{at}.metadata"))?;
        check_claim(claim.get("spec").unwrap_or(&Value::Null), &format!("{at}.spec"), policy)?;
    }
    match object.kind {
        Kind::Service => check_service(body.get("spec").unwrap_or(&Value::Null), policy),
        Kind::PersistentVolumeClaim => check_claim(body.get("spec").unwrap_or(&Value::Null), "spec", policy),
        _ => Ok(()),
    }
}

/// The metadata of `object` (an object or a template), at `at`: no finalizers, which would hold the
/// instance's namespace when it is deleted, and no owner references, which would tie
/// the object to what is not the instance's.
fn check_metadata(object: &Value, at: &str) -> Result<(), String> {
    let Some(metadata) = object.get("metadata") else { return Ok(()) };
    for key in ["finalizers", "ownerReferences"] {
        if is_set(metadata, key) {
            return Err(format!("{at}.{key} is not allowed: esm deletes an instance with its namespace"));
        }
    }
    Ok(())
}

/// A claim's spec (a PersistentVolumeClaim, a StatefulSet's claim template, an
/// ephemeral volume's): new storage of the cluster's classes, bounded, never an existing
/// volume or another namespace's data.
fn check_claim(spec: &Value, at: &str, policy: &KubernetesPolicy) -> Result<(), String> {
    let external = policy.docker.allow_external;
    if is_set(spec, "volumeName") {
        unless(external, &format!("{at}.volumeName"), "claims an existing volume", EXTERNAL)?;
    }
    if is_set(spec, "selector") {
        unless(external, &format!("{at}.selector"), "selects existing volumes", EXTERNAL)?;
    }
    for key in ["dataSource", "dataSourceRef"] {
        let Some(source) = spec.get(key).filter(|s| !s.is_null()) else { continue };
        let path = format!("{at}.{key}");
        if is_set(source, "namespace") {
            return Err(format!("{path}.namespace is not allowed: a claim's data comes from its own namespace"));
        }
        let group = source.get("apiGroup").and_then(Value::as_str).unwrap_or_default();
        let kind = source.get("kind").and_then(Value::as_str).unwrap_or_default();
        // A clone of one of the manifest's own claims (the names are checked with the
        // other references); snapshots and populators are storage esm did not make.
        if !(group.is_empty() && kind == "PersistentVolumeClaim") {
            unless(external, &path, &format!("names a {kind:?} esm did not make"), EXTERNAL)?;
        }
    }
    for list in ["requests", "limits"] {
        if let Some(storage) = spec.pointer(&format!("/resources/{list}/storage")) {
            let path = format!("{at}.resources.{list}.storage");
            let quantity = Quantity::of(storage).map_err(|e| format!("{path}: {e}"))?;
            if quantity.value > policy.max_storage.value {
                return Err(format!("{path} {quantity} is above ESM_K8S_MAX_STORAGE ({})", policy.max_storage));
            }
        }
    }
    Ok(())
}

/// A Service's spec.
fn check_service(spec: &Value, policy: &KubernetesPolicy) -> Result<(), String> {
    let (privileged, external) = (policy.docker.allow_privileged, policy.docker.allow_external);
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        unless(external, "spec.type", "ExternalName points clients at a name outside the instance", EXTERNAL)?;
    }
    if is_set(spec, "externalName") {
        unless(external, "spec.externalName", "points clients at a name outside the instance", EXTERNAL)?;
    }
    if is_set(spec, "externalIPs") {
        unless(privileged, "spec.externalIPs", "takes traffic for addresses on the nodes", PRIVILEGED)?;
    }
    let fixed = |ip: &Value| ip.as_str().is_some_and(|ip| !ip.is_empty() && ip != "None");
    if spec.get("clusterIP").is_some_and(fixed) {
        unless(privileged, "spec.clusterIP", "fixes an address of the cluster's", PRIVILEGED)?;
    }
    if spec.get("clusterIPs").and_then(Value::as_array).is_some_and(|ips| ips.iter().any(fixed)) {
        unless(privileged, "spec.clusterIPs", "fixes addresses of the cluster's", PRIVILEGED)?;
    }
    if is_set(spec, "loadBalancerIP") {
        unless(privileged, "spec.loadBalancerIP", "fixes an address of the cluster's", PRIVILEGED)?;
    }
    Ok(())
}

/// The fixed ports on the nodes an object names: its containers' `hostPort`s and a
/// Service's `nodePort`s and `healthCheckNodePort`. Only one deployment can hold each.
pub fn fixed_ports(object: &Object) -> Vec<(&'static str, u64)> {
    let body = &object.body;
    let ports = |value: Option<&Value>, key: &'static str| -> Vec<(&'static str, u64)> {
        let listed = value.and_then(Value::as_array).into_iter().flatten();
        listed.filter_map(|port| Some((key, port.get(key)?.as_u64()?))).collect()
    };
    let mut found = Vec::new();
    if object.kind == Kind::Service {
        found = ports(body.pointer("/spec/ports"), "nodePort");
        if let Some(port) = body.pointer("/spec/healthCheckNodePort").and_then(Value::as_u64) {
            found.push(("healthCheckNodePort", port));
        }
    }
    if object.kind.has_pods() {
        for list in CONTAINER_LISTS {
            let containers = body.pointer(&format!("/spec/template/spec/{list}")).and_then(Value::as_array);
            for container in containers.into_iter().flatten() {
                found.extend(ports(container.get("ports"), "hostPort"));
            }
        }
    }
    found
}

/// A fixed port on the nodes: only inside `ESM_HOST_PORT_RANGE`, as for Docker.
fn allowed_port(what: &str, port: u64, policy: &Policy) -> Result<(), String> {
    match policy.host_ports {
        Some((low, high)) if (u64::from(low)..=u64::from(high)).contains(&port) => Ok(()),
        Some((low, high)) => Err(format!("{what} {port} is outside ESM_HOST_PORT_RANGE {low}-{high}")),
        None => Err(format!("{what} {port} names a fixed port on the nodes (allowed only inside ESM_HOST_PORT_RANGE)")),
    }
}

#[cfg(test)]
mod table;
#[cfg(test)]
mod table_tests;
