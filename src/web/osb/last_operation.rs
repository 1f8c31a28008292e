//! An instance's last operation ([`route::LAST_OPERATION`]).

use crate::domain::bounded::InstanceId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::Osb;
use crate::web::params::InstancePath;
use crate::web::reply::Polled;
use crate::web::responses::{NoSuchInstance, StoreDown};
use crate::web::route;
use crate::wire::{Empty, LastOperationQuery, LastOperationResponse};

/// The state of an instance's operation. 410 once an asynchronous deprovision is done.
#[utoipa::path(get, path = route::LAST_OPERATION.path, tag = "instances",
    params(InstancePath, LastOperationQuery),
    responses(
        (status = 200, description = "The operation's state", body = LastOperationResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before polling again, while in progress"))),
        (status = 400, description = "The instance has no such operation", body = ErrorBody),
        (status = 410, description = "The instance was deprovisioned", body = Empty),
        NoSuchInstance, StoreDown,
    ))]
pub async fn last_operation(osb: Osb<InstanceId, LastOperationQuery>) -> OsbResult<Polled> {
    let Osb { state, path: instance_id, query, platform } = osb;
    let op = state.broker.instances().last_operation(&instance_id, query.operation.as_deref()).await?;
    Ok(platform.polled(op))
}
