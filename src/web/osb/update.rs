//! Update ([`route::UPDATE`]).

use axum::http::StatusCode;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{Osb, OsbJson};
use crate::web::params::InstancePath;
use crate::web::reply::Reply;
use crate::web::responses::{NoSuchInstance, StoreDown, TooLarge};
use crate::web::route;
use crate::wire::{AsyncQuery, UpdateRequest, UpdateResponse};

/// Update a service instance: plan, parameters, context or maintenance version.
/// Absent fields stay as they are; a refused update changes nothing.
#[utoipa::path(patch, path = route::UPDATE.path, tag = "instances",
    params(InstancePath, AsyncQuery),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Updated (or nothing to change)", body = UpdateResponse),
        (status = 202, description = "Updating asynchronously; poll last_operation", body = UpdateResponse),
        (status = 400, description = "Malformed request, unknown plan, or parameters failing the plan schema", body = ErrorBody),
        (status = 422, description = "Plan change not allowed, AsyncRequired, MaintenanceInfoConflict or ConcurrencyError", body = ErrorBody),
        (status = 500, description = "The backend failed; see instance_usable and update_repeatable", body = ErrorBody),
        NoSuchInstance, TooLarge, StoreDown,
    ))]
pub async fn update(
    osb: Osb<InstanceId, AsyncQuery>,
    OsbJson(body): OsbJson<UpdateRequest>,
) -> OsbResult<Reply<UpdateResponse>> {
    let Osb { state, path: instance_id, query, platform } = osb;
    let result = state.broker.instances().update(&instance_id, body, query.accepts_incomplete()).await;
    let answer = state.broker.noting_refusal(OperationKind::Update, &instance_id, None, result).await?;
    Ok(platform.reply(answer, StatusCode::OK))
}
