//! Secondary indexes: what each record is found under, and how a store queries them.
//!
//! A record names its index entries ([`super::Record::index_keys`]); [`super::Records`]
//! writes them into the stored body under [`INDEX_FIELD`] as `{"field": ["value", …]}`.
//! Every store keeps its indexes from that field alone, in the same write as the record:
//! the embedded store in an index table updated in the record's transaction, MongoDB in
//! an `ix` sub-document with a real index per field. A store never interprets records,
//! and an index can never disagree with the record it points at.
//!
//! Entries exist only while they are useful: a deprovisioned instance is found only by
//! [`GONE_AT`] (for the purge), so every listing by service or plan sees live instances
//! without reading tombstones.

use std::ops::ControlFlow;

use serde_json::{Map, Value};

use super::Collection;
use crate::domain::binding::Binding;
use crate::domain::event::Event;
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::{Operation, OperationKind, OperationLog, OperationState};
use crate::domain::outbox::Outbox;
use crate::domain::time::Timestamp;

/// The key of the index entries in a stored body.
pub const INDEX_FIELD: &str = "_ix";

/// Every live instance: `"1"`.
pub const LIVE: &str = "live";
/// A live instance's offering.
pub const SERVICE_ID: &str = "service_id";
/// A live instance's current plan.
pub const PLAN_ID: &str = "plan_id";
/// A live instance's current plan and the plan a running update moves it to: what
/// keeps a plan from being retired.
pub const USES_PLAN: &str = "uses_plan";
/// A live instance's last operation state, as OSB spells it (`in progress`, …); a
/// resource's state.
pub const STATE: &str = "state";
/// A live instance's liveness (`up`, `degraded`, `down`, `unknown`).
pub const LIVENESS: &str = "liveness";
/// A live instance's or a resource's backend (`dummy`, `docker-compose`, …).
pub const BACKEND: &str = "backend";
/// A live instance's service, plan, state and liveness in one value (see [`census`]):
/// what `esm_instances` counts with [`super::Store::counts`], without reading records.
pub const CENSUS: &str = "census";
/// A live instance's deployment id, when it was handed a pool member (the id the
/// engine's resources carry): what reconciliation and the engine's change stream
/// find it by.
pub const DEPLOYMENT: &str = "deployment";
/// Every live pool member: `"1"`. What reconciliation and liveness rounds add to the
/// live instances.
pub const MEMBER: &str = "member";
/// An unclaimed live pool member's plan: what a claim and the pool's keeper read.
pub const POOL: &str = "pool";
/// A claimed pool member whose instance has not taken its deployment over yet: its
/// plan (what the keeper checks) …
pub const POOL_CLAIMED: &str = "pool_claimed";
/// … and the instance it was handed to (what that instance's provision adopts).
pub const CLAIMED_BY: &str = "claimed_by";
/// A live instance's or pool member's engine (`domain::engine`): what placement counts
/// each engine's load by, and what tells an engine is empty.
pub const ENGINE: &str = "engine";
/// A live instance with a deployment it moved away from still to be removed
/// (`ServiceInstance::retiring`): `"1"`. What the evacuation's round finishes.
pub const RETIRING: &str = "retiring";
/// A resource's owner (the id its deployment was made under).
pub const OWNER: &str = "owner";
/// A resource's engine name.
pub const NAME: &str = "name";
/// A live binding's instance.
pub const INSTANCE_ID: &str = "instance_id";
/// An event's or a resource's type.
pub const TYPE: &str = "type";
/// A record with a running operation: `"1"`. What start-up and the sweeper look for.
pub const RUNNING: &str = "running";
/// A tombstone: when it was deprovisioned or unbound (RFC 3339 with milliseconds in
/// UTC, fixed width, so text order is time order). What the purge looks for.
pub const GONE_AT: &str = "gone_at";

/// A record with events in its outbox (`domain::outbox`): `"1"`. What the event
/// sequencer looks for; a tombstone is found by [`GONE_AT`] only once it has none, so
/// the purge never deletes an event not yet in the log.
pub const OUTBOX: &str = "outbox";

/// The version of what [`instance_keys`] and [`binding_keys`] produce. Raised whenever
/// they produce more, so [`super::Records::reindex`] rewrites the records an older esm
/// wrote. 2: an instance's liveness, backend and census. 3: its engine (a store an
/// esm before engines wrote counts its instances on the default engine only once
/// they are rewritten: the default engine's capacity depends on it), a move's
/// deployment, a retiring mark.
pub const VERSION: u64 = 3;

/// What a record is found under: (field, value) pairs; a field may repeat.
pub type IndexKeys = Vec<(&'static str, String)>;

impl Collection {
    /// The fields its records are queried by (MongoDB creates one index for each).
    /// [`CENSUS`] is only counted, never queried by value, and MongoDB counts it by
    /// reading the documents whatever their indexes (an index of array values cannot
    /// cover a query): an index would only slow every write down.
    pub fn indexed_fields(self) -> &'static [&'static str] {
        match self {
            Self::Instances => &[
                LIVE,
                SERVICE_ID,
                PLAN_ID,
                USES_PLAN,
                STATE,
                LIVENESS,
                BACKEND,
                RUNNING,
                GONE_AT,
                DEPLOYMENT,
                MEMBER,
                POOL,
                POOL_CLAIMED,
                CLAIMED_BY,
                OUTBOX,
                ENGINE,
                RETIRING,
            ],
            Self::Bindings => &[INSTANCE_ID, RUNNING, GONE_AT, OUTBOX],
            Self::Events => &[INSTANCE_ID, SERVICE_ID, TYPE],
            Self::Resources => &[OWNER, TYPE, STATE, BACKEND, NAME],
            _ => &[],
        }
    }
}

/// A page of a collection: the records matching every filter, ordered by id, starting
/// after the id `after`, at most `limit` of them. No filter means every record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// (field, value) pairs that must all match. A store serves the first from its
    /// index and checks the others on the records it reads, so callers put the most
    /// selective first.
    pub filters: Vec<(String, String)>,
    /// The id the previous page ended with.
    pub after: Option<String>,
    /// The most records to return.
    pub limit: usize,
}

impl Query {
    /// The first `limit` records matching `filters`.
    pub fn new<'a>(filters: impl IntoIterator<Item = (&'a str, &'a str)>, limit: usize) -> Self {
        let filters = filters.into_iter().map(|(f, v)| (f.to_owned(), v.to_owned())).collect();
        Self { filters, after: None, limit }
    }

    /// The same query, from after `id`.
    pub fn after(mut self, id: Option<String>) -> Self {
        self.after = id;
        self
    }
}

/// Which documents [`Store::expired`](super::Store::expired) finds: up to `limit` of
/// those indexed under `field` with a value that sorts before `below`.
#[derive(Debug, Clone, Copy)]
pub struct Cutoff<'a> {
    /// The indexed field (e.g. [`GONE_AT`], a timestamp).
    pub field: &'a str,
    /// The first value that is not expired.
    pub below: &'a str,
    /// The most ids to return.
    pub limit: usize,
}

/// The index entries stored in `body`, as (field, value) pairs.
pub fn entries(body: &Value) -> Vec<(&str, &str)> {
    body.get(INDEX_FIELD).map(entries_in).unwrap_or_default()
}

/// The entries of the object stored under [`INDEX_FIELD`], as (field, value) pairs.
pub fn entries_in(stored: &Value) -> Vec<(&str, &str)> {
    let Value::Object(fields) = stored else {
        return Vec::new();
    };
    fields
        .iter()
        .flat_map(|(field, values)| {
            values.as_array().into_iter().flatten().filter_map(Value::as_str).map(move |v| (field.as_str(), v))
        })
        .collect()
}

/// Whether `body` has an index entry for each filter.
pub fn matches(body: &Value, filters: &[(String, String)]) -> bool {
    let entries = entries(body);
    filters.iter().all(|(f, v)| entries.contains(&(f.as_str(), v.as_str())))
}

/// The `{"field": ["value", …]}` object [`super::Records`] stores under [`INDEX_FIELD`].
pub fn to_object(keys: &IndexKeys) -> Value {
    let mut object = Map::new();
    for (field, value) in keys {
        let values = object.entry(*field).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = values
            && !values.iter().any(|v| v == value)
        {
            values.push(Value::String(value.clone()));
        }
    }
    Value::Object(object)
}

/// When the last operation of a tombstone ended (or started, if it never recorded an end).
fn gone_at(operations: &OperationLog, created_at: Timestamp) -> String {
    operations.last().map_or(created_at, |op| op.finished_at.unwrap_or(op.started_at)).to_string()
}

fn running(operations: &OperationLog) -> Option<(&'static str, String)> {
    operations.running().map(|_| (RUNNING, "1".to_owned()))
}

/// Whether events will wait in `outbox` once written (see [`instance_keys`]).
fn waiting(outbox: &Outbox, outbox_waits: bool) -> bool {
    outbox_waits && outbox.has_pending()
}

/// The keys of a record's life, the same for instances and bindings (given their
/// operations, outbox and creation time): a running operation, events waiting in the
/// outbox and, once the record is gone and nothing waits, when it went. `Break` for a
/// gone record: these are all its keys.
fn life_keys(
    (ops, outbox, created_at): (&OperationLog, &Outbox, Timestamp),
    live: bool,
    outbox_waits: bool,
) -> ControlFlow<IndexKeys, IndexKeys> {
    let mut keys: IndexKeys = running(ops).into_iter().collect();
    let waiting = waiting(outbox, outbox_waits);
    keys.extend(waiting.then(|| (OUTBOX, "1".to_owned())));
    if live {
        return ControlFlow::Continue(keys);
    }
    if !waiting {
        keys.push((GONE_AT, gone_at(ops, created_at)));
    }
    ControlFlow::Break(keys)
}

/// What an instance is found under. `outbox_waits`: whether the events in its outbox
/// wait there once written (not on a store that numbers them in the write): then it is
/// found by the sequencer, and a tombstone is not purged before they are in the log.
pub fn instance_keys(instance: &ServiceInstance, outbox_waits: bool) -> IndexKeys {
    let ops = &instance.operations;
    let life = (ops, &instance.outbox, instance.created_at);
    let mut keys = match life_keys(life, instance.is_live(), outbox_waits) {
        ControlFlow::Break(keys) => return keys,
        ControlFlow::Continue(keys) => keys,
    };
    keys.push((ENGINE, instance.engine().to_owned()));
    if let Some(retiring) = &instance.retiring {
        // Still on the engine it left, until its deployment there is removed: the
        // engine's load and emptiness count it, and its resources find their owner.
        keys.push((ENGINE, retiring.engine().to_owned()));
        keys.push((RETIRING, "1".into()));
        if retiring.deployed_id != instance.id {
            keys.push((DEPLOYMENT, retiring.deployed_id.clone()));
        }
    }
    if let Some(membership) = &instance.pool {
        // A member is no platform's instance: found only by what pools need.
        keys.push((MEMBER, "1".into()));
        match &membership.claimed_by {
            None => keys.push((POOL, instance.plan_id.clone())),
            Some(claimer) => {
                keys.push((POOL_CLAIMED, instance.plan_id.clone()));
                keys.push((CLAIMED_BY, claimer.clone()));
            }
        }
        return keys;
    }
    keys.push((LIVE, "1".into()));
    keys.extend(instance.deployment_id.iter().map(|id| (DEPLOYMENT, id.clone())));
    // A move's new deployment, while the move runs: esm's, not an orphan.
    keys.extend(ops.running().and_then(Operation::moved_id).map(|id| (DEPLOYMENT, id)));
    keys.push((SERVICE_ID, instance.service_id.clone()));
    keys.push((PLAN_ID, instance.plan_id.clone()));
    keys.push((USES_PLAN, instance.plan_id.clone()));
    let moving_to =
        ops.running().filter(|op| op.kind == OperationKind::Update).and_then(|op| op.update.as_ref()?.plan_id.clone());
    keys.extend(moving_to.map(|plan| (USES_PLAN, plan)));
    if let Some(last) = ops.last() {
        keys.push((STATE, last.state.as_str().to_owned()));
    }
    keys.push((LIVENESS, instance.liveness_status().as_str().to_owned()));
    keys.extend(instance.backend().map(|backend| (BACKEND, backend.to_owned())));
    keys.push((CENSUS, census(instance)));
    keys
}

/// What an event is found under: what a stream or a page may be filtered by.
pub fn event_keys(event: &Event) -> IndexKeys {
    let mut keys: IndexKeys = vec![(TYPE, event.kind.as_str().to_owned())];
    keys.extend(event.instance_id.iter().map(|id| (INSTANCE_ID, id.clone())));
    keys.extend(event.service_id.iter().map(|id| (SERVICE_ID, id.clone())));
    keys
}

/// The [`CENSUS`] value of a live instance: its service id, plan id, last operation
/// state and liveness as a JSON array of four strings. JSON, because ids may hold any
/// character: no separator could be unambiguous, an escaped array is. An instance
/// with no operation (recorded by esm 0.1) counts as `succeeded`, as the ElasTest
/// view shows it.
pub fn census(instance: &ServiceInstance) -> String {
    let state = instance.operations.last().map_or(OperationState::Succeeded, |op| op.state);
    let labels =
        [instance.service_id.as_str(), instance.plan_id.as_str(), state.as_str(), instance.liveness_status().as_str()];
    serde_json::to_string(&labels).unwrap_or_default()
}

/// The four labels of a [`census`] value; `None` for anything else.
pub fn parse_census(value: &str) -> Option<[String; 4]> {
    serde_json::from_str(value).ok()
}

/// The census: how many live instances there are of each `[service id, plan id,
/// state, liveness]`, tallied from the [`CENSUS`] index without reading a record.
pub async fn count_census(store: &dyn super::Store) -> Result<Vec<([String; 4], u64)>, super::StoreError> {
    let counts = store.counts(super::Collection::Instances, CENSUS).await?;
    Ok(counts.into_iter().filter_map(|(value, n)| Some((parse_census(&value)?, n))).collect())
}

/// What a binding is found under (`outbox_waits` as for [`instance_keys`]).
pub fn binding_keys(binding: &Binding, outbox_waits: bool) -> IndexKeys {
    let life = (&binding.operations, &binding.outbox, binding.created_at);
    let mut keys = match life_keys(life, binding.is_live(), outbox_waits) {
        ControlFlow::Break(keys) => return keys,
        ControlFlow::Continue(keys) => keys,
    };
    keys.push((INSTANCE_ID, binding.instance_id.clone()));
    keys
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::event::{EventKind, Step};

    #[test]
    fn a_tombstone_is_purgeable_only_once_its_events_are_in_the_log() {
        let mut binding: Binding = serde_json::from_value(json!({
            "id": "b", "instance_id": "i", "service_id": "s", "plan_id": "p",
            "status": "unbound", "created_at": "2026-01-01T00:00:00.000Z"
        }))
        .expect("a binding");
        binding.outbox.push(Event::new(EventKind::Operation(OperationKind::Unbind, Step::Succeeded)));
        let keys = binding_keys(&binding, true);
        assert!(keys.iter().any(|(f, _)| *f == OUTBOX) && !keys.iter().any(|(f, _)| *f == GONE_AT));
        binding.outbox.drain_below(1);
        let keys = binding_keys(&binding, true);
        assert!(!keys.iter().any(|(f, _)| *f == OUTBOX) && keys.iter().any(|(f, _)| *f == GONE_AT));
    }

    #[test]
    fn entries_round_trip_through_the_stored_object() {
        let keys: IndexKeys = vec![(PLAN_ID, "p".into()), (USES_PLAN, "p".into()), (USES_PLAN, "q".into())];
        let body = json!({ INDEX_FIELD: to_object(&keys) });
        let mut found = entries(&body);
        found.sort_unstable();
        assert_eq!(found, vec![(PLAN_ID, "p"), (USES_PLAN, "p"), (USES_PLAN, "q")]);
        assert!(matches(&body, &[(USES_PLAN.into(), "q".into()), (PLAN_ID.into(), "p".into())]));
        assert!(!matches(&body, &[(PLAN_ID.into(), "q".into())]));
        assert!(matches(&body, &[]), "no filter matches everything");
        assert!(entries(&json!({"a": 1})).is_empty(), "a body without entries is found under nothing");
    }

    #[test]
    fn a_census_value_keeps_its_four_labels_apart_whatever_they_hold() {
        let value = serde_json::to_string(&["a\",\"b", "p,1", "in progress", "up"]).expect("JSON");
        let parsed = parse_census(&value).expect("parses");
        assert_eq!(parsed, ["a\",\"b", "p,1", "in progress", "up"].map(String::from));
        assert_eq!(parse_census("[\"only\", \"three\", \"labels\"]"), None);
        assert_eq!(parse_census("not json"), None);
    }

    #[test]
    fn a_repeated_key_is_stored_once() {
        let keys: IndexKeys = vec![(USES_PLAN, "p".into()), (USES_PLAN, "p".into())];
        assert_eq!(to_object(&keys), json!({"uses_plan": ["p"]}));
    }
}
