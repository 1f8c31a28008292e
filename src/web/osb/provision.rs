//! Provision ([`route::PROVISION`]).

use axum::http::StatusCode;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{Osb, OsbJson};
use crate::web::reply::Reply;
use crate::web::responses::{BackendFailed, StoreDown, TooLarge};
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
        (status = 409, description = "The instance exists with different attributes", body = ErrorBody),
        (status = 422, description = "AsyncRequired, MaintenanceInfoConflict or ConcurrencyError", body = ErrorBody),
        TooLarge, BackendFailed, StoreDown,
    ))]
pub async fn provision(
    osb: Osb<InstanceId, AsyncQuery>,
    OsbJson(body): OsbJson<ProvisionRequest>,
) -> OsbResult<Reply<ProvisionResponse>> {
    let Osb { state, path: instance_id, query, platform } = osb;
    let result = state.broker.instances().provision(&instance_id, body, query.accepts_incomplete()).await;
    let answer = state.broker.noting_refusal(OperationKind::Provision, &instance_id, None, result).await?;
    Ok(platform.reply(answer, StatusCode::CREATED))
}
