//! The writer thread: group commit, and finding out when a failed disk can be written
//! again.
//!
//! Every write goes to one thread, which commits whatever has queued up in one
//! transaction: one fsync serves many concurrent requests, and each is answered only
//! after the commit that holds it. When a commit fails on the storage (the disk is
//! full), the database latches; the writer has it reopened at once (so reads go on),
//! remembers why, and refuses writes with that reason while it probes, with a backoff
//! from [`FIRST_RETRY`] to [`LAST_RETRY`], whether the disk takes a write again: first a
//! small file beside the database (cheap, and it does not latch anything), then a
//! one-key write to the database. When the probe commits, writes go through again: no
//! restart needed.

use std::any::Any;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition};
use serde_json::Value;

use super::handle::{Fail, Handle};
use super::{index_table, stored_entries, table};
use crate::store::numbering::{self, Counted};
use crate::store::{Collection, StoreError, index};

/// The first wait before probing a disk that failed a write.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between probes: how late, at most, writes resume after the disk
/// has room again.
pub(super) const LAST_RETRY: Duration = Duration::from_secs(2);

/// The most writes one commit carries.
const MAX_BATCH: usize = 256;

/// The bytes the space check writes beside the database: a few pages, about what one
/// small commit needs.
const SPACE_CHECK_BYTES: usize = 64 << 10;

/// The space check's file, in the data directory.
const SPACE_CHECK_FILE: &str = ".esm-space-check";

/// The table the write probe writes its one key to, apart from every collection.
const PROBE: TableDefinition<'static, &'static str, u64> = TableDefinition::new("esm_write_probe");

/// What a write does, given the current document's version (none if it does not
/// exist); boxed so one queue serves all writes. It never needs the current body, so the
/// writer never parses one: only its index entries, to replace them.
pub(super) type Change = Box<dyn FnOnce(Option<u64>) -> Result<(Write, Box<dyn Any + Send>), StoreError> + Send>;
pub(super) type WriteResult = Result<Box<dyn Any + Send>, StoreError>;

/// What a write transaction does to the document: put a new version, remove it, or
/// leave it (a delete of nothing).
pub(super) enum Write {
    Put(u64, Value),
    Remove,
    Nothing,
}

/// One queued write.
pub(super) enum Job {
    /// A change to one record.
    Record { collection: Collection, id: String, change: Change },
    /// A write that changes no record: whether the store can write (`/health`).
    Probe,
}

pub(super) struct WriteRequest {
    /// What to write.
    pub(super) job: Job,
    /// Answered once the commit holding the job is durable (or failed).
    pub(super) reply: tokio::sync::oneshot::Sender<WriteResult>,
}

/// The writer's view of a store that cannot write: when to probe it next.
struct Retry {
    /// When to probe next.
    at: Instant,
    /// The wait before that probe, doubled after each failed one up to [`LAST_RETRY`].
    wait: Duration,
}

impl Retry {
    fn first() -> Self {
        Self { at: Instant::now() + FIRST_RETRY, wait: FIRST_RETRY }
    }

    fn again(&mut self) {
        self.wait = (self.wait * 2).min(LAST_RETRY);
        self.at = Instant::now() + self.wait;
    }
}

/// The writer thread: takes what is queued, applies it in order in one transaction,
/// commits, then answers each request. Ends when the store is dropped.
pub(super) fn run(handle: Arc<Handle>, data_dir: PathBuf, requests: Receiver<WriteRequest>) {
    let mut retry: Option<Retry> = None;
    loop {
        let first = match &retry {
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(retry) => requests.recv_timeout(retry.at.saturating_duration_since(Instant::now())),
        };
        let mut batch = match first {
            Ok(first) => vec![first],
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Some(pending) = &mut retry {
            if Instant::now() >= pending.at {
                match probe(&handle, &data_dir) {
                    Ok(()) => retry = None,
                    Err(why) => {
                        handle.set_cannot_write(Some(why));
                        pending.again();
                    }
                }
            }
            if retry.is_some() {
                refuse(&handle, batch);
                continue;
            }
            handle.set_cannot_write(None);
        }
        if batch.is_empty() {
            continue;
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut jobs = Vec::with_capacity(batch.len());
        for request in batch {
            replies.push(request.reply);
            jobs.push(request.job);
        }
        let results = match handle.attempt(|db| apply_batch(db, jobs)) {
            Ok(results) => results,
            Err((generation, fail)) => {
                let error = if fail.latched() {
                    let why = fail.cause();
                    handle.reopen(generation);
                    handle.set_cannot_write(Some(why));
                    retry = Some(Retry::first());
                    cannot_write(&handle)
                } else {
                    fail.into_error()
                };
                (0..replies.len()).map(|_| Err(error.clone())).collect()
            }
        };
        for (reply, result) in replies.into_iter().zip(results) {
            // The requester may have gone away (cancelled request): nothing to tell.
            let _ = reply.send(result);
        }
    }
}

/// The error every write gets while the store cannot write.
pub(super) fn cannot_write(handle: &Handle) -> StoreError {
    let why = handle.cannot_write().unwrap_or_else(|| "an earlier I/O error".to_owned());
    StoreError::Unavailable(format!("the store cannot write: {why}"))
}

/// Answers a batch that was not tried: the store cannot write.
fn refuse(handle: &Handle, batch: Vec<WriteRequest>) {
    let error = cannot_write(handle);
    for request in batch {
        let _ = request.reply.send(Err(error.clone()));
    }
}

/// Whether the store can write again: a small file beside the database first, which
/// fails without touching it while the disk is still full, then a write probe, which
/// latches the database if it fails (reopened at once, for the reads).
fn probe(handle: &Handle, data_dir: &std::path::Path) -> Result<(), String> {
    space_check(data_dir).map_err(|e| e.to_string())?;
    match handle.attempt(|db| apply_batch(db, vec![Job::Probe])) {
        Ok(_) => Ok(()),
        Err((generation, fail)) => {
            if fail.latched() {
                handle.reopen(generation);
            }
            Err(fail.cause())
        }
    }
}

/// Writes and syncs a small file in `dir`, then removes it.
fn space_check(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(SPACE_CHECK_FILE);
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&[0; SPACE_CHECK_BYTES])?;
        file.sync_data()
    });
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

/// Applies jobs in order in one write transaction and commits it durably. A change
/// that refuses (a conflict) refuses alone; a storage failure fails the whole batch.
fn apply_batch(db: &Database, jobs: Vec<Job>) -> Result<Vec<WriteResult>, Fail> {
    let txn = db.begin_write()?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut wrote = false;
    for job in jobs {
        let (collection, id, change) = match job {
            Job::Record { collection, id, change } => (collection, id, change),
            Job::Probe => {
                let mut t = txn.open_table(PROBE)?;
                let count = t.get("writes")?.map_or(0, |count| count.value());
                t.insert("writes", count.wrapping_add(1))?;
                wrote = true;
                results.push(Ok(Box::new(()) as Box<dyn Any + Send>));
                continue;
            }
        };
        let mut t = txn.open_table(table(collection))?;
        let (current, before, counted) = match t.get(id.as_str())? {
            Some(guard) => {
                let (version, bytes) = guard.value();
                let (before, counted) = stored_entries(collection, &id, bytes)?;
                (Some(version), before, counted)
            }
            None => (None, Vec::new(), Counted::default()),
        };
        match change(current) {
            Err(refused) => results.push(Err(refused)),
            Ok((write, result)) => {
                match write {
                    // A standalone event goes to the log instead (`numbering`).
                    Write::Put(_, body) if collection == Collection::EventOutbox => {
                        drop(t);
                        if let Err(refused) = append(&txn, vec![body]) {
                            results.push(Err(refused.into_error()));
                            continue;
                        }
                        wrote = true;
                    }
                    Write::Put(version, mut body) => {
                        let events = if numbering::announces(collection) {
                            numbering::take_new(&counted, &mut body)
                        } else {
                            Vec::new()
                        };
                        let bytes =
                            serde_json::to_vec(&body).map_err(|e| Fail::Store(StoreError::Corrupt(e.to_string())))?;
                        t.insert(id.as_str(), (version, bytes.as_slice()))?;
                        drop(t);
                        reindex(&txn, collection, &id, &before, Some(&body))?;
                        append(&txn, events)?;
                        wrote = true;
                    }
                    Write::Remove => {
                        t.remove(id.as_str())?;
                        drop(t);
                        reindex(&txn, collection, &id, &before, None)?;
                        wrote = true;
                    }
                    Write::Nothing => {}
                }
                results.push(Ok(result));
            }
        }
    }
    if wrote {
        txn.commit()?;
    } else {
        txn.abort()?;
    }
    Ok(results)
}

/// Appends `events` to the log under the next ids, in the transaction of the write that
/// made them (`numbering`).
fn append(txn: &redb::WriteTransaction, events: Vec<Value>) -> Result<(), Fail> {
    if events.is_empty() {
        return Ok(());
    }
    let mut log = txn.open_table(table(Collection::Events))?;
    let mut first = None;
    for entry in log.iter()?.rev() {
        let (key, _) = entry?;
        if let Some(id) = crate::domain::event::Event::id_of(key.value()) {
            first = Some(id + 1);
            break;
        }
    }
    let first = first.unwrap_or(1);
    let numbered: Vec<(String, Value)> = (first..)
        .zip(events)
        .map(|(n, event)| numbering::numbered(event, n))
        .collect::<Result<_, _>>()
        .map_err(Fail::Store)?;
    for (key, body) in &numbered {
        let bytes = serde_json::to_vec(body).map_err(|e| Fail::Store(StoreError::Corrupt(e.to_string())))?;
        log.insert(key.as_str(), (1, bytes.as_slice()))?;
    }
    drop(log);
    for (key, body) in &numbered {
        reindex(txn, Collection::Events, key, &[], Some(body))?;
    }
    Ok(())
}

/// Replaces the index entries `before` of `id` with those of its new body: removes
/// only those it no longer has and adds only those it did not have (a result changes
/// two or three of an instance's dozen entries; rewriting them all was a sixth of the
/// writer's time).
fn reindex(
    txn: &redb::WriteTransaction,
    collection: Collection,
    id: &str,
    before: &[(String, String)],
    new: Option<&Value>,
) -> Result<(), Fail> {
    let after: BTreeSet<(&str, &str)> = new.map(index::entries).unwrap_or_default().into_iter().collect();
    let before: BTreeSet<(&str, &str)> = before.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
    if before == after {
        return Ok(());
    }
    let mut t = txn.open_table(index_table(collection))?;
    for (field, value) in before.difference(&after) {
        t.remove((*field, *value, id))?;
    }
    for (field, value) in after.difference(&before) {
        t.insert((*field, *value, id), ())?;
    }
    Ok(())
}
