//! Numbering and inserting queued events (see the module docs of `events`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::EventLog;
use crate::domain::event::Event;
use crate::store::{Collection, StoreError, index};

/// Events waiting to be written; beyond this (or beyond the queue's bytes) they are
/// dropped: the store has been away for a long time, and memory must stay bounded.
const QUEUE: usize = 10_000;
/// The most events written at once.
const BATCH: usize = 256;
/// How often an event whose id another replica took is numbered again.
const RENUMBERS: usize = 16;

/// The queue between [`EventLog::emit`] and the writer task, bounded in count
/// ([`QUEUE`]) and in bytes ([`Limits::queue_bytes`](super::Limits::queue_bytes)).
pub(super) struct Queue {
    sender: mpsc::Sender<Event>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    /// The bytes ([`Event::size`]) of the events queued.
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl Queue {
    pub(super) fn new(max_bytes: usize) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        Self { sender, receiver: tokio::sync::Mutex::new(receiver), bytes: AtomicUsize::new(0), max_bytes }
    }

    pub(super) fn push(&self, event: Event) {
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
        if let Err(e) = self.sender.try_send(event) {
            self.taken(size);
            tracing::warn!(event = %e.into_inner().kind, "the event queue is full; an event is dropped");
        }
    }

    /// An event of `size` bytes left the queue.
    fn taken(&self, size: usize) {
        self.bytes.fetch_sub(size, Ordering::AcqRel);
    }
}

/// Writes queued events until `stop`, then what is still queued.
pub(super) async fn run(log: Arc<EventLog>, stop: CancellationToken) {
    let mut receiver = log.writer.receiver.lock().await;
    let mut next: Option<u64> = None;
    loop {
        let first = tokio::select! {
            first = receiver.recv() => first,
            () = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        log.writer.taken(first.size());
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(event) => {
                    log.writer.taken(event.size());
                    batch.push(event);
                }
                Err(_) => break,
            }
        }
        write_batch(&log, &mut next, batch, &stop).await;
    }
    // Shutting down: what was emitted before is written (once; a store that is away
    // now loses them, with a warning).
    receiver.close();
    let mut rest = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        log.writer.taken(event.size());
        rest.push(event);
    }
    for chunk in rest.chunks(BATCH) {
        write_batch(&log, &mut next, chunk.to_vec(), &CancellationToken::new()).await;
    }
}

/// Numbers and inserts `batch`; events whose id was taken meanwhile are numbered again.
/// While the store is away it retries with backoff until `stop`.
async fn write_batch(log: &EventLog, next: &mut Option<u64>, mut batch: Vec<Event>, stop: &CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut renumbered = 0;
    while !batch.is_empty() {
        let first = match *next {
            Some(id) => id,
            None => match log.newest().await {
                Ok(newest) => newest + 1,
                Err(e) => {
                    if !wait(&mut backoff, stop, &e).await {
                        return dropped(batch.len());
                    }
                    continue;
                }
            },
        };
        for (offset, event) in (0..).zip(batch.iter_mut()) {
            event.id = first + offset;
        }
        *next = Some(first + u64::try_from(batch.len()).unwrap_or(u64::MAX));
        let inserts = batch.iter().map(|event| {
            let keys = index::event_keys(event);
            let key = Event::key(event.id);
            async move { log.records.insert_value(Collection::Events, &key, event, &keys).await }
        });
        let results = futures_util::future::join_all(inserts).await;
        let mut retry = Vec::new();
        let mut failure = None;
        for (event, result) in batch.into_iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => retry.push(event),
                Err(e) => {
                    failure = Some(e);
                    retry.push(event);
                }
            }
        }
        batch = retry;
        if batch.is_empty() {
            break;
        }
        log.hub.wake();
        // Another replica took ids, or the store failed: number after the store's newest.
        *next = None;
        renumbered += 1;
        if let Some(e) = failure {
            if !wait(&mut backoff, stop, &e).await {
                return dropped(batch.len());
            }
        } else if renumbered > RENUMBERS {
            tracing::warn!(events = batch.len(), "event ids kept being taken by other replicas; events dropped");
            return;
        }
    }
    log.hub.wake();
}

/// Waits before retrying a store that failed; false if esm is stopping.
async fn wait(backoff: &mut Duration, stop: &CancellationToken, error: &StoreError) -> bool {
    tracing::warn!(error = %error, "cannot write events; retrying");
    tokio::select! {
        () = tokio::time::sleep(*backoff) => {}
        () = stop.cancelled() => return false,
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(5));
    true
}

fn dropped(count: usize) {
    tracing::warn!(events = count, "esm is stopping and the store does not answer; events dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_in_bytes_and_frees_what_is_taken() {
        let event = Event::new("liveness.changed").because("x".repeat(300));
        let size = event.size();
        let queue = Queue::new(size * 3);
        for _ in 0..5 {
            queue.push(event.clone());
        }
        assert_eq!(queue.bytes.load(Ordering::Acquire), size * 3, "two of five dropped");
        let mut receiver = queue.receiver.try_lock().expect("no writer runs");
        let taken = receiver.try_recv().expect("queued");
        queue.taken(taken.size());
        queue.push(event);
        assert_eq!(queue.bytes.load(Ordering::Acquire), size * 3, "room again for one");
        assert_eq!((1..).take_while(|_| receiver.try_recv().is_ok()).count(), 3);
    }
}
