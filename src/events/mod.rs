//! The change-event log: every lifecycle step and liveness transition, numbered,
//! persisted in the store, and fanned out to subscribers.
//!
//! - `writer.rs`: [`EventLog::emit`] queues an event and returns at once (an event never
//!   slows or fails the operation it tells of); one writer task numbers the queued
//!   events and inserts them. Ids come from a counter seeded from the store's greatest
//!   id; an id another replica took meanwhile is a conflict on insert, and the event is
//!   numbered again after the store's greatest. So ids increase across replicas and
//!   leave no holes, except where a write failed for good.
//! - `hub.rs`: one tail task per process reads the log in id order (woken by local
//!   writes, and polling on a shared store for other replicas' writes) and broadcasts
//!   each event once, serialised, to every subscriber. An id that is missing while
//!   later ones exist is waited for a moment (its insert may still be committing)
//!   and then passed over.
//! - `subscription.rs`: one subscriber: what it missed (from the store, up to what
//!   the tail has delivered), then the broadcast; a subscriber too slow for the
//!   broadcast reads from the store again; a subscriber asking for events older than
//!   the log keeps is told with a `gap`.

mod hub;
mod subscription;
mod webhook;
mod writer;

pub use hub::Delivered;
pub use subscription::{Filter, Item};
pub use webhook::Webhook;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::event::Event;
use crate::store::{Collection, Query, Records, StoreError};

/// How long a missing id is waited for before the tail passes over it.
pub const HOLE_GRACE: Duration = Duration::from_secs(2);

/// The event log of one process (shared by the replicas through the store).
pub struct EventLog {
    records: Records,
    clock: Clock,
    /// How many of the latest events are kept.
    retention: usize,
    writer: writer::Queue,
    hub: hub::Hub,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("retention", &self.retention).finish_non_exhaustive()
    }
}

impl EventLog {
    /// A log over `records`, keeping the latest `retention` events. Nothing is written
    /// or delivered until [`EventLog::run`] runs.
    pub fn new(records: Records, clock: Clock, retention: usize) -> Arc<Self> {
        Arc::new(Self { records, clock, retention, writer: writer::Queue::new(), hub: hub::Hub::new() })
    }

    /// Records `event`, stamped now. Returns at once; if the queue is full (the store
    /// has been away for long) the event is dropped with a warning.
    pub fn emit(&self, mut event: Event) {
        event.at = self.clock.timestamp();
        self.writer.push(event);
    }

    /// Writes queued events and delivers the log to subscribers until `stop`; then
    /// writes what is still queued.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken, poll: Option<Duration>) {
        let writing = writer::run(Arc::clone(&self), stop.clone());
        let tailing = hub::run(Arc::clone(&self), stop, poll);
        tokio::join!(writing, tailing);
    }

    /// Up to `limit` events after id `after` and no later than what this process has
    /// delivered (so a client paging the log never skips an event still committing),
    /// matching every filter.
    pub async fn page(&self, filter: &Filter, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let upto = self.hub.delivered();
        if after >= upto {
            return Ok(Vec::new());
        }
        let query = Query { filters: filter.index_filters(), after: Some(Event::key(after)), limit };
        let page = self.records.page_values::<Event>(Collection::Events, &query).await?;
        Ok(page.into_iter().filter(|e| e.id <= upto).collect())
    }

    /// The oldest id the log still holds.
    pub async fn oldest(&self) -> Result<Option<u64>, StoreError> {
        let first = self.records.store().page_ids(Collection::Events, &Query::new([], 1)).await?;
        Ok(first.first().and_then(|key| Event::id_of(key)))
    }

    /// POSTs every event to `webhook` (see `webhook.rs`) until `stop`; `replica` names
    /// this process in the delivery lease.
    pub async fn deliver_to(
        self: Arc<Self>,
        webhook: Webhook,
        replica: String,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let deliverer =
            webhook::Deliverer { records: self.records.clone(), clock: self.clock, log: self, webhook, replica };
        deliverer.run(stop).await;
    }

    /// The newest id in the store.
    async fn newest(&self) -> Result<u64, StoreError> {
        let last = self.records.store().last_id(Collection::Events).await?;
        Ok(last.as_deref().and_then(Event::id_of).unwrap_or(0))
    }

    /// How many events the log holds (ids never written inside it count too).
    pub async fn stored(&self) -> Result<u64, StoreError> {
        match self.oldest().await? {
            Some(oldest) => Ok(self.newest().await?.saturating_sub(oldest) + 1),
            None => Ok(0),
        }
    }

    /// The last id this process has delivered to its subscribers.
    pub fn delivered(&self) -> u64 {
        self.hub.delivered()
    }

    /// Whether this process delivers new events to subscribers yet (it starts once it
    /// has read where the log ends).
    pub fn tailing(&self) -> bool {
        self.hub.tailing()
    }

    /// How many subscribers are connected now.
    pub fn subscribers(&self) -> usize {
        self.hub.subscribers()
    }

    /// Deletes events older than the latest `retention`; returns how many.
    pub async fn trim(&self) -> Result<usize, StoreError> {
        let newest = self.newest().await?;
        let keep_from = newest.saturating_sub(u64::try_from(self.retention).unwrap_or(u64::MAX)) + 1;
        let mut removed = 0;
        loop {
            let ids = self.records.store().page_ids(Collection::Events, &Query::new([], 256)).await?;
            let old: Vec<String> =
                ids.into_iter().filter(|k| Event::id_of(k).is_some_and(|id| id < keep_from)).collect();
            if old.is_empty() {
                return Ok(removed);
            }
            let deletes = old.iter().map(|key| self.records.store().delete(Collection::Events, key, None));
            for deleted in futures_util::future::join_all(deletes).await {
                removed += usize::from(deleted?);
            }
        }
    }
}
