//! Fetch an instance ([`route::GET_INSTANCE`]).

use crate::domain::bounded::InstanceId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::Osb;
use crate::web::params::InstancePath;
use crate::web::reply::Versioned;
use crate::web::responses::StoreDown;
use crate::web::route;
use crate::wire::{FetchInstanceResponse, FetchQuery};

/// Fetch a provisioned service instance.
#[utoipa::path(get, path = route::GET_INSTANCE.path, tag = "instances",
    params(InstancePath, FetchQuery),
    responses(
        (status = 200, description = "The instance", body = FetchInstanceResponse),
        (status = 404, description = "No such instance, or its provision is still running", body = ErrorBody),
        (status = 422, description = "ConcurrencyError: the instance is being updated", body = ErrorBody),
        StoreDown,
    ))]
pub async fn get_instance(osb: Osb<InstanceId, FetchQuery>) -> OsbResult<Versioned<FetchInstanceResponse>> {
    let Osb { state, path: instance_id, platform, .. } = osb;
    Ok(platform.json(state.broker.instances().fetch(&instance_id).await?))
}
