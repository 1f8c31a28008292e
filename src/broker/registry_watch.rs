//! Whether the registry has changed since a catalog was rendered from it, without
//! reading the store: a generation number that every registry write of this process
//! bumps, and, on a store other replicas share, a watcher that re-reads the stored
//! version twice a second and bumps the generation when it moved.
//!
//! A watcher rather than revalidating each cached entry once it is 500 ms old: the
//! request path then costs an atomic load and a clock read, never a store round trip
//! (nor a burst of them when many requests find the same entry old at once), and the
//! store sees two reads a second per replica whatever the traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::Broker;
use crate::store::{Collection, REGISTRY_ID};

/// How often the watcher reads the stored registry version.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// How stale a cached catalog may be on a shared store: a change another replica made
/// is seen within this. A check vouches for this long from when it started, so a slow
/// or failing store makes the cache stand aside instead of serving an old catalog.
pub const STALE_BOUND: Duration = Duration::from_secs(1);

/// The registry's generation and, on a shared store, how long it can be trusted.
pub(super) struct RegistryWatch {
    /// Bumped after every registry write of this process and every change the watcher
    /// sees; a catalog rendered at another generation is out of date.
    generation: AtomicU64,
    /// Whether other processes can write the store (then the watcher must vouch).
    shared: bool,
    /// The origin of `trusted_until`.
    origin: Instant,
    /// Milliseconds after `origin` until which the generation is known to cover every
    /// change made by another replica: the start of the last good check plus
    /// [`STALE_BOUND`]. Zero until the first check.
    trusted_until: AtomicU64,
}

impl RegistryWatch {
    pub(super) fn new(shared: bool) -> Self {
        Self { generation: AtomicU64::new(1), shared, origin: Instant::now(), trusted_until: AtomicU64::new(0) }
    }

    /// The current generation, if it can be trusted now.
    fn current(&self) -> Option<u64> {
        if self.shared && self.millis(Instant::now()) >= self.trusted_until.load(Ordering::Acquire) {
            return None;
        }
        Some(self.generation.load(Ordering::Acquire))
    }

    /// The registry changed (or may have: a write that failed may still have landed).
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
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

impl Broker {
    /// The registry generation a cached catalog must have been rendered at to be served:
    /// the registry has not changed since, in this process nor (on a shared store,
    /// within [`STALE_BOUND`]) in another. `None` when that cannot be vouched for (the
    /// watcher's reads fail or lag): then the catalog is read from the store. Read it
    /// before reading the registry, so that what is read is at least that new.
    pub fn catalog_generation(&self) -> Option<u64> {
        self.registry_watch.current()
    }

    /// Called after every write of the registry record, whatever its outcome.
    pub(super) fn registry_written(&self) {
        self.registry_watch.bump();
    }

    /// On a store other replicas share, reads the stored registry version every
    /// [`CHECK_EVERY`] until shutdown and bumps the generation when it moved. Each read
    /// fetches the whole registry record (the store has no version-only read), decoded
    /// to JSON but not into a `Registry`. Nothing to do on a store only this process uses.
    pub fn spawn_registry_watch(self: &Arc<Self>) {
        if !self.registry_watch.shared {
            return;
        }
        let this = Arc::clone(self);
        self.spawn_task(async move {
            let mut ticks = tokio::time::interval(CHECK_EVERY);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut seen = None;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = this.shutdown.cancelled() => return,
                }
                let started = Instant::now();
                match this.store().get(Collection::Registry, REGISTRY_ID).await {
                    Ok(doc) => {
                        let version = doc.map_or(0, |d| d.version);
                        if seen.is_some_and(|v| v != version) {
                            this.registry_watch.bump();
                        }
                        this.registry_watch.vouch(started);
                        if seen.replace(version).is_none() {
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
