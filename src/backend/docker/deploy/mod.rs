//! The one deployment sequence of a compose manifest, whatever runs it: clean slate →
//! images → networks → volumes → each service in `depends_on` order (after the
//! dependencies it waits for are healthy) → wait until all are ready (running, settled
//! and healthy where a health check is declared; woken by the runtime's events) → on
//! failure, remove what was made. Written once over [`Runtime`], which the docker-compose
//! (containers) and docker-swarm (services) backends implement.
//!
//! What the engine is asked to make (names, labels, specs) comes from [`super::spec`];
//! this module decides only the order, the waiting and the clean-up. It also holds the
//! one place where a failed update or deprovision says what is left of the instance.

mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio::time::Instant;

pub use self::runtime::{Handle, Need, Runtime, UnitState};
use super::project;
use super::spec::{self, Unit};
use crate::backend::kit::{self, Changes, Look};
use crate::backend::{BackendError, Deployment, labels};
use crate::manifest::{Compose, DependsOn};

/// The least a unit must keep running to count as started, so that one that exits at
/// once (a bad command, a missing file) fails the deployment instead of passing it.
/// The engine reports such an exit some time after the start call returned, later the
/// busier it is (engine 20.10, idle or loaded: within 0.4 of the time the start took),
/// so a unit must keep running for half the time it took to start, at least this and
/// at most [`MAX_SETTLE`].
pub const SETTLE: Duration = Duration::from_millis(50);

/// The most a unit must keep running to count as started, however slow its start.
pub const MAX_SETTLE: Duration = Duration::from_secs(1);

/// How often the state of starting units is read when the runtime does not say
/// otherwise.
const POLL: Duration = Duration::from_millis(200);

/// One deployment to make.
#[derive(Debug, Clone, Copy)]
pub struct Order<'a> {
    /// The instance.
    pub instance_id: &'a str,
    /// Its parameters, passed to every service as environment variables.
    pub parameters: Option<&'a Value>,
    /// The manifest it is deployed from (its id is a label of everything made).
    pub manifest_id: &'a str,
    /// The parsed manifest.
    pub compose: &'a Compose,
    /// This esm deployment's name, the `esm.owner` label.
    pub owner: &'a str,
    /// How long the units may take to be ready, dependencies included.
    pub ready_timeout: Duration,
    /// The host ports esm leased the instance (`Unit::host_port`).
    pub host_ports: &'a BTreeMap<String, u16>,
}

/// Deploys an instance for the first time. On failure everything made is removed,
/// named volumes included.
pub async fn provision<R: Runtime + ?Sized>(runtime: &R, order: &Order<'_>) -> Result<Deployment, BackendError> {
    deploy(runtime, order, true).await
}

/// Redeploys an instance. On failure everything made is removed but the named
/// volumes, and the error says the instance is down and the update may be repeated
/// (the old units were removed first).
pub async fn update<R: Runtime + ?Sized>(runtime: &R, order: &Order<'_>) -> Result<Deployment, BackendError> {
    deploy(runtime, order, false).await.map_err(kit::failed_update)
}

/// Removes an instance; a failure leaves it half removed, so not usable.
pub async fn deprovision<R: Runtime + ?Sized>(runtime: &R, instance_id: &str) -> Result<(), BackendError> {
    runtime.clear(instance_id, false).await.map_err(kit::failed_deprovision)
}

/// The template: a clean slate first (what an interrupted attempt or the previous
/// deployment left, volumes kept), then [`create`]; on failure its leftovers go, the
/// named volumes too when `fresh` (a first provision), never on a redeploy.
async fn deploy<R: Runtime + ?Sized>(runtime: &R, order: &Order<'_>, fresh: bool) -> Result<Deployment, BackendError> {
    runtime.clear(order.instance_id, true).await?;
    kit::or_clean_up(order.instance_id, create(runtime, order), || runtime.clear(order.instance_id, !fresh)).await
}

/// Makes the instance: what its units need, then the units in start order, each after
/// the dependencies it waits for are healthy; done when all are ready.
async fn create<R: Runtime + ?Sized>(runtime: &R, order: &Order<'_>) -> Result<Deployment, BackendError> {
    // Subscribed from now: what happens to the units from here on wakes the waits.
    let mut changes = Changes::new(runtime.changes(order.instance_id, SystemTime::now()), runtime.poll_interval());
    let compose = order.compose;
    let project = project(order.owner, order.instance_id);
    let esm_labels = labels::for_instance(order.owner, order.instance_id, order.manifest_id);
    let images: BTreeSet<&str> = compose.services.values().map(|s| s.image.as_str()).collect();
    for image in images {
        runtime.provide(Need::Image(image)).await?;
    }
    let networks = spec::networks(compose, &project, &esm_labels);
    for network in networks.values() {
        runtime.provide(Need::Network(network)).await?;
    }
    let volumes = spec::volumes(compose, &project, &esm_labels);
    for volume in volumes.values() {
        runtime.provide(Need::Volume(volume)).await?;
    }

    let mut started: Vec<Started<'_>> = Vec::new();
    for name in &compose.start_order {
        let service = &compose.services[name];
        let dependencies: Vec<(&Started<'_>, bool)> = started
            .iter()
            .filter(|s| service.depends_on.get(s.unit.name) == Some(&DependsOn::Healthy))
            .map(|s| (s, true))
            .collect();
        wait_ready(runtime, &dependencies, order.ready_timeout, &mut changes).await?;
        let unit = Unit {
            name,
            service,
            project: &project,
            parameters: order.parameters,
            esm_labels: &esm_labels,
            networks: &networks,
            volumes: &volumes,
            host_ports: order.host_ports,
        };
        let asked = Instant::now();
        let handle = runtime.create_unit(&unit).await?;
        let unit = Started { unit, handle, asked, running_since: Mutex::new(None) };
        // A first look: notes when it runs (its settling overlaps the next units'
        // creation), and stops here a unit that already failed.
        unit.check(runtime, false).await?;
        started.push(unit);
    }
    let all: Vec<(&Started<'_>, bool)> = started
        .iter()
        .map(|s| {
            let needs_healthy = spec::has_healthcheck(s.unit.service);
            (s, needs_healthy)
        })
        .collect();
    wait_ready(runtime, &all, order.ready_timeout, &mut changes).await?;

    let units: Map<String, Value> =
        started.iter().map(|s| (s.unit.name.to_owned(), json!({"id": s.handle.id, "name": s.handle.name}))).collect();
    let mut details = Map::new();
    details.insert("project".into(), json!(project));
    details.insert(runtime.units().into(), Value::Object(units));
    Ok(Deployment { details })
}

/// A unit the template made, and how its start has gone so far.
struct Started<'a> {
    unit: Unit<'a>,
    handle: Handle,
    /// When it was asked for: how long it took to run sets how long it must keep running.
    asked: Instant,
    /// Since when it has been seen running without a break. Behind a lock (held for
    /// no await) so a wait's look, which `kit::until` calls again and again, can
    /// update it through a shared borrow.
    running_since: Mutex<Option<Instant>>,
}

/// Where a unit stands after a look at it.
enum Readiness {
    Ready,
    /// Not ready; nothing to expect before a change or the next poll.
    NotYet,
    /// Running, and settled at this time if it keeps running.
    SettledAt(Instant),
}

impl Started<'_> {
    /// Its running-since time, to read or change.
    fn since(&self) -> MutexGuard<'_, Option<Instant>> {
        self.running_since.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the unit's state: ready once it has kept running for half as long as it
    /// took to run (at least [`SETTLE`], at most [`MAX_SETTLE`]) and is healthy where
    /// asked.
    async fn check<R: Runtime + ?Sized>(&self, runtime: &R, needs_healthy: bool) -> Result<Readiness, BackendError> {
        match runtime.unit_state(&self.unit, &self.handle).await? {
            UnitState::Failed(reason) => Err(BackendError::new(reason)),
            UnitState::Starting => {
                *self.since() = None;
                Ok(Readiness::NotYet)
            }
            UnitState::Running { healthy } => {
                let now = Instant::now();
                let since = *self.since().get_or_insert(now);
                let settled = since + (since.duration_since(self.asked) / 2).clamp(SETTLE, MAX_SETTLE);
                Ok(if now < settled {
                    Readiness::SettledAt(settled)
                } else if healthy || !needs_healthy {
                    Readiness::Ready
                } else {
                    Readiness::NotYet
                })
            }
        }
    }
}

/// Waits until every unit `(unit, needs_healthy)` is ready ([`Started::check`]),
/// looking again whenever the runtime reports a change, a unit is due to settle, or
/// the poll interval has passed ([`kit::until`]). Fails as soon as one fails, or at
/// `timeout`.
async fn wait_ready<R: Runtime + ?Sized>(
    runtime: &R,
    units: &[(&Started<'_>, bool)],
    timeout: Duration,
    changes: &mut Changes,
) -> Result<(), BackendError> {
    let deadline = Instant::now() + timeout;
    kit::until(changes, deadline, || async {
        let mut ready = true;
        let mut wake: Option<Instant> = None;
        for (unit, needs_healthy) in units {
            match unit.check(runtime, *needs_healthy).await? {
                Readiness::Ready => {}
                Readiness::NotYet => ready = false,
                Readiness::SettledAt(at) => {
                    ready = false;
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            }
        }
        if ready {
            return Ok(Look::Ready);
        }
        let names: Vec<&str> = units.iter().map(|(unit, _)| unit.unit.name).collect();
        let late = format!("{} {} were not ready within {}s", runtime.units(), names.join(", "), timeout.as_secs());
        Ok(Look::Waiting { late, wake })
    })
    .await
}
