//! Deprovision ([`route::DEPROVISION`]).

use axum::http::StatusCode;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::reply::{Osb, Reply};
use crate::web::route;
use crate::wire::{DeleteQuery, Empty, OperationResponse};

/// Deprovision a service instance (and retire its bindings).
#[utoipa::path(delete, path = route::DEPROVISION.path, tag = "instances",
    params(("instance_id" = InstanceId, Path, description = "Instance id"), DeleteQuery),
    responses(
        (status = 200, description = "Deprovisioned", body = OperationResponse),
        (status = 202, description = "Deprovisioning asynchronously; poll last_operation", body = OperationResponse),
        (status = 400, description = "service_id or plan_id missing", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 410, description = "No such instance", body = Empty),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 422, description = "AsyncRequired or ConcurrencyError", body = ErrorBody),
        (status = 500, description = "The backend failed; see instance_usable", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn deprovision(
    osb: Osb,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(query): OsbQuery<DeleteQuery>,
) -> OsbResult<Reply<OperationResponse>> {
    let Osb { state, .. } = &osb;
    let result = state.broker.deprovision(&instance_id, &query).await;
    let answer = state.broker.noting_refusal(OperationKind::Deprovision, &instance_id, None, result).await?;
    Ok(osb.reply(answer, StatusCode::OK))
}
