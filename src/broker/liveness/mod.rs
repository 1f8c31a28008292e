//! Watching whether instances are alive: backends' observations (periodically, and at
//! once when an engine tells of a change), instances' own reports with a TTL, and the
//! thresholds after which an instance is lost or dropped. The rules are in
//! `domain::liveness`; this applies them to the records and tells the changes.
//!
//! Reports arrive through `reports.rs`, into records of their own. An
//! instance's record is written only when the verdict, its reason, the components or a
//! report's status or note changed, so watching 100,000 steady instances costs reads, not writes. Every
//! replica watches every instance; compare-and-set makes one of them write (and emit)
//! each change.
//!
//! Each round (`ESM_LIVENESS_INTERVAL`) looks at the instances that are not up or that
//! report (found through the index), at the pool members, and at its slice of the sweep
//! that sees every instance once per `ESM_LIVENESS_SWEEP_INTERVAL`
//! (`sweep.rs`, which also says when a round looks at every instance at once).
//! So a round's cost follows what changed, and watching 100,000 steady instances costs
//! next to nothing.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::mpsc;

mod first;
mod reports;
mod sweep;

pub(super) use first::{FirstLook, Folded};
pub use reports::{MAX_REPORTING, Reporter, SPACING};

use crate::domain::bounded::{PlanId, ServiceId};
use crate::domain::event::{Event, EventKind};
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::liveness::ReportRecord;
use crate::domain::liveness::{Liveness, LivenessStatus, Observation, Report, Verdict};
use crate::domain::operation::OperationKind;
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};
use crate::store::{StoreError, Versioned, index};
use crate::wire::DeleteQuery;
use sweep::Look;

/// Instances looked at at once.
const CONCURRENT_LOOKS: usize = 16;
/// How long to wait before following an engine's changes again after its stream ended.
const RESUBSCRIBE: Duration = Duration::from_secs(1);
/// What liveness keeps in this process: private to `liveness/`.
pub(super) struct LivenessRoom {
    /// Instances to look at soon.
    prompt: sweep::Prompt,
    /// Instances' reports waiting to be written, coalesced per instance.
    reports: reports::Desk,
}

impl Default for LivenessRoom {
    fn default() -> Self {
        Self { prompt: sweep::Prompt::new(), reports: reports::Desk::default() }
    }
}

/// The statuses an instance is looked at in every round for: judged against the
/// thresholds as time passes, or not yet seen up.
pub(super) const UNSETTLED: [LivenessStatus; 3] =
    [LivenessStatus::Unknown, LivenessStatus::Degraded, LivenessStatus::Down];

/// What a look at an instance's deployment found.
pub(super) enum Looked {
    /// The backend reported each component.
    Components(Vec<crate::domain::liveness::Component>),
    /// The backend cannot observe this instance.
    Nothing,
    /// The backend could not be asked.
    Unreachable(String),
}

service! {
    /// Liveness's service: watching, judging and reporting instances' liveness.
    LivenessMonitor, room: LivenessRoom
}

impl LivenessMonitor<'_> {
    /// Watches every instance's liveness until shutdown: a round each
    /// `ESM_LIVENESS_INTERVAL` (over those not up or reporting and a slice of the
    /// sweep, or every live instance when it sweeps at once), a prompt look at
    /// instances an engine tells of or whose first look did not settle them
    /// (`first.rs`).
    pub fn spawn_liveness(&self) {
        self.broker.spawn_every(self.core.settings.liveness.interval, |this| async move {
            if let Err(e) = this.liveness().liveness_round().await {
                tracing::warn!(error = %e, "could not look at every instance's liveness");
            }
        });
        let receiver = self.room.prompt.receiver.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(receiver) = receiver {
            let this = Arc::clone(self.broker);
            self.broker.spawn_task(async move {
                let looks = tokio_stream_of(receiver).take_until(this.stopping().clone().cancelled_owned());
                looks
                    .for_each_concurrent(CONCURRENT_LOOKS, |(id, known)| {
                        let this = Arc::clone(&this);
                        async move {
                            match this.registrar().registry().await {
                                Ok(registry) => this.liveness().look_logged(&registry.record, &id, known).await,
                                Err(e) => tracing::debug!(error = %e, "cannot read the catalog to look at an instance"),
                            }
                        }
                    })
                    .await;
            });
        }
        for backend in self.core.backends.all() {
            let (this, backend) = (Arc::clone(self.broker), Arc::clone(backend));
            self.broker.spawn_task(async move {
                while !this.stopping().is_cancelled() {
                    // A backend without a change stream has only the periodic round.
                    let Some(mut changes) = backend.changes() else {
                        this.liveness().room.prompt.sweep_always();
                        return;
                    };
                    loop {
                        tokio::select! {
                            id = changes.next() => match id {
                                Some(id) => this.liveness().look_soon(&id, None),
                                None => break,
                            },
                            () = this.stopping().cancelled() => return,
                        }
                    }
                    tracing::debug!(backend = backend.name(), "the engine's change stream ended; following it again");
                    // What changed meanwhile went untold.
                    this.liveness().room.prompt.sweep_soon();
                    tokio::select! {
                        () = tokio::time::sleep(RESUBSCRIBE) => {}
                        () = this.stopping().cancelled() => return,
                    }
                }
            });
        }
    }

    /// Asks for a prompt look at instance `id` (dropped if the queue is full: the next
    /// round then looks at every instance).
    /// `known`: the record as its last write left it, if the caller has it.
    pub(super) fn look_soon(&self, id: &str, known: Option<Versioned<ServiceInstance>>) {
        if self.room.prompt.sender.try_send((id.to_owned(), known)).is_err() {
            self.room.prompt.sweep_soon();
        }
    }

    /// One round: a look at every live instance when it sweeps at once, else at those
    /// not up or reporting and at its slice of the spread sweep; and at every pool
    /// member (a broken one is replaced).
    pub async fn liveness_round(&self) -> OsbResult<()> {
        // One read of the catalog serves the whole round.
        let registry = self.broker.registrar().registry().await?.record;
        // Records are read a page at a time, not one by one.
        let filter = |field: &str, value: &str| vec![(field.to_owned(), value.to_owned())];
        let instances: BoxStream<'static, Result<Versioned<ServiceInstance>, StoreError>> =
            if self.room.prompt.take_sweep() {
                self.core.records.scan::<ServiceInstance>(filter(index::LIVE, "1")).boxed()
            } else {
                let unsettled =
                    UNSETTLED.map(|s| self.core.records.scan::<ServiceInstance>(filter(index::LIVENESS, s.as_str())));
                // Up instances that report: a report's TTL runs out with time alone. (The
                // others were looked at with the unsettled.)
                let records = self.core.records.clone();
                let reporting = self.core.records.scan_ids::<ReportRecord>(Vec::new()).try_filter_map(move |id| {
                    let records = records.clone();
                    async move {
                        let found = records.get::<ServiceInstance>(&id).await?;
                        Ok(found.filter(|v| {
                            v.record.is_platform_instance() && v.record.liveness_status() == LivenessStatus::Up
                        }))
                    }
                });
                let slice = self.sweep_slice().await?;
                futures_util::stream::iter(unsettled).flatten().chain(reporting).chain(slice).boxed()
            };
        let members = self.core.records.scan::<ServiceInstance>(filter(index::MEMBER, "1"));
        instances
            .chain(members)
            .map_err(OsbError::from)
            .try_for_each_concurrent(CONCURRENT_LOOKS, |found| {
                let registry = &registry;
                async move {
                    let id = found.record.id.clone();
                    if let Err(e) = self.look_at(registry, found).await {
                        tracing::debug!(instance_id = ?id, error = %e, "could not look at an instance's liveness");
                    }
                    Ok(())
                }
            })
            .await
    }

    /// Looks at the instance deployed as `id`: an engine names the deployment, which is
    /// a handed-out pool member's for an instance that was handed one.
    /// `known`: the record as its last write left it, if the caller had it.
    async fn look_logged(&self, registry: &Registry, id: &str, known: Option<Versioned<ServiceInstance>>) {
        let found = match known.filter(|known| known.record.is_live()) {
            Some(known) => Ok(Some(known)),
            None => self.core.deployed_as(id).await,
        };
        let looked = match found {
            Ok(Some(found)) => self.look_at(registry, found).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = looked {
            tracing::debug!(instance_id = ?id, error = %e, "could not look at an instance's liveness");
        }
    }

    /// Observes `instance` (as just read) and records its liveness if it changed; drops
    /// it if the drop threshold says so.
    async fn look_at(&self, registry: &Registry, found: Versioned<ServiceInstance>) -> OsbResult<()> {
        let instance = &found.record;
        let id = instance.id.as_str();
        if instance.status != InstanceStatus::Provisioned {
            return Ok(());
        }
        let looked = match self.broker.engines().unreachable(instance).await {
            Some(why) => Looked::Unreachable(why),
            None => match self.broker.registrar().teardown_backend(registry, instance).await {
                Ok((backend, _)) => Looked::at(backend.as_ref(), instance).await,
                Err(e) => Looked::Unreachable(e.to_string()),
            },
        };
        // The latest report, from its own record, for an instance that has reported (or
        // is looked at for the first time): most instances never report, and a round
        // does not read a report record for them.
        let report = match &instance.liveness {
            Some(liveness) if liveness.reported.is_none() => None,
            _ => self.latest_report(id).await?,
        };
        let written = self
            .change_liveness(id, Some(&found), |liveness| {
                looked.apply(liveness);
                if report.is_some() {
                    liveness.reported.clone_from(&report);
                }
            })
            .await?;
        self.drop_if_lost(written).await
    }

    /// Folds instance `id`'s report, just written to its record, into its verdict.
    pub(super) async fn look_reported(&self, id: &str, report: &Report) {
        let written = self.change_liveness(id, None, |liveness| liveness.reported = Some(report.clone())).await;
        if let Err(e) = match written {
            Ok(written) => self.drop_if_lost(written).await,
            Err(e) => Err(e),
        } {
            tracing::debug!(instance_id = ?id, error = %e, "could not judge an instance's report");
        }
    }

    /// Drops an instance (`instance`, as just written) whose verdict is `Drop`, unless
    /// an operation runs on it. A pool member is not dropped: its keeper replaces it.
    async fn drop_if_lost(&self, written: Option<(ServiceInstance, Liveness)>) -> OsbResult<()> {
        // A member that broke: its keeper is told at once.
        if let Some((member, _)) = written
            .as_ref()
            .filter(|(i, l)| i.pool.is_some() && !matches!(l.status, LivenessStatus::Up | LivenessStatus::Unknown))
        {
            self.broker.pools().pool_changed(&member.plan_id);
        }
        if let Some((instance, liveness)) = written.filter(|(i, _)| i.pool.is_none()) {
            let now = self.core.clock().millis();
            if liveness.verdict(now, self.core.settings.liveness.thresholds) == Verdict::Drop
                && instance.operations.running().is_none()
            {
                self.drop_lost(&instance, &liveness).await?;
            }
        }
        Ok(())
    }

    /// Applies `change` to live instance `id`'s liveness, judges it now, and writes it
    /// if it says something new; emits the transition.
    /// Returns the instance and its liveness (as written or as it stands), or `None`
    /// if the instance does not live.
    ///
    /// `known` is the instance as just read (with its version): when the change leaves
    /// it as it is, it is not read again (a round over steady instances reads each
    /// once), and a change is first written over it.
    async fn change_liveness(
        &self,
        id: &str,
        known: Option<&Versioned<ServiceInstance>>,
        change: impl Fn(&mut Liveness),
    ) -> OsbResult<Option<(ServiceInstance, Liveness)>> {
        let (clock, thresholds) = (self.core.clock(), self.core.settings.liveness.thresholds);
        let known = known.filter(|known| known.record.is_live());
        if let Some(known) = known {
            let mut copy = known.record.clone();
            if !judged(&mut copy, &change, clock, thresholds).0 {
                let liveness =
                    copy.liveness.clone().unwrap_or_else(|| Liveness::unknown(clock.millis(), clock.timestamp()));
                return Ok(Some((copy, liveness)));
            }
        }
        let mut transition = None;
        let written = self
            .core
            .records
            .modify_from::<ServiceInstance, OsbError, _>(id, known.cloned(), |instance| {
                transition = None;
                if !instance.is_live() {
                    return Ok(false);
                }
                let changed;
                (changed, transition) = self.judge(instance, &change);
                Ok(changed)
            })
            .await?;
        let Some(instance) = written.map(|w| w.record).filter(ServiceInstance::is_live) else {
            return Ok(None);
        };
        if transition.is_some() && instance.pool.is_none() {
            self.core.events.announced();
        }
        self.told(&instance, transition);
        let liveness =
            instance.liveness.clone().unwrap_or_else(|| Liveness::unknown(clock.millis(), clock.timestamp()));
        Ok(Some((instance, liveness)))
    }

    /// Deprovisions an instance lost for longer than the drop threshold, through the
    /// normal deprovision operation.
    async fn drop_lost(&self, instance: &ServiceInstance, liveness: &Liveness) -> OsbResult<()> {
        tracing::warn!(instance_id = ?instance.id, reason = ?liveness.reason, "dropping an instance lost for longer than ESM_LIVENESS_DROP_THRESHOLD");
        // Announced in the instance's outbox, so it comes before the deprovision's own
        // events; by the replica that finds no deprovision running yet.
        let event = Event::new(EventKind::InstanceDropped).because(liveness.reason.clone());
        self.core
            .records
            .modify::<ServiceInstance, OsbError, _>(&instance.id, |record| {
                let deprovisioning =
                    record.operations.running().is_some_and(|op| op.kind == OperationKind::Deprovision);
                if !record.is_live() || record.pool.is_some() || deprovisioning {
                    return Ok(false);
                }
                self.broker.operations().announce(record, event.clone());
                Ok(true)
            })
            .await?;
        self.core.events.announced();
        let query = DeleteQuery {
            service_id: Some(ServiceId::parse(instance.service_id.clone())?),
            plan_id: Some(PlanId::parse(instance.plan_id.clone())?),
            accepts_incomplete: Some(true),
            accept_incomplete: None,
        };
        match self.broker.instances().deprovision(&instance.id, &query).await {
            // Another replica (or the platform) got there first.
            Ok(_) | Err(OsbError::Gone | OsbError::ConcurrencyError(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A status transition: from, to, why.
pub(super) type Transition = (LivenessStatus, LivenessStatus, String);

/// Applies `change` to `instance`'s liveness and judges it now. Returns whether it
/// says something new ([`Liveness::differs_from`]: then it is worth writing), and the
/// transition if the status changed.
fn judged(
    instance: &mut ServiceInstance,
    change: &impl Fn(&mut Liveness),
    clock: crate::clock::Clock,
    thresholds: crate::domain::liveness::Thresholds,
) -> (bool, Option<Transition>) {
    let (now, timestamp) = (clock.millis(), clock.timestamp());
    let before = instance.liveness.clone();
    let mut liveness = before.clone().unwrap_or_else(|| Liveness::unknown(now, timestamp));
    change(&mut liveness);
    let previous = liveness.status;
    let mut transition = None;
    if liveness.judge(now, thresholds) {
        liveness.since = timestamp;
        transition = Some((previous, liveness.status, liveness.reason.clone()));
    }
    let unchanged = before.as_ref().is_some_and(|b| !liveness.differs_from(b));
    instance.liveness = Some(liveness);
    (!unchanged, transition)
}

impl Looked {
    /// Asks `backend` how `instance`'s deployment is.
    pub(super) async fn at(backend: &dyn crate::backend::Backend, instance: &ServiceInstance) -> Self {
        match backend.observe(&instance.deployed()).await {
            Ok(Some(components)) => Looked::Components(components),
            Ok(None) => Looked::Nothing,
            Err(e) => Looked::Unreachable(e.message),
        }
    }

    /// Records what was seen in `liveness`.
    pub(super) fn apply(&self, liveness: &mut Liveness) {
        match self {
            Looked::Components(components) => {
                liveness.observed = Some(Observation::of(components));
                liveness.components.clone_from(components);
            }
            Looked::Nothing => {
                liveness.observed = None;
                liveness.components.clear();
            }
            Looked::Unreachable(message) => liveness.observed = Some(Observation::unreachable(message)),
        }
    }
}

impl LivenessMonitor<'_> {
    /// Applies `change` to `instance`'s liveness (in the write of its record) and
    /// judges it now; a transition's event goes in the same write (`events` module
    /// docs). Returns whether the record changed, and the transition.
    pub(super) fn judge(
        &self,
        instance: &mut ServiceInstance,
        change: &impl Fn(&mut Liveness),
    ) -> (bool, Option<Transition>) {
        let (changed, happened) = judged(instance, change, self.core.clock(), self.core.settings.liveness.thresholds);
        if let Some((from, to, reason)) = &happened {
            let mut event = Event::new(EventKind::LivenessChanged).because(reason.clone());
            event.from = Some(from.as_str().to_owned());
            event.to = Some(to.as_str().to_owned());
            self.broker.operations().announce(instance, event);
        }
        (changed, happened)
    }

    /// Logs `instance`'s `transition`, once written (a pool member's are its pool's).
    pub(super) fn told(&self, instance: &ServiceInstance, transition: Option<Transition>) {
        if let Some((from, to, reason)) = transition.filter(|_| instance.pool.is_none()) {
            let id = instance.id.as_str();
            tracing::info!(instance_id = ?id, from = from.as_str(), to = to.as_str(), reason = ?reason, "liveness changed");
        }
    }
}

/// A receiver as a stream.
fn tokio_stream_of(mut receiver: mpsc::Receiver<Look>) -> impl futures_util::Stream<Item = Look> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
