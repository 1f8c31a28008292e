//! Deprovision ([`route::DEPROVISION`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::version::{ApiVersion, ForVersion};
use crate::web::{AppState, reply, route};
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
    State(state): State<AppState>,
    version: ApiVersion,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(query): OsbQuery<DeleteQuery>,
) -> OsbResult<Response> {
    let result = state.broker.deprovision(&instance_id, &query).await;
    let result = state.broker.noting_refusal(OperationKind::Deprovision, &instance_id, None, result).await;
    let answer = result.map_err(|e| e.for_version(version))?;
    Ok(reply(answer, version, StatusCode::OK, state.broker.settings().retry_after_seconds))
}
