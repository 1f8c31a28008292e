//! The operation runner: every operation (provision, update, deprovision, bind,
//! unbind) runs through this one path.
//!
//! A request first records the operation in its record, owned by this process with a
//! lease (`worker.rs`). The runner then reads the record, calls the backend while
//! renewing the lease and within the plan's deadline, and records the result if this
//! process still holds the operation. What each kind does is a [`Work`] (`work.rs`):
//! its backend call and what its result changes in the record. How a run ended is an
//! explicit [`Outcome`]; a synchronous request turns it into its answer
//! ([`Outcome::answer`]), an asynchronous one has answered 202 already.

use crate::broker::Operations;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::task::JoinHandle;

use crate::backend::BackendError;
use crate::broker::Broker;
use crate::broker::liveness::Folded;
use crate::broker::operations::answers::{failure_of, succeeded};
use crate::domain::binding::Binding;
use crate::domain::event::{Event, Step};
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::{Operation, OperationKind, OperationState, Tracked};
use crate::domain::outbox::Announcing;
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};
use crate::store::{Record, Versioned};

/// How a run of an operation ended.
#[derive(Debug)]
pub(in crate::broker) enum Outcome<T> {
    /// The result is recorded: the record as written.
    Finished(T),
    /// esm is shutting down: the operation stays in progress, handed back (its lease
    /// expired), and another replica or the next start runs it again.
    ShuttingDown,
    /// Another replica holds the operation now (this one could not renew its lease in
    /// time): that one records the result.
    LeaseLost,
    /// The record, or the operation in it, no longer exists.
    Gone,
    /// The store failed before the backend was called: the operation stays in progress
    /// (the sweeper resumes it), unless a synchronous request withdraws it
    /// (`withdraw.rs`).
    Unstarted(OsbError),
}

impl<T: Tracked> Outcome<T> {
    /// What a synchronous request answers: the record if operation `op_id` succeeded,
    /// otherwise the error that says why not.
    pub(in crate::broker) fn answer(self, op_id: &str) -> OsbResult<T> {
        match self {
            Outcome::Finished(record) if succeeded(record.operations(), op_id) => Ok(record),
            Outcome::Finished(record) => Err(failure_of(record.operations(), op_id)),
            Outcome::ShuttingDown => Err(OsbError::Unavailable("esm is shutting down; retry".into())),
            Outcome::LeaseLost => Err(OsbError::ConcurrencyError(format!(
                "operation {op_id} was taken over by another esm replica, which finishes it; retry to see its outcome"
            ))),
            Outcome::Gone => Err(OsbError::Internal(format!("the record of operation {op_id} vanished while it ran"))),
            Outcome::Unstarted(e) => Err(e),
        }
    }

    /// How the run of operation `op_id` ended, as `esm_operations_total` labels it.
    fn label(&self, op_id: &str) -> &'static str {
        match self {
            Outcome::Finished(record) if succeeded(record.operations(), op_id) => "succeeded",
            Outcome::Finished(_) => "failed",
            Outcome::ShuttingDown => "shutting_down",
            Outcome::LeaseLost => "lease_lost",
            Outcome::Gone => "gone",
            Outcome::Unstarted(_) => "unstarted",
        }
    }
}

/// One kind of operation: its backend call and what its result changes in the record.
/// The runner does everything else.
#[async_trait]
pub(in crate::broker) trait Work: Send + Sync + 'static {
    /// The kind it is, for the metrics.
    const KIND: OperationKind;
    /// The record the operation belongs to.
    type Record: Record + Tracked + OnPlan + Announcing + Clone + 'static;
    /// What the backend call produces.
    type Output: Send + Sync;

    /// The service and plan whose `maximum_polling_duration` bounds the operation: by
    /// default the record's own.
    fn plan<'a>(&self, record: &'a Self::Record, _op: &'a Operation) -> (&'a str, &'a str) {
        record.service_and_plan()
    }

    /// Calls the backend for `record`'s operation `op`; `registry` is the catalog as
    /// the run read it.
    async fn call(&self, call: Call<'_, Self::Record>) -> Result<Self::Output, BackendError>;

    /// What withdrawing the operation before it ran changes in the record besides
    /// marking it failed (`withdraw.rs`): what a synchronous failure leaves, since
    /// nothing was made and nothing needs undoing.
    fn withdrawn(_record: &mut Self::Record) {}

    /// Applies the result to the record; the operation `op` in it is already marked
    /// succeeded or failed.
    fn record(&self, record: &mut Self::Record, op: &Operation, result: &Result<Self::Output, BackendError>);

    /// What the result's write records after the operation's end: a provision's or an
    /// update's first look at what it deployed (`liveness/first.rs`).
    fn fold(
        &self,
        _ops: &Operations<'_>,
        _record: &mut Self::Record,
        _result: &Result<Self::Output, BackendError>,
    ) -> Option<Folded> {
        None
    }

    /// What follows a recorded result, outside the record's write.
    async fn after(&self, _ops: &Operations<'_>, _record: &Self::Record) -> OsbResult<()> {
        Ok(())
    }
}

/// What a [`Work`]'s backend call is given.
pub(in crate::broker) struct Call<'a, R> {
    /// The operations service, and through it the core and the other services.
    pub(in crate::broker) ops: &'a Operations<'a>,
    /// The catalog as the run read it.
    pub(in crate::broker) registry: &'a Registry,
    /// The record the operation is on, as the run read it.
    pub(in crate::broker) record: &'a R,
    /// The operation.
    pub(in crate::broker) op: &'a Operation,
}

/// A record that belongs to a plan.
pub(in crate::broker) trait OnPlan {
    /// Its service and plan ids.
    fn service_and_plan(&self) -> (&str, &str);

    /// `event`, about this record.
    fn about(&self, event: Event) -> Event;

    /// The instance it is (or belongs to).
    fn instance_id(&self) -> &str;

    /// Whether its operations are announced as events (a warm pool member's are not:
    /// its pool announces what matters, `pool.*`).
    fn announced(&self) -> bool {
        true
    }

    /// It, if it is an instance.
    fn as_instance(&self) -> Option<&ServiceInstance> {
        None
    }
}

impl OnPlan for ServiceInstance {
    fn service_and_plan(&self) -> (&str, &str) {
        (&self.service_id, &self.plan_id)
    }

    fn about(&self, event: Event) -> Event {
        event.on_instance(&self.id, &self.service_id, &self.plan_id)
    }

    fn instance_id(&self) -> &str {
        &self.id
    }

    fn announced(&self) -> bool {
        self.pool.is_none()
    }

    fn as_instance(&self) -> Option<&ServiceInstance> {
        Some(self)
    }
}

impl OnPlan for Binding {
    fn service_and_plan(&self) -> (&str, &str) {
        (&self.service_id, &self.plan_id)
    }

    fn about(&self, event: Event) -> Event {
        let mut event = event.on_instance(&self.instance_id, &self.service_id, &self.plan_id);
        event.binding_id = Some(self.id.clone());
        event
    }

    fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

/// How the backend call ended, as far as the lease is concerned.
enum Held<R> {
    Done(Result<R, BackendError>),
    ShuttingDown,
    LeaseLost,
}

impl Operations<'_> {
    /// Runs operation `op_id` of record `id` as a task of its own. The task runs to the
    /// end even if the request that started it goes away (the client hung up), so its
    /// result is recorded; shutdown waits for it.
    /// `written`: the record as the request just wrote it, which the run then need not
    /// read again (`None` for an operation resumed or taken over).
    pub(in crate::broker) fn spawn_work<W: Work>(
        &self,
        work: W,
        id: String,
        op_id: String,
        written: Option<Versioned<W::Record>>,
    ) -> JoinHandle<OsbResult<Outcome<W::Record>>> {
        let running = Running::start(self.broker, &op_id);
        let this = Arc::clone(self.broker);
        self.broker.spawn_task(async move {
            let _running = running;
            let started = tokio::time::Instant::now();
            let outcome = this.operations().run(&work, &id, &op_id, written).await;
            let label = outcome.as_ref().map_or("unrecorded", |outcome| outcome.label(&op_id));
            this.metrics().operation_finished(W::KIND, label, started.elapsed());
            match &outcome {
                // The operation stays "in progress" in the store; the sweeper resumes it.
                Err(e) => {
                    tracing::error!(id, operation = op_id, error = %e, "could not record the result of an operation")
                }
                Ok(Outcome::LeaseLost) => {
                    tracing::warn!(
                        id,
                        operation = op_id,
                        "another replica took the operation over; it records the result"
                    );
                }
                Ok(Outcome::Gone) => {
                    tracing::warn!(id, operation = op_id, "the operation's record vanished while it ran")
                }
                Ok(Outcome::Unstarted(e)) => {
                    tracing::warn!(id, operation = op_id, error = %e, "the store failed before an operation could start")
                }
                Ok(Outcome::Finished(_) | Outcome::ShuttingDown) => {}
            }
            outcome
        })
    }

    /// Starts operation `op_id` just recorded in `written` (the record as written):
    /// `None` for an asynchronous one (the request answers 202 now), the record once it
    /// succeeded for a synchronous one.
    pub(in crate::broker) async fn carry_out<W: Work>(
        &self,
        work: W,
        written: Versioned<W::Record>,
        op_id: &str,
        asynchronous: bool,
    ) -> OsbResult<Option<W::Record>> {
        let id = written.record.id().to_owned();
        let task = self.spawn_work(work, id.clone(), op_id.to_owned(), Some(written));
        let id = id.as_str();
        if asynchronous {
            return Ok(None);
        }
        let outcome = task.await.map_err(|e| OsbError::Internal(format!("an operation stopped unexpectedly: {e}")))?;
        match outcome {
            // Nothing ran: withdrawn before the answer, so a 503 means it did not happen.
            Ok(Outcome::Unstarted(e)) => Err(self.give_up::<W::Record>(id, op_id, e, W::withdrawn).await),
            Ok(outcome) => outcome.answer(op_id).map(Some),
            // The backend was called: not a 503, since it may have happened. The
            // operation stays in progress and the sweeper runs it again to record it.
            Err(OsbError::Unavailable(reason)) => Err(OsbError::Internal(format!(
                "operation {op_id} started, but the store failed before its outcome was recorded ({reason}); esm \
                 finishes it once the store answers: poll last_operation with operation={op_id}"
            ))),
            Err(e) => Err(e),
        }
    }

    // The start is announced where the operation is recorded (in that write), so a
    // new run and a resumed one are alike here.
    pub(in crate::broker) async fn run<W: Work>(
        &self,
        work: &W,
        id: &str,
        op_id: &str,
        written: Option<Versioned<W::Record>>,
    ) -> OsbResult<Outcome<W::Record>> {
        let found = match written {
            Some(written) => Some(written),
            None => match self.core.records.get::<W::Record>(id).await {
                Ok(found) => found,
                Err(e) => return Ok(Outcome::Unstarted(e.into())),
            },
        };
        let Some(Versioned { version, record }) = found else {
            return Ok(Outcome::Gone);
        };
        let Some(op) = record.operations().find(op_id).cloned() else {
            return Ok(Outcome::Gone);
        };
        if !self.holds_fresh_lease(&op) {
            match self.refresh_lease::<W::Record>(id, &op).await {
                Ok(true) => {}
                Ok(false) => return Ok(Outcome::LeaseLost),
                Err(e) => return Ok(Outcome::Unstarted(e)),
            }
        }
        // One read of the catalog serves the deadline and the backend call.
        let registry = match self.broker.registrar().registry().await {
            Ok(registry) => registry.record,
            Err(e) => return Ok(Outcome::Unstarted(e)),
        };
        let (service_id, plan_id) = work.plan(&record, &op);
        let deadline = deadline(&registry, service_id, plan_id, &op);
        let call = work.call(Call { ops: self, registry: &registry, record: &record, op: &op });
        let result = match self.hold_lease::<W::Record, _>(id, op_id, deadline, call).await {
            Held::Done(result) => result,
            Held::ShuttingDown => {
                self.hand_back::<W::Record>(id, op_id).await;
                return Ok(Outcome::ShuttingDown);
            }
            Held::LeaseLost => return Ok(Outcome::LeaseLost),
        };
        let now = self.core.clock().now();
        let mut refused = Outcome::Gone;
        let mut recorded = false;
        let mut finished = None;
        let mut folded = None;
        // Written at the version read when nothing wrote the record meanwhile (no lease
        // renewal: a short call), without reading it again.
        let read = Some(Versioned { version, record });
        let written = self
            .core
            .records
            .modify_from::<W::Record, OsbError, _>(id, read, |current| {
                // Only the attempt that is written counts (see `claim`).
                (recorded, finished, folded) = (false, None, None);
                let log = current.operations_mut();
                if log.find(op_id).is_none() {
                    refused = Outcome::Gone;
                    return Ok(false);
                }
                // Finished or taken over by another replica meanwhile: not ours to record.
                let Some(op) = log.owned_mut(op_id, self.replica()) else {
                    refused = Outcome::LeaseLost;
                    return Ok(false);
                };
                match &result {
                    Ok(_) => op.succeed(now),
                    // Where a kind has the OSB 2.16 flags, what the backend does not say
                    // defaults to "still usable" and "may be repeated".
                    Err(e) => op.fail(
                        now,
                        &e.message,
                        Some(e.instance_usable.unwrap_or(true)),
                        Some(e.update_repeatable.unwrap_or(true)),
                    ),
                }
                let op = op.clone();
                work.record(current, &op, &result);
                // The end's event is committed with the end (`events` module docs).
                self.announce(current, end_event(&op));
                folded = work.fold(self, current, &result);
                finished = Some(op);
                recorded = true;
                Ok(true)
            })
            .await?;
        match written {
            Some(written) if recorded => {
                self.core.events.announced();
                if let Some(op) = finished {
                    log_outcome(id, &op);
                    self.deployed(&written, &op, folded).await;
                }
                let record = written.record;
                work.after(self, &record).await?;
                Ok(Outcome::Finished(record))
            }
            _ => Ok(refused),
        }
    }

    /// Whether this process holds running operation `op` with at least half a lease
    /// left, so it may start the backend call. A lease is computed before its write
    /// reaches the store: after a stall (the store or this process stopped for about
    /// a lease) a claim can land already lapsed, and the other replicas' claims, queued
    /// behind it, land right after, each one taking the operation over. Only the
    /// claim that arrives in time runs it; the others leave it to the next sweep.
    fn holds_fresh_lease(&self, op: &Operation) -> bool {
        let half = u64::try_from(self.core.settings.operation_lease.as_millis() / 2).unwrap_or(u64::MAX);
        op.in_progress()
            && op.owner.as_deref() == Some(self.replica())
            && op.lease_until >= self.core.clock().millis().saturating_add(half)
    }

    /// Renews the lease on `op` before its backend call when this process still owns
    /// it but too little of it is left (the store was slow between recording the
    /// operation and this run): a compare-and-set, so if another replica took it over
    /// meanwhile, this fails and that one runs it; once this succeeds, no sweep takes
    /// it over.
    async fn refresh_lease<T: Record + Tracked + Clone>(&self, id: &str, op: &Operation) -> OsbResult<bool> {
        if !op.in_progress() || op.owner.as_deref() != Some(self.replica()) {
            return Ok(false);
        }
        self.extend_lease::<T>(id, &op.id).await
    }

    /// Runs `call` while renewing this process's lease on operation `op_id` of record
    /// `T` `id`. Past `deadline` the call is abandoned as failed: the platform has
    /// stopped polling by then and counts the operation as failed, so esm must not
    /// report success later.
    async fn hold_lease<T: Record + Tracked + Clone, R>(
        &self,
        id: &str,
        op_id: &str,
        deadline: Option<SystemTime>,
        call: impl Future<Output = Result<R, BackendError>>,
    ) -> Held<R> {
        let bounded = async {
            let Some(deadline) = deadline else {
                return call.await;
            };
            tokio::time::timeout(self.core.clock().until(deadline), call)
                .await
                .unwrap_or_else(|_| Err(BackendError::new("did not finish within the plan's maximum_polling_duration")))
        };
        tokio::pin!(bounded);
        let mut renewals = tokio::time::interval(self.core.settings.operation_lease / 3);
        renewals.tick().await;
        loop {
            tokio::select! {
                result = &mut bounded => return Held::Done(result),
                () = self.core.shutdown.cancelled() => return Held::ShuttingDown,
                _ = renewals.tick() => {
                    if !self.renew::<T>(id, op_id).await {
                        return Held::LeaseLost;
                    }
                }
            }
        }
    }
}

impl Operations<'_> {
    /// Puts `event` about `record` in its outbox, stamped: it is committed with the
    /// write that makes the change it tells of. Nothing for a record whose operations
    /// are not announced (a warm pool member).
    pub(in crate::broker) fn announce<T: OnPlan + Announcing>(&self, record: &mut T, event: Event) {
        if record.announced() {
            let event = self.core.events.stamped(record.about(event));
            record.outbox_mut().push(event);
        }
    }

    /// A deployment just made or remade by `op` (`written`, as written): its liveness
    /// was looked at in the run (`folded` in the write), or is looked at now, not at
    /// the next round, starting from the record as written.
    async fn deployed<T: OnPlan>(&self, written: &Versioned<T>, op: &Operation, folded: Option<Folded>) {
        let deployed = matches!(op.kind, OperationKind::Provision | OperationKind::Update | OperationKind::Relocate);
        let id = written.record.instance_id();
        if deployed && op.state == OperationState::Succeeded {
            let known = written.record.as_instance().filter(|instance| instance.id == id);
            match (known, folded) {
                (Some(known), Some(folded)) => {
                    self.broker.liveness().looked_first(known, written.version, folded).await
                }
                (known, _) => {
                    self.broker.liveness().look_soon(
                        id,
                        known.map(|record| Versioned { version: written.version, record: record.clone() }),
                    );
                }
            }
        }
    }
}

/// The event of a finished operation `op`.
pub(in crate::broker) fn end_event(op: &Operation) -> Event {
    let step = if op.state == OperationState::Succeeded { Step::Succeeded } else { Step::Failed };
    let mut event = Event::operation(op.kind, step, &op.id);
    if step == Step::Failed {
        event.reason.clone_from(&op.description);
    }
    event
}

/// An operation in this process's running set (`OperationsRoom::running`) for as long as its
/// task lives, however the task ends.
pub(in crate::broker) struct Running {
    broker: Arc<Broker>,
    op_id: String,
}

impl Running {
    pub(in crate::broker) fn start(broker: &Arc<Broker>, op_id: &str) -> Self {
        broker.operations().running_ops().insert(op_id.to_owned());
        Self { broker: Arc::clone(broker), op_id: op_id.to_owned() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.broker.operations().running_ops().remove(&self.op_id);
    }
}

/// When an asynchronous operation must be over: its start plus the plan's
/// `maximum_polling_duration` (OSB 2.15). Synchronous ones have no deadline.
fn deadline(registry: &Registry, service_id: &str, plan_id: &str, op: &Operation) -> Option<SystemTime> {
    if !op.asynchronous {
        return None;
    }
    let seconds = registry.service(service_id)?.plan(plan_id)?.maximum_polling_duration?;
    Some(op.started_at.time() + Duration::from_secs(u64::from(seconds)))
}

/// One line per finished operation in the daemon's log: INFO when it succeeded, WARN
/// with the reason when it failed. Ids are printable by type; the reason is a backend's
/// or an engine's text, so it is written quoted (`?`), control characters escaped.
fn log_outcome(id: &str, op: &Operation) {
    let kind = op.kind.as_str();
    let took = op.took().map_or_else(|| "?".to_owned(), |took| format!("{:.1} s", took.as_secs_f64()));
    match op.state {
        OperationState::Failed => {
            let reason = op.description.as_deref().unwrap_or("no reason given");
            tracing::warn!(target: "esm::operations", id, kind, took, reason = ?reason, "{kind} of {id} failed after {took}");
        }
        _ => {
            tracing::info!(target: "esm::operations", id, kind, took, "{kind} of {id} {} in {took}", op.state.as_str())
        }
    }
}
