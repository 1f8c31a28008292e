//! What a compose manifest looks like as YAML: the serde shapes it is read into,
//! before [`super::check`] turns them into the model. Unknown keys are refused
//! (`deny_unknown_fields`, or collected under `extensions` to be named in the error).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub(super) struct RawCompose {
    #[serde(default)]
    pub(super) version: Option<Value>,
    #[serde(default)]
    pub(super) services: BTreeMap<String, RawService>,
    #[serde(default)]
    pub(super) networks: BTreeMap<String, Option<RawNetwork>>,
    #[serde(default)]
    pub(super) volumes: BTreeMap<String, Option<RawVolume>>,
    #[serde(rename = "x-esm-credentials", default)]
    pub(super) credentials: BTreeMap<String, RawCredential>,
    /// Other `x-` extension keys are free-form and ignored, as compose does.
    #[serde(flatten)]
    pub(super) extensions: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawService {
    pub(super) image: Option<String>,
    pub(super) command: Option<StringOrList>,
    pub(super) entrypoint: Option<StringOrList>,
    pub(super) environment: Option<ListOrMap>,
    #[serde(default)]
    pub(super) ports: Vec<RawPort>,
    #[serde(default)]
    pub(super) expose: Vec<Value>,
    #[serde(default)]
    pub(super) volumes: Vec<RawMount>,
    pub(super) networks: Option<RawServiceNetworks>,
    pub(super) depends_on: Option<RawDependsOn>,
    pub(super) labels: Option<ListOrMap>,
    pub(super) healthcheck: Option<RawHealthcheck>,
    pub(super) restart: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) container_name: Option<String>,
    pub(super) working_dir: Option<String>,
    pub(super) user: Option<Value>,
    pub(super) mem_limit: Option<Value>,
    pub(super) cpus: Option<Value>,
    pub(super) deploy: Option<RawDeploy>,
    #[serde(default)]
    pub(super) privileged: bool,
    #[serde(default)]
    pub(super) cap_add: Vec<String>,
    pub(super) pid: Option<String>,
    pub(super) network_mode: Option<String>,
    #[serde(default)]
    pub(super) devices: Vec<String>,
    #[serde(flatten)]
    pub(super) extensions: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    String(String),
    List(Vec<Value>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ListOrMap {
    List(Vec<String>),
    Map(BTreeMap<String, Option<Value>>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawPort {
    // The long form first: `Value` would swallow it.
    Long(RawLongPort),
    Short(Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLongPort {
    pub(super) target: u16,
    pub(super) published: Option<Value>,
    pub(super) protocol: Option<String>,
    pub(super) host_ip: Option<String>,
    pub(super) mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMount {
    Short(String),
    Long(RawLongMount),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLongMount {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) source: Option<String>,
    pub(super) target: String,
    #[serde(default)]
    pub(super) read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<RawServiceNetwork>>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServiceNetwork {
    #[serde(default)]
    pub(super) aliases: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawDependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, RawDependency>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDependency {
    pub(super) condition: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthcheck {
    pub(super) test: Option<StringOrList>,
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) retries: Option<i64>,
    pub(super) start_period: Option<String>,
    #[serde(default)]
    pub(super) disable: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    pub(super) replicas: Option<u64>,
    pub(super) resources: Option<RawResources>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    pub(super) limits: Option<RawLimits>,
    /// Accepted for compatibility; esm sets limits only.
    #[serde(rename = "reservations")]
    pub(super) _reservations: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) cpus: Option<Value>,
    pub(super) memory: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    pub(super) external: Option<Value>,
    pub(super) name: Option<String>,
    pub(super) driver: Option<String>,
    #[serde(default)]
    pub(super) labels: Option<ListOrMap>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVolume {
    #[serde(default)]
    pub(super) external: Option<Value>,
    pub(super) name: Option<String>,
    pub(super) driver: Option<String>,
    #[serde(default)]
    pub(super) labels: Option<ListOrMap>,
    #[serde(rename = "x-esm-keep", default)]
    pub(super) keep: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawCredential {
    Literal(String),
    Reference { service: String, env: String },
}
