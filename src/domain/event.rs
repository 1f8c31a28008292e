//! Change events: every lifecycle step of an instance or binding and every liveness
//! transition, numbered in the order they happened.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::bounded::MAX_ID_BYTES;
use super::operation::OperationKind;

mod kind;

pub use kind::{EventKind, Step};

/// Width of an event id in the store: zero-padded, so text order is number order.
const ID_DIGITS: usize = 20;

/// The longest text an event's id and state fields keep, in bytes. Ids a client sends
/// are bounded by their types where they enter (`domain::bounded`); this bounds the
/// rest (and anything that reached an event by another way), so no event is large.
pub const MAX_FIELD_BYTES: usize = MAX_ID_BYTES;
/// The longest `reason` an event keeps, in bytes (an engine's words may be long).
pub const MAX_REASON_BYTES: usize = 1024;
/// What [`Event::size`] counts besides the text: the id, the field names and quotes.
const OVERHEAD_BYTES: usize = 200;
/// The most [`Event::size`] can be once [`Event::bounded`]: the overhead, `type` and
/// `at` (esm's own words, a few dozen bytes), eight fields and the reason.
pub const MAX_EVENT_BYTES: usize = OVERHEAD_BYTES + 2 * MAX_FIELD_BYTES + 8 * MAX_FIELD_BYTES + MAX_REASON_BYTES;

/// One change.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increases with every event, across replicas sharing a store.
    pub id: u64,
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// What happened: `provision.started`, `provision.succeeded`, `provision.failed`,
    /// `provision.refused` (a request about a known instance refused with 400, 409 or
    /// 422; `to` is the error code, `reason` its description) (the same for `update`,
    /// `deprovision`, `bind`, `unbind`), `liveness.changed`,
    /// `instance.removed` (reconciliation removed what an engine held for an instance
    /// esm does not know), `instance.dropped` (lost past `ESM_LIVENESS_DROP_THRESHOLD`:
    /// a deprovision follows), `service.registered`, `service.removed`, and for warm
    /// pools `pool.member_ready`, `pool.member_failed` (its deploy failed),
    /// `pool.member_claimed` (handed to `instance_id`), `pool.member_replaced` (removed
    /// because it broke, aged, or the pool shrank or drained; `reason` says which), and
    /// for the inventory `resource.orphaned` (an engine held resources for an instance
    /// esm does not know; reconciliation removes them) and `resource.gone` (a resource
    /// an instance holds was removed behind esm's back), and for engines
    /// `engine.changed`, `relocate.started|succeeded|failed` (a drain deploying an
    /// instance on another engine) and `instance.relocated` (the move finished: its
    /// bindings point at the new deployment and the old one is removed; `from` and `to`
    /// are the engines).
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: EventKind,
    /// The instance it concerns.
    pub instance_id: Option<String>,
    /// The binding it concerns.
    pub binding_id: Option<String>,
    /// The warm pool member it concerns (`pool.*` events).
    pub member_id: Option<String>,
    /// The instance's (or binding's, or registered) service.
    pub service_id: Option<String>,
    /// The instance's plan.
    pub plan_id: Option<String>,
    /// The operation, for lifecycle steps.
    pub operation: Option<String>,
    /// The state before (`in progress`, a liveness status, …).
    pub from: Option<String>,
    /// The state after.
    pub to: Option<String>,
    /// Why, in words (a failure's description, a liveness reason).
    pub reason: Option<String>,
    /// The engine, for `engine.changed`.
    pub engine: Option<String>,
}

impl Event {
    /// An event of type `kind` with nothing else set; the log numbers and stamps it.
    pub fn new(kind: EventKind) -> Self {
        Self {
            id: 0,
            at: String::new(),
            kind,
            instance_id: None,
            binding_id: None,
            member_id: None,
            service_id: None,
            plan_id: None,
            operation: None,
            from: None,
            to: None,
            reason: None,
            engine: None,
        }
    }

    /// The event of a recorded operation's step.
    pub fn operation(kind: OperationKind, step: Step, operation_id: &str) -> Self {
        let (from, to) = match step {
            Step::Started => (None, Some("in progress")),
            Step::Succeeded => (Some("in progress"), Some("succeeded")),
            Step::Failed => (Some("in progress"), Some("failed")),
            // A refusal's `to` is its error code, which the refusing side knows.
            Step::Refused => (None, None),
        };
        Self {
            operation: Some(operation_id.to_owned()),
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            ..Self::new(EventKind::Operation(kind, step))
        }
    }

    /// The same event about instance `id` of `service_id`/`plan_id`.
    pub fn on_instance(mut self, id: &str, service_id: &str, plan_id: &str) -> Self {
        self.instance_id = Some(id.to_owned());
        self.service_id = Some(service_id.to_owned());
        self.plan_id = Some(plan_id.to_owned());
        self
    }

    /// A `pool.*` event about member `member` of plan `plan_id`.
    pub fn on_member(kind: EventKind, member: &str, service_id: &str, plan_id: &str) -> Self {
        Self {
            member_id: Some(member.to_owned()),
            service_id: Some(service_id.to_owned()),
            plan_id: Some(plan_id.to_owned()),
            ..Self::new(kind)
        }
    }

    /// An `engine.changed` event: engine `name` went from state `from` (none: it was
    /// just declared) to `to` (`removed`: it was deleted).
    pub fn on_engine(name: &str, from: Option<&str>, to: &str) -> Self {
        Self {
            engine: Some(name.to_owned()),
            from: from.map(str::to_owned),
            to: Some(to.to_owned()),
            ..Self::new(EventKind::EngineChanged)
        }
    }

    /// The same event with a reason.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The same event with every text field cut to its bound ([`MAX_FIELD_BYTES`],
    /// [`MAX_REASON_BYTES`]; a cut text ends with `…`), so that its [`Event::size`] is at
    /// most [`MAX_EVENT_BYTES`].
    pub fn bounded(mut self) -> Self {
        self.kind = self.kind.bounded();
        truncate(&mut self.at, MAX_FIELD_BYTES);
        for text in [
            &mut self.instance_id,
            &mut self.binding_id,
            &mut self.member_id,
            &mut self.service_id,
            &mut self.plan_id,
            &mut self.operation,
            &mut self.from,
            &mut self.to,
        ]
        .into_iter()
        .flatten()
        {
            truncate(text, MAX_FIELD_BYTES);
        }
        if let Some(reason) = &mut self.reason {
            truncate(reason, MAX_REASON_BYTES);
        }
        self
    }

    /// What the event weighs, in bytes: its text plus a fixed overhead. Its JSON is
    /// about as long (longer only by the escapes of quotes and control characters).
    /// The log's byte bounds (queue, pages, retention) count this.
    pub fn size(&self) -> usize {
        let optional = [
            &self.instance_id,
            &self.binding_id,
            &self.member_id,
            &self.service_id,
            &self.plan_id,
            &self.operation,
            &self.from,
            &self.to,
            &self.reason,
        ];
        OVERHEAD_BYTES
            + self.kind.as_str().len()
            + self.at.len()
            + optional.iter().map(|f| f.as_ref().map_or(0, String::len)).sum::<usize>()
    }

    /// The id as the store keys it.
    pub fn key(id: u64) -> String {
        format!("{id:0ID_DIGITS$}")
    }

    /// The id a store key holds, if it is one.
    pub fn id_of(key: &str) -> Option<u64> {
        (key.len() == ID_DIGITS).then(|| key.parse().ok()).flatten()
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary, ending with `…`.
fn truncate(text: &mut String, max: usize) {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_ids_do() {
        let keys: Vec<String> = [9_u64, 10, 100, u64::MAX].into_iter().map(Event::key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(Event::id_of(&Event::key(42)), Some(42));
        assert_eq!(Event::id_of("42"), None);
    }

    #[test]
    fn operation_events_name_their_step() {
        let event = Event::operation(OperationKind::Provision, Step::Failed, "op").on_instance("i", "s", "p");
        assert_eq!(event.kind.as_str(), "provision.failed");
        assert_eq!((event.from.as_deref(), event.to.as_deref()), (Some("in progress"), Some("failed")));
        assert!(EventKind::parse(event.kind.as_str()).is_some() && EventKind::parse("liveness.changed").is_some());
        assert!(EventKind::parse("provision.exploded").is_none() && EventKind::parse("nonsense").is_none());
    }

    #[test]
    fn a_bounded_event_is_small_whatever_it_was_given() {
        let huge = "é".repeat(600_000);
        let mut event = Event::new(EventKind::LivenessChanged).on_instance(&huge, &huge, &huge).because(huge.clone());
        (event.binding_id, event.member_id, event.operation) =
            (Some(huge.clone()), Some(huge.clone()), Some(huge.clone()));
        (event.from, event.to, event.at) = (Some(huge.clone()), Some(huge.clone()), huge.clone());
        let event = event.bounded();
        assert!(event.size() <= MAX_EVENT_BYTES, "{} bytes", event.size());
        let id = event.instance_id.as_deref().unwrap_or_default();
        assert!(id.len() <= MAX_FIELD_BYTES && id.ends_with('…'), "cut on a character boundary, marked");
        assert!(event.reason.as_deref().unwrap_or_default().len() <= MAX_REASON_BYTES);
        let json = serde_json::to_string(&event).unwrap_or_default();
        assert!(json.len() <= MAX_EVENT_BYTES, "its JSON weighs about its size: {}", json.len());
    }

    #[test]
    fn an_event_within_its_bounds_is_kept_as_it_is() {
        let event = Event::operation(OperationKind::Bind, Step::Started, "op").on_instance("i", "s", "p").because("r");
        assert_eq!(event.clone().bounded(), event);
    }
}
