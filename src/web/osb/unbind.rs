//! Unbind ([`route::UNBIND`]).

use axum::http::StatusCode;

use crate::domain::bounded::{BindingId, InstanceId};
use crate::domain::operation::OperationKind;
use crate::error::OsbResult;
use crate::web::extract::Osb;
use crate::web::params::BindingPath;
use crate::web::reply::Reply;
use crate::web::responses::{AsyncOrBusy, BackendFailed, IdsMissing, StoreDown};
use crate::web::route;
use crate::web::version::Field;
use crate::wire::{DeleteQuery, Empty, OperationResponse};

/// Unbind: revoke a binding's credentials.
#[utoipa::path(delete, path = route::UNBIND.path, tag = "bindings",
    params(BindingPath, DeleteQuery),
    responses(
        (status = 200, description = "Unbound", body = OperationResponse),
        (status = 202, description = "Unbinding asynchronously; poll the binding's last_operation", body = OperationResponse),
        (status = 410, description = "No such binding", body = Empty),
        IdsMissing, AsyncOrBusy, BackendFailed, StoreDown,
    ))]
pub async fn unbind(osb: Osb<(InstanceId, BindingId), DeleteQuery>) -> OsbResult<Reply<OperationResponse>> {
    let Osb { state, path: (instance_id, binding_id), mut query, platform } = osb;
    if !platform.version.has(Field::AsyncBindings) {
        // Unbinding is asynchronous since 2.14; an older platform cannot accept that.
        (query.accepts_incomplete, query.accept_incomplete) = (None, None);
    }
    let result = state.broker.bindings().unbind(&instance_id, &binding_id, &query).await;
    let answer = state.broker.noting_refusal(OperationKind::Unbind, &instance_id, Some(&binding_id), result).await?;
    Ok(platform.reply(answer, StatusCode::OK))
}
