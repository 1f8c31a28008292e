//! Running operations: ownership leases, the backend call with its deadline, and the
//! sweep that takes over operations nobody runs any more.
//!
//! Every running operation names its owner (a random id per esm process) and a lease
//! expiry. The owner renews the lease while the backend works. Taking an operation
//! over is a compare-and-set on its record that succeeds only once the lease has
//! expired, so among several replicas on one database exactly one runs each
//! operation; and when a replica dies, another one (or its own restart) finishes its
//! operations after at most one lease. Backend calls are idempotent, so re-running an
//! operation finishes it honestly whatever point it had reached.
//!
//! A replica that stops gracefully does not make the others wait for that lease: each
//! operation it stops is handed back (its lease expired with a compare-and-set that
//! holds only if this replica still owns it), and on a store other replicas share a
//! marker record tells them, so their sweepers, which read the marker's version every
//! [`HAND_BACK_CHECK`], take the operations over at once. A hand-back the store
//! refuses leaves the lease to lapse, as after a crash.

use crate::broker::Operations;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::{Operation, OperationKind, Tracked};
use crate::error::{OsbError, OsbResult};
use futures_util::TryStreamExt;

use crate::store::{Collection, Record, Versioned, index};

/// The marker record (in the registry collection) whose version moves each time a
/// replica hands operations back.
const HAND_BACK_MARKER: &str = "_handed_back";

/// How often a replica on a shared store reads the hand-back marker's version.
pub const HAND_BACK_CHECK: Duration = Duration::from_secs(1);

impl Operations<'_> {
    /// A new operation, owned by this process.
    pub(in crate::broker) fn start_op(&self, kind: OperationKind, asynchronous: bool) -> Operation {
        let mut op = Operation::start(kind, asynchronous, self.core.clock().now());
        op.owner = Some(self.room.replica.clone());
        op.lease_until = self.lease_expiry();
        op
    }

    /// Makes the next stop keep its leases, as a crash would (for tests of what
    /// another replica does once they lapse).
    #[cfg(any(test, feature = "test-support"))]
    pub(in crate::broker) fn keep_leases_on_stop(&self) {
        self.room.hand_back_on_stop.store(false, Ordering::Release);
    }

    /// This process's owner id.
    pub(in crate::broker) fn replica(&self) -> &str {
        &self.room.replica
    }

    fn lease_expiry(&self) -> u64 {
        self.core
            .clock()
            .millis()
            .saturating_add(u64::try_from(self.core.settings.operation_lease.as_millis()).unwrap_or(u64::MAX))
    }

    /// The operations this process is running. Poisoning is ignored: an insert or
    /// remove is never left half-done.
    pub(in crate::broker) fn running_ops(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.room.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes over the operations no live owner holds and runs them. At start-up with a
    /// store only this process can open (`exclusive`), every running operation is
    /// orphaned, leases or not: the process that held them is gone.
    pub async fn claim_orphaned_operations(&self, at_start: bool) -> OsbResult<usize> {
        let ignore_leases = at_start && self.core.store().exclusive();
        self.reindex_once().await?;
        // Claimed first, run after: the operations' own store writes would otherwise
        // slow the scan that a start waits for (a lease that lapses meanwhile is renewed
        // or lost by compare-and-set in the runner, so nothing runs twice).
        let (mut instances_taken, mut bindings_taken) = (Vec::new(), Vec::new());
        // Only records with a running operation are read, through the index.
        let running = || vec![(index::RUNNING.to_owned(), "1".to_owned())];
        let mut instances = std::pin::pin!(self.core.records.scan::<ServiceInstance>(running()));
        while let Some(Versioned { record, .. }) = instances.try_next().await? {
            if let Some(op) = self.claim::<ServiceInstance>(&record, ignore_leases).await? {
                tracing::info!(instance_id = %record.id, operation = %op.id, kind = op.kind.as_str(), "taking over operation");
                instances_taken.push((record.id, op));
            }
        }
        let mut bindings = std::pin::pin!(self.core.records.scan::<Binding>(running()));
        while let Some(Versioned { record, .. }) = bindings.try_next().await? {
            if let Some(op) = self.claim::<Binding>(&record, ignore_leases).await? {
                tracing::info!(binding_id = %record.id, operation = %op.id, kind = op.kind.as_str(), "taking over operation");
                bindings_taken.push((record.id, op));
            }
        }
        let instances = instances_taken.into_iter().filter_map(|(id, op)| self.resume_instance_operation(id, &op));
        let bindings = bindings_taken.into_iter().filter_map(|(id, op)| self.resume_binding_operation(id, &op));
        Ok(instances.count() + bindings.count())
    }

    /// Indexes records an older esm wrote without index entries, once per store (then
    /// a marker makes it a single read). Before the first claim: claims use the index.
    async fn reindex_once(&self) -> OsbResult<()> {
        if self.room.reindexed.load(Ordering::Acquire) {
            return Ok(());
        }
        let instances = self.core.records.reindex::<ServiceInstance>().await?;
        let bindings = self.core.records.reindex::<Binding>().await?;
        if instances + bindings > 0 {
            tracing::info!(instances, bindings, "indexed records written by an older esm");
        }
        self.room.reindexed.store(true, Ordering::Release);
        Ok(())
    }

    /// Claims the running operation of `record` if its lease has expired.
    pub(in crate::broker) async fn claim<T: Record + Tracked + Clone>(
        &self,
        record: &T,
        ignore_leases: bool,
    ) -> OsbResult<Option<Operation>> {
        let Some(op) = record.operations().running() else {
            return Ok(None);
        };
        if self.running_ops().contains(&op.id) {
            // This process runs it: a lapsed lease means it stalled, not that it died.
            return Ok(None);
        }
        let (op_id, now) = (op.id.clone(), self.core.clock().millis());
        let mut taken = None;
        self.core
            .records
            .modify::<T, OsbError, _>(record.id(), |current| {
                // Only the attempt that is written counts: one whose write lost a race
                // is followed by another that sees the winner's record.
                taken = None;
                let Some(op) = current.operations_mut().running_mut(&op_id) else {
                    return Ok(false);
                };
                if !ignore_leases && op.lease_until > now {
                    return Ok(false);
                }
                op.owner = Some(self.room.replica.clone());
                op.lease_until = self.lease_expiry();
                taken = Some(op.clone());
                Ok(true)
            })
            .await?;
        Ok(taken)
    }

    /// Keeps taking over orphaned operations, every half lease and, on a shared store,
    /// as soon as another replica hands some back, until shutdown.
    pub fn spawn_sweeper(&self) {
        let this = Arc::clone(self.broker);
        let period = self.core.settings.operation_lease / 2;
        let shared = !self.core.store().exclusive();
        self.broker.spawn_task(async move {
            let mut marker = None;
            let operations = this.operations();
            loop {
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    () = operations.hand_back_seen(&mut marker), if shared => {}
                    () = this.stopping().cancelled() => return,
                }
                if let Err(e) = this.operations().claim_orphaned_operations(false).await {
                    tracing::warn!(error = %e, "could not look for orphaned operations");
                }
            }
        });
    }

    /// Returns once the hand-back marker's version is not `seen` (which it then
    /// becomes), reading it every [`HAND_BACK_CHECK`]; the first read, at once, only
    /// sets it.
    async fn hand_back_seen(&self, seen: &mut Option<Option<u64>>) {
        let mut at_once = seen.is_none();
        loop {
            if !std::mem::take(&mut at_once) {
                tokio::time::sleep(HAND_BACK_CHECK).await;
            }
            match self.core.store().version(Collection::Registry, HAND_BACK_MARKER).await {
                Ok(version) if seen.is_none() => *seen = Some(version),
                Ok(version) if *seen != Some(version) => {
                    *seen = Some(version);
                    return;
                }
                Ok(_) => {}
                // The half-lease sweep runs whatever this says.
                Err(e) => tracing::debug!(error = %e, "cannot read the hand-back marker"),
            }
        }
    }

    /// Hands back this process's operation `op_id` of record `id`, stopped on the way
    /// out: its lease is expired if this process still holds it, so whoever sweeps
    /// next takes it over instead of waiting for the lease to lapse.
    pub(in crate::broker) async fn hand_back<T: Record + Tracked + Clone>(&self, id: &str, op_id: &str) {
        if !self.room.hand_back_on_stop.load(Ordering::Acquire) {
            return;
        }
        let mut released = false;
        let result = self
            .core
            .records
            .modify::<T, OsbError, _>(id, |record| {
                released = false;
                let Some(op) = record.operations_mut().owned_mut(op_id, &self.room.replica) else {
                    return Ok(false);
                };
                op.lease_until = 0;
                released = true;
                Ok(true)
            })
            .await;
        match result {
            Ok(_) if released => {
                self.room.handed_back.fetch_add(1, Ordering::AcqRel);
                tracing::debug!(id, operation = op_id, "operation handed back");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(id, operation = op_id, error = %e, "could not hand an operation back; its lease lapses")
            }
        }
    }

    /// Tells the other replicas on a shared store that this one handed operations
    /// back, by moving the marker's version (by `until` at the latest).
    pub(in crate::broker) async fn announce_hand_back(&self, until: tokio::time::Instant) {
        let handed_back = self.room.handed_back.load(Ordering::Acquire);
        if handed_back == 0 {
            return;
        }
        tracing::info!(operations = handed_back, "handed the operations this replica stopped back");
        if self.core.store().exclusive() {
            return;
        }
        let marker = serde_json::json!({"replica": self.room.replica, "operations": handed_back});
        let written =
            tokio::time::timeout_at(until, self.core.store().upsert(Collection::Registry, HAND_BACK_MARKER, marker));
        match written.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not tell the other replicas; they sweep within half a lease")
            }
            Err(_) => tracing::warn!("could not tell the other replicas in time; they sweep within half a lease"),
        }
    }

    /// Extends this process's lease on an operation: `Ok(false)` if it no longer
    /// holds it.
    pub(in crate::broker) async fn extend_lease<T: Record + Tracked + Clone>(
        &self,
        id: &str,
        op_id: &str,
    ) -> OsbResult<bool> {
        let mut held = false;
        self.core
            .records
            .modify::<T, OsbError, _>(id, |record| {
                held = false;
                let Some(op) = record.operations_mut().owned_mut(op_id, &self.room.replica) else {
                    return Ok(false);
                };
                op.lease_until = self.lease_expiry();
                held = true;
                Ok(true)
            })
            .await?;
        Ok(held)
    }

    /// Renews this process's lease on an operation while it works; false if it no
    /// longer holds it.
    pub(in crate::broker) async fn renew<T: Record + Tracked + Clone>(&self, id: &str, op_id: &str) -> bool {
        match self.extend_lease::<T>(id, op_id).await {
            Ok(held) => held,
            Err(e) => {
                // Keep working: if the store stays away, the lease lapses and whoever
                // takes over wins; our result is then refused by the owner check.
                tracing::warn!(id, operation = op_id, error = %e, "could not renew an operation's lease");
                true
            }
        }
    }
}
