//! The catalog and its ElasTest management: `GET /v2/catalog`, service and manifest
//! registration and removal. Every change goes through the registry (see
//! `registry/mod.rs`), so the catalog's rules hold under any concurrency.

use crate::broker::Registrar;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::content_key;
use crate::backend::Backend;
use crate::domain::catalog::Service;
use crate::domain::event::{Event, EventKind};
use crate::domain::manifest::Manifest;
use crate::domain::registry::{ManifestChange, ManifestEntry, StoredManifest};
use crate::error::{OsbError, OsbResult};
use crate::wire::CatalogResponse;

/// Whether a registration created something new or replaced/confirmed what was there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// Created: 201.
    Created,
    /// Replaced (services) or already there identically (manifests): 200.
    Existing,
}

/// How often a service replacement starts over when the service changed between
/// retiring the plans it drops and putting it in place.
const REPLACE_ATTEMPTS: usize = 4;

impl Registrar<'_> {
    /// `GET /v2/catalog`.
    pub async fn catalog(&self) -> OsbResult<CatalogResponse> {
        Ok(CatalogResponse { services: self.registry().await?.record.services.clone() })
    }

    /// `PUT /v2/et/catalog`: registers a service, or replaces the one with the same id.
    /// Names and plan ids stay unique; a replacement may not drop a plan that a live
    /// instance uses, and the manifests of the plans it drops go with them. The catalog
    /// stays within `ESM_CATALOG_MAX_*`. Registering a service exactly as it is
    /// registered changes nothing: no write, no event.
    pub async fn register_service(&self, mut service: Service) -> OsbResult<Registered> {
        let limits = self.core.settings.catalog;
        service.validate_for_registration(&limits).map_err(OsbError::BadRequest)?;
        for _ in 0..REPLACE_ATTEMPTS {
            // Most registrations drop no plan and are one compare-and-set.
            let (existed, dropped, changed) = self
                .change_registry(|registry, now| {
                    let current = registry.service(&service.id);
                    let existed = current.is_some();
                    if current == Some(&service) {
                        return Ok((true, BTreeSet::new(), false));
                    }
                    let dropped = registry.check_service(&service, now)?;
                    registry.check_service_limits(&service, &limits)?;
                    if dropped.is_empty() {
                        registry.put_service(service.clone());
                    }
                    Ok((existed, dropped, true))
                })
                .await?;
            let registered = if existed { Registered::Existing } else { Registered::Created };
            if dropped.is_empty() {
                if changed {
                    self.announce_service(EventKind::ServiceRegistered, &service.id);
                }
                return Ok(registered);
            }
            let what = format!("service {} cannot drop its plans", service.id);
            let removed = self
                .retire_plans(dropped.clone(), &what, |registry, now| {
                    let now_dropped = registry.check_service(&service, now)?;
                    if !now_dropped.is_subset(&dropped) {
                        return Ok(None);
                    }
                    registry.check_service_limits(&service, &limits)?;
                    Ok(Some(registry.put_service(service.clone())))
                })
                .await?;
            if let Some(contents) = removed {
                self.remove_contents(contents).await;
                self.announce_service(EventKind::ServiceRegistered, &service.id);
                return Ok(registered);
            }
        }
        Err(OsbError::ConcurrencyError(format!("service {} kept changing while being replaced; retry", service.id)))
    }

    fn announce_service(&self, kind: EventKind, service_id: &str) {
        let mut event = Event::new(kind);
        event.service_id = Some(service_id.to_owned());
        self.core.events.emit(event);
    }

    /// `DELETE /v2/et/catalog/{service_id}`: refused while instances exist; the
    /// service's manifests go with it.
    pub async fn delete_service(&self, service_id: &str) -> OsbResult<()> {
        let gone = || OsbError::NotFound(format!("service {service_id} is not in the catalog"));
        let registry = self.registry().await?.record;
        if registry.service(service_id).is_none() {
            return Err(gone());
        }
        let plans = registry.plans_dropped(service_id, None);
        let what = format!("service {service_id} cannot be deleted");
        let contents = self
            .retire_plans(plans.clone(), &what, |registry, _| {
                if registry.service(service_id).is_none() {
                    return Err(gone());
                }
                if !registry.plans_dropped(service_id, None).is_subset(&plans) {
                    return Err(OsbError::ConcurrencyError(format!("{what}: it gained a plan meanwhile; retry")));
                }
                Ok(registry.remove_service(service_id))
            })
            .await?;
        self.remove_contents(contents).await;
        self.announce_service(EventKind::ServiceRemoved, service_id);
        Ok(())
    }

    /// `PUT /v2/et/manifest/{manifest_id}`.
    /// Registering a manifest exactly as it is registered changes nothing (no write).
    pub async fn register_manifest(&self, manifest_id: &str, mut manifest: Manifest) -> OsbResult<Registered> {
        // The path names the manifest, whatever the body says (as the original did).
        manifest.id = manifest_id.to_owned();
        manifest.validate_fields().map_err(OsbError::BadRequest)?;
        let backend = self.core.backends.get(&manifest.manifest_type).ok_or_else(|| {
            OsbError::BadRequest(format!(
                "unknown manifest_type {:?}; this esm supports: {}",
                manifest.manifest_type,
                self.core.backends.types().join(", ")
            ))
        })?;
        // Refuse what the registry refuses before the costly check and the write.
        let key = content_key(&manifest);
        let entry = ManifestEntry::of(&manifest, key.clone());
        let now = self.core.clock().millis();
        let limits = self.core.settings.catalog;
        let registry = self.registry().await?.record;
        if registry.check_manifest(manifest_id, &entry, now)? == ManifestChange::Same {
            return Ok(Registered::Existing);
        }
        registry.check_manifest_limits(manifest_id, &entry, &limits)?;
        drop(registry);
        self.check_manifest(backend.clone(), &manifest)
            .await
            .map_err(|e| OsbError::BadRequest(format!("invalid {} manifest: {e}", manifest.manifest_type)))?;
        // The content first, the entry that names it second: a registered manifest
        // always has its content.
        self.core.records.insert(&StoredManifest { key: key.clone(), manifest }).await?;
        let registered = self
            .change_registry(|registry, now| {
                let change = registry.check_manifest(manifest_id, &entry, now)?;
                if change == ManifestChange::New {
                    registry.check_manifest_limits(manifest_id, &entry, &limits)?;
                    registry.manifests.insert(manifest_id.to_owned(), entry.clone());
                }
                Ok(change)
            })
            .await;
        match registered {
            Ok(ManifestChange::New) => Ok(Registered::Created),
            Ok(ManifestChange::Same) => {
                // An identical registration won the race; this content is unused.
                self.remove_contents(vec![key]).await;
                Ok(Registered::Existing)
            }
            Err(e) => {
                self.remove_contents(vec![key]).await;
                Err(e)
            }
        }
    }

    /// Runs a backend's manifest check off the async runtime's workers (it parses
    /// untrusted YAML), a few at a time and within a time budget, so a slow check
    /// never delays other requests.
    async fn check_manifest(&self, backend: Arc<dyn Backend>, manifest: &Manifest) -> Result<(), String> {
        let permit =
            self.room.manifest_checks.clone().acquire_owned().await.map_err(|_| "esm is shutting down".to_owned())?;
        let manifest = manifest.clone();
        // The permit goes with the check: a check that outlives its request's timeout
        // still holds its core's place until it ends.
        let check = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            backend.check_manifest(&manifest)
        });
        let budget = self.core.settings.manifest_check_timeout;
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

    /// `GET /v2/et/manifest/{manifest_id}`.
    pub async fn manifest_by_id(&self, manifest_id: &str) -> OsbResult<Manifest> {
        let registry = self.registry().await?.record;
        let entry = registry
            .manifests
            .get(manifest_id)
            .ok_or_else(|| OsbError::NotFound(format!("manifest {manifest_id} does not exist")))?;
        self.stored_manifest(entry).await
    }

    /// `GET /v2/et/manifest`.
    pub async fn list_manifests(&self) -> OsbResult<Vec<Manifest>> {
        let registry = self.registry().await?.record;
        let mut manifests = Vec::with_capacity(registry.manifests.len());
        for entry in registry.manifests.values() {
            manifests.push(self.stored_manifest(entry).await?);
        }
        Ok(manifests)
    }

    /// `DELETE /v2/et/manifest/{manifest_id}`: refused while instances use its plan.
    pub async fn delete_manifest(&self, manifest_id: &str) -> OsbResult<()> {
        let gone = || OsbError::NotFound(format!("manifest {manifest_id} does not exist"));
        let entry = self.registry().await?.record.manifests.get(manifest_id).cloned().ok_or_else(gone)?;
        let what = format!("manifest {manifest_id} cannot be deleted");
        self.retire_plans([entry.plan_id.clone()].into(), &what, |registry, _| {
            match registry.manifests.get(manifest_id) {
                Some(current) if current == &entry => {
                    registry.manifests.remove(manifest_id);
                    Ok(())
                }
                Some(_) => Err(OsbError::ConcurrencyError(format!("{what}: it was registered again meanwhile; retry"))),
                None => Err(gone()),
            }
        })
        .await?;
        self.remove_contents(vec![entry.content]).await;
        Ok(())
    }

    /// Deletes manifest contents no registry entry names any more. A failure only
    /// leaves an unused record behind, so it is logged, not answered.
    async fn remove_contents(&self, keys: Vec<String>) {
        for key in keys {
            if let Err(e) = self.core.records.delete::<StoredManifest>(&key, None).await {
                tracing::warn!(content = %key, error = %e, "could not delete an unused manifest content");
            }
        }
    }
}
