//! Where esm keeps its state: the [`Store`] trait and the typed [`Records`] layer.
//!
//! A store holds JSON documents in a few collections, each document with a version that
//! the store bumps on every write. Everything esm needs from a database is four
//! primitives: insert-if-absent, compare-and-set on the version, delete, and list. Those
//! map one-to-one onto a unique `_id` plus a filtered `replace_one` in MongoDB and onto
//! a write transaction in an embedded engine, so every store gives the same guarantees:
//! two requests (or two esm replicas) racing to create one id get one winner, and two
//! racing to start an operation on one instance get one winner.
//!
//! The trait is object-safe (`async_trait`) and used as `Arc<dyn Store>`: handlers stay
//! free of generics, and a virtual call costs nothing next to the I/O behind it.

mod announced;
pub mod breaker;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod embedded;
pub mod index;
pub mod layered;
pub mod memory;
pub mod mongo;
mod numbering;
#[cfg(test)]
pub mod switchable;
mod walk;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{Stream, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::binding::Binding;
use crate::domain::catalog::Service;
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::pool::Pool;
use crate::domain::registry::{Registry, StoredManifest};
use crate::domain::resource::Resource;
pub use index::{Cutoff, Query};

/// The id of the one [`Registry`] record.
pub const REGISTRY_ID: &str = "registry";

/// The kinds of record esm stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// The one [`Registry`] record: every service offering and manifest.
    Registry,
    /// The contents of registered manifests ([`StoredManifest`]).
    ManifestContents,
    /// Service instances (with their operations).
    Instances,
    /// Service bindings (with their operations).
    Bindings,
    /// Change events ([`crate::domain::event::Event`]), keyed by their zero-padded id.
    Events,
    /// Warm pools ([`Pool`]), keyed by plan id.
    Pools,
    /// The inventory ([`Resource`]): what each deployment holds, host ports leased from
    /// `ESM_HOST_PORT_RANGE` among them.
    Resources,
    /// Instances' latest reports of their own liveness
    /// ([`crate::domain::liveness::ReportRecord`]), keyed by instance id: apart from
    /// the instances, so reports never contend with operations.
    LivenessReports,
    /// Events not tied to an instance's or binding's change (pools, the catalog, the
    /// inventory), waiting for the sequencer to number them; keyed so that key order
    /// is the order they were emitted in by one process.
    EventOutbox,
    /// The sequencer's one document: the next event id and the batch being numbered
    /// (`events::sequencer`).
    EventSequence,
    /// The engines instances are placed on ([`crate::domain::engine::Engine`]), keyed
    /// by name.
    Engines,
    /// Service offerings as esm 0.1 stored them, one record each; read once to move
    /// them into the registry.
    LegacyServices,
    /// Manifests as esm 0.1 stored them; read once like [`Collection::LegacyServices`].
    LegacyManifests,
}

impl Collection {
    /// Every collection.
    pub const ALL: [Collection; 13] = [
        Self::Registry,
        Self::ManifestContents,
        Self::Instances,
        Self::Bindings,
        Self::Events,
        Self::Pools,
        Self::Resources,
        Self::LivenessReports,
        Self::EventOutbox,
        Self::EventSequence,
        Self::Engines,
        Self::LegacyServices,
        Self::LegacyManifests,
    ];

    /// The collection's name (a MongoDB collection name, a table name).
    pub fn name(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::ManifestContents => "manifest_contents",
            Self::Instances => "instances",
            Self::Bindings => "bindings",
            Self::Events => "events",
            Self::Pools => "pools",
            Self::Resources => "resources",
            Self::LivenessReports => "liveness_reports",
            Self::EventOutbox => "event_outbox",
            Self::EventSequence => "event_sequence",
            Self::Engines => "engines",
            Self::LegacyServices => "services",
            Self::LegacyManifests => "manifests",
        }
    }
}

/// A stored document and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Bumped by the store on every write; the token for compare-and-set.
    pub version: u64,
    /// The record as JSON.
    pub body: Value,
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// Insert of an id that exists, or compare-and-set against a stale version.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Compare-and-set of a document that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The database does not answer; the caller may retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A stored document cannot be read as the record it should be.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// A place to keep documents. See the module docs for the guarantees.
#[async_trait]
pub trait Store: Send + Sync {
    /// A short name for logs and `/health` (`memory`, `embedded`, `mongodb`).
    fn kind(&self) -> &'static str;

    /// Inserts a new document at version 1; `Conflict` if the id exists.
    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError>;

    /// Inserts or replaces a document regardless of its version; returns the new version.
    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError>;

    /// Replaces a document if it is still at `expected`; returns the new version.
    /// `Conflict` if it moved on, `NotFound` if it is gone.
    async fn replace(&self, collection: Collection, id: &str, expected: u64, body: Value) -> Result<u64, StoreError>;

    /// Reads a document.
    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError>;

    /// The version of a document, without its body where the store can avoid reading
    /// it: what tells a cached copy of a large record (the registry) is still current.
    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(collection, id).await?.map(|doc| doc.version))
    }

    /// Reads every document of a collection, ordered by id.
    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError>;

    /// A page of a collection (see [`Query`]), served from the indexes kept from each
    /// body's [`index::INDEX_FIELD`].
    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError>;

    /// The ids of a page, without reading the documents where the store can avoid it.
    async fn page_ids(&self, collection: Collection, query: &Query) -> Result<Vec<String>, StoreError> {
        Ok(self.page(collection, query).await?.into_iter().map(|(id, _)| id).collect())
    }

    /// The ids (with their versions) of documents within `cutoff`, in no particular
    /// order: what the purge removes.
    async fn expired(&self, collection: Collection, cutoff: Cutoff<'_>) -> Result<Vec<(String, u64)>, StoreError>;

    /// The greatest id in a collection, if it has any document.
    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError>;

    /// How many documents are indexed under each value of `field`, ordered by value,
    /// counted from the index alone (no document is read where the store can avoid
    /// it): what `esm_instances` reports.
    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Deletes a document (only if at `expected`, when given). Returns whether
    /// something was deleted; `Conflict` if the version moved on.
    async fn delete(&self, collection: Collection, id: &str, expected: Option<u64>) -> Result<bool, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Checks that the store can do its work, for `/health`: what was checked, or why it
    /// cannot. A store that answers reads but cannot write (a full disk) is not healthy.
    /// By default, [`Store::ping`]: a server-side store answers writes when it answers.
    async fn health(&self) -> Result<String, StoreError> {
        self.ping().await.map(|()| "the store answers".to_owned())
    }

    /// Releases connections before esm exits.
    async fn close(&self) {}

    /// Whether only this process can use the store (memory; embedded, which locks its
    /// file). Then every operation left in progress at start-up is an orphan, and the
    /// store numbers events in the write that makes them (`numbering`).
    fn exclusive(&self) -> bool {
        false
    }

    /// How many ids and documents this store's reads have visited so far, where the
    /// store counts them: what the conformance suite checks a page's cost by (that it
    /// does not grow with unrelated documents). `None` where it cannot tell (MongoDB).
    #[cfg(any(test, feature = "test-support"))]
    fn visits(&self) -> Option<u64> {
        None
    }
}

/// A record type and the collection it lives in.
pub trait Record: Serialize + DeserializeOwned + Send + Sync {
    /// Its collection.
    const COLLECTION: Collection;
    /// Its id.
    fn id(&self) -> &str;
    /// What it is found under (see [`index`]); only fields of
    /// [`Collection::indexed_fields`]. `outbox_waits`: whether the events in its outbox
    /// wait there once it is written (not on a store that numbers them as it writes).
    fn index_keys(&self, outbox_waits: bool) -> index::IndexKeys {
        let _ = outbox_waits;
        Vec::new()
    }
}

impl Record for Registry {
    const COLLECTION: Collection = Collection::Registry;
    fn id(&self) -> &str {
        REGISTRY_ID
    }
}
impl Record for Resource {
    const COLLECTION: Collection = Collection::Resources;
    fn id(&self) -> &str {
        &self.id
    }
    fn index_keys(&self, _: bool) -> index::IndexKeys {
        vec![
            (index::OWNER, self.owner.clone()),
            (index::TYPE, self.kind.clone()),
            (index::STATE, self.state.as_str().to_owned()),
            (index::BACKEND, self.backend.clone()),
            (index::NAME, self.name.clone()),
        ]
    }
}

/// The record types whose id is one of their fields, one row each: the collection, the
/// id's field and, for those found by more than their id, what they are indexed under.
macro_rules! records {
    ($($record:ty => $collection:ident, id: $id:ident $(, keys: $keys:path)?;)*) => {$(
        impl Record for $record {
            const COLLECTION: Collection = Collection::$collection;
            fn id(&self) -> &str {
                &self.$id
            }
            $(fn index_keys(&self, outbox_waits: bool) -> index::IndexKeys {
                $keys(self, outbox_waits)
            })?
        }
    )*};
}

records! {
    crate::domain::liveness::ReportRecord => LivenessReports, id: instance_id;
    Pool => Pools, id: plan_id;
    crate::domain::engine::Engine => Engines, id: name;
    StoredManifest => ManifestContents, id: key;
    Service => LegacyServices, id: id;
    Manifest => LegacyManifests, id: id;
    ServiceInstance => Instances, id: id, keys: index::instance_keys;
    Binding => Bindings, id: id, keys: index::binding_keys;
}

/// A record read from the store, with the version to compare-and-set against.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    /// The store version the record was read at.
    pub version: u64,
    /// The record.
    pub record: T,
}

/// The schema version of the documents this esm writes.
///
/// Each document carries it in `_schema`. A later esm that changes a record's shape
/// bumps it and migrates documents with an older `_schema` as it reads them (in
/// `Records::decode`), so old data keeps working without a separate migration step.
/// A document from a *newer* esm is refused rather than silently misread.
pub const SCHEMA_VERSION: u64 = 1;

/// Typed access to a [`Store`]: serializes records and stamps their schema version.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

/// How many records a [`Records::scan`] reads at a time.
const SCAN_PAGE: usize = 256;

/// Every item `fetch` finds for `filters`, asking for one page of [`SCAN_PAGE`] at a
/// time, each after the last id of the one before.
fn paged<X, F, Fut>(filters: Vec<(String, String)>, fetch: F) -> impl Stream<Item = Result<X, StoreError>> + Send
where
    X: Send,
    F: Fn(Query) -> Fut + Send,
    Fut: Future<Output = Result<Vec<(String, X)>, StoreError>> + Send,
{
    let first = Query { filters, after: None, limit: SCAN_PAGE };
    futures_util::stream::try_unfold((Some(first), fetch), |(query, fetch)| async move {
        let Some(query) = query else { return Ok(None) };
        let page = fetch(query.clone()).await?;
        let full = page.len() == query.limit;
        let next = page.last().filter(|_| full).map(|(last, _)| Query { after: Some(last.clone()), ..query });
        let items = page.into_iter().map(|(_, item)| Ok(item));
        Ok(Some((futures_util::stream::iter(items), (next, fetch))))
    })
    .try_flatten()
}

/// How many times a read-modify-write retries after losing a race.
const CAS_ATTEMPTS: usize = 16;

impl Records {
    /// Wraps a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn encode<T: Record>(&self, record: &T) -> Result<Value, StoreError> {
        // An exclusive store numbers a record's events in the write (`numbering`).
        Self::encode_indexed(record, record.id(), &record.index_keys(!self.store.exclusive()))
    }

    /// `value` as stored: stamped with the schema version and its index entries.
    fn encode_indexed<T: Serialize>(value: &T, id: &str, keys: &index::IndexKeys) -> Result<Value, StoreError> {
        let mut body =
            serde_json::to_value(value).map_err(|e| StoreError::Corrupt(format!("cannot encode {id}: {e}")))?;
        if let Value::Object(map) = &mut body {
            map.insert("_schema".into(), SCHEMA_VERSION.into());
            if !keys.is_empty() {
                map.insert(index::INDEX_FIELD.into(), index::to_object(keys));
            }
        }
        Ok(body)
    }

    fn decode<T: Record>(id: &str, doc: Document) -> Result<Versioned<T>, StoreError> {
        let version = doc.version;
        let record = Self::decode_value(T::COLLECTION, id, doc)?;
        Ok(Versioned { version, record })
    }

    fn decode_value<T: DeserializeOwned>(collection: Collection, id: &str, doc: Document) -> Result<T, StoreError> {
        let schema = doc.body.get("_schema").and_then(Value::as_u64).unwrap_or(1);
        if schema > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "{}/{id} was written by a newer esm (schema {schema}, this esm reads up to {SCHEMA_VERSION})",
                collection.name()
            )));
        }
        serde_json::from_value(doc.body).map_err(|e| StoreError::Corrupt(format!("{}/{id}: {e}", collection.name())))
    }

    /// Inserts `value` under `id` with index entries `keys`: for values that are not
    /// [`Record`]s because their id is not text they hold (events are numbered).
    pub async fn insert_value<T: Serialize>(
        &self,
        collection: Collection,
        id: &str,
        value: &T,
        keys: &index::IndexKeys,
    ) -> Result<u64, StoreError> {
        self.store.insert(collection, id, Self::encode_indexed(value, id, keys)?).await
    }

    /// A page of values inserted with [`Records::insert_value`].
    pub async fn page_values<T: DeserializeOwned>(
        &self,
        collection: Collection,
        query: &Query,
    ) -> Result<Vec<T>, StoreError> {
        let page = self.store.page(collection, query).await?;
        page.into_iter().map(|(id, doc)| Self::decode_value(collection, &id, doc)).collect()
    }

    /// Reads one record.
    pub async fn get<T: Record>(&self, id: &str) -> Result<Option<Versioned<T>>, StoreError> {
        match self.store.get(T::COLLECTION, id).await? {
            Some(doc) => Ok(Some(Self::decode(id, doc)?)),
            None => Ok(None),
        }
    }

    /// Reads every record of a type, ordered by id.
    pub async fn list<T: Record>(&self) -> Result<Vec<Versioned<T>>, StoreError> {
        self.store.list(T::COLLECTION).await?.into_iter().map(|(id, doc)| Self::decode(&id, doc)).collect()
    }

    /// A page of records (see [`Query`]).
    pub async fn page<T: Record>(&self, query: &Query) -> Result<Vec<Versioned<T>>, StoreError> {
        let found = self.store.page(T::COLLECTION, query).await?;
        found.into_iter().map(|(id, doc)| Self::decode(&id, doc)).collect()
    }

    /// Every record matching `filters`, read a page at a time as the stream is consumed:
    /// memory stays bounded by one page whatever the collection holds.
    pub fn scan<T: Record + 'static>(
        &self,
        filters: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<Versioned<T>, StoreError>> + Send + 'static {
        let store = self.store.clone();
        paged(filters, move |query| {
            let store = store.clone();
            async move {
                let page = store.page(T::COLLECTION, &query).await?;
                page.into_iter().map(|(id, doc)| Ok((id.clone(), Self::decode(&id, doc)?))).collect()
            }
        })
    }

    /// The ids of every record of a type matching `filters`, a page at a time, without
    /// reading the records where the store can avoid it.
    pub fn scan_ids<T: Record>(
        &self,
        filters: Vec<(String, String)>,
    ) -> impl Stream<Item = Result<String, StoreError>> + Send + 'static {
        let store = self.store.clone();
        paged(filters, move |query| {
            let store = store.clone();
            async move { Ok(store.page_ids(T::COLLECTION, &query).await?.into_iter().map(|id| (id.clone(), id)).collect()) }
        })
    }

    /// Ids and versions of up to `limit` records whose `field` sorts before `below`.
    pub async fn expired<T: Record>(
        &self,
        field: &str,
        below: &str,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.store.expired(T::COLLECTION, Cutoff { field, below, limit }).await
    }

    /// Rewrites every record of a type written before its index entries existed (or
    /// before those of [`index::VERSION`]), so the indexes cover them. Runs once per
    /// store and index version: a marker in the registry collection records which
    /// version is done. Records changed meanwhile by a request are left alone: that
    /// write carried its entries.
    pub async fn reindex<T: Record + 'static>(&self) -> Result<usize, StoreError> {
        let marker = format!("_indexed_{}", T::COLLECTION.name());
        let done = self.store.get(Collection::Registry, &marker).await?;
        if done.and_then(|d| d.body.get("index_version").and_then(Value::as_u64)) >= Some(index::VERSION) {
            return Ok(0);
        }
        let mut rewritten = 0;
        let mut all = std::pin::pin!(self.scan::<T>(Vec::new()));
        while let Some(Versioned { version, record }) = all.try_next().await? {
            match self.replace(version, &record).await {
                Ok(_) => rewritten += 1,
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.store.upsert(Collection::Registry, &marker, serde_json::json!({"index_version": index::VERSION})).await?;
        Ok(rewritten)
    }

    /// Inserts a new record; `Conflict` if its id exists.
    pub async fn insert<T: Record>(&self, record: &T) -> Result<u64, StoreError> {
        self.store.insert(T::COLLECTION, record.id(), self.encode(record)?).await
    }

    /// Inserts or replaces a record.
    pub async fn upsert<T: Record>(&self, record: &T) -> Result<u64, StoreError> {
        self.store.upsert(T::COLLECTION, record.id(), self.encode(record)?).await
    }

    /// Replaces a record read at `version`; `Conflict` if it changed since.
    pub async fn replace<T: Record>(&self, version: u64, record: &T) -> Result<u64, StoreError> {
        self.store.replace(T::COLLECTION, record.id(), version, self.encode(record)?).await
    }

    /// Deletes a record read at `version`; `Conflict` if it changed since.
    pub async fn delete<T: Record>(&self, id: &str, version: Option<u64>) -> Result<bool, StoreError> {
        self.store.delete(T::COLLECTION, id, version).await
    }

    /// Read-modify-write with compare-and-set, retried when another writer got there
    /// first. `change` sees the current record and returns `Ok(true)` to write it,
    /// `Ok(false)` to leave it alone, or an error to stop. Returns the record as
    /// written (or as found), or `None` if it does not exist.
    pub async fn modify<T, E, F>(&self, id: &str, change: F) -> Result<Option<T>, E>
    where
        T: Record + Clone,
        E: From<StoreError>,
        F: FnMut(&mut T) -> Result<bool, E>,
    {
        Ok(self.modify_from(id, None, change).await?.map(|written| written.record))
    }

    /// [`Records::modify`], trying first on `read`, the record as the caller last read
    /// or wrote it: no read at all when nothing changed it since. Returns the record
    /// with the version it was written (or found) at.
    pub async fn modify_from<T, E, F>(
        &self,
        id: &str,
        mut read: Option<Versioned<T>>,
        mut change: F,
    ) -> Result<Option<Versioned<T>>, E>
    where
        T: Record + Clone,
        E: From<StoreError>,
        F: FnMut(&mut T) -> Result<bool, E>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let current = match read.take() {
                Some(read) => Some(read),
                None => self.get::<T>(id).await?,
            };
            let Some(Versioned { version, mut record }) = current else {
                return Ok(None);
            };
            if !change(&mut record)? {
                return Ok(Some(Versioned { version, record }));
            }
            match self.replace(version, &record).await {
                Ok(version) => return Ok(Some(Versioned { version, record })),
                Err(StoreError::Conflict(_)) => continue,
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!(
            "{}/{id} kept changing under {CAS_ATTEMPTS} attempts to update it",
            T::COLLECTION.name()
        ))
        .into())
    }
}
