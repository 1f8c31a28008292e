//! Provision ([`route::PROVISION`]).

use axum::http::StatusCode;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbJson, OsbPath, OsbQuery};
use crate::web::reply::{Osb, Reply};
use crate::web::route;
use crate::wire::{AsyncQuery, ProvisionRequest, ProvisionResponse};

/// Provision a service instance.
#[utoipa::path(put, path = route::PROVISION.path, tag = "instances",
    params(("instance_id" = InstanceId, Path, description = "Instance id chosen by the platform"), AsyncQuery),
    request_body = ProvisionRequest,
    responses(
        (status = 201, description = "Provisioned", body = ProvisionResponse),
        (status = 200, description = "Already provisioned with identical attributes", body = ProvisionResponse),
        (status = 202, description = "Provisioning asynchronously; poll last_operation", body = ProvisionResponse),
        (status = 400, description = "Malformed request, unknown service or plan, or parameters failing the plan schema", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 409, description = "The instance exists with different attributes", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 422, description = "AsyncRequired, MaintenanceInfoConflict or ConcurrencyError", body = ErrorBody),
        (status = 500, description = "The backend failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn provision(
    osb: Osb,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(query): OsbQuery<AsyncQuery>,
    OsbJson(body): OsbJson<ProvisionRequest>,
) -> OsbResult<Reply<ProvisionResponse>> {
    let Osb { state, .. } = &osb;
    let result = state.broker.provision(&instance_id, body, query.accepts_incomplete()).await;
    let answer = state.broker.noting_refusal(OperationKind::Provision, &instance_id, None, result).await?;
    Ok(osb.reply(answer, StatusCode::CREATED))
}
