//! Update ([`route::UPDATE`]).

use axum::http::StatusCode;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbJson, OsbPath, OsbQuery};
use crate::web::reply::{Osb, Reply};
use crate::web::route;
use crate::wire::{AsyncQuery, UpdateRequest, UpdateResponse};

/// Update a service instance: plan, parameters, context or maintenance version.
/// Absent fields stay as they are; a refused update changes nothing.
#[utoipa::path(patch, path = route::UPDATE.path, tag = "instances",
    params(("instance_id" = InstanceId, Path, description = "Instance id"), AsyncQuery),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Updated (or nothing to change)", body = UpdateResponse),
        (status = 202, description = "Updating asynchronously; poll last_operation", body = UpdateResponse),
        (status = 400, description = "Malformed request, unknown plan, or parameters failing the plan schema", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "Plan change not allowed, AsyncRequired, MaintenanceInfoConflict or ConcurrencyError", body = ErrorBody),
        (status = 500, description = "The backend failed; see instance_usable and update_repeatable", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn update(
    osb: Osb,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(query): OsbQuery<AsyncQuery>,
    OsbJson(body): OsbJson<UpdateRequest>,
) -> OsbResult<Reply<UpdateResponse>> {
    let Osb { state, .. } = &osb;
    let result = state.broker.update(&instance_id, body, query.accepts_incomplete()).await;
    let answer = state.broker.noting_refusal(OperationKind::Update, &instance_id, None, result).await?;
    Ok(osb.reply(answer, StatusCode::OK))
}
