//! An event's `type`: one enum, each type spelled once (in [`EventKind::as_str`]) so
//! that `grep "deprovision.succeeded"` finds where it is written down.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{MAX_FIELD_BYTES, truncate};
use crate::domain::operation::OperationKind;

/// How far an operation got, for its event's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Recorded and about to run.
    Started,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Refused (400, 409 or 422) before it was recorded, about a known instance.
    Refused,
}

impl Step {
    /// Every step.
    pub const ALL: [Self; 4] = [Self::Started, Self::Succeeded, Self::Failed, Self::Refused];
}

/// What happened: an event's `type`, serialised as the text [`EventKind::as_str`]
/// gives (`provision.succeeded`, `liveness.changed`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A step of an operation: `provision.started`, …, `unbind.refused`.
    Operation(OperationKind, Step),
    /// An instance's liveness changed.
    LivenessChanged,
    /// Reconciliation removed what an engine held for an instance esm does not know.
    InstanceRemoved,
    /// An instance lost past `ESM_LIVENESS_DROP_THRESHOLD`: a deprovision follows.
    InstanceDropped,
    /// An instance moved to another engine (a drain's evacuation): its bindings point
    /// at the new deployment and the old one is removed.
    InstanceRelocated,
    /// A service was registered.
    ServiceRegistered,
    /// A service was removed.
    ServiceRemoved,
    /// A warm pool member is ready.
    PoolMemberReady,
    /// A warm pool member's deploy failed.
    PoolMemberFailed,
    /// A warm pool member was handed to an instance.
    PoolMemberClaimed,
    /// A warm pool member was removed (broken, aged, or the pool shrank or drained).
    PoolMemberReplaced,
    /// An engine held resources for an instance esm does not know.
    ResourceOrphaned,
    /// A resource an instance holds was removed behind esm's back.
    ResourceGone,
    /// An engine was declared, changed state (an operator's cordon, a probe's answer)
    /// or was removed.
    EngineChanged,
    /// A type this esm does not know, read back from the store or from another esm:
    /// replicas of two versions share a store during a rolling upgrade, and a newer
    /// one's event must not make the older one's reads of the log fail. It is kept as
    /// it came (so it is served again unchanged), cut to [`MAX_FIELD_BYTES`] as every
    /// esm cuts a type it writes; esm itself never makes one.
    Other(String),
}

/// The kinds that are not operation steps, for [`EventKind::known`].
const SINGLE: [EventKind; 13] = [
    EventKind::LivenessChanged,
    EventKind::InstanceRemoved,
    EventKind::InstanceDropped,
    EventKind::InstanceRelocated,
    EventKind::ServiceRegistered,
    EventKind::ServiceRemoved,
    EventKind::PoolMemberReady,
    EventKind::PoolMemberFailed,
    EventKind::PoolMemberClaimed,
    EventKind::PoolMemberReplaced,
    EventKind::ResourceOrphaned,
    EventKind::ResourceGone,
    EventKind::EngineChanged,
];

impl EventKind {
    /// The type as events carry it.
    pub fn as_str(&self) -> &str {
        use OperationKind::{Bind, Deprovision, Provision, Relocate, Unbind, Update};
        use Step::{Failed, Refused, Started, Succeeded};
        match self {
            Self::Operation(Provision, Started) => "provision.started",
            Self::Operation(Provision, Succeeded) => "provision.succeeded",
            Self::Operation(Provision, Failed) => "provision.failed",
            Self::Operation(Provision, Refused) => "provision.refused",
            Self::Operation(Update, Started) => "update.started",
            Self::Operation(Update, Succeeded) => "update.succeeded",
            Self::Operation(Update, Failed) => "update.failed",
            Self::Operation(Update, Refused) => "update.refused",
            Self::Operation(Deprovision, Started) => "deprovision.started",
            Self::Operation(Deprovision, Succeeded) => "deprovision.succeeded",
            Self::Operation(Deprovision, Failed) => "deprovision.failed",
            Self::Operation(Deprovision, Refused) => "deprovision.refused",
            Self::Operation(Bind, Started) => "bind.started",
            Self::Operation(Bind, Succeeded) => "bind.succeeded",
            Self::Operation(Bind, Failed) => "bind.failed",
            Self::Operation(Bind, Refused) => "bind.refused",
            Self::Operation(Unbind, Started) => "unbind.started",
            Self::Operation(Unbind, Succeeded) => "unbind.succeeded",
            Self::Operation(Unbind, Failed) => "unbind.failed",
            Self::Operation(Relocate, Started) => "relocate.started",
            Self::Operation(Relocate, Succeeded) => "relocate.succeeded",
            Self::Operation(Relocate, Failed) => "relocate.failed",
            Self::Operation(Relocate, Refused) => "relocate.refused",
            Self::Operation(Unbind, Refused) => "unbind.refused",
            Self::LivenessChanged => "liveness.changed",
            Self::InstanceRemoved => "instance.removed",
            Self::InstanceDropped => "instance.dropped",
            Self::InstanceRelocated => "instance.relocated",
            Self::ServiceRegistered => "service.registered",
            Self::ServiceRemoved => "service.removed",
            Self::PoolMemberReady => "pool.member_ready",
            Self::PoolMemberFailed => "pool.member_failed",
            Self::PoolMemberClaimed => "pool.member_claimed",
            Self::PoolMemberReplaced => "pool.member_replaced",
            Self::ResourceOrphaned => "resource.orphaned",
            Self::ResourceGone => "resource.gone",
            Self::EngineChanged => "engine.changed",
            Self::Other(text) => text,
        }
    }

    /// Every type esm makes.
    pub fn known() -> impl Iterator<Item = Self> {
        let steps = OperationKind::ALL.into_iter().flat_map(|kind| Step::ALL.map(|step| Self::Operation(kind, step)));
        steps.chain(SINGLE)
    }

    /// The type esm makes that is spelled `text`, if any (a `?type=` filter).
    pub fn parse(text: &str) -> Option<Self> {
        Self::known().find(|kind| kind.as_str() == text)
    }

    /// Whether it is an operation's failure (`*.failed`).
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Operation(_, Step::Failed))
    }

    /// Whether it is an operation's end, success or failure.
    pub fn is_finished(&self) -> bool {
        matches!(self, Self::Operation(_, Step::Succeeded | Step::Failed))
    }

    /// The same, cut to its bound if it is one esm does not know (those it knows are
    /// short).
    pub(super) fn bounded(self) -> Self {
        match self {
            Self::Other(mut text) => {
                truncate(&mut text, MAX_FIELD_BYTES);
                Self::Other(text)
            }
            known => known,
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(Self::parse(&text).unwrap_or(Self::Other(text)).bounded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_type_reads_back_as_itself() {
        let known: Vec<EventKind> = EventKind::known().collect();
        assert_eq!(known.len(), OperationKind::ALL.len() * 4 + SINGLE.len());
        for kind in known {
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).ok(), Some(kind.clone()));
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn an_unknown_type_is_kept_cut_to_its_bound() {
        let read: EventKind = serde_json::from_str("\"volume.resized\"").unwrap_or(EventKind::LivenessChanged);
        assert_eq!(read, EventKind::Other("volume.resized".into()));
        assert_eq!(serde_json::to_string(&read).unwrap_or_default(), "\"volume.resized\"");
        let long = format!("\"{}\"", "x".repeat(10 * MAX_FIELD_BYTES));
        let read: EventKind = serde_json::from_str(&long).unwrap_or(EventKind::LivenessChanged);
        assert!(read.as_str().len() <= MAX_FIELD_BYTES && read.as_str().ends_with('…'));
        assert_eq!(EventKind::parse("volume.resized"), None);
    }

    #[test]
    fn failures_and_ends_are_the_operations_ones() {
        assert!(EventKind::Operation(OperationKind::Deprovision, Step::Failed).is_failure());
        assert!(!EventKind::PoolMemberFailed.is_failure(), "pool.member_failed is not an operation's failure");
        assert!(EventKind::Operation(OperationKind::Bind, Step::Succeeded).is_finished());
        assert!(!EventKind::Operation(OperationKind::Bind, Step::Refused).is_finished());
    }
}
