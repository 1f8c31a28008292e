//! A binding's last operation ([`route::LAST_BINDING_OPERATION`]).

use crate::domain::bounded::{BindingId, InstanceId};
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::Osb;
use crate::web::params::BindingPath;
use crate::web::reply::Polled;
use crate::web::responses::StoreDown;
use crate::web::route;
use crate::wire::{Empty, LastOperationQuery, LastOperationResponse};

/// The state of a binding's operation. 410 once an asynchronous unbind is done.
#[utoipa::path(get, path = route::LAST_BINDING_OPERATION.path, tag = "bindings",
    params(BindingPath, LastOperationQuery),
    responses(
        (status = 200, description = "The operation's state", body = LastOperationResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before polling again, while in progress"))),
        (status = 400, description = "The binding has no such operation", body = ErrorBody),
        (status = 404, description = "No such binding", body = ErrorBody),
        (status = 410, description = "The binding was unbound", body = Empty),
        StoreDown,
    ))]
pub async fn last_binding_operation(osb: Osb<(InstanceId, BindingId), LastOperationQuery>) -> OsbResult<Polled> {
    let Osb { state, path: (instance_id, binding_id), query, platform } = osb;
    let op = state.broker.bindings().last_operation(&instance_id, &binding_id, query.operation.as_deref()).await?;
    Ok(platform.polled(op))
}
