//! Engines: the fleet instances are placed on (`domain::engine`). The records and the
//! operator's calls on them (list, get, put, delete, cordon, uncordon, drain) are here;
//! which engine a new instance goes to is `placement.rs`; whether each engine answers
//! is `probes.rs`; moving a draining engine's relocatable instances away is
//! `evacuate.rs`. The backend that drives an instance is always its engine's
//! ([`Engines::backend_of`]): every later operation, binding, liveness look and
//! inventory entry of the instance goes there.
//!
//! The default engine is the single-engine settings' (`ESM_BACKENDS`, `DOCKER_HOST`,
//! the kubeconfig): it exists without a record, and gets one only when an operator
//! labels, limits or cordons it.

mod evacuate;
#[cfg(test)]
mod evacuate_tests;
mod fleet;
mod placement;
mod probes;

pub use fleet::{DummyEngines, EngineFactory, FleetRoom};
pub(in crate::broker) use placement::Placed;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::domain::bounded::EngineName;
use crate::domain::engine::{
    DEFAULT_ENGINE, Engine, EngineKind, EngineSpec, EngineState, Health, MAX_ENGINES, Schedule, Source,
};
use crate::domain::event::Event;
use crate::domain::instance::ServiceInstance;
use crate::domain::units::{MEMORY_UNIT_BYTES, UnitKind};
use crate::error::{OsbError, OsbResult};
use crate::store::{Collection, StoreError, index};
use crate::wire::{EngineView, Used};
use fleet::Snapshot;

service! {
    /// The engines instances are placed on: their records, placement and probes.
    Engines, room: FleetRoom
}

/// How the fleet is run.
#[derive(Clone)]
pub struct FleetSettings {
    /// Builds the backend of a declared engine.
    pub factory: Arc<dyn EngineFactory>,
    /// How often each engine is probed (`ESM_ENGINE_PROBE_INTERVAL`).
    pub probe_interval: Duration,
    /// How long an engine may not answer before it needs repair
    /// (`ESM_ENGINE_REPAIR_AFTER`).
    pub repair_after: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        Self {
            factory: Arc::new(DummyEngines),
            probe_interval: Duration::from_secs(5),
            repair_after: Duration::from_secs(300),
        }
    }
}

impl std::fmt::Debug for FleetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSettings")
            .field("probe_interval", &self.probe_interval)
            .field("repair_after", &self.repair_after)
            .finish_non_exhaustive()
    }
}

/// What an operator changes with `cordon`, `uncordon` and `drain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleChange {
    /// No new placements.
    Cordon,
    /// Placements again; also clears `needs_repair`.
    Uncordon,
    /// No new placements, and what may move is moved.
    Drain,
}

impl ScheduleChange {
    /// What was done, in words.
    fn as_str(self) -> &'static str {
        match self {
            Self::Cordon => "cordoned",
            Self::Uncordon => "uncordoned",
            Self::Drain => "drained",
        }
    }
}

impl Engines<'_> {
    /// Every engine: the default one first, then by name.
    pub async fn list(&self) -> OsbResult<Vec<EngineView>> {
        let engines = self.read_engines().await?;
        let loads = self.read_loads().await?;
        let mut views = Vec::with_capacity(engines.len());
        for engine in &engines {
            views.push(self.shown(engine, &loads).await?);
        }
        Ok(views)
    }

    /// One engine; 404 if there is none of that name.
    pub async fn get(&self, name: &EngineName) -> OsbResult<EngineView> {
        let engine = self.engine(name).await?.ok_or_else(|| no_engine(name))?;
        self.shown(&engine, &self.read_loads().await?).await
    }

    /// [`Engines::view`], with its evacuation's progress while it drains.
    async fn shown(&self, engine: &Engine, loads: &HashMap<String, u64>) -> OsbResult<EngineView> {
        let mut view = self.view(engine, loads);
        #[allow(clippy::cast_precision_loss)]
        let cpus = self.units_used(engine, UnitKind::Cpu).await?.map(|u| u as f64 / 10.0);
        let memory = self.units_used(engine, UnitKind::Memory).await?.map(|u| u * MEMORY_UNIT_BYTES);
        if cpus.is_some() || memory.is_some() {
            view.used = Some(Used { cpus, memory });
        }
        if engine.schedule == Schedule::Draining {
            view.evacuation = Some(self.evacuation(&engine.name).await?);
        }
        Ok(view)
    }

    /// Declares engine `name` (or changes its declaration; its state stays). Whether it
    /// is new, and the engine.
    pub async fn put(&self, name: &EngineName, spec: EngineSpec, source: Source) -> OsbResult<(bool, EngineView)> {
        spec.check().map_err(OsbError::BadRequest)?;
        if !self.runs(spec.backend) {
            return Err(OsbError::Unprocessable(format!(
                "this esm does not run the {} backend (ESM_BACKENDS: {})",
                spec.backend.as_str(),
                self.core.backends.all().iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
            )));
        }
        let is_default = name.as_str() == DEFAULT_ENGINE;
        if is_default && (spec.endpoint != Default::default() || spec.backend != self.default_kind()) {
            return Err(OsbError::Unprocessable(format!(
                "the default engine is reached as the settings say: only its labels and capacity can be set \
                 (backend {})",
                self.default_kind().as_str()
            )));
        }
        let now = self.core.clock().timestamp();
        let mut draft = Engine::new(name.clone(), spec.clone(), source, now);
        if !is_default {
            // Refused now rather than at the first placement: a kubeconfig that is not
            // there, an address the client cannot use.
            let backend = self
                .core
                .settings
                .engines
                .factory
                .build(name, &spec)
                .await
                .map_err(|e| OsbError::Unprocessable(format!("engine {name}: {}", e.message)))?;
            self.room.keep_built(&draft, backend);
        }
        let stored_new = loop {
            let stored = self.core.records.get::<Engine>(name).await?;
            let written = match stored {
                None if is_default => self.core.records.insert(&draft).await.map(|_| false),
                None => {
                    if !is_default
                        && self.core.store().page_ids(Collection::Engines, &all_engines()).await?.len() >= MAX_ENGINES
                    {
                        return Err(OsbError::Unprocessable(format!("at most {MAX_ENGINES} engines")));
                    }
                    self.core.records.insert(&draft).await.map(|_| true)
                }
                Some(current) if current.record.spec == spec => break None,
                Some(current) => {
                    draft = Engine { spec: spec.clone(), updated_at: now, ..current.record };
                    self.core.records.replace(current.version, &draft).await.map(|_| false)
                }
            };
            match written {
                Ok(created) => break Some(created),
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        self.room.invalidate();
        if let Some(created) = stored_new {
            let (from, why) =
                if created { (None, "declared") } else { (Some(draft.state().as_str()), "declaration changed") };
            let how = match source {
                Source::File => "by the engines file",
                Source::Api | Source::Settings => "through the API",
            };
            self.core.events.emit(Event::on_engine(name, from, draft.state().as_str()).because(format!("{why} {how}")));
        }
        Ok((stored_new == Some(true), self.get(name).await?))
    }

    /// Removes engine `name`: only a cordoned or draining one with nothing on it.
    pub async fn delete(&self, name: &EngineName) -> OsbResult<()> {
        if name.as_str() == DEFAULT_ENGINE {
            return Err(OsbError::Unprocessable("the default engine comes from the settings".into()));
        }
        let Some(stored) = self.core.records.get::<Engine>(name).await? else {
            return Err(no_engine(name));
        };
        if stored.record.schedule == Schedule::Active && stored.record.health == Health::Reachable {
            return Err(OsbError::Unprocessable(format!(
                "engine {name} is active: cordon or drain it first, so no placement races the removal"
            )));
        }
        let on_it = index::Query::new([(index::ENGINE, name.as_str())], 1);
        if !self.core.store().page_ids(Collection::Instances, &on_it).await?.is_empty() {
            return Err(OsbError::Unprocessable(format!(
                "engine {name} still holds instances or pool members; drain it, or deprovision them"
            )));
        }
        match self.core.records.delete::<Engine>(name, Some(stored.version)).await {
            Ok(_) => {
                let event = Event::on_engine(name, Some(stored.record.state().as_str()), "removed");
                self.core.events.emit(event.because("removed by an operator"));
            }
            Err(StoreError::Conflict(_)) => {
                return Err(OsbError::ConcurrencyError(format!("engine {name} changed meanwhile; retry")));
            }
            Err(e) => return Err(e.into()),
        }
        self.room.invalidate();
        Ok(())
    }

    /// Cordons, uncordons or drains engine `name`.
    pub async fn change_schedule(&self, name: &EngineName, change: ScheduleChange) -> OsbResult<EngineView> {
        loop {
            let stored = match self.core.records.get::<Engine>(name).await? {
                Some(stored) => Some(stored),
                None if name.as_str() == DEFAULT_ENGINE => None,
                None => return Err(no_engine(name)),
            };
            let (version, mut engine) = match stored {
                Some(s) => (Some(s.version), s.record),
                None => (None, self.default_engine()),
            };
            let before = engine.state();
            engine.schedule = match change {
                ScheduleChange::Cordon => Schedule::Cordoned,
                ScheduleChange::Uncordon => Schedule::Active,
                ScheduleChange::Drain => Schedule::Draining,
            };
            if change == ScheduleChange::Uncordon && engine.health == Health::NeedsRepair {
                // The operator says it is repaired; the next probe says whether it answers.
                engine.health = Health::Unreachable;
                engine.unreachable_since = Some(self.core.clock().timestamp());
            }
            engine.updated_at = self.core.clock().timestamp();
            let written = match version {
                Some(version) => self.core.records.replace(version, &engine).await,
                None => self.core.records.insert(&engine).await,
            };
            match written {
                Ok(_) => {
                    if engine.state() != before {
                        let event = Event::on_engine(name, Some(before.as_str()), engine.state().as_str());
                        self.core.events.emit(event.because(format!("{} by an operator", change.as_str())));
                    }
                    break;
                }
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        self.room.invalidate();
        if change == ScheduleChange::Drain {
            // The first round now, not at the next interval.
            let broker = std::sync::Arc::clone(self.broker);
            self.broker.spawn_task(async move {
                if let Err(e) = broker.engines().evacuate_round().await {
                    tracing::warn!(error = %e, "cannot evacuate the draining engines");
                }
            });
        }
        self.get(name).await
    }

    /// The backend that drives `instance`: its engine's, for its manifest type.
    pub(in crate::broker) async fn backend_of(
        &self,
        instance: &ServiceInstance,
        manifest_type: &str,
    ) -> OsbResult<Arc<dyn Backend>> {
        let by_type = || {
            self.core.backends.get(manifest_type).cloned().ok_or_else(|| {
                OsbError::Internal(format!("no backend for manifest type {manifest_type:?} in this esm"))
            })
        };
        let Some(name) = instance.engine.as_deref().filter(|e| *e != DEFAULT_ENGINE) else {
            return by_type();
        };
        let engine = self.engine_named(name).await?;
        if !self.deploys(&engine, manifest_type) {
            return Err(OsbError::Internal(format!("engine {name} does not deploy manifest type {manifest_type:?}")));
        }
        self.backend_for(&engine).await
    }

    /// Why `instance`'s engine cannot be asked now, if it cannot (its liveness is then
    /// `unknown`, never guessed).
    pub(in crate::broker) async fn unreachable(&self, instance: &ServiceInstance) -> Option<String> {
        let name = instance.engine.as_deref()?;
        let snapshot = self.snapshot().await.ok()?;
        let engine = snapshot.engines.iter().find(|e| e.name.as_str() == name)?;
        matches!(engine.health, Health::Unreachable | Health::NeedsRepair).then(|| format!("engine {name} unreachable"))
    }

    /// Whether engine `name` is being drained (what may move goes elsewhere).
    pub(in crate::broker) async fn draining(&self, name: &str) -> bool {
        let Ok(snapshot) = self.snapshot().await else { return false };
        snapshot.engines.iter().any(|e| e.name.as_str() == name && e.state() == EngineState::Draining)
    }

    /// The backend of every declared engine that answers, by engine name: what
    /// reconciliation covers beside the default engine's backends.
    pub(in crate::broker) async fn reachable_backends(&self) -> OsbResult<Vec<(String, Arc<dyn Backend>)>> {
        let mut backends = Vec::new();
        for engine in self.read_engines().await? {
            if engine.is_default() || engine.health != Health::Reachable {
                continue;
            }
            match self.backend_for(&engine).await {
                Ok(backend) => backends.push((engine.name.to_string(), backend)),
                Err(e) => tracing::debug!(engine = %engine.name, error = %e, "cannot reach the engine to reconcile it"),
            }
        }
        Ok(backends)
    }

    /// How many more instances engine `name` takes (its capacity less what it holds),
    /// as the fleet's copy says; `None` when it has no capacity.
    pub(in crate::broker) async fn free_room(&self, name: &str) -> Option<u64> {
        let snapshot = self.snapshot().await.ok()?;
        let engine = snapshot.engines.iter().find(|e| e.name.as_str() == name)?;
        let used = snapshot.loads.get(name).copied().unwrap_or(0);
        Some(u64::from(engine.spec.capacity.instances?).saturating_sub(used))
    }

    /// The backend built for `engine`, built now if it was not (or its spec changed).
    async fn backend_for(&self, engine: &Engine) -> OsbResult<Arc<dyn Backend>> {
        if let Some(backend) = self.room.built(engine) {
            return Ok(backend);
        }
        let backend = self
            .core
            .settings
            .engines
            .factory
            .build(&engine.name, &engine.spec)
            .await
            .map_err(|e| OsbError::Internal(format!("engine {}: {}", engine.name, e.message)))?;
        self.room.keep_built(engine, Arc::clone(&backend));
        Ok(backend)
    }

    /// A non-default engine's record, from the fresh copy or the store.
    async fn engine_named(&self, name: &str) -> OsbResult<Engine> {
        let snapshot = self.snapshot().await?;
        if let Some(engine) = snapshot.engines.iter().find(|e| e.name.as_str() == name) {
            return Ok(engine.clone());
        }
        let name = EngineName::parse(name).map_err(|e| OsbError::Internal(e.to_string()))?;
        self.core
            .records
            .get::<Engine>(&name)
            .await?
            .map(|v| v.record)
            .ok_or_else(|| OsbError::Internal(format!("engine {name} of this instance is not declared any more")))
    }

    /// An engine by name, the default one included.
    async fn engine(&self, name: &EngineName) -> OsbResult<Option<Engine>> {
        match self.core.records.get::<Engine>(name).await? {
            Some(stored) => Ok(Some(self.as_declared(stored.record))),
            None if name.as_str() == DEFAULT_ENGINE => Ok(Some(self.default_engine())),
            None => Ok(None),
        }
    }

    /// Every engine, read now: the default one first, then by name.
    async fn read_engines(&self) -> OsbResult<Vec<Engine>> {
        let mut engines: Vec<Engine> =
            self.core.records.list::<Engine>().await?.into_iter().map(|v| v.record).collect();
        if !engines.iter().any(Engine::is_default) {
            engines.push(self.default_engine());
        }
        let mut engines: Vec<Engine> = engines.into_iter().map(|e| self.as_declared(e)).collect();
        engines.sort_by(|a, b| (!a.is_default(), &a.name).cmp(&(!b.is_default(), &b.name)));
        Ok(engines)
    }

    /// How many instances and pool members each engine holds, from the index.
    async fn read_loads(&self) -> OsbResult<HashMap<String, u64>> {
        Ok(self.core.store().counts(Collection::Instances, index::ENGINE).await?.into_iter().collect())
    }

    /// The fleet as placement sees it: read again when the copy is older than
    /// [`fleet::FRESH_FOR`].
    async fn snapshot(&self) -> OsbResult<Arc<Snapshot>> {
        if let Some(snapshot) = self.room.fresh_snapshot() {
            return Ok(snapshot);
        }
        let engines = self.read_engines().await?;
        // Loads rank engines only when there is a choice or a limit to respect.
        let needs_loads = engines.len() > 1 || engines.iter().any(|e| e.spec.capacity.instances.is_some());
        let loads = if needs_loads { self.read_loads().await? } else { HashMap::new() };
        Ok(self.room.keep_snapshot(Snapshot { engines, loads }))
    }

    /// The engine of the single-engine settings, as it is without a record.
    fn default_engine(&self) -> Engine {
        let name = EngineName::parse(DEFAULT_ENGINE).unwrap_or_else(|_| unreachable!("a valid name"));
        let spec = EngineSpec {
            backend: self.default_kind(),
            labels: Default::default(),
            capacity: Default::default(),
            endpoint: Default::default(),
            publish_address: None,
            advertise_host: None,
        };
        Engine::new(name, spec, Source::Settings, crate::domain::time::Timestamp::from_millis(0))
    }

    /// A stored record with what the settings decide put back (the default engine's
    /// backend is the settings').
    fn as_declared(&self, mut engine: Engine) -> Engine {
        if engine.is_default() {
            engine.spec.backend = self.default_kind();
            engine.source = Source::Settings;
        }
        engine
    }

    /// The default engine's kind: the first backend `ESM_BACKENDS` runs.
    fn default_kind(&self) -> EngineKind {
        self.core.backends.all().iter().find_map(|b| kind_named(b.name())).unwrap_or(EngineKind::Dummy)
    }

    /// Whether this esm runs backends of `kind`.
    fn runs(&self, kind: EngineKind) -> bool {
        self.core.backends.all().iter().any(|b| b.name() == kind.as_str())
    }

    /// Whether `engine` deploys manifests of `manifest_type`.
    fn deploys(&self, engine: &Engine, manifest_type: &str) -> bool {
        let by_type = self.core.backends.get(manifest_type);
        if engine.is_default() {
            return by_type.is_some();
        }
        by_type.is_some_and(|b| b.name() == engine.spec.backend.as_str())
    }

    /// The manifest types `engine` deploys.
    fn manifest_types(&self, engine: &Engine) -> Vec<String> {
        let types = self.core.backends.types().into_iter();
        types.filter(|t| self.deploys(engine, t)).map(str::to_owned).collect()
    }

    /// `engine` as the API shows it.
    fn view(&self, engine: &Engine, loads: &HashMap<String, u64>) -> EngineView {
        let spec = &engine.spec;
        let probe = self.room.last_probe(&engine.name);
        EngineView {
            name: engine.name.to_string(),
            backend: spec.backend,
            labels: spec.labels.clone(),
            capacity: spec.capacity,
            endpoint: spec.endpoint.clone(),
            publish_address: spec.publish_address,
            advertise_host: spec.advertise_host.as_deref().map(str::to_owned),
            state: engine.state(),
            schedule: engine.schedule,
            health: engine.health,
            manifest_types: self.manifest_types(engine),
            instances: loads.get(engine.name.as_str()).copied().unwrap_or(0),
            problem: engine.problem.clone(),
            facts: engine.facts.clone(),
            last_probe: probe.map(|at| at.to_string()),
            unreachable_since: engine.unreachable_since.map(|t| t.to_string()),
            source: engine.source,
            used: None,
            evacuation: None,
        }
    }
}

/// The kind a backend's name says.
fn kind_named(name: &str) -> Option<EngineKind> {
    [EngineKind::Dummy, EngineKind::DockerCompose, EngineKind::DockerSwarm, EngineKind::Kubernetes]
        .into_iter()
        .find(|k| k.as_str() == name)
}

/// Every engine record's id (for the count bound).
fn all_engines() -> index::Query {
    index::Query { filters: Vec::new(), after: None, limit: MAX_ENGINES + 1 }
}

fn no_engine(name: &str) -> OsbError {
    OsbError::NotFound(format!("there is no engine {name}"))
}
