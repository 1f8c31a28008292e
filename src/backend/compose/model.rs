//! The docker-compose manifest model: `manifest_content` parsed into typed structs at
//! registration, so a bad manifest is a 400 then and never a failure at provision time.
//!
//! Compose file format 2.x and 3.x, the keys esm supports (see the README). Anything
//! else is refused by name. Settings that would give an instance power over the host
//! (`privileged`, `cap_add`, `pid: host`, `network_mode: host`, `devices`, bind mounts of
//! host paths) are refused unless the operator allows them ([`Policy`]).
//!
//! Two esm extensions: a top-level `x-esm-credentials` map says what goes into binding
//! credentials, and `x-esm-keep: true` on a named volume keeps it after deprovision.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// What the operator allows manifests to do to the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Bind mounts of host paths (`/host/path:/in/container`).
    pub allow_bind_mounts: bool,
    /// `privileged`, `cap_add`, `pid: host`, `network_mode: host`, `devices`.
    pub allow_privileged: bool,
}

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
    /// The host port; `None` for an ephemeral one.
    pub published: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The host address, if the manifest names one (else esm's publish address).
    pub host_ip: Option<String>,
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

impl Compose {
    /// Parses and checks a manifest under `policy`.
    pub fn parse(content: &str, policy: Policy) -> Result<Compose, String> {
        let raw: RawCompose = yaml_serde::from_str(content).map_err(|e| format!("manifest_content: {e}"))?;
        raw.check(policy)
    }
}

// ---- What the YAML looks like -------------------------------------------------------

#[derive(Debug, Deserialize)]
struct RawCompose {
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    services: BTreeMap<String, RawService>,
    #[serde(default)]
    networks: BTreeMap<String, Option<RawNetwork>>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<RawVolume>>,
    #[serde(rename = "x-esm-credentials", default)]
    credentials: BTreeMap<String, RawCredential>,
    /// Other `x-` extension keys are free-form and ignored, as compose does.
    #[serde(flatten)]
    extensions: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RawService {
    image: Option<String>,
    command: Option<StringOrList>,
    entrypoint: Option<StringOrList>,
    environment: Option<ListOrMap>,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    expose: Vec<Value>,
    #[serde(default)]
    volumes: Vec<RawMount>,
    networks: Option<RawServiceNetworks>,
    depends_on: Option<RawDependsOn>,
    labels: Option<ListOrMap>,
    healthcheck: Option<RawHealthcheck>,
    restart: Option<String>,
    hostname: Option<String>,
    container_name: Option<String>,
    working_dir: Option<String>,
    user: Option<Value>,
    mem_limit: Option<Value>,
    cpus: Option<Value>,
    deploy: Option<RawDeploy>,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    cap_add: Vec<String>,
    pid: Option<String>,
    network_mode: Option<String>,
    #[serde(default)]
    devices: Vec<String>,
    #[serde(flatten)]
    extensions: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    String(String),
    List(Vec<Value>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListOrMap {
    List(Vec<String>),
    Map(BTreeMap<String, Option<Value>>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPort {
    // The long form first: `Value` would swallow it.
    Long(RawLongPort),
    Short(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongPort {
    target: u16,
    published: Option<Value>,
    protocol: Option<String>,
    host_ip: Option<String>,
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawMount {
    Short(String),
    Long(RawLongMount),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongMount {
    #[serde(rename = "type")]
    kind: String,
    source: Option<String>,
    target: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<RawServiceNetwork>>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceNetwork {
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, RawDependency>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDependency {
    condition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealthcheck {
    test: Option<StringOrList>,
    interval: Option<String>,
    timeout: Option<String>,
    retries: Option<i64>,
    start_period: Option<String>,
    #[serde(default)]
    disable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeploy {
    replicas: Option<u64>,
    resources: Option<RawResources>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    limits: Option<RawLimits>,
    /// Accepted for compatibility; esm sets limits only.
    #[serde(rename = "reservations")]
    _reservations: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    cpus: Option<Value>,
    memory: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    external: Option<Value>,
    name: Option<String>,
    driver: Option<String>,
    #[serde(default)]
    labels: Option<ListOrMap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    #[serde(default)]
    external: Option<Value>,
    name: Option<String>,
    driver: Option<String>,
    #[serde(default)]
    labels: Option<ListOrMap>,
    #[serde(rename = "x-esm-keep", default)]
    keep: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCredential {
    Literal(String),
    Reference { service: String, env: String },
}

// ---- From YAML to the model --------------------------------------------------------

impl RawCompose {
    fn check(self, policy: Policy) -> Result<Compose, String> {
        if let Some(version) = &self.version {
            let text = version.as_str().map(str::to_owned).unwrap_or_else(|| version.to_string());
            if !(text.starts_with('2') || text.starts_with('3')) {
                return Err(format!("compose file version {text} is not supported (2.x and 3.x are)"));
            }
        }
        refuse_unknown("the top level", &self.extensions)?;
        if self.services.is_empty() {
            return Err("the manifest declares no services".into());
        }
        let networks: BTreeMap<String, Network> = self
            .networks
            .into_iter()
            .map(|(name, raw)| {
                let raw = raw.unwrap_or(RawNetwork { external: None, name: None, driver: None, labels: None });
                if let Some(driver) = raw.driver.as_deref()
                    && !matches!(driver, "bridge" | "overlay")
                {
                    return Err(format!("network {name}: driver {driver} is not supported (bridge, overlay)"));
                }
                Ok((
                    name,
                    Network { external: truthy(raw.external.as_ref()), name: raw.name, labels: key_values(raw.labels) },
                ))
            })
            .collect::<Result<_, String>>()?;
        let volumes: BTreeMap<String, Volume> = self
            .volumes
            .into_iter()
            .map(|(name, raw)| {
                let raw =
                    raw.unwrap_or(RawVolume { external: None, name: None, driver: None, labels: None, keep: false });
                if let Some(driver) = raw.driver.as_deref()
                    && driver != "local"
                {
                    return Err(format!("volume {name}: driver {driver} is not supported (local)"));
                }
                Ok((
                    name,
                    Volume {
                        external: truthy(raw.external.as_ref()),
                        name: raw.name,
                        keep: raw.keep,
                        labels: key_values(raw.labels),
                    },
                ))
            })
            .collect::<Result<_, String>>()?;

        let mut services = BTreeMap::new();
        for (name, raw) in self.services {
            let service = raw.check(&name, policy, &networks, &volumes)?;
            services.insert(name, service);
        }
        for (name, service) in &services {
            for dependency in service.depends_on.keys() {
                if !services.contains_key(dependency) {
                    return Err(format!("service {name} depends on {dependency}, which the manifest does not declare"));
                }
            }
        }
        let start_order = start_order(&services)?;
        let credentials = self
            .credentials
            .into_iter()
            .map(|(key, raw)| match raw {
                RawCredential::Literal(value) => Ok((key, CredentialSource::Literal(value))),
                RawCredential::Reference { service, env } => {
                    if !services.contains_key(&service) {
                        return Err(format!("x-esm-credentials.{key}: no service {service}"));
                    }
                    Ok((key, CredentialSource::Environment { service, variable: env }))
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Compose { services, networks, volumes, credentials, start_order })
    }
}

impl RawService {
    fn check(
        self,
        name: &str,
        policy: Policy,
        networks: &BTreeMap<String, Network>,
        volumes: &BTreeMap<String, Volume>,
    ) -> Result<Service, String> {
        let at = |what: &str| format!("service {name}: {what}");
        refuse_unknown(&format!("service {name}"), &self.extensions)?;
        let image = self.image.filter(|i| !i.trim().is_empty()).ok_or_else(|| at("image is required"))?;
        let power = |what: &str| {
            if policy.allow_privileged {
                Ok(())
            } else {
                Err(at(&format!("{what} is refused (the operator can allow it with ESM_DOCKER_ALLOW_PRIVILEGED)")))
            }
        };
        if self.privileged {
            power("privileged")?;
        }
        if !self.cap_add.is_empty() {
            power("cap_add")?;
        }
        if !self.devices.is_empty() {
            power("devices")?;
        }
        let pid_host = match self.pid.as_deref() {
            None => false,
            Some("host") => {
                power("pid: host")?;
                true
            }
            Some(other) => return Err(at(&format!("pid: {other} is not supported"))),
        };
        let host_network = match self.network_mode.as_deref() {
            None | Some("bridge") => false,
            Some("host") => {
                power("network_mode: host")?;
                true
            }
            Some(other) => {
                return Err(at(&format!("network_mode: {other} is not supported (bridge, host)")));
            }
        };
        let ports = self.ports.into_iter().map(|p| parse_port(p).map_err(|e| at(&e))).collect::<Result<_, _>>()?;
        let expose =
            self.expose.into_iter().map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string())).collect();
        let mut mounts = Vec::new();
        for raw in self.volumes {
            let mount = parse_mount(raw).map_err(|e| at(&e))?;
            match &mount.source {
                MountSource::Bind(path) if !policy.allow_bind_mounts => {
                    return Err(at(&format!(
                        "bind mount of host path {path} is refused (the operator can allow it with ESM_DOCKER_ALLOW_BIND_MOUNTS)"
                    )));
                }
                MountSource::Volume(volume) if !volumes.contains_key(volume) => {
                    return Err(at(&format!("volume {volume} is not declared under the top-level volumes")));
                }
                _ => {}
            }
            mounts.push(mount);
        }
        let service_networks: BTreeMap<String, Vec<String>> = match self.networks {
            None => BTreeMap::new(),
            Some(RawServiceNetworks::List(list)) => list.into_iter().map(|n| (n, Vec::new())).collect(),
            Some(RawServiceNetworks::Map(map)) => {
                map.into_iter().map(|(n, raw)| (n, raw.map(|r| r.aliases).unwrap_or_default())).collect()
            }
        };
        for network in service_networks.keys() {
            if network != "default" && !networks.contains_key(network) {
                return Err(at(&format!("network {network} is not declared under the top-level networks")));
            }
        }
        let depends_on = match self.depends_on {
            None => BTreeMap::new(),
            Some(RawDependsOn::List(list)) => list.into_iter().map(|d| (d, DependsOn::Started)).collect(),
            Some(RawDependsOn::Map(map)) => map
                .into_iter()
                .map(|(d, raw)| match raw.condition.as_deref() {
                    None | Some("service_started") => Ok((d, DependsOn::Started)),
                    Some("service_healthy") => Ok((d, DependsOn::Healthy)),
                    Some(other) => Err(at(&format!("depends_on condition {other} is not supported"))),
                })
                .collect::<Result<_, _>>()?,
        };
        let healthcheck = match self.healthcheck {
            None => None,
            Some(raw) if raw.disable => Some(Healthcheck {
                test: vec!["NONE".into()],
                interval: None,
                timeout: None,
                retries: None,
                start_period: None,
            }),
            Some(raw) => Some(Healthcheck {
                test: match raw.test {
                    None => return Err(at("healthcheck.test is required")),
                    Some(StringOrList::String(s)) => vec!["CMD-SHELL".into(), s],
                    Some(StringOrList::List(list)) => strings(list),
                },
                interval: raw.interval.as_deref().map(parse_duration).transpose().map_err(|e| at(&e))?,
                timeout: raw.timeout.as_deref().map(parse_duration).transpose().map_err(|e| at(&e))?,
                retries: raw.retries,
                start_period: raw.start_period.as_deref().map(parse_duration).transpose().map_err(|e| at(&e))?,
            }),
        };
        if let Some(restart) = &self.restart {
            let base = restart.split(':').next().unwrap_or_default();
            if !matches!(base, "no" | "always" | "on-failure" | "unless-stopped") {
                return Err(at(&format!(
                    "restart: {restart} is not supported (no, always, on-failure[:N], unless-stopped)"
                )));
            }
        }
        let limits = self.deploy.as_ref().and_then(|d| d.resources.as_ref()).and_then(|r| r.limits.as_ref());
        let memory = self.mem_limit.as_ref().or(limits.and_then(|l| l.memory.as_ref()));
        let cpus = self.cpus.as_ref().or(limits.and_then(|l| l.cpus.as_ref()));
        Ok(Service {
            image,
            command: self.command.map(words),
            entrypoint: self.entrypoint.map(words),
            environment: key_values(self.environment),
            ports,
            expose,
            volumes: mounts,
            networks: service_networks,
            depends_on,
            labels: key_values(self.labels),
            healthcheck,
            restart: self.restart,
            hostname: self.hostname,
            container_name: self.container_name,
            working_dir: self.working_dir,
            user: self.user.map(|u| u.as_str().map(str::to_owned).unwrap_or_else(|| u.to_string())),
            memory_bytes: memory.map(parse_bytes).transpose().map_err(|e| at(&e))?,
            nano_cpus: cpus.map(parse_cpus).transpose().map_err(|e| at(&e))?,
            replicas: self.deploy.and_then(|d| d.replicas),
            privileged: self.privileged,
            cap_add: self.cap_add,
            pid_host,
            host_network,
            devices: self.devices,
        })
    }
}

/// Extension keys (`x-...`) are allowed and ignored; any other unknown key is refused.
fn refuse_unknown(place: &str, extra: &BTreeMap<String, Value>) -> Result<(), String> {
    let unknown: Vec<&str> = extra.keys().map(String::as_str).filter(|k| !k.starts_with("x-")).collect();
    if unknown.is_empty() { Ok(()) } else { Err(format!("{place}: unsupported key(s): {}", unknown.join(", "))) }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        // Compose 3.3's `external: {name: x}` form.
        Some(Value::Object(_)) => true,
        _ => false,
    }
}

fn strings(list: Vec<Value>) -> Vec<String> {
    list.into_iter().map(|v| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())).collect()
}

/// A command as a list: a string is split on whitespace (no shell), like compose does
/// for the simple cases.
fn words(value: StringOrList) -> Vec<String> {
    match value {
        StringOrList::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        StringOrList::List(list) => strings(list),
    }
}

fn key_values(value: Option<ListOrMap>) -> BTreeMap<String, String> {
    match value {
        None => BTreeMap::new(),
        Some(ListOrMap::List(list)) => list
            .into_iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item, String::new()),
            })
            .collect(),
        Some(ListOrMap::Map(map)) => map
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                };
                (k, text)
            })
            .collect(),
    }
}

/// `"8080"`, `"8080:80"`, `"127.0.0.1:8080:80"`, `"127.0.0.1::80"`, `"53:53/udp"`, `8080`,
/// or the long form.
fn parse_port(raw: RawPort) -> Result<Port, String> {
    match raw {
        RawPort::Long(long) => {
            if let Some(mode) = long.mode.as_deref()
                && !matches!(mode, "host" | "ingress")
            {
                return Err(format!("port mode {mode} is not supported"));
            }
            let published = match long.published {
                None => None,
                Some(Value::Number(n)) => Some(port_number(&n.to_string())?),
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(port_number(&s)?),
                Some(other) => return Err(format!("ports: invalid published {other}")),
            };
            Ok(Port {
                target: long.target,
                published,
                protocol: protocol(long.protocol.as_deref())?,
                host_ip: long.host_ip,
                mode: long.mode,
            })
        }
        RawPort::Short(value) => {
            let text = match &value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => return Err(format!("ports: invalid entry {other}")),
            };
            let (spec, proto) = match text.split_once('/') {
                Some((spec, proto)) => (spec, Some(proto)),
                None => (text.as_str(), None),
            };
            let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
            let (host_ip, published, target) = match parts.as_slice() {
                [target] => (None, None, *target),
                [target, published] => (None, Some(*published), *target),
                [target, published, ip] => (Some(*ip), Some(*published), *target),
                _ => return Err(format!("ports: invalid entry {text:?}")),
            };
            if target.contains('-') {
                return Err(format!("ports: ranges are not supported ({text:?})"));
            }
            Ok(Port {
                target: port_number(target)?,
                published: published.filter(|p| !p.is_empty()).map(port_number).transpose()?,
                protocol: protocol(proto)?,
                host_ip: host_ip.filter(|ip| !ip.is_empty()).map(|ip| ip.trim_matches(['[', ']']).to_owned()),
                mode: None,
            })
        }
    }
}

fn port_number(text: &str) -> Result<u16, String> {
    text.trim().parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("ports: {text:?} is not a port number"))
}

fn protocol(proto: Option<&str>) -> Result<String, String> {
    match proto.unwrap_or("tcp") {
        p @ ("tcp" | "udp") => Ok(p.to_owned()),
        other => Err(format!("ports: protocol {other} is not supported (tcp, udp)")),
    }
}

/// `"data:/var/lib/x"`, `"data:/var/lib/x:ro"`, `"/var/lib/x"` (anonymous),
/// `"./dir:/x"` or `"/host:/x"` (bind), or the long form.
fn parse_mount(raw: RawMount) -> Result<Mount, String> {
    match raw {
        RawMount::Long(long) => {
            let source = match (long.kind.as_str(), long.source) {
                ("volume", Some(s)) => MountSource::Volume(s),
                ("volume", None) => MountSource::Anonymous,
                ("bind", Some(s)) => MountSource::Bind(s),
                (kind, _) => {
                    return Err(format!("volumes: type {kind} needs a source, or is not supported (volume, bind)"));
                }
            };
            Ok(Mount { source, target: long.target, read_only: long.read_only })
        }
        RawMount::Short(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [target] => (None, *target, None),
                [source, target] => (Some(*source), *target, None),
                [source, target, mode] => (Some(*source), *target, Some(*mode)),
                _ => return Err(format!("volumes: invalid entry {text:?}")),
            };
            let read_only = match mode {
                None | Some("rw") => false,
                Some("ro") => true,
                Some(other) => {
                    return Err(format!("volumes: mode {other} is not supported (ro, rw)"));
                }
            };
            let source = match source {
                None => MountSource::Anonymous,
                Some(s) if s.starts_with(['/', '.', '~']) => MountSource::Bind(s.to_owned()),
                Some(s) => MountSource::Volume(s.to_owned()),
            };
            if !target.starts_with('/') {
                return Err(format!("volumes: target {target:?} must be an absolute path"));
            }
            Ok(Mount { source, target: target.to_owned(), read_only })
        }
    }
}

/// Compose durations: `"30s"`, `"1m30s"`, `"1h"`, `"500ms"`, `"2us"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (like 30s, 1m30s, 500ms)");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * seconds);
    }
    Ok(total)
}

/// `512m`, `1g`, `1024k`, `1048576`, `"1.5gb"` → bytes.
fn parse_bytes(value: &Value) -> Result<i64, String> {
    let text = match value {
        Value::Number(n) => {
            return n.as_i64().ok_or_else(|| format!("memory {n} is not a byte count"));
        }
        Value::String(s) => s.trim().to_ascii_lowercase(),
        other => return Err(format!("memory {other} is not a size")),
    };
    let digits = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let number: f64 = text[..digits].parse().map_err(|_| format!("memory {text:?} is not a size"))?;
    let factor = match text[digits..].trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("memory {text:?} has an unknown unit (b, k, m, g)")),
    };
    #[allow(clippy::cast_possible_truncation)]
    Ok((number * factor) as i64)
}

/// `0.5`, `"1.5"` → nano CPUs.
fn parse_cpus(value: &Value) -> Result<i64, String> {
    let cpus = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|c: &f64| *c > 0.0)
    .ok_or_else(|| format!("cpus {value} is not a positive number"))?;
    #[allow(clippy::cast_possible_truncation)]
    Ok((cpus * 1e9) as i64)
}

/// A start order that puts dependencies first; a cycle is an error.
fn start_order(services: &BTreeMap<String, Service>) -> Result<Vec<String>, String> {
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    let mut visiting = BTreeSet::new();
    fn visit<'a>(
        name: &'a str,
        services: &'a BTreeMap<String, Service>,
        done: &mut BTreeSet<&'a str>,
        visiting: &mut BTreeSet<&'a str>,
        order: &mut Vec<String>,
    ) -> Result<(), String> {
        if done.contains(name) {
            return Ok(());
        }
        if !visiting.insert(name) {
            return Err(format!("depends_on forms a cycle through service {name}"));
        }
        if let Some(service) = services.get(name) {
            for dependency in service.depends_on.keys() {
                visit(dependency, services, done, visiting, order)?;
            }
        }
        visiting.remove(name);
        done.insert(name);
        order.push(name.to_owned());
        Ok(())
    }
    for name in services.keys() {
        visit(name, services, &mut done, &mut visiting, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Compose, String> {
        Compose::parse(yaml, Policy::default())
    }

    const FULL: &str = r#"
version: "3.8"
x-anything: {ignored: true}
x-esm-credentials:
  user: {service: db, env: DB_USER}
  database: app
services:
  web:
    image: esm-test/busybox:latest
    command: ["httpd", "-f", "-p", "8080"]
    entrypoint: /bin/sh -c
    environment: [MODE=test, EMPTY]
    ports: ["8080", "9000:80", "127.0.0.1:9001:81/udp", {target: 82, published: 9002, protocol: tcp}]
    expose: ["83", 84]
    volumes: ["data:/data:ro", "/anon", {type: volume, source: data, target: /more}]
    networks: {backend: {aliases: [www]}}
    depends_on: {db: {condition: service_healthy}}
    labels: {team: qa}
    healthcheck: {test: ["CMD", "true"], interval: 1m30s, timeout: 5s, retries: 3, start_period: 500ms}
    restart: on-failure:3
    hostname: web
    container_name: the-web
    working_dir: /srv
    user: "1000:1000"
    mem_limit: 256m
    cpus: 0.5
  db:
    image: esm-test/busybox:latest
    environment: {DB_USER: admin, PORT: 5432}
    deploy: {replicas: 2, resources: {limits: {cpus: "1.5", memory: 1g}}}
    networks: [backend]
networks:
  backend:
  shared: {external: true}
volumes:
  data: {x-esm-keep: true}
"#;

    #[test]
    fn every_supported_key_parses() {
        let c = parse(FULL).expect("parses");
        assert_eq!(c.start_order, ["db", "web"]);
        let web = &c.services["web"];
        assert_eq!(web.command.as_deref(), Some(&["httpd".into(), "-f".into(), "-p".into(), "8080".into()][..]));
        assert_eq!(web.entrypoint.as_deref(), Some(&["/bin/sh".into(), "-c".into()][..]));
        assert_eq!(web.environment.get("MODE").map(String::as_str), Some("test"));
        assert_eq!(web.environment.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(web.ports.len(), 4);
        assert_eq!(
            web.ports[0],
            Port { target: 8080, published: None, protocol: "tcp".into(), host_ip: None, mode: None }
        );
        assert_eq!(web.ports[1].published, Some(9000));
        assert_eq!(
            web.ports[2],
            Port {
                target: 81,
                published: Some(9001),
                protocol: "udp".into(),
                host_ip: Some("127.0.0.1".into()),
                mode: None
            }
        );
        assert_eq!(web.ports[3].published, Some(9002));
        assert_eq!(web.expose, ["83", "84"]);
        assert_eq!(
            web.volumes[0],
            Mount { source: MountSource::Volume("data".into()), target: "/data".into(), read_only: true }
        );
        assert_eq!(web.volumes[1].source, MountSource::Anonymous);
        assert_eq!(web.networks["backend"], ["www"]);
        assert_eq!(web.depends_on["db"], DependsOn::Healthy);
        let hc = web.healthcheck.as_ref().expect("healthcheck");
        assert_eq!(hc.interval, Some(Duration::from_secs(90)));
        assert_eq!(hc.start_period, Some(Duration::from_millis(500)));
        assert_eq!(web.memory_bytes, Some(256 * 1024 * 1024));
        assert_eq!(web.nano_cpus, Some(500_000_000));
        assert_eq!(web.user.as_deref(), Some("1000:1000"));
        let db = &c.services["db"];
        assert_eq!(db.environment.get("PORT").map(String::as_str), Some("5432"));
        assert_eq!(db.memory_bytes, Some(1024 * 1024 * 1024));
        assert_eq!(db.nano_cpus, Some(1_500_000_000));
        assert_eq!(db.replicas, Some(2));
        assert!(c.networks["shared"].external);
        assert!(c.volumes["data"].keep);
        assert_eq!(c.credentials["database"], CredentialSource::Literal("app".into()));
        assert_eq!(
            c.credentials["user"],
            CredentialSource::Environment { service: "db".into(), variable: "DB_USER".into() }
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse("services:\n  a:\n    image: x\n    build: .\n").unwrap_err();
        assert!(err.contains("build"), "{err}");
        let err = parse("services:\n  a:\n    image: x\nconfigs: {}\n").unwrap_err();
        assert!(err.contains("configs"), "{err}");
        let err =
            parse("services:\n  a:\n    image: x\n    healthcheck: {test: [CMD, 'true'], every: 1s}\n").unwrap_err();
        assert!(err.contains("every"), "{err}");
    }

    #[test]
    fn host_power_is_refused_unless_allowed() {
        for (key, yaml) in [
            ("privileged", "privileged: true"),
            ("cap_add", "cap_add: [NET_ADMIN]"),
            ("pid: host", "pid: host"),
            ("network_mode: host", "network_mode: host"),
            ("devices", "devices: ['/dev/fuse:/dev/fuse']"),
        ] {
            let manifest = format!("services:\n  a:\n    image: x\n    {yaml}\n");
            let err = parse(&manifest).unwrap_err();
            assert!(err.contains(key) && err.contains("ESM_DOCKER_ALLOW_PRIVILEGED"), "{err}");
            let allowed = Compose::parse(&manifest, Policy { allow_privileged: true, allow_bind_mounts: false });
            assert!(allowed.is_ok(), "{key}: {allowed:?}");
        }
    }

    #[test]
    fn bind_mounts_are_refused_unless_allowed() {
        let manifest = "services:\n  a:\n    image: x\n    volumes: ['/etc:/host-etc']\n";
        let err = parse(manifest).unwrap_err();
        assert!(err.contains("/etc") && err.contains("ESM_DOCKER_ALLOW_BIND_MOUNTS"), "{err}");
        let policy = Policy { allow_bind_mounts: true, allow_privileged: false };
        assert!(Compose::parse(manifest, policy).is_ok());
    }

    #[test]
    fn references_must_resolve() {
        assert!(parse("services:\n  a:\n    image: x\n    depends_on: [b]\n").unwrap_err().contains("b"));
        assert!(parse("services:\n  a:\n    image: x\n    volumes: ['v:/v']\n").unwrap_err().contains("volume v"));
        assert!(parse("services:\n  a:\n    image: x\n    networks: [n]\n").unwrap_err().contains("network n"));
        let cycle = "services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n";
        assert!(parse(cycle).unwrap_err().contains("cycle"));
        assert!(parse("services:\n  a: {command: x}\n").unwrap_err().contains("image is required"));
        assert!(parse("services: {}\n").unwrap_err().contains("no services"));
        assert!(parse("version: '1'\nservices:\n  a: {image: x}\n").unwrap_err().contains("version"));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse("services:\n  a: {image: x, ports: ['99999']}\n").is_err());
        assert!(parse("services:\n  a: {image: x, ports: ['80/sctp']}\n").is_err());
        assert!(parse("services:\n  a: {image: x, mem_limit: 5q}\n").is_err());
        assert!(parse("services:\n  a: {image: x, restart: sometimes}\n").is_err());
        assert!(parse("services:\n  a: {image: x, healthcheck: {test: [CMD, 'true'], interval: soon}}\n").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
    }
}
