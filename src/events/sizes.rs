//! The size of every event the log holds, for its retention in bytes: learnt from the
//! tail as it delivers events (this replica's and the others'), and read once from the
//! store for what the log held when this process started.
//!
//! A std mutex: held for a map operation, never across an `.await`. The map costs a few
//! dozen bytes per event kept, bounded by [`Limits::retention`](super::Limits::retention).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::EventLog;
use crate::domain::event::Event;
use crate::store::{Collection, Query, StoreError};

/// How many events the seeding reads at a time.
const SEED_READ: usize = 256;

#[derive(Default)]
pub(super) struct Sizes {
    known: Mutex<Known>,
    /// Whether what the log held at start has been read.
    seeded: AtomicBool,
}

#[derive(Default)]
struct Known {
    by_id: BTreeMap<u64, usize>,
    total: usize,
}

impl Known {
    fn record(&mut self, id: u64, size: usize) {
        // Recorded twice (seeding met the tail): counted once.
        let before = self.by_id.insert(id, size).unwrap_or(0);
        self.total = self.total - before + size;
    }
}

impl Sizes {
    /// Records the size of event `id`.
    pub(super) fn record(&self, id: u64, size: usize) {
        if let Ok(mut known) = self.known.lock() {
            known.record(id, size);
        }
    }

    /// Once: reads the sizes of the events up to `upto` (where the tail started) from
    /// the store, a page at a time.
    pub(super) async fn seed(&self, log: &EventLog, upto: u64) -> Result<(), StoreError> {
        if self.seeded.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut cursor = 0;
        loop {
            let query = Query::new([], SEED_READ).after(Some(Event::key(cursor)));
            let page = log.records.page_values::<Event>(Collection::Events, &query).await?;
            let exhausted = page.len() < SEED_READ;
            for event in page {
                if event.id > upto {
                    self.seeded.store(true, Ordering::Release);
                    return Ok(());
                }
                cursor = event.id;
                self.record(event.id, event.size());
            }
            if exhausted {
                self.seeded.store(true, Ordering::Release);
                return Ok(());
            }
        }
    }

    /// The first id to keep so that the newest events, from it on, weigh at most
    /// `budget` bytes (the newest is kept whatever it weighs); 0 when all fit.
    pub(super) fn keep_from(&self, budget: usize) -> u64 {
        let Ok(known) = self.known.lock() else { return 0 };
        if known.total <= budget {
            return 0;
        }
        let mut kept = 0;
        for (&id, &size) in known.by_id.iter().rev() {
            if kept > 0 && kept + size > budget {
                return id + 1;
            }
            kept += size;
        }
        0
    }

    /// Forgets the events before `id` (trimmed).
    pub(super) fn forget_before(&self, id: u64) {
        if let Ok(mut known) = self.known.lock() {
            let kept = known.by_id.split_off(&id);
            let forgotten: usize = known.by_id.values().sum();
            known.total -= forgotten;
            known.by_id = kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_events_that_fit_the_budget_are_kept() {
        let sizes = Sizes::default();
        for id in 1..=10 {
            sizes.record(id, 100);
        }
        assert_eq!(sizes.keep_from(1000), 0, "all fit");
        assert_eq!(sizes.keep_from(350), 8, "8, 9 and 10 fit in 350 bytes");
        assert_eq!(sizes.keep_from(10), 10, "the newest is kept whatever it weighs");
        sizes.forget_before(8);
        assert_eq!(sizes.keep_from(300), 0, "what was trimmed no longer counts");
        sizes.record(9, 100);
        assert_eq!(sizes.keep_from(299), 9, "an event recorded twice counts once");
    }
}
