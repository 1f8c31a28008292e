//! The broker: every OSB and ElasTest operation, with no HTTP in sight.
//!
//! Handlers call one method per endpoint and get an [`Answer`] (done now, already
//! done, or accepted) or an [`OsbError`]; the status table of the spec is decided
//! here and nowhere else. Asynchronous operations run as tasks owned by the broker and
//! record every state change in the store, so a restarted esm can finish them
//! ([`Broker::resume`]).
//!
//! - `instances.rs`: provision, update, deprovision, fetch, last_operation.
//! - `bindings.rs`: bind, unbind, fetch, last_operation.
//! - `extensions.rs`: the ElasTest catalog, manifest and instance-view operations.

mod bindings;
mod extensions;
mod instances;

pub use extensions::Registered;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{Backend, BackendError, Backends, Execution};
use crate::domain::binding::Binding;
use crate::domain::catalog::{MaintenanceInfo, Plan, Service};
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::operation::{Operation, OperationKind};
use crate::error::{OsbError, OsbResult};
use crate::store::{Records, Store, Versioned};

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
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            retry_after_seconds: 2,
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

    /// Restarts the operations a previous run left in progress. Backend calls are
    /// idempotent, so running one again finishes it honestly whatever point it reached.
    pub async fn resume(self: &Arc<Self>) -> OsbResult<usize> {
        let mut resumed = 0;
        for Versioned { record, .. } in self.records.list::<ServiceInstance>().await? {
            if let Some(op) = record.operations.running() {
                tracing::info!(instance_id = %record.id, operation = %op.id, kind = op.kind.as_str(), "resuming operation");
                self.spawn_instance_operation(record.id.clone(), op.id.clone(), op.kind);
                resumed += 1;
            }
        }
        for Versioned { record, .. } in self.records.list::<Binding>().await? {
            if let Some(op) = record.operations.running() {
                tracing::info!(binding_id = %record.id, operation = %op.id, kind = op.kind.as_str(), "resuming operation");
                self.spawn_binding_operation(record.id.clone(), op.id.clone(), op.kind);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Stops the running operations where they are and waits for their tasks.
    pub async fn shutdown(&self) {
        self.tasks.close();
        self.shutdown.cancel();
        self.tasks.wait().await;
    }

    /// Runs a backend call unless esm is shutting down first (`None` then: the
    /// operation stays in progress and the next start resumes it). Past `deadline` the
    /// call is abandoned as failed: the platform has stopped polling by then and counts
    /// the operation as failed, so esm must not report success later.
    async fn run_backend<T>(
        &self,
        deadline: Option<SystemTime>,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Option<Result<T, BackendError>> {
        let bounded = async {
            let Some(deadline) = deadline else {
                return call.await;
            };
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                Err(BackendError::new(
                    "did not finish within the plan's maximum_polling_duration",
                ))
            })
        };
        tokio::select! {
            result = bounded => Some(result),
            () = self.shutdown.cancelled() => None,
        }
    }

    /// When an asynchronous operation must be over: its start plus the plan's
    /// `maximum_polling_duration` (OSB 2.15). Synchronous ones have no deadline.
    async fn deadline(
        &self,
        service_id: &str,
        plan_id: &str,
        op: Option<&Operation>,
    ) -> Option<SystemTime> {
        let op = op.filter(|op| op.asynchronous)?;
        let service = self.records.get::<Service>(service_id).await.ok()??.record;
        let seconds = service.plan(plan_id)?.maximum_polling_duration?;
        let started = humantime::parse_rfc3339(&op.started_at).ok()?;
        Some(started + Duration::from_secs(seconds))
    }

    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
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
        self.records
            .list::<Manifest>()
            .await?
            .into_iter()
            .map(|v| v.record)
            .find(|m| m.plan_id == plan_id)
            .ok_or_else(|| {
                OsbError::BadRequest(format!(
                    "plan {plan_id:?} has no manifest registered; register one with PUT /v2/et/manifest/{{id}}"
                ))
            })
    }

    /// The manifest an instance was deployed with.
    async fn manifest(&self, manifest_id: &str) -> OsbResult<Manifest> {
        self.records
            .get::<Manifest>(manifest_id)
            .await?
            .map(|v| v.record)
            .ok_or_else(|| {
                OsbError::Internal(format!(
                    "manifest {manifest_id:?} of the instance is missing"
                ))
            })
    }

    fn backend(&self, manifest: &Manifest) -> OsbResult<Arc<dyn Backend>> {
        self.backends
            .get(&manifest.manifest_type)
            .cloned()
            .ok_or_else(|| {
                OsbError::Internal(format!(
                    "no backend for manifest type {:?} in this esm",
                    manifest.manifest_type
                ))
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
    if value.trim().is_empty() {
        Err(OsbError::BadRequest(format!(
            "{field} must be a non-empty string"
        )))
    } else {
        Ok(())
    }
}

/// A required query parameter.
fn require_query<'a>(field: &str, value: Option<&'a str>) -> OsbResult<&'a str> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(OsbError::BadRequest(format!(
            "query parameter {field} is required"
        ))),
    }
}

/// `parameters` and `context` must be JSON objects when present.
fn require_object(field: &str, value: Option<&serde_json::Value>) -> OsbResult<()> {
    match value {
        Some(v) if !v.is_object() => Err(OsbError::BadRequest(format!(
            "{field} must be a JSON object"
        ))),
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
