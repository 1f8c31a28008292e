//! A memory store for tests of what sits on a store (the breaker, the catalog cache,
//! leases): it counts the calls made to it (in all, and per collection and call), can
//! be switched off, says whether other processes share it, and can let another writer
//! win the race of a compare-and-set.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::memory::MemoryStore;
use super::{Collection, Document, Query, Store, StoreError};

/// See the module docs. While `down`, each call fails with `Unavailable` after
/// `failure_delay` (what a down server costs: the driver's server selection).
#[derive(Debug, Default)]
pub struct SwitchableStore {
    memory: MemoryStore,
    /// Whether other processes share it (`Store::exclusive` is the opposite).
    shared: bool,
    /// Switched off: every call fails.
    down: AtomicBool,
    /// How long a call takes to fail while down.
    failure_delay: Duration,
    calls: AtomicUsize,
    /// Reads by collection and call (`get`, `version`, `list`, `page`).
    reads: Mutex<HashMap<(Collection, &'static str), usize>>,
    /// A write another process makes to a document just before the next
    /// compare-and-set on it (see [`SwitchableStore::race_next_replace`]).
    race: Mutex<Option<Race>>,
}

/// A write that wins the race of the next compare-and-set on one document.
struct Race {
    collection: Collection,
    id: String,
    change: Box<dyn FnOnce(&mut Value) + Send>,
}

impl std::fmt::Debug for Race {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a race on {}/{}", self.collection.name(), self.id)
    }
}

impl SwitchableStore {
    /// An empty store, shared with other processes or not, whose calls fail after
    /// `failure_delay` while it is down.
    pub fn new(shared: bool, failure_delay: Duration) -> Self {
        Self { shared, failure_delay, ..Self::default() }
    }

    /// How many calls it has had.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// How many `call` reads (`get`, `version`, `list`, `page`) of `collection` it has had.
    pub fn reads(&self, collection: Collection, call: &'static str) -> usize {
        let reads = self.reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        reads.get(&(collection, call)).copied().unwrap_or(0)
    }

    fn read(&self, collection: Collection, call: &'static str) {
        let mut reads = self.reads.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *reads.entry((collection, call)).or_default() += 1;
    }

    /// Makes the next compare-and-set on document `id` of `collection` lose a race:
    /// just before it, `change` is applied to the stored document and written, so the
    /// compare-and-set meets a newer version, as when another replica wrote first.
    pub fn race_next_replace(
        &self,
        collection: Collection,
        id: &str,
        change: impl FnOnce(&mut Value) + Send + 'static,
    ) {
        let mut race = self.race.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *race = Some(Race { collection, id: id.to_owned(), change: Box::new(change) });
    }

    /// Writes the pending race on `id` of `collection`, if there is one.
    async fn run_race(&self, collection: Collection, id: &str) {
        let race = {
            let mut race = self.race.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if race.as_ref().is_some_and(|r| r.collection == collection && r.id == id) { race.take() } else { None }
        };
        let Some(Race { change, .. }) = race else { return };
        let Ok(Some(current)) = self.memory.get(collection, id).await else { return };
        let mut body = current.body;
        change(&mut body);
        self.memory.replace(collection, id, current.version, body).await.expect("the racing write lands");
    }

    /// Switches it off (`true`) or on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    async fn answer<T>(&self, up: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            tokio::time::sleep(self.failure_delay).await;
            return Err(StoreError::Unavailable("the fake server does not answer".into()));
        }
        up.await
    }
}

#[async_trait]
impl Store for SwitchableStore {
    fn kind(&self) -> &'static str {
        "switchable"
    }
    fn exclusive(&self) -> bool {
        !self.shared
    }
    async fn insert(&self, c: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.answer(self.memory.insert(c, id, body)).await
    }
    async fn upsert(&self, c: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.answer(self.memory.upsert(c, id, body)).await
    }
    async fn replace(&self, c: Collection, id: &str, v: u64, body: Value) -> Result<u64, StoreError> {
        self.run_race(c, id).await;
        self.answer(self.memory.replace(c, id, v, body)).await
    }
    async fn get(&self, c: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.read(c, "get");
        self.answer(self.memory.get(c, id)).await
    }
    async fn version(&self, c: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        self.read(c, "version");
        self.answer(self.memory.version(c, id)).await
    }
    async fn list(&self, c: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        self.read(c, "list");
        self.answer(self.memory.list(c)).await
    }
    async fn last_id(&self, c: Collection) -> Result<Option<String>, StoreError> {
        self.answer(self.memory.last_id(c)).await
    }
    async fn delete(&self, c: Collection, id: &str, v: Option<u64>) -> Result<bool, StoreError> {
        self.answer(self.memory.delete(c, id, v)).await
    }
    async fn page(&self, c: Collection, q: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        self.read(c, "page");
        self.answer(self.memory.page(c, q)).await
    }
    async fn expired(&self, c: Collection, f: &str, b: &str, n: usize) -> Result<Vec<(String, u64)>, StoreError> {
        self.answer(self.memory.expired(c, f, b, n)).await
    }
    async fn counts(&self, c: Collection, f: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.answer(self.memory.counts(c, f)).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.answer(async { Ok(()) }).await
    }
}
