//! The pools routes ([`route::POOLS`] and the three on one pool): warm pools of ready
//! instances per plan (see `broker/pools/`).

use axum::Json;
use axum::extract::State;

use crate::domain::bounded::PlanId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbJson, OsbPath};
use crate::web::params::PlanPath;
use crate::web::responses::{NoPool, StoreDown};
use crate::web::{AppState, route};
use crate::wire::{Empty, PoolList, PoolRequest, PoolStatus};

/// Every pool with its status.
#[utoipa::path(get, path = route::POOLS.path, tag = "elastest",
    responses(
        (status = 200, description = "Every pool", body = PoolList),
        StoreDown,
    ))]
pub async fn list_pools(State(state): State<AppState>) -> OsbResult<Json<PoolList>> {
    Ok(Json(PoolList { pools: state.broker.pools().statuses().await? }))
}

/// One plan's pool: its settings, members and counts.
#[utoipa::path(get, path = route::GET_POOL.path, tag = "elastest",
    params(PlanPath),
    responses(
        (status = 200, description = "The pool", body = PoolStatus),
        NoPool, StoreDown,
    ))]
pub async fn get_pool(State(state): State<AppState>, OsbPath(plan_id): OsbPath<PlanId>) -> OsbResult<Json<PoolStatus>> {
    Ok(Json(state.broker.pools().status(&plan_id).await?))
}

/// Keeps `size` instances of the plan deployed ahead; a provision of the plan asking
/// for the pool's parameters (or none, when the pool has none) is handed one at once.
/// Setting it again changes it: members made with other parameters are replaced.
#[utoipa::path(put, path = route::SET_POOL.path, tag = "elastest",
    params(PlanPath),
    request_body = PoolRequest,
    responses(
        (status = 200, description = "Set; the pool now (members are deployed in the background)", body = PoolStatus),
        (status = 400, description = "Unknown plan, a plan id longer than 255 bytes or with control characters or spaces, no manifest, size or max_age_seconds out of range, parameters the plan's schema refuses, or a plan whose backend cannot pool it", body = ErrorBody),
        (status = 422, description = "A new pool beyond ESM_MAX_POOLS", body = ErrorBody),
        StoreDown,
    ))]
pub async fn set_pool(
    State(state): State<AppState>,
    OsbPath(plan_id): OsbPath<PlanId>,
    OsbJson(request): OsbJson<PoolRequest>,
) -> OsbResult<Json<PoolStatus>> {
    Ok(Json(state.broker.pools().set(&plan_id, request).await?))
}

/// Drains the pool: its idle members are removed, then the pool. Instances already
/// handed out are the platforms' and stay.
#[utoipa::path(delete, path = route::DELETE_POOL.path, tag = "elastest",
    params(PlanPath),
    responses(
        (status = 200, description = "Draining", body = Empty),
        NoPool, StoreDown,
    ))]
pub async fn delete_pool(State(state): State<AppState>, OsbPath(plan_id): OsbPath<PlanId>) -> OsbResult<Json<Empty>> {
    state.broker.pools().drain(&plan_id).await?;
    Ok(Json(Empty::default()))
}
