//! An instance's last operation ([`route::LAST_OPERATION`]).

use crate::domain::bounded::InstanceId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::reply::{Osb, Polled};
use crate::web::route;
use crate::wire::{Empty, LastOperationQuery, LastOperationResponse};

/// The state of an instance's operation. 410 once an asynchronous deprovision is done.
#[utoipa::path(get, path = route::LAST_OPERATION.path, tag = "instances",
    params(("instance_id" = InstanceId, Path, description = "Instance id"), LastOperationQuery),
    responses(
        (status = 200, description = "The operation's state", body = LastOperationResponse,
            headers(("Retry-After" = u64, description = "Seconds to wait before polling again, while in progress"))),
        (status = 400, description = "The instance has no such operation", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such instance", body = ErrorBody),
        (status = 410, description = "The instance was deprovisioned", body = Empty),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn last_operation(
    osb: Osb,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(query): OsbQuery<LastOperationQuery>,
) -> OsbResult<Polled> {
    let Osb { state, .. } = &osb;
    let op = state.broker.instance_last_operation(&instance_id, query.operation.as_deref()).await?;
    Ok(osb.polled(op))
}
