//! Tracked operations: what an instance or binding is doing, or last did.
//!
//! An operation lives inside the record it acts on (see [`OperationLog`]), so moving a
//! record into a new operation and checking that no other one is running is a single
//! compare-and-set on that record. That is what makes `ConcurrencyError` exact, and
//! what lets a restarted esm find and finish the operations it was running.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::instance::PendingUpdate;
use super::timestamp_at;

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
        }
    }

    /// The kind [`OperationKind::as_str`] spells as `text`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Provision, Self::Update, Self::Deprovision, Self::Bind, Self::Unbind]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One operation on an instance or a binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Opaque id returned as `operation` in a 202 and echoed back by the platform.
    pub id: String,
    /// What the operation does.
    pub kind: OperationKind,
    /// Where it stands.
    pub state: OperationState,
    /// Progress or failure text for the platform's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// OSB 2.16, failed update/deprovision only: whether the instance still works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    /// OSB 2.16, failed update only: whether repeating the update may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
    /// For an update: the changes, applied to the instance only when it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<PendingUpdate>,
    /// Whether the platform was answered 202 (so it polls) rather than waited for.
    #[serde(default)]
    pub asynchronous: bool,
    /// The esm process running it (a random id per process). Another process takes
    /// the operation over only once `lease_until` has passed, so two replicas never
    /// run one operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Unix time in milliseconds until which `owner` holds the operation; the owner
    /// renews it while it works.
    #[serde(default)]
    pub lease_until: u64,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
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
            asynchronous,
            owner: None,
            lease_until: 0,
            started_at: timestamp_at(now),
            finished_at: None,
        }
    }

    /// How long it took, once finished.
    pub fn took(&self) -> Option<std::time::Duration> {
        let started = humantime::parse_rfc3339(&self.started_at).ok()?;
        let finished = humantime::parse_rfc3339(self.finished_at.as_deref()?).ok()?;
        finished.duration_since(started).ok()
    }

    /// Whether it is still running.
    pub fn in_progress(&self) -> bool {
        self.state == OperationState::InProgress
    }

    /// Marks it succeeded.
    pub fn succeed(&mut self, now: SystemTime) {
        self.state = OperationState::Succeeded;
        self.description = Some(format!("{} succeeded", self.kind.as_str()));
        self.finished_at = Some(timestamp_at(now));
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
        self.finished_at = Some(timestamp_at(now));
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
