//! The inventory and an instance's resources ([`route::INVENTORY`],
//! [`route::INSTANCE_RESOURCES`]): what every deployment holds (see
//! `broker/inventory.rs`).

use axum::Json;
use axum::extract::State;

use crate::broker::ResourceFilter;
use crate::domain::bounded::InstanceId;
use crate::domain::resource::ResourceState;
use crate::error::{ErrorBody, OsbError, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::listing::{self, Paging};
use crate::web::params::InstancePath;
use crate::web::responses::{NoSuchInstance, StoreDown};
use crate::web::{AppState, route};
use crate::wire::{InstanceResources, InventoryPage, InventoryQuery};

/// Every resource esm's deployments hold (containers, swarm services, networks,
/// volumes, host ports) with its owner and state, a page at a time, filtered.
#[utoipa::path(get, path = route::INVENTORY.path, tag = "elastest",
    params(InventoryQuery),
    responses(
        (status = 200, description = "A page of resources", body = InventoryPage),
        (status = 400, description = "A bad limit, cursor or state", body = ErrorBody),
        StoreDown,
    ))]
pub async fn inventory(
    State(state): State<AppState>,
    OsbQuery(query): OsbQuery<InventoryQuery>,
) -> OsbResult<Json<InventoryPage>> {
    let paging = Paging::paged(query.limit, query.after.as_deref())?;
    let resource_state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(text) => Some(ResourceState::parse(text).ok_or_else(|| {
            let states: Vec<&str> = ResourceState::ALL.iter().map(|s| s.as_str()).collect();
            OsbError::BadRequest(format!("state {text:?} is not one of {}", states.join(", ")))
        })?),
        None => None,
    };
    let filter = ResourceFilter {
        owner: query.owner.map(Into::into),
        name: query.name.map(Into::into),
        state: resource_state,
        kind: query.kind.map(Into::into),
        backend: query.backend.map(Into::into),
    };
    let page = state.broker.inventory().page(&filter, paging.after, paging.limit).await?;
    let next = page.next_after.as_deref().map(listing::cursor);
    Ok(Json(InventoryPage { resources: page.resources, next }))
}

/// What one instance holds: those of the warm pool member it was handed, if it was.
#[utoipa::path(get, path = route::INSTANCE_RESOURCES.path, tag = "elastest",
    params(InstancePath),
    responses(
        (status = 200, description = "The instance's resources", body = InstanceResources),
        NoSuchInstance, StoreDown,
    ))]
pub async fn instance_resources(
    State(state): State<AppState>,
    OsbPath(instance_id): OsbPath<InstanceId>,
) -> OsbResult<Json<InstanceResources>> {
    let resources = state.broker.inventory().instance_resources(&instance_id).await?;
    Ok(Json(InstanceResources { instance_id: instance_id.into(), resources }))
}
