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
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

pub use self::runtime::{Handle, Need, Runtime, UnitState};
use super::project;
use super::spec::{self, Unit};
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
    deploy(runtime, order, false).await.map_err(|mut e| {
        e.instance_usable = Some(false);
        e.update_repeatable = Some(true);
        e
    })
}

/// Removes an instance; a failure leaves it half removed, so not usable.
pub async fn deprovision<R: Runtime + ?Sized>(runtime: &R, instance_id: &str) -> Result<(), BackendError> {
    runtime.clear(instance_id, false).await.map_err(|mut e| {
        e.instance_usable = Some(false);
        e
    })
}

/// The template: a clean slate first (what an interrupted attempt or the previous
/// deployment left, volumes kept), then [`create`]; on failure its leftovers go, the
/// named volumes too when `fresh` (a first provision), never on a redeploy.
async fn deploy<R: Runtime + ?Sized>(runtime: &R, order: &Order<'_>, fresh: bool) -> Result<Deployment, BackendError> {
    runtime.clear(order.instance_id, true).await?;
    match create(runtime, order).await {
        Ok(deployment) => Ok(deployment),
        Err(e) => {
            if let Err(cleanup) = runtime.clear(order.instance_id, !fresh).await {
                tracing::error!(instance_id = %order.instance_id, error = %cleanup, "could not remove a failed deployment");
            }
            Err(e)
        }
    }
}

/// Makes the instance: what its units need, then the units in start order, each after
/// the dependencies it waits for are healthy; done when all are ready.
async fn create<R: Runtime + ?Sized>(runtime: &R, order: &Order<'_>) -> Result<Deployment, BackendError> {
    // Subscribed from now: what happens to the units from here on wakes the waits.
    let mut watch =
        Watch { changes: runtime.changes(order.instance_id, SystemTime::now()), poll: runtime.poll_interval() };
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
        let mut dependencies: Vec<(&mut Started<'_>, bool)> = started
            .iter_mut()
            .filter(|s| service.depends_on.get(s.unit.name) == Some(&DependsOn::Healthy))
            .map(|s| (s, true))
            .collect();
        wait_ready(runtime, &mut dependencies, order.ready_timeout, &mut watch).await?;
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
        let mut unit = Started { unit, handle, asked, running_since: None };
        // A first look: notes when it runs (its settling overlaps the next units'
        // creation), and stops here a unit that already failed.
        unit.check(runtime, false).await?;
        started.push(unit);
    }
    let mut all: Vec<(&mut Started<'_>, bool)> = started
        .iter_mut()
        .map(|s| {
            let needs_healthy = spec::has_healthcheck(s.unit.service);
            (s, needs_healthy)
        })
        .collect();
    wait_ready(runtime, &mut all, order.ready_timeout, &mut watch).await?;

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
    /// Since when it has been seen running without a break.
    running_since: Option<Instant>,
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
    /// Reads the unit's state: ready once it has kept running for half as long as it
    /// took to run (at least [`SETTLE`], at most [`MAX_SETTLE`]) and is healthy where
    /// asked.
    async fn check<R: Runtime + ?Sized>(
        &mut self,
        runtime: &R,
        needs_healthy: bool,
    ) -> Result<Readiness, BackendError> {
        match runtime.unit_state(&self.unit, &self.handle).await? {
            UnitState::Failed(reason) => Err(BackendError::new(reason)),
            UnitState::Starting => {
                self.running_since = None;
                Ok(Readiness::NotYet)
            }
            UnitState::Running { healthy } => {
                let now = Instant::now();
                let since = *self.running_since.get_or_insert(now);
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

/// What wakes a wait: the runtime's changes, else its poll.
struct Watch {
    changes: Option<BoxStream<'static, ()>>,
    poll: Duration,
}

impl Watch {
    /// Returns at `wake`, or earlier when something changed (a burst counts once).
    async fn until(&mut self, wake: Instant) {
        let Some(changes) = self.changes.as_mut() else {
            tokio::time::sleep_until(wake).await;
            return;
        };
        let ended = tokio::select! {
            () = tokio::time::sleep_until(wake) => false,
            next = changes.next() => match next {
                None => true,
                Some(()) => loop {
                    match changes.next().now_or_never() {
                        Some(Some(())) => {}
                        Some(None) => break true,
                        None => break false,
                    }
                },
            },
        };
        if ended {
            // The engine's stream dropped: polling alone from here.
            self.changes = None;
        }
    }
}

/// Waits until every unit `(unit, needs_healthy)` is ready ([`Started::check`]),
/// looking again whenever the runtime reports a change, a unit is due to settle, or
/// the poll interval has passed. Fails as soon as one fails, or at `timeout`. Tokio's
/// clock: tests run it with paused time.
async fn wait_ready<R: Runtime + ?Sized>(
    runtime: &R,
    units: &mut [(&mut Started<'_>, bool)],
    timeout: Duration,
    watch: &mut Watch,
) -> Result<(), BackendError> {
    if units.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut ready = true;
        let mut wake = deadline.min(Instant::now() + watch.poll);
        for (unit, needs_healthy) in units.iter_mut() {
            match unit.check(runtime, *needs_healthy).await? {
                Readiness::Ready => {}
                Readiness::NotYet => ready = false,
                Readiness::SettledAt(at) => {
                    ready = false;
                    wake = wake.min(at);
                }
            }
        }
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<&str> = units.iter().map(|(unit, _)| unit.unit.name).collect();
            return Err(BackendError::new(format!(
                "{} {} were not ready within {}s",
                runtime.units(),
                names.join(", "),
                timeout.as_secs()
            )));
        }
        watch.until(wake).await;
    }
}
