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

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Broker;
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::{Operation, OperationKind, Tracked};
use crate::error::{OsbError, OsbResult};
use futures_util::TryStreamExt;

use crate::store::{Record, Versioned, index};

impl Broker {
    /// A new operation, owned by this process.
    pub(super) fn start_op(&self, kind: OperationKind, asynchronous: bool) -> Operation {
        let mut op = Operation::start(kind, asynchronous, self.clock().now());
        op.owner = Some(self.replica.clone());
        op.lease_until = self.lease_expiry();
        op
    }

    /// This process's owner id.
    pub(super) fn replica(&self) -> &str {
        &self.replica
    }

    fn lease_expiry(&self) -> u64 {
        self.clock()
            .millis()
            .saturating_add(u64::try_from(self.settings.operation_lease.as_millis()).unwrap_or(u64::MAX))
    }

    /// The operations this process is running. Poisoning is ignored: an insert or
    /// remove is never left half-done.
    pub(super) fn running_ops(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a task that shutdown waits for.
    pub(super) fn spawn_task<R: Send + 'static>(
        &self,
        task: impl Future<Output = R> + Send + 'static,
    ) -> tokio::task::JoinHandle<R> {
        self.tasks.spawn(task)
    }

    /// Runs `round` now and then every `period`, until shutdown (which waits for it).
    pub(super) fn spawn_every<F, Fut>(self: &Arc<Self>, period: std::time::Duration, round: F)
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let this = Arc::clone(self);
        self.spawn_task(async move {
            loop {
                round(Arc::clone(&this)).await;
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    () = this.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Takes over the operations no live owner holds and runs them. At start-up with a
    /// store only this process can open (`exclusive`), every running operation is
    /// orphaned, leases or not: the process that held them is gone.
    pub async fn claim_orphaned_operations(self: &Arc<Self>, at_start: bool) -> OsbResult<usize> {
        let ignore_leases = at_start && self.store().exclusive();
        self.reindex_once().await?;
        let mut claimed = 0;
        // Only records with a running operation are read, through the index.
        let running = || vec![(index::RUNNING.to_owned(), "1".to_owned())];
        let mut instances = std::pin::pin!(self.records.scan::<ServiceInstance>(running()));
        while let Some(Versioned { record, .. }) = instances.try_next().await? {
            if let Some(op) = self.claim::<ServiceInstance>(&record, ignore_leases).await? {
                tracing::info!(instance_id = %record.id, operation = %op.id, kind = op.kind.as_str(), "taking over operation");
                claimed += usize::from(self.resume_instance_operation(record.id.clone(), &op).is_some());
            }
        }
        let mut bindings = std::pin::pin!(self.records.scan::<Binding>(running()));
        while let Some(Versioned { record, .. }) = bindings.try_next().await? {
            if let Some(op) = self.claim::<Binding>(&record, ignore_leases).await? {
                tracing::info!(binding_id = %record.id, operation = %op.id, kind = op.kind.as_str(), "taking over operation");
                claimed += usize::from(self.resume_binding_operation(record.id.clone(), &op).is_some());
            }
        }
        Ok(claimed)
    }

    /// Indexes records an older esm wrote without index entries, once per store (then
    /// a marker makes it a single read). Before the first claim: claims use the index.
    async fn reindex_once(&self) -> OsbResult<()> {
        if self.reindexed.load(Ordering::Acquire) {
            return Ok(());
        }
        let instances = self.records.reindex::<ServiceInstance>().await?;
        let bindings = self.records.reindex::<Binding>().await?;
        if instances + bindings > 0 {
            tracing::info!(instances, bindings, "indexed records written by an older esm");
        }
        self.reindexed.store(true, Ordering::Release);
        Ok(())
    }

    /// Claims the running operation of `record` if its lease has expired.
    async fn claim<T: Record + Tracked + Clone>(
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
        let (op_id, now) = (op.id.clone(), self.clock().millis());
        let mut taken = None;
        self.records
            .modify::<T, OsbError, _>(record.id(), |current| {
                let Some(op) = current.operations_mut().running_mut(&op_id) else {
                    return Ok(false);
                };
                if !ignore_leases && op.lease_until > now {
                    return Ok(false);
                }
                op.owner = Some(self.replica.clone());
                op.lease_until = self.lease_expiry();
                taken = Some(op.clone());
                Ok(true)
            })
            .await?;
        Ok(taken)
    }

    /// Keeps taking over orphaned operations, every half lease, until shutdown.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let this = Arc::clone(self);
        let period = self.settings.operation_lease / 2;
        self.spawn_task(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(period) => {}
                    () = this.shutdown.cancelled() => return,
                }
                if let Err(e) = this.claim_orphaned_operations(false).await {
                    tracing::warn!(error = %e, "could not look for orphaned operations");
                }
            }
        });
    }

    /// Extends this process's lease on an operation: `Ok(false)` if it no longer
    /// holds it.
    pub(super) async fn extend_lease<T: Record + Tracked + Clone>(&self, id: &str, op_id: &str) -> OsbResult<bool> {
        let mut held = false;
        self.records
            .modify::<T, OsbError, _>(id, |record| {
                held = false;
                let Some(op) = record.operations_mut().owned_mut(op_id, &self.replica) else {
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
    pub(super) async fn renew<T: Record + Tracked + Clone>(&self, id: &str, op_id: &str) -> bool {
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
