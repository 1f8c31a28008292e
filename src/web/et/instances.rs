//! The ElasTest instance view: every instance (the original's array, or a page) and
//! one instance, with live deployment details.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::broker::InstanceFilter;
use crate::domain::bounded::InstanceId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::listing::{self, Paging};
use crate::web::params::InstancePath;
use crate::web::responses::{NoSuchInstance, StoreDown};
use crate::web::{AppState, route};
use crate::wire::{EtInstance, EtInstanceListing, EtInstancePage, InstanceListQuery};

/// The instances, with live deployment details: the original's plain array (streamed),
/// or with `limit`/`after` a page with the cursor of the next.
#[utoipa::path(get, path = route::ET_INSTANCES.path, tag = "elastest",
    params(InstanceListQuery),
    responses(
        (status = 200, description = "The instances: an array, or a page when `limit` or `after` is given", body = EtInstanceListing),
        (status = 400, description = "A bad limit, cursor or filter", body = ErrorBody),
        StoreDown,
    ))]
pub async fn list_instances(
    State(state): State<AppState>,
    OsbQuery(query): OsbQuery<InstanceListQuery>,
) -> OsbResult<Response> {
    let filter = InstanceFilter {
        service_id: query.service_id.map(Into::into),
        plan_id: query.plan_id.map(Into::into),
        state: query.state,
        liveness: query.liveness,
        backend: query.backend.map(Into::into),
        engine: query.engine.map(Into::into),
    };
    let Some(paging) = Paging::of(query.limit, query.after.as_deref())? else {
        return Ok(listing::json_array(state.broker.instances().et_instances(&filter).await?));
    };
    let page = state.broker.instances().et_instances_page(&filter, paging.after, paging.limit).await?;
    let next = page.next_after.as_deref().map(listing::cursor);
    Ok(Json(EtInstancePage { instances: page.instances, next }).into_response())
}

/// One instance, with live deployment details (`context.<container>_Ip`, ...).
#[utoipa::path(get, path = route::ET_INSTANCE.path, tag = "elastest",
    params(InstancePath),
    responses(
        (status = 200, description = "The instance", body = EtInstance),
        NoSuchInstance, StoreDown,
    ))]
pub async fn get_instance(
    State(state): State<AppState>,
    OsbPath(instance_id): OsbPath<InstanceId>,
) -> OsbResult<Json<EtInstance>> {
    Ok(Json(state.broker.instances().et_instance(&instance_id).await?))
}
