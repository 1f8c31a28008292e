//! Writes of records that carry an outbox (`domain::outbox`) from a copy read earlier.
//!
//! The event sequencer drains outboxes by compare-and-set, so right after a record
//! changed, the sequencer's write may move its version on. A write made from an earlier
//! read (a request starting an operation, taking a refused one back) must not lose to
//! that: when the stored record differs from the one read only by a drained outbox, the
//! write is made again over it, keeping what it put in the outbox and never bringing
//! back what was drained (that would number an event twice).

use std::borrow::Cow;

use super::{CAS_ATTEMPTS, Record, Records, StoreError, Versioned};
use crate::domain::outbox::Announcing;

impl Records {
    /// Compare-and-set of `record`, a change of `base` (the record stored at
    /// `version`); see the module docs. Any change other than a drain is a `Conflict`.
    /// Returns the record as written (its outbox rebased over a drain) and its version.
    pub async fn replace_announced<T>(&self, version: u64, base: &T, record: &T) -> Result<Versioned<T>, StoreError>
    where
        T: Record + Announcing + Clone + PartialEq,
    {
        let (mut version, mut base, mut record) = (version, Cow::Borrowed(base), Cow::Borrowed(record));
        for _ in 0..CAS_ATTEMPTS {
            let why = match self.replace(version, record.as_ref()).await {
                Ok(version) => return Ok(Versioned { version, record: record.into_owned() }),
                Err(StoreError::Conflict(why)) => why,
                Err(e) => return Err(e),
            };
            let Some(current) = self.get::<T>(record.id()).await? else {
                return Err(StoreError::NotFound(why));
            };
            if !only_drained(base.as_ref(), &current.record) {
                return Err(StoreError::Conflict(why));
            }
            let mut next = record.into_owned();
            *next.outbox_mut() = next.outbox().rebased(base.outbox(), current.record.outbox());
            (version, base, record) = (current.version, Cow::Owned(current.record), Cow::Owned(next));
        }
        Err(StoreError::Conflict(format!("{} kept being drained", record.id())))
    }

    /// Writes `record`, a new one: over `tombstone` (the deleted record with its id, read
    /// earlier) as [`replace_announced`](Self::replace_announced) does, or inserted where
    /// there is none. A record another request wrote first is a `Conflict` (or
    /// `NotFound`, for a tombstone purged meanwhile).
    pub async fn create_announced<T>(
        &self,
        tombstone: Option<&Versioned<T>>,
        record: &T,
    ) -> Result<Versioned<T>, StoreError>
    where
        T: Record + Announcing + Clone + PartialEq,
    {
        match tombstone {
            Some(tombstone) => self.replace_announced(tombstone.version, &tombstone.record, record).await,
            None => self.insert(record).await.map(|version| Versioned { version, record: record.clone() }),
        }
    }

    /// Deletes `base`, the record stored at `version`, also when only a drain of its
    /// outbox moved it on; whether it was deleted.
    pub async fn delete_announced<T>(&self, version: u64, base: &T) -> Result<bool, StoreError>
    where
        T: Record + Announcing + Clone + PartialEq,
    {
        let mut version = version;
        for _ in 0..CAS_ATTEMPTS {
            let why = match self.delete::<T>(base.id(), Some(version)).await {
                Err(StoreError::Conflict(why)) => why,
                other => return other,
            };
            let Some(current) = self.get::<T>(base.id()).await? else {
                return Ok(false);
            };
            if !only_drained(base, &current.record) {
                return Err(StoreError::Conflict(why));
            }
            version = current.version;
        }
        Err(StoreError::Conflict(format!("{} kept being drained", base.id())))
    }
}

/// Whether `current` is `base` with some of its outbox drained, and nothing else changed.
fn only_drained<T: Announcing + Clone + PartialEq>(base: &T, current: &T) -> bool {
    if !base.outbox().drained_into(current.outbox()) {
        return false;
    }
    let mut probe = current.clone();
    *probe.outbox_mut() = base.outbox().clone();
    probe == *base
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::binding::Binding;
    use crate::domain::event::{Event, EventKind, Step};
    use crate::domain::operation::OperationKind;
    use crate::store::Versioned;
    use crate::store::memory::MemoryStore;

    fn binding(id: &str) -> Binding {
        serde_json::from_value(serde_json::json!({
            "id": id, "instance_id": "i", "service_id": "s", "plan_id": "p",
            "status": "bound", "created_at": "2026-01-01T00:00:00.000Z"
        }))
        .expect("a binding")
    }

    #[tokio::test]
    async fn a_write_from_an_earlier_read_survives_a_drain_and_keeps_its_events() {
        let records = Records::new(Arc::new(MemoryStore::unnumbered()));
        let mut base = binding("b-1");
        base.outbox.push(Event::new(EventKind::Operation(OperationKind::Bind, Step::Started)));
        base.outbox.push(Event::new(EventKind::Operation(OperationKind::Bind, Step::Succeeded)));
        let version = records.insert(&base).await.expect("inserted");
        // The sequencer numbers the first event and drains it.
        let mut drained = base.clone();
        drained.outbox.drain_below(1);
        records.replace(version, &drained).await.expect("drained");
        let mut changed = base.clone();
        changed.outbox.push(Event::new(EventKind::Operation(OperationKind::Unbind, Step::Started)));
        let written = records.replace_announced(version, &base, &changed).await.expect("written over the drain");
        let Some(Versioned { record, version }) = records.get::<Binding>("b-1").await.expect("read") else {
            panic!("gone")
        };
        assert_eq!((written.version, &written.record), (version, &record), "it answers what it wrote");
        let seqs: Vec<u64> = record.outbox.pending.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![1, 2], "the drained event is not brought back; the new one is kept");
        // A real change is still a conflict.
        let mut other = record.clone();
        other.app_guid = Some("someone else".into());
        records.replace(version, &other).await.expect("changed");
        assert!(matches!(records.replace_announced(version, &record, &record).await, Err(StoreError::Conflict(_))));
    }
}
