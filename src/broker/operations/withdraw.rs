//! A 503 means it did not happen: how a request gives up on the operation it recorded.
//!
//! A request records its operation in one write, checks what must be checked after that
//! write (the plan is still in the catalog, no bind races a deprovision, …), then
//! answers `202` (or runs the operation and answers its result). The success path costs
//! that one write and no more: a `202` follows an operation write the store confirmed.
//!
//! Every other way out, once the operation may be stored, goes through [`Operations::give_up`](crate::broker::Operations::give_up).
//! "May be": the operation's write returned `Ok`, or failed in a way that may still have
//! landed (the store's answer can be lost after it committed). The request withdraws the
//! operation before it answers: one compare-and-set marks it failed (with the refusal as
//! its description, the record left as a synchronous failure leaves it: see
//! `Work::withdrawn`), and only while this process still holds it. That is retried until
//! it is durable, for at most a third of the operation lease; only then does the request
//! answer its refusal (`503`, `422`, …). A read that finds the operation absent confirms
//! it too: its write never landed (the record is then written back unchanged, so a
//! compare-and-set still on its way can never land either; only an insert still on its
//! way when the read found no record at all cannot be fenced so: on MongoDB, a write
//! delayed in the network past a later read). No replica takes an
//! operation over before its lease has lapsed, so an operation withdrawn within the
//! lease is never run by anyone: a `503` means it did not happen.
//!
//! If the store stays away past that deadline, nobody can know yet whether the operation
//! will run. The request then answers `500` (never `503`), naming the operation to poll,
//! and a task goes on withdrawing it in the background, while this process's sweeper
//! leaves it alone. When the store comes back within the lease, the withdrawal lands
//! first and the operation never runs; only if this process dies too, or the store
//! stays away longer than the lease, may another replica take it over and run it, as
//! for any operation whose outcome its client was not told.
//!
//! A synchronous request runs its operation before it answers. If the store fails
//! before the backend is called (`Outcome::Unstarted`), the operation is withdrawn the
//! same way; once the backend call has started, the answer is `500`, never `503`: the
//! operation stays in progress and the sweeper finishes it (backend calls are
//! idempotent).
//!
//! Why not an "acknowledged" mark set after the operation's write: it costs a second
//! write on every successful request, and that write can lose its answer in the same
//! way, which leaves the same unknown outcome to answer.

use crate::broker::Operations;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::runner::{OnPlan, Running, end_event};
use crate::domain::operation::{OperationState, Tracked};
use crate::domain::outbox::Announcing;
use crate::error::{OsbError, OsbResult};
use crate::store::Record;

/// The first pause between two attempts to withdraw; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between two attempts (the breaker's probe interval: a store that
/// comes back is tried within about a second).
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Where an attempt to withdraw an operation left it.
enum Settled {
    /// It never runs: withdrawn now or by an earlier attempt, or never written.
    Withdrawn,
    /// It is not this process's to withdraw any more: another replica took it over, or
    /// it ended otherwise.
    Elsewhere,
}

impl Operations<'_> {
    /// Gives up on this process's operation `op_id` of record `T` `id`, recorded (or
    /// perhaps recorded: its write failed) and not run: withdraws it durably, then
    /// returns `refusal` to answer; `also` is what the withdrawal changes in the record
    /// besides the operation. Past the deadline, an error that is not a 503: see the
    /// module docs.
    pub(in crate::broker) async fn give_up<T: Record + Tracked + OnPlan + Announcing + Clone + 'static>(
        &self,
        id: &str,
        op_id: &str,
        refusal: OsbError,
        also: fn(&mut T),
    ) -> OsbError {
        // Held as running meanwhile, so this process's sweeper does not take it over.
        let running = Running::start(self.broker, op_id);
        let reason = refusal.to_string();
        let deadline = tokio::time::Instant::now() + self.core.settings.operation_lease / 3;
        let mut pause = FIRST_PAUSE;
        let failure = loop {
            match self.withdraw::<T>(id, op_id, &reason, also).await {
                Ok(Settled::Withdrawn) => return refusal,
                Ok(Settled::Elsewhere) => {
                    return OsbError::Internal(format!(
                        "operation {op_id} could not be withdrawn after: {reason}; it is another esm replica's now: \
                         poll last_operation with operation={op_id}"
                    ));
                }
                Err(e) if tokio::time::Instant::now() + pause >= deadline => break e,
                Err(_) => tokio::time::sleep(pause).await,
            }
            pause = (pause * 2).min(LONGEST_PAUSE);
        };
        tracing::error!(id, operation = op_id, error = %failure, "could not withdraw an operation in time; still trying");
        let this = Arc::clone(self.broker);
        let (id, op_id_owned) = (id.to_owned(), op_id.to_owned());
        self.broker.spawn_task(async move {
            let _running = running;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(LONGEST_PAUSE) => {}
                    // Left in progress: the next start, or another replica, runs it.
                    () = this.stopping().cancelled() => return,
                }
                if this.operations().withdraw::<T>(&id, &op_id_owned, &reason, also).await.is_ok() {
                    tracing::info!(id, operation = op_id_owned, "withdrew an operation once the store answered");
                    return;
                }
            }
        });
        OsbError::Internal(format!(
            "the store failed ({failure}) and operation {op_id} could not be withdrawn in time, so whether it runs is \
             not known yet: poll last_operation with operation={op_id}"
        ))
    }

    /// One attempt to withdraw operation `op_id` of record `T` `id`.
    async fn withdraw<T: Record + Tracked + OnPlan + Announcing + Clone>(
        &self,
        id: &str,
        op_id: &str,
        reason: &str,
        also: fn(&mut T),
    ) -> OsbResult<Settled> {
        let now = self.core.clock().now();
        let mut settled = Settled::Withdrawn;
        self.core
            .records
            .modify::<T, OsbError, _>(id, |record| {
                settled = Settled::Withdrawn;
                let Some(op) = record.operations().find(op_id) else {
                    // Its write never landed. Written back unchanged, the record's
                    // version moves on, so that write cannot land later either.
                    return Ok(true);
                };
                if op.state == OperationState::Failed {
                    // Withdrawn by an attempt whose answer was lost.
                    return Ok(false);
                }
                let Some(op) = record.operations_mut().owned_mut(op_id, self.replica()) else {
                    settled = Settled::Elsewhere;
                    return Ok(false);
                };
                op.fail(now, reason, Some(true), None);
                // Its end is committed with it: its start may be in the log already.
                let failed = end_event(op);
                also(record);
                self.announce(record, failed);
                Ok(true)
            })
            .await?;
        self.core.events.announced();
        Ok(settled)
    }
}
