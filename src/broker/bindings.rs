//! Binding operations: bind, unbind, fetch, last_operation.

use serde_json::{Map, Value};

use super::operations::answers::{Asked, last_operation_of, removal_while, resent};
use super::runner::Work;
use super::{Answer, busy, purge, removal_accepts_incomplete, require, require_object, run_asynchronously, work};
use crate::domain::binding::{Binding, BindingMetadata, BindingStatus};
use crate::domain::catalog::SchemaFor;
use crate::domain::event::{Event, Step};
use crate::domain::instance::InstanceStatus;
use crate::domain::operation::{OperationKind, OperationLog};
use crate::error::{OsbError, OsbResult};
use crate::store::{StoreError, Versioned, index};
use crate::wire::{
    BindRequest, BindingResponse, BindingSummary, DeleteQuery, LastOperationResponse, OperationResponse,
};

service! {
    /// Binds, unbinds and fetches bindings.
    Bindings
}

impl Bindings<'_> {
    /// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`.
    pub async fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        req: BindRequest,
        accepts_incomplete: bool,
    ) -> OsbResult<Answer<BindingResponse>> {
        require("binding_id", binding_id)?;
        require("service_id", &req.service_id)?;
        require("plan_id", &req.plan_id)?;
        require_object("parameters", req.parameters.as_ref())?;
        require_object("context", req.context.as_ref())?;
        require_object("bind_resource", req.bind_resource.as_ref())?;
        // What the request alone decides comes first (see docs/api.md, "How esm answers").
        let view = self.broker.registrar().plan_view(&req.service_id, &req.plan_id).await?;
        if !view.service.plan_bindable(&view.plan) {
            return Err(OsbError::BadRequest(format!("plan {} is not bindable", view.plan.id)));
        }
        view.plan.validate_parameters(SchemaFor::Bind, req.parameters.as_ref()).map_err(OsbError::BadRequest)?;
        let app_guid = req.app_guid.as_deref().or_else(|| req.bind_resource.as_ref()?.get("app_guid")?.as_str());
        if view.backend.requires_app(&view.manifest) && app_guid.is_none_or(|g| g.is_empty()) {
            return Err(OsbError::RequiresApp);
        }
        let asynchronous = view.asynchronous(OperationKind::Bind, accepts_incomplete)?;

        let Some(Versioned { record: instance, .. }) = self.core.live_instance(instance_id).await? else {
            return Err(OsbError::NotFound(format!("instance {instance_id} does not exist")));
        };
        if req.service_id != instance.service_id || req.plan_id != instance.plan_id {
            return Err(OsbError::BadRequest(format!(
                "service_id/plan_id {}/{} do not match instance {instance_id} ({}/{})",
                req.service_id, req.plan_id, instance.service_id, instance.plan_id
            )));
        }
        let existing = self.core.records.get::<Binding>(binding_id).await?;
        if let Some(Versioned { record, .. }) = &existing
            && record.is_live()
        {
            return bind_existing(record, instance_id, &req, accepts_incomplete);
        }
        if let Some(running) = instance.operations.running() {
            return Err(busy("instance", instance_id, running.kind));
        }
        if instance.status != InstanceStatus::Provisioned {
            return Err(OsbError::Unprocessable(format!(
                "instance {instance_id} failed to provision and cannot be bound"
            )));
        }
        if let Some(predecessor_id) = &req.predecessor_binding_id {
            self.check_predecessor(view.plan.binding_rotatable, predecessor_id, instance_id).await?;
        }
        let op = self.broker.operations().start_op(OperationKind::Bind, asynchronous);
        let op_id = op.id.clone();
        let mut operations = OperationLog::default();
        operations.push(op);
        if let Some(tombstone) = &existing {
            operations = self.broker.tombstones().inherit(&tombstone.record.operations, operations);
        }
        let mut binding = Binding {
            id: binding_id.to_owned(),
            instance_id: instance_id.to_owned(),
            service_id: req.service_id.to_string(),
            plan_id: req.plan_id.to_string(),
            app_guid: req.app_guid.clone().map(Into::into),
            bind_resource: req.bind_resource.clone(),
            context: req.context.clone(),
            parameters: req.parameters.clone(),
            predecessor_binding_id: req.predecessor_binding_id.clone().map(Into::into),
            credentials: None,
            endpoints: None,
            metadata: BindingMetadata::default(),
            status: BindingStatus::Binding,
            operations,
            created_at: self.core.clock().timestamp(),
            liveness_token_sha256: None,
            // The tombstone's events not yet in the log come first (`domain::outbox`).
            outbox: existing.as_ref().map(|t| t.record.outbox.clone()).unwrap_or_default(),
        };
        self.broker.operations().announce(&mut binding, Event::operation(OperationKind::Bind, Step::Started, &op_id));
        let written = self.core.records.create_announced(existing.as_ref(), &binding).await;
        let Some(written) = self.started::<work::Bind>(written, instance_id, binding_id, &op_id).await? else {
            return match self.core.records.get::<Binding>(binding_id).await? {
                Some(winner) if winner.record.is_live() => {
                    bind_existing(&winner.record, instance_id, &req, accepts_incomplete)
                }
                _ => Err(OsbError::ConcurrencyError(format!(
                    "binding {binding_id} is being changed by another request; retry"
                ))),
            };
        };

        Ok(match self.broker.operations().carry_out(work::Bind, written, &op_id, asynchronous).await? {
            None => Answer::Accepted(BindingResponse { operation: Some(op_id), ..Default::default() }),
            Some(done) => Answer::Done(binding_body(&done, false)),
        })
    }

    /// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}`.
    pub async fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        query: &DeleteQuery,
    ) -> OsbResult<Answer<OperationResponse>> {
        let accepts_incomplete =
            removal_accepts_incomplete(self.broker.registrar(), query, OperationKind::Unbind).await?;
        let Some(Versioned { version, record: mut binding }) = self.live_binding(instance_id, binding_id).await? else {
            return Err(OsbError::Gone);
        };
        if let Some(running) = binding.operations.running() {
            return removal_while("binding", binding_id, running, OperationKind::Unbind, accepts_incomplete);
        }
        let Some(Versioned { record: instance, .. }) = self.core.live_instance(instance_id).await? else {
            return Err(OsbError::Gone);
        };
        let (backend, manifest) = self
            .broker
            .registrar()
            .instance_backend(&self.broker.registrar().registry().await?.record, &instance)
            .await?;
        let asynchronous = run_asynchronously(backend.execution(&manifest, OperationKind::Unbind), accepts_incomplete)?;
        let op = self.broker.operations().start_op(OperationKind::Unbind, asynchronous);
        let op_id = op.id.clone();
        let before = binding.clone();
        binding.operations.push(op);
        self.broker.operations().announce(&mut binding, Event::operation(OperationKind::Unbind, Step::Started, &op_id));
        let written = self.core.records.replace_announced(version, &before, &binding).await;
        let Some(written) = self.started::<work::Unbind>(written, instance_id, binding_id, &op_id).await? else {
            return Err(OsbError::ConcurrencyError(format!(
                "binding {binding_id} was changed by another request at the same time; retry"
            )));
        };

        Ok(match self.broker.operations().carry_out(work::Unbind, written, &op_id, asynchronous).await? {
            None => Answer::Accepted(OperationResponse { operation: Some(op_id) }),
            Some(_) => Answer::Done(OperationResponse::default()),
        })
    }

    /// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`.
    pub async fn fetch(&self, instance_id: &str, binding_id: &str) -> OsbResult<BindingResponse> {
        let not_found = || OsbError::NotFound(format!("binding {binding_id} of instance {instance_id} does not exist"));
        let binding = self.live_binding(instance_id, binding_id).await?.ok_or_else(not_found)?.record;
        // OSB: 404 while the bind is still running (or failed).
        if !matches!(binding.status, BindingStatus::Bound) {
            return Err(not_found());
        }
        Ok(binding_body(&binding, true))
    }

    /// `GET /v2/et/service_instances/{instance_id}/bindings`: a page of the instance's
    /// live bindings, without credentials, and the id to continue after if there may be
    /// more.
    pub async fn page(
        &self,
        instance_id: &str,
        after: Option<String>,
        limit: usize,
    ) -> OsbResult<(Vec<BindingSummary>, Option<String>)> {
        if self.core.live_instance(instance_id).await?.is_none() {
            return Err(OsbError::NotFound(format!("instance {instance_id} does not exist")));
        }
        let filters = vec![(index::INSTANCE_ID.to_owned(), instance_id.to_owned())];
        let (bindings, next_after) = self.core.page_of::<Binding>(filters, after, limit).await?;
        Ok((bindings.iter().map(BindingSummary::from).collect(), next_after))
    }

    /// `GET .../service_bindings/{binding_id}/last_operation`.
    pub async fn last_operation(
        &self,
        instance_id: &str,
        binding_id: &str,
        operation: Option<&str>,
    ) -> OsbResult<LastOperationResponse> {
        let binding = self
            .core
            .records
            .get::<Binding>(binding_id)
            .await?
            .map(|v| v.record)
            .filter(|b| b.instance_id == instance_id)
            .ok_or_else(|| {
                let what = format!("binding {binding_id} of instance {instance_id} does not exist");
                purge::last_operation_gone(operation, OperationKind::Unbind, what)
            })?;
        let forgotten_before = self.broker.tombstones().forgotten_before(binding.created_at);
        let asked = Asked { id: binding_id, removal: OperationKind::Unbind, forgotten_before, live: binding.is_live() };
        last_operation_of(&binding.operations, operation, &asked)
    }

    /// The binding as `written` with its operation `op_id` (of kind `W`) started, once
    /// its instance is confirmed; `None` where another request's write came first. A
    /// write that failed otherwise may have landed all the same (its answer lost): the
    /// operation is given up on.
    async fn started<W: Work<Record = Binding>>(
        &self,
        written: Result<Versioned<Binding>, StoreError>,
        instance_id: &str,
        binding_id: &str,
        op_id: &str,
    ) -> OsbResult<Option<Versioned<Binding>>> {
        match written {
            Ok(written) => {
                self.core.events.announced();
                self.confirm_instance::<W>(instance_id, binding_id, op_id).await?;
                Ok(Some(written))
            }
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(self.broker.operations().give_up(binding_id, op_id, e.into(), W::withdrawn).await),
        }
    }

    /// A bind or unbind races a deprovision of its instance: each checks the other
    /// only after writing its own operation, so of two that overlap at least one sees
    /// the other and is refused (`422 ConcurrencyError`). Here the binding side: its
    /// operation `op_id` (of kind `W`) is written; if the instance is gone or being
    /// deprovisioned, the operation is withdrawn before it runs (a bind leaves no
    /// binding) and the request is refused. Without this a bind could create
    /// credentials after the deprovision had revoked the instance's, and an unbind find
    /// its instance gone.
    async fn confirm_instance<W: Work<Record = Binding>>(
        &self,
        instance_id: &str,
        binding_id: &str,
        op_id: &str,
    ) -> OsbResult<()> {
        let reason = match self.core.live_instance(instance_id).await {
            Ok(None) => format!("instance {instance_id} was deprovisioned meanwhile"),
            Ok(Some(v)) if v.record.operations.running().is_some_and(|op| op.kind == OperationKind::Deprovision) => {
                format!("instance {instance_id} is being deprovisioned")
            }
            // A move started meanwhile: credentials made now would be the old
            // deployment's, which the move removes.
            Ok(Some(v)) if v.record.operations.running().is_some_and(|op| op.kind == OperationKind::Relocate) => {
                format!("instance {instance_id} is being moved to another engine")
            }
            Ok(Some(_)) => return Ok(()),
            Err(e) => return Err(self.broker.operations().give_up(binding_id, op_id, e, W::withdrawn).await),
        };
        let refusal = OsbError::ConcurrencyError(format!("{reason}; binding {binding_id} is unchanged"));
        Err(self.broker.operations().give_up(binding_id, op_id, refusal, W::withdrawn).await)
    }

    async fn live_binding(&self, instance_id: &str, binding_id: &str) -> OsbResult<Option<Versioned<Binding>>> {
        Ok(self
            .core
            .records
            .get::<Binding>(binding_id)
            .await?
            .filter(|v| v.record.is_live() && v.record.instance_id == instance_id))
    }

    /// OSB 2.17 rotation: the predecessor must be a live, bound, unexpired binding of
    /// the same instance, and the plan must allow rotation.
    async fn check_predecessor(
        &self,
        rotatable: Option<bool>,
        predecessor_id: &str,
        instance_id: &str,
    ) -> OsbResult<()> {
        if rotatable != Some(true) {
            return Err(OsbError::BadRequest(
                "predecessor_binding_id given, but the plan is not binding_rotatable".into(),
            ));
        }
        let predecessor = self
            .live_binding(instance_id, predecessor_id)
            .await?
            .map(|v| v.record)
            .filter(|b| b.status == BindingStatus::Bound)
            .ok_or_else(|| {
                OsbError::BadRequest(format!(
                    "predecessor_binding_id {predecessor_id:?} is not a binding of instance {instance_id}"
                ))
            })?;
        if predecessor.metadata.expires_at.is_some_and(|at| self.core.clock().is_past(at)) {
            return Err(OsbError::BadRequest(format!("predecessor binding {predecessor_id} has expired")));
        }
        Ok(())
    }
}

/// Answers a bind for an id that exists: 202 while the same bind runs, 200 if it is
/// bound with the same attributes, 409 otherwise.
fn bind_existing(
    binding: &Binding,
    instance_id: &str,
    req: &BindRequest,
    accepts_incomplete: bool,
) -> OsbResult<Answer<BindingResponse>> {
    let empty = Value::Object(Map::new());
    let same = binding.instance_id == instance_id
        && req.service_id == binding.service_id
        && req.plan_id == binding.plan_id
        && binding.app_guid.as_deref() == req.app_guid.as_deref()
        && binding.bind_resource == req.bind_resource
        && binding.predecessor_binding_id.as_deref() == req.predecessor_binding_id.as_deref()
        && binding.parameters.as_ref().unwrap_or(&empty) == req.parameters.as_ref().unwrap_or(&empty);
    if !same {
        return Err(OsbError::Conflict(format!("binding {} already exists with different attributes", binding.id)));
    }
    match binding.status {
        BindingStatus::Binding => match binding.operations.running() {
            Some(running) => resent(&binding.id, running, accepts_incomplete)
                .map(|operation| Answer::Accepted(BindingResponse { operation, ..Default::default() })),
            None => Err(OsbError::ConcurrencyError(format!("binding {} is being created; retry", binding.id))),
        },
        BindingStatus::Bound => Ok(Answer::AlreadyDone(binding_body(binding, false))),
        BindingStatus::BindFailed | BindingStatus::Unbound => Err(OsbError::Conflict(format!(
            "binding {} exists but its bind failed; unbind it before binding again",
            binding.id
        ))),
    }
}

/// The binding as the platform sees it; `parameters` only on fetch.
fn binding_body(binding: &Binding, with_parameters: bool) -> BindingResponse {
    BindingResponse {
        credentials: binding.credentials.clone(),
        endpoints: binding.endpoints.clone(),
        parameters: if with_parameters { binding.parameters.clone() } else { None },
        metadata: Some(binding.metadata.clone()).filter(|m| !m.is_empty()),
        operation: None,
    }
}
