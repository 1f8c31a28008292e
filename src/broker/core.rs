//! The core every feature of the broker shares: the records, the backends, the
//! settings (with the clock and the metrics), the event log, and the tasks a stop
//! waits for. A feature's own in-process state is not here: it lives in the feature's
//! room (`pools/`, `liveness/`, `registry/`, `operations/`), which only that feature
//! can reach.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::BrokerSettings;
use crate::backend::{Backend, Backends};
use crate::clock::Clock;
use crate::domain::manifest::Manifest;
use crate::error::{OsbError, OsbResult};
use crate::events::EventLog;
use crate::metrics::Metrics;
use futures_util::TryStreamExt;

use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::store::{Query, Record, Records, Store, Versioned, index};

/// What every feature of the broker shares.
pub(super) struct Core {
    pub(super) records: Records,
    pub(super) backends: Backends,
    pub(super) settings: BrokerSettings,
    /// The change-event log.
    pub(super) events: Arc<EventLog>,
    /// The asynchronous operations in flight and the background rounds; waited for on
    /// shutdown.
    pub(super) tasks: TaskTracker,
    /// Tells running operations to stop where they are on shutdown; they stay
    /// "in progress" in the store, handed back, and are resumed by another replica or
    /// the next start.
    pub(super) shutdown: CancellationToken,
    /// The event log's writer and webhook: stopped after the operations, so the events
    /// those emit on their way out are still written.
    pub(super) event_tasks: TaskTracker,
    /// Tells the event log's tasks to write what is queued and stop.
    pub(super) events_stop: CancellationToken,
}

impl Core {
    /// The core over `store` and `backends`.
    pub(super) fn new(store: Arc<dyn Store>, backends: Backends, settings: BrokerSettings) -> Self {
        let records = Records::new(store);
        let events = EventLog::new(records.clone(), settings.clock, settings.events);
        Self {
            records,
            backends,
            settings,
            events,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            event_tasks: TaskTracker::new(),
            events_stop: CancellationToken::new(),
        }
    }

    /// The store.
    pub(super) fn store(&self) -> &Arc<dyn Store> {
        self.records.store()
    }

    /// Where what the broker does is counted.
    pub(super) fn metrics(&self) -> &Metrics {
        &self.settings.metrics
    }

    /// The clock every deadline, lease and expiry is read from.
    pub(super) fn clock(&self) -> Clock {
        self.settings.clock
    }

    /// The backend that deploys `manifest`'s type.
    pub(super) fn backend(&self, manifest: &Manifest) -> OsbResult<Arc<dyn Backend>> {
        self.backends.get(&manifest.manifest_type).cloned().ok_or_else(|| {
            OsbError::Internal(format!("no backend for manifest type {:?} in this esm", manifest.manifest_type))
        })
    }

    /// At most `limit` records matching the index `filters` after the id `after`, in id
    /// order, and the id to continue after if there may be more.
    pub(super) async fn page_of<T: Record>(
        &self,
        filters: Vec<(String, String)>,
        after: Option<String>,
        limit: usize,
    ) -> OsbResult<(Vec<T>, Option<String>)> {
        // One more than asked tells whether there is a next page.
        let query = Query { filters, after, limit: limit + 1 };
        let mut found = self.records.page::<T>(&query).await?;
        let more = found.len() > limit;
        found.truncate(limit);
        let next_after = found.last().filter(|_| more).map(|v| v.record.id().to_owned());
        Ok((found.into_iter().map(|Versioned { record, .. }| record).collect(), next_after))
    }

    /// A live (not deprovisioned) instance.
    pub(super) async fn live_instance(&self, id: &str) -> OsbResult<Option<Versioned<ServiceInstance>>> {
        Ok(self.records.get::<ServiceInstance>(id).await?.filter(|v| v.record.is_platform_instance()))
    }

    /// An instance a platform asked for, live or deprovisioned (its tombstone, kept for
    /// the retention); never a pool member.
    pub(super) async fn instance_or_tombstone(&self, id: &str) -> OsbResult<Option<ServiceInstance>> {
        Ok(self.records.get::<ServiceInstance>(id).await?.map(|v| v.record).filter(|i| i.pool.is_none()))
    }

    /// The live bindings of an instance, from the index by instance.
    pub(super) async fn bindings_of(&self, instance_id: &str) -> OsbResult<Vec<Binding>> {
        let filter = vec![(index::INSTANCE_ID.to_owned(), instance_id.to_owned())];
        let found: Vec<Versioned<Binding>> = self.records.scan(filter).try_collect().await?;
        Ok(found.into_iter().map(|v| v.record).collect())
    }

    /// The live record whose deployment is `id`: the record itself, or the instance
    /// that was handed member `id`.
    pub(super) async fn deployed_as(&self, id: &str) -> OsbResult<Option<Versioned<ServiceInstance>>> {
        if let Some(found) = self.records.get::<ServiceInstance>(id).await?.filter(|v| v.record.is_live()) {
            return Ok(Some(found));
        }
        let query = index::Query::new([(index::DEPLOYMENT, id)], 1);
        Ok(self.records.page::<ServiceInstance>(&query).await?.into_iter().next())
    }
}
