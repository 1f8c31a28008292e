//! Reconciliation: what the engines run against what the store knows, so that no
//! container is ever orphaned. At start and periodically, resources labelled with an
//! instance esm does not know (or has deprovisioned) are removed. Instances whose
//! containers died or vanished are reported by their backend's `info`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;

use super::Broker;
use crate::domain::event::Event;
use crate::domain::instance::ServiceInstance;
use crate::error::OsbResult;
use crate::store::{Collection, index};

impl Broker {
    /// Removes resources of instances the store does not hold as live, and releases
    /// host ports no deployment holds. Returns how many instances' resources were
    /// removed.
    pub async fn reconcile(&self) -> OsbResult<usize> {
        let mut removed = 0;
        for backend in self.backends.all() {
            // Listed before the store is read: a resource listed here was created after
            // its instance was recorded, so a new instance is never taken for an orphan.
            let owned = match backend.owned_instances().await {
                Ok(owned) => owned,
                Err(e) => {
                    tracing::debug!(backend = backend.name(), error = %e, "cannot list what the backend holds");
                    continue;
                }
            };
            if owned.is_empty() {
                continue;
            }
            let orphans = self.not_live(owned).await?;
            for orphan in &orphans {
                tracing::warn!(backend = backend.name(), instance_id = %orphan, "removing resources of an instance esm does not know");
                match backend.remove_instance(orphan).await {
                    Ok(()) => {
                        removed += 1;
                        let mut event = Event::new("instance.removed")
                            .because(format!("{} held resources for an instance esm does not know", backend.name()));
                        event.instance_id = Some(orphan.clone());
                        self.events.emit(event);
                        self.metrics().reconcile_removed(backend.name());
                    }
                    Err(e) => tracing::error!(instance_id = %orphan, error = %e, "could not remove orphaned resources"),
                }
            }
        }
        self.release_orphaned_ports().await?;
        Ok(removed)
    }

    /// Those of `ids` the store does not hold as live: the ids of live instances and
    /// pool members are read a page at a time from the index, so memory holds only what
    /// the backend runs. What is left may still be the deployment of an instance that
    /// was handed a pool member: looked up one by one in the index of deployments.
    async fn not_live(&self, mut ids: BTreeSet<String>) -> OsbResult<BTreeSet<String>> {
        for field in [index::LIVE, index::MEMBER] {
            let filter = vec![(field.to_owned(), "1".to_owned())];
            let mut held = std::pin::pin!(self.records.scan_ids::<ServiceInstance>(filter));
            while !ids.is_empty()
                && let Some(id) = held.try_next().await?
            {
                ids.remove(&id);
            }
        }
        let mut orphans = BTreeSet::new();
        for id in ids {
            let query = index::Query::new([(index::DEPLOYMENT, id.as_str())], 1);
            if self.store().page_ids(Collection::Instances, &query).await?.is_empty() {
                orphans.insert(id);
            }
        }
        Ok(orphans)
    }

    /// Reconciles now and then every `every`, until shutdown.
    pub fn spawn_reconciler(self: &Arc<Self>, every: Duration) {
        self.spawn_every(every, |this| async move {
            match this.reconcile().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "reconciliation removed orphaned deployments"),
                Err(e) => tracing::warn!(error = %e, "reconciliation could not read the store"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::backend::dummy::DummyBackend;
    use crate::backend::{Backend, Backends};
    use crate::broker::BrokerSettings;
    use crate::domain::manifest::Manifest;
    use crate::store::memory::MemoryStore;
    use crate::store::{Collection, Store};

    async fn broker_with_plan() -> (Arc<DummyBackend>, Arc<dyn Store>, Arc<Broker>) {
        let dummy = Arc::new(DummyBackend::new());
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let broker = Broker::new(store.clone(), Backends::new().with(dummy.clone()), BrokerSettings::default());
        let service = json!({"id": "s", "name": "s", "description": "d", "plans": [{"id": "p", "name": "p", "description": "d"}]});
        broker.register_service(serde_json::from_value(service).expect("service")).await.expect("registers");
        let manifest = Manifest {
            id: String::new(),
            service_id: "s".into(),
            plan_id: "p".into(),
            manifest_type: "dummy".into(),
            manifest_content: "x-esm-dummy: {mode: sync}\n".into(),
            endpoints: None,
            config: None,
        };
        broker.register_manifest("m", manifest).await.expect("registers");
        (dummy, store, broker)
    }

    fn request() -> crate::wire::ProvisionRequest {
        let request = json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s"});
        serde_json::from_value(request).expect("request")
    }

    #[tokio::test]
    async fn what_runs_for_an_instance_esm_does_not_know_is_removed_and_nothing_else() {
        let (dummy, store, broker) = broker_with_plan().await;
        for id in ["kept", "forgotten"] {
            broker.provision(id, request(), false).await.expect("provisions");
        }
        // The record lost (a restore from an older backup, say); the dummy still runs it.
        store.delete(Collection::Instances, "forgotten", None).await.expect("deleted");
        assert_eq!(broker.reconcile().await.expect("reconciles"), 1);
        assert_eq!(dummy.owned_instances().await, Ok(["kept".to_owned()].into()));
        assert_eq!(broker.reconcile().await.expect("reconciles"), 0, "nothing more to remove");
    }

    #[tokio::test]
    async fn pool_members_and_instances_handed_one_are_not_orphans() {
        let (dummy, _, broker) = broker_with_plan().await;
        let pool = serde_json::from_value(json!({"size": 2})).expect("pool request");
        broker.set_pool("p", pool).await.expect("pool set");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while broker.pool_status("p").await.expect("status").ready < 2 {
            assert!(tokio::time::Instant::now() < deadline, "the pool did not fill");
            broker.pool_round().await.expect("a round");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        broker.provision("handed", request(), false).await.expect("provisions");
        let held = dummy.owned_instances().await.expect("owned");
        assert_eq!(held.len(), 2, "two members, one of them the instance's deployment: {held:?}");
        assert!(held.iter().all(|id| id.starts_with(crate::domain::pool::MEMBER_PREFIX)), "{held:?}");
        assert_eq!(broker.reconcile().await.expect("reconciles"), 0);
        assert_eq!(dummy.owned_instances().await.expect("owned"), held);
    }

    #[tokio::test]
    async fn host_ports_of_a_deployment_esm_no_longer_holds_go_back() {
        use crate::domain::port::PortLease;
        let (_, store, broker) = broker_with_plan().await;
        broker.provision("kept", request(), false).await.expect("provisions");
        let records = crate::store::Records::new(store.clone());
        for (port, holder) in [(30001, "kept"), (30002, "ghost")] {
            let lease = PortLease {
                id: PortLease::id_of("tcp", port),
                port,
                protocol: "tcp".into(),
                holder: holder.into(),
                at: String::new(),
            };
            records.insert(&lease).await.expect("leased");
        }
        broker.reconcile().await.expect("reconciles");
        let left: Vec<String> =
            records.list::<PortLease>().await.expect("leases").into_iter().map(|l| l.record.holder).collect();
        assert_eq!(left, ["kept"]);
    }
}
