//! The pool keeper: a round every second, and at once after a change of settings or a
//! member deployed. For each pool this replica keeps (one replica per pool, under a lease in
//! the pool's record) it removes broken, aged and surplus members, deploys new ones up
//! to the pool's size (a few at a time, with backoff after failed deploys), finishes
//! claims a crash interrupted, and deletes a drained pool once it is empty.
//!
//! Members are deployed and removed by the normal provision and deprovision
//! operations, so a restart (or kill -9) resumes a half-done refill like any other
//! operation: a member is recorded before it is deployed, and counted as deploying
//! until its operation ends, so a pool is never filled twice.

use std::sync::Arc;
use std::time::Duration;

use super::runner::Start;
use super::{Broker, PlanView, work};
use crate::domain::bounded::{OpaqueId, PlanId, ServiceId};
use crate::domain::event::Event;
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::OperationKind;
use crate::domain::pool::{Keeper, MEMBER_PREFIX, MemberState, Membership, Pool, judge_member};
use crate::error::{OsbError, OsbResult};
use crate::store::index::{self, Query};
use crate::store::{StoreError, Versioned};
use crate::wire::ProvisionRequest;

/// How often every pool is looked at.
const ROUND: Duration = Duration::from_secs(1);
/// How long a replica keeps a pool without renewing; then another one takes over.
const KEEPER_LEASE: Duration = Duration::from_secs(10);
/// Interrupted claims finished per round and pool.
const CLAIMS_PER_ROUND: usize = 16;
/// What members are recorded as requested by (they belong to no platform).
const MEMBER_ORG: &str = "esm-pool";

impl Broker {
    /// Keeps every pool filled until shutdown.
    pub fn spawn_pool_keeper(self: &Arc<Self>) {
        let this = Arc::clone(self);
        self.spawn_task(async move {
            loop {
                if let Err(e) = this.pool_round().await {
                    tracing::warn!(error = %e, "could not look after the warm pools");
                }
                tokio::select! {
                    () = tokio::time::sleep(ROUND) => {}
                    () = this.pool_wake.notified() => {}
                    () = this.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// One round over every pool.
    pub async fn pool_round(self: &Arc<Self>) -> OsbResult<()> {
        let mut tally = self.pool_tally.take();
        let pools = match self.records.list::<Pool>().await {
            Ok(pools) => pools,
            Err(e) => {
                tally.into_iter().for_each(|(plan, counts)| self.pool_tally.restore(plan, counts));
                return Err(e.into());
            }
        };
        for listed in pools {
            let plan_id = listed.record.plan_id.clone();
            let counts = tally.remove(&plan_id).unwrap_or_default();
            let kept = match self.take_pool(listed, counts).await {
                Ok(kept) => kept,
                Err(e) => {
                    self.pool_tally.restore(plan_id.clone(), counts);
                    tracing::warn!(plan_id = %plan_id, error = %e, "could not update a pool's record");
                    continue;
                }
            };
            if let Some(kept) = kept
                && let Err(e) = self.keep_pool(kept).await
            {
                tracing::warn!(plan_id = %plan_id, error = %e, "could not look after a pool");
            }
        }
        Ok(())
    }

    /// Adds this process's claim counts to the pool's record (as the round listed it)
    /// and takes (or renews) the keeper's lease if nobody else holds it: at most one
    /// compare-and-set, no read. Returns the pool if this replica keeps it. A record
    /// changed since the listing keeps the counts for the next round.
    async fn take_pool(&self, listed: Versioned<Pool>, counts: (u64, u64)) -> OsbResult<Option<Versioned<Pool>>> {
        let Versioned { version, record: mut pool } = listed;
        let (now, me) = (self.clock().millis(), self.replica());
        // A store only this process can open has no other keeper: a lease in it was
        // left by a process that is gone.
        let keeps = self.store().exclusive() || pool.keepable_by(me, now);
        let lease = u64::try_from(KEEPER_LEASE.as_millis()).unwrap_or(u64::MAX);
        // Renewed once half the lease is gone: one write per pool every 5 s.
        let renew = keeps && pool.keeper.as_ref().is_none_or(|k| k.owner != me || k.until < now + lease / 2);
        if renew {
            pool.keeper = Some(Keeper { owner: me.to_owned(), until: now + lease });
        }
        let (claimed, missed) = counts;
        pool.claimed_total = pool.claimed_total.saturating_add(claimed);
        pool.misses_total = pool.misses_total.saturating_add(missed);
        let version = if renew || claimed > 0 || missed > 0 {
            match self.records.replace(version, &pool).await {
                Ok(version) => version,
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {
                    self.pool_tally.restore(pool.plan_id, counts);
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            version
        };
        Ok(keeps.then_some(Versioned { version, record: pool }))
    }

    /// Brings one pool to its size.
    async fn keep_pool(self: &Arc<Self>, Versioned { version, record: pool }: Versioned<Pool>) -> OsbResult<()> {
        let now = self.clock().millis();
        // A plan that left the catalog (or lost its manifest) keeps no members; a store
        // that cannot be read now is no reason to remove any.
        let view = match self.plan_view(&pool.service_id, &pool.plan_id).await {
            Err(e) if !matches!(e, OsbError::BadRequest(_)) => return Err(e),
            view => view,
        };
        let manifest_id = view.as_ref().map(|v| v.manifest.id.clone()).unwrap_or_default();
        let wanted = if view.is_ok() { pool.wanted() as usize } else { 0 };
        let members = self.unclaimed_members(&pool.plan_id).await?;
        let held = members.len();
        let (mut ready, mut deploying) = (Vec::new(), 0);
        for member in members {
            match judge_member(&member.record, &pool, &manifest_id, now) {
                MemberState::Ready => ready.push(member),
                MemberState::Deploying => deploying += 1,
                MemberState::Removing => {}
                MemberState::Broken(why) => self.remove_member(member, &why).await?,
            }
        }
        let surplus = (ready.len() + deploying).saturating_sub(wanted).min(ready.len());
        let why = if pool.draining { "the pool was deleted" } else { "the pool is smaller now" };
        for member in ready.drain(..surplus) {
            self.remove_member(member, why).await?;
        }
        let missing = wanted.saturating_sub(ready.len() + deploying);
        if let Ok(view) = &view
            && missing > 0
            && now >= pool.retry_at
        {
            for _ in 0..missing.min(self.settings.pool_deploys.saturating_sub(deploying)) {
                self.deploy_member(&pool, view).await?;
            }
        }
        let interrupted = self.finish_claims(&pool.plan_id).await?;
        if pool.draining && held == 0 && interrupted == 0 {
            match self.records.delete::<Pool>(&pool.plan_id, Some(version)).await {
                Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Records a new member and starts its provision (the normal operation).
    async fn deploy_member(self: &Arc<Self>, pool: &Pool, view: &PlanView) -> OsbResult<()> {
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
        let op = self.start_op(OperationKind::Provision, true);
        let op_id = op.id.clone();
        let mut member = super::instances::new_instance(&id, &request, view, op);
        member.pool = Some(Membership::default());
        self.records.insert(&member).await?;
        self.spawn_work(work::Provision, id, op_id, Start::New);
        Ok(())
    }

    /// Starts the deprovision of an unclaimed member (unless something else changed it
    /// meanwhile: the next round looks again).
    async fn remove_member(self: &Arc<Self>, member: Versioned<ServiceInstance>, why: &str) -> OsbResult<()> {
        let Versioned { version, record: mut member } = member;
        let op = self.start_op(OperationKind::Deprovision, true);
        let op_id = op.id.clone();
        member.operations.push(op);
        match self.records.replace(version, &member).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(member_id = %member.id, plan_id = %member.plan_id, reason = why, "replacing a pool member");
        let event = Event::on_member("pool.member_replaced", &member.id, &member.service_id, &member.plan_id);
        self.events.emit(event.because(why));
        self.spawn_work(work::Deprovision, member.id, op_id, Start::New);
        Ok(())
    }

    /// Claimed members: retired once their instance has taken them over (its provision
    /// adopted the deployment); left alone while that provision runs (after a crash, its
    /// resumption adopts them); removed when it will never take them. Returns how many
    /// were found.
    async fn finish_claims(self: &Arc<Self>, plan_id: &str) -> OsbResult<usize> {
        let query = Query::new([(index::POOL_CLAIMED, plan_id)], CLAIMS_PER_ROUND);
        let claimed = self.records.page::<ServiceInstance>(&query).await?;
        let left = claimed.len();
        for member in claimed {
            let Some(claimer) = member.record.pool.as_ref().and_then(|m| m.claimed_by.clone()) else { continue };
            let instance = self.records.get::<ServiceInstance>(&claimer).await?.map(|v| v.record);
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
        Ok(left)
    }

    /// Marks a member its instance has taken over as gone (the deployment is the
    /// instance's now; the record stays as a tombstone until the purge).
    async fn retire_member(&self, member_id: &str, instance_id: &str) -> OsbResult<()> {
        self.records
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
