//! What the engine is asked to make, as pure functions of the manifest: the names and
//! labels of an instance's networks and volumes, and for each manifest service a
//! container body ([`container_body`]) or a swarm service spec ([`service_spec`]).
//!
//! Both specs are built from the same per-aspect helpers here (environment, mounts,
//! network aliases, health check, labels), so the two backends cannot drift apart on
//! them; only what the engine spells differently (ports, restart policy, resources)
//! is written once per spec. Nothing here talks to the engine: every name is resolved
//! before, which is what makes these functions testable without one.

mod container;
mod service;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{HealthConfig, Mount, MountType, MountVolumeOptions};
use serde_json::Value;

pub use self::container::{container_body, container_name};
pub use self::service::{replicas, service_name, service_spec};
use crate::backend::labels;
use crate::domain::port::PortWant;
use crate::manifest::{Compose, MountSource, Port, Service};

/// A network or volume of an instance, as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Its engine name.
    pub name: String,
    /// The labels esm makes it with; `None` for an external one, which someone else
    /// made: esm checks it exists, and never labels or removes it.
    pub labels: Option<HashMap<String, String>>,
}

/// One manifest service of an instance, with everything its specs need resolved.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// The manifest's name for the service.
    pub name: &'a str,
    /// What the manifest says about it.
    pub service: &'a Service,
    /// The instance's project name ([`super::project`]), the prefix of engine names.
    pub project: &'a str,
    /// The instance's parameters: like the original, they reach every service as
    /// environment variables.
    pub parameters: Option<&'a Value>,
    /// esm's labels of the instance ([`labels::for_instance`]).
    pub esm_labels: &'a HashMap<String, String>,
    /// The instance's networks ([`networks`]), by manifest name.
    pub networks: &'a BTreeMap<String, Resource>,
    /// The instance's named volumes ([`volumes`]), by manifest name.
    pub volumes: &'a BTreeMap<String, Resource>,
    /// The host ports esm leased the instance, by [`PortWant::key`].
    pub host_ports: &'a BTreeMap<String, u16>,
}

impl Unit<'_> {
    /// The host port to publish `port` on: the manifest's, else the one esm leased,
    /// else none (the engine picks).
    pub fn host_port(&self, port: &Port) -> Option<u16> {
        port.published.or_else(|| self.host_ports.get(&want(self.name, port).key()).copied())
    }
}

/// What publishing `port` of service `name` asks of the host.
pub fn want(name: &str, port: &Port) -> PortWant {
    PortWant { unit: name.to_owned(), target: port.target, protocol: port.protocol.clone(), fixed: port.published }
}

/// The instance's networks by manifest name: `default` (`<project>_default`) and the
/// manifest's own, made with the manifest's labels under esm's, or external.
pub fn networks(compose: &Compose, project: &str, esm_labels: &HashMap<String, String>) -> BTreeMap<String, Resource> {
    let mut networks = BTreeMap::from([(
        "default".to_owned(),
        Resource { name: format!("{project}_default"), labels: Some(esm_labels.clone()) },
    )]);
    for (name, network) in &compose.networks {
        let resource = if network.external {
            Resource { name: network.name.clone().unwrap_or_else(|| name.clone()), labels: None }
        } else {
            let labels = labels::with_esm_labels(&network.labels, esm_labels);
            Resource { name: format!("{project}_{name}"), labels: Some(labels) }
        };
        networks.insert(name.clone(), resource);
    }
    networks
}

/// The instance's named volumes by manifest name: `<project>_<volume>`, made with the
/// manifest's labels under esm's (and `esm.keep` where `x-esm-keep` says so), or
/// external.
pub fn volumes(compose: &Compose, project: &str, esm_labels: &HashMap<String, String>) -> BTreeMap<String, Resource> {
    compose
        .volumes
        .iter()
        .map(|(name, volume)| {
            let resource = if volume.external {
                Resource { name: volume.name.clone().unwrap_or_else(|| name.clone()), labels: None }
            } else {
                let mut labels = labels::with_esm_labels(&volume.labels, esm_labels);
                if volume.keep {
                    labels.insert(labels::KEEP.into(), "true".into());
                }
                Resource { name: format!("{project}_{name}"), labels: Some(labels) }
            };
            (name.clone(), resource)
        })
        .collect()
}

/// The labels of a unit: the service's own, esm's, and `esm.service`.
pub fn unit_labels(unit: &Unit<'_>) -> HashMap<String, String> {
    let mut labels = labels::with_esm_labels(&unit.service.labels, unit.esm_labels);
    labels.insert(labels::SERVICE.into(), unit.name.to_owned());
    labels
}

/// The service's environment (`KEY=value`, sorted) with the instance parameters on
/// top; a parameter that is not a string is passed as JSON.
pub fn environment(unit: &Unit<'_>) -> Vec<String> {
    let mut environment = unit.service.environment.clone();
    if let Some(Value::Object(parameters)) = unit.parameters {
        for (key, value) in parameters {
            environment.insert(key.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_owned));
        }
    }
    environment.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The service's mounts. A volume mount carries the labels its volume is made with,
/// so a volume the engine makes itself (a swarm task on another node, an anonymous
/// volume) is labelled as esm would have; an external volume's mount carries none.
pub fn mounts(unit: &Unit<'_>) -> Vec<Mount> {
    unit.service
        .volumes
        .iter()
        .map(|m| {
            let (source, typ, labels) = match &m.source {
                MountSource::Volume(v) => {
                    // Declared, or the manifest would have been refused.
                    let volume = unit.volumes.get(v);
                    (volume.map(|v| v.name.clone()), MountType::VOLUME, volume.and_then(|v| v.labels.clone()))
                }
                MountSource::Anonymous => (None, MountType::VOLUME, Some(unit.esm_labels.clone())),
                MountSource::Bind(path) => (Some(path.clone()), MountType::BIND, None),
            };
            Mount {
                target: Some(m.target.clone()),
                source,
                typ: Some(typ),
                read_only: Some(m.read_only),
                volume_options: labels.map(|labels| MountVolumeOptions { labels: Some(labels), ..Default::default() }),
                ..Default::default()
            }
        })
        .collect()
}

/// The unit's attachments: `(engine network name, aliases)`, the instance network
/// when the service names none, nothing for `network_mode: host`. On every network
/// the service answers to its name, its `container_name` and its `hostname` (as with
/// docker-compose), plus the aliases the manifest gives for that network.
pub fn attachments(unit: &Unit<'_>) -> Vec<(String, Vec<String>)> {
    let service = unit.service;
    if service.host_network {
        return Vec::new();
    }
    let mut aliases = vec![unit.name.to_owned()];
    aliases.extend(service.container_name.clone());
    aliases.extend(service.hostname.clone());
    let default = BTreeMap::from([("default".to_owned(), Vec::new())]);
    let joined = if service.networks.is_empty() { &default } else { &service.networks };
    joined
        .iter()
        .filter_map(|(network, extra)| {
            let engine_name = unit.networks.get(network)?.name.clone();
            let mut all = aliases.clone();
            all.extend(extra.iter().cloned());
            Some((engine_name, all))
        })
        .collect()
}

/// The service's health check, durations in nanoseconds as the engine takes them.
pub fn healthcheck(service: &Service) -> Option<HealthConfig> {
    let nanos = |d: Option<Duration>| d.map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    service.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: nanos(h.interval),
        timeout: nanos(h.timeout),
        retries: h.retries,
        start_period: nanos(h.start_period),
        start_interval: None,
    })
}

/// Whether the service declares a health check to wait for (`test: [NONE]` disables
/// the image's).
pub fn has_healthcheck(service: &Service) -> bool {
    service.healthcheck.as_ref().is_some_and(|h| h.test.first().map(String::as_str) != Some("NONE"))
}

/// `Some(list)` unless empty: the engine then keeps its (or the image's) default.
fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    Some(list).filter(|l| !l.is_empty())
}
