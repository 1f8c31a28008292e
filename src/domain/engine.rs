//! Engines: the container engines and clusters esm places instances on. Each is one
//! Docker host, one swarm, one Kubernetes cluster (or one dummy, for tests and demos);
//! esm schedules *instances onto engines* and leaves containers to the engine.
//!
//! An engine is declared (the engines file, `PUT /v2/et/engines/{name}`) by an
//! [`EngineSpec`], and its record ([`Engine`]) adds what esm learned: the operator's
//! word on scheduling ([`Schedule`]) and the probes' on its health ([`Health`]). The two
//! give the one [`EngineState`] clients see. The engine the single-engine settings
//! describe (`ESM_BACKENDS`, `DOCKER_HOST`, the kubeconfig) is [`DEFAULT_ENGINE`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::bounded::{EngineName, Label, LabelKey, Locator};
use super::time::Timestamp;

/// The implicit engine of the single-engine settings.
pub const DEFAULT_ENGINE: &str = "default";
/// The most labels an engine (or a plan's placement rule) names.
pub const MAX_LABELS: usize = 32;
/// The largest instance capacity an engine may declare.
pub const MAX_CAPACITY: u32 = 1_000_000;
/// The most engines esm keeps (each is probed, and each replica holds a client).
pub const MAX_ENGINES: usize = 1000;

/// Which backend drives an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// esm's in-process stand-in.
    Dummy,
    /// A Docker engine running compose manifests.
    DockerCompose,
    /// A Docker swarm.
    DockerSwarm,
    /// A Kubernetes cluster.
    Kubernetes,
}

impl EngineKind {
    /// As settings and the API spell it (`docker-compose`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dummy => "dummy",
            Self::DockerCompose => "docker-compose",
            Self::DockerSwarm => "docker-swarm",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// An engine's labels (`zone: a`): at most [`MAX_LABELS`], keys plain, values one line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[schema(value_type = BTreeMap<String, String>)]
pub struct Labels(BTreeMap<LabelKey, Label>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<LabelKey, Label>::deserialize(d)?;
        if map.len() > MAX_LABELS {
            return Err(serde::de::Error::custom(format!("at most {MAX_LABELS} labels (got {})", map.len())));
        }
        Ok(Self(map))
    }
}

impl Labels {
    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v.as_str())
    }

    /// Each label.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels of `pairs`, for tests and the default engine.
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            map.insert(LabelKey::parse(k).map_err(|e| e.to_string())?, Label::parse(v).map_err(|e| e.to_string())?);
        }
        if map.len() > MAX_LABELS {
            return Err(format!("at most {MAX_LABELS} labels"));
        }
        Ok(Self(map))
    }
}

/// How much an engine takes.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// The most instances (and warm pool members) placed on it; absent: no limit.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub instances: Option<u32>,
    /// The CPUs its deployments' declared limits may add up to (`8`, `0.5`; counted
    /// in tenths); absent: not counted.
    #[schema(value_type = Option<f64>, minimum = 0.1, maximum = 1024)]
    pub cpus: Option<super::units::Cpus>,
    /// The memory its deployments' declared limits may add up to (`"64g"`, or bytes;
    /// counted in 256 MiB, answered in bytes); absent: not counted.
    #[schema(value_type = Option<u64>)]
    pub memory: Option<super::units::Memory>,
}

impl Capacity {
    /// Whether it counts CPU or memory (what placement must ask a manifest for).
    pub fn counts_units(&self) -> bool {
        self.cpus.is_some() || self.memory.is_some()
    }
}

/// TLS client files for a `tcp://` Docker endpoint, relative to
/// `ESM_ENGINE_CREDENTIALS_DIR`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The CA certificate the engine's certificate must chain to.
    #[schema(value_type = String)]
    pub ca: Locator,
    /// esm's client certificate.
    #[schema(value_type = String)]
    pub cert: Locator,
    /// Its key.
    #[schema(value_type = String)]
    pub key: Locator,
}

/// How esm reaches an engine. A Docker engine: `docker_host` (`unix://` or `tcp://`,
/// with `tls` for the latter); a Kubernetes cluster: a `kubeconfig` file and its
/// `context`. Files are relative to `ESM_ENGINE_CREDENTIALS_DIR`, never elsewhere.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The Docker engine's address.
    #[schema(value_type = Option<String>, example = "tcp://10.0.0.5:2376")]
    pub docker_host: Option<Locator>,
    /// TLS client files for a `tcp://` address.
    pub tls: Option<TlsFiles>,
    /// The cluster's kubeconfig file.
    #[schema(value_type = Option<String>)]
    pub kubeconfig: Option<Locator>,
    /// The kubeconfig's context to use (its current one when absent).
    #[schema(value_type = Option<String>)]
    pub context: Option<Locator>,
}

/// What an operator declares about an engine (`PUT /v2/et/engines/{name}`, an entry of
/// the engines file).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineSpec {
    /// The backend that drives it.
    pub backend: EngineKind,
    /// What plans' placement rules match (`zone`, `tier`, anything).
    #[serde(default)]
    pub labels: Labels,
    /// How much it takes.
    #[serde(default)]
    pub capacity: Capacity,
    /// How esm reaches it; absent for a dummy engine.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// The host address a Docker engine publishes container ports on (default:
    /// `ESM_PUBLISH_ADDRESS`).
    #[schema(value_type = Option<String>)]
    pub publish_address: Option<IpAddr>,
    /// The host name bindings hand out for its published ports (default: the Docker
    /// host's address, or `ESM_ADVERTISE_HOST`).
    #[schema(value_type = Option<String>)]
    pub advertise_host: Option<Locator>,
}

impl EngineSpec {
    /// Checks what the types cannot: the endpoint fits the backend.
    pub fn check(&self) -> Result<(), String> {
        let endpoint = &self.endpoint;
        let docker = matches!(self.backend, EngineKind::DockerCompose | EngineKind::DockerSwarm);
        if let Some(host) = &endpoint.docker_host {
            if !docker {
                return Err(format!("a {} engine has no docker_host", self.backend.as_str()));
            }
            if !(host.starts_with("unix://") || host.starts_with("tcp://")) {
                return Err("docker_host must be a unix:// or tcp:// address".into());
            }
        }
        if endpoint.tls.is_some() && !endpoint.docker_host.as_deref().is_some_and(|h| h.starts_with("tcp://")) {
            return Err("tls goes with a tcp:// docker_host".into());
        }
        if (endpoint.kubeconfig.is_some() || endpoint.context.is_some()) && self.backend != EngineKind::Kubernetes {
            return Err(format!("a {} engine has no kubeconfig or context", self.backend.as_str()));
        }
        if self.capacity.instances.is_some_and(|n| n > MAX_CAPACITY) {
            return Err(format!("capacity.instances must be at most {MAX_CAPACITY}"));
        }
        if let Some(memory) = self.capacity.memory {
            memory.check()?;
        }
        for file in [endpoint.kubeconfig.as_ref()]
            .into_iter()
            .chain(endpoint.tls.iter().flat_map(|t| [Some(&t.ca), Some(&t.cert), Some(&t.key)]))
            .flatten()
        {
            check_relative(file)?;
        }
        Ok(())
    }
}

/// A credential file name must stay inside the credentials directory: relative, with
/// no `..` and no empty part.
fn check_relative(file: &str) -> Result<(), String> {
    let inside = !file.starts_with('/') && file.split('/').all(|part| !part.is_empty() && part != "..");
    if inside { Ok(()) } else { Err(format!("{file:?} must be a path inside ESM_ENGINE_CREDENTIALS_DIR")) }
}

/// The operator's word on placements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Takes placements.
    #[default]
    Active,
    /// Takes no new placements; what runs there stays.
    Cordoned,
    /// Takes no new placements, and what may move is moved away.
    Draining,
}

/// The probes' word on an engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// It answers (or has not been probed yet).
    #[default]
    Reachable,
    /// It stopped answering.
    Unreachable,
    /// It stopped answering for longer than the repair threshold; an operator
    /// clears it (`uncordon`).
    NeedsRepair,
}

/// An engine's state as clients see it: the most pressing of the operator's word and
/// the probes'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EngineState {
    /// Takes placements.
    Active,
    /// No new placements.
    Cordoned,
    /// No new placements; relocatable instances are moved away.
    Draining,
    /// Does not answer: no placements, its instances' liveness `unknown`.
    Unreachable,
    /// Did not answer for too long: an operator must clear it.
    NeedsRepair,
}

impl EngineState {
    /// Every state, for metrics.
    pub const ALL: [EngineState; 5] =
        [Self::Active, Self::Cordoned, Self::Draining, Self::Unreachable, Self::NeedsRepair];

    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Cordoned => "cordoned",
            Self::Draining => "draining",
            Self::Unreachable => "unreachable",
            Self::NeedsRepair => "needs_repair",
        }
    }
}

/// Where an engine was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The single-engine settings: the [`DEFAULT_ENGINE`].
    Settings,
    /// The engines file (`ESM_ENGINES_FILE`), applied at start-up.
    File,
    /// `PUT /v2/et/engines/{name}`.
    Api,
}

/// An engine's record.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    /// Its name.
    pub name: EngineName,
    /// What the operator declared.
    pub spec: EngineSpec,
    /// The operator's word on placements.
    #[serde(default)]
    pub schedule: Schedule,
    /// The probes' word.
    #[serde(default)]
    pub health: Health,
    /// Since when it has not answered.
    pub unreachable_since: Option<Timestamp>,
    /// Why it did not answer, last time.
    pub problem: Option<String>,
    /// What the last good probe learned (`Docker 20.10.24, swarm with 1 node`).
    pub facts: Option<String>,
    /// Where it was declared.
    pub source: Source,
    /// When it was first declared.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
}

impl Engine {
    /// A newly declared engine, active.
    pub fn new(name: EngineName, spec: EngineSpec, source: Source, now: Timestamp) -> Self {
        Self {
            name,
            spec,
            schedule: Schedule::Active,
            health: Health::Reachable,
            unreachable_since: None,
            problem: None,
            facts: None,
            source,
            created_at: now,
            updated_at: now,
        }
    }

    /// Its state: health first (an unreachable engine takes nothing whatever the
    /// operator said), then the operator's word.
    pub fn state(&self) -> EngineState {
        match (self.health, self.schedule) {
            (Health::NeedsRepair, _) => EngineState::NeedsRepair,
            (Health::Unreachable, _) => EngineState::Unreachable,
            (Health::Reachable, Schedule::Draining) => EngineState::Draining,
            (Health::Reachable, Schedule::Cordoned) => EngineState::Cordoned,
            (Health::Reachable, Schedule::Active) => EngineState::Active,
        }
    }

    /// Whether it is the engine of the single-engine settings.
    pub fn is_default(&self) -> bool {
        self.name.as_str() == DEFAULT_ENGINE
    }
}

/// The engine an instance record names (`None`: the default one, as records written
/// before engines say).
pub fn engine_of(engine: Option<&str>) -> &str {
    engine.unwrap_or(DEFAULT_ENGINE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> Result<EngineSpec, String> {
        let spec: EngineSpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        spec.check()?;
        Ok(spec)
    }

    #[test]
    fn a_spec_reads_with_defaults_and_refuses_what_does_not_fit_its_backend() {
        let s = spec(json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"instances": 10}})).unwrap();
        assert_eq!((s.labels.get("zone"), s.capacity.instances), (Some("a"), Some(10)));
        assert!(spec(json!({"backend": "docker-compose", "endpoint": {"docker_host": "tcp://h:2376"}})).is_ok());
        for bad in [
            json!({"backend": "dummy", "endpoint": {"docker_host": "unix:///x"}}),
            json!({"backend": "docker-compose", "endpoint": {"docker_host": "http://h"}}),
            json!({"backend": "docker-compose", "endpoint": {"docker_host": "unix:///s", "tls": {"ca": "a", "cert": "b", "key": "c"}}}),
            json!({"backend": "kubernetes", "endpoint": {"kubeconfig": "../../etc/shadow"}}),
            json!({"backend": "kubernetes", "endpoint": {"kubeconfig": "/etc/kube"}}),
            json!({"backend": "docker-compose", "capacity": {"instances": 1_000_001}}),
            json!({"backend": "docker-compose", "capacity": {"cpu": 4}}),
            json!({"backend": "podman"}),
            json!({"backend": "dummy", "labels": {"Zone": "a"}}),
            json!({"backend": "dummy", "labels": {"zone": "a\nb"}}),
            json!({"backend": "dummy", "surprise": 1}),
        ] {
            assert!(spec(bad.clone()).is_err(), "{bad}");
        }
        let many: serde_json::Map<_, _> = (0..=MAX_LABELS).map(|n| (format!("k{n}"), json!("v"))).collect();
        assert!(spec(json!({"backend": "dummy", "labels": many})).unwrap_err().contains("at most 32 labels"));
    }

    #[test]
    fn health_outranks_the_operators_word() {
        let name = EngineName::parse("e1").unwrap();
        let mut e =
            Engine::new(name, spec(json!({"backend": "dummy"})).unwrap(), Source::Api, Timestamp::from_millis(0));
        assert_eq!(e.state(), EngineState::Active);
        e.schedule = Schedule::Cordoned;
        assert_eq!(e.state(), EngineState::Cordoned);
        e.health = Health::Unreachable;
        assert_eq!(e.state(), EngineState::Unreachable);
        e.health = Health::NeedsRepair;
        e.schedule = Schedule::Draining;
        assert_eq!(e.state(), EngineState::NeedsRepair);
    }
}
