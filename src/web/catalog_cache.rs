//! The catalog ([`route::CATALOG`](super::route::CATALOG)) from memory: the catalog's
//! bytes and `ETag`, rendered once per OSB version from the broker's shared decoded
//! registry and kept for as long as the broker hands out that same copy. The broker alone says when the registry has
//! changed (see `broker/registry/watch.rs`): at once for a change made by this esm,
//! within a second for one made by another replica on a shared store. A rendering is
//! tied to the copy it came from, so it cannot disagree with what provisions read.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock, Weak};

use axum::body::Bytes;
use axum::http::HeaderValue;
use sha2::{Digest, Sha256};

use super::version::{ApiVersion, ForVersion, NEWEST_MINOR, OLDEST_MINOR};
use crate::broker::Broker;
use crate::domain::registry::Registry;
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
    /// The registry copy it was rendered from (weak: an old copy is not kept alive by
    /// its rendering; its address is not reused while this points at it).
    source: Weak<Registry>,
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

    /// The catalog for `version`: from memory while the broker's registry copy is the
    /// one it was rendered from, otherwise rendered from the current copy and kept.
    pub async fn get(&self, broker: &Arc<Broker>, version: ApiVersion) -> OsbResult<Arc<Rendered>> {
        let slot = slot(version);
        let registry = broker.registrar().registry().await?.record;
        if let Some(hit) = self.cached(slot, &registry) {
            return Ok(hit);
        }
        let catalog = CatalogResponse { services: registry.services.clone() }.for_version(version);
        let rendered = Arc::new(render(&catalog, Arc::downgrade(&registry))?);
        if let Ok(mut variants) = self.variants.write() {
            variants[slot] = Some(rendered.clone());
        }
        Ok(rendered)
    }

    fn cached(&self, slot: usize, registry: &Arc<Registry>) -> Option<Arc<Rendered>> {
        let variants = self.variants.read().ok()?;
        variants[slot].as_ref().filter(|r| Weak::ptr_eq(&r.source, &Arc::downgrade(registry))).cloned()
    }
}

/// The cache slot of a version: versions before the oldest (refused before they get
/// here) and after the newest see what the oldest and the newest see.
fn slot(version: ApiVersion) -> usize {
    (version.0.clamp(OLDEST_MINOR, NEWEST_MINOR) - OLDEST_MINOR) as usize
}

/// The catalog's bytes and their `ETag` (the first 16 bytes of their SHA-256, in hex).
fn render(catalog: &CatalogResponse, source: Weak<Registry>) -> OsbResult<Rendered> {
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
    Ok(Rendered { body: Bytes::from(body), etag, source })
}

#[cfg(test)]
#[path = "catalog_cache_tests.rs"]
mod tests;
