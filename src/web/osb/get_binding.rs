//! Fetch a binding ([`route::GET_BINDING`]).

use crate::domain::bounded::{BindingId, InstanceId};
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::Osb;
use crate::web::params::BindingPath;
use crate::web::reply::Versioned;
use crate::web::responses::StoreDown;
use crate::web::route;
use crate::wire::{BindingResponse, FetchQuery};

/// Fetch a binding, with its credentials.
#[utoipa::path(get, path = route::GET_BINDING.path, tag = "bindings",
    params(BindingPath, FetchQuery),
    responses(
        (status = 200, description = "The binding", body = BindingResponse),
        (status = 404, description = "No such binding, or its bind is still running", body = ErrorBody),
        StoreDown,
    ))]
pub async fn get_binding(osb: Osb<(InstanceId, BindingId), FetchQuery>) -> OsbResult<Versioned<BindingResponse>> {
    let Osb { state, path: (instance_id, binding_id), platform, .. } = osb;
    Ok(platform.json(state.broker.bindings().fetch(&instance_id, &binding_id).await?))
}
