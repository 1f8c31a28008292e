//! The registry: every service offering and every manifest of an esm, as one record.
//!
//! The rules that span offerings and manifests — service names and plan ids unique
//! across the catalog, one manifest per plan, a manifest's service and plan exist —
//! hold because the registry is one document: every change reads it, checks the rules
//! and writes it back with one compare-and-set, so two registrations racing on any
//! store (or on two replicas) cannot both pass a check that only one may pass.
//!
//! Manifest contents (up to `ESM_MANIFEST_MAX_BYTES` each) are kept out of it, each an
//! immutable record of its own ([`StoredManifest`]) that the registry names, so the
//! registry stays small.
//!
//! Instances are too many to live in one document, so the rule "an instance's plan,
//! service and manifest exist while it lives" is kept by [`Retirement`]s: whoever
//! removes a plan (deletes a manifest or a service, or drops a plan from a service)
//! first marks the plan as retiring, then looks for instances using it, and removes
//! it only if there are none and its mark is still there; a provision first writes its
//! instance, then checks that its plan is not retiring. Of two racing requests at least
//! one sees the other and backs out.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::catalog::{CatalogLimits, Service};
use super::manifest::Manifest;

/// How long a retirement holds its plans. Its remover normally releases it within
/// milliseconds; this bounds how long a remover that died midway blocks the plans.
pub const RETIREMENT_TTL_MS: u64 = 60_000;

/// Every offering and manifest (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// The offerings, ordered by id (the order `GET /v2/catalog` lists them in).
    #[serde(default)]
    pub services: Vec<Service>,
    /// The manifests, by id.
    #[serde(default)]
    pub manifests: BTreeMap<String, ManifestEntry>,
    /// Plans on their way out.
    #[serde(default)]
    pub retiring: Vec<Retirement>,
}

/// A registered manifest, with its content stored apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The offering of its plan.
    pub service_id: String,
    /// The plan it deploys.
    pub plan_id: String,
    /// Which backend deploys it.
    pub manifest_type: String,
    /// [`Manifest::digest`]: equal digests, equal manifests.
    pub digest: String,
    /// The id of its [`StoredManifest`], unique to this registration: whoever removes
    /// the entry may remove the content with it, as nothing else names it.
    pub content: String,
}

impl ManifestEntry {
    /// The entry for `manifest`, its content stored as `content`.
    pub fn of(manifest: &Manifest, content: String) -> Self {
        Self {
            service_id: manifest.service_id.clone(),
            plan_id: manifest.plan_id.clone(),
            manifest_type: manifest.manifest_type.clone(),
            digest: manifest.digest(),
            content,
        }
    }
}

/// A mark that some plans are being removed (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// Names the remover, which removes the plans only while its mark is still there.
    pub token: String,
    /// The plans being removed.
    pub plans: BTreeSet<String>,
    /// When it was set (milliseconds since the epoch); it lapses after
    /// [`RETIREMENT_TTL_MS`].
    pub since_ms: u64,
}

impl Retirement {
    fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.since_ms.saturating_add(RETIREMENT_TTL_MS)
    }
}

/// The content of a registered manifest, written before its registry entry and never
/// changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredManifest {
    /// Its record id ([`ManifestEntry::content`]).
    pub key: String,
    /// The manifest as registered.
    pub manifest: Manifest,
}

/// Why the registry refuses a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request names something that does not exist or is malformed: 400.
    BadRequest(String),
    /// The change clashes with what is registered: 409.
    Conflict(String),
    /// Another request is removing what the change needs; retrying later may work.
    Busy(String),
}

/// Whether a manifest registration is new or repeats what is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestChange {
    /// Not registered yet.
    New,
    /// Registered already with the same content.
    Same,
}

impl Registry {
    /// The offering with this id.
    pub fn service(&self, id: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The manifest registered for a plan, with its id.
    pub fn manifest_for_plan(&self, plan_id: &str) -> Option<(&str, &ManifestEntry)> {
        self.manifests.iter().find(|(_, m)| m.plan_id == plan_id).map(|(id, m)| (id.as_str(), m))
    }

    /// The retirement holding `plan_id` now, if any.
    pub fn retiring(&self, plan_id: &str, now_ms: u64) -> Option<&Retirement> {
        self.retiring.iter().find(|r| r.is_fresh(now_ms) && r.plans.contains(plan_id))
    }

    /// Whether a retirement has lapsed.
    pub fn has_lapsed_retirements(&self, now_ms: u64) -> bool {
        self.retiring.iter().any(|r| !r.is_fresh(now_ms))
    }

    /// Forgets lapsed retirements; whether there were any. Their removers can then no
    /// longer finish (their mark is gone), so proceeding past them is safe.
    pub fn drop_lapsed_retirements(&mut self, now_ms: u64) -> bool {
        let before = self.retiring.len();
        self.retiring.retain(|r| r.is_fresh(now_ms));
        self.retiring.len() != before
    }

    /// Marks plans as retiring under `token`.
    pub fn retire(&mut self, token: &str, plans: BTreeSet<String>, now_ms: u64) {
        self.retiring.push(Retirement { token: token.to_owned(), plans, since_ms: now_ms });
    }

    /// Removes the retirement `token`; whether it was still there.
    pub fn release(&mut self, token: &str) -> bool {
        let before = self.retiring.len();
        self.retiring.retain(|r| r.token != token);
        self.retiring.len() != before
    }

    /// Checks that `service` may be registered (new, or in place of the one with its
    /// id) and returns the plans of the current one it would drop.
    pub fn check_service(&self, service: &Service, now_ms: u64) -> Result<BTreeSet<String>, Refusal> {
        for other in self.services.iter().filter(|s| s.id != service.id) {
            if other.name == service.name {
                return Err(Refusal::Conflict(format!(
                    "service name {:?} is already used by service {}",
                    service.name, other.id
                )));
            }
            if let Some(plan) = service.plans.iter().find(|p| other.plan(&p.id).is_some()) {
                return Err(Refusal::Conflict(format!("plan id {} is already used by service {}", plan.id, other.id)));
            }
        }
        if let Some(plan) = service.plans.iter().find(|p| self.retiring(&p.id, now_ms).is_some()) {
            return Err(Refusal::Busy(format!("plan {} is being removed by another request", plan.id)));
        }
        Ok(self.plans_dropped(&service.id, Some(service)))
    }

    /// The plans of service `id` that are not in `replacement` (all of them for `None`).
    pub fn plans_dropped(&self, id: &str, replacement: Option<&Service>) -> BTreeSet<String> {
        let Some(current) = self.service(id) else {
            return BTreeSet::new();
        };
        current
            .plans
            .iter()
            .filter(|p| replacement.is_none_or(|r| r.plan(&p.id).is_none()))
            .map(|p| p.id.clone())
            .collect()
    }

    /// Puts `service` in place (after [`Registry::check_service`]); the manifests of the
    /// plans it drops go with them. Returns their content keys.
    pub fn put_service(&mut self, service: Service) -> Vec<String> {
        let dropped = self.plans_dropped(&service.id, Some(&service));
        match self.services.binary_search_by(|s| s.id.as_str().cmp(&service.id)) {
            Ok(at) => self.services[at] = service,
            Err(at) => self.services.insert(at, service),
        }
        self.remove_manifests_of(&dropped)
    }

    /// Removes service `id` and its manifests; returns their content keys.
    pub fn remove_service(&mut self, id: &str) -> Vec<String> {
        let dropped = self.plans_dropped(id, None);
        self.services.retain(|s| s.id != id);
        self.remove_manifests_of(&dropped)
    }

    fn remove_manifests_of(&mut self, plans: &BTreeSet<String>) -> Vec<String> {
        let mut keys = Vec::new();
        self.manifests.retain(|_, m| {
            let keep = !plans.contains(&m.plan_id);
            if !keep {
                keys.push(m.content.clone());
            }
            keep
        });
        keys
    }

    /// Checks that manifest `id` may be registered as `entry`.
    pub fn check_manifest(&self, id: &str, entry: &ManifestEntry, now_ms: u64) -> Result<ManifestChange, Refusal> {
        let service = self
            .service(&entry.service_id)
            .ok_or_else(|| Refusal::BadRequest(format!("unknown service_id {:?}", entry.service_id)))?;
        if service.plan(&entry.plan_id).is_none() {
            return Err(Refusal::BadRequest(format!("unknown plan_id {:?} for service {}", entry.plan_id, service.id)));
        }
        if let Some(existing) = self.manifests.get(id) {
            return if existing.digest == entry.digest {
                Ok(ManifestChange::Same)
            } else {
                Err(Refusal::Conflict(format!("manifest {id} already exists with different content; delete it first")))
            };
        }
        if let Some((other, _)) = self.manifest_for_plan(&entry.plan_id) {
            return Err(Refusal::Conflict(format!(
                "plan {} already has manifest {other}; a plan has one manifest",
                entry.plan_id
            )));
        }
        if self.retiring(&entry.plan_id, now_ms).is_some() {
            return Err(Refusal::Busy(format!("plan {} is being removed by another request", entry.plan_id)));
        }
        Ok(ManifestChange::New)
    }

    /// Checks that putting `service` in place keeps the registry within `limits` (the
    /// count of services and the record's bytes). A replacement that does not grow
    /// the record passes even when a lowered limit is already exceeded.
    pub fn check_service_limits(&self, service: &Service, limits: &CatalogLimits) -> Result<(), Refusal> {
        let current = self.service(&service.id);
        if current.is_none() && self.services.len() >= limits.max_services {
            return Err(Refusal::Conflict(format!(
                "the catalog holds {} services, the most ESM_CATALOG_MAX_SERVICES allows; delete one first",
                self.services.len()
            )));
        }
        self.check_growth(json_size(service).saturating_sub(current.map_or(0, json_size)), limits)
    }

    /// Checks that adding manifest `id` as `entry` keeps the registry within `limits`.
    pub fn check_manifest_limits(
        &self,
        id: &str,
        entry: &ManifestEntry,
        limits: &CatalogLimits,
    ) -> Result<(), Refusal> {
        if self.manifests.len() >= limits.max_manifests {
            return Err(Refusal::Conflict(format!(
                "{} manifests are registered, the most ESM_CATALOG_MAX_MANIFESTS allows; delete one first",
                self.manifests.len()
            )));
        }
        self.check_growth(json_size(id) + json_size(entry), limits)
    }

    fn check_growth(&self, growth: usize, limits: &CatalogLimits) -> Result<(), Refusal> {
        if growth == 0 {
            return Ok(());
        }
        let size = json_size(self);
        if size.saturating_add(growth) > limits.max_registry_bytes {
            return Err(Refusal::Conflict(format!(
                "the catalog would take {} bytes, over the {} ESM_CATALOG_MAX_BYTES allows",
                size.saturating_add(growth),
                limits.max_registry_bytes
            )));
        }
        Ok(())
    }

    /// Checks that an instance may be created on (or moved to) `plan_id` with the
    /// manifest whose content is `content`: the plan exists, is not retiring, and still
    /// has that manifest.
    pub fn check_plan_in_use(
        &self,
        service_id: &str,
        plan_id: &str,
        content: &str,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if self.service(service_id).and_then(|s| s.plan(plan_id)).is_none() {
            return Err(Refusal::BadRequest(format!(
                "plan {plan_id:?} of service {service_id:?} has been removed from the catalog"
            )));
        }
        if self.retiring(plan_id, now_ms).is_some() {
            return Err(Refusal::Busy(format!("plan {plan_id} is being removed from the catalog")));
        }
        match self.manifest_for_plan(plan_id) {
            Some((_, m)) if m.content == content => Ok(()),
            _ => Err(Refusal::Busy(format!("the manifest of plan {plan_id} changed during the request; retry"))),
        }
    }
}

/// The bytes of `value` as compact JSON, counted without building them.
fn json_size<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and esm's records always serialize.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
