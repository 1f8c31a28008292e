//! The work of a `relocate` operation: an instance deployed again on another engine,
//! which a drain's evacuation starts (`engines/evacuate.rs`), never a platform.
//!
//! The engine is picked, and room taken on it, before the operation is recorded
//! (`Operation::relocate_to`): every run of the operation deploys there. The run makes
//! the new deployment under an id of its own (`moved-…`, from the operation's id, so a
//! resumed run finds what an earlier one made) and waits for it to be ready and seen
//! up. Its result's write is the
//! move: the instance names the new engine and deployment, and keeps the old one as
//! `retiring`. Only then are its bindings pointed at the new deployment and the old one
//! removed (`Engines::retire`), from that durable mark, so a crash in between leaves
//! the instance working on the old addresses and the next round finishes the move. A
//! run that fails removes what it made: the instance stays where it was.

use crate::broker::Operations;
use std::collections::BTreeMap;

use async_trait::async_trait;

use super::work::failure;
use crate::backend::{BackendError, Deployment};
use crate::broker::liveness::{FirstLook, Folded};
use crate::broker::runner::{Call, Work};
use crate::domain::engine::DEFAULT_ENGINE;
use crate::domain::instance::{Retiring, ServiceInstance};
use crate::domain::liveness::LivenessStatus;
use crate::domain::operation::{Operation, OperationKind};
use crate::error::OsbResult;

/// Moves an instance to another engine.
pub(in crate::broker) struct Relocate;

/// The deployment a move made.
pub(in crate::broker) struct Moved {
    engine: Option<String>,
    deployed_id: String,
    deployment: Deployment,
    host_ports: BTreeMap<String, u16>,
    dashboard_url: Option<String>,
    look: FirstLook,
}

#[async_trait]
impl Work for Relocate {
    const KIND: OperationKind = OperationKind::Relocate;
    type Record = ServiceInstance;
    type Output = Moved;

    async fn call(&self, call: Call<'_, ServiceInstance>) -> Result<Moved, BackendError> {
        let Call { ops, registry, record: instance, op } = call;
        let deployed_id = op.moved_id().ok_or_else(|| BackendError::new("not a move"))?;
        let to = op.relocate_to.as_deref().unwrap_or(DEFAULT_ENGINE);
        let target = ServiceInstance {
            id: deployed_id.clone(),
            engine: (to != DEFAULT_ENGINE).then(|| to.to_owned()),
            deployment: serde_json::Map::new(),
            deployment_id: None,
            host_ports: BTreeMap::new(),
            retiring: None,
            liveness: None,
            ..instance.clone()
        };
        let reached = async {
            let view = ops.broker.registrar().instance_view(registry, instance).await?;
            let backend = ops.broker.engines().backend_of(&target, &view.manifest.manifest_type).await?;
            Ok::<_, crate::error::OsbError>((view, backend))
        };
        let (view, backend) = match reached.await {
            Ok(reached) => reached,
            Err(e) => {
                // Nothing is deployed where it cannot be reached; the room goes back.
                if let Err(left) = ops.broker.inventory().release_resources(&deployed_id).await {
                    tracing::warn!(instance = %instance.id, error = %left, "could not give back a failed move's room");
                }
                return Err(failure(e));
            }
        };
        let made = async {
            let host_ports = ops.broker.inventory().lease_host_ports(backend.as_ref(), &view.manifest, &target).await?;
            let target = ServiceInstance { host_ports, ..target.clone() };
            let deployment = backend.provision(&target, &view.manifest).await?;
            ops.broker.inventory().take_inventory(backend.as_ref(), &target).await;
            let made = ServiceInstance { deployment: deployment.details.clone(), ..target };
            let look = ops.broker.liveness().look_first(backend.as_ref(), &made).await;
            // Moved only once the new deployment is seen up: an instance that works
            // where it is stays there rather than move to where it may not.
            let mut seen = made.clone();
            ops.broker.liveness().fold_look(&mut seen, &look);
            if seen.liveness_status() != LivenessStatus::Up {
                let why = seen.liveness.as_ref().map(|l| l.reason.clone()).filter(|r| !r.is_empty());
                let why = why.unwrap_or_else(|| format!("seen {}", seen.liveness_status().as_str()));
                return Err(BackendError::new(format!("the new deployment is not up: {why}")));
            }
            let dashboard_url = backend
                .dashboard_url(&made, &view.manifest)
                .filter(|url| crate::backend::check_dashboard_url(url).is_ok());
            Ok(Moved {
                engine: made.engine.clone(),
                deployed_id: deployed_id.clone(),
                deployment,
                host_ports: made.host_ports,
                dashboard_url,
                look,
            })
        };
        match made.await {
            Ok(moved) => Ok(moved),
            Err(e) => {
                // Nothing of the failed move stays: the new deployment, its inventory,
                // its host ports and its room on the engine.
                if let Err(left) = backend.deprovision(&target, Some(&view.manifest)).await {
                    tracing::warn!(instance = %instance.id, deployment = %deployed_id, error = %left, "could not remove what a failed move made");
                }
                if let Err(left) = ops.broker.inventory().release_resources(&deployed_id).await {
                    tracing::warn!(instance = %instance.id, deployment = %deployed_id, error = %left, "could not forget what a failed move held");
                }
                Err(e)
            }
        }
    }

    fn record(&self, instance: &mut ServiceInstance, op: &Operation, result: &Result<Moved, BackendError>) {
        let Ok(moved) = result else {
            return;
        };
        instance.retiring = Some(Retiring {
            engine: instance.engine.take(),
            deployed_id: instance.deployed_id().to_owned(),
            deployment: std::mem::take(&mut instance.deployment),
            host_ports: std::mem::take(&mut instance.host_ports),
            since: op.finished_at.unwrap_or(op.started_at),
        });
        instance.engine.clone_from(&moved.engine);
        instance.deployment_id = Some(moved.deployed_id.clone());
        instance.deployment.clone_from(&moved.deployment.details);
        instance.host_ports.clone_from(&moved.host_ports);
        if moved.dashboard_url.is_some() {
            instance.dashboard_url.clone_from(&moved.dashboard_url);
        }
    }

    fn fold(
        &self,
        ops: &Operations<'_>,
        instance: &mut ServiceInstance,
        result: &Result<Moved, BackendError>,
    ) -> Option<Folded> {
        result.as_ref().ok().map(|moved| ops.broker.liveness().fold_look(instance, &moved.look))
    }

    /// The bindings move and the old deployment goes at once; what fails here is
    /// finished by the evacuation's next round (the instance is marked `retiring`).
    async fn after(&self, ops: &Operations<'_>, instance: &ServiceInstance) -> OsbResult<()> {
        if instance.retiring.is_some()
            && let Err(e) = ops.broker.engines().retire(&instance.id).await
        {
            tracing::warn!(instance = %instance.id, error = %e, "a moved instance's old deployment is not retired yet; the next round finishes it");
        }
        Ok(())
    }
}
