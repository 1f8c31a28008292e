//! The broker: every OSB and ElasTest operation, with no HTTP in sight.
//!
//! Handlers call one method per endpoint and get an [`Answer`] (done now, already
//! done, or accepted) or an [`OsbError`]; the status table of the spec is decided
//! here and nowhere else. Asynchronous operations run as tasks owned by the broker and
//! record every state change in the store, so a restarted esm can finish them
//! ([`Broker::claim_orphaned_operations`]).
//!
//! - `instances.rs`: provision, update, deprovision, fetch, last_operation.
//! - `operations/`: the one path every operation runs through (`runner.rs`: lease,
//!   deadline, result), what each kind asks of the backend and records (`work.rs`),
//!   leases, taking over operations nobody runs any more and handing them back on a
//!   graceful stop (`worker.rs`), and giving up one whose write failed (`withdraw.rs`).
//! - `bindings.rs`: bind, unbind, fetch, last_operation.
//! - `registry/`: the catalog and its registrations: how the registry is stored and
//!   changed so its rules hold, service and manifest registration (`catalog.rs`), and
//!   whether it changed since a catalog was rendered from it, here or (within a
//!   second) on another replica (`watch.rs`).
//! - `extensions.rs`: the ElasTest instance view.
//! - `liveness/`: whether instances are alive: observed (`sweep.rs` spreads the looks,
//!   `first.rs` is a deployment's first one), reported (`reports.rs`), thresholds.
//! - `pools/`: warm pools: their settings and status, the claim, and (`keeper.rs`)
//!   what keeps every pool filled and repaired.
//! - `ports.rs`: host ports leased from `ESM_HOST_PORT_RANGE`.

mod bindings;
mod extensions;
mod instances;
mod inventory;
mod liveness;
mod operations;
mod pools;
mod ports;
mod purge;
mod reconcile;
mod refusals;
mod registry;
#[cfg(test)]
mod test_plan;

use operations::{runner, work};

pub use extensions::{InstanceFilter, InstancePage};
pub use inventory::{ResourceFilter, ResourcePage};
pub use liveness::{MAX_REPORTING as MAX_REPORTING_INSTANCES, Reporter, SPACING as REPORT_SPACING};
pub use registry::Registered;
pub use registry::{CHECK_EVERY as REGISTRY_CHECK_EVERY, STALE_BOUND as CATALOG_STALE_BOUND};

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, Backends, Execution};
use crate::clock::Clock;
use crate::domain::catalog::{CatalogLimits, Plan, Service};
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Thresholds;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::registry::{ManifestEntry, Registry};
use crate::error::{OsbError, OsbResult};
use crate::events::{EventLog, Webhook};
use crate::metrics::Metrics;
use crate::store::{Records, Store};
use crate::wire::MaintenanceInfoRequest;

/// How long [`Broker::shutdown`] may take: the default of `ESM_SHUTDOWN_TIMEOUT`.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(20);

/// How a request was answered, before it becomes a status code.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer<T> {
    /// Carried out now: 201 for creates, 200 otherwise.
    Done(T),
    /// Already existed exactly as asked: 200.
    AlreadyDone(T),
    /// Running asynchronously: 202 (with a `Retry-After`).
    Accepted(T),
}

/// Tunables of the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Seconds the platform should wait between polls (`Retry-After`).
    pub retry_after_seconds: u64,
    /// How long a replica holds an operation without renewing it; after that another
    /// replica (or this one, restarted) takes it over.
    pub operation_lease: Duration,
    /// How long deprovisioned instances and deleted bindings are kept for
    /// `last_operation` (`ESM_TOMBSTONE_RETENTION`); their operations are answered for
    /// as long, also once the id is provisioned or bound again.
    pub tombstone_retention: Duration,
    /// How long checking one manifest may take before its registration is refused.
    pub manifest_check_timeout: Duration,
    /// Where the time comes from (Tokio's pausable clock in tests).
    pub clock: Clock,
    /// What the change-event log may hold and hand out.
    pub events: crate::events::Limits,
    /// How much the catalog may hold (`ESM_CATALOG_MAX_*`).
    pub catalog: CatalogLimits,
    /// How instances' liveness is watched.
    pub liveness: LivenessSettings,
    /// Where every change event is POSTed, if anywhere.
    pub event_webhook: Option<Webhook>,
    /// Members of one warm pool deployed at once.
    pub pool_deploys: usize,
    /// The most pools esm keeps (`ESM_MAX_POOLS`).
    pub max_pools: usize,
    /// The host ports esm leases to deployments (`ESM_HOST_PORT_RANGE`); none: the
    /// engine picks.
    pub host_ports: Option<(u16, u16)>,
    /// Where operations and reconciliation are counted (shared with the API port's
    /// layer and the store and backend decorators, so `/metrics` shows them all).
    pub metrics: Metrics,
}

/// How instances' liveness is watched (`liveness/`) and reported
/// (`liveness/reports.rs`).
#[derive(Debug, Clone)]
pub struct LivenessSettings {
    /// How often the instances not up or reporting are looked at, with a slice of the
    /// sweep (`ESM_LIVENESS_INTERVAL`).
    pub interval: Duration,
    /// How long the spread sweep takes to look at every live instance once
    /// (`ESM_LIVENESS_SWEEP_INTERVAL`).
    pub sweep: Duration,
    /// The active and drop thresholds.
    pub thresholds: Thresholds,
    /// Whether the broker's credentials may report an instance's liveness
    /// (`ESM_LIVENESS_BROKER_REPORTS`); reporting tokens always may.
    pub broker_reports: bool,
    /// Where instances reach esm's API (`ESM_LIVENESS_URL`): bindings' credentials then
    /// carry the URL to report to.
    pub report_url: Option<String>,
}

impl Default for LivenessSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            sweep: Duration::from_secs(600),
            thresholds: Thresholds { active_ms: 300_000, drop_ms: None, reports_may_drop: false },
            broker_reports: true,
            report_url: None,
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            retry_after_seconds: 2,
            operation_lease: Duration::from_secs(30),
            tombstone_retention: Duration::from_secs(7 * 24 * 3600),
            manifest_check_timeout: Duration::from_secs(2),
            clock: Clock::system(),
            events: crate::events::Limits::default(),
            catalog: CatalogLimits::default(),
            liveness: LivenessSettings::default(),
            event_webhook: None,
            pool_deploys: 4,
            max_pools: 1000,
            host_ports: None,
            metrics: Metrics::new(),
        }
    }
}

/// The broker. Cheap to share as `Arc<Broker>`.
pub struct Broker {
    records: Records,
    backends: Backends,
    settings: BrokerSettings,
    /// The asynchronous operations in flight and the background rounds; waited for on
    /// shutdown.
    tasks: TaskTracker,
    /// Tells running operations to stop where they are on shutdown; they stay
    /// "in progress" in the store, handed back, and are resumed by another replica or
    /// the next start.
    shutdown: CancellationToken,
    /// The event log's writer and webhook: stopped after the operations, so the events
    /// those emit on their way out are still written.
    event_tasks: TaskTracker,
    /// Tells the event log's tasks to write what is queued and stop.
    events_stop: CancellationToken,
    /// The operations this process runs: its replica id, what it is running, what it
    /// hands back on its way out.
    operations: operations::OperationsRoom,
    /// The registry: its watch, manifest contents read lately, the manifest checks.
    registry: registry::RegistryRoom,
    /// The change-event log.
    events: Arc<EventLog>,
    /// Liveness: instances to look at soon, and reports waiting to be written.
    liveness: liveness::LivenessRoom,
    /// Warm pools: claims not yet counted, and when the keeper looks next.
    pools: pools::PoolRoom,
}

impl Broker {
    /// A broker over a store and a set of backends.
    pub fn new(store: Arc<dyn Store>, backends: Backends, settings: BrokerSettings) -> Arc<Self> {
        let shared = !store.exclusive();
        let records = Records::new(store);
        let events = EventLog::new(records.clone(), settings.clock, settings.events);
        Arc::new(Self {
            events,
            liveness: liveness::LivenessRoom::default(),
            pools: pools::PoolRoom::default(),
            records,
            backends,
            settings,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            event_tasks: TaskTracker::new(),
            events_stop: CancellationToken::new(),
            operations: operations::OperationsRoom::default(),
            registry: registry::RegistryRoom::new(shared),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.records.store()
    }

    /// The backends.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The broker's settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// The change-event log.
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// Writes and delivers change events, and keeps the log to its retention, until
    /// shutdown.
    pub fn spawn_event_log(self: &Arc<Self>) {
        // Another replica's events are seen within a quarter second.
        let poll = (!self.store().exclusive()).then_some(Duration::from_millis(250));
        let (events, stop) = (Arc::clone(&self.events), self.events_stop.clone());
        self.event_tasks.spawn(Arc::clone(&events).run(stop.clone(), poll));
        if let Some(webhook) = self.settings.event_webhook.clone() {
            self.event_tasks.spawn(events.deliver_to(webhook, self.replica().to_owned(), stop));
        }
        self.spawn_every(Duration::from_secs(1), |this| async move {
            if let Err(e) = this.events.trim().await {
                tracing::warn!(error = %e, "cannot trim the event log");
            }
        });
    }

    /// Where what the broker does is counted.
    pub fn metrics(&self) -> &Metrics {
        &self.settings.metrics
    }

    /// The clock every deadline, lease and expiry is read from.
    pub fn clock(&self) -> Clock {
        self.settings.clock
    }

    /// [`Broker::shutdown_by`] with [`DEFAULT_SHUTDOWN`] to do it in.
    pub async fn shutdown(&self) {
        self.shutdown_by(tokio::time::Instant::now() + DEFAULT_SHUTDOWN).await;
    }

    /// Stops the running operations where they are, handing them back (`operations/worker.rs`),
    /// then lets the event log write what is queued; done by `until` whatever happens.
    /// The operations get the first two thirds of the time, so that a store that hangs
    /// under them still leaves the event log its share; what is still running at its
    /// deadline is counted in a warning and left to the process's exit.
    pub async fn shutdown_by(&self, until: tokio::time::Instant) {
        let now = tokio::time::Instant::now();
        let operations_by = now + until.saturating_duration_since(now) * 2 / 3;
        self.tasks.close();
        self.shutdown.cancel();
        if tokio::time::timeout_at(operations_by, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = self.tasks.len(),
                operations = self.running_ops().len(),
                "operations and background rounds still running when the stop's time for them was up; left \
                 in progress, their leases lapse"
            );
        }
        self.announce_hand_back(until).await;
        self.event_tasks.close();
        self.events_stop.cancel();
        if tokio::time::timeout_at(until, self.event_tasks.wait()).await.is_err() {
            tracing::warn!(
                tasks = self.event_tasks.len(),
                "the event log had not written its queue (or the webhook not delivered it) when the stop's \
                 time was up; the events still queued are lost"
            );
        }
    }

    /// Stops like a crash: every task ends where it is and no lease is handed back, for
    /// tests of what another replica does once the leases lapse.
    #[cfg(any(test, feature = "test-support"))]
    pub async fn halt(&self) {
        self.keep_leases_on_stop();
        self.shutdown().await;
    }

    /// A plan a request names, with the manifest and backend that deploy it; 400 if
    /// the catalog does not have it.
    async fn plan_view(&self, service_id: &str, plan_id: &str) -> OsbResult<PlanView> {
        let registry = self
            .registry_holding(|r| {
                r.service(service_id).is_some_and(|s| s.plan(plan_id).is_some())
                    && r.manifests.values().any(|m| m.plan_id == plan_id)
            })
            .await?
            .record;
        let service = registry
            .service(service_id)
            .ok_or_else(|| OsbError::BadRequest(format!("unknown service_id {service_id:?}")))?
            .clone();
        let plan = service
            .plan(plan_id)
            .ok_or_else(|| OsbError::BadRequest(format!("unknown plan_id {plan_id:?} for service {service_id}")))?
            .clone();
        let (entry, manifest) = self.manifest_in(&registry, plan_id).await?;
        let backend = self.backend(&manifest)?;
        Ok(PlanView { service, plan, entry, manifest, backend })
    }

    /// The manifest registered for a plan in `registry`: its entry and its content.
    async fn manifest_in(&self, registry: &Registry, plan_id: &str) -> OsbResult<(ManifestEntry, Manifest)> {
        let (_, entry) = registry.manifest_for_plan(plan_id).ok_or_else(|| {
            OsbError::BadRequest(format!(
                "plan {plan_id:?} has no manifest registered; register one with PUT /v2/et/manifest/{{id}}"
            ))
        })?;
        let manifest = self.stored_manifest(entry).await?;
        Ok((entry.clone(), manifest))
    }

    /// The manifest an instance was deployed with, if it is still registered (it is,
    /// for instances created by this esm; see `registry/`).
    async fn instance_manifest(&self, registry: &Registry, instance: &ServiceInstance) -> OsbResult<Option<Manifest>> {
        match registry.manifests.get(&instance.manifest_id) {
            Some(entry) => Ok(Some(self.stored_manifest(entry).await?)),
            None => Ok(None),
        }
    }

    /// The backend and manifest an instance was deployed with.
    pub(super) async fn instance_backend(
        &self,
        registry: &Registry,
        instance: &ServiceInstance,
    ) -> OsbResult<(Arc<dyn Backend>, Manifest)> {
        let manifest = self.instance_manifest(registry, instance).await?.ok_or_else(|| {
            OsbError::Internal(format!("manifest {:?} of instance {} is missing", instance.manifest_id, instance.id))
        })?;
        let backend = self.backend(&manifest)?;
        Ok((backend, manifest))
    }

    /// The backend of an instance and its manifest if it is still there: removing what
    /// was deployed needs only the backend, which the instance names itself.
    async fn teardown_backend(
        &self,
        registry: &Registry,
        instance: &ServiceInstance,
    ) -> OsbResult<(Arc<dyn Backend>, Option<Manifest>)> {
        let manifest = self.instance_manifest(registry, instance).await?;
        let manifest_type = manifest.as_ref().map(|m| m.manifest_type.as_str()).or(instance.manifest_type.as_deref());
        let by_type = manifest_type.and_then(|t| self.backends.get(t));
        // Instances of esm 0.1 name their backend only in a label.
        let by_label = || {
            let name = instance.metadata.labels.get("esm/backend")?.as_str()?;
            self.backends.all().iter().find(|b| b.name() == name)
        };
        let backend = by_type
            .or_else(by_label)
            .cloned()
            .ok_or_else(|| OsbError::Internal(format!("no backend of this esm deployed instance {}", instance.id)))?;
        Ok((backend, manifest))
    }

    fn backend(&self, manifest: &Manifest) -> OsbResult<Arc<dyn Backend>> {
        self.backends.get(&manifest.manifest_type).cloned().ok_or_else(|| {
            OsbError::Internal(format!("no backend for manifest type {:?} in this esm", manifest.manifest_type))
        })
    }
}

/// A plan as a request sees it (see [`Broker::plan_view`]).
struct PlanView {
    service: Service,
    plan: Plan,
    entry: ManifestEntry,
    manifest: Manifest,
    backend: Arc<dyn Backend>,
}

impl PlanView {
    /// Whether `kind` runs asynchronously for a platform that does (not) accept it;
    /// 422 `AsyncRequired` if it must and the platform does not.
    fn asynchronous(&self, kind: OperationKind, accepts_incomplete: bool) -> OsbResult<bool> {
        run_asynchronously(self.backend.execution(&self.manifest, kind), accepts_incomplete)
    }
}

/// Whether to run asynchronously, given what the backend allows and the platform accepts.
fn run_asynchronously(execution: Execution, accepts_incomplete: bool) -> OsbResult<bool> {
    match execution {
        Execution::Synchronous => Ok(false),
        Execution::Asynchronous if accepts_incomplete => Ok(true),
        Execution::Asynchronous => Err(OsbError::AsyncRequired),
        Execution::Either => Ok(accepts_incomplete),
    }
}

/// A path id or required field must be a non-empty string (OSB 2.12).
fn require(field: &str, value: &str) -> OsbResult<()> {
    if value.is_empty() { Err(OsbError::BadRequest(format!("{field} must be a non-empty string"))) } else { Ok(()) }
}

/// A required query parameter.
fn require_query<'a>(field: &str, value: Option<&'a str>) -> OsbResult<&'a str> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(OsbError::BadRequest(format!("query parameter {field} is required"))),
    }
}

/// `parameters` and `context` must be JSON objects when present.
fn require_object(field: &str, value: Option<&serde_json::Value>) -> OsbResult<()> {
    match value {
        Some(v) if !v.is_object() => Err(OsbError::BadRequest(format!("{field} must be a JSON object"))),
        _ => Ok(()),
    }
}

/// 422 `MaintenanceInfoConflict` when the platform expects another version than the plan's.
fn check_maintenance(plan: &Plan, requested: Option<&MaintenanceInfoRequest>) -> OsbResult<()> {
    let Some(requested) = requested else {
        return Ok(());
    };
    match &plan.maintenance_info {
        Some(current) if requested.version == current.version => Ok(()),
        Some(current) => Err(OsbError::MaintenanceInfoConflict(format!(
            "maintenance_info.version {} does not match the catalog's {} for plan {}",
            requested.version, current.version, plan.id
        ))),
        None => Err(OsbError::MaintenanceInfoConflict(format!(
            "plan {} has no maintenance_info, but the request asks for version {}",
            plan.id, requested.version
        ))),
    }
}

/// The description of an operation that blocks another one.
fn busy(what: &str, id: &str, kind: OperationKind) -> OsbError {
    OsbError::ConcurrencyError(format!(
        "{what} {id} is busy with a {} operation; retry when it has finished",
        kind.as_str()
    ))
}
