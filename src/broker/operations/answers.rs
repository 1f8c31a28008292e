//! What an operation log answers: whether an operation succeeded, the error a failed
//! synchronous one is answered with, what a re-sent request gets while its operation
//! runs, and a `last_operation` poll; shared by instances, bindings and the runner.

use crate::broker::{Answer, busy, purge};
use crate::domain::operation::{Operation, OperationKind, OperationLog, OperationState};
use crate::domain::time::Timestamp;
use crate::error::{OsbError, OsbResult};
use crate::wire::{LastOperationResponse, OperationResponse};

/// The answer to a request re-sent while its operation runs: OSB wants 202 with the
/// operation's id, but 202 only ever goes to a platform that accepts it; one that does
/// not is told the instance is busy (it may poll or retry).
pub(in crate::broker) fn resent(id: &str, running: &Operation, accepts_incomplete: bool) -> OsbResult<Option<String>> {
    if accepts_incomplete {
        Ok(Some(running.id.clone()))
    } else {
        Err(OsbError::ConcurrencyError(format!(
            "{id} is busy with this very {} (operation {}); poll last_operation, or resend with accepts_incomplete=true",
            running.kind.as_str(),
            running.id
        )))
    }
}

/// The answer to a removal (`removal`: deprovision, unbind) of `what` `id` while its
/// operation `running` runs: the same removal re-sent is answered as [`resent`]; any
/// other operation makes it busy.
pub(in crate::broker) fn removal_while(
    what: &str,
    id: &str,
    running: &Operation,
    removal: OperationKind,
    accepts_incomplete: bool,
) -> OsbResult<Answer<OperationResponse>> {
    if running.kind != removal {
        return Err(busy(what, id, running.kind));
    }
    resent(id, running, accepts_incomplete).map(|operation| Answer::Accepted(OperationResponse { operation }))
}

/// Whether an operation has succeeded.
pub(in crate::broker) fn succeeded(operations: &OperationLog, op_id: &str) -> bool {
    operations.find(op_id).is_some_and(|op| op.state == OperationState::Succeeded)
}

/// The error to answer a synchronous operation that failed with.
pub(in crate::broker) fn failure_of(operations: &OperationLog, op_id: &str) -> OsbError {
    match operations.find(op_id) {
        Some(op) => OsbError::OperationFailed {
            description: op.description.clone().unwrap_or_else(|| "the operation failed".into()),
            instance_usable: op.instance_usable,
            update_repeatable: op.update_repeatable,
        },
        None => OsbError::Internal(format!("operation {op_id} was lost")),
    }
}

/// What a `last_operation` poll is about.
pub(in crate::broker) struct Asked<'a> {
    /// The instance or binding id.
    pub(in crate::broker) id: &'a str,
    /// The operation that removes such a record (deprovision, unbind).
    pub(in crate::broker) removal: OperationKind,
    /// Operations that ended before this (RFC 3339) are forgotten: see
    /// `Tombstones::forgotten_before`.
    pub(in crate::broker) forgotten_before: Timestamp,
    /// Whether the record is live, not a tombstone.
    pub(in crate::broker) live: bool,
}

/// The state of the operation the platform polls (the newest one unless it names one).
/// A removal this record no longer remembers (purged with an earlier incarnation's
/// history, or pushed out of the log) answers `410 Gone`, as after the purge of its
/// tombstone (`purge::last_operation_gone`). A tombstone answers `410 Gone` (OSB: once
/// an asynchronous removal is done), but a platform asking about that very operation is
/// told how it ended.
pub(in crate::broker) fn last_operation_of(
    operations: &OperationLog,
    operation: Option<&str>,
    asked: &Asked<'_>,
) -> OsbResult<LastOperationResponse> {
    let id = asked.id;
    let remembered = |op_id| operations.find_remembered(op_id, asked.forgotten_before).is_some();
    if !asked.live && !operation.is_some_and(remembered) {
        return Err(OsbError::Gone);
    }
    let op =
        match operation {
            Some(op_id) => operations.find_remembered(op_id, asked.forgotten_before).ok_or_else(|| {
                match purge::last_operation_gone(operation, asked.removal, String::new()) {
                    OsbError::Gone => OsbError::Gone,
                    _ => OsbError::BadRequest(format!("{id} has no operation {op_id:?}")),
                }
            })?,
            None => operations.last().ok_or_else(|| OsbError::NotFound(format!("{id} has no operations")))?,
        };
    Ok(LastOperationResponse {
        state: op.state,
        description: op.description.clone(),
        instance_usable: op.instance_usable,
        update_repeatable: op.update_repeatable,
    })
}
