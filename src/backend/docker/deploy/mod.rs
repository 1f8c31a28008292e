//! The one deployment sequence of a compose manifest, whatever runs it: clean slate →
//! images → networks → volumes → each service in `depends_on` order (after the
//! dependencies it waits for are healthy) → wait until all are ready → on failure,
//! remove what was made. Written once over [`Runtime`], which the docker-compose
//! (containers) and docker-swarm (services) backends implement.
//!
//! What the engine is asked to make (names, labels, specs) comes from [`super::spec`];
//! this module decides only the order, the waiting and the clean-up. It also holds the
//! one place where a failed update or deprovision says what is left of the instance.

mod runtime;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

pub use self::runtime::{Handle, Need, Runtime, UnitState};
use super::model::{Compose, DependsOn};
use super::project;
use super::spec::{self, Unit};
use crate::backend::{BackendError, Deployment, labels};

/// How long a unit must keep running to count as started: one that exits at once (a
/// bad command, a missing file) fails the deployment instead of passing it.
pub const MIN_UPTIME: Duration = Duration::from_secs(1);

/// How often the state of starting units is read.
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
    let compose = order.compose;
    let project = project(order.instance_id);
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

    let mut started: Vec<(Unit<'_>, Handle)> = Vec::new();
    for name in &compose.start_order {
        let service = &compose.services[name];
        let dependencies: Vec<(&Unit<'_>, &Handle, bool)> = started
            .iter()
            .filter(|(unit, _)| service.depends_on.get(unit.name) == Some(&DependsOn::Healthy))
            .map(|(unit, handle)| (unit, handle, true))
            .collect();
        wait_ready(runtime, &dependencies, order.ready_timeout).await?;
        let unit = Unit {
            name,
            service,
            project: &project,
            parameters: order.parameters,
            esm_labels: &esm_labels,
            networks: &networks,
            volumes: &volumes,
        };
        let handle = runtime.create_unit(&unit).await?;
        started.push((unit, handle));
    }
    let all: Vec<(&Unit<'_>, &Handle, bool)> =
        started.iter().map(|(unit, handle)| (unit, handle, spec::has_healthcheck(unit.service))).collect();
    wait_ready(runtime, &all, order.ready_timeout).await?;

    let units: Map<String, Value> = started
        .iter()
        .map(|(unit, handle)| (unit.name.to_owned(), json!({"id": handle.id, "name": handle.name})))
        .collect();
    let mut details = Map::new();
    details.insert("project".into(), json!(project));
    details.insert(runtime.units().into(), Value::Object(units));
    Ok(Deployment { details })
}

/// Waits until every unit `(unit, handle, needs_healthy)` has been running for
/// [`MIN_UPTIME`] (and is healthy, where asked). Fails as soon as one fails, or at
/// `timeout`. Tokio's clock: tests run it with paused time.
async fn wait_ready<R: Runtime + ?Sized>(
    runtime: &R,
    units: &[(&Unit<'_>, &Handle, bool)],
    timeout: Duration,
) -> Result<(), BackendError> {
    if units.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut running_since: HashMap<&str, Instant> = HashMap::new();
    loop {
        let mut ready = true;
        for (unit, handle, needs_healthy) in units {
            match runtime.unit_state(unit, handle).await? {
                UnitState::Failed(reason) => return Err(BackendError::new(reason)),
                UnitState::Starting => {
                    running_since.remove(handle.id.as_str());
                    ready = false;
                }
                UnitState::Running { healthy } => {
                    let since = *running_since.entry(handle.id.as_str()).or_insert_with(Instant::now);
                    ready &= since.elapsed() >= MIN_UPTIME && (healthy || !needs_healthy);
                }
            }
        }
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let names: Vec<&str> = units.iter().map(|(unit, _, _)| unit.name).collect();
            return Err(BackendError::new(format!(
                "{} {} were not ready within {}s",
                runtime.units(),
                names.join(", "),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
