//! [`Runtime`]: what the deployment template asks of whatever runs an instance's
//! services.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use super::POLL;
use crate::backend::BackendError;
use crate::backend::docker::spec::{Resource, Unit};

/// What a runtime makes before the units: the template asks for each in turn, images
/// first, then networks, then volumes.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// An image the units run, present as the pull policy says.
    Image(&'a str),
    /// A network: made with its labels, or, when external, checked to exist and not to
    /// be another instance's.
    Network(&'a Resource),
    /// A named volume: made with its labels, or, when external, checked as the
    /// operator's policy says (`Engine::check_external_volume`).
    Volume(&'a Resource),
}

/// A unit the runtime made: what the deployment record keeps, and what
/// [`Runtime::unit_state`] is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    /// The runtime's id for it.
    pub id: String,
    /// Its name on the runtime.
    pub name: String,
}

/// Where a unit stands while the template waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitState {
    /// Not running yet (being scheduled or started).
    Starting,
    /// Running; `healthy` is false while its health check has not passed yet.
    Running {
        /// The health check passed, or there is none.
        healthy: bool,
    },
    /// It will not run (stopped, unhealthy, rejected): the deployment fails with this.
    Failed(String),
}

/// What runs an instance's units. The deployment template (`deploy`) is written
/// once over it: Docker containers (docker-compose) and swarm services (docker-swarm)
/// implement it.
///
/// It is for engines that start units one by one, in order, as they are told. The
/// Kubernetes backend does not use it: a cluster converges on all it is given at
/// once, so that backend applies everything and waits for the whole. What every
/// backend shares (the clean-up of a failed first provision, the failure flags, the
/// wait) is in [`crate::backend::kit`], which this template uses too.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// What the units are called in the deployment record and in messages
    /// (`containers`, `services`).
    fn units(&self) -> &'static str;

    /// Removes everything the instance has on the runtime, found by label: units,
    /// networks and, unless `keep_volumes` (or a volume is marked `esm.keep`), volumes.
    /// Idempotent: finding nothing is success.
    async fn clear(&self, instance_id: &str, keep_volumes: bool) -> Result<(), BackendError>;

    /// Makes or checks something the units need.
    async fn provide(&self, need: Need<'_>) -> Result<(), BackendError>;

    /// Creates and starts one unit.
    async fn create_unit(&self, unit: &Unit<'_>) -> Result<Handle, BackendError>;

    /// Where a unit made by [`create_unit`](Runtime::create_unit) stands.
    async fn unit_state(&self, unit: &Unit<'_>, handle: &Handle) -> Result<UnitState, BackendError>;

    /// Tells the template, while it waits, that something of the instance changed
    /// since `since` (the engine's events), so it looks again at once instead of at
    /// the next poll. `None`: the template only polls.
    fn changes(&self, _instance_id: &str, _since: SystemTime) -> Option<BoxStream<'static, ()>> {
        None
    }

    /// How often the template reads the units' state while it waits, whatever the
    /// changes say: events can be missed, and some states have none.
    fn poll_interval(&self) -> Duration {
        POLL
    }
}
