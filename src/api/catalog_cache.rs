//! `GET /v2/catalog` from memory: the catalog's bytes and `ETag`, rendered once per OSB
//! version and kept until the registry changes. The broker says when it has (see
//! `broker/registry_watch.rs`): at once for a change made by this esm, within a second
//! for one made by another replica on a shared store.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

use super::version::{ApiVersion, ForVersion, NEWEST_MINOR, OLDEST_MINOR};
use crate::broker::Broker;
use crate::error::{OsbError, OsbResult};
use crate::wire::CatalogResponse;

/// How many renderings there can be: one per version from the oldest to the newest.
const VARIANTS: usize = (NEWEST_MINOR - OLDEST_MINOR + 1) as usize;

/// The catalog as one OSB version sees it, ready to send.
#[derive(Debug)]
pub struct Rendered {
    /// The JSON body; cloning it shares the bytes.
    pub body: Bytes,
    /// A strong `ETag` of the body: equal bytes, equal tag, whichever replica made it.
    pub etag: HeaderValue,
    /// The registry generation it was rendered at.
    generation: u64,
}

/// The renderings of the catalog, one slot per OSB version.
#[derive(Debug, Default)]
pub struct CatalogCache {
    /// Indexed by [`slot`]: every version a client may send maps to one of these (later
    /// versions than esm knows see what the newest sees), so a client cannot make the
    /// cache grow. A std lock: it is held only to clone an `Arc` out or put one in.
    variants: RwLock<[Option<Arc<Rendered>>; VARIANTS]>,
}

impl CatalogCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The catalog for `version`: from memory while the registry is unchanged, otherwise
    /// read from the store, rendered and kept.
    pub async fn get(&self, broker: &Broker, version: ApiVersion) -> OsbResult<Arc<Rendered>> {
        let slot = slot(version);
        // Read before the registry is: what is read then is at least this new.
        let generation = broker.catalog_generation();
        if let Some(generation) = generation
            && let Some(hit) = self.cached(slot, generation)
        {
            return Ok(hit);
        }
        let catalog = broker.catalog().await?.for_version(version);
        let rendered = Arc::new(render(&catalog, generation.unwrap_or_default())?);
        if generation.is_some()
            && let Ok(mut variants) = self.variants.write()
        {
            variants[slot] = Some(rendered.clone());
        }
        Ok(rendered)
    }

    fn cached(&self, slot: usize, generation: u64) -> Option<Arc<Rendered>> {
        let variants = self.variants.read().ok()?;
        variants[slot].as_ref().filter(|r| r.generation == generation).cloned()
    }
}

/// The cache slot of a version: versions before the oldest (refused before they get
/// here) and after the newest see what the oldest and the newest see.
fn slot(version: ApiVersion) -> usize {
    (version.0.clamp(OLDEST_MINOR, NEWEST_MINOR) - OLDEST_MINOR) as usize
}

/// The catalog's bytes and their `ETag` (the first 16 bytes of their SHA-256, in hex).
fn render(catalog: &CatalogResponse, generation: u64) -> OsbResult<Rendered> {
    let body =
        serde_json::to_vec(catalog).map_err(|e| OsbError::Internal(format!("cannot encode the catalog: {e}")))?;
    let digest = Sha256::digest(&body);
    let mut etag = String::with_capacity(34);
    etag.push('"');
    for byte in &digest[..16] {
        let _ = write!(etag, "{byte:02x}");
    }
    etag.push('"');
    let etag = HeaderValue::from_str(&etag).map_err(|e| OsbError::Internal(format!("cannot make the ETag: {e}")))?;
    Ok(Rendered { body: Bytes::from(body), etag, generation })
}

#[cfg(test)]
#[path = "catalog_cache_tests.rs"]
mod tests;
