//! Reading and changing the registry (see [`crate::domain::registry`]): every change is
//! one compare-and-set of the registry record; plans are removed through the
//! retirement protocol, so no instance is left without its plan or manifest; and the
//! records of esm 0.1 (one per service and manifest) are moved in once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod catalog;
mod plans;
mod watch;

pub(in crate::broker) use plans::PlanView;

pub use catalog::Registered;
pub use watch::{CHECK_EVERY, STALE_BOUND};

use tokio::sync::Semaphore;

use crate::domain::catalog::Service;
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::registry::{ManifestEntry, Refusal, Registry, StoredManifest};
use crate::error::{OsbError, OsbResult};
use crate::store::{Collection, Query, REGISTRY_ID, StoreError, Versioned, index};
use watch::Shared;

/// How many times a registry change retries after another writer got there first.
/// Every registration writes the one record, so bursts of them do collide; each round
/// has a winner, so this covers bursts of that many concurrent writers.
const REGISTRY_ATTEMPTS: u32 = 64;

/// How many manifest contents the broker keeps copies of (a few per plan in use; the
/// copies are dropped all at once when there are more).
const CACHED_CONTENTS: usize = 256;

impl From<Refusal> for OsbError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::BadRequest(m) => OsbError::BadRequest(m),
            Refusal::Conflict(m) => OsbError::Conflict(m),
            Refusal::Busy(m) => OsbError::ConcurrencyError(m),
        }
    }
}

/// What the registry keeps in this process: private to `registry/`.
pub(super) struct RegistryRoom {
    /// Whether the registry changed since a catalog was rendered from it.
    watch: watch::RegistryWatch,
    /// Manifest contents read lately, by content key. A content is never rewritten
    /// under its key (a new registration gets a new key), so a copy never goes stale.
    /// A std mutex: held for a lookup or an insert, never across an `.await`.
    contents: std::sync::Mutex<HashMap<String, Manifest>>,
    /// Whether the records of esm 0.1 have been looked for, so a store with no
    /// registry yet is not searched for them on every read.
    legacy_checked: AtomicBool,
    /// Manifest checks parse untrusted YAML on the blocking pool; this lets one per
    /// core run at once, so a flood of registrations cannot take every core from the
    /// request handlers.
    manifest_checks: Arc<Semaphore>,
}

impl RegistryRoom {
    /// The room of a store shared with other replicas (`shared`) or not.
    pub(super) fn new(shared: bool) -> Self {
        Self {
            watch: watch::RegistryWatch::new(shared),
            contents: std::sync::Mutex::default(),
            legacy_checked: AtomicBool::new(false),
            manifest_checks: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
        }
    }
}

service! {
    /// The registry's service: the catalog, its registrations, and what a plan or instance
    /// deploys with.
    Registrar, room: RegistryRoom
}

impl Registrar<'_> {
    /// The registry's generation as this process knows it, if it can vouch for it:
    /// what tells whether something read from an older registry is out of date.
    pub(in crate::broker) fn registry_generation(&self) -> Option<u64> {
        self.room.watch.current()
    }
    /// The registry: the shared decoded copy while it is current (no store read, no
    /// decode), otherwise read from the store and decoded if its version moved. On a
    /// shared store a change by another replica is seen within
    /// [`STALE_BOUND`]; while the watcher cannot vouch for that, every
    /// call reads the store.
    pub async fn registry(&self) -> OsbResult<Versioned<Arc<Registry>>> {
        let watch = &self.room.watch;
        // Read before the store is: what is read then is at least this new.
        let Some(generation) = watch.current() else {
            return self.fresh_registry(None).await;
        };
        if let Some(copy) = watch.copy_at(generation) {
            return Ok(copy);
        }
        // It changed: the first reader re-reads it, the others get its copy.
        let _one_at_a_time = watch.refresh.lock().await;
        let generation = watch.current();
        match generation.and_then(|g| watch.copy_at(g)) {
            Some(copy) => Ok(copy),
            None => self.fresh_registry(generation).await,
        }
    }

    /// The registry, current for what `holds` looks for: the copy where it holds;
    /// otherwise the registry as stored now, as on a shared store the copy may be up to
    /// the stale bound behind a registration another replica just made. A request is
    /// never told something does not exist because this replica's copy lags.
    pub(in crate::broker) async fn registry_holding(&self, holds: impl Fn(&Registry) -> bool) -> OsbResult<Shared> {
        let copy = self.registry().await?;
        if holds(&copy.record) {
            return Ok(copy);
        }
        self.registry_now().await
    }

    /// The registry as stored now, for a check that must see every change that landed
    /// before it (the second half of the retirement protocol): the copy on a store only
    /// this process writes, where every write puts its result in place before it
    /// returns; on a shared store the copy after a read of the stored version says it
    /// is still current.
    async fn registry_now(&self) -> OsbResult<Shared> {
        if !self.room.watch.shared() {
            return self.registry().await;
        }
        let generation = self.room.watch.current();
        self.fresh_registry(generation).await
    }

    /// The registry as stored now: the copy when the stored version is the copy's (a
    /// read of the version alone), otherwise the record read and decoded. What is read
    /// is kept as the copy for `generation`, read before the store was.
    async fn fresh_registry(&self, generation: Option<u64>) -> OsbResult<Shared> {
        if let Some(kept) = self.room.watch.kept() {
            let stored = self.core.store().version(Collection::Registry, REGISTRY_ID).await?;
            // No record is version 0, the empty registry, once esm 0.1's were looked for.
            if stored.unwrap_or(0) == kept.version {
                self.room.watch.keep(generation, &kept);
                return Ok(kept);
            }
        }
        let Versioned { version, record } = self.read_registry().await?;
        let registry = Versioned { version, record: Arc::new(record) };
        self.room.watch.keep(generation, &registry);
        Ok(registry)
    }

    /// The registry record read and decoded (empty, at version 0, before the first
    /// registration).
    async fn read_registry(&self) -> OsbResult<Versioned<Registry>> {
        if let Some(registry) = self.core.records.get::<Registry>(REGISTRY_ID).await? {
            return Ok(registry);
        }
        // No registry yet: a store written by esm 0.1 has its records moved in first,
        // when the store is first read (it may be down when esm starts). Once that
        // has been looked at, a missing registry is simply an empty catalog.
        if !self.room.legacy_checked.load(Ordering::Acquire) {
            let moved = self.move_legacy_records().await?;
            self.room.legacy_checked.store(true, Ordering::Release);
            if moved && let Some(registry) = self.core.records.get::<Registry>(REGISTRY_ID).await? {
                return Ok(registry);
            }
        }
        Ok(Versioned { version: 0, record: Registry::default() })
    }

    /// Applies `change` to the current registry and writes it back if it changed,
    /// retrying from a fresh read when another writer got there first. Lapsed
    /// retirements are dropped on the way. `change` may run several times. What is
    /// written becomes the shared copy at once.
    pub(in crate::broker) async fn change_registry<R>(
        &self,
        mut change: impl FnMut(&mut Registry, u64) -> Result<R, OsbError>,
    ) -> OsbResult<R> {
        for attempt in 0..REGISTRY_ATTEMPTS {
            // The compare-and-set below is what makes the change safe; reading the
            // version first only spares decoding a record the copy already holds.
            let generation = self.room.watch.current();
            let Versioned { version, record: current } = self.fresh_registry(generation).await?;
            let now = self.core.clock().millis();
            let mut next = Registry::clone(&current);
            next.drop_lapsed_retirements(now);
            let result = change(&mut next, now)?;
            if next == *current {
                return Ok(result);
            }
            let before = self.room.watch.generation();
            let written = if version == 0 {
                self.core.records.insert(&next).await
            } else {
                self.core.records.replace(version, &next).await
            };
            // Even a failed write may have landed (a timeout after the server applied it).
            let after = self.registry_written();
            match written {
                Ok(version) => {
                    // The copy for the new generation, unless another write or change
                    // came in between (then the next reader reads the store).
                    if after == before + 1 {
                        self.room.watch.keep(Some(after), &Versioned { version, record: Arc::new(next) });
                    }
                    return Ok(result);
                }
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                    // Spread the retries of a burst so they stop meeting each other.
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 8);
                    tokio::time::sleep(Duration::from_millis(jitter * u64::from(attempt.min(4)))).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(OsbError::ConcurrencyError("the catalog is changing too fast to apply this change; retry".into()))
    }

    /// Removes plans from the registry without stranding an instance: marks them as
    /// retiring, looks for a live instance that uses one, and only if there is none
    /// applies `remove` — provided the mark is still there (nobody took it as lapsed).
    /// `what` names the removal in the refusal.
    pub(in crate::broker) async fn retire_plans<R>(
        &self,
        plans: BTreeSet<String>,
        what: &str,
        mut remove: impl FnMut(&mut Registry, u64) -> OsbResult<R>,
    ) -> OsbResult<R> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.change_registry(|registry, now| {
            registry.retire(&token, plans.clone(), now);
            Ok(())
        })
        .await?;
        let outcome = match self.instance_using(&plans).await {
            Ok(Some((instance, plan))) => {
                Err(OsbError::Conflict(format!("{what}: instance {instance} uses plan {plan}; deprovision it first")))
            }
            Ok(None) => {
                self.change_registry(|registry, now| {
                    if !registry.release(&token) {
                        return Err(OsbError::ConcurrencyError(format!(
                            "{what}: the catalog changed meanwhile; retry"
                        )));
                    }
                    remove(registry, now)
                })
                .await
            }
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            // Best effort: if this fails too, the mark lapses by itself.
            let released = self.change_registry(|registry, _| Ok(registry.release(&token))).await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release retiring plans; they are held until the mark lapses");
            }
        }
        outcome
    }

    /// A live instance on one of `plans`, or moving to one of them, with that plan: one
    /// indexed lookup per plan.
    async fn instance_using(&self, plans: &BTreeSet<String>) -> OsbResult<Option<(String, String)>> {
        for plan in plans {
            let query = Query::new([(index::USES_PLAN, plan.as_str())], 1);
            if let Some(found) = self.core.records.page::<ServiceInstance>(&query).await?.pop() {
                return Ok(Some((found.record.id, plan.clone())));
            }
        }
        Ok(None)
    }

    /// The second half of the retirement protocol, for a request that has just written
    /// an instance on (or moving to) `plan_id`, deployed by the manifest content it
    /// read: the plan must still be there, not retiring, with that manifest.
    pub(in crate::broker) async fn confirm_plan(
        &self,
        service_id: &str,
        plan_id: &str,
        content: &str,
    ) -> OsbResult<()> {
        let registry = self.registry_now().await?.record;
        let now = self.core.clock().millis();
        if !registry.has_lapsed_retirements(now) {
            // The usual case: a read, no write.
            return Ok(registry.check_plan_in_use(service_id, plan_id, content, now)?);
        }
        // A lapsed mark is taken out first: its remover then cannot finish.
        self.change_registry(|registry, now| Ok(registry.check_plan_in_use(service_id, plan_id, content, now)))
            .await?
            .map_err(OsbError::from)
    }

    /// The content of a registered manifest.
    pub(in crate::broker) async fn stored_manifest(&self, entry: &ManifestEntry) -> OsbResult<Manifest> {
        let cached = self.room.contents.lock().unwrap_or_else(|p| p.into_inner()).get(&entry.content).cloned();
        if let Some(manifest) = cached {
            return Ok(manifest);
        }
        if let Some(stored) = self.core.records.get::<StoredManifest>(&entry.content).await? {
            let mut contents = self.room.contents.lock().unwrap_or_else(|p| p.into_inner());
            if contents.len() >= CACHED_CONTENTS {
                contents.clear();
            }
            contents.insert(entry.content.clone(), stored.record.manifest.clone());
            return Ok(stored.record.manifest);
        }
        // Its entry was removed (with the content) since it was read.
        let still_named = self.registry().await?.record.manifests.values().any(|m| m.content == entry.content);
        if still_named {
            Err(OsbError::Internal(format!("the content {} of a registered manifest is missing", entry.content)))
        } else {
            Err(OsbError::ConcurrencyError(format!(
                "the manifest of plan {} was removed during the request",
                entry.plan_id
            )))
        }
    }

    /// Moves the services and manifests of esm 0.1 into a registry that does not exist
    /// yet; whether there were any. What breaks a rule (two manifests for a plan, a
    /// plan id used twice) is left out and logged; the old records stay where they are.
    async fn move_legacy_records(&self) -> OsbResult<bool> {
        let services = self.core.records.list::<Service>().await?;
        let manifests = self.core.records.list::<Manifest>().await?;
        if services.is_empty() && manifests.is_empty() {
            return Ok(false);
        }
        let now = self.core.clock().millis();
        let mut registry = Registry::default();
        for Versioned { record: service, .. } in services {
            match registry.check_service(&service, now) {
                Ok(_) => {
                    registry.put_service(service);
                }
                Err(refusal) => {
                    tracing::error!(service_id = %service.id, ?refusal, "an esm 0.1 service is left out of the registry")
                }
            }
        }
        for Versioned { record: manifest, .. } in manifests {
            let key = content_key(&manifest);
            let entry = ManifestEntry::of(&manifest, key.clone());
            match registry.check_manifest(&manifest.id, &entry, now) {
                Ok(_) => {
                    self.core.records.upsert(&StoredManifest { key, manifest: manifest.clone() }).await?;
                    registry.manifests.insert(manifest.id.clone(), entry);
                }
                Err(refusal) => {
                    tracing::error!(manifest_id = %manifest.id, ?refusal, "an esm 0.1 manifest is left out of the registry")
                }
            }
        }
        let inserted = self.core.records.insert(&registry).await;
        self.registry_written();
        match inserted {
            Ok(_) => {
                tracing::info!(
                    services = registry.services.len(),
                    manifests = registry.manifests.len(),
                    "moved the catalog of esm 0.1 into the registry"
                );
                Ok(true)
            }
            // Another replica moved them at the same time: its registry stands.
            Err(StoreError::Conflict(_)) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}

/// A fresh record id for the content of one registration of `manifest`.
pub(in crate::broker) fn content_key(manifest: &Manifest) -> String {
    format!("{}-{}", manifest.digest(), uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests;
