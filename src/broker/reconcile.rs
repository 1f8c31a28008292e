//! Reconciliation: what the engines run against what the store knows, so that no
//! container is ever orphaned. At start and periodically, resources labelled with an
//! instance esm does not know (or has deprovisioned) are removed. Instances whose
//! containers died or vanished are reported by their backend's `info`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::Broker;
use crate::error::OsbResult;

impl Broker {
    /// Removes resources of instances the store does not hold as live. Returns how many
    /// instances' resources were removed.
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
            let live: BTreeSet<String> = self.live_instance_ids().await?;
            for orphan in owned.difference(&live) {
                tracing::warn!(backend = backend.name(), instance_id = %orphan, "removing resources of an instance esm does not know");
                match backend.remove_instance(orphan).await {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::error!(instance_id = %orphan, error = %e, "could not remove orphaned resources"),
                }
            }
        }
        Ok(removed)
    }

    async fn live_instance_ids(&self) -> OsbResult<BTreeSet<String>> {
        Ok(self
            .records
            .list::<crate::domain::instance::ServiceInstance>()
            .await?
            .into_iter()
            .filter(|v| v.record.is_live())
            .map(|v| v.record.id)
            .collect())
    }

    /// Reconciles now and then every `every`, until shutdown.
    pub fn spawn_reconciler(self: &Arc<Self>, every: Duration) {
        let this = Arc::clone(self);
        self.spawn_task(async move {
            loop {
                match this.reconcile().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "reconciliation removed orphaned deployments"),
                    Err(e) => tracing::warn!(error = %e, "reconciliation could not read the store"),
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = this.shutdown.cancelled() => return,
                }
            }
        });
    }
}
