//! The sequencer: numbers the events waiting in outboxes and moves them into the log,
//! one batch at a time, in one order for every replica (see the module docs of
//! `events` for why this gives one total order, none lost, none twice).
//!
//! One document ([`Collection::EventSequence`]) holds the next id and the batch being
//! numbered: which event (a record's outbox entry, or a standalone outbox document)
//! gets which id. A round:
//!
//! 1. reads the head; if a batch is in it, finishes that batch (below) — at once if it
//!    is this process's, after [`TAKEOVER`] if another replica's (it may have died);
//! 2. reads the pending events (standalone ones first, then records with an outbox),
//!    gives them the next ids, and writes the batch into the head by compare-and-set
//!    on the version read in 1 — so two replicas never number one event twice, and a
//!    batch is only planned once the previous one is finished;
//! 3. finishes the batch: inserts each event under its id (an id that exists is that
//!    very event, inserted by an earlier attempt whose answer was lost), removes the
//!    numbered events from their outboxes, and only then clears the head.
//!
//! Every step can be repeated by anyone, so a replica killed at any point leaves work
//! that the next round (its own restart or another replica) completes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, TryFutureExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::EventLog;
use crate::domain::binding::Binding;
use crate::domain::event::Event;
use crate::domain::instance::ServiceInstance;
use crate::domain::outbox::Announcing;
use crate::store::{Collection, Query, Record, StoreError, Versioned, index};

/// The id of the sequencer's document.
const HEAD: &str = "head";
/// The most events numbered in one batch.
const BATCH: usize = 256;
/// How long another replica's batch may stay unfinished before this one finishes it.
const TAKEOVER: Duration = Duration::from_secs(5);
/// How often to look again while another replica's batch is unfinished.
const WAITING: Duration = Duration::from_millis(50);
/// How often to look for work nobody announced to this process (a safety net; other
/// replicas sequence their own events).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Where an event waits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// The outbox of an instance record.
    Instance(String),
    /// The outbox of a binding record.
    Binding(String),
    /// A standalone document of [`Collection::EventOutbox`].
    Standalone(String),
}

/// One event of a batch: where it waits and the id it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    source: Source,
    /// Its number in the record's outbox (0 for a standalone event).
    seq: u64,
    id: u64,
}

/// The sequencer's document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    /// The id the next event gets.
    next: u64,
    /// The batch being finished; empty between batches.
    #[serde(default)]
    batch: Vec<Item>,
    /// The process that planned it.
    #[serde(default)]
    owner: String,
    /// When it was planned (milliseconds since the epoch).
    #[serde(default)]
    since: u64,
}

/// What a round did.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    /// Numbered (or finished) a batch: there may be more.
    Busy,
    /// Nothing waits.
    Idle,
    /// Another replica's batch is unfinished.
    Waiting,
}

/// Numbers events until `stop`.
pub(super) async fn run(log: Arc<EventLog>, stop: CancellationToken, poll: Option<Duration>) {
    let idle = poll.map_or(IDLE_POLL, |p| p.max(IDLE_POLL));
    let mut backoff = Duration::from_millis(100);
    loop {
        let round = tokio::select! {
            round = round(&log) => round,
            () = stop.cancelled() => return,
        };
        let wait = match round {
            Ok(Round::Busy) => {
                backoff = Duration::from_millis(100);
                continue;
            }
            Ok(Round::Idle) => idle,
            Ok(Round::Waiting) => WAITING,
            Err(e) => {
                tracing::warn!(error = %e, "cannot number events; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        tokio::select! {
            () = log.sequence.notified() => {}
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Numbers what waits now, until nothing does or another replica's batch is
/// unfinished; how many batches.
pub(super) async fn until_idle(log: &EventLog) -> Result<usize, StoreError> {
    let mut batches = 0;
    while round(log).await? == Round::Busy {
        batches += 1;
    }
    Ok(batches)
}

/// Whether id `id` belongs to a batch being finished (so the tail waits for it rather
/// than passing over it). A store that does not answer counts as yes.
pub(super) async fn in_flight(log: &EventLog, id: u64) -> bool {
    match read_head(log).await {
        Ok(Some((_, head))) => head.batch.iter().any(|item| item.id == id),
        Ok(None) => false,
        Err(_) => true,
    }
}

async fn read_head(log: &EventLog) -> Result<Option<(u64, Head)>, StoreError> {
    let Some(doc) = log.records.store().get(Collection::EventSequence, HEAD).await? else {
        return Ok(None);
    };
    let head = serde_json::from_value(doc.body).map_err(|e| StoreError::Corrupt(format!("event sequence: {e}")))?;
    Ok(Some((doc.version, head)))
}

fn encode(head: &Head) -> Result<Value, StoreError> {
    serde_json::to_value(head).map_err(|e| StoreError::Corrupt(format!("event sequence: {e}")))
}

/// The head, made if missing (numbering from after the newest event already logged,
/// as an older esm wrote it).
async fn head(log: &EventLog) -> Result<(u64, Head), StoreError> {
    loop {
        if let Some(found) = read_head(log).await? {
            return Ok(found);
        }
        let head = Head { next: log.newest().await? + 1, ..Head::default() };
        match log.records.store().insert(Collection::EventSequence, HEAD, encode(&head)?).await {
            Ok(version) => return Ok((version, head)),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
}

async fn round(log: &EventLog) -> Result<Round, StoreError> {
    let (version, head) = head(log).await?;
    let now = log.clock.millis();
    if !head.batch.is_empty() {
        let ours = head.owner == log.replica;
        if !ours && now.saturating_sub(head.since) < u64::try_from(TAKEOVER.as_millis()).unwrap_or(u64::MAX) {
            return Ok(Round::Waiting);
        }
        if !ours {
            tracing::info!(owner = %head.owner, events = head.batch.len(), "finishing a batch of events another replica left");
        }
        finish(log, version, head, Planned::default()).await?;
        return Ok(Round::Busy);
    }
    // Never below what is logged: ids an older esm wrote (in a rolling upgrade) are
    // skipped rather than collided with.
    let next = head.next.max(log.newest().await? + 1);
    let (items, read) = plan(log, next).await?;
    if items.is_empty() {
        return Ok(Round::Idle);
    }
    let next = items.last().map_or(next, |item| item.id + 1);
    let planned = Head { next, batch: items, owner: log.replica.clone(), since: now };
    match log.records.store().replace(Collection::EventSequence, HEAD, version, encode(&planned)?).await {
        Ok(version) => finish(log, version, planned, read).await?,
        // Another replica planned first; its batch holds these events, or the next does.
        Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e),
    }
    Ok(Round::Busy)
}

/// What planning a batch read: the events by where they wait, and the records they
/// wait in, so that finishing the batch drains each without reading it again (unless
/// it changed meanwhile).
#[derive(Default)]
struct Planned {
    events: BTreeMap<(Source, u64), Event>,
    instances: BTreeMap<String, Versioned<ServiceInstance>>,
    bindings: BTreeMap<String, Versioned<Binding>>,
}

/// The events waiting, numbered from `next`: each record's in its outbox order, and
/// across records (and standalone events) merged by when they happened, so that an
/// instance's events and those of its bindings keep their order too.
async fn plan(log: &EventLog, next: u64) -> Result<(Vec<Item>, Planned), StoreError> {
    let mut queues: Vec<(Source, VecDeque<(u64, Event)>)> = Vec::new();
    let mut planned = Planned::default();
    let pending = || vec![(index::OUTBOX.to_owned(), "1".to_owned())];
    let query = Query { filters: pending(), after: None, limit: BATCH };
    for found in log.records.page::<ServiceInstance>(&query).await? {
        queues.push((Source::Instance(found.record.id.clone()), waiting(&found.record)));
        planned.instances.insert(found.record.id.clone(), found);
    }
    for found in log.records.page::<Binding>(&query).await? {
        queues.push((Source::Binding(found.record.id.clone()), waiting(&found.record)));
        planned.bindings.insert(found.record.id.clone(), found);
    }
    for (key, doc) in log.records.store().page(Collection::EventOutbox, &Query::new([], BATCH)).await? {
        match serde_json::from_value::<Event>(doc.body) {
            Ok(event) => queues.push((Source::Standalone(key), VecDeque::from([(0, event)]))),
            Err(e) => {
                tracing::warn!(key, error = %e, "an unreadable event in the outbox is dropped");
                log.records.store().delete(Collection::EventOutbox, &key, None).await?;
            }
        }
    }
    let mut items = Vec::new();
    let mut id = next;
    while items.len() < BATCH {
        // The queue whose first event happened first (timestamps are fixed width).
        let Some((source, queue)) = queues
            .iter_mut()
            .filter(|(_, queue)| !queue.is_empty())
            .min_by(|a, b| a.1.front().map(|f| &f.1.at).cmp(&b.1.front().map(|f| &f.1.at)))
        else {
            break;
        };
        let Some((seq, event)) = queue.pop_front() else { break };
        items.push(Item { source: source.clone(), seq, id });
        planned.events.insert((source.clone(), seq), event);
        id += 1;
    }
    Ok((items, planned))
}

fn waiting<T: Announcing>(record: &T) -> VecDeque<(u64, Event)> {
    record.outbox().pending.iter().map(|p| (p.seq, p.event.clone())).collect()
}

/// Inserts the events of `head`'s batch under their ids, removes them from where they
/// waited, and clears the batch. `planned`: what planning it read (empty for a batch
/// left unfinished: its events are read again from their sources).
async fn finish(log: &EventLog, version: u64, head: Head, mut planned: Planned) -> Result<(), StoreError> {
    if planned.events.is_empty() {
        planned.events = reread(log, &head.batch).await?;
    }
    let known = &planned.events;
    let inserts = head.batch.iter().filter_map(|item| {
        let mut event = known.get(&(item.source.clone(), item.seq))?.clone();
        event.id = item.id;
        Some(async move {
            let keys = index::event_keys(&event);
            match log.records.insert_value(Collection::Events, &Event::key(event.id), &event, &keys).await {
                // That id is this very event, from an attempt whose answer was lost.
                Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
    });
    for inserted in futures_util::future::join_all(inserts).await {
        inserted?;
    }
    log.hub.wake();
    // Drained only once in the log; the batch cleared only once drained.
    let mut upto: BTreeMap<&Source, u64> = BTreeMap::new();
    for item in &head.batch {
        let mark = upto.entry(&item.source).or_default();
        *mark = (*mark).max(item.seq + 1);
    }
    let drains = upto.into_iter().map(|(source, upto)| match source {
        Source::Instance(id) => drain_record(log, id, upto, planned.instances.remove(id)).boxed(),
        Source::Binding(id) => drain_record(log, id, upto, planned.bindings.remove(id)).boxed(),
        Source::Standalone(key) => log.records.store().delete(Collection::EventOutbox, key, None).map_ok(drop).boxed(),
    });
    for drained in futures_util::future::join_all(drains).await {
        drained?;
    }
    let cleared = Head { batch: Vec::new(), ..head };
    match log.records.store().replace(Collection::EventSequence, HEAD, version, encode(&cleared)?).await {
        // Another replica finished it meanwhile.
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The events of `batch` as they wait now. One gone (its record deleted, or already
/// drained because it is in the log) is left out: an id never written, or written.
async fn reread(log: &EventLog, batch: &[Item]) -> Result<BTreeMap<(Source, u64), Event>, StoreError> {
    let mut found = BTreeMap::new();
    let sources: BTreeSet<&Source> = batch.iter().map(|item| &item.source).collect();
    for source in sources {
        let events: Vec<(u64, Event)> = match source {
            Source::Instance(id) => outbox_of::<ServiceInstance>(log, id).await?,
            Source::Binding(id) => outbox_of::<Binding>(log, id).await?,
            Source::Standalone(key) => {
                let doc = log.records.store().get(Collection::EventOutbox, key).await?;
                doc.and_then(|doc| serde_json::from_value(doc.body).ok()).map(|e| (0, e)).into_iter().collect()
            }
        };
        found.extend(events.into_iter().map(|(seq, event)| ((source.clone(), seq), event)));
    }
    Ok(found)
}

async fn outbox_of<T: Record + Announcing>(log: &EventLog, id: &str) -> Result<Vec<(u64, Event)>, StoreError> {
    let record = log.records.get::<T>(id).await?;
    Ok(record.map(|r| r.record.outbox().pending.iter().map(|p| (p.seq, p.event.clone())).collect()).unwrap_or_default())
}

/// Removes the events of record `id` numbered below `upto`, starting from the record as
/// planning read it.
async fn drain_record<T: Record + Announcing + Clone>(
    log: &EventLog,
    id: &str,
    upto: u64,
    read: Option<Versioned<T>>,
) -> Result<(), StoreError> {
    let drained =
        log.records.modify_from::<T, StoreError, _>(id, read, |record| Ok(record.outbox_mut().drain_below(upto)));
    drained.await.map(|_| ())
}

#[cfg(test)]
#[path = "sequencer_tests.rs"]
mod tests;
