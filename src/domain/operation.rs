//! Tracked operations: what an instance or binding is doing, or last did.
//!
//! An operation lives inside the record it acts on (see [`OperationLog`]), so moving a
//! record into a new operation and checking that no other one is running is a single
//! compare-and-set on that record. That is what makes `ConcurrencyError` exact, and
//! what lets a restarted esm find and finish the operations it was running.

use crate::domain::time::Timestamp;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::instance::PendingUpdate;

/// The OSB operation states, spelled as the spec spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OperationState {
    /// Still running; the platform keeps polling.
    #[serde(rename = "in progress")]
    InProgress,
    /// Done.
    #[serde(rename = "succeeded")]
    Succeeded,
    /// Gave up; `description` says why.
    #[serde(rename = "failed")]
    Failed,
}

impl OperationState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::InProgress, Self::Succeeded, Self::Failed];

    /// The state as OSB spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Reads a state as OSB spells it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Create an instance.
    Provision,
    /// Change an instance's plan, parameters, context or maintenance version.
    Update,
    /// Remove an instance.
    Deprovision,
    /// Create a binding.
    Bind,
    /// Remove a binding.
    Unbind,
    /// Move an instance to another engine (a drain's evacuation): esm's own, never a
    /// platform's request.
    Relocate,
}

impl OperationKind {
    /// The verb, for ids, logs and descriptions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Update => "update",
            Self::Deprovision => "deprovision",
            Self::Bind => "bind",
            Self::Unbind => "unbind",
            Self::Relocate => "relocate",
        }
    }

    /// Every kind.
    pub const ALL: [Self; 6] =
        [Self::Provision, Self::Update, Self::Deprovision, Self::Bind, Self::Unbind, Self::Relocate];

    /// The kind [`OperationKind::as_str`] spells as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// The id prefix of a deployment made by a move ([`Operation::moved_id`]).
pub const MOVED_PREFIX: &str = "moved-";

/// One operation on an instance or a binding.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Opaque id returned as `operation` in a 202 and echoed back by the platform.
    pub id: String,
    /// What the operation does.
    pub kind: OperationKind,
    /// Where it stands.
    pub state: OperationState,
    /// Progress or failure text for the platform's user.
    pub description: Option<String>,
    /// OSB 2.16, failed update/deprovision only: whether the instance still works.
    pub instance_usable: Option<bool>,
    /// OSB 2.16, failed update only: whether repeating the update may succeed.
    pub update_repeatable: Option<bool>,
    /// For an update: the changes, applied to the instance only when it succeeds.
    pub update: Option<PendingUpdate>,
    /// For a relocate: the engine the instance moves to, chosen (and its room taken)
    /// before the operation was recorded, so every run of it deploys there.
    pub relocate_to: Option<String>,
    /// Whether the platform was answered 202 (so it polls) rather than waited for.
    #[serde(default)]
    pub asynchronous: bool,
    /// The esm process running it (a random id per process). Another process takes
    /// the operation over only once `lease_until` has passed, so two replicas never
    /// run one operation.
    pub owner: Option<String>,
    /// Unix time in milliseconds until which `owner` holds the operation; the owner
    /// renews it while it works.
    #[serde(default)]
    pub lease_until: u64,
    /// When it started (RFC 3339).
    pub started_at: Timestamp,
    /// When it ended (RFC 3339).
    pub finished_at: Option<Timestamp>,
}

impl Operation {
    /// A new running operation with a fresh id.
    pub fn start(kind: OperationKind, asynchronous: bool, now: SystemTime) -> Self {
        Self {
            id: format!("{}-{}", kind.as_str(), uuid::Uuid::new_v4().simple()),
            kind,
            state: OperationState::InProgress,
            description: Some(format!("{} in progress", kind.as_str())),
            instance_usable: None,
            update_repeatable: None,
            update: None,
            relocate_to: None,
            asynchronous,
            owner: None,
            lease_until: 0,
            started_at: Timestamp::at(now),
            finished_at: None,
        }
    }

    /// A finished operation as a later incarnation of its record keeps it: what
    /// `last_operation` answers (state, description, OSB 2.16 flags, times), without
    /// the update's payload or the lease.
    fn remembered(&self) -> Self {
        let mut description = self.description.clone();
        if let Some(text) = description.as_mut().filter(|d| d.len() > REMEMBERED_DESCRIPTION_BYTES) {
            let mut end = REMEMBERED_DESCRIPTION_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Self { description, update: None, owner: None, lease_until: 0, ..self.clone() }
    }

    /// For a relocate: the id the new deployment is made under (`moved-…`, from the
    /// operation's id, so every run of the operation makes the same one). Indexed
    /// while the move runs (`store::index`), so reconciliation and an abandoned room's
    /// sweep see the deployment as one esm is making.
    pub fn moved_id(&self) -> Option<String> {
        (self.kind == OperationKind::Relocate).then(|| {
            let unique = self.id.rsplit('-').next().unwrap_or(&self.id);
            format!("{MOVED_PREFIX}{unique}")
        })
    }

    /// How long it took, once finished.
    pub fn took(&self) -> Option<std::time::Duration> {
        self.finished_at?.time().duration_since(self.started_at.time()).ok()
    }

    /// Whether it is still running.
    pub fn in_progress(&self) -> bool {
        self.state == OperationState::InProgress
    }

    /// Marks it succeeded.
    pub fn succeed(&mut self, now: SystemTime) {
        self.state = OperationState::Succeeded;
        self.description = Some(format!("{} succeeded", self.kind.as_str()));
        self.finished_at = Some(Timestamp::at(now));
    }

    /// Marks it failed with a reason. The OSB 2.16 flags are kept only where the spec
    /// allows them: `instance_usable` on update/deprovision, `update_repeatable` on update.
    pub fn fail(
        &mut self,
        now: SystemTime,
        reason: &str,
        instance_usable: Option<bool>,
        update_repeatable: Option<bool>,
    ) {
        self.state = OperationState::Failed;
        self.description = Some(format!("{} failed: {reason}", self.kind.as_str()));
        self.finished_at = Some(Timestamp::at(now));
        let usable_allowed = matches!(self.kind, OperationKind::Update | OperationKind::Deprovision);
        self.instance_usable = instance_usable.filter(|_| usable_allowed);
        self.update_repeatable = update_repeatable.filter(|_| self.kind == OperationKind::Update);
    }
}

/// The recent operations of one record, oldest first.
///
/// A few finished ones are kept because OSB 2.16 asks brokers not to forget an outcome
/// right after reporting it: a platform may poll an `operation` id again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationLog(Vec<Operation>);

/// How many operations a record remembers.
const KEPT_OPERATIONS: usize = 8;

/// The most bytes of its description an operation of an earlier incarnation keeps (a
/// backend's failure text can be long; the platform needs its gist).
const REMEMBERED_DESCRIPTION_BYTES: usize = 512;

impl OperationLog {
    /// The operations it remembers, oldest first.
    pub fn iter(&self) -> std::slice::Iter<'_, Operation> {
        self.0.iter()
    }

    /// The newest operation.
    pub fn last(&self) -> Option<&Operation> {
        self.0.last()
    }

    /// The newest operation, mutably.
    pub fn last_mut(&mut self) -> Option<&mut Operation> {
        self.0.last_mut()
    }

    /// The running operation, if one is.
    pub fn running(&self) -> Option<&Operation> {
        self.0.last().filter(|op| op.in_progress())
    }

    /// The operation with this id.
    pub fn find(&self, id: &str) -> Option<&Operation> {
        self.0.iter().rev().find(|op| op.id == id)
    }

    /// The running operation with this id, mutably.
    pub fn running_mut(&mut self, id: &str) -> Option<&mut Operation> {
        self.0.last_mut().filter(|op| op.id == id && op.in_progress())
    }

    /// The running operation with this id if `owner` holds it: how a worker finds the
    /// operation it runs (gone if it finished, or another replica took it over).
    pub fn owned_mut(&mut self, id: &str, owner: &str) -> Option<&mut Operation> {
        self.running_mut(id).filter(|op| op.owner.as_deref() == Some(owner))
    }

    /// The operation with this id, unless it ended before `forgotten_before`:
    /// how `last_operation` looks one up, so operations of an earlier incarnation of the
    /// record are answered for the tombstone retention and no longer.
    pub fn find_remembered(&self, id: &str, forgotten_before: Timestamp) -> Option<&Operation> {
        self.find(id).filter(|op| op.finished_at.is_none_or(|end| end >= forgotten_before))
    }

    /// The log a record re-created under a used id starts from: the finished operations
    /// of `previous` (the tombstone it replaces) that ended at or after `since`, each
    /// kept only as far as `last_operation` answers it. So a platform polling the
    /// deprovision or unbind of the earlier incarnation is still told how it ended;
    /// the log stays bounded in count (`push`) and in bytes per operation.
    pub fn inherited(previous: &OperationLog, since: Timestamp) -> Self {
        let kept = previous.iter().filter(|op| op.finished_at.is_some_and(|end| end >= since));
        Self(kept.map(Operation::remembered).collect())
    }

    /// Appends an operation, forgetting the oldest beyond the kept few.
    pub fn push(&mut self, op: Operation) {
        self.0.push(op);
        if self.0.len() > KEPT_OPERATIONS {
            let excess = self.0.len() - KEPT_OPERATIONS;
            self.0.drain(..excess);
        }
    }
}

/// A record that carries operations (instances and bindings).
pub trait Tracked {
    /// Its operations.
    fn operations(&self) -> &OperationLog;
    /// Its operations, mutably.
    fn operations_mut(&mut self) -> &mut OperationLog;
}

impl Tracked for super::instance::ServiceInstance {
    fn operations(&self) -> &OperationLog {
        &self.operations
    }
    fn operations_mut(&mut self) -> &mut OperationLog {
        &mut self.operations
    }
}

impl Tracked for super::binding::Binding {
    fn operations(&self) -> &OperationLog {
        &self.operations
    }
    fn operations_mut(&mut self) -> &mut OperationLog {
        &mut self.operations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_spelled_as_osb_spells_them() {
        let json =
            serde_json::to_string(&[OperationState::InProgress, OperationState::Succeeded, OperationState::Failed])
                .expect("serializes");
        assert_eq!(json, r#"["in progress","succeeded","failed"]"#);
    }

    #[test]
    fn failure_flags_are_kept_only_where_osb_allows_them() {
        let mut op = Operation::start(OperationKind::Provision, true, SystemTime::now());
        op.fail(SystemTime::now(), "boom", Some(false), Some(false));
        assert_eq!((op.instance_usable, op.update_repeatable), (None, None));
        let mut op = Operation::start(OperationKind::Deprovision, true, SystemTime::now());
        op.fail(SystemTime::now(), "boom", Some(false), Some(false));
        assert_eq!((op.instance_usable, op.update_repeatable), (Some(false), None));
        let mut op = Operation::start(OperationKind::Update, true, SystemTime::now());
        op.fail(SystemTime::now(), "boom", Some(true), Some(false));
        assert_eq!((op.instance_usable, op.update_repeatable), (Some(true), Some(false)));
    }

    #[test]
    fn a_new_incarnation_remembers_the_finished_operations_within_the_retention_slimmed() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + s);
        let mut previous = OperationLog::default();
        let mut old = Operation::start(OperationKind::Provision, true, t(0));
        old.succeed(t(1));
        let mut update = Operation::start(OperationKind::Update, true, t(10));
        update.update = Some(PendingUpdate::default());
        update.fail(t(11), &"x".repeat(10_000), Some(true), Some(true));
        let mut gone = Operation::start(OperationKind::Deprovision, true, t(20));
        gone.owner = Some("me".into());
        gone.succeed(t(21));
        let (old_id, update_id, gone_id) = (old.id.clone(), update.id.clone(), gone.id.clone());
        for op in [old, update, gone, Operation::start(OperationKind::Update, true, t(30))] {
            previous.push(op);
        }
        let log = OperationLog::inherited(&previous, Timestamp::at(t(5)));
        assert!(log.find(&old_id).is_none(), "ended before the cutoff");
        assert_eq!(log.iter().count(), 2, "the running one is not inherited");
        let update = log.find(&update_id).expect("kept");
        assert!(update.update.is_none());
        assert!(update.description.as_deref().is_some_and(|d| d.len() <= REMEMBERED_DESCRIPTION_BYTES));
        let gone = log.find(&gone_id).expect("kept");
        assert_eq!((gone.state, gone.owner.as_deref()), (OperationState::Succeeded, None));
        assert!(log.find_remembered(&gone_id, Timestamp::at(t(21))).is_some());
        assert!(log.find_remembered(&gone_id, Timestamp::at(t(22))).is_none(), "forgotten once it is older");
    }

    #[test]
    fn the_log_keeps_the_newest_few_and_finds_by_id() {
        let mut log = OperationLog::default();
        let first = Operation::start(OperationKind::Bind, false, SystemTime::now());
        let first_id = first.id.clone();
        log.push(first);
        for _ in 0..KEPT_OPERATIONS {
            log.push(Operation::start(OperationKind::Update, false, SystemTime::now()));
        }
        assert!(log.find(&first_id).is_none());
        let last_id = log.last().map(|op| op.id.clone()).expect("has ops");
        assert!(log.running_mut(&last_id).is_some());
        assert!(log.running_mut("nope").is_none());
        assert!(log.owned_mut(&last_id, "me").is_none(), "nobody owns it yet");
        if let Some(op) = log.last_mut() {
            op.owner = Some("me".into());
        }
        assert!(log.owned_mut(&last_id, "me").is_some());
        assert!(log.owned_mut(&last_id, "other").is_none());
    }
}
