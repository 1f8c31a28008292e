//! What each kind of operation does (see [`Work`]): its backend call and what its
//! result changes in the instance or binding record. The runner (`runner.rs`) does the
//! rest, the same for all five.

use crate::broker::Operations;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::backend::{Backend, BackendError, BindOutput, Deployment};
use crate::broker::liveness::{FirstLook, Folded};
use crate::broker::runner::{Call, Outcome, Work};
use crate::domain::binding::{Binding, BindingMetadata, BindingStatus, Credentials};
use crate::domain::instance::{InstanceStatus, PendingUpdate, ServiceInstance};
use crate::domain::manifest::Manifest;
use crate::domain::operation::{Operation, OperationKind};
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};

/// Deploys a new instance.
pub(in crate::broker) struct Provision {
    /// Whether the instance may have been handed a warm pool member, whose deployment
    /// it then adopts: a new provision knows whether its request claimed one; one
    /// resumed or taken over must look.
    pub(in crate::broker) may_adopt: bool,
}
/// Redeploys an instance with its pending update applied.
pub(in crate::broker) struct Update;
/// Removes what an instance's deployment made.
pub(in crate::broker) struct Deprovision;
/// Creates a binding's credentials.
pub(in crate::broker) struct Bind;
/// Revokes a binding's credentials.
pub(in crate::broker) struct Unbind;

/// The task running an instance operation.
pub(in crate::broker) type InstanceTask = JoinHandle<OsbResult<Outcome<ServiceInstance>>>;
/// The task running a binding operation.
pub(in crate::broker) type BindingTask = JoinHandle<OsbResult<Outcome<Binding>>>;

impl Operations<'_> {
    /// Runs an instance's operation (after a restart, or taken over from another replica).
    pub(in crate::broker) fn resume_instance_operation(&self, id: String, op: &Operation) -> Option<InstanceTask> {
        let op_id = op.id.clone();
        match op.kind {
            OperationKind::Provision => Some(self.spawn_work(Provision { may_adopt: true }, id, op_id, None)),
            OperationKind::Update => Some(self.spawn_work(Update, id, op_id, None)),
            OperationKind::Deprovision => Some(self.spawn_work(Deprovision, id, op_id, None)),
            OperationKind::Relocate => Some(self.spawn_work(super::relocate::Relocate, id, op_id, None)),
            OperationKind::Bind | OperationKind::Unbind => None,
        }
    }

    /// Runs a binding's operation (after a restart, or taken over from another replica).
    pub(in crate::broker) fn resume_binding_operation(&self, id: String, op: &Operation) -> Option<BindingTask> {
        let op_id = op.id.clone();
        match op.kind {
            OperationKind::Bind => Some(self.spawn_work(Bind, id, op_id, None)),
            OperationKind::Unbind => Some(self.spawn_work(Unbind, id, op_id, None)),
            OperationKind::Provision | OperationKind::Update | OperationKind::Deprovision | OperationKind::Relocate => {
                None
            }
        }
    }

    /// The instance, backend and manifest behind a binding.
    async fn binding_backend(
        &self,
        registry: &Registry,
        binding: &Binding,
    ) -> OsbResult<(ServiceInstance, Arc<dyn Backend>, Manifest)> {
        let instance = self
            .core
            .live_instance(&binding.instance_id)
            .await?
            .ok_or_else(|| OsbError::Internal(format!("instance {} is gone", binding.instance_id)))?
            .record;
        let (backend, manifest) = self.broker.registrar().instance_backend(registry, &instance).await?;
        Ok((instance, backend, manifest))
    }
}

/// A broker error on the way to the backend, as the operation's failure.
pub(super) fn failure(e: OsbError) -> BackendError {
    BackendError::new(e.to_string())
}

/// What a provision produced: a deployment of its own, or a warm pool member's.
pub(in crate::broker) enum Deployed {
    /// Deployed by the backend now, with the host ports leased for it, and the first
    /// look at it.
    Made { deployment: Deployment, host_ports: BTreeMap<String, u16>, look: FirstLook },
    /// Handed a pool member (`pools/`): its deployment becomes the instance's.
    Adopted(Box<ServiceInstance>),
}

#[async_trait]
impl Work for Provision {
    const KIND: OperationKind = OperationKind::Provision;
    type Record = ServiceInstance;
    type Output = Deployed;

    async fn call(&self, call: Call<'_, ServiceInstance>) -> Result<Deployed, BackendError> {
        let Call { ops, registry, record: instance, .. } = call;
        if self.may_adopt
            && instance.pool.is_none()
            && let Some(member) = ops.broker.pools().member_claimed_by(&instance.id).await.map_err(failure)?
        {
            return Ok(Deployed::Adopted(Box::new(member)));
        }
        let (backend, manifest) = ops.broker.registrar().instance_backend(registry, instance).await.map_err(failure)?;
        if !crate::domain::pool::deploys_recorded_manifest(instance, registry) {
            return Err(BackendError::new("the plan's manifest changed before the member was deployed"));
        }
        let host_ports = ops.broker.inventory().lease_host_ports(backend.as_ref(), &manifest, instance).await?;
        let target = ServiceInstance { host_ports: host_ports.clone(), ..instance.clone() };
        let deployment = backend.provision(&target, &manifest).await?;
        ops.broker.inventory().take_inventory(backend.as_ref(), &target).await;
        let made = ServiceInstance { deployment: deployment.details.clone(), ..target };
        let look = ops.broker.liveness().look_first(backend.as_ref(), &made).await;
        Ok(Deployed::Made { deployment, host_ports, look })
    }

    /// Nothing was deployed: the record is a tombstone, so the id can be provisioned
    /// again at once.
    fn withdrawn(instance: &mut ServiceInstance) {
        instance.status = InstanceStatus::Deprovisioned;
    }

    fn record(&self, instance: &mut ServiceInstance, op: &Operation, result: &Result<Deployed, BackendError>) {
        match result {
            Ok(Deployed::Made { deployment, host_ports, .. }) => {
                instance.status = InstanceStatus::Provisioned;
                instance.deployment = deployment.details.clone();
                instance.host_ports.clone_from(host_ports);
            }
            Ok(Deployed::Adopted(member)) => {
                instance.status = InstanceStatus::Provisioned;
                instance.deployment = member.deployment.clone();
                instance.deployment_id = Some(member.deployed_id().to_owned());
                instance.engine.clone_from(&member.engine);
                instance.dashboard_url.clone_from(&member.dashboard_url);
                instance.liveness.clone_from(&member.liveness);
                instance.host_ports.clone_from(&member.host_ports);
            }
            // A synchronous failure answers 500 and leaves nothing behind, so the same
            // request can simply be retried; an asynchronous one stays for the platform
            // to see when it polls, and to deprovision.
            Err(_) if op.asynchronous => instance.status = InstanceStatus::ProvisionFailed,
            Err(_) => instance.status = InstanceStatus::Deprovisioned,
        }
    }

    fn fold(
        &self,
        ops: &Operations<'_>,
        instance: &mut ServiceInstance,
        result: &Result<Deployed, BackendError>,
    ) -> Option<Folded> {
        match result {
            Ok(Deployed::Made { look, .. }) => Some(ops.broker.liveness().fold_look(instance, look)),
            _ => None,
        }
    }

    /// A member's deploy tells its pool (the backoff). An adopted member is retired by
    /// the pool's keeper at its next round: not here, so the answer waits for no more
    /// than the instance's own write.
    /// A failed provision's inventory is forgotten and its host ports go back to the
    /// range (what it made is gone).
    async fn after(&self, ops: &Operations<'_>, instance: &ServiceInstance) -> OsbResult<()> {
        if instance.status != InstanceStatus::Provisioned {
            ops.broker.inventory().release_resources(instance.deployed_id()).await?;
        }
        if instance.deployed_id() != instance.id {
            // Handed a member: the room taken for a deployment of its own goes back.
            ops.broker.engines().release_slots(&instance.id).await?;
        }
        if instance.pool.is_some() {
            return ops.broker.pools().member_deployed(instance).await;
        }
        Ok(())
    }
}

/// What a successful update deployed, and with which manifest.
pub(in crate::broker) struct Redeployed {
    deployment: Deployment,
    dashboard_url: Option<String>,
    manifest: Manifest,
    host_ports: BTreeMap<String, u16>,
    look: FirstLook,
}

#[async_trait]
impl Work for Update {
    const KIND: OperationKind = OperationKind::Update;
    type Record = ServiceInstance;
    type Output = Redeployed;

    /// The plan the instance moves to bounds its update.
    fn plan<'a>(&self, instance: &'a ServiceInstance, op: &'a Operation) -> (&'a str, &'a str) {
        let target = op.update.as_ref().and_then(|u| u.plan_id.as_deref());
        (&instance.service_id, target.unwrap_or(&instance.plan_id))
    }

    async fn call(&self, call: Call<'_, ServiceInstance>) -> Result<Redeployed, BackendError> {
        let Call { ops, registry, record: instance, op } = call;
        let pending = op.update.as_ref().ok_or_else(|| BackendError::new("the update has no changes recorded"))?;
        let mut target = apply_update(instance.clone(), pending);
        let (_, manifest) = ops.broker.registrar().manifest_in(registry, &target.plan_id).await.map_err(failure)?;
        let backend = ops.broker.engines().backend_of(&target, &manifest.manifest_type).await.map_err(failure)?;
        target.host_ports = ops.broker.inventory().lease_host_ports(backend.as_ref(), &manifest, &target).await?;
        let target = target.deployed();
        let deployment = backend.update(&target, &manifest).await;
        // Taken whether or not it worked: a failed update may have changed something.
        ops.broker.inventory().take_inventory(backend.as_ref(), &target).await;
        let deployment = deployment?;
        let dashboard_url =
            backend.dashboard_url(&target, &manifest).filter(|url| crate::backend::check_dashboard_url(url).is_ok());
        let made = ServiceInstance { deployment: deployment.details.clone(), ..target.into_owned() };
        let look = ops.broker.liveness().look_first(backend.as_ref(), &made).await;
        Ok(Redeployed { deployment, dashboard_url, manifest, host_ports: made.host_ports, look })
    }

    fn record(&self, instance: &mut ServiceInstance, op: &Operation, result: &Result<Redeployed, BackendError>) {
        let Ok(redeployed) = result else {
            return;
        };
        if let Some(pending) = &op.update {
            *instance = apply_update(instance.clone(), pending);
        }
        instance.deployment = redeployed.deployment.details.clone();
        instance.host_ports.clone_from(&redeployed.host_ports);
        if redeployed.dashboard_url.is_some() {
            instance.dashboard_url = redeployed.dashboard_url.clone();
        }
        instance.manifest_id = redeployed.manifest.id.clone();
        instance.manifest_type = Some(redeployed.manifest.manifest_type.clone());
        instance.metadata.labels.insert("esm/manifest_id".into(), json!(redeployed.manifest.id));
    }

    fn fold(
        &self,
        ops: &Operations<'_>,
        instance: &mut ServiceInstance,
        result: &Result<Redeployed, BackendError>,
    ) -> Option<Folded> {
        result.as_ref().ok().map(|redeployed| ops.broker.liveness().fold_look(instance, &redeployed.look))
    }
}

#[async_trait]
impl Work for Deprovision {
    const KIND: OperationKind = OperationKind::Deprovision;
    type Record = ServiceInstance;
    type Output = ();

    async fn call(&self, call: Call<'_, ServiceInstance>) -> Result<(), BackendError> {
        let Call { ops, registry, record: instance, .. } = call;
        let (backend, manifest) = ops.broker.registrar().teardown_backend(registry, instance).await.map_err(failure)?;
        ops.broker.inventory().mark_releasing(instance.deployed_id()).await;
        let target = instance.deployed();
        let removed = backend.deprovision(&target, manifest.as_ref()).await;
        if removed.is_err() {
            // Still held, as far as it was not removed.
            ops.broker.inventory().take_inventory(backend.as_ref(), &target).await;
        }
        removed
    }

    fn record(&self, instance: &mut ServiceInstance, _op: &Operation, result: &Result<(), BackendError>) {
        if result.is_ok() {
            instance.status = InstanceStatus::Deprovisioned;
            instance.deployment.clear();
            instance.host_ports.clear();
        }
    }

    /// Its inventory is forgotten (its host ports go back to the range), and bindings
    /// go with their instance (platforms unbind first; this covers those that do not).
    async fn after(&self, ops: &Operations<'_>, instance: &ServiceInstance) -> OsbResult<()> {
        if instance.status != InstanceStatus::Deprovisioned {
            return Ok(());
        }
        ops.broker.inventory().release_resources(instance.deployed_id()).await?;
        for binding in ops.core.bindings_of(&instance.id).await? {
            ops.core
                .records
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

#[async_trait]
impl Work for Bind {
    const KIND: OperationKind = OperationKind::Bind;
    type Record = Binding;
    /// The credentials, their lifetime, and the digest of the reporting token in them.
    type Output = (BindOutput, BindingMetadata, Option<String>);

    async fn call(&self, call: Call<'_, Binding>) -> Result<Self::Output, BackendError> {
        let Call { ops, registry, record: binding, .. } = call;
        let (instance, backend, manifest) = ops.binding_backend(registry, binding).await.map_err(failure)?;
        let lifetime =
            registry.service(&instance.service_id).and_then(|s| s.plan(&instance.plan_id)?.binding_lifetime_seconds);
        let mut output = backend.bind(&instance.deployed(), binding, &manifest).await?;
        let token_digest = ops.broker.liveness().hand_out_reporting_token(binding, &mut output.credentials);
        // The lifetime counts from when the credentials exist.
        let clock = ops.core.clock();
        let metadata = lifetime.map_or_else(BindingMetadata::default, |seconds| {
            let lifetime = Duration::from_secs(u64::from(seconds));
            BindingMetadata {
                expires_at: Some(clock.timestamp_in(lifetime)),
                // Ask for rotation once four fifths of the lifetime are gone.
                renew_before: Some(clock.timestamp_in(lifetime * 4 / 5)),
            }
        });
        Ok((output, metadata, token_digest))
    }

    /// No credentials were made: the binding is a tombstone, so its id can be bound
    /// again at once.
    fn withdrawn(binding: &mut Binding) {
        binding.status = BindingStatus::Unbound;
    }

    fn record(&self, binding: &mut Binding, op: &Operation, result: &Result<Self::Output, BackendError>) {
        match result {
            Ok((output, metadata, token_digest)) => {
                binding.status = BindingStatus::Bound;
                binding.liveness_token_sha256.clone_from(token_digest);
                binding.credentials = Some(Credentials(output.credentials.clone()));
                binding.endpoints = output.endpoints.clone();
                if !metadata.is_empty() {
                    binding.metadata = metadata.clone();
                }
            }
            Err(_) if op.asynchronous => binding.status = BindingStatus::BindFailed,
            Err(_) => binding.status = BindingStatus::Unbound,
        }
    }
}

#[async_trait]
impl Work for Unbind {
    const KIND: OperationKind = OperationKind::Unbind;
    type Record = Binding;
    type Output = ();

    async fn call(&self, call: Call<'_, Binding>) -> Result<(), BackendError> {
        let Call { ops, registry, record: binding, .. } = call;
        let Some(instance) = ops.core.live_instance(&binding.instance_id).await.map_err(failure)? else {
            // Deprovisioned since (a takeover of an unbind whose process died before it
            // checked its instance): the deprovision revoked the binding already.
            return Ok(());
        };
        let (backend, manifest) =
            ops.broker.registrar().instance_backend(registry, &instance.record).await.map_err(failure)?;
        backend.unbind(&instance.record.deployed(), binding, &manifest).await
    }

    fn record(&self, binding: &mut Binding, _op: &Operation, result: &Result<(), BackendError>) {
        if result.is_ok() {
            binding.status = BindingStatus::Unbound;
            // Revoked credentials are not kept.
            binding.credentials = None;
        }
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
