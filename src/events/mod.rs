//! The change-event log: every lifecycle step and liveness transition, numbered,
//! persisted in the store, and fanned out to subscribers.
//!
//! One total order, none lost, none twice, across replicas and crashes:
//!
//! - **Committed with the change.** An event about an instance or a binding (an
//!   operation's start and end, a refusal of a recorded operation, a liveness change)
//!   is put in that record's outbox (`domain::outbox`) in the very compare-and-set that
//!   makes the change. A committed change has its event committed; a process killed
//!   right after loses nothing. Other events (pools, the catalog, the inventory,
//!   refused requests) go through [`EventLog::emit`]: queued in memory a moment, then
//!   written to the outbox collection under a key fixed at emit (`writer.rs`); a
//!   process killed in that moment loses those.
//! - **Numbered by one sequencer at a time** (`sequencer.rs`): a batch of waiting
//!   events gets the next ids in one compare-and-set on the sequence document, which
//!   also records the batch; it is then inserted, drained from its outboxes, and
//!   cleared. Only one batch is planned at a time, over every replica, so ids never
//!   collide and a record's events are numbered in its outbox order, which is the
//!   order of its changes; across records, a batch is merged by time.
//! - **Idempotent.** Each event of a batch has its id fixed before it is inserted: an
//!   insert retried after a lost answer meets its own event, and whoever finishes a
//!   batch a dead replica left inserts the same events under the same ids.
//! - **On a store only this process writes** (memory, embedded), none of that is
//!   needed: the write that changes a record appends its new events to the log in the
//!   same transaction (`store::numbering`), so an event is in the log exactly when
//!   its change is, in commit order, at no extra write. The sequencer then runs once
//!   at start-up, for what an esm that used it left waiting.
//! - **No holes but for loss.** An id is missing only while its batch is being
//!   inserted, or for good if its record was deleted before the batch finished (a
//!   refused provision taken back); the tail asks the sequence document which.
//!
//! The parts:
//!
//! - `writer.rs`: standalone events into the outbox collection, with a bounded drain at
//!   shutdown.
//! - `sequencer.rs`: numbering (above).
//! - `hub.rs`: one tail task per process reads the log in id order (woken by the local
//!   sequencer, and polling on a shared store for other replicas' batches) and
//!   broadcasts each event once, serialised, to every subscriber.
//! - `subscription.rs`: one subscriber: what it missed (from the store, up to what
//!   the tail has delivered), then the broadcast; a subscriber too slow for the
//!   broadcast reads from the store again; a subscriber asking for events older than
//!   the log keeps is told with a `gap`. A subscriber reads the store a small page at
//!   a time and holds no more than one page; a stream lasts [`Limits::stream_lifetime`]
//!   and then tells its client where to resume.
//!
//! What the log may cost is bounded in count and in bytes ([`Limits`]): the events
//! kept, a JSON page, the writer's queue, the subscribers of one process, a record's
//! outbox (`domain::outbox::MAX_OUTBOX`). An event's own size is bounded where it is
//! made ([`Event::bounded`]).

mod hub;
mod sequencer;
mod sizes;
mod subscription;
mod webhook;
mod writer;

pub use hub::Delivered;
pub use subscription::{Filter, Item};
pub use webhook::Webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Clock;
use crate::domain::event::Event;
use crate::store::{Collection, Query, Records, StoreError};

/// How many events a JSON page reads from the store at a time (the page is filled from
/// several such reads, up to its count and its bytes).
const PAGE_READ: usize = 64;

/// What the log may hold and hand out (`ESM_EVENT_*`, `ESM_MAX_SUBSCRIBERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many of the latest events are kept.
    pub retention: usize,
    /// The most bytes of events kept ([`Event::size`]): the latest that fit, and at
    /// least the newest.
    pub retention_bytes: usize,
    /// The most bytes of events in one JSON page; a page holds at least one event.
    pub page_bytes: usize,
    /// The most bytes of events waiting to be written; beyond it events are dropped.
    pub queue_bytes: usize,
    /// Streams served at once by this process; one more is refused (503).
    pub subscribers: usize,
    /// How long one stream lasts; then it ends, telling its client to resume after the
    /// last id it passed.
    pub stream_lifetime: Duration,
}

impl Default for Limits {
    /// The settings' defaults (`config.rs`).
    fn default() -> Self {
        Self {
            retention: 10_000,
            retention_bytes: 32 << 20,
            page_bytes: 1 << 20,
            queue_bytes: 16 << 20,
            subscribers: 256,
            stream_lifetime: Duration::from_secs(600),
        }
    }
}

/// The event log of one process (shared by the replicas through the store).
pub struct EventLog {
    records: Records,
    clock: Clock,
    limits: Limits,
    writer: writer::Queue,
    hub: hub::Hub,
    /// The size of every event the log holds, for its byte retention.
    sizes: sizes::Sizes,
    /// Subscribers catching up read the store through this, a few at a time, so a
    /// crowd resuming at once holds a few pages in flight, not one per subscriber.
    catch_up_reads: tokio::sync::Semaphore,
    /// Pages read lately by subscribers catching up, shared by the next ones.
    recent_pages: subscription::RecentPages,
    /// This process, in standalone events' keys and in the sequence document.
    replica: String,
    /// Standalone events emitted by this process, for their keys' order.
    emitted: AtomicU64,
    /// Wakes the sequencer: an outbox got events.
    sequence: tokio::sync::Notify,
    /// Set once what an earlier run left waiting is numbered (see [`EventLog::run`]).
    caught_up: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl EventLog {
    /// A log over `records`, within `limits`. Nothing is written or delivered until
    /// [`EventLog::run`] runs.
    pub fn new(records: Records, clock: Clock, limits: Limits) -> Arc<Self> {
        let readers = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Arc::new(Self {
            records,
            clock,
            limits,
            writer: writer::Queue::new(limits.queue_bytes),
            hub: hub::Hub::new(),
            sizes: sizes::Sizes::default(),
            catch_up_reads: tokio::sync::Semaphore::new(readers),
            recent_pages: subscription::RecentPages::default(),
            replica: uuid::Uuid::new_v4().simple().to_string(),
            emitted: AtomicU64::new(0),
            sequence: tokio::sync::Notify::new(),
            caught_up: tokio::sync::watch::Sender::new(false),
        })
    }

    /// What the log may hold and hand out.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Records a standalone `event` (one not tied to a change of an instance or a
    /// binding: those go in the record's outbox, [`EventLog::stamped`]). Returns at
    /// once; if the queue is full in count or in bytes (the store has been away for
    /// long) the event is dropped with a warning.
    pub fn emit(&self, event: Event) {
        let n = self.emitted.fetch_add(1, Ordering::Relaxed);
        // Key order is emit order within this process, and about time order across.
        let key = format!("{:016}-{n:012}-{}", self.clock.millis(), self.replica);
        self.writer.push(key, self.stamped(event));
    }

    /// `event` stamped now and cut to its bounds ([`Event::bounded`]): as it goes into
    /// a record's outbox.
    pub fn stamped(&self, mut event: Event) -> Event {
        event.at = self.clock.timestamp().to_string();
        event.bounded()
    }

    /// Tells the sequencer that an outbox got events (it also looks unasked, now and
    /// then), and the tail that the log may have grown (a store only this process
    /// writes numbers events as they are written).
    pub fn announced(&self) {
        self.sequence.notify_one();
        self.numbered_as_written();
    }

    /// Wakes the tail where the store numbers events as it writes them (elsewhere the
    /// sequencer wakes it once a batch is in: a read of a shared store saved).
    fn numbered_as_written(&self) {
        if self.records.store().exclusive() {
            self.hub.wake();
        }
    }

    /// Numbers every event waiting in an outbox now (what the sequencer task does on
    /// its own); how many batches it took.
    pub async fn number_waiting(&self) -> Result<usize, StoreError> {
        sequencer::until_idle(self).await
    }

    /// Writes standalone events, numbers every waiting event, and delivers the log to
    /// subscribers until `stop`; then writes what is still queued, within a deadline.
    ///
    /// On a store only this process writes, events are numbered in the write that
    /// makes them (`store::numbering`): the sequencer then runs once, for what an
    /// earlier esm left waiting, before this process writes any event (so its ids
    /// cannot meet the store's), and the rest starts after it.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken, poll: Option<Duration>) {
        let exclusive = self.records.store().exclusive();
        if exclusive && !self.number_left_over(&stop).await {
            return;
        }
        self.caught_up.send_replace(true);
        let writing = writer::run(Arc::clone(&self), stop.clone());
        let numbering = {
            let (log, stop) = (Arc::clone(&self), stop.clone());
            async move {
                if !exclusive {
                    sequencer::run(log, stop, poll).await;
                }
            }
        };
        let tailing = hub::run(Arc::clone(&self), stop, poll);
        tokio::join!(writing, numbering, tailing);
    }

    /// Numbers what waits in outboxes until nothing does, retrying while the store
    /// fails; false if stopped first.
    async fn number_left_over(&self, stop: &tokio_util::sync::CancellationToken) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            let error = tokio::select! {
                numbered = sequencer::until_idle(self) => match numbered {
                    Ok(_) => return true,
                    Err(e) => e,
                },
                () = stop.cancelled() => return false,
            };
            tracing::warn!(error = %error, "cannot number the events an earlier run left; retrying");
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => return false,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Waits until what an earlier run left waiting in outboxes is numbered (at once
    /// where replicas share the store: their sequencer numbers it as it goes): what the
    /// start-up waits for before it changes any record.
    pub async fn caught_up(&self) {
        let mut seen = self.caught_up.subscribe();
        // The sender lives as long as the log, which outlives this borrow.
        let _ = seen.wait_for(|done| *done).await;
    }

    /// Up to `limit` events after id `after` and no later than what this process has
    /// delivered (so a client paging the log never skips an event still committing),
    /// matching every filter; no more than [`Limits::page_bytes`] of them (but at least
    /// one). Read from the store `PAGE_READ` events at a time.
    pub async fn page(&self, filter: &Filter, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let upto = self.hub.delivered();
        let (mut events, mut bytes, mut cursor) = (Vec::new(), 0, after);
        while cursor < upto && events.len() < limit {
            let want = (limit - events.len()).min(PAGE_READ);
            let query = Query { filters: filter.index_filters(), after: Some(Event::key(cursor)), limit: want };
            let read = self.records.page_values::<Event>(Collection::Events, &query).await?;
            let exhausted = read.len() < want;
            for event in read {
                let size = event.size();
                if event.id > upto || (!events.is_empty() && bytes + size > self.limits.page_bytes) {
                    return Ok(events);
                }
                (bytes, cursor) = (bytes + size, event.id);
                events.push(event);
            }
            if exhausted {
                break;
            }
        }
        Ok(events)
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

    /// The newest id in the store (0 when the log is empty).
    pub async fn newest(&self) -> Result<u64, StoreError> {
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

    /// Deletes events older than the latest [`Limits::retention`], and the oldest
    /// beyond [`Limits::retention_bytes`]; returns how many.
    pub async fn trim(&self) -> Result<usize, StoreError> {
        if self.tailing() {
            self.sizes.seed(self, self.hub.delivered()).await?;
        }
        let newest = self.newest().await?;
        let by_count = newest.saturating_sub(u64::try_from(self.limits.retention).unwrap_or(u64::MAX)) + 1;
        let keep_from = by_count.max(self.sizes.keep_from(self.limits.retention_bytes));
        let mut removed = 0;
        loop {
            let ids = self.records.store().page_ids(Collection::Events, &Query::new([], 256)).await?;
            let oldest = ids.first().and_then(|key| Event::id_of(key)).unwrap_or(keep_from);
            // What another replica trimmed is forgotten here too.
            self.sizes.forget_before(oldest.min(keep_from));
            let old: Vec<String> =
                ids.into_iter().filter(|k| Event::id_of(k).is_some_and(|id| id < keep_from)).collect();
            if old.is_empty() {
                self.sizes.forget_before(keep_from);
                return Ok(removed);
            }
            let deletes = old.iter().map(|key| self.records.store().delete(Collection::Events, key, None));
            for deleted in futures_util::future::join_all(deletes).await {
                removed += usize::from(deleted?);
            }
        }
    }
}
