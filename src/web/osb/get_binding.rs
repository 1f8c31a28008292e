//! Fetch a binding ([`route::GET_BINDING`]).

use crate::domain::bounded::{BindingId, InstanceId};
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::reply::{Osb, Versioned};
use crate::web::route;
use crate::wire::{BindingResponse, FetchQuery};

/// Fetch a binding, with its credentials.
#[utoipa::path(get, path = route::GET_BINDING.path, tag = "bindings",
    params(
        ("instance_id" = InstanceId, Path, description = "Instance id"),
        ("binding_id" = BindingId, Path, description = "Binding id"),
        FetchQuery),
    responses(
        (status = 200, description = "The binding", body = BindingResponse),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such binding, or its bind is still running", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn get_binding(
    osb: Osb,
    OsbPath((instance_id, binding_id)): OsbPath<(InstanceId, BindingId)>,
    OsbQuery(_hints): OsbQuery<FetchQuery>,
) -> OsbResult<Versioned<BindingResponse>> {
    let Osb { state, .. } = &osb;
    Ok(osb.json(state.broker.fetch_binding(&instance_id, &binding_id).await?))
}
