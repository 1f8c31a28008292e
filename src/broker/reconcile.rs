//! Reconciliation: what the engines run against what the store knows, so that no
//! container is ever orphaned. At start and periodically, resources labelled with an
//! instance esm does not know (or has deprovisioned) are recorded as orphaned in the
//! inventory and removed, and the inventory is checked against what the engines hold
//! (`inventory.rs`). Every declared engine that answers is reconciled too, for its
//! orphans (and before an engine that answers again takes placements: `engines/`).
//! Instances whose containers died or vanished are reported by liveness.

use crate::broker::Inventory;
use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::TryStreamExt;
use futures_util::stream::BoxStream;

use super::inventory::Fingerprints;
use crate::backend::{Backend, BackendError};
use crate::domain::event::{Event, EventKind};
use crate::domain::instance::ServiceInstance;
use crate::error::{OsbError, OsbResult};
use crate::store::{Collection, StoreError, index};

/// Why one backend's reconciliation stopped.
enum Stopped {
    /// The engine could not be listed: the next round tries again.
    Listing(BackendError),
    /// The store failed.
    Store(OsbError),
}

impl<E: Into<OsbError>> From<E> for Stopped {
    fn from(e: E) -> Self {
        Self::Store(e.into())
    }
}

/// What one backend's reconciliation covers.
#[derive(Clone, Copy)]
enum Covers<'a> {
    /// The default engine: orphans, and the inventory checked against what it holds.
    Default,
    /// A declared engine: orphans only. The inventory's records name a backend, not an
    /// engine, so only the default engine's are checked against a listing.
    Engine(&'a str),
}

impl<'a> Covers<'a> {
    /// The engine's name.
    fn engine(self) -> &'a str {
        match self {
            Covers::Default => crate::domain::engine::DEFAULT_ENGINE,
            Covers::Engine(name) => name,
        }
    }
}

impl Inventory<'_> {
    /// Removes resources of instances the store does not hold as live, and checks the
    /// inventory against what each backend holds. Returns how many instances'
    /// resources were removed.
    pub async fn reconcile(&self) -> OsbResult<usize> {
        let mut removed = 0;
        let declared = self.broker.engines().reachable_backends().await?;
        let default = self.core.backends.all().iter().map(|b| (Covers::Default, b));
        let others = declared.iter().map(|(name, b)| (Covers::Engine(name), b));
        for (covers, backend) in default.chain(others) {
            match self.reconcile_backend(backend.as_ref(), covers).await {
                Ok(n) => removed += n,
                Err(Stopped::Listing(e)) => {
                    tracing::debug!(backend = backend.name(), error = %e, "cannot list what the backend holds");
                }
                Err(Stopped::Store(e)) => return Err(e),
            }
        }
        self.broker.engines().release_abandoned_slots().await?;
        Ok(removed)
    }

    /// Removes what declared engine `engine` (driven by `backend`) holds for instances
    /// esm does not know: what a probe runs before an engine that answers again takes
    /// placements. How many instances' resources were removed.
    pub(in crate::broker) async fn reconcile_engine(&self, engine: &str, backend: &dyn Backend) -> OsbResult<usize> {
        match self.reconcile_backend(backend, Covers::Engine(engine)).await {
            Ok(removed) => Ok(removed),
            Err(Stopped::Listing(e)) => Err(OsbError::Unavailable(format!("cannot list what it holds: {e}"))),
            Err(Stopped::Store(e)) => Err(e),
        }
    }

    /// Reconciles one backend: its listing is read a page of owners at a time, and
    /// each page is merged with the ids of the live instances and members, read a page
    /// at a time in the same order; the inventory is compared by fingerprints (see
    /// [`Fingerprints`]). Memory holds one page and 24 bytes per resource, never the
    /// listing or the store whole.
    async fn reconcile_backend(&self, backend: &dyn Backend, covers: Covers<'_>) -> Result<usize, Stopped> {
        let name = backend.name();
        let full = matches!(covers, Covers::Default);
        let recorded = if full { self.recorded_fingerprints(name).await? } else { Fingerprints::default() };
        // Listed before the store is read: a resource listed here was created after
        // its instance was recorded, so a new instance is never taken for an orphan
        // (one the merge misses is read again: `known_now`); and a record written
        // after this is never taken for one of a resource gone.
        let listed_at = self.core.clock().timestamp();
        let mut listed = Fingerprints::default();
        let filter = |field: &str| vec![(field.to_owned(), "1".to_owned())];
        let mut live = SortedIds::new(Box::pin(self.core.records.scan_ids::<ServiceInstance>(filter(index::LIVE))));
        let mut members =
            SortedIds::new(Box::pin(self.core.records.scan_ids::<ServiceInstance>(filter(index::MEMBER))));
        let mut removed = 0;
        let mut pages = backend.listing();
        while let Some(page) = pages.try_next().await.map_err(Stopped::Listing)? {
            // A kept volume outlives its instance by design: it makes no orphan, and one
            // whose instance holds nothing else is no instance's to check.
            let owners: BTreeSet<&str> = page.iter().filter(|h| !h.kept).map(|h| h.owner.as_str()).collect();
            let mut orphans = BTreeSet::new();
            for owner in &owners {
                if !live.contains(owner).await? && !members.contains(owner).await? && !self.known_now(owner).await? {
                    orphans.insert(*owner);
                }
            }
            for orphan in &orphans {
                let engine = covers.engine();
                tracing::warn!(backend = name, engine, instance_id = %orphan, "removing resources of an instance esm does not know");
                if full {
                    self.record_orphaned(name, &page, orphan).await?;
                }
                match backend.remove_instance(orphan).await {
                    Ok(()) => {
                        removed += 1;
                        self.release_resources(orphan).await?;
                        let mut event = Event::new(EventKind::InstanceRemoved)
                            .because(format!("{name} held resources for an instance esm does not know"));
                        event.instance_id = Some((*orphan).to_owned());
                        event.engine = Some(engine.to_owned());
                        self.core.events.emit(event);
                        self.core.metrics().reconcile_removed(name);
                    }
                    Err(e) => tracing::error!(instance_id = %orphan, error = %e, "could not remove orphaned resources"),
                }
            }
            if !full {
                continue;
            }
            let checked: Vec<_> = page
                .iter()
                .filter(|h| owners.contains(h.owner.as_str()) && !orphans.contains(h.owner.as_str()))
                .collect();
            for holding in &checked {
                listed.add(&holding.id(name), &holding.owner);
            }
            let unrecorded = checked.into_iter().filter(|h| !recorded.has_id(&h.id(name))).cloned().collect();
            self.record_unrecorded(name, unrecorded).await?;
        }
        if full {
            listed.seal();
            self.check_recorded(backend, &listed, listed_at).await?;
        }
        Ok(removed)
    }

    /// Whether deployment `id` is a live record's (an instance's or a member's), or was
    /// handed to a live instance (a pool member's, found in the index of deployments),
    /// read now. The merged pages of ids may have been read before the listing page
    /// that names `id` (the last page of ids, read while provisions go on, ends before
    /// the instances recorded since): only this read, made after the listing page, may
    /// call a deployment an orphan.
    async fn known_now(&self, id: &str) -> Result<bool, StoreError> {
        if self.core.records.get::<ServiceInstance>(id).await?.is_some_and(|found| found.record.is_live()) {
            return Ok(true);
        }
        let query = index::Query::new([(index::DEPLOYMENT, id)], 1);
        Ok(!self.core.store().page_ids(Collection::Instances, &query).await?.is_empty())
    }

    /// Reconciles now and then every `every`, until shutdown.
    pub fn spawn_reconciler(&self, every: Duration) {
        self.broker.spawn_every(every, |this| async move {
            match this.inventory().reconcile().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "reconciliation removed orphaned deployments"),
                Err(e) => tracing::warn!(error = %e, "reconciliation could not read the store"),
            }
        });
    }
}

/// Ids read a page at a time in ascending order, asked about in ascending order: one
/// side of a sorted merge.
struct SortedIds {
    ids: BoxStream<'static, Result<String, StoreError>>,
    /// The smallest id not yet passed; `None` once the ids are exhausted.
    head: Option<String>,
    started: bool,
}

impl SortedIds {
    fn new(ids: BoxStream<'static, Result<String, StoreError>>) -> Self {
        Self { ids, head: None, started: false }
    }

    /// Whether `id` is among the ids; each call must ask about an id no smaller than
    /// the one before.
    async fn contains(&mut self, id: &str) -> Result<bool, StoreError> {
        loop {
            match &self.head {
                Some(head) if head.as_str() >= id => return Ok(head == id),
                None if self.started => return Ok(false),
                _ => {}
            }
            self.started = true;
            self.head = self.ids.try_next().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::sync::Arc;

    use super::*;
    use crate::backend::Backend;
    use crate::backend::dummy::DummyBackend;
    use crate::broker::Broker;

    use crate::domain::manifest::Manifest;
    use crate::domain::resource::{Holding, Resource, ResourceState};
    use crate::store::memory::MemoryStore;
    use crate::store::{Collection, Store};

    async fn broker_with_plan() -> (Arc<DummyBackend>, Arc<dyn Store>, Arc<Broker>) {
        let dummy = Arc::new(DummyBackend::new());
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        // Time is Tokio's: a test may pause it and move it on.
        let broker = crate::broker::fixture::broker(store.clone(), dummy.clone());
        crate::broker::fixture::register_plan(&broker, "dummy", "x-esm-dummy: {mode: sync}\n").await;
        (dummy, store, broker)
    }

    fn request() -> crate::wire::ProvisionRequest {
        crate::broker::fixture::provision_request()
    }

    #[tokio::test]
    async fn what_runs_for_an_instance_esm_does_not_know_is_removed_and_nothing_else() {
        let (dummy, store, broker) = broker_with_plan().await;
        for id in ["kept", "forgotten"] {
            broker.instances().provision(id, request(), false).await.expect("provisions");
        }
        // The record lost (a restore from an older backup, say); the dummy still runs it.
        store.delete(Collection::Instances, "forgotten", None).await.expect("deleted");
        assert_eq!(broker.inventory().reconcile().await.expect("reconciles"), 1);
        let owners: Vec<String> = dummy.held(None).await.expect("held").into_iter().map(|h| h.owner).collect();
        assert_eq!(owners, ["kept"]);
        assert_eq!(broker.inventory().reconcile().await.expect("reconciles"), 0, "nothing more to remove");
    }

    #[tokio::test]
    async fn pool_members_and_instances_handed_one_are_not_orphans() {
        let (dummy, _, broker) = broker_with_plan().await;
        let pool = serde_json::from_value(json!({"size": 2})).expect("pool request");
        broker.pools().set("p", pool).await.expect("pool set");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while broker.pools().status("p").await.expect("status").ready < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the pool did not fill");
            broker.pools().pool_round().await.expect("a round");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        broker.instances().provision("handed", request(), false).await.expect("provisions");
        let owners = |held: Vec<Holding>| held.into_iter().map(|h| h.owner).collect::<BTreeSet<_>>();
        let held = owners(dummy.held(None).await.expect("held"));
        assert_eq!(held.len(), 2, "two members, one of them the instance's deployment: {held:?}");
        assert!(held.iter().all(|id| id.starts_with(crate::domain::pool::MEMBER_PREFIX)), "{held:?}");
        assert_eq!(broker.inventory().reconcile().await.expect("reconciles"), 0);
        assert_eq!(owners(dummy.held(None).await.expect("held")), held);
    }

    /// A backend whose listing has two pages, and whose engine deploys instance `b`
    /// (recorded first, as every provision does) between them: after the store's last
    /// page of ids was read.
    struct RecordedWhileListed {
        store: Arc<dyn Store>,
        removed: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Backend for RecordedWhileListed {
        fn name(&self) -> &'static str {
            "late"
        }
        fn manifest_types(&self) -> &'static [&'static str] {
            &["late"]
        }
        fn check_manifest(&self, _: &Manifest) -> Result<(), String> {
            Ok(())
        }
        fn execution(&self, _: &Manifest, _: crate::domain::operation::OperationKind) -> crate::backend::Execution {
            crate::backend::Execution::Synchronous
        }
        async fn provision(
            &self,
            _: &ServiceInstance,
            _: &Manifest,
        ) -> Result<crate::backend::Deployment, BackendError> {
            Ok(crate::backend::Deployment::default())
        }
        async fn update(&self, _: &ServiceInstance, _: &Manifest) -> Result<crate::backend::Deployment, BackendError> {
            Ok(crate::backend::Deployment::default())
        }
        async fn deprovision(&self, _: &ServiceInstance, _: Option<&Manifest>) -> Result<(), BackendError> {
            Ok(())
        }
        async fn bind(
            &self,
            _: &ServiceInstance,
            _: &crate::domain::binding::Binding,
            _: &Manifest,
        ) -> Result<crate::backend::BindOutput, BackendError> {
            Err(BackendError::new("not bindable"))
        }
        async fn info(&self, _: &ServiceInstance, _: &Manifest) -> Result<crate::backend::Info, BackendError> {
            Ok(crate::backend::Info::default())
        }
        fn listing(&self) -> BoxStream<'_, Result<Vec<Holding>, BackendError>> {
            let records = crate::store::Records::new(self.store.clone());
            let second = async move {
                let a = records.get::<ServiceInstance>("a").await.map_err(|e| BackendError::new(e.to_string()))?;
                let b = ServiceInstance { id: "b".into(), ..a.expect("a is recorded").record };
                records.insert(&b).await.map_err(|e| BackendError::new(e.to_string()))?;
                Ok(vec![Holding::new("deployment", "b", "b")])
            };
            let first = futures_util::stream::iter([Ok(vec![Holding::new("deployment", "a", "a")])]);
            futures_util::StreamExt::boxed(futures_util::StreamExt::chain(first, futures_util::stream::once(second)))
        }
        async fn remove_instance(&self, id: &str) -> Result<(), BackendError> {
            self.removed.lock().expect("not poisoned").push(id.to_owned());
            Ok(())
        }
        async fn probe(&self) -> Result<String, BackendError> {
            Ok("ready".into())
        }
    }

    #[tokio::test]
    async fn an_instance_recorded_while_its_engine_is_listed_is_no_orphan() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let late = Arc::new(RecordedWhileListed { store: store.clone(), removed: std::sync::Mutex::default() });
        let broker = crate::broker::fixture::broker(store, late.clone());
        crate::broker::fixture::register_plan(&broker, "late", "anything").await;
        broker.instances().provision("a", request(), false).await.expect("provisions");
        assert_eq!(broker.inventory().reconcile().await.expect("reconciles"), 0);
        assert_eq!(*late.removed.lock().expect("not poisoned"), Vec::<String>::new(), "b is live");
    }

    fn inventory(store: &Arc<dyn Store>) -> crate::store::Records {
        crate::store::Records::new(store.clone())
    }

    /// The events of type `kind` once the log has them (it writes them in the
    /// background).
    async fn events_of(broker: &Arc<Broker>, kind: EventKind) -> Vec<crate::domain::event::Event> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let page = broker.events().page(&crate::events::Filter::default(), 0, 100).await.expect("events");
            let found: Vec<_> = page.into_iter().filter(|e| e.kind == kind).collect();
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn resources(store: &Arc<dyn Store>) -> Vec<(String, String, ResourceState)> {
        let listed: Vec<_> = inventory(store).list::<Resource>().await.expect("resources");
        listed.into_iter().map(|v| (v.record.owner, v.record.kind, v.record.state)).collect()
    }

    #[tokio::test]
    async fn host_ports_of_a_deployment_esm_no_longer_holds_go_back() {
        let (_, store, broker) = broker_with_plan().await;
        broker.instances().provision("kept", request(), false).await.expect("provisions");
        for (port, owner) in [(30001, "kept"), (30002, "ghost")] {
            let holding = Holding::port(None, port, "tcp", owner);
            let lease = Resource::of(
                &holding,
                "dummy",
                ResourceState::InUse,
                crate::domain::time::Timestamp::parse("2020-01-01T00:00:00.000Z").expect("a time"),
            );
            inventory(&store).insert(&lease).await.expect("leased");
        }
        broker.inventory().reconcile().await.expect("reconciles");
        let ports: Vec<_> = resources(&store).await.into_iter().filter(|(_, kind, _)| kind == "port").collect();
        assert_eq!(ports, [("kept".to_owned(), "port".to_owned(), ResourceState::InUse)]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_inventory_follows_what_the_backend_holds() {
        let (dummy, store, broker) = broker_with_plan().await;
        broker.spawn_event_log();
        broker.instances().provision("i-1", request(), false).await.expect("provisions");
        let deployment = ("i-1".to_owned(), "deployment".to_owned(), ResourceState::InUse);
        assert_eq!(resources(&store).await, std::slice::from_ref(&deployment), "recorded by the provision");

        // Removed behind esm's back: marked gone, with an event. (Only what was
        // recorded before the engine was listed counts: a moment passes.)
        dummy.remove_instance("i-1").await.expect("removed");
        tokio::time::advance(Duration::from_millis(5)).await;
        broker.inventory().reconcile().await.expect("reconciles");
        assert_eq!(resources(&store).await, [("i-1".to_owned(), "deployment".to_owned(), ResourceState::Gone)]);
        let gone = events_of(&broker, EventKind::ResourceGone).await;
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(gone[0].instance_id.as_deref(), Some("i-1"));

        // Lost from the inventory (a store restored from a backup, say): recorded again.
        store.delete(Collection::Resources, "dummy/deployment/i-1", None).await.expect("deleted");
        broker
            .instances()
            .update(
                "i-1",
                serde_json::from_value(json!({"service_id": "s", "parameters": {"x": 1}})).expect("update"),
                false,
            )
            .await
            .expect("updates");
        store.delete(Collection::Resources, "dummy/deployment/i-1", None).await.expect("deleted");
        broker.inventory().reconcile().await.expect("reconciles");
        assert_eq!(resources(&store).await, [deployment], "recorded by reconciliation");

        let query = serde_json::from_value(json!({"service_id": "s", "plan_id": "p"})).expect("query");
        broker.instances().deprovision("i-1", &query).await.expect("deprovisions");
        assert_eq!(resources(&store).await, [], "forgotten once removed");
    }

    #[tokio::test(start_paused = true)]
    async fn an_orphan_is_recorded_as_such_removed_and_forgotten() {
        let (dummy, store, broker) = broker_with_plan().await;
        broker.spawn_event_log();
        broker.instances().provision("forgotten", request(), false).await.expect("provisions");
        store.delete(Collection::Instances, "forgotten", None).await.expect("deleted");
        assert_eq!(broker.inventory().reconcile().await.expect("reconciles"), 1);
        assert_eq!(dummy.held(None).await.expect("held"), []);
        assert_eq!(resources(&store).await, [], "removed, so no longer in the inventory");
        let orphaned = events_of(&broker, EventKind::ResourceOrphaned).await;
        assert_eq!(orphaned.len(), 1, "{orphaned:?}");
        assert_eq!(orphaned[0].instance_id.as_deref(), Some("forgotten"));
        assert!(orphaned[0].reason.as_deref().is_some_and(|r| r.contains("deployment forgotten")), "{orphaned:?}");
    }
}
