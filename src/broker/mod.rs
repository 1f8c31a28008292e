//! The broker: every OSB and ElasTest operation, with no HTTP in sight.
//!
//! Handlers call one method per endpoint of a feature's service and get an [`Answer`]
//! (done now, already done, or accepted) or an [`OsbError`]; the status table of the
//! spec is decided here and nowhere else. Asynchronous operations run as tasks owned
//! by the broker and record every state change in the store, so a restarted esm can
//! finish them ([`Operations::claim_orphaned_operations`]).
//!
//! The [`Broker`] (`wiring.rs`, the one `impl Broker`) holds a shared core
//! (`core.rs`: records, backends, settings, the event log, the tasks a stop waits for)
//! and each feature's room (its in-process state, private to its folder), and lends
//! out one service per feature, a borrowed view of the core and its own room only:
//!
//! - [`Instances`] (`instances.rs`): provision, update, deprovision, fetch,
//!   last_operation; the ElasTest instance view (`extensions.rs`).
//! - [`Bindings`] (`bindings.rs`): bind, unbind, fetch, list, last_operation.
//! - [`Registrar`] (`registry/`): the catalog and its registrations: how the registry
//!   is stored and changed so its rules hold, service and manifest registration
//!   (`catalog.rs`), the plan or manifest a request deploys with (`plans.rs`), and
//!   whether the registry changed since a catalog was rendered from it, here or
//!   (within a second) on another replica (`watch.rs`).
//! - [`Operations`] (`operations/`): the one path every operation runs through
//!   (`runner.rs`: lease, deadline, result), what each kind asks of the backend and
//!   records (`work.rs`), leases, taking over operations nobody runs any more and
//!   handing them back on a graceful stop (`worker.rs`), giving up one whose write
//!   failed (`withdraw.rs`), and what an operation log answers (`answers.rs`).
//! - [`LivenessMonitor`] (`liveness/`): whether instances are alive: observed
//!   (`sweep.rs` spreads the looks, `first.rs` is a deployment's first one), reported
//!   (`reports.rs`, with the reporting tokens bindings carry), thresholds.
//! - [`Pools`] (`pools/`): warm pools: their settings and status, the claim, and
//!   (`keeper.rs`) what keeps every pool filled and repaired.
//! - [`Inventory`] (`inventory.rs`): what is deployed, host ports leased from
//!   `ESM_HOST_PORT_RANGE` (`ports.rs`), reconciliation (`reconcile.rs`), the census.
//! - [`Tombstones`] (`purge.rs`): deprovisioned instances and deleted bindings, kept
//!   for `last_operation` and purged after the retention.
//!
//! Refused requests are announced by `refusals.rs`. Operations never call
//! instances or bindings: what they read of records is the core's.

/// Declares a feature's service: a view borrowed from the [`Broker`] of the shared core
/// and, if the feature has one, its room. The room field is private to the module the
/// service is declared in, so only that feature reaches its state; the `broker` field
/// reaches other features through their services.
macro_rules! service {
    ($(#[$doc:meta])* $name:ident $(, room: $room:ty)?) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            pub(in crate::broker) broker: &'a std::sync::Arc<crate::broker::Broker>,
            pub(in crate::broker) core: &'a crate::broker::core::Core,
            $(room: &'a $room,)?
        }

        impl<'a> $name<'a> {
            pub(in crate::broker) fn new(
                broker: &'a std::sync::Arc<crate::broker::Broker>,
                core: &'a crate::broker::core::Core,
                $(room: &'a $room,)?
            ) -> Self {
                Self { broker, core, $(room: { let room: &'a $room = room; room },)? }
            }
        }
    };
}

mod bindings;
mod core;
mod engines;
mod extensions;
#[cfg(test)]
pub(crate) mod fixture;
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
mod wiring;

use operations::{runner, work};
use registry::PlanView;

pub use bindings::Bindings;
pub use engines::{DummyEngines, EngineFactory, Engines, FleetSettings, ScheduleChange};
pub use instances::Instances;
pub use inventory::Inventory;
pub use liveness::LivenessMonitor;
pub use operations::Operations;
pub use pools::Pools;
pub use purge::Tombstones;
pub use registry::Registrar;
pub use wiring::Broker;

pub use extensions::{InstanceFilter, InstancePage};
pub use inventory::{ResourceFilter, ResourcePage};
pub use liveness::{MAX_REPORTING as MAX_REPORTING_INSTANCES, Reporter, SPACING as REPORT_SPACING};
pub use registry::Registered;
pub use registry::{CHECK_EVERY as REGISTRY_CHECK_EVERY, STALE_BOUND as CATALOG_STALE_BOUND};

use std::time::Duration;

use crate::backend::Execution;
use crate::clock::Clock;
use crate::domain::catalog::{CatalogLimits, Plan};
use crate::domain::liveness::Thresholds;
use crate::domain::operation::OperationKind;
use crate::error::{OsbError, OsbResult};
use crate::events::Webhook;
use crate::metrics::Metrics;
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
    /// How the engines instances are placed on are built and probed.
    pub engines: FleetSettings,
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
            engines: FleetSettings::default(),
            metrics: Metrics::new(),
        }
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

/// Whether a removal (`kind`: deprovision, unbind) asked with `query` may run
/// asynchronously. What the request alone decides comes first: the query must name the
/// service and the plan, and a plan that can only remove asynchronously refuses a
/// platform that does not accept that. (A record whose plan has left the catalog is
/// still removed.)
async fn removal_accepts_incomplete(
    registrar: Registrar<'_>,
    query: &crate::wire::DeleteQuery,
    kind: OperationKind,
) -> OsbResult<bool> {
    let service_id = require_query("service_id", query.service_id.as_deref())?;
    let plan_id = require_query("plan_id", query.plan_id.as_deref())?;
    let accepts_incomplete = query.accepts_incomplete();
    if let Ok(view) = registrar.plan_view(service_id, plan_id).await {
        view.asynchronous(kind, accepts_incomplete)?;
    }
    Ok(accepts_incomplete)
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
