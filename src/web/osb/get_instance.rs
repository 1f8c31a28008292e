//! Fetch an instance ([`route::GET_INSTANCE`]).

use crate::domain::bounded::InstanceId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::reply::{Osb, Versioned};
use crate::web::route;
use crate::wire::{FetchInstanceResponse, FetchQuery};

/// Fetch a provisioned service instance.
#[utoipa::path(get, path = route::GET_INSTANCE.path, tag = "instances",
    params(("instance_id" = InstanceId, Path, description = "Instance id"), FetchQuery),
    responses(
        (status = 200, description = "The instance", body = FetchInstanceResponse),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such instance, or its provision is still running", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 422, description = "ConcurrencyError: the instance is being updated", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn get_instance(
    osb: Osb,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(_hints): OsbQuery<FetchQuery>,
) -> OsbResult<Versioned<FetchInstanceResponse>> {
    let Osb { state, .. } = &osb;
    Ok(osb.json(state.broker.fetch_instance(&instance_id).await?))
}
