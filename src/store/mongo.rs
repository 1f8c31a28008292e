//! The MongoDB store, for running several esm replicas on one database.
//!
//! Plain MongoDB through the official driver, nothing server-specific, so it runs the
//! same against a standalone mongod, a replica set, or a wire-compatible server. Each
//! collection holds documents `{_id, version, json}`:
//! - `_id` is the record id; its unique index makes insert-if-absent atomic (E11000);
//! - `version` is bumped by every write, and replace/delete filter on it, so a
//!   compare-and-set is one atomic `update_one`/`delete_one`;
//! - `json` is the record as JSON text. Keeping it as text (not a BSON document) means
//!   whatever a platform sends (keys with `.` or `$`, integers beyond i64) round-trips
//!   exactly.
//!
//! - `ix` is the record's index entries (`{field: [value, …]}`, see
//!   [`super::index`]); each indexed field has a real index `{ix.<field>: 1, _id: 1}`,
//!   created on the first query, so a page by service or plan reads only its records,
//!   in id order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{Document as Bson, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, Database, IndexModel};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::{Collection, Cutoff, Document, Query, Store, StoreError, index};

/// Connections to MongoDB per esm process, unless the URI says otherwise.
const MAX_POOL_SIZE: u32 = 100;

/// How long a request waits for a reachable server before esm answers 503.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// A [`Store`] in MongoDB.
#[derive(Debug, Clone)]
pub struct MongoStore {
    client: Client,
    db: Database,
    /// Set once the indexes exist (creating an existing index is a no-op, so several
    /// replicas may all do it). Writes that may create a collection wait for it too:
    /// the indexes (and with them the collections) exist before the first document,
    /// so creating an index never races the insert that creates its collection.
    indexed: Arc<OnceCell<()>>,
}

/// The driver's error goes to the log (at debug: it can hold a whole topology
/// description); clients and `/health` get esm's words.
fn unavailable(e: mongodb::error::Error) -> StoreError {
    tracing::debug!(error = %e, "MongoDB request failed");
    StoreError::Unavailable("MongoDB does not answer".into())
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}

impl MongoStore {
    /// Connects to `uri` and uses database `db`. The server need not be up yet: esm
    /// starts, answers 503 and reports the store unhealthy until it is.
    pub async fn connect(uri: &str, db: &str) -> Result<Self, StoreError> {
        Self::with_options(Self::options(uri).await?, db)
    }

    /// The client settings for `uri`: what the URI says, and esm's defaults for what it
    /// leaves out.
    async fn options(uri: &str) -> Result<ClientOptions, StoreError> {
        // The driver's message may quote the URI, password included: it is not shown.
        let mut options = ClientOptions::parse(uri).await.map_err(|_| {
            StoreError::Unavailable(format!(
                "ESM_MONGO_URI (or ESM_MONGO_HOST) is not a valid MongoDB connection string: {}",
                crate::config::redact_uri(uri)
            ))
        })?;
        options.server_selection_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(SERVER_SELECTION_TIMEOUT);
        // The Rust driver's default is 10 connections, other drivers' 100. esm keeps many
        // calls in flight (each running operation renews its lease; liveness, events and
        // reconciliation read alongside requests): with 10, a burst of provisions queued
        // for connections and a restart resuming 60 operations stalled on SecantusDB in
        // tests. A URI that sets `maxPoolSize` wins.
        options.max_pool_size.get_or_insert(MAX_POOL_SIZE);
        options.app_name.get_or_insert_with(|| "esm".to_owned());
        // esm acknowledges a request only after its write is durable: journaled, and on a
        // replica set held by a majority (so a failover cannot roll it back). A URI
        // that sets its own write concern wins.
        options
            .write_concern
            .get_or_insert_with(|| WriteConcern::builder().w(Acknowledgment::Majority).journal(true).build());
        Ok(options)
    }

    fn with_options(options: ClientOptions, db: &str) -> Result<Self, StoreError> {
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(db);
        Ok(Self { client, db, indexed: Arc::new(OnceCell::new()) })
    }

    fn collection(&self, collection: Collection) -> mongodb::Collection<Bson> {
        self.db.collection(collection.name())
    }

    /// The cursor over one page of `query`, with only `projection`'s fields if given.
    async fn find_page(
        &self,
        collection: Collection,
        query: &Query,
        projection: Option<Bson>,
    ) -> Result<mongodb::Cursor<Bson>, StoreError> {
        self.ensure_indexes().await?;
        let mut filter = Bson::new();
        // A field filtered twice (a moving plan's two values) needs both: `$all`, as a
        // second equality under the same key would replace the first.
        let mut by_field: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (field, value) in &query.filters {
            by_field.entry(field.as_str()).or_default().push(value.as_str());
        }
        for (field, values) in by_field {
            match values.as_slice() {
                [one] => filter.insert(format!("ix.{field}"), *one),
                all => filter.insert(format!("ix.{field}"), doc! {"$all": all.to_vec()}),
            };
        }
        if let Some(after) = &query.after {
            filter.insert("_id", doc! {"$gt": after.as_str()});
        }
        let documents = self.collection(collection);
        let find =
            documents.find(filter).sort(doc! {"_id": 1}).limit(as_i64(query.limit)).batch_size(batch(query.limit));
        match projection {
            Some(fields) => find.projection(fields).await,
            None => find.await,
        }
        .map_err(unavailable)
    }

    /// Creates the indexes of every collection, once per process.
    async fn ensure_indexes(&self) -> Result<(), StoreError> {
        self.indexed
            .get_or_try_init(|| async {
                for collection in Collection::ALL {
                    for field in collection.indexed_fields() {
                        let keys = doc! {format!("ix.{field}"): 1, "_id": 1};
                        let model = IndexModel::builder().keys(keys).build();
                        self.collection(collection).create_index(model).await.map_err(unavailable)?;
                    }
                }
                Ok(())
            })
            .await
            .copied()
    }

    fn decode(collection: Collection, raw: &Bson) -> Result<(String, Document), StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("{}: {what}", collection.name()));
        let id = raw.get_str("_id").map_err(|_| corrupt("document without a string _id"))?;
        let version = raw.get_i64("version").map_err(|_| corrupt(&format!("{id} has no version")))?;
        let json = raw.get_str("json").map_err(|_| corrupt(&format!("{id} has no json")))?;
        let body = serde_json::from_str(json).map_err(|e| corrupt(&format!("{id}: {e}")))?;
        Ok((
            id.to_owned(),
            Document { version: u64::try_from(version).map_err(|_| corrupt("negative version"))?, body },
        ))
    }
}

/// The `version` of document `id`.
fn version_of(collection: Collection, id: &str, raw: &Bson) -> Result<u64, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("{}/{id} has no version", collection.name()));
    let version = raw.get_i64("version").map_err(|_| corrupt())?;
    u64::try_from(version).map_err(|_| corrupt())
}

fn json_text(body: &Value) -> Result<String, StoreError> {
    serde_json::to_string(body).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The `ix` sub-document: the body's index entries, queryable by MongoDB.
fn index_doc(body: &Value) -> Bson {
    let mut ix = Bson::new();
    for (field, value) in index::entries(body) {
        match ix.get_array_mut(field) {
            Ok(values) => values.push(value.into()),
            Err(_) => {
                ix.insert(field, vec![mongodb::bson::Bson::from(value)]);
            }
        }
    }
    ix
}

fn as_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// A cursor's first batch for `limit` documents: all of them, so a page is one round
/// trip (the server's default first batch is 101 documents, and the rest would need a
/// `getMore`; a batch over 16 MiB is still split by the server).
fn batch(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.ensure_indexes().await?;
        let json = json_text(&body)?;
        let document = doc! {"_id": id, "version": 1_i64, "json": json.as_str(), "ix": index_doc(&body)};
        match self.collection(collection).insert_one(document).await {
            Ok(_) => Ok(1),
            Err(e) if is_duplicate_key(&e) => {
                // The driver retries a write whose answer was lost; a server that does not
                // recognise the retry reports our own insert as the duplicate. The very
                // same document at version 1 is that insert (records carry fresh
                // operation ids and times, so another writer's would differ).
                let found = self.collection(collection).find_one(doc! {"_id": id}).await.map_err(unavailable)?;
                let ours = found.is_some_and(|raw| {
                    raw.get_i64("version").ok() == Some(1) && raw.get_str("json").ok() == Some(json.as_str())
                });
                if ours {
                    tracing::debug!(collection = collection.name(), id, "an insert was retried by the driver");
                    return Ok(1);
                }
                Err(StoreError::Conflict(format!("{}/{id} exists", collection.name())))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.ensure_indexes().await?;
        let updated = self
            .collection(collection)
            .find_one_and_update(
                doc! {"_id": id},
                doc! {"$inc": {"version": 1_i64}, "$set": {"json": json_text(&body)?, "ix": index_doc(&body)}},
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            // The caller has the body: only the version the server gave it comes back.
            .projection(doc! {"_id": 0, "version": 1})
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Unavailable("MongoDB: upsert returned no document".into()))?;
        version_of(collection, id, &updated)
    }

    async fn replace(&self, collection: Collection, id: &str, expected: u64, body: Value) -> Result<u64, StoreError> {
        let result = self
            .collection(collection)
            .update_one(
                doc! {"_id": id, "version": as_i64(expected)},
                doc! {"$inc": {"version": 1_i64}, "$set": {"json": json_text(&body)?, "ix": index_doc(&body)}},
            )
            .await
            .map_err(unavailable)?;
        if result.matched_count == 1 {
            return Ok(expected + 1);
        }
        // Only a lost compare-and-set reads again, and only the version, to tell why.
        match self.version(collection, id).await? {
            None => Err(StoreError::NotFound(format!("{}/{id}", collection.name()))),
            Some(version) => {
                Err(StoreError::Conflict(format!("{}/{id} is at version {version}, not {expected}", collection.name())))
            }
        }
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        let found = self.collection(collection).find_one(doc! {"_id": id}).await.map_err(unavailable)?;
        found.map(|raw| Self::decode(collection, &raw).map(|(_, doc)| doc)).transpose()
    }

    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        let found = self
            .collection(collection)
            .find_one(doc! {"_id": id})
            .projection(doc! {"_id": 0, "version": 1})
            .await
            .map_err(unavailable)?;
        found.map(|raw| version_of(collection, id, &raw)).transpose()
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        let mut cursor = self.collection(collection).find(doc! {}).sort(doc! {"_id": 1}).await.map_err(unavailable)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let raw: Bson = cursor.deserialize_current().map_err(unavailable)?;
            out.push(Self::decode(collection, &raw)?);
        }
        Ok(out)
    }

    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        let mut cursor = self.find_page(collection, query, None).await?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let raw: Bson = cursor.deserialize_current().map_err(unavailable)?;
            out.push(Self::decode(collection, &raw)?);
        }
        Ok(out)
    }

    async fn page_ids(&self, collection: Collection, query: &Query) -> Result<Vec<String>, StoreError> {
        let mut cursor = self.find_page(collection, query, Some(doc! {"_id": 1})).await?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let raw: Bson = cursor.deserialize_current().map_err(unavailable)?;
            let id = raw
                .get_str("_id")
                .map_err(|_| StoreError::Corrupt(format!("{}: an id that is not a string", collection.name())))?;
            out.push(id.to_owned());
        }
        Ok(out)
    }

    async fn expired(&self, collection: Collection, cutoff: Cutoff<'_>) -> Result<Vec<(String, u64)>, StoreError> {
        self.ensure_indexes().await?;
        let mut cursor = self
            .collection(collection)
            .find(doc! {format!("ix.{}", cutoff.field): {"$lt": cutoff.below}})
            .projection(doc! {"_id": 1, "version": 1})
            .limit(as_i64(cutoff.limit))
            .batch_size(batch(cutoff.limit))
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let raw: Bson = cursor.deserialize_current().map_err(unavailable)?;
            let corrupt = || StoreError::Corrupt(format!("{}: a document without _id or version", collection.name()));
            let id = raw.get_str("_id").map_err(|_| corrupt())?;
            let version = raw.get_i64("version").map_err(|_| corrupt())?;
            out.push((id.to_owned(), u64::try_from(version).map_err(|_| corrupt())?));
        }
        Ok(out)
    }

    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError> {
        let last = self
            .collection(collection)
            .find_one(doc! {})
            .sort(doc! {"_id": -1})
            .projection(doc! {"_id": 1})
            .await
            .map_err(unavailable)?;
        Ok(last.and_then(|raw| raw.get_str("_id").ok().map(str::to_owned)))
    }

    /// A `$group` over the field's entries in `ix`. MongoDB reads each document that
    /// has the field (an index cannot answer a count per value), but only on the
    /// server: esm receives one small document per value.
    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let path = format!("ix.{field}");
        let pipeline = [
            doc! {"$match": {&path: {"$exists": true}}},
            doc! {"$project": {"_id": 0, "value": format!("${path}")}},
            doc! {"$unwind": "$value"},
            doc! {"$group": {"_id": "$value", "n": {"$sum": 1}}},
            doc! {"$sort": {"_id": 1}},
        ];
        let mut cursor = self.collection(collection).aggregate(pipeline).await.map_err(unavailable)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(unavailable)? {
            let raw: Bson = cursor.deserialize_current().map_err(unavailable)?;
            let corrupt = || StoreError::Corrupt(format!("{}: a count of {field} that is not one", collection.name()));
            let value = raw.get_str("_id").map_err(|_| corrupt())?;
            // `$sum` answers the smallest integer type that holds the count.
            let n = match raw.get("n") {
                Some(mongodb::bson::Bson::Int32(n)) => u64::try_from(*n).ok(),
                Some(mongodb::bson::Bson::Int64(n)) => u64::try_from(*n).ok(),
                _ => None,
            };
            out.push((value.to_owned(), n.ok_or_else(corrupt)?));
        }
        Ok(out)
    }

    async fn delete(&self, collection: Collection, id: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        let filter = match expected {
            Some(v) => doc! {"_id": id, "version": as_i64(v)},
            None => doc! {"_id": id},
        };
        let result = self.collection(collection).delete_one(filter).await.map_err(unavailable)?;
        if result.deleted_count == 1 {
            return Ok(true);
        }
        match (expected, self.version(collection, id).await?) {
            (Some(expected), Some(version)) => {
                Err(StoreError::Conflict(format!("{}/{id} is at version {version}, not {expected}", collection.name())))
            }
            _ => Ok(false),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! {"ping": 1}).await.map(|_| ()).map_err(unavailable)
    }

    async fn close(&self) {
        // Without this the driver may panic when its runtime goes away under it.
        self.client.clone().shutdown().await;
    }
}

#[cfg(test)]
#[path = "mongo_tests.rs"]
mod tests;
