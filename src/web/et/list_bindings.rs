//! [`route::ET_BINDINGS`]: an instance's bindings, a page at a time, without their
//! credentials.

use axum::Json;
use axum::extract::State;

use crate::domain::bounded::InstanceId;
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{OsbPath, OsbQuery};
use crate::web::listing::{self, Paging};
use crate::web::params::InstancePath;
use crate::web::responses::{NoSuchInstance, StoreDown};
use crate::web::{AppState, route};
use crate::wire::{BindingListQuery, BindingPage};

/// An instance's live bindings (binding, bound or failed; not unbound), in id order,
/// without credentials: fetch one binding for those.
#[utoipa::path(get, path = route::ET_BINDINGS.path, tag = "elastest",
    params(InstancePath, BindingListQuery),
    responses(
        (status = 200, description = "A page of the instance's bindings", body = BindingPage),
        (status = 400, description = "A bad limit or cursor, or an unknown parameter", body = ErrorBody),
        NoSuchInstance, StoreDown,
    ))]
pub async fn list_bindings(
    State(state): State<AppState>,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbQuery(query): OsbQuery<BindingListQuery>,
) -> OsbResult<Json<BindingPage>> {
    let paging = Paging::paged(query.limit, query.after.as_deref())?;
    let (bindings, next_after) = state.broker.bindings().page(&instance_id, paging.after, paging.limit).await?;
    Ok(Json(BindingPage { bindings, next: next_after.as_deref().map(listing::cursor) }))
}
