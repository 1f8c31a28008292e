//! Deprovision ([`route::DEPROVISION`]).

use axum::http::StatusCode;

use crate::domain::bounded::InstanceId;
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::Osb;
use crate::web::params::InstancePath;
use crate::web::reply::Reply;
use crate::web::responses::{AsyncOrBusy, IdsMissing, StoreDown};
use crate::web::route;
use crate::wire::{DeleteQuery, Empty, OperationResponse};

/// Deprovision a service instance (and retire its bindings).
#[utoipa::path(delete, path = route::DEPROVISION.path, tag = "instances",
    params(InstancePath, DeleteQuery),
    responses(
        (status = 200, description = "Deprovisioned", body = OperationResponse),
        (status = 202, description = "Deprovisioning asynchronously; poll last_operation", body = OperationResponse),
        (status = 410, description = "No such instance", body = Empty),
        (status = 500, description = "The backend failed; see instance_usable", body = ErrorBody),
        IdsMissing, AsyncOrBusy, StoreDown,
    ))]
pub async fn deprovision(osb: Osb<InstanceId, DeleteQuery>) -> OsbResult<Reply<OperationResponse>> {
    let Osb { state, path: instance_id, query, platform } = osb;
    let result = state.broker.instances().deprovision(&instance_id, &query).await;
    let answer = state.broker.noting_refusal(OperationKind::Deprovision, &instance_id, None, result).await?;
    Ok(platform.reply(answer, StatusCode::OK))
}
