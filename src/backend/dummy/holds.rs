//! Operations a test holds until it releases them.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::domain::operation::OperationKind;

/// Operations a script holds (`hold: [provision]`): each waits until a test releases
/// it, so a test sees an operation in progress for exactly as long as it needs, instead
/// of racing a delay.
#[derive(Debug, Default)]
pub struct Holds {
    /// Releases not yet used, by operation and id.
    released: Mutex<BTreeMap<(OperationKind, String), usize>>,
    changed: tokio::sync::Notify,
}

impl Holds {
    /// Lets one held `kind` operation on `id` (the instance id; the binding id for bind
    /// and unbind) go on: one waiting now, or the next to arrive.
    pub fn release(&self, kind: OperationKind, id: &str) {
        *self.lock().entry((kind, id.to_owned())).or_default() += 1;
        self.changed.notify_waiters();
    }

    /// Waits for a release of `kind` on `id`, and uses it.
    pub(super) async fn wait(&self, kind: OperationKind, id: &str) {
        loop {
            // Registered before looking, so a release in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.take(kind, id) {
                return;
            }
            notified.await;
        }
    }

    fn take(&self, kind: OperationKind, id: &str) -> bool {
        let mut released = self.lock();
        let key = (kind, id.to_owned());
        match released.get_mut(&key) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                released.remove(&key);
            }
            None => return false,
        }
        true
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(OperationKind, String), usize>> {
        // The map is consistent after every statement, so a panic elsewhere leaves it usable.
        self.released.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
