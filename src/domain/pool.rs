//! Warm pools: instances of a plan deployed ahead of time, so a provision is answered
//! at once by handing one out. The rules are here (what a pool asks for, which
//! members can be handed out, what a member is judged to be); the broker's
//! `broker/pools/` applies them to the store.
//!
//! A member is an ordinary instance record with a [`Membership`]: it is deployed by
//! the normal provision operation and removed by the normal deprovision operation.
//! A claim hands it to a platform instance, whose record then points at the member's
//! deployment (`ServiceInstance::deployment_id`); a claimed member never returns.

use crate::domain::time::Timestamp;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::instance::{InstanceStatus, ServiceInstance};
use super::liveness::LivenessStatus;
use super::operation::{OperationKind, OperationState};
use super::registry::Registry;

/// The largest pool: each member is a whole deployment held idle.
pub const MAX_SIZE: u32 = 100;
/// The largest `parameters` a pool takes, as JSON: every member stores them, and a
/// claim reads every member, so one request must not make up to [`MAX_SIZE`] copies of
/// a whole request body.
pub const MAX_PARAMETERS_BYTES: usize = 64 * 1024;
/// The longest `max_age_seconds` (a year).
pub const MAX_AGE_LIMIT: u64 = 365 * 24 * 3600;
/// The prefix of every member's id, so a member is recognisable on the engine
/// (its resources carry it in `esm.instance_id`).
pub const MEMBER_PREFIX: &str = "esm-pool-";
/// Backoff after failed deploys grows to this and no further.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a member must stay ready before the pool counts as healthy again and its
/// backoff ends: a deploy that succeeds is not enough, since a member that dies
/// seconds later is a failure too.
pub const PROVEN_AFTER: Duration = Duration::from_secs(60);
/// How soon the keeper looks at a pool again while something in it moves (members
/// deploying, removed or missing, claims to finish).
pub const BUSY_LOOK: Duration = Duration::from_secs(1);
/// How soon the keeper looks at a settled pool again (all its members ready) when
/// nothing tells it of a change: a safety net for changes made on another replica.
pub const SETTLED_LOOK: Duration = Duration::from_secs(10);

/// A pool, as stored (one record per plan, keyed by the plan id).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// The plan whose instances it holds.
    pub plan_id: String,
    /// The plan's offering.
    pub service_id: String,
    /// How many ready members to keep.
    pub size: u32,
    /// Members older than this are replaced.
    pub max_age_seconds: Option<u64>,
    /// The parameters members are deployed with; a provision must ask for exactly these
    /// (or for none when these are none) to be handed a member.
    pub parameters: Option<Map<String, Value>>,
    /// Deleted: its idle members are being removed; the record goes when none is left.
    #[serde(default)]
    pub draining: bool,
    /// Members handed out, ever.
    #[serde(default)]
    pub claimed_total: u64,
    /// Provisions of the plan that found no member to take.
    #[serde(default)]
    pub misses_total: u64,
    /// The last member deploy that failed.
    pub last_error: Option<PoolError>,
    /// Member deploys that failed in a row (drives the backoff).
    #[serde(default)]
    pub failures: u32,
    /// No new member is deployed before this (Unix ms): the backoff.
    #[serde(default)]
    pub retry_at: u64,
    /// The replica that keeps the pool filled, and until when (Unix ms).
    pub keeper: Option<Keeper>,
    /// When it was first set (RFC 3339).
    pub created_at: Timestamp,
    /// When its settings last changed (RFC 3339).
    pub updated_at: Timestamp,
    /// The one engine its members are placed on, if the pool targets one
    /// (`domain::engine`); else they go where the plan's placement rule says.
    pub engine: Option<String>,
    /// Fills its engine to full: as many members as the engine has room for, at most
    /// `size` (`broker::pools`).
    #[serde(default)]
    pub fill: bool,
}

/// A failed member deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolError {
    /// What the backend said.
    pub message: String,
    /// When.
    pub at: Timestamp,
}

/// Who keeps a pool filled: one replica at a time, under a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keeper {
    /// The replica.
    pub owner: String,
    /// Its lease ends (Unix ms).
    pub until: u64,
}

impl Pool {
    /// A new pool of `size` for `plan_id` of `service_id`, set at `at` (RFC 3339).
    pub fn new(plan_id: &str, service_id: &str, size: u32, at: Timestamp) -> Self {
        Self {
            plan_id: plan_id.to_owned(),
            service_id: service_id.to_owned(),
            size,
            max_age_seconds: None,
            parameters: None,
            draining: false,
            claimed_total: 0,
            misses_total: 0,
            last_error: None,
            failures: 0,
            retry_at: 0,
            keeper: None,
            created_at: at,
            updated_at: at,
            engine: None,
            fill: false,
        }
    }

    /// Whether a provision asking for `requested` parameters may be handed a member:
    /// the parameters a running deployment was made with cannot be changed, so they
    /// must be the pool's exactly. An empty object is the same as none.
    pub fn accepts(&self, requested: Option<&Value>) -> bool {
        let requested = requested.and_then(Value::as_object).filter(|p| !p.is_empty());
        let own = self.parameters.as_ref().filter(|p| !p.is_empty());
        requested == own
    }

    /// The parameters a member is deployed with.
    pub fn member_parameters(&self) -> Option<Value> {
        self.parameters.clone().filter(|p| !p.is_empty()).map(Value::Object)
    }

    /// How many members it wants ready (none while draining).
    pub fn wanted(&self) -> u32 {
        if self.draining { 0 } else { self.size }
    }

    /// Whether `replica` may keep the pool at `now`: it holds the lease, or nobody does.
    pub fn keepable_by(&self, replica: &str, now: u64) -> bool {
        self.keeper.as_ref().is_none_or(|k| k.owner == replica || k.until <= now)
    }

    /// Records a failure (a member's deploy failed, or a member died after it was
    /// ready): the backoff doubles from a second to [`MAX_BACKOFF`]. `fault` is told in
    /// esm's words, never the engine's.
    pub fn failed(&mut self, fault: &Fault, at: Timestamp, now: u64) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(PoolError { message: fault.to_string(), at });
        self.retry_at = now.saturating_add(backoff_ms(self.failures));
    }

    /// Records that a member has stayed ready for [`PROVEN_AFTER`]: the backoff ends.
    /// Whether anything changed.
    pub fn recovered(&mut self) -> bool {
        let changes = self.failures > 0 || self.retry_at > 0;
        self.failures = 0;
        self.retry_at = 0;
        changes
    }
}

/// The backoff after `failures` failed deploys in a row, in milliseconds.
pub fn backoff_ms(failures: u32) -> u64 {
    let max = u64::try_from(MAX_BACKOFF.as_millis()).unwrap_or(u64::MAX);
    1000u64.checked_shl(failures.saturating_sub(1)).unwrap_or(max).min(max)
}

/// A number from an instance id (FNV-1a), so claims racing for one pool start at
/// different members.
pub fn spread(id: &str) -> usize {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    usize::try_from(hash % 1_000_003).unwrap_or(0)
}

/// What makes an instance record a pool member.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The digest of the manifest it was made from (`ManifestEntry::digest`): a member
    /// whose digest is not its plan's current one is never handed out. Members made
    /// before esm recorded it have none, and are replaced.
    pub manifest_digest: Option<String>,
    /// The instance it was handed to, once claimed.
    pub claimed_by: Option<String>,
    /// When (RFC 3339).
    pub claimed_at: Option<Timestamp>,
}

/// What an unclaimed member is, for the keeper and the pool's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    /// Its provision is running.
    Deploying,
    /// Deployed and live: can be handed out.
    Ready,
    /// Its deprovision is running.
    Removing,
    /// Must be replaced, and why.
    Broken(Fault),
}

/// Why a member must be replaced, in esm's words: these reach clients (the pool's
/// status, its `last_error`, events), so they never carry an engine's text (which may
/// name hosts and addresses); the keeper logs that at debug level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Its deploy failed (counted as a failure when it ended).
    DeployFailed,
    /// Deployed, then found not live (`degraded` or `down`): a failure, as a failed
    /// deploy is.
    Died(LivenessStatus),
    /// Made from another manifest than the plan's current one.
    ManifestChanged,
    /// Made with other parameters than the pool's.
    ParametersChanged,
    /// Older than the pool's `max_age_seconds`.
    Aged(u64),
    /// On an engine being drained: replaced by one on another engine.
    EngineDraining,
    /// On another engine than the one the pool now targets.
    OtherEngine,
}

impl Fault {
    /// Whether it counts against the pool's backoff when the keeper finds it. A failed
    /// deploy was counted when it ended; a member replaced because the pool or the
    /// plan changed did nothing wrong.
    pub fn is_new_failure(&self) -> bool {
        matches!(self, Self::Died(_))
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DeployFailed => write!(f, "deploying a member failed"),
            Self::Died(status) => write!(f, "a member was {} after it was deployed", status.as_str()),
            Self::ManifestChanged => write!(f, "the plan's manifest changed"),
            Self::ParametersChanged => write!(f, "the pool's parameters changed"),
            Self::Aged(max_age) => write!(f, "older than max_age_seconds ({max_age})"),
            Self::EngineDraining => write!(f, "its engine is being drained"),
            Self::OtherEngine => write!(f, "the pool targets another engine"),
        }
    }
}

impl MemberState {
    /// The name the pool's status uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deploying => "deploying",
            Self::Ready => "ready",
            Self::Removing => "removing",
            Self::Broken(_) => "broken",
        }
    }
}

/// Whether `member` was made from the manifest whose digest is `digest`.
pub fn made_from(member: &ServiceInstance, digest: &str) -> bool {
    member.pool.as_ref().and_then(|m| m.manifest_digest.as_deref()) == Some(digest)
}

/// Whether `instance`, if it is a pool member, would be deployed with the manifest
/// whose digest it records. A member is recorded with the plan's manifest of the
/// moment; should that manifest be replaced before the member's deploy reads it, the
/// deploy must fail rather than make a member whose digest lies (which a later return
/// to the first content would hand out).
pub fn deploys_recorded_manifest(instance: &ServiceInstance, registry: &Registry) -> bool {
    if instance.pool.is_none() {
        return true;
    }
    let current = registry.manifests.get(&instance.manifest_id).map(|entry| entry.digest.as_str());
    current.is_some_and(|digest| made_from(instance, digest))
}

/// What unclaimed `member` of `pool` is at `now` (Unix ms); `digest` is the digest of
/// the manifest the plan has now.
pub fn judge_member(member: &ServiceInstance, pool: &Pool, digest: &str, now: u64) -> MemberState {
    if let Some(op) = member.operations.running() {
        return match op.kind {
            OperationKind::Deprovision => MemberState::Removing,
            _ => MemberState::Deploying,
        };
    }
    if member.status != InstanceStatus::Provisioned {
        return MemberState::Broken(Fault::DeployFailed);
    }
    match member.liveness_status() {
        LivenessStatus::Up | LivenessStatus::Unknown => {}
        status => return MemberState::Broken(Fault::Died(status)),
    }
    if !made_from(member, digest) {
        return MemberState::Broken(Fault::ManifestChanged);
    }
    if member.parameters != pool.member_parameters() {
        return MemberState::Broken(Fault::ParametersChanged);
    }
    if pool.engine.as_deref().is_some_and(|target| target != member.engine()) {
        return MemberState::Broken(Fault::OtherEngine);
    }
    if let Some(max_age) = pool.max_age_seconds
        && expires_at(member, max_age).is_some_and(|at| now >= at)
    {
        return MemberState::Broken(Fault::Aged(max_age));
    }
    MemberState::Ready
}

/// Whether a ready member has stayed ready for [`PROVEN_AFTER`] at `now`.
pub fn proven(member: &ServiceInstance, now: u64) -> bool {
    let proven_after = u64::try_from(PROVEN_AFTER.as_millis()).unwrap_or(u64::MAX);
    ready_since(member).is_some_and(|at| now.saturating_sub(at) >= proven_after)
}

/// When a member ages past `max_age` seconds (Unix ms).
fn expires_at(member: &ServiceInstance, max_age: u64) -> Option<u64> {
    ready_since(member).map(|at| at.saturating_add(max_age.saturating_mul(1000)))
}

/// What the keeper found when it looked at a pool, for [`next_look`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Look {
    /// Unclaimed members (in any state) and claimed ones not yet taken over.
    pub held: usize,
    /// Something moves: a member deploying, removed or missing, a claim to finish.
    pub busy: bool,
    /// The earliest time (Unix ms) a ready member ages out or proves the pool healthy.
    pub due: Option<u64>,
}

impl Look {
    /// Notes that something about `member` (ready now) happens at its own time: it ages
    /// past the pool's `max_age_seconds`, or, while the pool backs off, it has stayed
    /// ready long enough to end the backoff.
    pub fn ready_member(&mut self, pool: &Pool, member: &ServiceInstance) {
        let ready = ready_since(member);
        let proven_after = u64::try_from(PROVEN_AFTER.as_millis()).unwrap_or(u64::MAX);
        let proves = ready.filter(|_| pool.failures > 0).map(|at| at.saturating_add(proven_after));
        let ages = pool.max_age_seconds.and_then(|max_age| expires_at(member, max_age));
        for at in [proves, ages].into_iter().flatten() {
            self.due = Some(self.due.map_or(at, |due| due.min(at)));
        }
    }
}

/// When (Unix ms) the keeper must look at `pool` again after a look at `now` found
/// `look`; `None`: only when something tells it of a change (its record, the catalog,
/// a member's state). A pool that holds nothing and wants nothing costs nothing, however
/// many there are.
pub fn next_look(pool: &Pool, look: &Look, now: u64) -> Option<u64> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if look.held == 0 && pool.wanted() == 0 && !look.busy {
        return None;
    }
    let mut at = if look.busy { now.saturating_add(ms(BUSY_LOOK)) } else { now.saturating_add(ms(SETTLED_LOOK)) };
    if let Some(due) = look.due {
        at = at.min(due.max(now));
    }
    Some(at)
}

/// When a member's deploy finished (Unix ms).
fn ready_since(member: &ServiceInstance) -> Option<u64> {
    let op = member.operations.last().filter(|op| op.state == OperationState::Succeeded)?;
    op.finished_at.map(Timestamp::millis)
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
