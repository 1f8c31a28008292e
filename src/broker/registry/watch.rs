//! The decoded registry, shared by every reader, and whether it is still current
//! without reading the store: a generation number that every registry write of this
//! process bumps, and, on a store other replicas share, a watcher that reads the stored
//! version twice a second and bumps the generation when it is not the copy's.
//!
//! The registry is decoded when it changes, not when it is read: provisions, binds,
//! liveness rounds, the pool keeper and the catalog (`web/catalog_cache.rs`, which
//! renders from the copy) share one `Arc<Registry>` tagged with the generation it is
//! good for. A write of this process puts what it wrote in place at once; a change by
//! another replica is re-read (and re-decoded) by the first reader after the watcher
//! saw the version move.
//!
//! A watcher rather than revalidating the copy once it is 500 ms old: the request path
//! then costs an atomic load and a clock read, never a store round trip (nor a burst of
//! them when many requests find the copy old at once), and the store sees two version
//! reads a second per replica whatever the traffic.

use crate::broker::Registrar;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::domain::registry::Registry;
use crate::store::{Collection, REGISTRY_ID, Versioned};

/// How often the watcher reads the stored registry version.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// How stale the registry copy may be on a shared store: a change another replica made
/// is seen within this. A check vouches for this long from when it started, so a slow
/// or failing store makes the copy stand aside instead of serving an old registry.
pub const STALE_BOUND: Duration = Duration::from_secs(1);

/// The decoded registry with the store version it was read at.
pub type Shared = Versioned<Arc<Registry>>;

/// The registry's generation, its decoded copy and, on a shared store, how long the
/// generation can be trusted.
pub(super) struct RegistryWatch {
    /// Bumped after every registry write of this process and every change the watcher
    /// sees; a copy tagged with another generation is out of date.
    generation: AtomicU64,
    /// Whether other processes can write the store (then the watcher must vouch).
    shared: bool,
    /// The origin of `trusted_until`.
    origin: Instant,
    /// Milliseconds after `origin` until which the generation is known to cover every
    /// change made by another replica: the start of the last good check plus
    /// [`STALE_BOUND`]. Zero until the first check.
    trusted_until: AtomicU64,
    /// The last registry decoded or written. A std lock: held to clone an `Arc` out or
    /// put one in, never across an `.await`.
    copy: RwLock<Option<Copy>>,
    /// Lets one reader at a time re-read the registry after a change, so a burst of
    /// requests arriving just after it decodes it once, not once each.
    pub(in crate::broker) refresh: tokio::sync::Mutex<()>,
}

/// A decoded registry and the generation it is current at (none: read while the
/// generation could not be trusted; kept only to spare a decode of the same version).
#[derive(Clone)]
struct Copy {
    generation: Option<u64>,
    registry: Shared,
}

impl RegistryWatch {
    pub(in crate::broker) fn new(shared: bool) -> Self {
        Self {
            generation: AtomicU64::new(1),
            shared,
            origin: Instant::now(),
            trusted_until: AtomicU64::new(0),
            copy: RwLock::default(),
            refresh: tokio::sync::Mutex::default(),
        }
    }

    /// Whether other processes can write the store.
    pub(in crate::broker) fn shared(&self) -> bool {
        self.shared
    }

    /// The current generation, if it can be trusted now.
    pub(in crate::broker) fn current(&self) -> Option<u64> {
        if self.shared && self.millis(Instant::now()) >= self.trusted_until.load(Ordering::Acquire) {
            return None;
        }
        Some(self.generation.load(Ordering::Acquire))
    }

    /// The current generation whether or not it can be trusted.
    pub(in crate::broker) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The registry changed (or may have: a write that failed may still have landed);
    /// the new generation.
    pub(in crate::broker) fn bump(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The copy, if it is current at `generation`.
    pub(in crate::broker) fn copy_at(&self, generation: u64) -> Option<Shared> {
        let copy = self.copy.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        copy.as_ref().filter(|c| c.generation == Some(generation)).map(|c| c.registry.clone())
    }

    /// The copy whatever its generation: the record at its version, decoded.
    pub(in crate::broker) fn kept(&self) -> Option<Shared> {
        let copy = self.copy.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        copy.as_ref().map(|c| c.registry.clone())
    }

    /// Keeps `registry` as the copy for `generation` (read before the store was), unless
    /// the copy is for a later generation or, for the same one, a later version: of two
    /// readers that raced, the later read stands.
    pub(in crate::broker) fn keep(&self, generation: Option<u64>, registry: &Shared) {
        let mut copy = self.copy.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = copy.as_ref().is_none_or(|c| (generation, registry.version) >= (c.generation, c.registry.version));
        if newer {
            *copy = Some(Copy { generation, registry: registry.clone() });
        }
    }

    /// A check that started at `started` saw every change made before then.
    fn vouch(&self, started: Instant) {
        let until = self.millis(started + STALE_BOUND);
        self.trusted_until.fetch_max(until, Ordering::AcqRel);
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }
}

impl Registrar<'_> {
    /// Called after every write of the registry record, whatever its outcome; the new
    /// generation.
    pub(in crate::broker) fn registry_written(&self) -> u64 {
        self.room.watch.bump()
    }

    /// On a store other replicas share, reads the stored registry version (the version
    /// alone: a projection on MongoDB) every [`CHECK_EVERY`] until shutdown, and bumps
    /// the generation when it is not the copy's, so the next reader decodes it anew.
    /// Nothing to do on a store only this process uses.
    pub fn spawn_registry_watch(&self) {
        if !self.room.watch.shared {
            return;
        }
        let this = Arc::clone(self.broker);
        self.broker.spawn_task(async move {
            let mut ticks = tokio::time::interval(CHECK_EVERY);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut first = true;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = this.stopping().cancelled() => return,
                }
                let started = Instant::now();
                match this.store().version(Collection::Registry, REGISTRY_ID).await {
                    Ok(version) => {
                        let watch = &this.registrar().room.watch;
                        if watch.kept().is_some_and(|copy| copy.version != version.unwrap_or(0)) {
                            watch.bump();
                        }
                        watch.vouch(started);
                        if std::mem::take(&mut first) {
                            tracing::info!("the catalog is served from memory, re-read within a second of a change by another replica");
                        }
                    }
                    // Requests read the store themselves meanwhile, and answer 503 if it is down.
                    Err(e) => tracing::debug!(error = %e, "cannot read the registry version"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_shared_stores_generation_is_trusted_only_as_long_as_a_check_vouches() {
        let watch = RegistryWatch::new(true);
        assert_eq!(watch.current(), None, "nothing checked yet");
        watch.vouch(Instant::now());
        let generation = watch.current().expect("just checked");
        tokio::time::advance(STALE_BOUND - Duration::from_millis(1)).await;
        assert_eq!(watch.current(), Some(generation));
        watch.bump();
        assert_eq!(watch.current(), Some(generation + 1));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(watch.current(), None, "the check is too old to vouch");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_only_this_process_writes_needs_no_check() {
        let watch = RegistryWatch::new(false);
        let generation = watch.current().expect("always trusted");
        tokio::time::advance(STALE_BOUND * 10).await;
        assert_eq!(watch.current(), Some(generation));
        watch.bump();
        assert_eq!(watch.current(), Some(generation + 1));
    }
}
