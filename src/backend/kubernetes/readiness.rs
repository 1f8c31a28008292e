//! What the objects' status says about a deployment, as pure functions of what the API
//! listed: ready, still coming up (and what it waits for), or failed (with the pod's
//! reason). The wait in `deploy` and liveness read the cluster through these.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;

use super::objects::Kind;
use super::translate::SERVICE_ANNOTATION;
use crate::domain::liveness::{Component, ComponentStatus};

/// Container states that do not fix themselves: the rollout fails with them.
const FAILING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What the cluster shows of one deployment.
#[derive(Debug, Default)]
pub struct Seen {
    /// Its Deployments.
    pub deployments: Vec<Deployment>,
    /// Its StatefulSets.
    pub stateful_sets: Vec<StatefulSet>,
    /// Its Services.
    pub services: Vec<Service>,
    /// Its pods.
    pub pods: Vec<Pod>,
}

/// Where a deployment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Every workload has its replicas available and every Service its address.
    Ready,
    /// Still coming up: what is not there yet.
    Waiting(String),
    /// It will not come up: why.
    Failed(String),
}

/// Where the deployment of `expected` (names by kind) stands.
pub fn look(seen: &Seen, expected: &BTreeMap<Kind, BTreeSet<String>>) -> Look {
    if let Some(failure) = seen.pods.iter().find_map(pod_failure) {
        return Look::Failed(failure);
    }
    let mut waiting = Vec::new();
    for deployment in &seen.deployments {
        match deployment_state(deployment) {
            Ok(None) => {}
            Ok(Some(why)) => waiting.push(why),
            Err(failure) => return Look::Failed(failure),
        }
    }
    waiting.extend(seen.stateful_sets.iter().filter_map(stateful_set_waiting));
    waiting.extend(seen.services.iter().filter_map(service_waiting));
    let listed = [
        (Kind::Deployment, seen.deployments.iter().map(ResourceExt::name_any).collect::<BTreeSet<_>>()),
        (Kind::StatefulSet, seen.stateful_sets.iter().map(ResourceExt::name_any).collect()),
        (Kind::Service, seen.services.iter().map(ResourceExt::name_any).collect()),
    ];
    for (kind, names) in listed {
        for name in expected.get(&kind).into_iter().flatten().filter(|n| !names.contains(*n)) {
            waiting.push(format!("{} {name} is not there", kind.name()));
        }
    }
    if waiting.is_empty() { Look::Ready } else { Look::Waiting(waiting.join("; ")) }
}

/// `Ok(None)` when a Deployment's current generation has every replica available,
/// `Ok(Some(why))` while it has not, `Err` when its rollout ran past its deadline.
fn deployment_state(deployment: &Deployment) -> Result<Option<String>, String> {
    let name = deployment.name_any();
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    for condition in status.conditions.iter().flatten() {
        if condition.type_ == "Progressing" && condition.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            let message = condition.message.clone().unwrap_or_default();
            return Err(format!("Deployment {name}: ProgressDeadlineExceeded: {message}"));
        }
    }
    let generation = deployment.metadata.generation.unwrap_or(0);
    if status.observed_generation.unwrap_or(generation) < generation {
        return Ok(Some(format!("Deployment {name} has not seen its latest spec")));
    }
    // As `kubectl rollout status` reads it: every replica of the new spec, no old one
    // left, and all available.
    let available = status.available_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(available);
    let total = status.replicas.unwrap_or(updated);
    Ok(if updated < wanted {
        Some(format!("Deployment {name} has {updated} of {wanted} replicas updated"))
    } else if total > updated {
        Some(format!("Deployment {name} has {} old replicas still running", total - updated))
    } else if available < wanted {
        Some(format!("Deployment {name} has {available} of {wanted} replicas available"))
    } else {
        None
    })
}

/// Why a StatefulSet is not ready, if it is not.
fn stateful_set_waiting(set: &StatefulSet) -> Option<String> {
    let wanted = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = set.status.clone().unwrap_or_default();
    let ready = status.available_replicas.unwrap_or(status.ready_replicas.unwrap_or(0));
    (ready < wanted).then(|| format!("StatefulSet {} has {ready} of {wanted} replicas ready", set.name_any()))
}

/// Why a Service has no address yet, if it has none: a cluster IP (unless headless),
/// every node port of a NodePort Service, the ingress of a LoadBalancer.
fn service_waiting(service: &Service) -> Option<String> {
    let name = service.name_any();
    let spec = service.spec.clone().unwrap_or_default();
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if kind == "ExternalName" {
        return None;
    }
    if spec.cluster_ip.as_deref().is_none_or(str::is_empty) {
        return Some(format!("Service {name} has no cluster IP yet"));
    }
    let ports = spec.ports.unwrap_or_default();
    if matches!(kind, "NodePort" | "LoadBalancer") && ports.iter().any(|p| p.node_port.is_none()) {
        return Some(format!("Service {name} has no node port yet"));
    }
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    if kind == "LoadBalancer" && ingress.is_none_or(Vec::is_empty) {
        return Some(format!("Service {name} has no load balancer address yet"));
    }
    None
}

/// Why a pod will not run, if one of its containers is in a state that does not fix
/// itself (or the pod failed).
pub fn pod_failure(pod: &Pod) -> Option<String> {
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    for container in containers {
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(waiting) = waiting {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if FAILING.contains(&reason) {
                let message = waiting.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
                return Some(format!("pod {name}: container {}: {reason}{message}", container.name));
            }
        }
    }
    (status.phase.as_deref() == Some("Failed")).then(|| {
        let reason = status.reason.clone().or_else(|| status.message.clone()).unwrap_or_else(|| "failed".into());
        format!("pod {name}: {reason}")
    })
}

/// The workloads of a deployment as liveness components: up with every replica
/// available, down (with the first failing pod's reason) otherwise.
pub fn components(seen: &Seen) -> Vec<Component> {
    let failure = seen.pods.iter().find_map(pod_failure);
    let component = |name: String, kind: &str, waiting: Option<String>| Component {
        name,
        kind: kind.to_owned(),
        status: if waiting.is_none() { ComponentStatus::Up } else { ComponentStatus::Down },
        reason: waiting.map(|w| failure.clone().unwrap_or(w)),
    };
    let mut components: Vec<Component> = seen
        .deployments
        .iter()
        .map(|d| {
            let waiting = match deployment_state(d) {
                Ok(waiting) => waiting,
                Err(failure) => Some(failure),
            };
            component(display_name(d), "deployment", waiting)
        })
        .collect();
    components
        .extend(seen.stateful_sets.iter().map(|s| component(display_name(s), "statefulset", stateful_set_waiting(s))));
    components.sort_by(|a, b| a.name.cmp(&b.name));
    components
}

/// The name an object is reported under: the compose service it was made from, else
/// its own.
pub fn display_name<K: ResourceExt>(object: &K) -> String {
    object.annotations().get(SERVICE_ANNOTATION).cloned().unwrap_or_else(|| object.name_any())
}

#[cfg(test)]
#[path = "readiness_tests.rs"]
mod tests;
