//! The embedded store: esm's default, durable with no external service.
//!
//! Built on redb, a pure-Rust ACID key-value store with a stable file format: every
//! write is one transaction committed with `fsync` before esm answers, so an
//! acknowledged write survives a crash or power loss, and a torn write is rolled back
//! on the next open. One table per collection maps the record id to `(version, JSON)`.
//! The database file is locked by the process that opens it: a second esm on the same
//! directory fails fast instead of corrupting it.
//!
//! Writes go through one writer thread (group commit, and the recovery from a full
//! disk: `writer.rs`); the database sits behind a handle that reopens it after an I/O
//! error (`handle.rs`), so reads go on while writes cannot.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use super::numbering::Counted;
use super::walk::Visits;
use super::{Collection, Cutoff, Document, Query, Store, StoreError, index};

#[cfg(test)]
mod faults;
mod handle;
mod walk;
mod writer;

use handle::{Fail, Handle, Opener};
use writer::{Change, Job, Write, WriteRequest};

/// The file inside the data directory.
pub const FILE_NAME: &str = "esm.redb";

/// The largest page read on the calling task rather than a blocking thread (see
/// `EmbeddedStore::read_now`): what a scan asks for at a time.
const INLINE_PAGE: usize = 256;

/// The cache size tests and tools use (esm itself takes `ESM_STORE_CACHE_MB`).
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

type Table = TableDefinition<'static, &'static str, (u64, &'static [u8])>;

fn table(collection: Collection) -> Table {
    TableDefinition::new(collection.name())
}

/// A collection's index: `(field, value, id)`, ordered, so the ids under one value are
/// a range in id order. Kept in the transaction that writes the record.
type IndexTable = TableDefinition<'static, (&'static str, &'static str, &'static str), ()>;

/// The index tables' names, one per collection (redb needs them `'static`).
fn index_table(collection: Collection) -> IndexTable {
    TableDefinition::new(match collection {
        Collection::Registry => "registry_index",
        Collection::ManifestContents => "manifest_contents_index",
        Collection::Instances => "instances_index",
        Collection::Bindings => "bindings_index",
        Collection::Events => "events_index",
        Collection::Pools => "pools_index",
        Collection::Resources => "resources_index",
        Collection::LivenessReports => "liveness_reports_index",
        Collection::EventOutbox => "event_outbox_index",
        Collection::EventSequence => "event_sequence_index",
        Collection::Engines => "engines_index",
        Collection::LegacyServices => "services_index",
        Collection::LegacyManifests => "manifests_index",
    })
}

/// What a write needs of a stored body, read without parsing the rest of it: its index
/// entries (what the write replaces), owned, and its outbox's count (what tells which
/// events the write numbers, `numbering`). A fraction of what decoding the record costs.
fn stored_entries(collection: Collection, id: &str, bytes: &[u8]) -> Result<(Vec<(String, String)>, Counted), Fail> {
    #[derive(serde::Deserialize)]
    struct Entries {
        #[serde(rename = "_ix", default)]
        entries: Value,
        #[serde(default)]
        outbox: Counted,
    }
    let owned = |entries: Vec<(&str, &str)>| entries.into_iter().map(|(f, v)| (f.to_owned(), v.to_owned())).collect();
    match serde_json::from_slice::<Entries>(bytes) {
        Ok(stored) => Ok((owned(index::entries_in(&stored.entries)), stored.outbox)),
        // Not an object (no entries), or not JSON at all (which decoding reports).
        Err(_) => decode(collection, id, bytes).map(|body| (owned(index::entries(&body)), Counted::of(&body))),
    }
}

/// A [`Store`] in a redb file.
pub struct EmbeddedStore {
    /// The database, reopened when an I/O error latches it; shared with the writer.
    handle: Arc<Handle>,
    /// The database file, for messages.
    path: PathBuf,
    /// The writer thread's queue (see `writer.rs`).
    writes: Option<std::sync::mpsc::Sender<WriteRequest>>,
    /// Joined on drop, so the file is released when the store is.
    writer: Option<std::thread::JoinHandle<()>>,
    /// What pages read (`Store::visits`).
    visits: Arc<Visits>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer; joining it releases the database file, so
        // the directory can be opened again at once.
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, caching up to `cache_bytes` of it.
    pub fn open(data_dir: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| unavailable(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let file = path.clone();
        Self::start(data_dir, path, Box::new(move || Database::builder().set_cache_size(cache_bytes).create(&file)))
    }

    /// Opens the database with `open` (again whenever it latches), and starts the writer.
    fn start(data_dir: &Path, path: PathBuf, open: Opener) -> Result<Self, StoreError> {
        let handle = Handle::open(open).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => unavailable(format!(
                "{} is in use by another process (is another esm running with the same ESM_DATA_DIR?)",
                path.display()
            )),
            other => unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
        // Create every table once, so that reads never meet a missing one. Only when one
        // is missing: a store opened on a full disk then serves reads without writing.
        let complete = handle.read(|db| {
            let txn = db.begin_read()?;
            Ok(Collection::ALL
                .iter()
                .all(|c| txn.open_table(table(*c)).is_ok() && txn.open_table(index_table(*c)).is_ok()))
        })?;
        if !complete {
            handle
                .attempt(|db| {
                    let txn = db.begin_write()?;
                    for collection in Collection::ALL {
                        txn.open_table(table(collection))?;
                        txn.open_table(index_table(collection))?;
                    }
                    Ok(txn.commit()?)
                })
                .map_err(|(_, fail)| {
                    unavailable(format!("cannot create the tables in {}: {}", path.display(), fail.cause()))
                })?;
        }
        let handle = Arc::new(handle);
        let (writes, requests) = std::sync::mpsc::channel();
        let (writer_handle, dir) = (handle.clone(), data_dir.to_owned());
        let writer = std::thread::Builder::new()
            .name("esm-store-writer".into())
            .spawn(move || writer::run(writer_handle, dir, requests))
            .map_err(|e| unavailable(format!("cannot start the store's writer: {e}")))?;
        Ok(Self { handle, path, writes: Some(writes), writer: Some(writer), visits: Arc::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a redb read: a small one (one record, or a page of at most
    /// [`INLINE_PAGE`]) on the calling task, since from the cache it costs microseconds,
    /// less than handing it to a blocking thread and back (which took most of a
    /// provision's time when every read did); a larger one off the async runtime.
    async fn read<R: Send + 'static>(
        &self,
        small: bool,
        work: impl Fn(&Database) -> Result<R, Fail> + Send + 'static,
    ) -> Result<R, StoreError> {
        if small { self.handle.read(work) } else { self.blocking(work).await }
    }

    /// What `take` makes of document `id`'s row (its id, version and bytes), read in a
    /// small read; `None` where there is no such document.
    async fn row<R: Send + 'static>(
        &self,
        collection: Collection,
        id: &str,
        take: impl Fn(&str, u64, &[u8]) -> Result<R, Fail> + Send + 'static,
    ) -> Result<Option<R>, StoreError> {
        let id = id.to_owned();
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(table(collection))?;
            let Some(guard) = t.get(id.as_str())? else { return Ok(None) };
            let (version, bytes) = guard.value();
            take(&id, version, bytes).map(Some)
        })
        .await
    }

    /// Runs a redb read that may walk much of a table off the async runtime (again
    /// once, on the reopened database, if the database had latched).
    async fn blocking<R: Send + 'static>(
        &self,
        work: impl Fn(&Database) -> Result<R, Fail> + Send + 'static,
    ) -> Result<R, StoreError> {
        let handle = self.handle.clone();
        tokio::task::spawn_blocking(move || handle.read(work))
            .await
            .map_err(|e| unavailable(format!("store task failed: {e}")))?
    }

    /// Queues a job for the writer; answered once the transaction holding it has
    /// committed (durably).
    async fn submit(&self, job: Job) -> Result<Box<dyn Any + Send>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queue = self.writes.as_ref().ok_or_else(|| unavailable("the store is closed"))?;
        queue.send(WriteRequest { job, reply }).map_err(|_| unavailable("the store's writer stopped"))?;
        answer.await.map_err(|_| unavailable("the store's writer stopped"))?
    }

    /// A write: `change` sees the current document's version (none if it does not
    /// exist) and returns what to do.
    async fn write<R: Send + 'static>(
        &self,
        collection: Collection,
        id: &str,
        change: impl FnOnce(Option<u64>) -> Result<(Write, R), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let change: Change = Box::new(move |current| {
            change(current).map(|(write, result)| (write, Box::new(result) as Box<dyn Any + Send>))
        });
        let result = self.submit(Job::Record { collection, id: id.to_owned(), change }).await?;
        result
            .downcast::<R>()
            .map(|r| *r)
            .map_err(|_| StoreError::Corrupt("a write answered with the wrong type".into()))
    }
}

fn decode(collection: Collection, id: &str, bytes: &[u8]) -> Result<Value, Fail> {
    serde_json::from_slice(bytes)
        .map_err(|e| Fail::Store(StoreError::Corrupt(format!("{}/{id}: {e}", collection.name()))))
}

#[async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        let name = format!("{}/{id}", collection.name());
        self.write(collection, id, move |current| match current {
            Some(_) => Err(StoreError::Conflict(format!("{name} exists"))),
            None => Ok((Write::Put(1, body), 1)),
        })
        .await
    }

    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.write(collection, id, move |current| {
            let version = current.map_or(1, |v| v + 1);
            Ok((Write::Put(version, body), version))
        })
        .await
    }

    async fn replace(&self, collection: Collection, id: &str, expected: u64, body: Value) -> Result<u64, StoreError> {
        let name = format!("{}/{id}", collection.name());
        self.write(collection, id, move |current| match current {
            None => Err(StoreError::NotFound(name)),
            Some(version) if version != expected => {
                Err(StoreError::Conflict(format!("{name} is at version {version}, not {expected}")))
            }
            Some(version) => Ok((Write::Put(version + 1, body), version + 1)),
        })
        .await
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.row(collection, id, move |id, version, bytes| {
            Ok(Document { version, body: decode(collection, id, bytes)? })
        })
        .await
    }

    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        self.row(collection, id, |_, version, _| Ok(version)).await
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(table(collection))?;
            let mut out = Vec::new();
            for entry in t.iter()? {
                let (key, value) = entry?;
                let id = key.value().to_owned();
                let (version, bytes) = value.value();
                let body = decode(collection, &id, bytes)?;
                out.push((id, Document { version, body }));
            }
            Ok(out)
        })
        .await
    }

    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let (query, visits) = (query.clone(), self.visits.clone());
        self.read(query.limit <= INLINE_PAGE, move |db| {
            let txn = db.begin_read()?;
            let records = txn.open_table(table(collection))?;
            let mut out = Vec::new();
            // Every filter is served by the indexes: only the page's records are read.
            walk::each_id(&txn, collection, &query.filters, query.after.as_deref(), &visits, |id| {
                visits.one();
                let Some(stored) = records.get(id)? else {
                    return Err(Fail::Store(StoreError::Corrupt(format!(
                        "{} index names a missing {id}",
                        collection.name()
                    ))));
                };
                let (version, bytes) = stored.value();
                out.push((id.to_owned(), Document { version, body: decode(collection, id, bytes)? }));
                Ok(out.len() < query.limit)
            })?;
            Ok(out)
        })
        .await
    }

    async fn page_ids(&self, collection: Collection, query: &Query) -> Result<Vec<String>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let (query, visits) = (query.clone(), self.visits.clone());
        self.read(query.limit <= INLINE_PAGE, move |db| {
            let txn = db.begin_read()?;
            let mut out = Vec::new();
            walk::each_id(&txn, collection, &query.filters, query.after.as_deref(), &visits, |id| {
                out.push(id.to_owned());
                Ok(out.len() < query.limit)
            })?;
            Ok(out)
        })
        .await
    }

    async fn expired(&self, collection: Collection, cutoff: Cutoff<'_>) -> Result<Vec<(String, u64)>, StoreError> {
        let (field, below, limit) = (cutoff.field.to_owned(), cutoff.below.to_owned(), cutoff.limit);
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let records = txn.open_table(table(collection))?;
            let ix = txn.open_table(index_table(collection))?;
            let range = (field.as_str(), "", "")..(field.as_str(), below.as_str(), "");
            let mut out = Vec::new();
            for entry in ix.range(range)?.take(limit) {
                let (key, _) = entry?;
                let id = key.value().2;
                if let Some(stored) = records.get(id)? {
                    out.push((id.to_owned(), stored.value().0));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError> {
        self.read(true, move |db| {
            let txn = db.begin_read()?;
            let t = txn.open_table(table(collection))?;
            Ok(t.last()?.map(|(key, _)| key.value().to_owned()))
        })
        .await
    }

    /// One walk over the field's range of the index table, keys only: the entries of
    /// one value are adjacent, so each value is counted as the walk passes it.
    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let field = field.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let ix = txn.open_table(index_table(collection))?;
            let mut counts: Vec<(String, u64)> = Vec::new();
            for entry in ix.range((field.as_str(), "", "")..)? {
                let (key, _) = entry?;
                let (f, value, _) = key.value();
                if f != field {
                    break;
                }
                match counts.last_mut() {
                    Some((last, n)) if last == value => *n += 1,
                    _ => counts.push((value.to_owned(), 1)),
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn delete(&self, collection: Collection, id: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let name = format!("{}/{id}", collection.name());
        self.write(collection, id, move |current| match (current, expected) {
            (None, _) => Ok((Write::Nothing, false)),
            (Some(version), Some(expected)) if version != expected => {
                Err(StoreError::Conflict(format!("{name} is at version {version}, not {expected}")))
            }
            (Some(_), _) => Ok((Write::Remove, true)),
        })
        .await
    }

    /// Reads: a read transaction sees a table.
    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| {
            db.begin_read()?.open_table(table(Collection::Registry))?;
            Ok(())
        })
        .await
    }

    /// Reads, then writes: refused at once while the writer knows the store cannot
    /// write, otherwise a one-key write through the writer, committed like any other.
    async fn health(&self) -> Result<String, StoreError> {
        self.ping().await?;
        if self.handle.cannot_write().is_some() {
            return Err(writer::cannot_write(&self.handle));
        }
        self.submit(Job::Probe).await?;
        Ok("the store reads and writes".to_owned())
    }

    #[cfg(any(test, feature = "test-support"))]
    fn visits(&self) -> Option<u64> {
        Some(self.visits.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("esm-test-").tempdir().expect("temp dir")
    }

    #[tokio::test]
    async fn conforms() {
        let dir = temp_dir();
        let store = EmbeddedStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("opens");
        crate::store::conformance::run(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = temp_dir();
        {
            let store = EmbeddedStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("opens");
            store.insert(Collection::Registry, "s", serde_json::json!({"a": 1})).await.expect("insert");
            store.replace(Collection::Registry, "s", 1, serde_json::json!({"a": 2})).await.expect("replace");
        }
        let store = EmbeddedStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("reopens");
        let doc = store.get(Collection::Registry, "s").await.expect("get").expect("kept");
        assert_eq!((doc.version, doc.body), (2, serde_json::json!({"a": 2})));
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails_fast() {
        let dir = temp_dir();
        let _first = EmbeddedStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect("opens");
        let err = EmbeddedStore::open(dir.path(), DEFAULT_CACHE_BYTES).expect_err("second open refused");
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }
}
