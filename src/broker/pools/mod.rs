//! Warm pools (`/v2/et/pools`): setting one, its status, draining it, and handing a
//! member to a provision (the claim). The keeper (`keeper.rs`) deploys, repairs
//! and removes members; the rules are in `domain::pool`.

use std::collections::HashMap;

use serde_json::Value;

mod keeper;

use crate::broker::require;
use crate::domain::catalog::SchemaFor;
use crate::domain::event::{Event, EventKind};
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::operation::Operation;
use crate::domain::pool::{Fault, MAX_AGE_LIMIT, MAX_PARAMETERS_BYTES, MAX_SIZE, MemberState, Pool, judge_member};
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};
use crate::store::index::{self, Query};
use crate::store::{StoreError, Versioned};
use crate::wire::{MemberView, PoolRequest, PoolStatus};

/// Unclaimed members read at once: a pool holds at most [`MAX_SIZE`] ready ones, plus
/// those being deployed or removed.
pub(super) const MEMBER_PAGE: usize = 4 * MAX_SIZE as usize;
/// How many times a claim reads the pool again after losing every member it tried to
/// other claims (each read sees fewer members, so this ends long before it matters).
const CLAIM_ROUNDS: usize = 64;

/// What the pools keep in this process: private to `pools/`, so only the claim and the
/// keeper touch it.
#[derive(Default)]
pub(super) struct PoolRoom {
    /// Pool claims and misses not yet added to the pools' records.
    tally: Tally,
    /// Wakes the pool keeper before its next round.
    wake: tokio::sync::Notify,
    /// When the pool keeper looks at each pool next.
    schedule: keeper::Schedule,
}

/// Claims and misses counted in this process, not yet added to the pools' records
/// (the keeper adds them every round: one write per pool, not one per provision).
#[derive(Default)]
struct Tally(std::sync::Mutex<HashMap<String, (u64, u64)>>);

impl Tally {
    fn count(&self, plan_id: &str, claimed: bool) {
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = counts.entry(plan_id.to_owned()).or_default();
        if claimed {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// The counts so far, emptied.
    fn take(&self) -> HashMap<String, (u64, u64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Counts that could not be written, kept for the next round.
    fn restore(&self, plan_id: String, (claimed, missed): (u64, u64)) {
        let mut counts = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = counts.entry(plan_id).or_default();
        entry.0 += claimed;
        entry.1 += missed;
    }
}

service! {
    /// Warm pools' service: their settings and status, the claim, and the keeper.
    Pools, room: PoolRoom
}

impl Pools<'_> {
    /// `PUT /v2/et/pools/{plan_id}`: creates or changes the plan's pool. Members made
    /// with other parameters are replaced by the keeper.
    pub async fn set(&self, plan_id: &str, req: PoolRequest) -> OsbResult<PoolStatus> {
        require("plan_id", plan_id)?;
        let size = u32::try_from(req.size)
            .ok()
            .filter(|size| *size <= MAX_SIZE)
            .ok_or_else(|| OsbError::BadRequest(format!("size must be between 0 and {MAX_SIZE}")))?;
        let max_age_seconds = req
            .max_age_seconds
            .map(|age| {
                u64::try_from(age).ok().filter(|age| (1..=MAX_AGE_LIMIT).contains(age)).ok_or_else(|| {
                    OsbError::BadRequest(format!("max_age_seconds must be between 1 and {MAX_AGE_LIMIT}"))
                })
            })
            .transpose()?;
        let parameters = match req.parameters {
            None => None,
            Some(Value::Object(parameters)) if json_len(&parameters) > MAX_PARAMETERS_BYTES => {
                return Err(OsbError::BadRequest(format!(
                    "a pool's parameters are at most {MAX_PARAMETERS_BYTES} bytes of JSON (every member keeps a copy)"
                )));
            }
            Some(Value::Object(parameters)) => Some(parameters),
            Some(_) => return Err(OsbError::BadRequest("parameters must be a JSON object".into())),
        };
        let registry = self.broker.registrar().registry_holding(|r| service_of_plan(r, plan_id).is_ok()).await?.record;
        let service_id = service_of_plan(&registry, plan_id)?;
        let view = self.broker.registrar().plan_view(&service_id, plan_id).await?;
        let as_value = parameters.clone().map(Value::Object);
        view.plan.validate_parameters(SchemaFor::Provision, as_value.as_ref()).map_err(OsbError::BadRequest)?;
        view.backend
            .poolable(&view.manifest)
            .await
            .map_err(|why| OsbError::BadRequest(format!("plan {plan_id} cannot be pooled: {why}")))?;
        let fill = req.fill.unwrap_or(false);
        if let Some(engine) = &req.engine {
            // An engine that does not exist is the request's mistake, not a missing route.
            let target = self.broker.engines().get(engine).await.map_err(|e| match e {
                OsbError::NotFound(why) => OsbError::BadRequest(why),
                other => other,
            })?;
            if fill && target.capacity.instances.is_none() {
                return Err(OsbError::Unprocessable(format!(
                    "engine {engine} has no capacity: a pool fills only an engine with one"
                )));
            }
        } else if fill {
            return Err(OsbError::BadRequest("fill needs the engine to fill: name it in engine".into()));
        }
        let now = self.core.clock().timestamp();
        let engine = req.engine.map(|e| e.into_string());
        let fresh = Pool { max_age_seconds, parameters, engine, fill, ..Pool::new(plan_id, &service_id, size, now) };
        let changed = self
            .core
            .records
            .modify::<Pool, OsbError, _>(plan_id, |pool| {
                pool.service_id.clone_from(&service_id);
                pool.size = fresh.size;
                pool.max_age_seconds = fresh.max_age_seconds;
                pool.parameters.clone_from(&fresh.parameters);
                pool.engine.clone_from(&fresh.engine);
                pool.fill = fresh.fill;
                pool.draining = false;
                pool.updated_at.clone_from(&now);
                Ok(true)
            })
            .await?;
        if changed.is_none() {
            // A new pool. Racing creations may pass the count together: the cap bounds
            // the pools to it plus the requests in flight.
            let max = self.core.settings.max_pools;
            if self.core.records.list::<Pool>().await?.len() >= max {
                return Err(OsbError::Unprocessable(format!(
                    "esm keeps at most {max} warm pools (ESM_MAX_POOLS); delete one before setting another"
                )));
            }
            match self.core.records.insert(&fresh).await {
                // Set by a racing request: that one's settings stand; ask again to change them.
                Ok(_) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.pool_changed(plan_id);
        self.status(plan_id).await
    }

    /// `GET /v2/et/pools/{plan_id}`.
    pub async fn status(&self, plan_id: &str) -> OsbResult<PoolStatus> {
        let pool = self
            .core
            .records
            .get::<Pool>(plan_id)
            .await?
            .ok_or_else(|| OsbError::NotFound(format!("plan {plan_id} has no pool")))?
            .record;
        let registry = self.broker.registrar().registry().await?.record;
        self.status_of(&registry, pool).await
    }

    /// `GET /v2/et/pools`: every pool.
    pub async fn statuses(&self) -> OsbResult<Vec<PoolStatus>> {
        let registry = self.broker.registrar().registry().await?.record;
        let mut statuses = Vec::new();
        for Versioned { record, .. } in self.core.records.list::<Pool>().await? {
            statuses.push(self.status_of(&registry, record).await?);
        }
        Ok(statuses)
    }

    /// `DELETE /v2/et/pools/{plan_id}`: the pool's idle members are removed, then the
    /// pool; claimed ones are the platform's and stay.
    pub async fn drain(&self, plan_id: &str) -> OsbResult<()> {
        let drained = self
            .core
            .records
            .modify::<Pool, OsbError, _>(plan_id, |pool| {
                let changes = !pool.draining;
                pool.draining = true;
                Ok(changes)
            })
            .await?;
        if drained.is_none() {
            return Err(OsbError::NotFound(format!("plan {plan_id} has no pool")));
        }
        self.pool_changed(plan_id);
        Ok(())
    }

    async fn status_of(&self, registry: &Registry, pool: Pool) -> OsbResult<PoolStatus> {
        let digest =
            registry.manifest_for_plan(&pool.plan_id).map(|(_, entry)| entry.digest.clone()).unwrap_or_default();
        let now = self.core.clock().millis();
        let mut status = PoolStatus {
            plan_id: pool.plan_id.clone(),
            service_id: pool.service_id.clone(),
            size: pool.wanted(),
            max_age_seconds: pool.max_age_seconds,
            parameters: pool.parameters.clone(),
            draining: pool.draining,
            engine: pool.engine.clone(),
            fill: pool.fill,
            ready: 0,
            deploying: 0,
            removing: 0,
            broken: 0,
            claimed_total: pool.claimed_total,
            misses_total: pool.misses_total,
            last_error: pool.last_error.clone(),
            failures: pool.failures,
            retry_at: (pool.retry_at > now)
                .then(|| crate::domain::time::Timestamp::from_millis(pool.retry_at).to_string()),
            members: Vec::new(),
        };
        for member in self.unclaimed_members(&pool.plan_id).await? {
            let state = judge_member(&member.record, &pool, &digest, now);
            let counter = match state {
                MemberState::Ready => &mut status.ready,
                MemberState::Deploying => &mut status.deploying,
                MemberState::Removing => &mut status.removing,
                MemberState::Broken(_) => &mut status.broken,
            };
            *counter += 1;
            let reason = match &state {
                MemberState::Broken(fault) => Some(fault.to_string()),
                _ => None,
            };
            let record = member.record;
            status.members.push(MemberView {
                id: record.id,
                state: state.as_str().to_owned(),
                reason,
                created_at: record.created_at.to_string(),
            });
        }
        self.core.metrics().set_pool_members(&pool.plan_id, status.ready, status.deploying);
        Ok(status)
    }

    /// The unclaimed members of a plan's pool, in id order.
    pub(super) async fn unclaimed_members(&self, plan_id: &str) -> OsbResult<Vec<Versioned<ServiceInstance>>> {
        Ok(self.core.records.page::<ServiceInstance>(&Query::new([(index::POOL, plan_id)], MEMBER_PAGE)).await?)
    }

    /// The plan's pool if a provision asking for `parameters` may be handed one of its
    /// members; `None` when the plan has no pool (nothing is counted then).
    pub(super) async fn pool_for(&self, plan_id: &str) -> OsbResult<Option<Pool>> {
        Ok(self.core.records.get::<Pool>(plan_id).await?.map(|v| v.record).filter(|pool| !pool.draining))
    }

    /// Hands a ready member of `pool` to instance `instance_id`, whose record names the
    /// manifest whose digest is `digest`: compare-and-set on the member, so two claims
    /// (in this process or on two replicas) never get the same one. The instance's
    /// provision then adopts it (`operations/work.rs`). Counts a hit or a miss.
    ///
    /// Only a member made from that very manifest is taken, and that is decided by the
    /// compare-and-set itself: a member's digest is written once, when it is recorded,
    /// so the version the claim writes over is one whose digest was checked. The
    /// instance's manifest is the plan's current one for as long as the instance lives
    /// (it is written, and its manifest confirmed, before the claim; a manifest is only
    /// removed when no instance uses its plan), so a manifest deleted and registered
    /// again with other content, however quickly, never gets an old member handed out.
    pub(super) async fn claim_member(
        &self,
        pool: &Pool,
        digest: &str,
        instance_id: &str,
        parameters: Option<&Value>,
    ) -> OsbResult<bool> {
        let claimed = pool.accepts(parameters) && self.take_ready_member(pool, digest, instance_id).await?;
        self.room.tally.count(&pool.plan_id, claimed);
        self.core.metrics().pool_claim(&pool.plan_id, claimed);
        // The keeper refills at its next round (within a second), not now: its writes
        // would queue before those of the claims that follow in a burst.
        Ok(claimed)
    }

    async fn take_ready_member(&self, pool: &Pool, digest: &str, instance_id: &str) -> OsbResult<bool> {
        for _ in 0..CLAIM_ROUNDS {
            let now = self.core.clock().millis();
            let mut ready: Vec<_> = self
                .unclaimed_members(&pool.plan_id)
                .await?
                .into_iter()
                .filter(|m| judge_member(&m.record, pool, digest, now) == MemberState::Ready)
                .collect();
            if ready.is_empty() {
                return Ok(false);
            }
            // Racing claims start at different members, so most of them win at once.
            let start = crate::domain::pool::spread(instance_id) % ready.len();
            ready.rotate_left(start);
            for Versioned { version, mut record } in ready {
                // Judged against `digest` above; the compare-and-set below fails if the
                // record is not the one judged.
                let membership = record.pool.get_or_insert_default();
                membership.claimed_by = Some(instance_id.to_owned());
                membership.claimed_at = Some(self.core.clock().timestamp());
                match self.core.records.replace(version, &record).await {
                    Ok(_) => {
                        let event =
                            Event::on_member(EventKind::PoolMemberClaimed, &record.id, &pool.service_id, &pool.plan_id);
                        self.core.events.emit(Event { instance_id: Some(instance_id.to_owned()), ..event });
                        return Ok(true);
                    }
                    Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(false)
    }

    /// The member handed to instance `instance_id`, if one is waiting to be adopted.
    pub(super) async fn member_claimed_by(&self, instance_id: &str) -> OsbResult<Option<ServiceInstance>> {
        let query = Query::new([(index::CLAIMED_BY, instance_id)], 1);
        Ok(self.core.records.page::<ServiceInstance>(&query).await?.into_iter().next().map(|v| v.record))
    }

    /// A member's provision ended: a failure grows the pool's backoff (a success does
    /// not end it: the keeper does, once a member has stayed ready for a while), and the
    /// keeper looks at the pool at its next round.
    pub(super) async fn member_deployed(&self, member: &ServiceInstance) -> OsbResult<()> {
        let op = member.operations.last();
        let ready = member.status == InstanceStatus::Provisioned;
        if !ready {
            // The engine's words stay in the log; the pool and its event say esm's.
            let why = op.and_then(|op| op.description.as_deref());
            tracing::debug!(member_id = %member.id, plan_id = ?member.plan_id, why = ?why, "a pool member's deploy failed");
            let (now, at) = (self.core.clock().millis(), self.core.clock().timestamp());
            self.core
                .records
                .modify::<Pool, OsbError, _>(&member.plan_id, |pool| {
                    pool.failed(&Fault::DeployFailed, at, now);
                    Ok(true)
                })
                .await?;
        }
        let kind = if ready { EventKind::PoolMemberReady } else { EventKind::PoolMemberFailed };
        let event = Event::on_member(kind, &member.id, &member.service_id, &member.plan_id);
        self.core.events.emit(if ready { event } else { event.because(Fault::DeployFailed.to_string()) });
        if ready && let Some(took) = op.and_then(Operation::took) {
            self.core.metrics().pool_refilled(&member.plan_id, took);
        }
        self.pool_changed(&member.plan_id);
        Ok(())
    }

    /// Asks the keeper to look at the plan's pool now (after a change of settings, a
    /// member deployed or died, a claim).
    pub(super) fn pool_changed(&self, plan_id: &str) {
        self.room.schedule.poke(plan_id);
        self.room.wake.notify_one();
    }
}
/// How long `value` is as JSON.
fn json_len(value: &serde_json::Map<String, Value>) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// The offering a plan belongs to; 400 if no offering has it.
fn service_of_plan(registry: &Registry, plan_id: &str) -> OsbResult<String> {
    registry
        .services
        .iter()
        .find(|s| s.plan(plan_id).is_some())
        .map(|s| s.id.clone())
        .ok_or_else(|| OsbError::BadRequest(format!("unknown plan_id {plan_id:?}")))
}
