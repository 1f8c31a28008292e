//! What a request deploys with: the plan it names, with its service, manifest and
//! backend ([`PlanView`]), and the manifest and backend an existing instance was
//! deployed with.

use std::sync::Arc;

use crate::backend::Backend;
use crate::broker::{Registrar, run_asynchronously};
use crate::domain::catalog::{Plan, Service};
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::registry::{ManifestEntry, Registry};
use crate::error::{OsbError, OsbResult};

/// A plan as a request sees it (see [`Registrar::plan_view`]).
pub(in crate::broker) struct PlanView {
    pub(in crate::broker) service: Service,
    pub(in crate::broker) plan: Plan,
    pub(in crate::broker) entry: ManifestEntry,
    pub(in crate::broker) manifest: Manifest,
    pub(in crate::broker) backend: Arc<dyn Backend>,
}

impl PlanView {
    /// Whether `kind` runs asynchronously for a platform that does (not) accept it;
    /// 422 `AsyncRequired` if it must and the platform does not.
    pub(in crate::broker) fn asynchronous(&self, kind: OperationKind, accepts_incomplete: bool) -> OsbResult<bool> {
        run_asynchronously(self.backend.execution(&self.manifest, kind), accepts_incomplete)
    }
}

impl Registrar<'_> {
    /// A plan a request names, with the manifest and backend that deploy it; 400 if
    /// the catalog does not have it.
    pub(in crate::broker) async fn plan_view(&self, service_id: &str, plan_id: &str) -> OsbResult<PlanView> {
        let registry = self
            .registry_holding(|r| {
                r.service(service_id).is_some_and(|s| s.plan(plan_id).is_some())
                    && r.manifests.values().any(|m| m.plan_id == plan_id)
            })
            .await?
            .record;
        let service = registry
            .service(service_id)
            .ok_or_else(|| OsbError::BadRequest(format!("unknown service_id {service_id:?}")))?
            .clone();
        let plan = service
            .plan(plan_id)
            .ok_or_else(|| OsbError::BadRequest(format!("unknown plan_id {plan_id:?} for service {service_id}")))?
            .clone();
        let (entry, manifest) = self.manifest_in(&registry, plan_id).await?;
        let backend = self.core.backend(&manifest)?;
        Ok(PlanView { service, plan, entry, manifest, backend })
    }

    /// The manifest registered for a plan in `registry`: its entry and its content.
    pub(in crate::broker) async fn manifest_in(
        &self,
        registry: &Registry,
        plan_id: &str,
    ) -> OsbResult<(ManifestEntry, Manifest)> {
        let (_, entry) = registry.manifest_for_plan(plan_id).ok_or_else(|| {
            OsbError::BadRequest(format!(
                "plan {plan_id:?} has no manifest registered; register one with PUT /v2/et/manifest/{{id}}"
            ))
        })?;
        let manifest = self.stored_manifest(entry).await?;
        Ok((entry.clone(), manifest))
    }

    /// An instance's plan in `registry` with the manifest the instance was deployed
    /// with (a later registration may have replaced the plan's): what deploying it
    /// again elsewhere uses (`operations/relocate.rs`).
    pub(in crate::broker) async fn instance_view(
        &self,
        registry: &Registry,
        instance: &ServiceInstance,
    ) -> OsbResult<PlanView> {
        let service = registry
            .service(&instance.service_id)
            .ok_or_else(|| OsbError::Internal(format!("service {} is gone from the catalog", instance.service_id)))?
            .clone();
        let plan = service
            .plan(&instance.plan_id)
            .ok_or_else(|| OsbError::Internal(format!("plan {} is gone from the catalog", instance.plan_id)))?
            .clone();
        let entry = registry.manifests.get(&instance.manifest_id).cloned().ok_or_else(|| {
            OsbError::Internal(format!("manifest {:?} of instance {} is missing", instance.manifest_id, instance.id))
        })?;
        let manifest = self.stored_manifest(&entry).await?;
        let backend = self.core.backend(&manifest)?;
        Ok(PlanView { service, plan, entry, manifest, backend })
    }

    /// The manifest an instance was deployed with, if it is still registered (it is,
    /// for instances created by this esm; see `registry/`).
    pub(in crate::broker) async fn instance_manifest(
        &self,
        registry: &Registry,
        instance: &ServiceInstance,
    ) -> OsbResult<Option<Manifest>> {
        match registry.manifests.get(&instance.manifest_id) {
            Some(entry) => Ok(Some(self.stored_manifest(entry).await?)),
            None => Ok(None),
        }
    }

    /// The backend and manifest an instance was deployed with.
    pub(in crate::broker) async fn instance_backend(
        &self,
        registry: &Registry,
        instance: &ServiceInstance,
    ) -> OsbResult<(Arc<dyn Backend>, Manifest)> {
        let manifest = self.instance_manifest(registry, instance).await?.ok_or_else(|| {
            OsbError::Internal(format!("manifest {:?} of instance {} is missing", instance.manifest_id, instance.id))
        })?;
        let backend = self.broker.engines().backend_of(instance, &manifest.manifest_type).await?;
        Ok((backend, manifest))
    }

    /// The backend of an instance and its manifest if it is still there: removing what
    /// was deployed needs only the backend, which the instance names itself.
    pub(in crate::broker) async fn teardown_backend(
        &self,
        registry: &Registry,
        instance: &ServiceInstance,
    ) -> OsbResult<(Arc<dyn Backend>, Option<Manifest>)> {
        let manifest = self.instance_manifest(registry, instance).await?;
        let manifest_type = manifest.as_ref().map(|m| m.manifest_type.as_str()).or(instance.manifest_type.as_deref());
        if let Some(manifest_type) = manifest_type
            && instance.engine.is_some()
        {
            return Ok((self.broker.engines().backend_of(instance, manifest_type).await?, manifest));
        }
        let by_type = manifest_type.and_then(|t| self.core.backends.get(t));
        // Instances of esm 0.1 name their backend only in a label.
        let by_label = || {
            let name = instance.metadata.labels.get("esm/backend")?.as_str()?;
            self.core.backends.all().iter().find(|b| b.name() == name)
        };
        let backend = by_type
            .or_else(by_label)
            .cloned()
            .ok_or_else(|| OsbError::Internal(format!("no backend of this esm deployed instance {}", instance.id)))?;
        Ok((backend, manifest))
    }
}
