//! Instance operations: provision, update, deprovision, fetch, last_operation.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Answer, Broker, busy, check_maintenance, require, require_object, require_query, run_asynchronously};
use crate::backend::BackendError;
use crate::domain::binding::{Binding, BindingStatus};
use crate::domain::catalog::SchemaFor;
use crate::domain::instance::{InstanceMetadata, InstanceStatus, PendingUpdate, ServiceInstance};
use crate::domain::operation::{OperationKind, OperationLog, OperationState};
use crate::domain::timestamp;
use crate::error::{OsbError, OsbResult};
use crate::store::{StoreError, Versioned};
use crate::wire::{
    DeleteQuery, FetchInstanceResponse, LastOperationResponse, OperationResponse, ProvisionRequest, ProvisionResponse,
    UpdateRequest, UpdateResponse,
};

impl Broker {
    /// `PUT /v2/service_instances/{id}`.
    pub async fn provision(
        self: &Arc<Self>,
        id: &str,
        req: ProvisionRequest,
        accepts_incomplete: bool,
    ) -> OsbResult<Answer<ProvisionResponse>> {
        require("instance_id", id)?;
        require("service_id", &req.service_id)?;
        require("plan_id", &req.plan_id)?;
        require("organization_guid", &req.organization_guid)?;
        require("space_guid", &req.space_guid)?;
        require_object("parameters", req.parameters.as_ref())?;
        require_object("context", req.context.as_ref())?;
        let service = self.service(&req.service_id).await?;
        let plan = service.plan(&req.plan_id).ok_or_else(|| {
            OsbError::BadRequest(format!("unknown plan_id {:?} for service {}", req.plan_id, service.id))
        })?;
        check_maintenance(plan, req.maintenance_info.as_ref())?;
        plan.validate_parameters(SchemaFor::Provision, req.parameters.as_ref()).map_err(OsbError::BadRequest)?;
        let manifest = self.manifest_for_plan(&plan.id).await?;
        let backend = self.backend(&manifest)?;

        let existing = self.records.get::<ServiceInstance>(id).await?;
        if let Some(Versioned { record, .. }) = &existing
            && record.is_live()
        {
            return provision_existing(record, &req);
        }
        let asynchronous =
            run_asynchronously(backend.execution(&manifest, OperationKind::Provision), accepts_incomplete)?;
        let op = self.start_op(OperationKind::Provision, asynchronous);
        let op_id = op.id.clone();
        let mut operations = OperationLog::default();
        operations.push(op);
        let mut labels = Map::new();
        labels.insert("esm/manifest_id".into(), json!(manifest.id));
        labels.insert("esm/backend".into(), json!(backend.name()));
        let instance = ServiceInstance {
            id: id.to_owned(),
            service_id: req.service_id.clone(),
            plan_id: req.plan_id.clone(),
            organization_guid: req.organization_guid.clone(),
            space_guid: req.space_guid.clone(),
            context: req.context.clone(),
            parameters: req.parameters.clone(),
            maintenance_info: req.maintenance_info.clone().or_else(|| plan.maintenance_info.clone()),
            metadata: InstanceMetadata { labels, attributes: Map::new() },
            dashboard_url: None,
            manifest_id: manifest.id.clone(),
            status: InstanceStatus::Provisioning,
            deployment: Map::new(),
            operations,
            created_at: timestamp(),
        };
        // One atomic write decides who creates the instance: a racing request with the
        // same id loses here and is answered from what the winner stored.
        let written = match existing {
            Some(tombstone) => self.records.replace(tombstone.version, &instance).await,
            None => self.records.insert(&instance).await,
        };
        match written {
            Ok(_) => {}
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                return match self.records.get::<ServiceInstance>(id).await? {
                    Some(winner) if winner.record.is_live() => provision_existing(&winner.record, &req),
                    _ => Err(OsbError::ConcurrencyError(format!(
                        "instance {id} is being changed by another request; retry"
                    ))),
                };
            }
            Err(e) => return Err(e.into()),
        }

        if asynchronous {
            self.spawn_instance_operation(id.to_owned(), op_id.clone(), OperationKind::Provision);
            return Ok(Answer::Accepted(ProvisionResponse { operation: Some(op_id), ..Default::default() }));
        }
        let done = self.run_provision(id, &op_id).await?;
        match done {
            Some(inst) if succeeded(&inst.operations, &op_id) => Ok(Answer::Done(ProvisionResponse {
                dashboard_url: inst.dashboard_url.clone(),
                operation: None,
                metadata: Some(inst.metadata.clone()).filter(|m| !m.is_empty()),
            })),
            Some(inst) => Err(failure_of(&inst.operations, &op_id)),
            None => Err(OsbError::Unavailable("esm is shutting down; retry".into())),
        }
    }

    /// `PATCH /v2/service_instances/{id}`.
    pub async fn update(
        self: &Arc<Self>,
        id: &str,
        req: UpdateRequest,
        accepts_incomplete: bool,
    ) -> OsbResult<Answer<UpdateResponse>> {
        require("service_id", &req.service_id)?;
        if let Some(plan_id) = &req.plan_id {
            require("plan_id", plan_id)?;
        }
        require_object("parameters", req.parameters.as_ref())?;
        require_object("context", req.context.as_ref())?;
        let Some(Versioned { version, record: mut instance }) = self.live_instance(id).await? else {
            return Err(OsbError::NotFound(format!("instance {id} does not exist")));
        };
        if req.service_id != instance.service_id {
            return Err(OsbError::BadRequest(format!(
                "service_id {:?} is not the instance's service {:?}",
                req.service_id, instance.service_id
            )));
        }
        let service = self.service(&instance.service_id).await?;
        let target_plan_id = req.plan_id.clone().unwrap_or_else(|| instance.plan_id.clone());
        let target_plan = service.plan(&target_plan_id).ok_or_else(|| {
            OsbError::BadRequest(format!("unknown plan_id {target_plan_id:?} for service {}", service.id))
        })?;
        let plan_changes = target_plan_id != instance.plan_id;
        if plan_changes {
            let current_updateable =
                service.plan(&instance.plan_id).is_some_and(|current| service.plan_updateable(current));
            if !current_updateable {
                return Err(OsbError::Unprocessable(format!(
                    "plan {} of service {} cannot be changed (plan_updateable is false)",
                    instance.plan_id, service.id
                )));
            }
        }
        check_maintenance(target_plan, req.maintenance_info.as_ref())?;
        if req.parameters.is_some() {
            target_plan
                .validate_parameters(SchemaFor::Update, req.parameters.as_ref())
                .map_err(OsbError::BadRequest)?;
        }
        let pending = PendingUpdate {
            plan_id: req.plan_id.clone(),
            parameters: req.parameters.clone(),
            context: req.context.clone(),
            maintenance_info: req.maintenance_info.clone(),
        };
        if let Some(running) = instance.operations.running() {
            if running.kind == OperationKind::Update && running.update.as_ref() == Some(&pending) {
                return Ok(Answer::Accepted(UpdateResponse {
                    operation: Some(running.id.clone()),
                    ..Default::default()
                }));
            }
            return Err(busy("instance", id, running.kind));
        }
        if instance.status != InstanceStatus::Provisioned {
            return Err(OsbError::Unprocessable(format!(
                "instance {id} failed to provision and cannot be updated; deprovision it"
            )));
        }
        let changes_something = plan_changes
            || pending.parameters.as_ref().is_some_and(|p| Some(p) != instance.parameters.as_ref())
            || pending.context.as_ref().is_some_and(|c| Some(c) != instance.context.as_ref())
            || pending.maintenance_info.as_ref().is_some_and(|m| Some(m) != instance.maintenance_info.as_ref());
        if !changes_something {
            // OSB 2.15: an update with no effect may answer 200 right away.
            return Ok(Answer::Done(UpdateResponse::default()));
        }
        let manifest = self.manifest_for_plan(&target_plan_id).await?;
        let backend = self.backend(&manifest)?;
        let asynchronous = run_asynchronously(backend.execution(&manifest, OperationKind::Update), accepts_incomplete)?;
        let mut op = self.start_op(OperationKind::Update, asynchronous);
        op.update = Some(pending);
        let op_id = op.id.clone();
        instance.operations.push(op);
        self.start_operation(version, &instance).await?;

        if asynchronous {
            self.spawn_instance_operation(id.to_owned(), op_id.clone(), OperationKind::Update);
            return Ok(Answer::Accepted(UpdateResponse { operation: Some(op_id), ..Default::default() }));
        }
        match self.run_update(id, &op_id).await? {
            Some(inst) if succeeded(&inst.operations, &op_id) => Ok(Answer::Done(UpdateResponse {
                dashboard_url: inst.dashboard_url.clone(),
                operation: None,
                metadata: Some(inst.metadata.clone()).filter(|m| !m.is_empty()),
            })),
            Some(inst) => Err(failure_of(&inst.operations, &op_id)),
            None => Err(OsbError::Unavailable("esm is shutting down; retry".into())),
        }
    }

    /// `DELETE /v2/service_instances/{id}`.
    pub async fn deprovision(self: &Arc<Self>, id: &str, query: &DeleteQuery) -> OsbResult<Answer<OperationResponse>> {
        require_query("service_id", query.service_id.as_deref())?;
        require_query("plan_id", query.plan_id.as_deref())?;
        let Some(Versioned { version, record: mut instance }) = self.live_instance(id).await? else {
            return Err(OsbError::Gone);
        };
        if let Some(running) = instance.operations.running() {
            if running.kind == OperationKind::Deprovision {
                return Ok(Answer::Accepted(OperationResponse { operation: Some(running.id.clone()) }));
            }
            return Err(busy("instance", id, running.kind));
        }
        if let Some(binding) = self.bindings_of(id).await?.into_iter().find(|b| b.operations.running().is_some()) {
            return Err(OsbError::ConcurrencyError(format!(
                "binding {} of instance {id} is busy; retry when it has finished",
                binding.id
            )));
        }
        let manifest = self.manifest(&instance.manifest_id).await?;
        let backend = self.backend(&manifest)?;
        let asynchronous =
            run_asynchronously(backend.execution(&manifest, OperationKind::Deprovision), query.accepts_incomplete())?;
        let op = self.start_op(OperationKind::Deprovision, asynchronous);
        let op_id = op.id.clone();
        instance.operations.push(op);
        self.start_operation(version, &instance).await?;

        if asynchronous {
            self.spawn_instance_operation(id.to_owned(), op_id.clone(), OperationKind::Deprovision);
            return Ok(Answer::Accepted(OperationResponse { operation: Some(op_id) }));
        }
        match self.run_deprovision(id, &op_id).await? {
            Some(inst) if succeeded(&inst.operations, &op_id) => Ok(Answer::Done(OperationResponse::default())),
            Some(inst) => Err(failure_of(&inst.operations, &op_id)),
            None => Err(OsbError::Unavailable("esm is shutting down; retry".into())),
        }
    }

    /// `GET /v2/service_instances/{id}`.
    pub async fn fetch_instance(&self, id: &str) -> OsbResult<FetchInstanceResponse> {
        let not_found = || OsbError::NotFound(format!("instance {id} does not exist"));
        let instance = self.live_instance(id).await?.ok_or_else(not_found)?.record;
        if instance.status != InstanceStatus::Provisioned {
            // OSB: 404 while the provision is still running (or failed).
            return Err(not_found());
        }
        if let Some(running) = instance.operations.running()
            && running.kind == OperationKind::Update
        {
            return Err(busy("instance", id, running.kind));
        }
        Ok(FetchInstanceResponse {
            service_id: instance.service_id,
            plan_id: instance.plan_id,
            dashboard_url: instance.dashboard_url,
            parameters: instance.parameters,
            maintenance_info: instance.maintenance_info,
            metadata: Some(instance.metadata).filter(|m| !m.is_empty()),
        })
    }

    /// `GET /v2/service_instances/{id}/last_operation`.
    pub async fn instance_last_operation(&self, id: &str, operation: Option<&str>) -> OsbResult<LastOperationResponse> {
        let Some(Versioned { record: instance, .. }) = self.records.get::<ServiceInstance>(id).await? else {
            return Err(OsbError::NotFound(format!("instance {id} does not exist")));
        };
        if !instance.is_live() {
            // OSB: once an asynchronous deprovision is done, the instance is Gone.
            return Err(OsbError::Gone);
        }
        last_operation_of(&instance.operations, operation, id)
    }

    /// A live (not deprovisioned) instance.
    pub(super) async fn live_instance(&self, id: &str) -> OsbResult<Option<Versioned<ServiceInstance>>> {
        Ok(self.records.get::<ServiceInstance>(id).await?.filter(|v| v.record.is_live()))
    }

    /// The live bindings of an instance.
    pub(super) async fn bindings_of(&self, instance_id: &str) -> OsbResult<Vec<Binding>> {
        Ok(self
            .records
            .list::<Binding>()
            .await?
            .into_iter()
            .map(|v| v.record)
            .filter(|b| b.instance_id == instance_id && b.is_live())
            .collect())
    }

    /// Writes an instance that has just been given a new running operation; losing the
    /// race to another request is a `ConcurrencyError`.
    async fn start_operation(&self, version: u64, instance: &ServiceInstance) -> OsbResult<()> {
        match self.records.replace(version, instance).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Err(OsbError::ConcurrencyError(format!(
                "instance {} was changed by another request at the same time; retry",
                instance.id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn spawn_instance_operation(self: &Arc<Self>, id: String, op_id: String, kind: OperationKind) {
        let this = Arc::clone(self);
        self.spawn_task(async move {
            let result = match kind {
                OperationKind::Provision => this.run_provision(&id, &op_id).await,
                OperationKind::Update => this.run_update(&id, &op_id).await,
                OperationKind::Deprovision => this.run_deprovision(&id, &op_id).await,
                OperationKind::Bind | OperationKind::Unbind => Ok(None),
            };
            if let Err(e) = result {
                // The operation stays "in progress" in the store; the next start resumes it.
                tracing::error!(instance_id = %id, operation = %op_id, error = %e, "could not record the outcome of an operation");
            }
        });
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
                        inst.dashboard_url = deployment.dashboard_url.clone();
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
            Ok(manifest) => match self.backend(&manifest) {
                Ok(backend) => match self
                    .run_backend::<ServiceInstance, _>(id, op_id, deadline, backend.update(&target, &manifest))
                    .await
                {
                    Some(outcome) => outcome.map(|d| (d, manifest.id)),
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
                    Ok((deployment, manifest_id)) => {
                        op.succeed();
                        let mut updated = apply_update(inst.clone(), &pending);
                        updated.deployment = deployment.details.clone();
                        if deployment.dashboard_url.is_some() {
                            updated.dashboard_url = deployment.dashboard_url.clone();
                        }
                        updated.manifest_id = manifest_id.clone();
                        updated.metadata.labels.insert("esm/manifest_id".into(), json!(manifest_id));
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
        let outcome = match self.instance_backend(&instance).await {
            Ok((backend, manifest)) => match self
                .run_backend::<ServiceInstance, _>(id, op_id, deadline, backend.deprovision(&instance, &manifest))
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

    /// The backend and manifest an instance was deployed with.
    pub(super) async fn instance_backend(
        &self,
        instance: &ServiceInstance,
    ) -> OsbResult<(Arc<dyn crate::backend::Backend>, crate::domain::manifest::Manifest)> {
        let manifest = self.manifest(&instance.manifest_id).await?;
        let backend = self.backend(&manifest)?;
        Ok((backend, manifest))
    }
}

/// Answers a provision for an id that exists: 202 while the same provision runs, 200 if
/// it is done with the same attributes, 409 otherwise.
fn provision_existing(instance: &ServiceInstance, req: &ProvisionRequest) -> OsbResult<Answer<ProvisionResponse>> {
    let empty = Value::Object(Map::new());
    let same = instance.service_id == req.service_id
        && instance.plan_id == req.plan_id
        && instance.organization_guid == req.organization_guid
        && instance.space_guid == req.space_guid
        && instance.parameters.as_ref().unwrap_or(&empty) == req.parameters.as_ref().unwrap_or(&empty);
    if !same {
        return Err(OsbError::Conflict(format!("instance {} already exists with different attributes", instance.id)));
    }
    match instance.status {
        InstanceStatus::Provisioning => {
            let operation =
                instance.operations.running().filter(|op| op.kind == OperationKind::Provision).map(|op| op.id.clone());
            Ok(Answer::Accepted(ProvisionResponse { operation, ..Default::default() }))
        }
        InstanceStatus::Provisioned => Ok(Answer::AlreadyDone(ProvisionResponse {
            dashboard_url: instance.dashboard_url.clone(),
            operation: None,
            metadata: Some(instance.metadata.clone()).filter(|m| !m.is_empty()),
        })),
        InstanceStatus::ProvisionFailed | InstanceStatus::Deprovisioned => Err(OsbError::Conflict(format!(
            "instance {} exists but its provision failed; deprovision it before provisioning again",
            instance.id
        ))),
    }
}

/// The instance as it will be once `pending` is applied.
fn apply_update(mut instance: ServiceInstance, pending: &PendingUpdate) -> ServiceInstance {
    if let Some(plan_id) = &pending.plan_id {
        instance.plan_id = plan_id.clone();
    }
    if let Some(parameters) = &pending.parameters {
        instance.parameters = Some(parameters.clone());
    }
    if let Some(context) = &pending.context {
        instance.context = Some(context.clone());
    }
    if let Some(info) = &pending.maintenance_info {
        instance.maintenance_info = Some(info.clone());
    }
    instance
}

/// Whether an operation has succeeded.
pub(super) fn succeeded(operations: &OperationLog, op_id: &str) -> bool {
    operations.find(op_id).is_some_and(|op| op.state == OperationState::Succeeded)
}

/// The error to answer a synchronous operation that failed with.
pub(super) fn failure_of(operations: &OperationLog, op_id: &str) -> OsbError {
    match operations.find(op_id) {
        Some(op) => OsbError::OperationFailed {
            description: op.description.clone().unwrap_or_else(|| "the operation failed".into()),
            instance_usable: op.instance_usable,
            update_repeatable: op.update_repeatable,
        },
        None => OsbError::Internal(format!("operation {op_id} was lost")),
    }
}

/// The state of the operation the platform polls (the newest one unless it names one).
pub(super) fn last_operation_of(
    operations: &OperationLog,
    operation: Option<&str>,
    id: &str,
) -> OsbResult<LastOperationResponse> {
    let op = match operation {
        Some(op_id) => {
            operations.find(op_id).ok_or_else(|| OsbError::BadRequest(format!("{id} has no operation {op_id:?}")))?
        }
        None => operations.last().ok_or_else(|| OsbError::NotFound(format!("{id} has no operations")))?,
    };
    Ok(LastOperationResponse {
        state: op.state,
        description: op.description.clone(),
        instance_usable: op.instance_usable,
        update_repeatable: op.update_repeatable,
    })
}
