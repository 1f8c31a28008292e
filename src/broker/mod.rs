//! The broker: every OSB and ElasTest operation, with no HTTP in sight.
//!
//! Handlers call one method per endpoint and get an [`Answer`] (done now, already
//! done, or accepted) or an [`OsbError`]; the status table of the spec is decided
//! here and nowhere else. Asynchronous operations run as tasks owned by the broker and
//! record every state change in the store, so a restarted esm can finish them
//! ([`Broker::claim_orphaned_operations`]).
//!
//! - `instances.rs`: provision, update, deprovision, fetch, last_operation.
//! - `bindings.rs`: bind, unbind, fetch, last_operation.
//! - `extensions.rs`: the ElasTest catalog, manifest and instance-view operations.

mod bindings;
mod extensions;
mod instances;
mod reconcile;
mod worker;

pub use extensions::Registered;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, Backends, Execution};
use crate::domain::catalog::{MaintenanceInfo, Plan, Service};
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::error::{OsbError, OsbResult};
use crate::store::{Records, Store};

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
    /// How long checking one manifest may take before its registration is refused.
    pub manifest_check_timeout: Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            retry_after_seconds: 2,
            operation_lease: Duration::from_secs(30),
            manifest_check_timeout: Duration::from_secs(2),
        }
    }
}

/// The broker. Cheap to share as `Arc<Broker>`.
pub struct Broker {
    records: Records,
    backends: Backends,
    settings: BrokerSettings,
    /// The asynchronous operations in flight; waited for on shutdown.
    tasks: TaskTracker,
    /// Tells running operations to stop where they are on shutdown; they stay
    /// "in progress" in the store and are resumed by the next start.
    shutdown: CancellationToken,
    /// This process's id as the owner of the operations it runs.
    replica: String,
    /// Manifest checks parse untrusted YAML on the blocking pool; this lets one per
    /// core run at once, so a flood of registrations cannot take every core from the
    /// request handlers.
    manifest_checks: Arc<Semaphore>,
}

impl Broker {
    /// A broker over a store and a set of backends.
    pub fn new(store: Arc<dyn Store>, backends: Backends, settings: BrokerSettings) -> Arc<Self> {
        Arc::new(Self {
            records: Records::new(store),
            backends,
            settings,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            manifest_checks: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
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

    /// Stops the running operations where they are and waits for their tasks.
    pub async fn shutdown(&self) {
        self.tasks.close();
        self.shutdown.cancel();
        self.tasks.wait().await;
    }

    async fn service(&self, service_id: &str) -> OsbResult<Service> {
        self.records
            .get::<Service>(service_id)
            .await?
            .map(|v| v.record)
            .ok_or_else(|| OsbError::BadRequest(format!("unknown service_id {service_id:?}")))
    }

    /// The one manifest registered for a plan.
    async fn manifest_for_plan(&self, plan_id: &str) -> OsbResult<Manifest> {
        self.records.list::<Manifest>().await?.into_iter().map(|v| v.record).find(|m| m.plan_id == plan_id).ok_or_else(
            || {
                OsbError::BadRequest(format!(
                    "plan {plan_id:?} has no manifest registered; register one with PUT /v2/et/manifest/{{id}}"
                ))
            },
        )
    }

    /// The manifest an instance was deployed with.
    async fn manifest(&self, manifest_id: &str) -> OsbResult<Manifest> {
        self.records
            .get::<Manifest>(manifest_id)
            .await?
            .map(|v| v.record)
            .ok_or_else(|| OsbError::Internal(format!("manifest {manifest_id:?} of the instance is missing")))
    }

    fn backend(&self, manifest: &Manifest) -> OsbResult<Arc<dyn Backend>> {
        self.backends.get(&manifest.manifest_type).cloned().ok_or_else(|| {
            OsbError::Internal(format!("no backend for manifest type {:?} in this esm", manifest.manifest_type))
        })
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
fn check_maintenance(plan: &Plan, requested: Option<&MaintenanceInfo>) -> OsbResult<()> {
    let Some(requested) = requested else {
        return Ok(());
    };
    match &plan.maintenance_info {
        Some(current) if current.version == requested.version => Ok(()),
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
