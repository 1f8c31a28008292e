//! The tail: reads the log in id order and broadcasts each event once to every
//! subscriber of this process (see the module docs of `events`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::{EventLog, Filter, sequencer};
use crate::domain::event::Event;

/// Events a subscriber may fall behind the tail before it reads from the store instead.
const BROADCAST: usize = 1024;
/// How many events the tail reads at a time.
const PAGE: usize = 256;
/// How often the tail looks at an exclusive store without being woken (a safety net).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// An event as it goes to subscribers: serialised once for all of them.
#[derive(Debug)]
pub struct Delivered {
    /// The event.
    pub event: Event,
    /// The event as JSON.
    pub json: String,
}

impl Delivered {
    pub(super) fn new(event: Event) -> Self {
        let json = serde_json::to_string(&event).unwrap_or_else(|_| String::from("{}"));
        Self { event, json }
    }

    /// Whether a subscriber with `filter` wants it.
    pub fn matches(&self, filter: &Filter) -> bool {
        filter.matches(&self.event)
    }
}

/// The fan-out side of the log.
pub(super) struct Hub {
    sender: broadcast::Sender<Arc<Delivered>>,
    /// The last id delivered: every event up to it has been broadcast (or passed over).
    delivered: AtomicU64,
    /// Whether the tail has found where the log ends and delivers from there.
    tailing: std::sync::atomic::AtomicBool,
    /// Woken by this process's writes.
    wake: Notify,
    subscribers: AtomicUsize,
}

impl Hub {
    pub(super) fn new() -> Self {
        Self {
            sender: broadcast::Sender::new(BROADCAST),
            delivered: AtomicU64::new(0),
            tailing: std::sync::atomic::AtomicBool::new(false),
            wake: Notify::new(),
            subscribers: AtomicUsize::new(0),
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    pub(super) fn tailing(&self) -> bool {
        self.tailing.load(Ordering::Acquire)
    }

    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Arc<Delivered>> {
        self.sender.subscribe()
    }

    pub(super) fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Counts one more subscriber unless `cap` are counted already; whether it did.
    pub(super) fn try_subscribed(&self, cap: usize) -> bool {
        self.subscribers.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1)).is_ok()
    }

    pub(super) fn unsubscribed(&self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Delivers the log from its newest event on, until `stop`. `poll`: how often to read
/// the store unasked, for a store other replicas write to.
pub(super) async fn run(log: Arc<EventLog>, stop: CancellationToken, poll: Option<Duration>) {
    let hub = &log.hub;
    // Subscribers see what happens from now on; older events are read on request.
    loop {
        match log.newest().await {
            Ok(newest) => {
                hub.delivered.store(newest, Ordering::Release);
                hub.tailing.store(true, Ordering::Release);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event log; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
    loop {
        let (progressed, full) = deliver(&log).await;
        if progressed && full {
            continue;
        }
        tokio::select! {
            () = hub.wake.notified() => {}
            () = tokio::time::sleep(poll.unwrap_or(IDLE_POLL)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Reads the events after the last delivered one and broadcasts them in order. A
/// missing id is waited for while the sequencer's batch holds it (it is being
/// inserted), and passed over otherwise (it was lost: see the module docs). Returns
/// whether anything was delivered and whether there may be more to read at once.
async fn deliver(log: &EventLog) -> (bool, bool) {
    let hub = &log.hub;
    let after = hub.delivered();
    let query = crate::store::Query::new([], PAGE).after(Some(Event::key(after)));
    let events = match log.records.page_values::<Event>(crate::store::Collection::Events, &query).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the event log");
            return (false, false);
        }
    };
    let full = events.len() == PAGE;
    let mut last = after;
    for event in events {
        if event.id != last + 1 {
            if sequencer::in_flight(log, last + 1).await {
                return (last > after, false);
            }
            match log.records.store().get(crate::store::Collection::Events, &Event::key(last + 1)).await {
                // Inserted since the page was read (its batch just finished): read again.
                Ok(Some(_)) => return (true, true),
                Ok(None) => {}
                Err(_) => return (last > after, false),
            }
            tracing::debug!(from = last + 1, to = event.id - 1, "passing over event ids never written");
        }
        last = event.id;
        log.sizes.record(event.id, event.size());
        hub.delivered.store(last, Ordering::Release);
        // Serialised only when someone listens. One who subscribes after this check
        // reads `delivered` after it too (the channel's lock orders the two), so it
        // reads this event from the store (`subscription.rs`).
        if hub.sender.receiver_count() > 0 {
            // A subscriber gone since is not an error.
            let _ = hub.sender.send(Arc::new(Delivered::new(event)));
        }
    }
    (last > after, full)
}
