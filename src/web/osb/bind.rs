//! Bind ([`route::BIND`]).

use axum::http::StatusCode;

use crate::domain::bounded::{BindingId, InstanceId};
use crate::domain::operation::OperationKind;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{Osb, OsbJson};
use crate::web::params::InstancePath;
use crate::web::reply::Reply;
use crate::web::responses::{BackendFailed, NoSuchInstance, StoreDown, TooLarge};
use crate::web::route;
use crate::web::version::Field;
use crate::wire::{AsyncQuery, BindRequest, BindingResponse};

/// Bind: create credentials for an instance. A 202 never carries credentials.
#[utoipa::path(put, path = route::BIND.path, tag = "bindings",
    params(
        InstancePath,
        ("binding_id" = BindingId, Path, description = "Binding id chosen by the platform"),
        AsyncQuery),
    request_body = BindRequest,
    responses(
        (status = 201, description = "Bound", body = BindingResponse),
        (status = 200, description = "Already bound with identical attributes", body = BindingResponse),
        (status = 202, description = "Binding asynchronously; poll the binding's last_operation", body = BindingResponse),
        (status = 400, description = "Malformed request, not bindable, bad predecessor, or parameters failing the plan schema", body = ErrorBody),
        (status = 409, description = "The binding exists with different attributes", body = ErrorBody),
        (status = 422, description = "AsyncRequired, RequiresApp or ConcurrencyError", body = ErrorBody),
        NoSuchInstance, TooLarge, BackendFailed, StoreDown,
    ))]
pub async fn bind(
    osb: Osb<(InstanceId, BindingId), AsyncQuery>,
    OsbJson(body): OsbJson<BindRequest>,
) -> OsbResult<Reply<BindingResponse>> {
    let Osb { state, path: (instance_id, binding_id), query, platform } = osb;
    // Bindings are asynchronous since 2.14; an older platform cannot accept that.
    let accepts_incomplete = query.accepts_incomplete() && platform.version.has(Field::AsyncBindings);
    let result = state.broker.bindings().bind(&instance_id, &binding_id, body, accepts_incomplete).await;
    let answer = state.broker.noting_refusal(OperationKind::Bind, &instance_id, Some(&binding_id), result).await?;
    Ok(platform.reply(answer, StatusCode::CREATED))
}
