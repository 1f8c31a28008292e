//! The engines routes ([`route::ENGINES`] and those on one engine): the Docker hosts,
//! swarms and clusters instances are placed on (see `broker/engines/`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use crate::broker::ScheduleChange;
use crate::domain::bounded::EngineName;
use crate::domain::engine::{EngineSpec, Source};
use crate::error::{ErrorBody, OsbResult};
use crate::web::extract::{NoBody, OsbJson, OsbPath};
use crate::web::params::EnginePath;
use crate::web::responses::{NoEngine, StoreDown};
use crate::web::{AppState, route};
use crate::wire::{Empty, EngineList, EngineView};

/// Every engine, `default` (the single-engine settings') first.
#[utoipa::path(get, path = route::ENGINES.path, tag = "engines",
    responses(
        (status = 200, description = "Every engine", body = EngineList),
        StoreDown,
    ))]
pub async fn list_engines(State(state): State<AppState>) -> OsbResult<Json<EngineList>> {
    Ok(Json(EngineList { engines: state.broker.engines().list().await? }))
}

/// One engine: what was declared, its state, what esm learned of it.
#[utoipa::path(get, path = route::GET_ENGINE.path, tag = "engines",
    params(EnginePath),
    responses(
        (status = 200, description = "The engine", body = EngineView),
        NoEngine, StoreDown,
    ))]
pub async fn get_engine(
    State(state): State<AppState>,
    OsbPath(name): OsbPath<EngineName>,
) -> OsbResult<Json<EngineView>> {
    Ok(Json(state.broker.engines().get(&name).await?))
}

/// Declares an engine, or changes its declaration (its state stays). The default
/// engine takes only labels and capacity.
#[utoipa::path(put, path = route::PUT_ENGINE.path, tag = "engines",
    params(EnginePath),
    request_body = EngineSpec,
    responses(
        (status = 201, description = "Declared", body = EngineView),
        (status = 200, description = "Changed, or already so", body = EngineView),
        (status = 400, description = "A name or label outside its bounds, an endpoint that does not fit the backend, a credential file outside ESM_ENGINE_CREDENTIALS_DIR", body = ErrorBody),
        (status = 422, description = "A backend this esm does not run, more than 1000 engines, an engine its backend cannot be set up for", body = ErrorBody),
        StoreDown,
    ))]
pub async fn put_engine(
    State(state): State<AppState>,
    OsbPath(name): OsbPath<EngineName>,
    OsbJson(spec): OsbJson<EngineSpec>,
) -> OsbResult<(StatusCode, Json<EngineView>)> {
    let (created, view) = state.broker.engines().put(&name, spec, Source::Api).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(view)))
}

/// Removes an engine: only a cordoned or draining one that holds nothing.
#[utoipa::path(delete, path = route::DELETE_ENGINE.path, tag = "engines",
    params(EnginePath),
    responses(
        (status = 200, description = "Removed", body = Empty),
        (status = 422, description = "The default engine, an active engine, or one that still holds instances", body = ErrorBody),
        NoEngine, StoreDown,
    ))]
pub async fn delete_engine(
    State(state): State<AppState>,
    OsbPath(name): OsbPath<EngineName>,
) -> OsbResult<Json<Empty>> {
    state.broker.engines().delete(&name).await?;
    Ok(Json(Empty::default()))
}

/// Writes one schedule-change route (cordon, uncordon, drain).
macro_rules! schedule_route {
    ($(#[$doc:meta])* $handler:ident, $route:ident, $change:ident, $done:literal) => {
        $(#[$doc])*
        #[utoipa::path(post, path = route::$route.path, tag = "engines",
            params(EnginePath),
            responses(
                (status = 200, description = $done, body = EngineView),
                (status = 400, description = "A name outside its bounds, or a body (the route takes none)", body = ErrorBody),
                NoEngine, StoreDown,
            ))]
        pub async fn $handler(
            State(state): State<AppState>,
            OsbPath(name): OsbPath<EngineName>,
            _: NoBody,
        ) -> OsbResult<Json<EngineView>> {
            Ok(Json(state.broker.engines().change_schedule(&name, ScheduleChange::$change).await?))
        }
    };
}

schedule_route!(
    /// Stops new placements on the engine; what runs there stays.
    cordon_engine, CORDON_ENGINE, Cordon, "Cordoned"
);
schedule_route!(
    /// Lets the engine take placements again; also clears `needs_repair` (the next
    /// probe says whether it answers).
    uncordon_engine, UNCORDON_ENGINE, Uncordon, "Uncordoned"
);
schedule_route!(
    /// Stops new placements on the engine, and moves what may move elsewhere.
    drain_engine, DRAIN_ENGINE, Drain, "Draining"
);
