//! The engines room: what this process keeps about the fleet between requests. The
//! engine records themselves live in the store; here are the clients built for them,
//! a short-lived copy of the records and loads that placement ranks by, and what this
//! replica's probes saw.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::backend::dummy::DummyBackend;
use crate::backend::{Backend, BackendError};
use crate::domain::engine::{Engine, EngineKind, EngineSpec};
use crate::domain::time::Timestamp;

/// How long a copy of the engine records and their loads serves placements: a cordon
/// on one replica stops placements on every other within this.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Builds the backend that drives an engine from its spec (the application knows how:
/// the Docker and Kubernetes settings, the manifest policy).
#[async_trait]
pub trait EngineFactory: Send + Sync {
    /// A backend for engine `name` as `spec` declares it. Must not wait for the engine:
    /// one that does not answer yet is the probes' business.
    async fn build(&self, name: &str, spec: &EngineSpec) -> Result<Arc<dyn Backend>, BackendError>;
}

/// The factory of a broker without one: dummy engines only (tests, demos).
pub struct DummyEngines;

#[async_trait]
impl EngineFactory for DummyEngines {
    async fn build(&self, _name: &str, spec: &EngineSpec) -> Result<Arc<dyn Backend>, BackendError> {
        match spec.backend {
            EngineKind::Dummy => Ok(Arc::new(DummyBackend::new())),
            other => Err(BackendError::new(format!("this esm cannot drive {} engines", other.as_str()))),
        }
    }
}

/// A copy of the fleet: the records and how many instances each engine holds.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    pub(super) engines: Vec<Engine>,
    pub(super) loads: HashMap<String, u64>,
}

/// A backend built for an engine, with the spec it was built from.
type Built = (EngineSpec, Arc<dyn Backend>);

/// The engines room.
#[derive(Default)]
pub struct FleetRoom {
    /// The backend built for each engine, with the spec it was built from.
    built: Mutex<HashMap<String, Built>>,
    /// The last copy of the fleet and when it was read.
    snapshot: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// When this replica last probed each engine.
    probes: Mutex<HashMap<String, Timestamp>>,
    /// Where this replica's last evacuation round stopped reading each draining
    /// engine's instances (`evacuate.rs`).
    evacuated_to: Mutex<HashMap<String, Option<String>>>,
    /// Why this replica's last move off each draining engine found no engine to go to.
    blocked: Mutex<HashMap<String, String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FleetRoom {
    /// The backend built for `engine`, if it was built from its current spec.
    pub(super) fn built(&self, engine: &Engine) -> Option<Arc<dyn Backend>> {
        let built = lock(&self.built);
        built.get(engine.name.as_str()).filter(|(spec, _)| spec == &engine.spec).map(|(_, b)| Arc::clone(b))
    }

    /// Keeps the backend built for `engine`.
    pub(super) fn keep_built(&self, engine: &Engine, backend: Arc<dyn Backend>) {
        lock(&self.built).insert(engine.name.to_string(), (engine.spec.clone(), backend));
    }

    /// Forgets what was built for engines not in `names` (deleted ones).
    pub(super) fn forget_others(&self, names: &[&str]) {
        lock(&self.built).retain(|name, _| names.contains(&name.as_str()));
        lock(&self.probes).retain(|name, _| names.contains(&name.as_str()));
        lock(&self.evacuated_to).retain(|name, _| names.contains(&name.as_str()));
        lock(&self.blocked).retain(|name, _| names.contains(&name.as_str()));
    }

    /// Records why a move off `engine` found no engine to go to (`None`: one did).
    pub(super) fn evacuation_blocked(&self, engine: &str, why: Option<String>) {
        match why {
            Some(why) => lock(&self.blocked).insert(engine.to_owned(), why),
            None => lock(&self.blocked).remove(engine),
        };
    }

    /// Why this replica's last move off `engine` found no engine to go to.
    pub(super) fn evacuation_blocked_by(&self, engine: &str) -> Option<String> {
        lock(&self.blocked).get(engine).cloned()
    }

    /// Where the last evacuation round stopped reading `engine`'s instances.
    pub(super) fn evacuation_cursor(&self, engine: &str) -> Option<String> {
        lock(&self.evacuated_to).get(engine).cloned().flatten()
    }

    /// Records where an evacuation round stopped reading `engine`'s instances.
    pub(super) fn set_evacuation_cursor(&self, engine: &str, after: Option<String>) {
        lock(&self.evacuated_to).insert(engine.to_owned(), after);
    }

    /// The copy of the fleet, if it is fresh.
    pub(super) fn fresh_snapshot(&self) -> Option<Arc<Snapshot>> {
        lock(&self.snapshot).as_ref().filter(|(at, _)| at.elapsed() < FRESH_FOR).map(|(_, s)| Arc::clone(s))
    }

    /// Keeps a new copy of the fleet.
    pub(super) fn keep_snapshot(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let snapshot = Arc::new(snapshot);
        *lock(&self.snapshot) = Some((Instant::now(), Arc::clone(&snapshot)));
        snapshot
    }

    /// Drops the copy: the next placement reads the records again (after a change here).
    pub(super) fn invalidate(&self) {
        *lock(&self.snapshot) = None;
    }

    /// Counts one more instance on `engine` in the copy, so placements until the next
    /// read see it.
    pub(super) fn count_placed(&self, engine: &str) {
        if let Some((_, snapshot)) = lock(&self.snapshot).as_mut() {
            *Arc::make_mut(snapshot).loads.entry(engine.to_owned()).or_default() += 1;
        }
    }

    /// Records a probe of `engine`.
    pub(super) fn probed(&self, engine: &str, at: Timestamp) {
        lock(&self.probes).insert(engine.to_owned(), at);
    }

    /// When this replica last probed `engine`.
    pub(super) fn last_probe(&self, engine: &str) -> Option<Timestamp> {
        lock(&self.probes).get(engine).cloned()
    }
}
