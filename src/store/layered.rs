//! A store decorator written once: [`Layered`] puts a [`StoreLayer`] around every call
//! to an inner store, so a decorator (the breaker, the metered store) says only what
//! it does around a call, and a method added to [`Store`] is forwarded here once for
//! all of them (the impl denies `clippy::missing_trait_methods`, so a provided method
//! left to its default, skipping the inner store's own, fails the lint).

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Collection, Cutoff, Document, Query, Store, StoreError};

/// Which [`Store`] method a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// [`Store::insert`].
    Insert,
    /// [`Store::upsert`].
    Upsert,
    /// [`Store::replace`].
    Replace,
    /// [`Store::get`].
    Get,
    /// [`Store::version`].
    Version,
    /// [`Store::list`].
    List,
    /// [`Store::page`].
    Page,
    /// [`Store::page_ids`].
    PageIds,
    /// [`Store::expired`].
    Expired,
    /// [`Store::counts`].
    Counts,
    /// [`Store::last_id`].
    LastId,
    /// [`Store::delete`].
    Delete,
    /// [`Store::ping`].
    Ping,
    /// [`Store::health`].
    Health,
}

impl Call {
    /// The method's name (a metric label).
    pub fn name(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Upsert => "upsert",
            Self::Replace => "replace",
            Self::Get => "get",
            Self::Version => "version",
            Self::List => "list",
            Self::Page => "page",
            Self::PageIds => "page_ids",
            Self::Expired => "expired",
            Self::Counts => "counts",
            Self::LastId => "last_id",
            Self::Delete => "delete",
            Self::Ping => "ping",
            Self::Health => "health",
        }
    }
}

/// The call a layer wraps: a future of the inner store's answer.
pub trait Work<T>: Future<Output = Result<T, StoreError>> + Send {}

impl<T, F: Future<Output = Result<T, StoreError>> + Send> Work<T> for F {}

/// What a decorator does around each call to the store it wraps.
pub trait StoreLayer: Send + Sync + 'static {
    /// Runs `work`, the call `call` to the inner store (of kind `store`), and answers
    /// what the caller gets.
    fn around<T: Send>(
        &self,
        store: &'static str,
        call: Call,
        work: impl Work<T>,
    ) -> impl Future<Output = Result<T, StoreError>> + Send;

    /// Stops what the layer runs on its own, before the inner store closes.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A store whose calls go through `layer`.
pub struct Layered<L> {
    inner: Arc<dyn Store>,
    layer: L,
}

impl<L: StoreLayer> Layered<L> {
    /// `inner`, with `layer` around its calls.
    pub fn over(inner: Arc<dyn Store>, layer: L) -> Self {
        Self { inner, layer }
    }

    /// The layer.
    pub fn layer(&self) -> &L {
        &self.layer
    }

    async fn through<T: Send>(&self, call: Call, work: impl Work<T>) -> Result<T, StoreError> {
        self.layer.around(self.inner.kind(), call, work).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<L: StoreLayer> Store for Layered<L> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn insert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.through(Call::Insert, self.inner.insert(collection, id, body)).await
    }

    async fn upsert(&self, collection: Collection, id: &str, body: Value) -> Result<u64, StoreError> {
        self.through(Call::Upsert, self.inner.upsert(collection, id, body)).await
    }

    async fn replace(&self, collection: Collection, id: &str, expected: u64, body: Value) -> Result<u64, StoreError> {
        self.through(Call::Replace, self.inner.replace(collection, id, expected, body)).await
    }

    async fn get(&self, collection: Collection, id: &str) -> Result<Option<Document>, StoreError> {
        self.through(Call::Get, self.inner.get(collection, id)).await
    }

    async fn version(&self, collection: Collection, id: &str) -> Result<Option<u64>, StoreError> {
        self.through(Call::Version, self.inner.version(collection, id)).await
    }

    async fn list(&self, collection: Collection) -> Result<Vec<(String, Document)>, StoreError> {
        self.through(Call::List, self.inner.list(collection)).await
    }

    async fn page(&self, collection: Collection, query: &Query) -> Result<Vec<(String, Document)>, StoreError> {
        self.through(Call::Page, self.inner.page(collection, query)).await
    }

    async fn page_ids(&self, collection: Collection, query: &Query) -> Result<Vec<String>, StoreError> {
        self.through(Call::PageIds, self.inner.page_ids(collection, query)).await
    }

    async fn expired(&self, collection: Collection, cutoff: Cutoff<'_>) -> Result<Vec<(String, u64)>, StoreError> {
        self.through(Call::Expired, self.inner.expired(collection, cutoff)).await
    }

    async fn last_id(&self, collection: Collection) -> Result<Option<String>, StoreError> {
        self.through(Call::LastId, self.inner.last_id(collection)).await
    }

    async fn counts(&self, collection: Collection, field: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.through(Call::Counts, self.inner.counts(collection, field)).await
    }

    async fn delete(&self, collection: Collection, id: &str, expected: Option<u64>) -> Result<bool, StoreError> {
        self.through(Call::Delete, self.inner.delete(collection, id, expected)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.through(Call::Ping, self.inner.ping()).await
    }

    async fn health(&self) -> Result<String, StoreError> {
        self.through(Call::Health, self.inner.health()).await
    }

    async fn close(&self) {
        self.layer.close().await;
        self.inner.close().await;
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    #[cfg(any(test, feature = "test-support"))]
    fn visits(&self) -> Option<u64> {
        self.inner.visits()
    }
}
