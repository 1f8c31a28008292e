//! The ElasTest instance view: instances with live deployment details.

use serde_json::{Map, Value, json};

use super::Broker;
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::operation::OperationState;
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};
use crate::wire::{EtInstance, EtState};

impl Broker {
    /// `GET /v2/et/service_instances`.
    pub async fn et_instances(&self) -> OsbResult<Vec<EtInstance>> {
        let registry = self.registry().await?.record;
        let mut out = Vec::new();
        for instance in self.live_instances().await? {
            out.push(self.et_view(&registry, instance).await?);
        }
        Ok(out)
    }

    /// `GET /v2/et/service_instances/{instance_id}`.
    pub async fn et_instance(&self, instance_id: &str) -> OsbResult<EtInstance> {
        let instance = self
            .live_instance(instance_id)
            .await?
            .ok_or_else(|| OsbError::NotFound(format!("instance {instance_id} does not exist")))?
            .record;
        self.et_view(&self.registry().await?.record, instance).await
    }

    async fn live_instances(&self) -> OsbResult<Vec<ServiceInstance>> {
        Ok(self
            .records
            .list::<ServiceInstance>()
            .await?
            .into_iter()
            .map(|v| v.record)
            .filter(ServiceInstance::is_live)
            .collect())
    }

    /// The original's instance shape: `context` holds the backend's live details plus
    /// `id` and `manifest_id` (which, unlike the original, backend keys cannot
    /// overwrite), `service_type` the offering, `state` the last operation.
    async fn et_view(&self, registry: &Registry, instance: ServiceInstance) -> OsbResult<EtInstance> {
        let service = registry.service(&instance.service_id).cloned().ok_or_else(|| {
            OsbError::Internal(format!("service {} of instance {} is gone", instance.service_id, instance.id))
        })?;
        let mut context = Map::new();
        let mut deployment = Vec::new();
        let mut problem = None;
        let info = match self.instance_backend(registry, &instance).await {
            Ok((backend, manifest)) => backend.info(&instance, &manifest).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match info {
            Ok(info) => {
                context.extend(info.flat);
                deployment = info.containers;
                problem = info.problem;
            }
            Err(e) => {
                context.insert("esm_info_error".into(), json!(e));
            }
        }
        context.insert("id".into(), Value::String(instance.id.clone()));
        context.insert("manifest_id".into(), Value::String(instance.manifest_id.clone()));
        let mut state = match instance.operations.last() {
            Some(op) => EtState { state: op.state, description: op.description.clone() },
            None => EtState { state: OperationState::Succeeded, description: None },
        };
        // A provisioned instance whose containers died or vanished is reported as such.
        if let Some(problem) = problem
            && state.state == OperationState::Succeeded
            && instance.status == InstanceStatus::Provisioned
        {
            state = EtState { state: OperationState::Failed, description: Some(problem) };
        }
        Ok(EtInstance { context, service_type: service, state, deployment })
    }
}
