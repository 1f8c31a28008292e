//! A pod template's spec: its node, its scheduling, its security contexts, its
//! containers and its volumes, and what it may ask of the node's resources.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    BIND_MOUNTS, CONTAINER_LISTS, EXTERNAL, KubernetesPolicy, PRIVILEGED, Quantity, SCHEDULING, check_claim,
    check_metadata, is_set, items, unless,
};
use crate::manifest::Policy;

/// Volume sources that stay inside the instance's namespace and pod (`image` pulls an
/// image as a container does).
const OWN_VOLUMES: &[&str] = &[
    "name",
    "configMap",
    "secret",
    "emptyDir",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "ephemeral",
    "image",
];

/// Projected sources that stay inside the namespace.
const OWN_PROJECTIONS: &[&str] = &["configMap", "secret", "downwardAPI", "serviceAccountToken"];

/// Pod fields that choose nodes or rank pods against other tenants' pods.
const SCHEDULING_FIELDS: &[&str] = &[
    "nodeName",
    "nodeSelector",
    "affinity",
    "tolerations",
    "schedulerName",
    "priorityClassName",
    "priority",
    "preemptionPolicy",
];

/// Annotations that set seccomp and AppArmor profiles the old way, before the fields.
const PROFILE_ANNOTATIONS: &[&str] = &[
    "seccomp.security.alpha.kubernetes.io/pod",
    "container.seccomp.security.alpha.kubernetes.io/",
    "container.apparmor.security.beta.kubernetes.io/",
];

/// The pod spec at `at`.
pub(super) fn check(pod: &Value, at: &str, policy: &KubernetesPolicy) -> Result<(), String> {
    let privileged = policy.docker.allow_privileged;
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.get(key).and_then(Value::as_bool) == Some(true) {
            unless(privileged, &format!("{at}.{key}"), "shares the node's namespaces", PRIVILEGED)?;
        }
    }
    for key in SCHEDULING_FIELDS {
        if is_set(pod, key) {
            unless(policy.allow_scheduling, &format!("{at}.{key}"), "is not allowed", SCHEDULING)?;
        }
    }
    if is_set(pod, "runtimeClassName") {
        unless(
            privileged,
            &format!("{at}.runtimeClassName"),
            "chooses how pods are isolated from the node",
            PRIVILEGED,
        )?;
    }
    for key in ["serviceAccountName", "serviceAccount"] {
        if let Some(account) = pod.get(key).and_then(Value::as_str).filter(|a| !a.is_empty() && *a != "default") {
            return Err(format!(
                "{at}.{key} {account:?} is not allowed: an instance's pods run as its namespace's default account"
            ));
        }
    }
    if is_set(pod, "resourceClaims") {
        unless(
            policy.docker.allow_external,
            &format!("{at}.resourceClaims"),
            "claims devices of the cluster",
            EXTERNAL,
        )?;
    }
    if let Some(security) = pod.get("securityContext") {
        let at = format!("{at}.securityContext");
        if is_set(security, "sysctls") {
            unless(privileged, &format!("{at}.sysctls"), "sets the kernel's parameters", PRIVILEGED)?;
        }
        check_security(security, &at, &policy.docker)?;
    }
    for (n, volume) in items(pod, "volumes") {
        check_volume(volume, &format!("{at}.volumes[{n}]"), policy)?;
    }
    for list in CONTAINER_LISTS {
        for (n, container) in items(pod, list) {
            check_container(container, &format!("{at}.{list}[{n}]"), policy)?;
        }
    }
    check_resources(pod, at, policy)
}

/// A pod template's annotations: no seccomp or AppArmor profile set the old way.
pub(super) fn check_annotations(template: &Value, at: &str, policy: &Policy) -> Result<(), String> {
    let annotations = template.pointer("/metadata/annotations").and_then(Value::as_object);
    for key in annotations.into_iter().flat_map(|a| a.keys()) {
        if PROFILE_ANNOTATIONS.iter().any(|prefix| key.starts_with(prefix)) {
            unless(policy.allow_privileged, &format!("{at} {key:?}"), "sets a security profile", PRIVILEGED)?;
        }
    }
    Ok(())
}

/// A pod's or a container's security context.
fn check_security(security: &Value, at: &str, policy: &Policy) -> Result<(), String> {
    let privileged = policy.allow_privileged;
    if is_set(security, "seLinuxOptions") {
        unless(privileged, &format!("{at}.seLinuxOptions"), "chooses an SELinux label", PRIVILEGED)?;
    }
    for key in ["seccompProfile", "appArmorProfile"] {
        let kind = security.pointer(&format!("/{key}/type")).and_then(Value::as_str);
        if let Some(kind @ ("Unconfined" | "Localhost")) = kind {
            unless(
                privileged,
                &format!("{at}.{key}.type"),
                &format!("{kind} is not the runtime's default"),
                PRIVILEGED,
            )?;
        }
    }
    if security.pointer("/windowsOptions/hostProcess").and_then(Value::as_bool) == Some(true) {
        unless(privileged, &format!("{at}.windowsOptions.hostProcess"), "runs on the node", PRIVILEGED)?;
    }
    Ok(())
}

/// One container of a pod (an init or ephemeral one alike).
fn check_container(container: &Value, at: &str, policy: &KubernetesPolicy) -> Result<(), String> {
    let privileged = policy.docker.allow_privileged;
    if let Some(security) = container.get("securityContext") {
        let at = format!("{at}.securityContext");
        let refuse = |key: &str, what: &str| unless(privileged, &format!("{at}.{key}"), what, PRIVILEGED);
        if security.get("privileged").and_then(Value::as_bool) == Some(true) {
            refuse("privileged", "gives the node's devices")?;
        }
        if security.get("allowPrivilegeEscalation").and_then(Value::as_bool) == Some(true) {
            refuse("allowPrivilegeEscalation", "lets processes gain privileges")?;
        }
        if security.pointer("/capabilities/add").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            refuse("capabilities.add", "adds kernel capabilities")?;
        }
        if security.get("procMount").and_then(Value::as_str) == Some("Unmasked") {
            refuse("procMount", "Unmasked shows the node's /proc")?;
        }
        check_security(security, &at, &policy.docker)?;
    }
    for (n, mount) in items(container, "volumeMounts") {
        if mount.get("mountPropagation").and_then(Value::as_str) == Some("Bidirectional") {
            let path = format!("{at}.volumeMounts[{n}].mountPropagation");
            unless(privileged, &path, "Bidirectional propagates mounts to the node", PRIVILEGED)?;
        }
    }
    // Probes and hooks are run by the kubelet, from the node: aimed at a host, they
    // reach what the node reaches.
    let handlers = ["livenessProbe", "readinessProbe", "startupProbe", "lifecycle.postStart", "lifecycle.preStop"];
    for handler in handlers {
        let Some(value) = container.pointer(&format!("/{}", handler.replace('.', "/"))) else { continue };
        for action in ["httpGet", "tcpSocket"] {
            if value.get(action).is_some_and(|a| is_set(a, "host")) {
                let path = format!("{at}.{handler}.{action}.host");
                unless(privileged, &path, "makes the kubelet connect from the node", PRIVILEGED)?;
            }
        }
    }
    let resources = container.get("resources").unwrap_or(&Value::Null);
    for (name, (requested, limit)) in amounts(resources, &format!("{at}.resources"))? {
        cap(policy, &name, requested.max(limit), &format!("{at}.resources"))?;
    }
    Ok(())
}

/// One volume of a pod.
fn check_volume(volume: &Value, at: &str, policy: &KubernetesPolicy) -> Result<(), String> {
    let docker = &policy.docker;
    for source in volume.as_object().into_iter().flat_map(|v| v.keys()) {
        let path = format!("{at}.{source}");
        match source.as_str() {
            "hostPath" => unless(docker.allow_bind_mounts, &path, "mounts a node's files", BIND_MOUNTS)?,
            "gitRepo" => unless(docker.allow_privileged, &path, "runs git on the node", PRIVILEGED)?,
            own if OWN_VOLUMES.contains(&own) => {}
            _ => unless(docker.allow_external, &path, "is storage esm did not make", EXTERNAL)?,
        }
    }
    if let Some(template) = volume.pointer("/ephemeral/volumeClaimTemplate") {
        let at = format!("{at}.ephemeral.volumeClaimTemplate");
        check_metadata(template, &format!("{at}.metadata"))?;
        check_claim(template.get("spec").unwrap_or(&Value::Null), &format!("{at}.spec"), policy)?;
    }
    if let Some(size) = volume.pointer("/emptyDir/sizeLimit") {
        let path = format!("{at}.emptyDir.sizeLimit");
        let size = Quantity::of(size).map_err(|e| format!("{path}: {e}"))?;
        let memory = volume.pointer("/emptyDir/medium").and_then(Value::as_str) == Some("Memory");
        cap(policy, if memory { "memory" } else { "ephemeral-storage" }, size.value, &path)?;
    }
    for (n, projection) in items(volume.get("projected").unwrap_or(&Value::Null), "sources") {
        let at = format!("{at}.projected.sources[{n}]");
        for source in projection.as_object().into_iter().flat_map(|p| p.keys()) {
            if !OWN_PROJECTIONS.contains(&source.as_str()) {
                unless(docker.allow_external, &format!("{at}.{source}"), "is not the instance's", EXTERNAL)?;
            }
        }
        if projection.get("serviceAccountToken").is_some_and(|t| is_set(t, "audience")) {
            let path = format!("{at}.serviceAccountToken.audience");
            unless(docker.allow_external, &path, "asks a token for another system", EXTERNAL)?;
        }
    }
    Ok(())
}

/// The pod's total: its containers' sum, or its largest init container (which runs
/// alone), or its own pod-level `resources`, whichever is more.
fn check_resources(pod: &Value, at: &str, policy: &KubernetesPolicy) -> Result<(), String> {
    let mut total: BTreeMap<String, f64> = BTreeMap::new();
    for (list, summed) in [("containers", true), ("initContainers", false)] {
        let mut here: BTreeMap<String, f64> = BTreeMap::new();
        for (n, container) in items(pod, list) {
            let resources = container.get("resources").unwrap_or(&Value::Null);
            for (name, (requested, limit)) in amounts(resources, &format!("{at}.{list}[{n}].resources"))? {
                let amount = here.entry(name).or_default();
                *amount = if summed { *amount + requested.max(limit) } else { amount.max(requested.max(limit)) };
            }
        }
        for (name, amount) in here {
            let entry = total.entry(name).or_default();
            *entry = entry.max(amount);
        }
    }
    let own = pod.get("resources").unwrap_or(&Value::Null);
    for (name, (requested, limit)) in amounts(own, &format!("{at}.resources"))? {
        cap(policy, &name, requested.max(limit), &format!("{at}.resources"))?;
        let entry = total.entry(name).or_default();
        *entry = entry.max(requested.max(limit));
    }
    for (name, amount) in total {
        cap(policy, &name, amount, &format!("{at} (all its containers)"))?;
    }
    Ok(())
}

/// What `resources` requests and limits, by resource; hugepages count as memory.
fn amounts(resources: &Value, at: &str) -> Result<BTreeMap<String, (f64, f64)>, String> {
    let mut found: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (list, limit) in [("requests", false), ("limits", true)] {
        let listed = resources.get(list).and_then(Value::as_object);
        for (name, value) in listed.into_iter().flatten() {
            let path = format!("{at}.{list}.{name}");
            let quantity = Quantity::of(value).map_err(|e| format!("{path}: {e}"))?;
            let name = if name.starts_with("hugepages-") { "memory" } else { name.as_str() };
            let entry = found.entry(name.to_owned()).or_default();
            if limit { entry.1 += quantity.value } else { entry.0 += quantity.value }
        }
    }
    Ok(found)
}

/// `amount` of the resource `name` within its cap.
fn cap(policy: &KubernetesPolicy, name: &str, amount: f64, at: &str) -> Result<(), String> {
    let (setting, max, shown) = match name {
        "cpu" => ("ESM_K8S_MAX_CPU", policy.max_cpu.value, policy.max_cpu.to_string()),
        "memory" => ("ESM_K8S_MAX_MEMORY", policy.max_memory.value, policy.max_memory.to_string()),
        "ephemeral-storage" => (
            "ESM_K8S_MAX_EPHEMERAL_STORAGE",
            policy.max_ephemeral_storage.value,
            policy.max_ephemeral_storage.to_string(),
        ),
        _ => {
            let max = policy.max_extended_resources;
            ("ESM_K8S_MAX_EXTENDED_RESOURCES", max as f64, max.to_string())
        }
    };
    if amount > max {
        return Err(format!("{at} asks for {amount} of {name:?}, above {setting} ({shown})"));
    }
    Ok(())
}
