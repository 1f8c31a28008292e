//! Numbering events in the very write that makes them, on a store only this process
//! writes (memory, embedded: [`super::Store::exclusive`]).
//!
//! Across replicas, events wait in outboxes for the sequencer (`events::sequencer`),
//! which numbers them in a batch and then rewrites every record it drained: two more
//! writes for each change. A store with one writer needs none of that: the write that
//! changes an instance or a binding also appends the events its outbox gained to the
//! log, under the next ids, in the same transaction (the same critical section). The
//! log's order is then the order of commits, an event is in the log exactly when its
//! change is, and the record is stored with nothing pending. A standalone event
//! written to the event outbox is appended the same way instead of being kept there.
//!
//! Which events are new is decided inside the write, from the stored document: those
//! numbered at or past the outbox's `next_seq` as stored. So a writer whose copy still
//! holds events an earlier write of its own already numbered cannot number them twice.
//! Events an esm that numbered through the sequencer left pending stay pending, for
//! the sequencer's one round at start-up.

use serde::Deserialize;
use serde_json::Value;

use super::{Collection, Records, StoreError, index};
use crate::domain::event::Event;

/// A stored record's `outbox`, as far as numbering reads it: its count, and which of
/// the events below it still wait (left by an esm that used the sequencer; on a store
/// that numbers as it writes, none), parsed from stored bytes without the events.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Counted {
    #[serde(default)]
    next_seq: u64,
    #[serde(default)]
    pending: Vec<Seq>,
}

#[derive(Debug, Deserialize)]
struct Seq {
    seq: u64,
}

impl Counted {
    /// The outbox of `body`, a stored document.
    pub(super) fn of(body: &Value) -> Self {
        let Some(outbox) = body.get("outbox") else { return Self::default() };
        let pending = outbox.get("pending").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        Self {
            next_seq: outbox.get("next_seq").and_then(Value::as_u64).unwrap_or(0),
            pending: pending.iter().filter_map(|p| p.get("seq")?.as_u64()).map(|seq| Seq { seq }).collect(),
        }
    }

    /// Whether event `seq` of the record is in the log already.
    fn numbered(&self, seq: u64) -> bool {
        seq < self.next_seq && !self.pending.iter().any(|p| p.seq == seq)
    }
}

/// Whether writes to `collection` carry events to number.
pub(super) fn announces(collection: Collection) -> bool {
    matches!(collection, Collection::Instances | Collection::Bindings)
}

/// Takes out of `body` (an instance or a binding about to be written over `stored`,
/// the stored document's outbox) the events put in since, oldest first, and drops
/// those the log has (a copy written from can be older than the stored document).
/// `Records` indexes the body as if nothing waited in it; what still does (left by an
/// esm that used the sequencer) is flagged here for the sequencer's start-up round.
pub(super) fn take_new(stored: &Counted, body: &mut Value) -> Vec<Value> {
    let Some(pending) = body.get_mut("outbox").and_then(|o| o.get_mut("pending")).and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let seq = |p: &Value| p.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let (new, kept): (Vec<Value>, Vec<Value>) = std::mem::take(pending)
        .into_iter()
        .filter(|p| !stored.numbered(seq(p)))
        .partition(|p| seq(p) >= stored.next_seq);
    let events = new.into_iter().filter_map(|mut p| p.get_mut("event").map(Value::take)).collect();
    if kept.is_empty() {
        if let Some(outbox) = body.get_mut("outbox").and_then(Value::as_object_mut) {
            outbox.remove("pending");
        }
    } else {
        // Indexed as written by `Records`, as if nothing waited: flagged for the
        // sequencer instead, and not purged before it is done.
        if let Some(pending) = body.get_mut("outbox").and_then(|o| o.get_mut("pending")) {
            *pending = Value::Array(kept);
        }
        if let Some(entries) = body.get_mut(index::INDEX_FIELD).and_then(Value::as_object_mut) {
            entries.remove(index::GONE_AT);
            entries.insert(index::OUTBOX.to_owned(), serde_json::json!(["1"]));
        }
    }
    events
}

/// The id after the greatest in the log, given its keys from the greatest down (a key
/// that is no id, which esm never writes, is passed over rather than overwritten).
pub(super) fn next_id<'k>(mut keys_downwards: impl Iterator<Item = &'k str>) -> u64 {
    keys_downwards.find_map(Event::id_of).unwrap_or(0) + 1
}

/// `event` (as an outbox or the event outbox holds it) as the log stores it under
/// `id`: its key and body.
pub(super) fn numbered(event: Value, id: u64) -> Result<(String, Value), StoreError> {
    let mut event: Event =
        serde_json::from_value(event).map_err(|e| StoreError::Corrupt(format!("an event to number: {e}")))?;
    event.id = id;
    let key = Event::key(id);
    let body = Records::encode_indexed(&event, &key, &index::event_keys(&event))?;
    Ok((key, body))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pending(seqs: &[u64]) -> Value {
        let pending: Vec<Value> = seqs
            .iter()
            .map(|seq| json!({"seq": seq, "event": {"id": 0, "at": "t", "type": format!("e{seq}")}}))
            .collect();
        json!({"id": "i", "outbox": {"next_seq": seqs.last().map_or(0, |s| s + 1), "pending": pending},
               "_ix": {"plan_id": ["p"], "gone_at": ["t"]}})
    }

    fn stored(next_seq: u64, pending: &[u64]) -> Counted {
        Counted { next_seq, pending: pending.iter().map(|&seq| Seq { seq }).collect() }
    }

    #[test]
    fn only_events_put_in_since_the_stored_copy_are_taken() {
        let mut body = pending(&[2, 3, 4, 5]);
        let taken = take_new(&stored(4, &[3]), &mut body);
        let kinds: Vec<&str> = taken.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(kinds, ["e4", "e5"]);
        assert_eq!(
            body["outbox"]["pending"],
            json!([pending(&[3])["outbox"]["pending"][0]]),
            "2 is in the log; 3 waits"
        );
        assert_eq!(body["_ix"], json!({"outbox": ["1"], "plan_id": ["p"]}), "flagged, and not purged");
        let mut body = pending(&[0, 1]);
        assert_eq!(take_new(&Counted::of(&json!({})), &mut body).len(), 2);
        assert_eq!(Counted::of(&pending(&[1, 2])).pending.len(), 2);
        assert!(body["outbox"].get("pending").is_none());
        assert_eq!(body["_ix"], json!({"plan_id": ["p"], "gone_at": ["t"]}), "indexed as Records did");
        assert_eq!(body["outbox"]["next_seq"], 2, "the count is kept");
    }

    #[test]
    fn numbered_events_are_keyed_and_indexed_by_their_id() {
        assert_eq!(next_id(std::iter::empty()), 1);
        assert_eq!(next_id(["zz", Event::key(41).as_str(), "0"].into_iter()), 42);
        let (key, body) = numbered(json!({"id": 0, "at": "t", "type": "provision.started", "instance_id": "i"}), 7)
            .expect("numbered");
        assert_eq!((key, &body["id"]), (Event::key(7), &json!(7)));
        assert_eq!(body["_ix"]["instance_id"], json!(["i"]));
    }
}
