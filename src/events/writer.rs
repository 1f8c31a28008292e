//! Writing standalone events (those not tied to a change of an instance or a binding:
//! pools, the catalog, the inventory) into the outbox collection, from where the
//! sequencer numbers them (see the module docs of `events`).
//!
//! Each event gets its key when it is emitted, so an insert retried after a lost answer
//! finds its own document rather than writing a second one. At shutdown what is still
//! queued is written within [`DRAIN`]; what cannot be is counted and logged.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::EventLog;
use crate::domain::event::Event;
use crate::store::{Collection, StoreError};

/// Events waiting to be written; beyond this (or beyond the queue's bytes) they are
/// dropped: the store has been away for a long time, and memory must stay bounded.
const QUEUE: usize = 10_000;
/// The most events written at once.
const BATCH: usize = 256;
/// How long shutdown waits for the queued events to be written.
pub(super) const DRAIN: Duration = Duration::from_secs(5);

/// An event and the key it is written under.
type Keyed = (String, Event);

/// The queue between [`EventLog::emit`] and the writer task, bounded in count
/// ([`QUEUE`]) and in bytes ([`Limits::queue_bytes`](super::Limits::queue_bytes)).
pub(super) struct Queue {
    sender: mpsc::Sender<Keyed>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Keyed>>,
    /// The bytes ([`Event::size`]) of the events queued.
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl Queue {
    pub(super) fn new(max_bytes: usize) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        Self { sender, receiver: tokio::sync::Mutex::new(receiver), bytes: AtomicUsize::new(0), max_bytes }
    }

    pub(super) fn push(&self, key: String, event: Event) {
        let size = event.size();
        let reserved = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                queued.checked_add(size).filter(|&total| total <= self.max_bytes)
            })
            .is_ok();
        if !reserved {
            tracing::warn!(event = %event.kind, bytes = self.max_bytes, "the event queue is full; an event is dropped");
            return;
        }
        if let Err(e) = self.sender.try_send((key, event)) {
            self.taken(size);
            tracing::warn!(event = %e.into_inner().1.kind, "the event queue is full; an event is dropped");
        }
    }

    /// An event of `size` bytes left the queue.
    fn taken(&self, size: usize) {
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }
}

/// Writes queued events until `stop`, then what is still queued, within [`DRAIN`].
pub(super) async fn run(log: Arc<EventLog>, stop: CancellationToken) {
    let mut receiver = log.writer.receiver.lock().await;
    let mut backoff = Duration::from_millis(100);
    let mut batch: Vec<Keyed> = Vec::new();
    loop {
        if batch.is_empty() {
            let first = tokio::select! {
                first = receiver.recv() => first,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            take(&log, &mut receiver, &mut batch);
        }
        batch = insert_all(&log, batch).await;
        if batch.is_empty() {
            // A store only this process writes has put them in the log already.
            log.numbered_as_written();
            backoff = Duration::from_millis(100);
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    receiver.close();
    while let Ok(event) = receiver.try_recv() {
        log.writer.taken(event.1.size());
        batch.push(event);
    }
    let deadline = Instant::now() + DRAIN;
    while !batch.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, insert_all(&log, batch.clone())).await {
            Ok(left) => batch = left,
            Err(_) => break,
        }
        if !batch.is_empty() {
            tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(200))).await;
        }
    }
    if !batch.is_empty() {
        tracing::warn!(
            events = batch.len(),
            "esm is stopping and the store does not take its last events within {DRAIN:?}; they are dropped"
        );
    }
}

/// Moves what else is queued into `batch`, up to [`BATCH`].
fn take(log: &EventLog, receiver: &mut mpsc::Receiver<Keyed>, batch: &mut Vec<Keyed>) {
    log.writer.taken(batch.iter().map(|(_, e)| e.size()).sum());
    while batch.len() < BATCH {
        match receiver.try_recv() {
            Ok(event) => {
                log.writer.taken(event.1.size());
                batch.push(event);
            }
            Err(_) => break,
        }
    }
}

/// Inserts `batch` into the outbox; returns what could not be written. A key that
/// exists is this very event, inserted by an attempt whose answer was lost.
async fn insert_all(log: &EventLog, batch: Vec<Keyed>) -> Vec<Keyed> {
    let none = Vec::new();
    let inserts = batch.iter().map(|(key, event)| log.records.insert_value(Collection::EventOutbox, key, event, &none));
    let results = futures_util::future::join_all(inserts).await;
    let mut failure = None;
    let mut left = Vec::new();
    for (event, result) in batch.into_iter().zip(results) {
        match result {
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                failure = Some(e);
                left.push(event);
            }
        }
    }
    if let Some(e) = failure {
        tracing::warn!(error = %e, events = left.len(), "cannot write events; retrying");
    }
    log.sequence.notify_one();
    left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventKind;

    #[test]
    fn the_queue_is_bounded_in_bytes_and_frees_what_is_taken() {
        let event = Event::new(EventKind::LivenessChanged).because("x".repeat(300));
        let size = event.size();
        let queue = Queue::new(size * 3);
        for n in 0..5 {
            queue.push(n.to_string(), event.clone());
        }
        assert_eq!(queue.bytes.load(Ordering::Acquire), size * 3, "two of five dropped");
        let mut receiver = queue.receiver.try_lock().expect("no writer runs");
        let taken = receiver.try_recv().expect("queued");
        queue.taken(taken.1.size());
        queue.push("5".into(), event);
        assert_eq!(queue.bytes.load(Ordering::Acquire), size * 3, "room again for one");
        assert_eq!((1..).take_while(|_| receiver.try_recv().is_ok()).count(), 3);
    }
}
