//! The in-memory store: fast, for tests and throwaway runs; forgets everything on exit.
//!
//! Indexed like the embedded store: each collection keeps the entries of its bodies'
//! `_ix` (see `index`) beside the documents, updated in the same critical section as
//! the document, and pages walk them with the walk every store shares (`walk`). So a
//! query costs what it costs on the embedded store, whatever else the collection holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::numbering::{self, Counted};
use super::walk::{self, Ranges, Visits};
use super::{Collection, Cutoff, Document, Query, Store, StoreError, index};

/// A collection's index: field → value → ids. The same `(field, value, id)` entries as
/// the embedded store's index table, nested so that every lookup borrows the query's
/// strings, and a value's count is the size of its set. No set or map is kept empty.
type Index = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

/// One collection.
#[derive(Debug, Default)]
struct Table {
    /// The documents by id, in id order (what `list` and an unfiltered page walk).
    /// Shared, so that a read takes them out of the lock to copy them.
    docs: BTreeMap<String, Arc<Document>>,
    /// The index entries of every document's body.
    index: Index,
}

impl Table {
    /// Stores `body` at `version` under `id`, moving its index entries from the old
    /// body's to the new one's: only those that differ (a write mostly changes a state
    /// or two of a dozen entries). Returns the old document, for the caller to drop
    /// once it has left the lock (a record's tree takes a while to free).
    fn put(&mut self, id: &str, version: u64, body: Value) -> Option<Arc<Document>> {
        let Table { docs, index } = self;
        let new = index::entries(&body);
        let old = docs.get(id).map(|old| index::entries(&old.body)).unwrap_or_default();
        unindex(index, id, old.iter().filter(|entry| !new.contains(entry)));
        add(index, id, new.iter().filter(|entry| !old.contains(entry)));
        docs.insert(id.to_owned(), Arc::new(Document { version, body }))
    }

    /// Removes the document `id` and its index entries; returns it (see `put`).
    fn remove(&mut self, id: &str) -> Option<Arc<Document>> {
        let old = self.docs.remove(id)?;
        unindex(&mut self.index, id, &index::entries(&old.body));
        Some(old)
    }
}

/// Adds `id` under each of `entries`, allocating only what the index lacks.
fn add<'a>(index: &mut Index, id: &str, entries: impl IntoIterator<Item = &'a (&'a str, &'a str)>) {
    for &(field, value) in entries {
        let Some(values) = index.get_mut(field) else {
            let ids = BTreeSet::from([id.to_owned()]);
            index.insert(field.to_owned(), BTreeMap::from([(value.to_owned(), ids)]));
            continue;
        };
        match values.get_mut(value) {
            Some(ids) => {
                ids.insert(id.to_owned());
            }
            None => {
                values.insert(value.to_owned(), BTreeSet::from([id.to_owned()]));
            }
        }
    }
}

/// Removes `id` from under each of `entries`, and what that leaves empty.
fn unindex<'a>(index: &mut Index, id: &str, entries: impl IntoIterator<Item = &'a (&'a str, &'a str)>) {
    for &(field, value) in entries {
        let Some(values) = index.get_mut(field) else { continue };
        if let Some(ids) = values.get_mut(value) {
            ids.remove(id);
            if ids.is_empty() {
                values.remove(value);
            }
        }
        if values.is_empty() {
            index.remove(field);
        }
    }
}

/// The documents a read took out of the lock, copied there.
fn copies(shared: Vec<(String, Arc<Document>)>) -> Vec<(String, Document)> {
    shared.into_iter().map(|(id, doc)| (id, Arc::unwrap_or_clone(doc))).collect()
}

/// A collection as the shared walk reads it, counting what it visits.
struct View<'a> {
    table: &'a Table,
    visits: &'a Visits,
}

impl Ranges for View<'_> {
    type Error = StoreError;

    fn all(
        &self,
        start: Bound<&str>,
        mut visit: impl FnMut(&str) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let ids = self.table.docs.range::<str, _>((start, Bound::Unbounded)).map(|(id, _)| Ok(id));
        self.visits.each(ids, |id| visit(id))
    }

    fn under(
        &self,
        field: &str,
        value: &str,
        start: Bound<&str>,
        mut visit: impl FnMut(&str) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(ids) = self.table.index.get(field).and_then(|values| values.get(value)) else { return Ok(()) };
        self.visits.each(ids.range::<str, _>((start, Bound::Unbounded)).map(Ok), |id| visit(id))
    }
}

/// A [`Store`] in a map. A std `Mutex` suffices: no `.await` is held across the lock and
/// every critical section is a few map lookups, or one page's.
#[derive(Debug, Default)]
pub struct MemoryStore {
    collections: Mutex<HashMap<Collection, Table>>,
    /// What pages read (`Store::visits`).
    visits: Visits,
    /// Whether writes leave events in outboxes for the sequencer, as on a store
    /// replicas share, rather than numbering them (`numbering`).
    unnumbered: bool,
}

impl MemoryStore {
    /// An empty store, numbering events as they are written (`numbering`).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that leaves events in outboxes for the sequencer, as a store
    /// several replicas share does: a stand-in for one in tests (not exclusive).
    pub fn unnumbered() -> Self {
        Self { unnumbered: true, ..Self::default() }
    }

    fn with<R>(&self, collection: Collection, f: impl FnOnce(&mut Table) -> R) -> R {
        self.with_all(|tables| f(tables.entry(collection).or_default()))
    }

    fn with_all<R>(&self, f: impl FnOnce(&mut HashMap<Collection, Table>) -> R) -> R {
        // A poisoned lock means a panic mid-update; every update checks before it
        // changes anything, and then changes the index and the document together, so
        // keep serving.
        let mut guard = self.collections.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A write: `version` (from the stored version, none if absent) decides whether
    /// and as which version `body` is stored under `id`; the events it carries are
    /// appended to the log in the same critical section (`numbering`).
    fn write(
        &self,
        collection: Collection,
        id: &str,
        body: Value,
        version: impl FnOnce(Option<u64>) -> Result<u64, StoreError>,
    ) -> Result<u64, StoreError> {
        self.with_all(|tables| {
            let table = tables.entry(collection).or_default();
            let stored = table.docs.get(id);
            let version = version(stored.map(|doc| doc.version))?;
            let (events, body) = match collection {
                _ if self.unnumbered => (Vec::new(), Some(body)),
                // A standalone event goes to the log instead.
                Collection::EventOutbox => (vec![body], None),
                c if numbering::announces(c) => {
                    let mut body = body;
                    let events = numbering::take_new(
                        &stored.map_or_else(Counted::default, |doc| Counted::of(&doc.body)),
                        &mut body,
                    );
                    (events, Some(body))
                }
                _ => (Vec::new(), Some(body)),
            };
            let numbered = if events.is_empty() {
                Vec::new()
            } else {
                let log = tables.entry(Collection::Events).or_default();
                let first = numbering::next_id(log.docs.keys().rev().map(String::as_str));
                (first..).zip(events).map(|(n, event)| numbering::numbered(event, n)).collect::<Result<_, _>>()?
            };
            let replaced = body.and_then(|body| tables.entry(collection).or_default().put(id, version, body));
            let log = tables.entry(Collection::Events).or_default();
            for (key, body) in numbered {
                log.put(&key, 1, body);
            }
            Ok((version, replaced))
        })
        .map(|(version, _replaced)| version)
    }

    /// The ids of a page, each passed to `take` with the collection, in the lock.
    fn walk<T>(
        &self,
        collection: Collection,
        query: &Query,
        take: impl Fn(&Table, &str) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.with(collection, |table| {
            let view = View { table, visits: &self.visits };
            let mut out = Vec::new();
            walk::each_id(&view, &query.filters, query.after.as_deref(), |id| {
                out.push(take(table, id)?);
                Ok(out.len() < query.limit)
            })?;
            Ok(out)
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn exclusive(&self) -> bool {
        !self.unnumbered
    }

    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.write(collection, id, body, |stored| match stored {
            Some(_) => Err(StoreError::Conflict(format!("{}/{id} exists", collection.name()))),
            None => Ok(1),
        })
    }

    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.write(collection, id, body, |stored| Ok(stored.map_or(1, |version| version + 1)))
    }

    async fn replace(&self, collection: Collection, id: &str, expected: u64, body: Value) -> Result<u64, StoreError> {
        self.write(collection, id, body, |stored| match stored {
            None => Err(StoreError::NotFound(format!("{}/{id}", collection.name()))),
            Some(version) if version != expected => {
                Err(StoreError::Conflict(format!("{}/{id} is at version {version}, not {expected}", collection.name())))
            }
            Some(version) => Ok(version + 1),
        })
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        Ok(self.with(collection, |table| table.docs.get(id).cloned()).map(Arc::unwrap_or_clone))
    }

    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.with(collection, |table| table.docs.get(id).map(|doc| doc.version)))
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        let shared: Vec<_> =
            self.with(collection, |table| table.docs.iter().map(|(id, doc)| (id.clone(), Arc::clone(doc))).collect());
        Ok(copies(shared))
    }

    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        self.walk(collection, query, |table, id| {
            self.visits.one();
            let doc = table
                .docs
                .get(id)
                .ok_or_else(|| StoreError::Corrupt(format!("{} index names a missing {id}", collection.name())))?;
            Ok((id.to_owned(), Arc::clone(doc)))
        })
        .map(copies)
    }

    async fn page_ids(&self, collection: Collection, query: &Query) -> Result<Vec<String>, StoreError> {
        self.walk(collection, query, |_, id| Ok(id.to_owned()))
    }

    async fn expired(&self, collection: Collection, cutoff: Cutoff<'_>) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.with(collection, |table| {
            let Some(values) = table.index.get(cutoff.field) else { return Vec::new() };
            values
                .range::<str, _>((Bound::Unbounded, Bound::Excluded(cutoff.below)))
                .flat_map(|(_, ids)| ids)
                .filter_map(|id| table.docs.get(id).map(|doc| (id.clone(), doc.version)))
                .take(cutoff.limit)
                .collect()
        }))
    }

    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError> {
        Ok(self.with(collection, |table| table.docs.keys().next_back().cloned()))
    }

    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.with(collection, |table| {
            let values = table.index.get(field).into_iter().flatten();
            values.map(|(value, ids)| (value.clone(), ids.len() as u64)).collect()
        }))
    }

    async fn delete(&self, collection: Collection, id: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        self.with(collection, |table| match (table.docs.get(id), expected) {
            (None, _) => Ok(None),
            (Some(doc), Some(expected)) if doc.version != expected => Err(StoreError::Conflict(format!(
                "{}/{id} is at version {}, not {expected}",
                collection.name(),
                doc.version
            ))),
            _ => Ok(table.remove(id)),
        })
        .map(|removed| removed.is_some())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    #[cfg(any(test, feature = "test-support"))]
    fn visits(&self) -> Option<u64> {
        Some(self.visits.total())
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
