//! The in-memory store: fast, for tests and throwaway runs; forgets everything on exit.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::{Collection, Document, Query, Store, StoreError, index};

/// A [`Store`] in a map. A std `Mutex` suffices: no `.await` is held across the lock and
/// every critical section is a map lookup.
#[derive(Debug, Default)]
pub struct MemoryStore {
    collections: Mutex<HashMap<Collection, BTreeMap<String, Document>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, collection: Collection, f: impl FnOnce(&mut BTreeMap<String, Document>) -> R) -> R {
        // A poisoned lock means a panic mid-update of a plain map; the map itself is
        // still consistent (each write is a single insert/remove), so keep serving.
        let mut guard = self.collections.lock().unwrap_or_else(|p| p.into_inner());
        f(guard.entry(collection).or_default())
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.with(collection, |docs| {
            if docs.contains_key(id) {
                return Err(StoreError::Conflict(format!("{}/{id} exists", collection.name())));
            }
            docs.insert(id.to_owned(), Document { version: 1, body });
            Ok(1)
        })
    }

    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.with(collection, |docs| {
            let version = docs.get(id).map_or(1, |d| d.version + 1);
            docs.insert(id.to_owned(), Document { version, body });
            Ok(version)
        })
    }

    async fn replace(
        &self,
        collection: Collection,
        id: &str,
        expected_version: u64,
        body: Value,
    ) -> Result<u64, StoreError> {
        self.with(collection, |docs| match docs.get_mut(id) {
            None => Err(StoreError::NotFound(format!("{}/{id}", collection.name()))),
            Some(doc) if doc.version != expected_version => Err(StoreError::Conflict(format!(
                "{}/{id} is at version {}, not {expected_version}",
                collection.name(),
                doc.version
            ))),
            Some(doc) => {
                doc.version += 1;
                doc.body = body;
                Ok(doc.version)
            }
        })
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        Ok(self.with(collection, |docs| docs.get(id).cloned()))
    }

    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.with(collection, |docs| docs.get(id).map(|doc| doc.version)))
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        Ok(self.with(collection, |docs| docs.iter().map(|(id, doc)| (id.clone(), doc.clone())).collect()))
    }

    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        let start = query.after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self.with(collection, |docs| {
            docs.range((start, Bound::Unbounded))
                .filter(|(_, doc)| index::matches(&doc.body, &query.filters))
                .take(query.limit)
                .map(|(id, doc)| (id.clone(), doc.clone()))
                .collect()
        }))
    }

    async fn expired(
        &self,
        collection: Collection,
        field: &str,
        below: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.with(collection, |docs| {
            docs.iter()
                .filter(|(_, doc)| index::entries(&doc.body).iter().any(|&(f, v)| f == field && v < below))
                .take(limit)
                .map(|(id, doc)| (id.clone(), doc.version))
                .collect()
        }))
    }

    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError> {
        Ok(self.with(collection, |docs| docs.keys().next_back().cloned()))
    }

    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.with(collection, |docs| {
            let mut counts = BTreeMap::<String, u64>::new();
            for doc in docs.values() {
                for (_, value) in index::entries(&doc.body).into_iter().filter(|&(f, _)| f == field) {
                    *counts.entry(value.to_owned()).or_default() += 1;
                }
            }
            counts.into_iter().collect()
        }))
    }

    async fn delete(
        &self,
        collection: Collection,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        self.with(collection, |docs| match (docs.get(id), expected_version) {
            (None, _) => Ok(false),
            (Some(doc), Some(expected)) if doc.version != expected => Err(StoreError::Conflict(format!(
                "{}/{id} is at version {}, not {expected}",
                collection.name(),
                doc.version
            ))),
            _ => Ok(docs.remove(id).is_some()),
        })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[tokio::test]
    async fn conforms() {
        crate::store::conformance::run(Arc::new(super::MemoryStore::new())).await;
    }
}
