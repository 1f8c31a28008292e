//! The inventory (`domain::resource`): what each deployment holds. The deploy path
//! records it (in use after a provision or update, releasing while a deprovision runs,
//! forgotten after it); reconciliation compares it with what the engines list, one
//! listing per backend and one pass over the records, never a call per instance.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt;

use crate::backend::Backend;
use crate::domain::event::{Event, EventKind};
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::OperationKind;
use crate::domain::resource::{Holding, Resource, ResourceState};
use crate::domain::time::Timestamp;
use crate::error::{OsbError, OsbResult};
use crate::store::index::{self, Query};
use crate::store::{StoreError, Versioned};

/// The most resources one deployment holds (read in one page).
const OWNED_PAGE: usize = 1000;

/// How often one inventory write is retried after another writer's conflicting one.
const WRITE_ATTEMPTS: usize = 4;

/// How many deployments' unlisted records reconciliation holds before settling them.
const MISSING_BATCH: usize = 500;

/// What an inventory listing selects; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    /// What this instance or pool member id holds.
    pub owner: Option<String>,
    /// The resource with this name (a host port: `30000/tcp`).
    pub name: Option<String>,
    /// Resources in this state.
    pub state: Option<ResourceState>,
    /// Resources of this type (`container`, `port`, ...).
    pub kind: Option<String>,
    /// Resources this backend made.
    pub backend: Option<String>,
}

impl ResourceFilter {
    /// The index filters, the most selective first (the store serves it from its
    /// index); an empty value selects nothing less.
    fn index_filters(&self) -> Vec<(String, String)> {
        [
            (index::OWNER, self.owner.clone()),
            (index::NAME, self.name.clone()),
            (index::STATE, self.state.map(|s| s.as_str().to_owned())),
            (index::TYPE, self.kind.clone()),
            (index::BACKEND, self.backend.clone()),
        ]
        .into_iter()
        .filter_map(|(field, value)| Some((field.to_owned(), value.filter(|v| !v.is_empty())?)))
        .collect()
    }
}

/// A page of the inventory.
#[derive(Debug)]
pub struct ResourcePage {
    /// The resources, in id order.
    pub resources: Vec<Resource>,
    /// The id to continue after, when there is more.
    pub next_after: Option<String>,
}

service! {
    /// What is deployed: the inventory records, host ports (`ports.rs`), reconciliation
    /// (`reconcile.rs`) and the census.
    Inventory
}

impl Inventory<'_> {
    /// How many live instances there are of each `[service id, plan id, state,
    /// liveness]`, from the census index (no record is read).
    pub async fn census(&self) -> OsbResult<Vec<([String; 4], u64)>> {
        Ok(index::count_census(self.core.records.store().as_ref()).await?)
    }

    /// The records of what the deployment made as `owner` holds.
    pub(super) async fn resources_of(&self, owner: &str) -> Result<Vec<Versioned<Resource>>, StoreError> {
        self.core.records.page(&Query::new([(index::OWNER, owner)], OWNED_PAGE)).await
    }

    /// Records what `backend` holds for `instance`'s deployment, just made or remade:
    /// each resource in use, and what it no longer holds forgotten (but for the host
    /// ports the instance leased, which stay its own until it is removed). Never fails
    /// the operation: an engine or store error is logged, and reconciliation records
    /// what this missed.
    pub(super) async fn take_inventory(&self, backend: &dyn Backend, instance: &ServiceInstance) {
        if let Err(e) = self.try_take_inventory(backend, instance).await {
            tracing::warn!(instance_id = %instance.id, error = %e, "could not record what the deployment holds");
        }
    }

    async fn try_take_inventory(&self, backend: &dyn Backend, instance: &ServiceInstance) -> Result<(), String> {
        let owner = instance.deployed_id();
        let held = backend.held(Some(owner)).await.map_err(|e| e.message)?;
        let recorded = self.resources_of(owner).await.map_err(|e| e.to_string())?;
        // Room on the engine is esm's record, not what the engine holds.
        let mut recorded: BTreeMap<String, Versioned<Resource>> =
            recorded.into_iter().filter(|v| !v.record.is_slot()).map(|v| (v.record.id.clone(), v)).collect();
        let now = self.core.clock().timestamp();
        for holding in &held {
            let found = recorded.remove(&holding.id(backend.name()));
            self.record_in_use(holding, backend.name(), found, now).await.map_err(|e| e.to_string())?;
        }
        let leased = leased_ids(instance);
        for (id, Versioned { version, .. }) in recorded {
            if !leased.contains(&id) {
                self.forget(&id, version).await.map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Records `holding` in use (with the port the engine shows), `found` being its
    /// record as last read. Reconciliation may record the same resource meanwhile (as
    /// `creating`, while the provision runs), so a conflict means: read it again and
    /// retry; a record of another deployment's (a port it holds) is left alone.
    async fn record_in_use(
        &self,
        holding: &Holding,
        backend: &str,
        mut found: Option<Versioned<Resource>>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let id = holding.id(backend);
        for _ in 0..WRITE_ATTEMPTS {
            let written = match found {
                None => self.core.records.insert(&Resource::of(holding, backend, ResourceState::InUse, now)).await,
                Some(Versioned { version, mut record }) => {
                    if record.owner != holding.owner {
                        return Ok(());
                    }
                    let moved = record.set_state(ResourceState::InUse, now);
                    let port_seen = holding.port.is_some() && record.port != holding.port;
                    if !moved && !port_seen {
                        return Ok(());
                    }
                    record.port = holding.port.clone().or(record.port);
                    self.core.records.replace(version, &record).await
                }
            };
            match written {
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => found = self.core.records.get(&id).await?,
                other => return other.map(drop),
            }
        }
        // Still contended: the next reconciliation round settles it.
        Ok(())
    }

    /// Marks every resource of `owner` releasing: its deployment is being removed. Like
    /// all recording, it never fails the operation.
    pub(super) async fn mark_releasing(&self, owner: &str) {
        let now = self.core.clock().timestamp();
        let marked: Result<(), StoreError> = async {
            for Versioned { version, mut record } in self.resources_of(owner).await? {
                if record.set_state(ResourceState::Releasing, now) {
                    self.replace_quietly(version, &record).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = marked {
            tracing::warn!(owner, error = %e, "could not mark what a deployment holds as releasing");
        }
    }

    /// Forgets every resource of `owner`, whose deployment is gone: its host ports go
    /// back to the range.
    pub(super) async fn release_resources(&self, owner: &str) -> OsbResult<()> {
        for Versioned { record, .. } in self.resources_of(owner).await? {
            self.core.records.delete::<Resource>(&record.id, None).await?;
        }
        Ok(())
    }

    async fn forget(&self, id: &str, version: u64) -> Result<(), StoreError> {
        match self.core.records.delete::<Resource>(id, Some(version)).await {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records `orphan`'s resources (held by `backend`, owned by an instance esm does
    /// not know) as orphaned, before reconciliation removes them, and says so once (a
    /// removal that keeps failing is not announced every round).
    pub(super) async fn record_orphaned(&self, backend: &str, held: &[Holding], orphan: &str) -> OsbResult<()> {
        let now = self.core.clock().timestamp();
        let known: BTreeSet<String> = self
            .resources_of(orphan)
            .await?
            .into_iter()
            .filter(|v| v.record.state == ResourceState::Orphaned)
            .map(|v| v.record.id)
            .collect();
        let mut names = Vec::new();
        for holding in held.iter().filter(|h| h.owner == orphan && !h.kept && !known.contains(&h.id(backend))) {
            self.core.records.upsert(&Resource::of(holding, backend, ResourceState::Orphaned, now)).await?;
            names.push(format!("{} {}", holding.kind, holding.name));
        }
        if names.is_empty() {
            return Ok(());
        }
        let mut event = Event::new(EventKind::ResourceOrphaned)
            .because(format!("{backend} holds {} for an instance esm does not know", names.join(", ")));
        event.instance_id = Some(orphan.to_owned());
        self.core.events.emit(event);
        Ok(())
    }

    /// The fingerprints of the ids of every resource recorded as `backend`'s, read
    /// from the index alone.
    pub(super) async fn recorded_fingerprints(&self, backend: &str) -> Result<Fingerprints, StoreError> {
        let mut recorded = Fingerprints::default();
        let mut ids = std::pin::pin!(self.core.records.scan_ids::<Resource>(by_backend(backend)));
        while let Some(id) = ids.try_next().await? {
            recorded.add(&id, "");
        }
        recorded.seal();
        Ok(recorded)
    }

    /// Records what `backend` holds for live deployments but the inventory did not
    /// have (one page of the listing).
    pub(super) async fn record_unrecorded(&self, backend: &str, unrecorded: Vec<Holding>) -> OsbResult<()> {
        let now = self.core.clock().timestamp();
        let mut by_owner: BTreeMap<String, Vec<Holding>> = BTreeMap::new();
        for holding in unrecorded {
            by_owner.entry(holding.owner.clone()).or_default().push(holding);
        }
        for (owner, holdings) in by_owner {
            let Some(Versioned { record: instance, .. }) = self.core.deployed_as(&owner).await? else {
                continue;
            };
            let running_provision = instance.operations.running().is_some_and(|op| op.kind == OperationKind::Provision);
            let state = if running_provision { ResourceState::Creating } else { ResourceState::InUse };
            for holding in holdings {
                self.insert_quietly(&Resource::of(&holding, backend, state, now)).await?;
            }
        }
        Ok(())
    }

    /// Compares the inventory of `backend` with what it listed for live deployments
    /// (at `listed_at`): what was gone or orphaned and is listed again is in use; what
    /// is recorded but not listed is marked gone (with an event) when its deployment
    /// should hold it and the backend confirms it does not, and forgotten when no
    /// deployment does. Records written after the listing, and deployments with an
    /// operation running, are left for the next round. Only the records that differ
    /// from the listing are read; the rest are compared by their ids in the index.
    pub(super) async fn check_recorded(
        &self,
        backend: &dyn Backend,
        listed: &Fingerprints,
        listed_at: Timestamp,
    ) -> OsbResult<()> {
        let name = backend.name();
        let now = self.core.clock().timestamp();
        for state in [ResourceState::Gone, ResourceState::Orphaned] {
            let mut filter = vec![(index::STATE.to_owned(), state.as_str().to_owned())];
            filter.extend(by_backend(name));
            let mut records = std::pin::pin!(self.core.records.scan::<Resource>(filter));
            while let Some(Versioned { version, mut record }) = records.try_next().await? {
                // Back (a container restarted under its name).
                if listed.has(&record.id, &record.owner) {
                    record.set_state(ResourceState::InUse, now);
                    self.replace_quietly(version, &record).await?;
                }
            }
        }
        let mut missing: BTreeMap<String, Vec<Versioned<Resource>>> = BTreeMap::new();
        let mut ids = std::pin::pin!(self.core.records.scan_ids::<Resource>(by_backend(name)));
        while let Some(id) = ids.try_next().await? {
            if listed.has_id(&id) {
                continue;
            }
            let Some(found) = self.core.records.get::<Resource>(&id).await? else { continue };
            if found.record.updated_at < listed_at && found.record.state != ResourceState::Releasing {
                missing.entry(found.record.owner.clone()).or_default().push(found);
                // Settled a batch at a time: after a restart the dummy lists nothing,
                // and every record would otherwise be held here at once.
                if missing.len() >= MISSING_BATCH {
                    for (owner, records) in std::mem::take(&mut missing) {
                        self.settle_missing(backend, &owner, records, now).await?;
                    }
                }
            }
        }
        for (owner, records) in missing {
            self.settle_missing(backend, &owner, records, now).await?;
        }
        Ok(())
    }

    /// Recorded resources of `owner` that `backend`'s full listing did not show.
    async fn settle_missing(
        &self,
        backend: &dyn Backend,
        owner: &str,
        records: Vec<Versioned<Resource>>,
        now: Timestamp,
    ) -> OsbResult<()> {
        // A second look at this deployment alone: a listing may lag the engine, and a
        // backend may hold deployments it cannot list (the dummy after a restart).
        let Ok(held) = backend.held(Some(owner)).await else { return Ok(()) };
        let ids: BTreeSet<String> = held.iter().map(|h| h.id(backend.name())).collect();
        let records: Vec<_> = records.into_iter().filter(|r| !ids.contains(&r.record.id)).collect();
        if records.is_empty() {
            return Ok(());
        }
        let Some(Versioned { record: instance, .. }) = self.core.deployed_as(owner).await? else {
            // No deployment holds them (a removal cut short): nothing to keep.
            for Versioned { version, record } in records {
                self.forget(&record.id, version).await?;
            }
            return Ok(());
        };
        // Another engine's deployment: this backend (the default engine's) cannot see it,
        // and reconciliation does not reach other engines yet.
        if instance.operations.running().is_some() || instance.engine.is_some() {
            return Ok(());
        }
        for Versioned { version, mut record } in records {
            // A leased port stays its deployment's whether or not the engine shows it
            // (a stopped container publishes nothing).
            if record.is_port() || !record.set_state(ResourceState::Gone, now) {
                continue;
            }
            self.replace_quietly(version, &record).await?;
            let reason = format!("{} {} was removed behind esm's back", record.kind, record.name);
            let mut event = Event::on_member(EventKind::ResourceGone, owner, &instance.service_id, &instance.plan_id);
            // A member's own, or one an instance was handed; else just the instance's.
            event.member_id = (instance.pool.is_some() || instance.id != owner).then(|| owner.to_owned());
            event.instance_id = instance.pool.is_none().then(|| instance.id.clone());
            self.core.events.emit(event.because(reason));
        }
        Ok(())
    }

    /// Writes `record` over `version`; another writer getting there first (a
    /// reconciliation, an operation) is no error: the next round settles it.
    async fn replace_quietly(&self, version: u64, record: &Resource) -> Result<(), StoreError> {
        match self.core.records.replace(version, record).await {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records `record` unless its id is recorded already (by another writer, or a port
    /// another deployment holds): the next round settles it.
    async fn insert_quietly(&self, record: &Resource) -> Result<(), StoreError> {
        match self.core.records.insert(record).await {
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/et/inventory`: a page of the resources `filter` selects, in id order.
    pub async fn page(&self, filter: &ResourceFilter, after: Option<String>, limit: usize) -> OsbResult<ResourcePage> {
        let (resources, next_after) = self.core.page_of(filter.index_filters(), after, limit).await?;
        Ok(ResourcePage { resources, next_after })
    }

    /// `GET /v2/et/service_instances/{id}/resources`: what the instance holds (those of
    /// the pool member it was handed, if it was).
    pub async fn instance_resources(&self, instance_id: &str) -> OsbResult<Vec<Resource>> {
        let instance = self
            .core
            .live_instance(instance_id)
            .await?
            .ok_or_else(|| OsbError::NotFound(format!("instance {instance_id} does not exist")))?
            .record;
        Ok(self.resources_of(instance.deployed_id()).await?.into_iter().map(|v| v.record).collect())
    }
}

/// The filter of the resources backend `backend` holds.
fn by_backend(backend: &str) -> Vec<(String, String)> {
    vec![(index::BACKEND.to_owned(), backend.to_owned())]
}

/// Resource ids (with their owners) as 64-bit hashes, sorted: what reconciliation
/// keeps of a listing (or of the inventory) to compare it with the other side, 16
/// bytes a resource. The inventory is in resource id order and a listing in owner
/// order, so the two cannot be merged page by page; a fingerprint stands in for the
/// resource instead. Two ids sharing one (odds of about 1 in 10^9 at 100,000 resources)
/// would delay noticing one of them by a round, until the other changes.
#[derive(Debug, Default)]
pub(super) struct Fingerprints {
    /// (id, owner) hashes; sorted once sealed.
    hashes: Vec<(u64, u64)>,
}

impl Fingerprints {
    pub(super) fn add(&mut self, id: &str, owner: &str) {
        self.hashes.push((hash(id), hash(owner)));
    }

    /// Sorts them: done adding, ready for asking.
    pub(super) fn seal(&mut self) {
        self.hashes.sort_unstable();
        self.hashes.shrink_to_fit();
    }

    /// Whether a resource `id` is among them.
    pub(super) fn has_id(&self, id: &str) -> bool {
        let id = hash(id);
        let at = self.hashes.partition_point(|(h, _)| *h < id);
        self.hashes.get(at).is_some_and(|(h, _)| *h == id)
    }

    /// Whether a resource `id` held by `owner` is among them.
    pub(super) fn has(&self, id: &str, owner: &str) -> bool {
        self.hashes.binary_search(&(hash(id), hash(owner))).is_ok()
    }
}

fn hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The record ids of the host ports `instance` leased.
fn leased_ids(instance: &ServiceInstance) -> BTreeSet<String> {
    instance.published_ports().map(|(port, protocol)| Resource::port_id(protocol, port)).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::Backends;
    use crate::broker::Broker;
    use crate::broker::BrokerSettings;
    use crate::store::memory::MemoryStore;

    fn now() -> Timestamp {
        Timestamp::parse("2026-12-07T00:00:00Z").expect("a time")
    }

    fn broker() -> Arc<Broker> {
        Broker::new(Arc::new(MemoryStore::new()), Backends::new(), BrokerSettings::default())
    }

    // The race CI met: the deploy path read no record, then reconciliation recorded the
    // container as creating (the provision still running), then the deploy path wrote.
    #[tokio::test]
    async fn a_record_reconciliation_made_after_the_deploy_path_read_ends_in_use() {
        let broker = broker();
        let container = Holding::new("container", "c1", "i1");
        broker
            .records()
            .insert(&Resource::of(&container, "docker", ResourceState::Creating, now()))
            .await
            .expect("insert");
        broker.inventory().record_in_use(&container, "docker", None, now()).await.expect("records");
        let record = broker.records().get::<Resource>(&container.id("docker")).await.expect("get").expect("recorded");
        assert_eq!(record.record.state, ResourceState::InUse);
    }

    // The same with a stale version: reconciliation rewrote the record after it was read.
    #[tokio::test]
    async fn a_record_rewritten_after_the_deploy_path_read_ends_in_use() {
        let broker = broker();
        let container = Holding::new("container", "c1", "i1");
        let id = container.id("docker");
        broker
            .records()
            .insert(&Resource::of(&container, "docker", ResourceState::Creating, now()))
            .await
            .expect("insert");
        let stale = broker.records().get::<Resource>(&id).await.expect("get").expect("recorded");
        let mut gone = stale.record.clone();
        gone.set_state(ResourceState::Gone, now());
        broker.records().replace(stale.version, &gone).await.expect("replace");
        broker.inventory().record_in_use(&container, "docker", Some(stale), now()).await.expect("records");
        let record = broker.records().get::<Resource>(&id).await.expect("get").expect("recorded");
        assert_eq!(record.record.state, ResourceState::InUse);
    }

    // A host port recorded as another deployment's stays that deployment's.
    #[tokio::test]
    async fn a_port_another_deployment_holds_is_left_alone() {
        let broker = broker();
        let theirs = Holding::port(None, 30000, "tcp", "other");
        let ours = Holding::port(None, 30000, "tcp", "i1");
        broker.records().insert(&Resource::of(&theirs, "docker", ResourceState::InUse, now())).await.expect("insert");
        broker.inventory().record_in_use(&ours, "docker", None, now()).await.expect("records");
        let record = broker.records().get::<Resource>(&ours.id("docker")).await.expect("get").expect("recorded");
        assert_eq!(record.record.owner, "other");
    }
}
