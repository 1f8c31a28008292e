//! The compose manifest language, shared by every backend that deploys compose
//! manifests (docker-compose, docker-swarm, and Kubernetes by translation):
//! `manifest_content` parsed into typed structs at registration, so a bad manifest is
//! a 400 then and never a failure at provision time.
//!
//! Compose file format 2.x and 3.x, the keys esm supports (see docs/docker.md). Anything
//! else is refused by name. Settings that would give an instance power over the host
//! (`privileged`, `cap_add`, `pid: host`, `network_mode: host`, `devices`, bind mounts of
//! host paths) are refused unless the operator allows them ([`Policy`]).
//!
//! Layers, each in its own file: `raw` (what the YAML looks like: serde shapes),
//! `check` (from those shapes to the model, refusing what the [`Policy`] does not
//! allow and anything Docker would not accept), `values` (compose's value syntaxes:
//! ports, mounts, durations, sizes, names, image references) and `order` (the start
//! order). The YAML itself is read by [`crate::yaml`], within the policy's limits.
//!
//! Beside the language, the plain values the operator sets for deploying manifests
//! ([`settings`]: pull policy, Service exposure, the cluster caps' defaults, and
//! Kubernetes resource [`Quantity`]s), so that [`crate::config`] reads them without
//! depending on any backend.
//!
//! Two esm extensions: a top-level `x-esm-credentials` map says what goes into binding
//! credentials, and `x-esm-keep: true` on a named volume keeps it after deprovision.

mod check;
mod order;
mod policy;
mod quantity;
mod raw;
pub mod settings;
#[cfg(test)]
mod tests;
mod values;

use std::collections::BTreeMap;
use std::time::Duration;

pub use policy::Policy;
pub use quantity::Quantity;
pub use settings::{Exposure, PullPolicy};
pub use values::parse_duration;

/// Labels under this prefix are esm's own (`crate::backend::labels`): a manifest may not
/// set them.
pub const RESERVED_LABEL_PREFIX: &str = "esm.";

use crate::yaml;

/// A parsed compose manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Compose {
    /// The services, by name.
    pub services: BTreeMap<String, Service>,
    /// Networks declared at the top level.
    pub networks: BTreeMap<String, Network>,
    /// Named volumes declared at the top level.
    pub volumes: BTreeMap<String, Volume>,
    /// `x-esm-credentials`: what a binding hands out.
    pub credentials: BTreeMap<String, CredentialSource>,
    /// Service names in an order that starts every service after its dependencies.
    pub start_order: Vec<String>,
}

/// One service (one container per instance).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    /// The image reference.
    pub image: String,
    /// Overrides the image's command.
    pub command: Option<Vec<String>>,
    /// Overrides the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Published ports.
    pub ports: Vec<Port>,
    /// Ports exposed to other services only (`"80"`, `"53/udp"`).
    pub expose: Vec<String>,
    /// Mounts.
    pub volumes: Vec<Mount>,
    /// Networks the service joins (with aliases); empty means the instance network.
    pub networks: BTreeMap<String, Vec<String>>,
    /// Services to start first, and whether to wait for them to be healthy.
    pub depends_on: BTreeMap<String, DependsOn>,
    /// Container labels (esm adds its own).
    pub labels: BTreeMap<String, String>,
    /// The container health check.
    pub healthcheck: Option<Healthcheck>,
    /// Restart policy: `no`, `always`, `on-failure[:N]`, `unless-stopped`.
    pub restart: Option<String>,
    /// Hostname inside the container.
    pub hostname: Option<String>,
    /// The name the manifest gives the container; esm uses it as a network alias and
    /// in the container's name, which it makes unique per instance.
    pub container_name: Option<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User (and group) to run as.
    pub user: Option<String>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// CPU limit in units of 1e-9 CPUs.
    pub nano_cpus: Option<i64>,
    /// Replicas (swarm only; compose runs one container).
    pub replicas: Option<u64>,
    /// Host-power settings, kept only when the policy allows them.
    pub privileged: bool,
    /// Added capabilities.
    pub cap_add: Vec<String>,
    /// `pid: host`.
    pub pid_host: bool,
    /// `network_mode: host`.
    pub host_network: bool,
    /// Device mappings.
    pub devices: Vec<String>,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The container port.
    pub target: u16,
    /// The host port (inside `ESM_HOST_PORT_RANGE`); `None` for an ephemeral one. The
    /// host address is always esm's publish address: a manifest cannot name one.
    pub published: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Swarm publish mode, `ingress` (the routing mesh, the default) or `host`.
    pub mode: Option<String>,
}

/// A mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// What is mounted.
    pub source: MountSource,
    /// Where, in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// What a mount mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A named volume of the manifest (made per instance).
    Volume(String),
    /// An anonymous volume.
    Anonymous,
    /// A host path (only when the policy allows bind mounts).
    Bind(String),
}

/// A dependency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DependsOn {
    /// Started first.
    #[default]
    Started,
    /// Started first and healthy before this one starts.
    Healthy,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, or `["NONE"]`.
    pub test: Vec<String>,
    /// Time between checks.
    pub interval: Option<Duration>,
    /// Time a check may take.
    pub timeout: Option<Duration>,
    /// Failures before unhealthy.
    pub retries: Option<i64>,
    /// Grace period after start.
    pub start_period: Option<Duration>,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// It exists already (not made or removed by esm); it must exist at provision.
    pub external: bool,
    /// Its name on the engine, for external networks.
    pub name: Option<String>,
    /// Labels for the network esm makes.
    pub labels: BTreeMap<String, String>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volume {
    /// It exists already (not made or removed by esm).
    pub external: bool,
    /// Its name on the engine, for external volumes.
    pub name: Option<String>,
    /// `x-esm-keep: true`: not removed on deprovision.
    pub keep: bool,
    /// Labels for the volume esm makes.
    pub labels: BTreeMap<String, String>,
}

/// Where a binding credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// A fixed value.
    Literal(String),
    /// A service's environment variable (after the instance parameters are applied).
    Environment {
        /// The service.
        service: String,
        /// The variable.
        variable: String,
    },
}

/// A CPU count as compose writes it (`cpus: 1.5`), in billionths; refused outside
/// (0, 1024].
pub fn cpus_of(value: &serde_json::Value) -> Result<i64, String> {
    values::parse_cpus(value)
}

/// A size as compose writes it (`mem_limit: 512m`, bytes as a number), in bytes.
pub fn bytes_of(value: &serde_json::Value) -> Result<i64, String> {
    values::parse_bytes(value)
}

impl Compose {
    /// What one deployment declares it may use: the sum of its services' limits,
    /// each replica counted when `replicated` (a swarm or a cluster runs `replicas`; a
    /// Docker engine's compose runs one container per service).
    pub fn demand(&self, replicated: bool) -> crate::backend::Demand {
        let mut demand = crate::backend::Demand::default();
        for service in self.services.values() {
            let copies = if replicated { service.replicas.unwrap_or(1) } else { 1 };
            let nano = u64::try_from(service.nano_cpus.unwrap_or(0)).unwrap_or(0);
            let bytes = u64::try_from(service.memory_bytes.unwrap_or(0)).unwrap_or(0);
            demand.cpu_millis = demand.cpu_millis.saturating_add(nano.div_ceil(1_000_000).saturating_mul(copies));
            demand.memory_bytes = demand.memory_bytes.saturating_add(bytes.saturating_mul(copies));
        }
        demand
    }

    /// Parses and checks a manifest under `policy`.
    pub fn parse(content: &str, policy: &Policy) -> Result<Compose, String> {
        let value = yaml::load(content, &policy.limits).map_err(|e| format!("manifest_content: {e}"))?;
        if !value.is_object() {
            return Err("manifest_content must be a YAML mapping with a services key".into());
        }
        let raw: raw::RawCompose = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." { format!("manifest_content: {}", e.inner()) } else { format!("{path}: {}", e.inner()) }
        })?;
        raw.check(policy)
    }

    /// [`Compose::parse`] on the blocking pool, for async code (deployments): parsing
    /// never holds up one of the runtime's workers.
    pub async fn parse_off_runtime(content: &str, policy: &Policy) -> Result<Compose, String> {
        let (content, policy) = (content.to_owned(), *policy);
        tokio::task::spawn_blocking(move || Compose::parse(&content, &policy))
            .await
            .map_err(|e| format!("the manifest could not be read: {e}"))?
    }
}
