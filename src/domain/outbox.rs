//! A record's outbox: the events describing its changes, written in the same
//! compare-and-set as the change itself, waiting for the log's sequencer to number them
//! (`events::sequencer`).
//!
//! Each event gets a per-record sequence number when it is put in; numbers are never
//! reused (the counter survives an empty outbox), so `(record, seq)` names an event for
//! good: what makes the sequencer's work idempotent after a crash or a lost answer.

use serde::{Deserialize, Serialize};

use super::event::Event;

/// The most events a record's outbox holds. Only a sequencer that has been away for
/// long lets it fill (a record gets a few events per operation, and an operation runs
/// at a time); beyond it the oldest is dropped with a warning, so a record stays small.
pub const MAX_OUTBOX: usize = 64;

/// An event waiting in a record's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its number within the record (the first is 0).
    pub seq: u64,
    /// The event (its `id` is 0 until numbered).
    pub event: Event,
}

/// The outbox of one record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    /// The `seq` the next event gets.
    #[serde(default)]
    pub next_seq: u64,
    /// The events not numbered yet, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
}

impl Outbox {
    /// Whether it never held an event (then it is not stored at all).
    pub fn is_unused(&self) -> bool {
        self.next_seq == 0 && self.pending.is_empty()
    }

    /// Whether events wait in it.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Puts `event` in, after the others.
    pub fn push(&mut self, event: Event) {
        if self.pending.len() >= MAX_OUTBOX {
            let dropped = self.pending.remove(0);
            tracing::warn!(event = %dropped.event.kind, "a record's outbox is full (is the event sequencer stopped?); its oldest event is dropped");
        }
        self.pending.push(Pending { seq: self.next_seq, event });
        self.next_seq += 1;
    }

    /// The events numbered `from..from + count` that are still in it.
    pub fn range(&self, from: u64, count: u64) -> impl Iterator<Item = &Pending> {
        self.pending.iter().filter(move |p| p.seq >= from && p.seq < from.saturating_add(count))
    }

    /// Removes the events numbered below `upto` (they are in the log); whether any was.
    pub fn drain_below(&mut self, upto: u64) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| p.seq >= upto);
        self.pending.len() != before
    }

    /// Whether `current` is this outbox with some of its events drained (numbered and
    /// removed by the sequencer) and nothing else changed.
    pub fn drained_into(&self, current: &Outbox) -> bool {
        self.next_seq == current.next_seq && self.pending.ends_with(&current.pending)
    }

    /// This outbox (the one a change was made on, written over `base`) moved onto
    /// `current`, a drained copy of `base`: what `current` holds plus what was put in
    /// since `base`.
    pub fn rebased(&self, base: &Outbox, current: &Outbox) -> Outbox {
        let mut merged = current.clone();
        merged.pending.extend(self.pending.iter().filter(|p| p.seq >= base.next_seq).cloned());
        merged.next_seq = self.next_seq;
        merged
    }
}

/// A record whose changes are announced through its outbox.
pub trait Announcing {
    /// Its outbox.
    fn outbox(&self) -> &Outbox;
    /// Its outbox, mutably.
    fn outbox_mut(&mut self) -> &mut Outbox;
}

impl Announcing for super::instance::ServiceInstance {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

impl Announcing for super::binding::Binding {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::EventKind;

    fn event(n: u64) -> Event {
        Event::new(EventKind::LivenessChanged).because(n.to_string())
    }

    #[test]
    fn numbers_are_never_reused_and_the_outbox_is_bounded() {
        let mut outbox = Outbox::default();
        assert!(outbox.is_unused());
        outbox.push(event(0));
        outbox.push(event(1));
        assert!(outbox.drain_below(2));
        assert!(!outbox.has_pending() && !outbox.is_unused());
        outbox.push(event(2));
        assert_eq!(outbox.pending[0].seq, 2, "a drained outbox keeps counting");
        for n in 0..(MAX_OUTBOX as u64 + 5) {
            outbox.push(event(n));
        }
        assert_eq!(outbox.pending.len(), MAX_OUTBOX);
        assert_eq!(outbox.range(0, 8).count(), 0, "the oldest were dropped");
    }

    #[test]
    fn a_change_made_on_a_copy_moves_onto_the_drained_outbox() {
        let mut base = Outbox::default();
        base.push(event(0));
        base.push(event(1));
        let mut drained = base.clone();
        drained.drain_below(1);
        assert!(base.drained_into(&drained));
        let mut changed = base.clone();
        changed.push(event(2));
        let merged = changed.rebased(&base, &drained);
        assert_eq!(merged.pending.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(merged.next_seq, 3);
        let mut grown = base.clone();
        grown.push(event(9));
        assert!(!base.drained_into(&grown), "an event put in is a real change");
    }
}
