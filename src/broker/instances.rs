//! Instance operations: provision, update, deprovision, fetch, last_operation.

use serde_json::{Map, Value, json};

use super::engines::Placed;
use super::operations::answers::{Asked, last_operation_of, removal_while, resent};
use super::runner::Work;
use super::{
    Answer, PlanView, busy, check_maintenance, purge, removal_accepts_incomplete, require, require_object,
    run_asynchronously, work,
};
use crate::backend::Execution;
use crate::domain::binding::Binding;
use crate::domain::catalog::SchemaFor;
use crate::domain::event::{Event, Step};
use crate::domain::instance::{InstanceMetadata, InstanceStatus, PendingUpdate, ServiceInstance};
use crate::domain::operation::{Operation, OperationKind, OperationLog};
use crate::domain::pool::MEMBER_PREFIX;
use crate::error::{OsbError, OsbResult};
use crate::store::{StoreError, Versioned};
use crate::wire::{
    DeleteQuery, FetchInstanceResponse, LastOperationResponse, OperationResponse, ProvisionRequest, ProvisionResponse,
    UpdateRequest, UpdateResponse,
};

service! {
    /// Provisions, updates, deprovisions and fetches instances (and, in `extensions.rs`, the
    /// ElasTest instance view).
    Instances
}

impl Instances<'_> {
    /// `PUT /v2/service_instances/{id}`.
    pub async fn provision(
        &self,
        id: &str,
        req: ProvisionRequest,
        accepts_incomplete: bool,
    ) -> OsbResult<Answer<ProvisionResponse>> {
        require("instance_id", id)?;
        if id.starts_with(MEMBER_PREFIX) {
            return Err(OsbError::BadRequest(format!(
                "instance ids starting with {MEMBER_PREFIX} are esm's own (warm pool members)"
            )));
        }
        require("service_id", &req.service_id)?;
        require("plan_id", &req.plan_id)?;
        require("organization_guid", &req.organization_guid)?;
        require("space_guid", &req.space_guid)?;
        require_object("parameters", req.parameters.as_ref())?;
        require_object("context", req.context.as_ref())?;
        let view = self.broker.registrar().plan_view(&req.service_id, &req.plan_id).await?;
        check_maintenance(&view.plan, req.maintenance_info.as_ref())?;
        view.plan.validate_parameters(SchemaFor::Provision, req.parameters.as_ref()).map_err(OsbError::BadRequest)?;
        // A plan with a warm pool hands out a member within the request when it can,
        // even where the cold path could only run asynchronously.
        let pool = self.broker.pools().pool_for(&req.plan_id).await?;
        let asynchronous = match (view.asynchronous(OperationKind::Provision, accepts_incomplete), &pool) {
            (Ok(asynchronous), _) => asynchronous,
            (Err(_), Some(_)) => false,
            (Err(e), None) => return Err(e),
        };

        let existing = self.core.records.get::<ServiceInstance>(id).await?;
        if let Some(Versioned { record, .. }) = &existing
            && record.is_live()
        {
            return provision_existing(record, &req, accepts_incomplete);
        }
        let placed = self.broker.engines().place(&view, id, None).await?;
        let op = self.broker.operations().start_op(OperationKind::Provision, asynchronous);
        let op_id = op.id.clone();
        let mut instance = new_instance(id, &req, &view, &placed, op);
        if let Some(tombstone) = &existing {
            instance.operations = self.broker.tombstones().inherit(&tombstone.record.operations, instance.operations);
            // The tombstone's events not yet in the log come first (`domain::outbox`).
            instance.outbox = tombstone.record.outbox.clone();
        }
        self.broker
            .operations()
            .announce(&mut instance, Event::operation(OperationKind::Provision, Step::Started, &op_id));
        // One atomic write decides who creates the instance: a racing request with the
        // same id loses here and is answered from what the winner stored.
        let written = match self.core.records.create_announced(existing.as_ref(), &instance).await {
            Ok(written) => {
                self.core.events.announced();
                written
            }
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                return match self.core.records.get::<ServiceInstance>(id).await? {
                    Some(winner) if winner.record.is_live() => {
                        provision_existing(&winner.record, &req, accepts_incomplete)
                    }
                    _ => Err(OsbError::ConcurrencyError(format!(
                        "instance {id} is being changed by another request; retry"
                    ))),
                };
            }
            // The write may have landed all the same (its answer lost).
            Err(e) => return Err(self.withdraw(id, &op_id, e.into()).await),
        };
        // Now that the instance is written, its plan must still be there with the
        // manifest read above (the retirement protocol, broker/registry/).
        if let Err(e) = self.broker.registrar().confirm_plan(&view.service.id, &view.plan.id, &view.entry.content).await
        {
            return Err(self.withdraw(id, &op_id, e).await);
        }
        // Recorded first, then claimed: a crash in between leaves the provision running,
        // and its resumption adopts the member (or deploys cold).
        let claimed = match &pool {
            Some(pool) => self.broker.pools().claim_member(pool, &view.entry.digest, id, req.parameters.as_ref()).await,
            None => Ok(false),
        };
        let handed_out = matches!(claimed, Ok(true));
        let refused = match claimed {
            Ok(false) => view.asynchronous(OperationKind::Provision, accepts_incomplete).err(),
            Ok(true) => None,
            Err(e) => Some(e),
        };
        if let Some(e) = refused {
            return Err(self.withdraw(id, &op_id, e).await);
        }
        // A member is handed out within the request: 201 at once.
        let asynchronous = asynchronous && !handed_out;

        let provision = work::Provision { may_adopt: handed_out };
        Ok(match self.broker.operations().carry_out(provision, written, &op_id, asynchronous).await? {
            None => Answer::Accepted(ProvisionResponse {
                operation: Some(op_id),
                dashboard_url: instance.dashboard_url,
                metadata: None,
            }),
            Some(done) => Answer::Done(ProvisionResponse {
                dashboard_url: done.dashboard_url,
                operation: None,
                metadata: Some(done.metadata).filter(|m| !m.is_empty()),
            }),
        })
    }

    /// Withdraws a provision that will not go ahead (its record becomes a tombstone) and
    /// gives back the room it took on its engine; `e` is what the platform is told.
    async fn withdraw(&self, id: &str, op_id: &str, e: OsbError) -> OsbError {
        let e = self.broker.operations().give_up(id, op_id, e, work::Provision::withdrawn).await;
        if let Err(release) = self.broker.engines().release_slots(id).await {
            tracing::warn!(instance_id = id, error = %release, "could not give back a withdrawn provision's room; it goes with its next deprovision");
        }
        e
    }

    /// `PATCH /v2/service_instances/{id}`.
    pub async fn update(
        &self,
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
        // The instance names the plan when the request does not.
        let Some(Versioned { version, record: mut instance }) = self.live_instance(id).await? else {
            return Err(OsbError::NotFound(format!("instance {id} does not exist")));
        };
        if req.service_id != instance.service_id {
            return Err(OsbError::BadRequest(format!(
                "service_id {:?} is not the instance's service {:?}",
                req.service_id, instance.service_id
            )));
        }
        let target_plan_id = req.plan_id.clone().map_or_else(|| instance.plan_id.clone(), Into::into);
        let view = self.broker.registrar().plan_view(&instance.service_id, &target_plan_id).await?;
        let plan_changes = target_plan_id != instance.plan_id;
        if plan_changes {
            let service = &view.service;
            let current_updateable =
                service.plan(&instance.plan_id).is_some_and(|current| service.plan_updateable(current));
            if !current_updateable {
                return Err(OsbError::Unprocessable(format!(
                    "plan {} of service {} cannot be changed (plan_updateable is false)",
                    instance.plan_id, service.id
                )));
            }
        }
        check_maintenance(&view.plan, req.maintenance_info.as_ref())?;
        if req.parameters.is_some() {
            view.plan.validate_parameters(SchemaFor::Update, req.parameters.as_ref()).map_err(OsbError::BadRequest)?;
        }
        let asynchronous = view.asynchronous(OperationKind::Update, accepts_incomplete)?;
        let pending = PendingUpdate {
            plan_id: req.plan_id.clone().map(Into::into),
            parameters: req.parameters.clone(),
            context: req.context.clone(),
            maintenance_info: req.maintenance_info.clone().map(Into::into),
        };
        if let Some(running) = instance.operations.running() {
            if running.kind == OperationKind::Update && running.update.as_ref() == Some(&pending) {
                return resent(id, running, accepts_incomplete)
                    .map(|operation| Answer::Accepted(UpdateResponse { operation, ..Default::default() }));
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
        let mut op = self.broker.operations().start_op(OperationKind::Update, asynchronous);
        op.update = Some(pending);
        let op_id = op.id.clone();
        instance.operations.push(op);
        let written = self.start_or_give_up(version, &instance).await?;
        if plan_changes
            && let Err(e) =
                self.broker.registrar().confirm_plan(&view.service.id, &view.plan.id, &view.entry.content).await
        {
            return Err(self.broker.operations().give_up(id, &op_id, e, work::Update::withdrawn).await);
        }

        Ok(match self.broker.operations().carry_out(work::Update, written, &op_id, asynchronous).await? {
            None => Answer::Accepted(UpdateResponse { operation: Some(op_id), ..Default::default() }),
            Some(done) => Answer::Done(UpdateResponse {
                dashboard_url: done.dashboard_url,
                operation: None,
                metadata: Some(done.metadata).filter(|m| !m.is_empty()),
            }),
        })
    }

    /// `DELETE /v2/service_instances/{id}`.
    pub async fn deprovision(&self, id: &str, query: &DeleteQuery) -> OsbResult<Answer<OperationResponse>> {
        let accepts_incomplete =
            removal_accepts_incomplete(self.broker.registrar(), query, OperationKind::Deprovision).await?;
        let Some(Versioned { version, record: mut instance }) = self.live_instance(id).await? else {
            return Err(OsbError::Gone);
        };
        if let Some(running) = instance.operations.running() {
            return removal_while("instance", id, running, OperationKind::Deprovision, accepts_incomplete);
        }
        if let Some(binding) = self.bindings_of(id).await?.into_iter().find(|b| b.operations.running().is_some()) {
            return Err(OsbError::ConcurrencyError(format!(
                "binding {} of instance {id} is busy; retry when it has finished",
                binding.id
            )));
        }
        let (backend, manifest) = self
            .broker
            .registrar()
            .teardown_backend(&self.broker.registrar().registry().await?.record, &instance)
            .await?;
        let execution =
            manifest.as_ref().map_or(Execution::Either, |m| backend.execution(m, OperationKind::Deprovision));
        let asynchronous = run_asynchronously(execution, accepts_incomplete)?;
        let op = self.broker.operations().start_op(OperationKind::Deprovision, asynchronous);
        let op_id = op.id.clone();
        instance.operations.push(op);
        let written = self.start_or_give_up(version, &instance).await?;
        // The deprovision side of the race with a bind or unbind (bindings.rs): now
        // that its operation is written, a binding operation that started meanwhile
        // wins and the deprovision is refused.
        let busy = match self.bindings_of(id).await {
            Ok(bindings) => bindings.into_iter().find(|b| b.operations.running().is_some()),
            Err(e) => return Err(self.broker.operations().give_up(id, &op_id, e, work::Deprovision::withdrawn).await),
        };
        if let Some(binding) = busy {
            let reason = format!("binding {} of instance {id} is busy; retry when it has finished", binding.id);
            let refusal = OsbError::ConcurrencyError(reason);
            return Err(self.broker.operations().give_up(id, &op_id, refusal, work::Deprovision::withdrawn).await);
        }

        Ok(match self.broker.operations().carry_out(work::Deprovision, written, &op_id, asynchronous).await? {
            None => Answer::Accepted(OperationResponse { operation: Some(op_id) }),
            Some(_) => Answer::Done(OperationResponse::default()),
        })
    }

    /// `GET /v2/service_instances/{id}`.
    pub async fn fetch(&self, id: &str) -> OsbResult<FetchInstanceResponse> {
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
    pub async fn last_operation(&self, id: &str, operation: Option<&str>) -> OsbResult<LastOperationResponse> {
        let found = self.core.records.get::<ServiceInstance>(id).await?.filter(|v| v.record.pool.is_none());
        let Some(Versioned { record: instance, .. }) = found else {
            let what = format!("instance {id} does not exist");
            return Err(purge::last_operation_gone(operation, OperationKind::Deprovision, what));
        };
        let asked = Asked {
            id,
            removal: OperationKind::Deprovision,
            forgotten_before: self.broker.tombstones().forgotten_before(instance.created_at),
            live: instance.is_live(),
        };
        last_operation_of(&instance.operations, operation, &asked)
    }

    /// A live (not deprovisioned) instance.
    pub async fn live_instance(&self, id: &str) -> OsbResult<Option<Versioned<ServiceInstance>>> {
        self.core.live_instance(id).await
    }

    /// An instance a platform asked for, live or deprovisioned (its tombstone, kept for
    /// the retention); never a pool member.
    pub async fn instance_or_tombstone(&self, id: &str) -> OsbResult<Option<ServiceInstance>> {
        self.core.instance_or_tombstone(id).await
    }

    /// The live bindings of an instance, from the index by instance.
    pub async fn bindings_of(&self, instance_id: &str) -> OsbResult<Vec<Binding>> {
        self.core.bindings_of(instance_id).await
    }

    /// [`Instances::start_operation`], giving the operation up (`operations/withdraw.rs`) when its
    /// write failed in a way that may have landed all the same.
    pub(in crate::broker) async fn start_or_give_up(
        &self,
        version: u64,
        instance: &ServiceInstance,
    ) -> OsbResult<Versioned<ServiceInstance>> {
        match self.start_operation(version, instance).await {
            Ok((version, record)) => Ok(Versioned { version, record }),
            Err(lost @ OsbError::ConcurrencyError(_)) => Err(lost),
            Err(e) => {
                let op_id = instance.operations.last().map(|op| op.id.clone()).unwrap_or_default();
                Err(self.broker.operations().give_up(&instance.id, &op_id, e, |_: &mut ServiceInstance| {}).await)
            }
        }
    }

    /// Writes an instance that has just been given a new running operation (its last),
    /// with the event of its start; losing the race to another request is a
    /// `ConcurrencyError`. A write that only changed the instance's liveness (the
    /// monitor's) or drained its outbox (the sequencer's) is no such race: the
    /// operation starts on top of it. Returns the version and the record written.
    async fn start_operation(&self, version: u64, instance: &ServiceInstance) -> OsbResult<(u64, ServiceInstance)> {
        let lost = || {
            OsbError::ConcurrencyError(format!(
                "instance {} was changed by another request at the same time; retry",
                instance.id
            ))
        };
        let op = instance.operations.last().cloned().ok_or_else(lost)?;
        let started = Event::operation(op.kind, Step::Started, &op.id);
        let mut attempt = (version, instance.clone());
        self.broker.operations().announce(&mut attempt.1, started.clone());
        for _ in 0..CAS_RETRIES {
            match self.core.records.replace(attempt.0, &attempt.1).await {
                Ok(version) => {
                    self.core.events.announced();
                    return Ok((version, attempt.1));
                }
                Err(StoreError::Conflict(_)) => {}
                Err(StoreError::NotFound(_)) => return Err(lost()),
                Err(e) => return Err(e.into()),
            }
            let Some(Versioned { version, record: mut current }) =
                self.core.records.get::<ServiceInstance>(&instance.id).await?
            else {
                return Err(lost());
            };
            let liveness = std::mem::replace(&mut current.liveness, instance.liveness.clone());
            let outbox = std::mem::replace(&mut current.outbox, instance.outbox.clone());
            current.operations.push(op.clone());
            if current != *instance {
                return Err(lost());
            }
            (current.liveness, current.outbox) = (liveness, outbox);
            self.broker.operations().announce(&mut current, started.clone());
            attempt = (version, current);
        }
        Err(lost())
    }
}

/// How often an operation's start is retried over liveness writes.
const CAS_RETRIES: usize = 4;

/// Answers a provision for an id that exists: 202 while the same provision runs, 200 if
/// it is done with the same attributes, 409 otherwise.
fn provision_existing(
    instance: &ServiceInstance,
    req: &ProvisionRequest,
    accepts_incomplete: bool,
) -> OsbResult<Answer<ProvisionResponse>> {
    let empty = Value::Object(Map::new());
    let same = req.service_id == instance.service_id
        && req.plan_id == instance.plan_id
        && req.organization_guid == instance.organization_guid
        && req.space_guid == instance.space_guid
        && instance.parameters.as_ref().unwrap_or(&empty) == req.parameters.as_ref().unwrap_or(&empty);
    if !same {
        return Err(OsbError::Conflict(format!("instance {} already exists with different attributes", instance.id)));
    }
    match instance.status {
        InstanceStatus::Provisioning => match instance.operations.running() {
            Some(running) => resent(&instance.id, running, accepts_incomplete).map(|operation| {
                Answer::Accepted(ProvisionResponse {
                    operation,
                    dashboard_url: instance.dashboard_url.clone(),
                    metadata: None,
                })
            }),
            None => Err(OsbError::ConcurrencyError(format!("instance {} is being provisioned; retry", instance.id))),
        },
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

/// A new instance record for a provision, with its first operation.
pub(super) fn new_instance(
    id: &str,
    req: &ProvisionRequest,
    view: &PlanView,
    placed: &Placed,
    op: Operation,
) -> ServiceInstance {
    // The instance is created when its provision starts.
    let created_at = op.started_at;
    let mut operations = OperationLog::default();
    operations.push(op);
    let mut labels = Map::new();
    labels.insert("esm/manifest_id".into(), json!(view.manifest.id));
    labels.insert("esm/backend".into(), json!(view.backend.name()));
    let mut instance = ServiceInstance {
        id: id.to_owned(),
        service_id: req.service_id.to_string(),
        plan_id: req.plan_id.to_string(),
        organization_guid: req.organization_guid.to_string(),
        space_guid: req.space_guid.to_string(),
        context: req.context.clone(),
        parameters: req.parameters.clone(),
        maintenance_info: req.maintenance_info.clone().map(Into::into).or_else(|| view.plan.maintenance_info.clone()),
        metadata: InstanceMetadata { labels, attributes: Map::new() },
        dashboard_url: None,
        manifest_id: view.manifest.id.clone(),
        manifest_type: Some(view.manifest.manifest_type.clone()),
        status: InstanceStatus::Provisioning,
        deployment: Map::new(),
        operations,
        created_at,
        liveness: None,
        deployment_id: None,
        pool: None,
        host_ports: Default::default(),
        outbox: Default::default(),
        engine: placed.engine.clone(),
        retiring: None,
    };
    // Known before anything runs, so an asynchronous 202 carries it too (OSB).
    instance.dashboard_url = placed
        .backend
        .dashboard_url(&instance, &view.manifest)
        .filter(|url| crate::backend::check_dashboard_url(url).is_ok());
    instance
}
