//! The catalog and the ElasTest extensions: service and manifest registration, and
//! the instance view with live deployment details.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Broker;
use crate::backend::Backend;
use crate::domain::catalog::Service;
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationState;
use crate::error::{OsbError, OsbResult};
use crate::store::{StoreError, Versioned};
use crate::wire::{CatalogResponse, EtInstance, EtState};

/// Whether a registration created something new or replaced/confirmed what was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// Created: 201.
    Created,
    /// Replaced (services) or already there identically (manifests): 200.
    Existing,
}

impl Broker {
    /// `GET /v2/catalog`.
    pub async fn catalog(&self) -> OsbResult<CatalogResponse> {
        let services = self.records.list::<Service>().await?.into_iter().map(|v| v.record).collect();
        Ok(CatalogResponse { services })
    }

    /// `PUT /v2/et/catalog`: registers a service, or replaces the one with the same id.
    /// A replacement may not drop a plan that live instances still use, and plan ids
    /// must stay unique across services.
    pub async fn register_service(&self, mut service: Service) -> OsbResult<Registered> {
        service.validate_for_registration().map_err(OsbError::BadRequest)?;
        let services = self.records.list::<Service>().await?;
        for Versioned { record: other, .. } in &services {
            if other.id == service.id {
                continue;
            }
            if other.name == service.name {
                return Err(OsbError::Conflict(format!(
                    "service name {:?} is already used by service {}",
                    service.name, other.id
                )));
            }
            if let Some(plan) = service.plans.iter().find(|p| other.plan(&p.id).is_some()) {
                return Err(OsbError::Conflict(format!("plan id {} is already used by service {}", plan.id, other.id)));
            }
        }
        let previous = services.into_iter().find(|v| v.record.id == service.id);
        if let Some(Versioned { record: previous, .. }) = &previous {
            let instances = self.live_instances().await?;
            for dropped in previous.plans.iter().filter(|p| service.plan(&p.id).is_none()) {
                if let Some(inst) = instances.iter().find(|i| i.plan_id == dropped.id) {
                    return Err(OsbError::Conflict(format!(
                        "plan {} cannot be removed: instance {} uses it",
                        dropped.id, inst.id
                    )));
                }
            }
        }
        self.records.upsert(&service).await?;
        Ok(if previous.is_some() { Registered::Existing } else { Registered::Created })
    }

    /// Runs a backend's manifest check off the async runtime's workers (it parses
    /// untrusted YAML), a few at a time and within a time budget, so a slow check
    /// never delays other requests.
    async fn check_manifest(&self, backend: Arc<dyn Backend>, manifest: &Manifest) -> Result<(), String> {
        let permit =
            self.manifest_checks.clone().acquire_owned().await.map_err(|_| "esm is shutting down".to_owned())?;
        let manifest = manifest.clone();
        // The permit goes with the check: a check that outlives its request's timeout
        // still holds its core's place until it ends.
        let check = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            backend.check_manifest(&manifest)
        });
        let budget = self.settings.manifest_check_timeout;
        match tokio::time::timeout(budget, check).await {
            Ok(Ok(result)) => result,
            // A panic in a check is a bug; the manifest is refused, esm lives on.
            Ok(Err(join)) => {
                tracing::error!(error = %join, "a manifest check failed unexpectedly");
                Err("the manifest could not be checked".into())
            }
            Err(_) => Err(format!("checking it took longer than {budget:?} (ESM_MANIFEST_PARSE_TIMEOUT)")),
        }
    }

    /// `DELETE /v2/et/catalog/{service_id}`: refused while instances exist; the
    /// service's manifests go with it.
    pub async fn delete_service(&self, service_id: &str) -> OsbResult<()> {
        if self.records.get::<Service>(service_id).await?.is_none() {
            return Err(OsbError::NotFound(format!("service {service_id} is not in the catalog")));
        }
        if let Some(inst) = self.live_instances().await?.iter().find(|i| i.service_id == service_id) {
            return Err(OsbError::Conflict(format!(
                "service {service_id} still has instances (e.g. {}); deprovision them first",
                inst.id
            )));
        }
        for manifest in self.list_manifests().await?.iter().filter(|m| m.service_id == service_id) {
            self.records.delete::<Manifest>(&manifest.id, None).await?;
        }
        self.records.delete::<Service>(service_id, None).await?;
        Ok(())
    }

    /// `PUT /v2/et/manifest/{manifest_id}`.
    pub async fn register_manifest(&self, manifest_id: &str, mut manifest: Manifest) -> OsbResult<Registered> {
        // The path names the manifest, whatever the body says (as the original did).
        manifest.id = manifest_id.to_owned();
        manifest.validate_fields().map_err(OsbError::BadRequest)?;
        let service = self
            .records
            .get::<Service>(&manifest.service_id)
            .await?
            .ok_or_else(|| OsbError::BadRequest(format!("unknown service_id {:?}", manifest.service_id)))?
            .record;
        if service.plan(&manifest.plan_id).is_none() {
            return Err(OsbError::BadRequest(format!(
                "unknown plan_id {:?} for service {}",
                manifest.plan_id, service.id
            )));
        }
        let backend = self.backends.get(&manifest.manifest_type).ok_or_else(|| {
            OsbError::BadRequest(format!(
                "unknown manifest_type {:?}; this esm supports: {}",
                manifest.manifest_type,
                self.backends.types().join(", ")
            ))
        })?;
        self.check_manifest(backend.clone(), &manifest)
            .await
            .map_err(|e| OsbError::BadRequest(format!("invalid {} manifest: {e}", manifest.manifest_type)))?;
        let same_id = |existing: &Manifest| {
            if existing == &manifest {
                Ok(Registered::Existing)
            } else {
                Err(OsbError::Conflict(format!(
                    "manifest {manifest_id} already exists with different content; delete it first"
                )))
            }
        };
        for existing in self.list_manifests().await? {
            if existing.id == manifest.id {
                return same_id(&existing);
            }
            if existing.plan_id == manifest.plan_id {
                return Err(OsbError::Conflict(format!(
                    "plan {} already has manifest {}; a plan has one manifest",
                    manifest.plan_id, existing.id
                )));
            }
        }
        match self.records.insert(&manifest).await {
            Ok(_) => Ok(Registered::Created),
            Err(StoreError::Conflict(_)) => match self.records.get::<Manifest>(manifest_id).await? {
                Some(winner) => same_id(&winner.record),
                None => Err(OsbError::ConcurrencyError(format!("manifest {manifest_id} changed; retry"))),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// `GET /v2/et/manifest/{manifest_id}`.
    pub async fn manifest_by_id(&self, manifest_id: &str) -> OsbResult<Manifest> {
        self.records
            .get::<Manifest>(manifest_id)
            .await?
            .map(|v| v.record)
            .ok_or_else(|| OsbError::NotFound(format!("manifest {manifest_id} does not exist")))
    }

    /// `GET /v2/et/manifest`.
    pub async fn list_manifests(&self) -> OsbResult<Vec<Manifest>> {
        Ok(self.records.list::<Manifest>().await?.into_iter().map(|v| v.record).collect())
    }

    /// `DELETE /v2/et/manifest/{manifest_id}`: refused while instances use it.
    pub async fn delete_manifest(&self, manifest_id: &str) -> OsbResult<()> {
        self.manifest_by_id(manifest_id).await?;
        if let Some(inst) = self.live_instances().await?.iter().find(|i| i.manifest_id == manifest_id) {
            return Err(OsbError::Conflict(format!(
                "manifest {manifest_id} is in use by instance {}; deprovision it first",
                inst.id
            )));
        }
        self.records.delete::<Manifest>(manifest_id, None).await?;
        Ok(())
    }

    /// `GET /v2/et/service_instances`.
    pub async fn et_instances(&self) -> OsbResult<Vec<EtInstance>> {
        let mut out = Vec::new();
        for instance in self.live_instances().await? {
            out.push(self.et_view(instance).await?);
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
        self.et_view(instance).await
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
    async fn et_view(&self, instance: ServiceInstance) -> OsbResult<EtInstance> {
        let service = self
            .records
            .get::<Service>(&instance.service_id)
            .await?
            .ok_or_else(|| {
                OsbError::Internal(format!("service {} of instance {} is gone", instance.service_id, instance.id))
            })?
            .record;
        let mut context = Map::new();
        let mut deployment = Vec::new();
        let mut problem = None;
        let info = match self.instance_backend(&instance).await {
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
