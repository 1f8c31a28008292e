//! The pool keeper: a round every second, and at once after a change of settings or a
//! member deployed. A round reads the pools' listing once and looks only at the pools
//! that are due (see [`Schedule`]): a pool that holds nothing and wants nothing costs no
//! store work at all, so the keeper's idle cost does not grow with the number of pools.
//!
//! A look at a pool removes broken, aged and surplus members, deploys new ones up to the
//! pool's size (a few at a time, with backoff after failures: a failed deploy, or a
//! member that dies after it was ready), finishes claims a crash interrupted, and
//! deletes a drained pool once it is empty. Only the replica holding the pool's lease
//! (in the pool's record) acts; it takes the lease when there is something to do.
//!
//! Members are deployed and removed by the normal provision and deprovision
//! operations, so a restart (or kill -9) resumes a half-done refill like any other
//! operation: a member is recorded before it is deployed, and counted as deploying
//! until its operation ends, so a pool is never filled twice.

use crate::broker::Pools;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{PlanView, work};
use crate::domain::bounded::{OpaqueId, PlanId, ServiceId};
use crate::domain::event::{Event, EventKind};
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::OperationKind;
use crate::domain::pool::{
    Fault, Keeper, Look, MEMBER_PREFIX, MemberState, Membership, Pool, judge_member, next_look, proven,
};
use crate::error::{OsbError, OsbResult};
use crate::store::index::{self, Query};
use crate::store::{StoreError, Versioned};
use crate::wire::ProvisionRequest;

/// How often the keeper wakes to see which pools are due.
const ROUND: Duration = Duration::from_secs(1);
/// How long a replica keeps a pool without renewing; then another one may take over.
const KEEPER_LEASE: Duration = Duration::from_secs(10);
/// Interrupted claims finished per look at a pool.
const CLAIMS_PER_ROUND: usize = 16;
/// What members are recorded as requested by (they belong to no platform).
const MEMBER_ORG: &str = "esm-pool";

/// When the keeper looks at each pool next. A pool is due when it is new to this
/// process, its record changed (settings, counts, another replica's lease), the catalog
/// changed (maybe its manifest), something poked it (a member deployed or died, a
/// claim), or the time [`next_look`] gave has come. A std mutex: never held across an
/// `.await`.
#[derive(Default)]
pub(super) struct Schedule(std::sync::Mutex<HashMap<String, Due>>);

/// When one pool is due.
#[derive(Debug, Clone, Copy)]
struct Due {
    /// The pool record's version at the last look: another version is a change.
    version: u64,
    /// The registry generation at the last look: another one may be another manifest.
    generation: Option<u64>,
    /// When to look again whatever happens (Unix ms); `None`: on a change only.
    at: Option<u64>,
}

impl Schedule {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Due>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_due(&self, plan_id: &str, version: u64, generation: Option<u64>, now: u64) -> bool {
        self.entries().get(plan_id).is_none_or(|due| {
            due.version != version
                || generation.is_none()
                || due.generation != generation
                || due.at.is_some_and(|at| now >= at)
        })
    }

    fn looked(&self, plan_id: String, due: Due) {
        self.entries().insert(plan_id, due);
    }

    /// Makes the plan's pool due at the next round.
    pub(super) fn poke(&self, plan_id: &str) {
        self.entries().remove(plan_id);
    }

    /// Forgets the pools that are gone.
    fn retain(&self, listed: &HashSet<String>) {
        self.entries().retain(|plan_id, _| listed.contains(plan_id));
    }
}

/// What a look at a pool asks of the keeper's lease.
enum Lease {
    /// Nothing to do: no lease needed.
    Idle,
    /// Something to do, and this replica may do it.
    Act,
    /// Something to do, but another replica holds the pool until then (Unix ms).
    HeldUntil(u64),
}

impl Pools<'_> {
    /// Keeps every pool filled until shutdown.
    pub fn spawn_pool_keeper(&self) {
        let this = Arc::clone(self.broker);
        self.broker.spawn_task(async move {
            loop {
                if let Err(e) = this.pools().pool_round().await {
                    tracing::warn!(error = %e, "could not look after the warm pools");
                }
                tokio::select! {
                    () = tokio::time::sleep(ROUND) => {}
                    () = this.pools().room.wake.notified() => {}
                    () = this.stopping().cancelled() => return,
                }
            }
        });
    }

    /// One round: the pools' listing, read once, and a look at every pool that is due.
    pub async fn pool_round(&self) -> OsbResult<()> {
        let mut tally = self.room.tally.take();
        // Read before any pool's manifest is: a change after it is seen next round.
        let generation = self.broker.registrar().registry_generation();
        let pools = match self.core.records.list::<Pool>().await {
            Ok(pools) => pools,
            Err(e) => {
                tally.into_iter().for_each(|(plan, counts)| self.room.tally.restore(plan, counts));
                return Err(e.into());
            }
        };
        let listed: HashSet<String> = pools.iter().map(|p| p.record.plan_id.clone()).collect();
        self.room.schedule.retain(&listed);
        self.core.metrics().forget_pools_except(|plan_id| listed.contains(plan_id));
        let now = self.core.clock().millis();
        for pool in pools {
            let plan_id = pool.record.plan_id.clone();
            let counts = tally.remove(&plan_id).unwrap_or_default();
            if counts == (0, 0) && !self.room.schedule.is_due(&plan_id, pool.version, generation, now) {
                continue;
            }
            match self.keep_pool(pool, counts).await {
                Ok(Some((version, at))) => self.room.schedule.looked(plan_id, Due { version, generation, at }),
                // The record changed under the look: its new version makes it due.
                Ok(None) => self.room.tally.restore(plan_id, counts),
                Err(e) => {
                    self.room.tally.restore(plan_id.clone(), counts);
                    tracing::warn!(plan_id = ?plan_id, error = %e, "could not look after a pool");
                }
            }
        }
        Ok(())
    }

    /// Looks at one pool (as the round listed it) and brings it to its size. Adds this
    /// process's claim counts (`counts`) to its record, with the lease when there is
    /// something to do, the failures of members that died and the end of the backoff:
    /// at most one compare-and-set. Returns the record's version and when to look again,
    /// or `None` if the record changed meanwhile (the counts were not added).
    async fn keep_pool(
        &self,
        Versioned { mut version, record: mut pool }: Versioned<Pool>,
        counts: (u64, u64),
    ) -> OsbResult<Option<(u64, Option<u64>)>> {
        let now = self.core.clock().millis();
        // A plan that left the catalog (or lost its manifest) keeps no members; a store
        // that cannot be read now is no reason to remove any.
        let view = match self.broker.registrar().plan_view(&pool.service_id, &pool.plan_id).await {
            Err(e) if !matches!(e, OsbError::BadRequest(_)) => return Err(e),
            view => view,
        };
        let digest = view.as_ref().map(|v| v.entry.digest.clone()).unwrap_or_default();
        let members = self.unclaimed_members(&pool.plan_id).await?;
        let wanted = match (&view, pool.engine.as_deref()) {
            (Err(_), _) => 0,
            (Ok(_), Some(engine)) if pool.fill => {
                // Its own members there, and the room nothing else holds.
                let own = members.iter().filter(|m| m.record.engine() == engine).count();
                let room = self.broker.engines().free_room(engine).await;
                let room =
                    room.map_or(usize::MAX, |free| own.saturating_add(usize::try_from(free).unwrap_or(usize::MAX)));
                (pool.wanted() as usize).min(room)
            }
            (Ok(_), _) => pool.wanted() as usize,
        };
        let claimed = self
            .core
            .records
            .page::<ServiceInstance>(&Query::new([(index::POOL_CLAIMED, pool.plan_id.as_str())], CLAIMS_PER_ROUND))
            .await?;
        let mut look = Look { held: members.len() + claimed.len(), busy: !claimed.is_empty(), due: None };
        let (mut ready, mut broken, mut deploying) = (Vec::new(), Vec::new(), 0);
        for member in members {
            let state = match judge_member(&member.record, &pool, &digest, now) {
                // Moved off an engine being drained: its replacement is placed elsewhere.
                MemberState::Ready if self.broker.engines().draining(member.record.engine()).await => {
                    MemberState::Broken(Fault::EngineDraining)
                }
                state => state,
            };
            match state {
                MemberState::Ready => ready.push(member),
                MemberState::Deploying => deploying += 1,
                MemberState::Removing => look.busy = true,
                MemberState::Broken(fault) => broken.push((member, fault)),
            }
        }
        let surplus = (ready.len() + deploying).saturating_sub(wanted).min(ready.len());
        let missing = wanted.saturating_sub(ready.len() - surplus + deploying);
        let died: Vec<&Fault> = broken.iter().map(|(_, fault)| fault).filter(|f| f.is_new_failure()).collect();
        let recovers = died.is_empty() && pool.failures > 0 && ready.iter().any(|m| proven(&m.record, now));
        let empty = pool.draining && look.held == 0;
        let acts = !broken.is_empty() || surplus > 0 || (missing > 0 && now >= pool.retry_at) || !claimed.is_empty();
        let lease = self.lease_for(&pool, acts || empty, now);

        // The record: counts, failures and recovery are written whoever keeps the pool;
        // the lease only by the replica that is about to act.
        let (claims, misses) = counts;
        pool.claimed_total = pool.claimed_total.saturating_add(claims);
        pool.misses_total = pool.misses_total.saturating_add(misses);
        let mut changed = claims > 0 || misses > 0;
        for fault in &died {
            pool.failed(fault, self.core.clock().timestamp(), now);
            changed = true;
        }
        changed |= recovers && pool.recovered();
        if let Lease::Act = lease
            && self.renews_lease(&pool, now)
        {
            let until = now.saturating_add(u64::try_from(KEEPER_LEASE.as_millis()).unwrap_or(u64::MAX));
            pool.keeper = Some(Keeper { owner: self.broker.operations().replica().to_owned(), until });
            changed = true;
        }
        if changed {
            match self.core.records.replace(version, &pool).await {
                Ok(written) => version = written,
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        match lease {
            Lease::Act => {}
            Lease::Idle => {
                ready.iter().for_each(|m| look.ready_member(&pool, &m.record));
                if missing > 0 {
                    look.due = Some(look.due.map_or(pool.retry_at, |due| due.min(pool.retry_at)));
                }
                return Ok(Some((version, next_look(&pool, &look, now))));
            }
            Lease::HeldUntil(until) => return Ok(Some((version, Some(until)))),
        }

        for (member, fault) in broken {
            self.remove_member(member, &fault.to_string()).await?;
        }
        let why = if pool.draining { "the pool was deleted" } else { "the pool is smaller now" };
        for member in ready.drain(..surplus) {
            self.remove_member(member, why).await?;
        }
        if let Ok(view) = &view
            && missing > 0
            && now >= pool.retry_at
        {
            for _ in 0..missing.min(self.core.settings.pool_deploys.saturating_sub(deploying)) {
                self.deploy_member(&pool, view).await?;
            }
        }
        self.finish_claims(claimed).await?;
        if empty {
            match self.core.records.delete::<Pool>(&pool.plan_id, Some(version)).await {
                Ok(_) => self.core.metrics().forget_pools_except(|plan_id| plan_id != pool.plan_id),
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        look.busy = true;
        Ok(Some((version, next_look(&pool, &look, now))))
    }

    /// Whether a look that found something to do (`acts`) may do it here.
    fn lease_for(&self, pool: &Pool, acts: bool, now: u64) -> Lease {
        // A store only this process can open has no other keeper: a lease in it was
        // left by a process that is gone.
        match (acts, self.core.store().exclusive() || pool.keepable_by(self.broker.operations().replica(), now)) {
            (false, _) => Lease::Idle,
            (true, true) => Lease::Act,
            (true, false) => Lease::HeldUntil(pool.keeper.as_ref().map_or(now, |k| k.until)),
        }
    }

    /// Whether acting on `pool` needs its lease written: on a shared store, when this
    /// replica does not hold it or half of it is gone.
    fn renews_lease(&self, pool: &Pool, now: u64) -> bool {
        let lease = u64::try_from(KEEPER_LEASE.as_millis()).unwrap_or(u64::MAX);
        !self.core.store().exclusive()
            && pool
                .keeper
                .as_ref()
                .is_none_or(|k| k.owner != self.broker.operations().replica() || k.until < now + lease / 2)
    }

    /// Records a new member and starts its provision (the normal operation).
    async fn deploy_member(&self, pool: &Pool, view: &PlanView) -> OsbResult<()> {
        let id = format!("{MEMBER_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let request = ProvisionRequest {
            service_id: ServiceId::parse(pool.service_id.clone())?,
            plan_id: PlanId::parse(pool.plan_id.clone())?,
            organization_guid: OpaqueId::parse(MEMBER_ORG)?,
            space_guid: OpaqueId::parse(MEMBER_ORG)?,
            context: None,
            parameters: pool.member_parameters(),
            maintenance_info: None,
        };
        let placed = self.broker.engines().place(view, &id, pool.engine.as_deref()).await?;
        let op = self.broker.operations().start_op(OperationKind::Provision, true);
        let op_id = op.id.clone();
        let mut member = crate::broker::instances::new_instance(&id, &request, view, &placed, op);
        member.pool = Some(Membership { manifest_digest: Some(view.entry.digest.clone()), ..Membership::default() });
        let version = self.core.records.insert(&member).await?;
        self.broker.operations().spawn_work(
            work::Provision { may_adopt: false },
            id,
            op_id,
            Some(Versioned { version, record: member }),
        );
        Ok(())
    }

    /// Starts the deprovision of an unclaimed member (unless something else changed it
    /// meanwhile: the next look sees it again).
    async fn remove_member(&self, member: Versioned<ServiceInstance>, why: &str) -> OsbResult<()> {
        let Versioned { version, record: mut member } = member;
        let op = self.broker.operations().start_op(OperationKind::Deprovision, true);
        let op_id = op.id.clone();
        member.operations.push(op);
        let version = match self.core.records.replace(version, &member).await {
            Ok(version) => version,
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let liveness = member.liveness.as_ref().map(|l| l.reason.as_str());
        tracing::info!(member_id = %member.id, plan_id = ?member.plan_id, reason = why, "replacing a pool member");
        tracing::debug!(member_id = %member.id, liveness = ?liveness, "what the member's liveness said");
        let event = Event::on_member(EventKind::PoolMemberReplaced, &member.id, &member.service_id, &member.plan_id);
        self.core.events.emit(event.because(why));
        let id = member.id.clone();
        self.broker.operations().spawn_work(work::Deprovision, id, op_id, Some(Versioned { version, record: member }));
        Ok(())
    }

    /// Claimed members: retired once their instance has taken them over (its provision
    /// adopted the deployment); left alone while that provision runs (after a crash, its
    /// resumption adopts them); removed when it will never take them.
    async fn finish_claims(&self, claimed: Vec<Versioned<ServiceInstance>>) -> OsbResult<()> {
        for member in claimed {
            let Some(claimer) = member.record.pool.as_ref().and_then(|m| m.claimed_by.clone()) else { continue };
            let instance = self.core.records.get::<ServiceInstance>(&claimer).await?.map(|v| v.record);
            match instance {
                Some(i) if i.deployment_id.as_deref() == Some(member.record.id.as_str()) && i.is_live() => {
                    self.retire_member(&member.record.id, &claimer).await?;
                }
                // Its provision is still running (or will be resumed): it adopts the member.
                Some(i) if i.operations.running().is_some_and(|op| op.kind == OperationKind::Provision) => {}
                // Deprovisioned since, or never took it: what the member holds goes.
                _ if member.record.operations.running().is_none() => {
                    self.remove_member(member, "its claim was never completed").await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Marks a member its instance has taken over as gone (the deployment is the
    /// instance's now; the record stays as a tombstone until the purge).
    async fn retire_member(&self, member_id: &str, instance_id: &str) -> OsbResult<()> {
        self.core
            .records
            .modify::<ServiceInstance, OsbError, _>(member_id, |member| {
                let ours = member.pool.as_ref().is_some_and(|m| m.claimed_by.as_deref() == Some(instance_id));
                if !ours || !member.is_live() {
                    return Ok(false);
                }
                member.status = crate::domain::instance::InstanceStatus::Deprovisioned;
                member.deployment.clear();
                Ok(true)
            })
            .await?;
        Ok(())
    }
}
