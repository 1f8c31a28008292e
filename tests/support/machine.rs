//! The machine as the tests of one binary share it. libtest runs a binary's tests in
//! parallel, across suites, so a suite that loads the machine (several esm replicas
//! under load, hundreds of clients at once) could make another suite's time bound fail.
//! Such a test takes the machine whole ([`heavy`]); a test whose assertions are a time
//! bound takes a share of it ([`timed`]): timed tests run alongside each other (as the
//! tests of one suite always did), never alongside a heavy one, and heavy ones one at a
//! time. Other tests take neither: their waits are deadlines far above what load adds.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::const_new(());

/// The whole machine, until the guard is dropped: no other heavy or timed test runs
/// meanwhile. Taken first thing in the test, and only once.
pub async fn heavy() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// A share of the machine, until the guard is dropped: other timed tests may run
/// meanwhile, heavy ones wait. Taken first thing in the test, and only once.
pub async fn timed() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}
