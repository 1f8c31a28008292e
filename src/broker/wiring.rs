//! The [`Broker`]: the core and every feature's room, put together once. Its fields
//! are private to this file, so a feature reaches another only through that feature's
//! service ([`Broker::instances`], [`Broker::pools`], ...), and its own room only
//! through its own service.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::bindings::Bindings;
use super::core::Core;
use super::engines::{Engines, FleetRoom};
use super::instances::Instances;
use super::inventory::Inventory;
use super::liveness::{LivenessMonitor, LivenessRoom};
use super::operations::{Operations, OperationsRoom};
use super::pools::{PoolRoom, Pools};
use super::purge::Tombstones;
use super::registry::{Registrar, RegistryRoom};
use super::{BrokerSettings, DEFAULT_SHUTDOWN, refusals};
use crate::backend::Backends;
use crate::clock::Clock;
use crate::domain::operation::OperationKind;
use crate::error::OsbResult;
use crate::events::EventLog;
use crate::metrics::Metrics;
use crate::store::Store;

/// The services' accessors, one row each: a service borrows the broker, the core and
/// its own room (the field named in brackets), if it has one, and nothing else.
macro_rules! services {
    ($( $(#[$doc:meta])* $name:ident: $service:ident $(($room:ident))?; )*) => {
        $(
            $(#[$doc])*
            pub fn $name(self: &Arc<Self>) -> $service<'_> {
                $service::new(self, &self.core $(, &self.$room)?)
            }
        )*
    };
}

/// The broker. Cheap to share as `Arc<Broker>`; each feature is a service borrowed
/// from it (`broker.instances().provision(..)`).
pub struct Broker {
    core: Core,
    /// The operations this process runs: its replica id, what it is running, what it
    /// hands back on its way out.
    operations: OperationsRoom,
    /// The registry: its watch, manifest contents read lately, the manifest checks.
    registry: RegistryRoom,
    /// Liveness: instances to look at soon, and reports waiting to be written.
    liveness: LivenessRoom,
    /// Warm pools: claims not yet counted, and when the keeper looks next.
    pools: PoolRoom,
    /// Engines: the backends built for them, the fleet as placement last read it.
    engines: FleetRoom,
}

impl Broker {
    /// A broker over a store and a set of backends.
    pub fn new(store: Arc<dyn Store>, backends: Backends, settings: BrokerSettings) -> Arc<Self> {
        let shared = !store.exclusive();
        Arc::new(Self {
            core: Core::new(store, backends, settings),
            operations: OperationsRoom::default(),
            registry: RegistryRoom::new(shared),
            liveness: LivenessRoom::default(),
            pools: PoolRoom::default(),
            engines: FleetRoom::default(),
        })
    }

    services! {
        /// Provisions, updates, deprovisions and fetches instances; the ElasTest
        /// instance view.
        instances: Instances;
        /// Binds, unbinds and fetches bindings.
        bindings: Bindings;
        /// The catalog and its registrations, and the plan or manifest a request deploys.
        registrar: Registrar(registry);
        /// Whether instances are alive: observed and reported.
        liveness: LivenessMonitor(liveness);
        /// Warm pools: their settings, the claim and the keeper.
        pools: Pools(pools);
        /// What is deployed: the inventory, host ports, reconciliation and the census.
        inventory: Inventory;
        /// Deprovisioned instances and deleted bindings, kept for a while and purged.
        tombstones: Tombstones;
        /// The operations this process runs, takes over and hands back.
        operations: Operations(operations);
        /// The engines instances are placed on: records, placement, probes.
        engines: Engines(engines);
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.core.store()
    }

    /// The backends.
    pub fn backends(&self) -> &Backends {
        &self.core.backends
    }

    /// The broker's settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.core.settings
    }

    /// The change-event log.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.core.events
    }

    /// Where what the broker does is counted.
    pub fn metrics(&self) -> &Metrics {
        self.core.metrics()
    }

    /// The clock every deadline, lease and expiry is read from.
    pub fn clock(&self) -> Clock {
        self.core.clock()
    }

    /// `result` of a `kind` request about instance `instance_id` (and binding
    /// `binding_id`), announced as refused if it is a refusal of a known instance
    /// (`refusals.rs`).
    pub async fn noting_refusal<T>(
        &self,
        kind: OperationKind,
        instance_id: &str,
        binding_id: Option<&str>,
        result: OsbResult<T>,
    ) -> OsbResult<T> {
        refusals::noting(&self.core, kind, instance_id, binding_id, result).await
    }

    /// The typed records, for tests that look at or plant what is stored.
    #[cfg(test)]
    pub(crate) fn records(&self) -> &crate::store::Records {
        &self.core.records
    }

    /// Cancelled when the broker starts stopping: what background rounds end on.
    pub(super) fn stopping(&self) -> &CancellationToken {
        &self.core.shutdown
    }

    /// Runs a task that shutdown waits for.
    pub(super) fn spawn_task<R: Send + 'static>(
        &self,
        task: impl Future<Output = R> + Send + 'static,
    ) -> tokio::task::JoinHandle<R> {
        self.core.tasks.spawn(task)
    }

    /// Runs `round` now and then every `period`, until shutdown (which waits for it).
    pub(super) fn spawn_every<F, Fut>(self: &Arc<Self>, period: Duration, round: F)
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let this = Arc::clone(self);
        self.spawn_task(async move {
            loop {
                round(Arc::clone(&this)).await;
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    () = this.core.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Writes and delivers change events, and keeps the log to its retention, until
    /// shutdown.
    pub fn spawn_event_log(self: &Arc<Self>) {
        // Another replica's events are seen within a quarter second.
        let poll = (!self.store().exclusive()).then_some(Duration::from_millis(250));
        let (events, stop) = (Arc::clone(&self.core.events), self.core.events_stop.clone());
        self.core.event_tasks.spawn(Arc::clone(&events).run(stop.clone(), poll));
        if let Some(webhook) = self.core.settings.event_webhook.clone() {
            self.core.event_tasks.spawn(events.deliver_to(webhook, self.operations().replica().to_owned(), stop));
        }
        self.spawn_every(Duration::from_secs(1), |this| async move {
            if let Err(e) = this.core.events.trim().await {
                tracing::warn!(error = %e, "cannot trim the event log");
            }
        });
    }

    /// [`Broker::shutdown_by`] with [`DEFAULT_SHUTDOWN`] to do it in.
    pub async fn shutdown(self: &Arc<Self>) {
        self.shutdown_by(tokio::time::Instant::now() + DEFAULT_SHUTDOWN).await;
    }

    /// Stops the running operations where they are, handing them back (`operations/worker.rs`),
    /// then lets the event log write what is queued; done by `until` whatever happens.
    /// The operations get the first two thirds of the time, so that a store that hangs
    /// under them still leaves the event log its share; what is still running at its
    /// deadline is counted in a warning and left to the process's exit.
    pub async fn shutdown_by(self: &Arc<Self>, until: tokio::time::Instant) {
        let core = &self.core;
        let now = tokio::time::Instant::now();
        let operations_by = now + until.saturating_duration_since(now) * 2 / 3;
        core.tasks.close();
        core.shutdown.cancel();
        if tokio::time::timeout_at(operations_by, core.tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = core.tasks.len(),
                operations = self.operations().running_ops().len(),
                "operations and background rounds still running when the stop's time for them was up; left \
                 in progress, their leases lapse"
            );
        }
        self.operations().announce_hand_back(until).await;
        core.event_tasks.close();
        core.events_stop.cancel();
        if tokio::time::timeout_at(until, core.event_tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = core.event_tasks.len(),
                "the event log had not written its queue (or the webhook not delivered it) when the stop's \
                 time was up; the events still queued are lost"
            );
        }
    }

    /// Stops like a crash: every task ends where it is and no lease is handed back, for
    /// tests of what another replica does once the leases lapse.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn halt(self: &Arc<Self>) {
        self.operations().keep_leases_on_stop();
        self.shutdown().await;
    }
}
