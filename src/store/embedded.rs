//! The embedded store: esm's default, durable with no external service.
//!
//! Built on redb, a pure-Rust ACID key-value store with a stable file format: every
//! write is one transaction committed with `fsync` before esm answers, so an
//! acknowledged write survives a crash or power loss, and a torn write is rolled back
//! on the next open. One table per collection maps the record id to `(version, JSON)`.
//! The database file is locked by the process that opens it: a second esm on the same
//! directory fails fast instead of corrupting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use super::{Collection, Document, Store, StoreError};

/// The file inside the data directory.
pub const FILE_NAME: &str = "esm.redb";

type Table = TableDefinition<'static, &'static str, (u64, &'static [u8])>;

fn table(collection: Collection) -> Table {
    TableDefinition::new(collection.name())
}

/// A [`Store`] in a redb file.
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
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
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| unavailable(format!("cannot create data directory {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => unavailable(format!(
                "{} is in use by another process (is another esm running with the same ESM_DATA_DIR?)",
                path.display()
            )),
            other => unavailable(format!("cannot open {}: {other}", path.display())),
        })?;
        // Create every table once, so that reads never meet a missing one.
        let txn = db.begin_write().map_err(unavailable)?;
        for collection in Collection::ALL {
            txn.open_table(table(collection)).map_err(unavailable)?;
        }
        txn.commit().map_err(unavailable)?;
        Ok(Self { db: Arc::new(db), path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs blocking redb work off the async runtime.
    async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| unavailable(format!("store task failed: {e}")))?
    }

    /// A write transaction: `change` sees the current document and returns what to do;
    /// the transaction commits (durably) only if it returns `Ok`.
    async fn write<R: Send + 'static>(
        &self,
        collection: Collection,
        id: &str,
        change: impl FnOnce(Option<(u64, Value)>) -> Result<(Write, R), StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(unavailable)?;
            let result = {
                let mut t = txn.open_table(table(collection)).map_err(unavailable)?;
                let current = match t.get(id.as_str()).map_err(unavailable)? {
                    Some(guard) => {
                        let (version, bytes) = guard.value();
                        Some((version, decode(collection, &id, bytes)?))
                    }
                    None => None,
                };
                let (write, result) = change(current)?;
                match write {
                    Write::Put(version, body) => {
                        let bytes = serde_json::to_vec(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        t.insert(id.as_str(), (version, bytes.as_slice())).map_err(unavailable)?;
                    }
                    Write::Remove => {
                        t.remove(id.as_str()).map_err(unavailable)?;
                    }
                    Write::Nothing => {
                        drop(t);
                        txn.abort().map_err(unavailable)?;
                        return Ok(result);
                    }
                }
                result
            };
            txn.commit().map_err(unavailable)?;
            Ok(result)
        })
        .await
    }
}

/// What a write transaction does to the document.
enum Write {
    Put(u64, Value),
    Remove,
    Nothing,
}

fn decode(collection: Collection, id: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{}/{id}: {e}", collection.name())))
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
            let version = current.map_or(1, |(v, _)| v + 1);
            Ok((Write::Put(version, body), version))
        })
        .await
    }

    async fn replace(
        &self,
        collection: Collection,
        id: &str,
        expected_version: u64,
        body: Value,
    ) -> Result<u64, StoreError> {
        let name = format!("{}/{id}", collection.name());
        self.write(collection, id, move |current| match current {
            None => Err(StoreError::NotFound(name)),
            Some((version, _)) if version != expected_version => {
                Err(StoreError::Conflict(format!("{name} is at version {version}, not {expected_version}")))
            }
            Some((version, _)) => Ok((Write::Put(version + 1, body), version + 1)),
        })
        .await
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let t = txn.open_table(table(collection)).map_err(unavailable)?;
            match t.get(id.as_str()).map_err(unavailable)? {
                Some(guard) => {
                    let (version, bytes) = guard.value();
                    Ok(Some(Document { version, body: decode(collection, &id, bytes)? }))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(unavailable)?;
            let t = txn.open_table(table(collection)).map_err(unavailable)?;
            let mut out = Vec::new();
            for entry in t.iter().map_err(unavailable)? {
                let (key, value) = entry.map_err(unavailable)?;
                let id = key.value().to_owned();
                let (version, bytes) = value.value();
                let body = decode(collection, &id, bytes)?;
                out.push((id, Document { version, body }));
            }
            Ok(out)
        })
        .await
    }

    async fn delete(
        &self,
        collection: Collection,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        let name = format!("{}/{id}", collection.name());
        self.write(collection, id, move |current| match (current, expected_version) {
            (None, _) => Ok((Write::Nothing, false)),
            (Some((version, _)), Some(expected)) if version != expected => {
                Err(StoreError::Conflict(format!("{name} is at version {version}, not {expected}")))
            }
            (Some(_), _) => Ok((Write::Remove, true)),
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|db| db.begin_read().map(|_| ()).map_err(unavailable)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("esm-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn conforms() {
        let dir = TempDir::new();
        let store = EmbeddedStore::open(&dir.0).expect("opens");
        crate::store::conformance::run(Arc::new(store)).await;
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = TempDir::new();
        {
            let store = EmbeddedStore::open(&dir.0).expect("opens");
            store.insert(Collection::Services, "s", serde_json::json!({"a": 1})).await.expect("insert");
            store.replace(Collection::Services, "s", 1, serde_json::json!({"a": 2})).await.expect("replace");
        }
        let store = EmbeddedStore::open(&dir.0).expect("reopens");
        let doc = store.get(Collection::Services, "s").await.expect("get").expect("kept");
        assert_eq!((doc.version, doc.body), (2, serde_json::json!({"a": 2})));
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails_fast() {
        let dir = TempDir::new();
        let _first = EmbeddedStore::open(&dir.0).expect("opens");
        let err = EmbeddedStore::open(&dir.0).expect_err("second open refused");
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }
}
