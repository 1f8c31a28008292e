//! Operations: the one path every provision, update, deprovision, bind and unbind runs
//! through (`runner.rs`), what each kind asks of the backend and records (`work.rs`),
//! who runs which (`worker.rs`: leases, take-overs, hand-backs), and giving up an
//! operation whose write failed (`withdraw.rs`). Moving an instance to another engine
//! is an operation too (`relocate.rs`), so it runs once, under a lease, and resumes.

pub(super) mod answers;
pub(super) mod relocate;
pub(super) mod runner;
mod withdraw;
pub(super) mod work;
mod worker;

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod withdraw_tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize};

/// What this process keeps of the operations it runs: private to `operations/`.
pub(super) struct OperationsRoom {
    /// This process's id as the owner of the operations it runs.
    replica: String,
    /// The operations this process is running, by id. Its sweeper never takes one of
    /// them over, even once its lease has lapsed (the process or the store stalled
    /// for longer than a lease): that would run the operation twice at once in one
    /// process. A std mutex: never held across an `.await`.
    running: std::sync::Mutex<HashSet<String>>,
    /// Operations this process handed back on its way out.
    handed_back: AtomicUsize,
    /// Whether a stop hands the operations back (false only in tests that stop a
    /// replica as if it crashed).
    hand_back_on_stop: AtomicBool,
    /// Whether records written before the indexes existed have been indexed.
    reindexed: AtomicBool,
}

impl Default for OperationsRoom {
    fn default() -> Self {
        Self {
            replica: uuid::Uuid::new_v4().simple().to_string(),
            running: std::sync::Mutex::default(),
            handed_back: AtomicUsize::new(0),
            hand_back_on_stop: AtomicBool::new(true),
            reindexed: AtomicBool::new(false),
        }
    }
}

service! {
    /// Operations' service: the runner, the work of each kind, leases, take-overs and
    /// hand-backs.
    Operations, room: OperationsRoom
}
