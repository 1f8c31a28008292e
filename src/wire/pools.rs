//! The shapes of `/v2/et/pools`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::pool::PoolError;
use crate::domain::strict;

/// Body of `PUT /v2/et/pools/{plan_id}`: keep `size` instances of the plan ready.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    /// How many ready members to keep (0–100; 0 keeps the pool and its counts but
    /// holds nothing).
    #[schema(minimum = 0, maximum = 100, example = 3)]
    pub size: i64,
    /// Members older than this are replaced (1 s to a year); absent: never.
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub max_age_seconds: Option<i64>,
    /// The parameters members are deployed with, checked against the plan's schema. A
    /// provision is handed a member only if it asks for exactly these (or for none when
    /// these are none).
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// The one engine members are placed on (it must take the plan's instances);
    /// absent: where the plan's placement rule says.
    #[schema(value_type = Option<String>)]
    pub engine: Option<crate::domain::bounded::EngineName>,
    /// Fill to full: with `engine` (one with a capacity), keep as many members as the
    /// engine has room for beside what else it holds, at most `size`.
    pub fill: Option<bool>,
}

/// A pool and how full it is (`GET /v2/et/pools[/{plan_id}]`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolStatus {
    /// The plan.
    pub plan_id: String,
    /// Its offering.
    pub service_id: String,
    /// How many ready members it keeps (0 while draining).
    pub size: u32,
    /// Members older than this are replaced.
    pub max_age_seconds: Option<u64>,
    /// The parameters members are deployed with.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Deleted: idle members are being removed.
    pub draining: bool,
    /// The one engine members are placed on, if the pool targets one.
    pub engine: Option<String>,
    /// Whether it fills its engine to full (`size` is then the most it keeps).
    pub fill: bool,
    /// Members that can be handed out now.
    pub ready: u32,
    /// Members being deployed.
    pub deploying: u32,
    /// Members being removed (replaced, surplus, drained).
    pub removing: u32,
    /// Members waiting to be replaced.
    pub broken: u32,
    /// Members handed out, ever.
    pub claimed_total: u64,
    /// Provisions of the plan that found no member to take, ever.
    pub misses_total: u64,
    /// The last member deploy that failed.
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<PoolError>,
    /// Deploy failures in a row; new members wait until `retry_at` (RFC 3339).
    pub failures: u32,
    /// When the next member may be deployed after failures (RFC 3339).
    pub retry_at: Option<String>,
    /// Each unclaimed member: id, state and, when broken, why.
    pub members: Vec<MemberView>,
}

/// One unclaimed member.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// Its id (also the `esm.instance_id` of its resources on the engine).
    pub id: String,
    /// `deploying`, `ready`, `removing` or `broken`.
    pub state: String,
    /// Why it is broken.
    pub reason: Option<String>,
    /// When it was first requested (RFC 3339).
    pub created_at: String,
}

/// `GET /v2/et/pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PoolList {
    /// Every pool, by plan id.
    pub pools: Vec<PoolStatus>,
}
