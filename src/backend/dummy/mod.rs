//! The dummy backend: deploys nothing, but behaves as its manifest tells it to.
//!
//! It remembers the instances it pretends to run (provisioned, not yet deprovisioned)
//! as an engine keeps labelled containers, so reconciliation and the backend
//! conformance suite see it as they see a real backend. The memory is per process: after
//! a restart the dummy runs nothing, which is the truth.
//!
//! A dummy manifest is any YAML document. If it is a docker-compose-like mapping, the
//! dummy reports its `services` as if they ran, so clients that read instance details
//! (the ElasTest platform reads `<container>_Ip`) can be exercised without Docker. A
//! top-level `x-esm-dummy` key scripts its behaviour, so tests can cover every path:
//!
//! ```yaml
//! x-esm-dummy:
//!   mode: either        # sync | async | either (default): how operations run
//!   delay_ms: 200       # how long each operation takes (default 0)
//!   hold: [provision]   # operations that wait until a test releases them (`Holds`;
//!                       # builds with the test-support feature only)
//!   fail: [provision]   # operations that fail: provision, update, deprovision, bind, unbind
//!   requires_app: true  # bind needs an app_guid (default false)
//!   dashboard_url: http://dash.example/x   # the instances' dashboard
//!   call_log: /tmp/calls.jsonl   # one JSON line per finished call (test-support only)
//!   observe: false      # report no components for liveness (default: each service,
//!                       # or one `main`, up unless a test scripts it otherwise
//!                       # through `LivenessScript`)
//!   pool: false         # refuse a warm pool, as a backend does for a deployment
//!                       # that cannot be made twice ahead (default: allowed)
//! ```
//!
//! `mode` and `delay_ms` also take one value per operation, so a conformance run can
//! match any broker's profile (operations left out keep the default):
//!
//! ```yaml
//! x-esm-dummy:
//!   mode: {provision: async, deprovision: async, bind: sync, unbind: sync}
//!   delay_ms: {provision: 500}
//! services:
//!   web:
//!     image: nginx
//!     environment: {MODE: test}
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Map, Value, json};

mod holds;
mod liveness;
mod parsed;
mod ports;

pub use holds::Holds;
pub use liveness::LivenessScript;

use super::{Backend, BackendError, BindOutput, Deployment, Execution, Info};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::manifest::Manifest;
use crate::domain::operation::{OperationKind, OperationLog};
use crate::domain::port::PortWant;
use crate::domain::resource::Holding;
use crate::yaml;

/// The dummy backend.
#[derive(Debug, Default)]
pub struct DummyBackend {
    /// What reading a manifest may cost (the same limits as every manifest).
    limits: yaml::Limits,
    /// The operations scripts hold, and their releases.
    holds: Arc<Holds>,
    /// The instances it pretends to run, with the host ports they publish, for `held`.
    /// A std mutex: never held across an `.await`.
    deployed: Mutex<BTreeMap<String, Vec<(u16, String)>>>,
    /// What it reports of its instances' liveness.
    liveness: Arc<LivenessScript>,
    /// The host address its pretend deployments publish on, if any: a port another
    /// process holds there is one the engine would refuse, so the dummy says so.
    publish_address: Option<IpAddr>,
    /// Manifests parsed lately.
    parsed: parsed::Parsed,
}

/// A dummy manifest: the script and the services it pretends to run.
#[derive(Debug, Default, Deserialize)]
struct DummyManifest {
    #[serde(rename = "x-esm-dummy", default)]
    script: Script,
    #[serde(default)]
    services: BTreeMap<String, FakeService>,
}

/// How the dummy behaves.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    #[serde(default)]
    mode: PerOperation<Mode>,
    #[serde(default)]
    delay_ms: PerOperation<u64>,
    #[serde(default)]
    fail: Vec<OperationKind>,
    #[serde(default)]
    hold: Vec<OperationKind>,
    #[serde(default)]
    requires_app: bool,
    #[serde(default)]
    dashboard_url: Option<String>,
    /// A file each finished call appends one line to (`CallLine`), so a test can count
    /// backend calls across esm processes sharing one store, kill -9 included: the
    /// dummy's own memory is per process and dies with it.
    #[serde(default)]
    call_log: Option<std::path::PathBuf>,
    /// Whether the dummy reports its instances' components for liveness (default
    /// true); without, only the instances' own reports count.
    #[serde(default)]
    observe: Option<bool>,
    /// Whether the plan may have a warm pool (default true).
    #[serde(default)]
    pool: Option<bool>,
}

/// One line of a `call_log`: which call finished, on what, for which operation, in
/// which process.
#[derive(Debug, serde::Serialize)]
struct CallLine<'a> {
    kind: OperationKind,
    /// The instance id; the binding id for bind and unbind.
    id: &'a str,
    /// The operation the call ran for (the record's running one), when there is one.
    op: Option<&'a str>,
    /// Whether the call succeeded (`fail:` makes it fail).
    ok: bool,
    pid: u32,
    /// Unix time in milliseconds, from the system clock.
    at_ms: u128,
}

/// One value for every operation, or one per operation.
#[derive(Debug, Clone)]
enum PerOperation<T> {
    All(T),
    Each(BTreeMap<OperationKind, T>),
}

impl<T: Default> Default for PerOperation<T> {
    fn default() -> Self {
        Self::All(T::default())
    }
}

impl<T: Copy + Default> PerOperation<T> {
    fn of(&self, kind: OperationKind) -> T {
        match self {
            Self::All(value) => *value,
            Self::Each(values) => values.get(&kind).copied().unwrap_or_default(),
        }
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for PerOperation<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read as JSON first, so each form reports its own error (an unknown
        // operation, an unknown mode) instead of "matches no variant".
        let value = Value::deserialize(deserializer)?;
        let parsed = if value.is_object() {
            serde_json::from_value(value).map(Self::Each)
        } else {
            serde_json::from_value(value).map(Self::All)
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Sync,
    Async,
    #[default]
    Either,
}

/// The few compose keys the dummy reports back.
#[derive(Debug, Default, Deserialize)]
struct FakeService {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    container_name: Option<String>,
    #[serde(default)]
    command: Option<Value>,
    #[serde(default)]
    environment: Option<Value>,
    /// Published ports (`ports.rs`), reported on the host ports esm leased.
    #[serde(default)]
    ports: Vec<Value>,
    /// A CPU limit, as compose writes it: what placement counts (`demand`).
    #[serde(default)]
    cpus: Option<Value>,
    /// A memory limit, as compose writes it (`512m`).
    #[serde(default)]
    mem_limit: Option<Value>,
}

impl DummyBackend {
    /// A dummy backend with the default manifest limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A dummy backend reading manifests within `limits`.
    pub fn with_limits(limits: yaml::Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    /// The same, publishing (as far as host ports go) on `address`.
    pub fn publishing_on(self, address: IpAddr) -> Self {
        Self { publish_address: Some(address), ..self }
    }

    /// The instances it pretends to run. Poisoning is ignored: an insert or remove is
    /// never left half-done.
    fn deployed(&self) -> MutexGuard<'_, BTreeMap<String, Vec<(u16, String)>>> {
        self.deployed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where tests script failures and recoveries of instances' components.
    pub fn liveness(&self) -> Arc<LivenessScript> {
        Arc::clone(&self.liveness)
    }

    /// Where tests release held operations.
    pub fn holds(&self) -> Arc<Holds> {
        Arc::clone(&self.holds)
    }

    fn parse(&self, manifest: &Manifest) -> Result<Arc<DummyManifest>, String> {
        self.parsed.get_or(&manifest.manifest_content, || self.parse_now(manifest))
    }

    fn parse_now(&self, manifest: &Manifest) -> Result<DummyManifest, String> {
        let doc = yaml::load(&manifest.manifest_content, &self.limits)
            .map_err(|e| format!("manifest_content is not valid YAML: {e}"))?;
        if !doc.is_object() {
            // Plain text or a list: nothing to run, default behaviour.
            return Ok(DummyManifest::default());
        }
        let parsed: DummyManifest = serde_path_to_error::deserialize(doc)
            .map_err(|e| format!("manifest_content: {}: {}", e.path(), e.inner()))?;
        // Only a test can release a held operation: a build for production refuses the
        // key, so no registered manifest can make an operation wait forever.
        if !cfg!(feature = "test-support") && !parsed.script.hold.is_empty() {
            return Err("x-esm-dummy.hold is for tests; this esm build does not take it".into());
        }
        ports::wants(&parsed.services)?;
        demand(&parsed.services)?;
        if let Some(url) = &parsed.script.dashboard_url {
            super::check_dashboard_url(url).map_err(|e| format!("x-esm-dummy.{e}"))?;
        }
        // Nor may a manifest name a file for esm to write to.
        if !cfg!(feature = "test-support") && parsed.script.call_log.is_some() {
            return Err("x-esm-dummy.call_log is for tests; this esm build does not take it".into());
        }
        Ok(parsed)
    }

    /// The parsed manifest; registration already checked it, so a failure here means
    /// the stored manifest changed under us.
    fn load(&self, manifest: &Manifest) -> Result<Arc<DummyManifest>, BackendError> {
        self.parse(manifest).map_err(BackendError::new)
    }

    /// Plays one scripted operation on `id` for operation `op`: wait (held, then
    /// delayed), fail if told to, and log the call if told to.
    async fn play(&self, script: &Script, kind: OperationKind, id: &str, op: Option<&str>) -> Result<(), BackendError> {
        let result = self.act(script, kind, id).await;
        if let Some(path) = &script.call_log {
            let at_ms = std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_millis());
            let line = CallLine { kind, id, op, ok: result.is_ok(), pid: std::process::id(), at_ms };
            append_line(path, &line).map_err(|e| BackendError::new(format!("call_log {}: {e}", path.display())))?;
        }
        result
    }

    async fn act(&self, script: &Script, kind: OperationKind, id: &str) -> Result<(), BackendError> {
        if script.hold.contains(&kind) {
            self.holds.wait(kind, id).await;
        }
        let delay = script.delay_ms.of(kind);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if script.fail.contains(&kind) {
            let mut err = BackendError::new(format!("the dummy backend was told to fail {}", kind.as_str()));
            match kind {
                OperationKind::Update => {
                    err.instance_usable = Some(true);
                    err.update_repeatable = Some(true);
                }
                OperationKind::Deprovision => err.instance_usable = Some(true),
                _ => {}
            }
            return Err(err);
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for DummyBackend {
    fn name(&self) -> &'static str {
        "dummy"
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        &["dummy"]
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        self.parse(manifest).map(|_| ())
    }

    fn execution(&self, manifest: &Manifest, kind: OperationKind) -> Execution {
        match self.parse(manifest).map(|m| m.script.mode.of(kind)) {
            Ok(Mode::Sync) => Execution::Synchronous,
            Ok(Mode::Async) => Execution::Asynchronous,
            Ok(Mode::Either) | Err(_) => Execution::Either,
        }
    }

    fn requires_app(&self, manifest: &Manifest) -> bool {
        self.parse(manifest).is_ok_and(|m| m.script.requires_app)
    }

    async fn host_ports(&self, manifest: &Manifest) -> Result<Vec<PortWant>, BackendError> {
        ports::wants(&self.load(manifest)?.services).map_err(BackendError::new)
    }

    async fn demand(&self, manifest: &Manifest) -> Result<super::Demand, BackendError> {
        demand(&self.load(manifest)?.services).map_err(BackendError::new)
    }

    fn host_port_held_elsewhere(&self, protocol: &str, port: u16) -> bool {
        self.publish_address.is_some_and(|address| super::host_port::held_elsewhere(address, protocol, port))
    }

    async fn poolable(&self, manifest: &Manifest) -> Result<(), String> {
        match self.parse(manifest)?.script.pool {
            Some(false) => Err("its dummy manifest says pool: false".into()),
            _ => Ok(()),
        }
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let parsed = self.load(manifest)?;
        self.play(&parsed.script, OperationKind::Provision, &instance.id, running(&instance.operations)).await?;
        self.deployed().insert(instance.id.clone(), published(instance));
        self.liveness.deployed(&instance.id);
        let containers: Vec<String> =
            parsed.services.iter().map(|(name, svc)| container_name(&instance.id, name, svc)).collect();
        let mut details = Map::new();
        details.insert("containers".into(), json!(containers));
        details.insert("services".into(), json!(parsed.services.keys().collect::<Vec<_>>()));
        if parsed.script.observe == Some(false) {
            details.insert(liveness::NOT_OBSERVED.into(), json!(true));
        }
        Ok(Deployment { details })
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let parsed = self.load(manifest)?;
        self.play(&parsed.script, OperationKind::Update, &instance.id, running(&instance.operations)).await?;
        self.deployed().insert(instance.id.clone(), published(instance));
        Ok(Deployment { details: instance.deployment.clone() })
    }

    fn dashboard_url(&self, _instance: &ServiceInstance, manifest: &Manifest) -> Option<String> {
        self.parse(manifest).ok()?.script.dashboard_url.clone()
    }

    async fn deprovision(&self, instance: &ServiceInstance, manifest: Option<&Manifest>) -> Result<(), BackendError> {
        // Without its manifest there is no script to play: the instance just goes.
        if let Some(manifest) = manifest {
            let parsed = self.load(manifest)?;
            self.play(&parsed.script, OperationKind::Deprovision, &instance.id, running(&instance.operations)).await?;
        }
        self.deployed().remove(&instance.id);
        self.liveness.removed(&instance.id);
        Ok(())
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        let parsed = self.load(manifest)?;
        self.play(&parsed.script, OperationKind::Bind, &binding.id, running(&binding.operations)).await?;
        Ok(BindOutput {
            credentials: json!({
                "instance_id": instance.id,
                "username": format!("user-{}", binding.id),
                "password": uuid::Uuid::new_v4().simple().to_string(),
            }),
            endpoints: None,
        })
    }

    async fn unbind(&self, _: &ServiceInstance, binding: &Binding, manifest: &Manifest) -> Result<(), BackendError> {
        let parsed = self.load(manifest)?;
        self.play(&parsed.script, OperationKind::Unbind, &binding.id, running(&binding.operations)).await
    }

    async fn observe(&self, instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        self.liveness.observe(instance)
    }

    fn changes(&self) -> Option<BoxStream<'static, String>> {
        Some(self.liveness.changes())
    }

    async fn info(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Info, BackendError> {
        let parsed = self.load(manifest)?;
        let mut info = Map::new();
        let mut containers = Vec::new();
        for (name, svc) in &parsed.services {
            let container = container_name(&instance.id, name, svc);
            containers.push(json!({"service": name, "container": container, "state": "running",
                                   "image": svc.image, "ip": "127.0.0.1", "ports": []}));
            let mut put = |key: &str, value: Value| {
                info.insert(format!("{container}_{key}"), value);
            };
            put("state", json!("Up"));
            if let Some(image) = &svc.image {
                put("image_name", json!(image));
            }
            if let Some(cmd) = &svc.command {
                put("cmd", json!(command_line(cmd)));
            }
            // The dummy runs nothing, so it reports the loopback address.
            put("Ip", json!("127.0.0.1"));
            let published = ports::of_service(name, svc).unwrap_or_default();
            for want in published {
                let port = want.fixed.or_else(|| instance.host_ports.get(&want.key()).copied());
                put(&format!("{}/{}/HostPort", want.target, want.protocol), json!(port.map(|p| p.to_string())));
            }
            // Like the original, provision parameters are injected as environment variables.
            for (var, value) in environment(svc.environment.as_ref(), instance.parameters.as_ref()) {
                put(&format!("environment_{var}"), json!(value));
            }
        }
        Ok(Info { flat: info, containers, problem: None })
    }

    /// A `deployment` per instance, and the host ports it was given. Asked about one
    /// instance this process never saw, it holds it (as its liveness says it runs:
    /// containers outlive an esm restart); the full listing cannot know those.
    async fn held(&self, owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        let deployed = self.deployed();
        if let Some(owner) = owner.filter(|o| !deployed.contains_key(*o) && !self.liveness.was_removed(o)) {
            return Ok(vec![Holding::new("deployment", owner, owner)]);
        }
        // One owner's is one lookup, not a walk of every deployment.
        let only = owner.map_or((Bound::Unbounded, Bound::Unbounded), |o| (Bound::Included(o), Bound::Included(o)));
        let mut held = Vec::new();
        for (id, ports) in deployed.range::<str, _>(only) {
            held.push(Holding::new("deployment", id.clone(), id.clone()));
            for (port, protocol) in ports {
                held.push(Holding::port(Some("127.0.0.1".into()), *port, protocol, id.clone()));
            }
        }
        Ok(held)
    }

    /// A page at a time from its map, as an engine that pages would answer.
    fn listing(&self) -> BoxStream<'_, Result<Vec<Holding>, BackendError>> {
        Box::pin(futures_util::stream::unfold(Some(None::<String>), move |after| async move {
            let after = after?;
            let deployed = self.deployed();
            let start = after.as_ref().map_or(Bound::Unbounded, |a| Bound::Excluded(a.clone()));
            let page: Vec<Holding> = deployed
                .range((start, Bound::Unbounded))
                .take(super::LISTING_PAGE)
                .flat_map(|(id, ports)| {
                    let deployment = Holding::new("deployment", id.clone(), id.clone());
                    let ports = ports
                        .iter()
                        .map(|(port, protocol)| Holding::port(Some("127.0.0.1".into()), *port, protocol, id.clone()));
                    std::iter::once(deployment).chain(ports)
                })
                .collect();
            drop(deployed);
            let last = page.last().map(|h| h.owner.clone());
            last.map(|last| (Ok(page), Some(Some(last))))
        }))
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        self.deployed().remove(instance_id);
        self.liveness.removed(instance_id);
        Ok(())
    }

    async fn probe(&self) -> Result<String, BackendError> {
        Ok("the dummy backend is always ready".into())
    }
}

/// What the services' limits add up to, as compose counts them (one container each).
fn demand(services: &BTreeMap<String, FakeService>) -> Result<super::Demand, String> {
    let mut demand = super::Demand::default();
    for service in services.values() {
        if let Some(cpus) = &service.cpus {
            let nano = u64::try_from(crate::manifest::cpus_of(cpus)?).unwrap_or(0);
            demand.cpu_millis = demand.cpu_millis.saturating_add(nano.div_ceil(1_000_000));
        }
        if let Some(memory) = &service.mem_limit {
            let bytes = u64::try_from(crate::manifest::bytes_of(memory)?).unwrap_or(0);
            demand.memory_bytes = demand.memory_bytes.saturating_add(bytes);
        }
    }
    Ok(demand)
}

/// The id of the operation a record is running.
fn running(operations: &OperationLog) -> Option<&str> {
    operations.running().map(|op| op.id.as_str())
}

/// Appends `line` as one JSON line with one `write` on a file opened for appending
/// (`O_APPEND`), so lines of several processes never interleave.
/// The host ports an instance's deployment is given, with their protocols.
fn published(instance: &ServiceInstance) -> Vec<(u16, String)> {
    instance.published_ports().map(|(port, protocol)| (port, protocol.to_owned())).collect()
}

fn append_line(path: &std::path::Path, line: &CallLine<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut text = serde_json::to_vec(line).map_err(std::io::Error::other)?;
    text.push(b'\n');
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(&text)
}

/// Compose's container naming without the `_1` suffix, as the original reported it.
fn container_name(instance_id: &str, service: &str, svc: &FakeService) -> String {
    svc.container_name.clone().unwrap_or_else(|| format!("{}_{service}", instance_id.replace('_', "")))
}

fn command_line(cmd: &Value) -> String {
    match cmd {
        Value::Array(parts) => {
            parts.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect::<Vec<_>>().join(" ")
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The service's environment (list or map form) plus the instance parameters.
fn environment(declared: Option<&Value>, parameters: Option<&Value>) -> BTreeMap<String, String> {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let mut env = BTreeMap::new();
    match declared {
        Some(Value::Object(map)) => {
            for (k, v) in map {
                env.insert(k.clone(), if v.is_null() { String::new() } else { text(v) });
            }
        }
        Some(Value::Array(items)) => {
            for item in items.iter().filter_map(Value::as_str) {
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                env.insert(k.to_owned(), v.to_owned());
            }
        }
        _ => {}
    }
    if let Some(Value::Object(params)) = parameters {
        for (k, v) in params {
            env.insert(k.clone(), text(v));
        }
    }
    env
}

#[cfg(test)]
mod tests;
