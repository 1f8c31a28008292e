//! Running instance operations: provision, update and deprovision as tasks of their
//! own, each recording its outcome in the instance record.

use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinHandle;

use super::Broker;
use super::instances::apply_update;
use crate::backend::BackendError;
use crate::domain::binding::{Binding, BindingStatus};
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::operation::OperationKind;
use crate::error::{OsbError, OsbResult};
use crate::store::Versioned;

/// An operation's task, awaited by a synchronous request. The task runs to the end
/// even if the request goes away (the client hung up), so its outcome is recorded.
pub(super) async fn finished<T>(task: JoinHandle<OsbResult<Option<T>>>) -> OsbResult<Option<T>> {
    task.await.map_err(|e| OsbError::Internal(format!("an operation stopped unexpectedly: {e}")))?
}

impl Broker {
    /// Starts an instance operation as a task of its own; see [`finished`].
    pub(super) fn spawn_instance_operation(
        self: &Arc<Self>,
        id: String,
        op_id: String,
        kind: OperationKind,
    ) -> JoinHandle<OsbResult<Option<ServiceInstance>>> {
        let this = Arc::clone(self);
        self.spawn_task(async move {
            let result = match kind {
                OperationKind::Provision => this.run_provision(&id, &op_id).await,
                OperationKind::Update => this.run_update(&id, &op_id).await,
                OperationKind::Deprovision => this.run_deprovision(&id, &op_id).await,
                OperationKind::Bind | OperationKind::Unbind => Ok(None),
            };
            if let Err(e) = &result {
                // The operation stays "in progress" in the store; the next start resumes it.
                tracing::error!(instance_id = %id, operation = %op_id, error = %e, "could not record the outcome of an operation");
            }
            result
        })
    }

    /// Runs a provision operation and records its outcome. `None` if esm is shutting
    /// down (the operation stays in progress) or the instance moved on.
    async fn run_provision(&self, id: &str, op_id: &str) -> OsbResult<Option<ServiceInstance>> {
        let Some(Versioned { record: instance, .. }) = self.records.get::<ServiceInstance>(id).await? else {
            return Ok(None);
        };
        let deadline = self.deadline(&instance.service_id, &instance.plan_id, instance.operations.find(op_id)).await;
        let outcome = match self.instance_backend(&instance).await {
            Ok((backend, manifest)) => match self
                .run_backend::<ServiceInstance, _>(id, op_id, deadline, backend.provision(&instance, &manifest))
                .await
            {
                Some(outcome) => outcome,
                None => return Ok(None),
            },
            Err(e) => Err(BackendError::new(e.to_string())),
        };
        self.records
            .modify::<ServiceInstance, OsbError, _>(id, |inst| {
                let Some(op) = inst.operations.owned_mut(op_id, self.replica()) else {
                    return Ok(false);
                };
                match &outcome {
                    Ok(deployment) => {
                        op.succeed();
                        inst.status = InstanceStatus::Provisioned;
                        inst.deployment = deployment.details.clone();
                    }
                    Err(e) => {
                        let asynchronous = op.asynchronous;
                        op.fail(&e.message, None, None);
                        // A synchronous failure answers 500 and leaves nothing behind, so
                        // the same request can simply be retried; an asynchronous one stays
                        // for the platform to see when it polls, and to deprovision.
                        inst.status =
                            if asynchronous { InstanceStatus::ProvisionFailed } else { InstanceStatus::Deprovisioned };
                    }
                }
                Ok(true)
            })
            .await
    }

    async fn run_update(&self, id: &str, op_id: &str) -> OsbResult<Option<ServiceInstance>> {
        let Some(Versioned { record: instance, .. }) = self.records.get::<ServiceInstance>(id).await? else {
            return Ok(None);
        };
        let Some(pending) = instance.operations.find(op_id).and_then(|op| op.update.clone()) else {
            return Ok(None);
        };
        let target = apply_update(instance.clone(), &pending);
        let deadline = self.deadline(&target.service_id, &target.plan_id, instance.operations.find(op_id)).await;
        let outcome = match self.manifest_for_plan(&target.plan_id).await {
            Ok((_, manifest)) => match self.backend(&manifest) {
                Ok(backend) => match self
                    .run_backend::<ServiceInstance, _>(id, op_id, deadline, backend.update(&target, &manifest))
                    .await
                {
                    Some(outcome) => outcome.map(|d| (d, backend.dashboard_url(&target, &manifest), manifest)),
                    None => return Ok(None),
                },
                Err(e) => Err(BackendError::new(e.to_string())),
            },
            Err(e) => Err(BackendError::new(e.to_string())),
        };
        self.records
            .modify::<ServiceInstance, OsbError, _>(id, |inst| {
                let Some(op) = inst.operations.owned_mut(op_id, self.replica()) else {
                    return Ok(false);
                };
                match &outcome {
                    Ok((deployment, dashboard_url, manifest)) => {
                        op.succeed();
                        let mut updated = apply_update(inst.clone(), &pending);
                        updated.deployment = deployment.details.clone();
                        if dashboard_url.is_some() {
                            updated.dashboard_url = dashboard_url.clone();
                        }
                        updated.manifest_id = manifest.id.clone();
                        updated.manifest_type = Some(manifest.manifest_type.clone());
                        updated.metadata.labels.insert("esm/manifest_id".into(), json!(manifest.id));
                        *inst = updated;
                    }
                    Err(e) => op.fail(
                        &e.message,
                        Some(e.instance_usable.unwrap_or(true)),
                        Some(e.update_repeatable.unwrap_or(true)),
                    ),
                }
                Ok(true)
            })
            .await
    }

    async fn run_deprovision(&self, id: &str, op_id: &str) -> OsbResult<Option<ServiceInstance>> {
        let Some(Versioned { record: instance, .. }) = self.records.get::<ServiceInstance>(id).await? else {
            return Ok(None);
        };
        let deadline = self.deadline(&instance.service_id, &instance.plan_id, instance.operations.find(op_id)).await;
        let outcome = match self.teardown_backend(&instance).await {
            Ok((backend, manifest)) => match self
                .run_backend::<ServiceInstance, _>(
                    id,
                    op_id,
                    deadline,
                    backend.deprovision(&instance, manifest.as_ref()),
                )
                .await
            {
                Some(outcome) => outcome,
                None => return Ok(None),
            },
            Err(e) => Err(BackendError::new(e.to_string())),
        };
        let done = self
            .records
            .modify::<ServiceInstance, OsbError, _>(id, |inst| {
                let Some(op) = inst.operations.owned_mut(op_id, self.replica()) else {
                    return Ok(false);
                };
                match &outcome {
                    Ok(()) => {
                        op.succeed();
                        inst.status = InstanceStatus::Deprovisioned;
                        inst.deployment.clear();
                    }
                    Err(e) => op.fail(&e.message, Some(e.instance_usable.unwrap_or(true)), None),
                }
                Ok(true)
            })
            .await?;
        if done.as_ref().is_some_and(|i| i.status == InstanceStatus::Deprovisioned) {
            self.retire_bindings(id).await?;
        }
        Ok(done)
    }

    /// Bindings go with their instance (platforms unbind first; this covers those that do not).
    async fn retire_bindings(&self, instance_id: &str) -> OsbResult<()> {
        for binding in self.bindings_of(instance_id).await? {
            self.records
                .modify::<Binding, OsbError, _>(&binding.id, |b| {
                    if !b.is_live() {
                        return Ok(false);
                    }
                    b.status = BindingStatus::Unbound;
                    b.credentials = None;
                    Ok(true)
                })
                .await?;
        }
        Ok(())
    }
}
