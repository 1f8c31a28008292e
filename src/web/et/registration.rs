//! The ElasTest registration routes: services into the catalog, and manifests for
//! their plans. Where the ElasTest platform depends on a detail of the original ESM,
//! the comment says so.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::broker::Registered;
use crate::domain::bounded::{ManifestId, ServiceId};
use crate::domain::manifest::Manifest;
use crate::error::{ErrorBody, OsbError, OsbResult};
use crate::web::extract::{OsbJson, OsbPath, OsbQuery};
use crate::web::params::ManifestPath;
use crate::web::responses::{NoSuchManifest, NoSuchService, RegisteredNew, Removed, ServiceInUse, StoreDown, TooLarge};
use crate::web::{AppState, route};
use crate::wire::{Empty, ManifestRegistration, ServiceRegistration};

fn registered(outcome: Registered) -> Response {
    let status = match outcome {
        Registered::Created => StatusCode::CREATED,
        Registered::Existing => StatusCode::OK,
    };
    // The ElasTest platform parses the answer as a JSON object: `{}`.
    (status, Json(Empty {})).into_response()
}

/// Register a service in the catalog, or replace the one with the same id.
#[utoipa::path(put, path = route::REGISTER_SERVICE.path, tag = "elastest",
    request_body = ServiceRegistration,
    responses(
        (status = 200, description = "Replaced the service with the same id", body = Empty),
        (status = 400, description = "Invalid service, a value over its bound, or more plans or tags than allowed", body = ErrorBody),
        (status = 409, description = "Name or plan id taken by another service, a dropped plan still has instances, or the catalog is full (ESM_CATALOG_MAX_SERVICES, ESM_CATALOG_MAX_BYTES)", body = ErrorBody),
        RegisteredNew, TooLarge, StoreDown,
    ))]
pub async fn register_service(
    State(state): State<AppState>,
    OsbJson(service): OsbJson<ServiceRegistration>,
) -> OsbResult<Response> {
    Ok(registered(state.broker.registrar().register_service(service.into()).await?))
}

/// Remove a service (and its manifests); refused while it has instances.
#[utoipa::path(delete, path = route::DELETE_SERVICE.path, tag = "elastest",
    params(("service_id" = ServiceId, Path, description = "Service id")),
    responses(Removed, NoSuchService, ServiceInUse, StoreDown))]
pub async fn delete_service(
    State(state): State<AppState>,
    OsbPath(service_id): OsbPath<ServiceId>,
) -> OsbResult<Json<Empty>> {
    state.broker.registrar().delete_service(&service_id).await?;
    Ok(Json(Empty {}))
}

/// `?service_id=` of the original's delete route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceIdQuery {
    /// The service to remove.
    #[serde(default)]
    #[param(required = true, value_type = ServiceId)]
    pub service_id: Option<ServiceId>,
}

/// Remove a service, the original ESM's way (`?service_id=`).
#[utoipa::path(delete, path = route::DELETE_SERVICE_BY_QUERY.path, tag = "elastest",
    params(ServiceIdQuery),
    responses(
        (status = 400, description = "service_id missing", body = ErrorBody),
        Removed, NoSuchService, ServiceInUse, StoreDown,
    ))]
pub async fn delete_service_by_query(
    State(state): State<AppState>,
    OsbQuery(query): OsbQuery<ServiceIdQuery>,
) -> OsbResult<Json<Empty>> {
    let service_id =
        query.service_id.ok_or_else(|| OsbError::BadRequest("query parameter service_id is required".into()))?;
    state.broker.registrar().delete_service(&service_id).await?;
    Ok(Json(Empty {}))
}

/// Register a manifest for a plan. The path id wins over the body's `id`.
#[utoipa::path(put, path = route::REGISTER_MANIFEST.path, tag = "elastest",
    params(ManifestPath),
    request_body = ManifestRegistration,
    responses(
        (status = 200, description = "Already registered identically", body = Empty),
        (status = 400, description = "Unknown service, plan or manifest_type, an invalid manifest, or a value over its bound", body = ErrorBody),
        (status = 409, description = "The id exists with other content, the plan has another manifest, or the catalog is full (ESM_CATALOG_MAX_MANIFESTS, ESM_CATALOG_MAX_BYTES)", body = ErrorBody),
        RegisteredNew, TooLarge, StoreDown,
    ))]
pub async fn register_manifest(
    State(state): State<AppState>,
    OsbPath(manifest_id): OsbPath<ManifestId>,
    OsbJson(manifest): OsbJson<ManifestRegistration>,
) -> OsbResult<Response> {
    Ok(registered(
        state.broker.registrar().register_manifest(&manifest_id, manifest.into_manifest(manifest_id.clone())).await?,
    ))
}

/// A manifest, as a one-element array: the ElasTest platform reads `body[0]`. Needs no
/// version header (the platform sends none here).
#[utoipa::path(get, path = route::GET_MANIFEST.path, tag = "elastest",
    params(ManifestPath),
    responses(
        (status = 200, description = "The manifest, in a one-element array", body = Vec<Manifest>),
        NoSuchManifest, StoreDown,
    ))]
pub async fn get_manifest(
    State(state): State<AppState>,
    OsbPath(manifest_id): OsbPath<ManifestId>,
) -> OsbResult<Json<Vec<Manifest>>> {
    Ok(Json(vec![state.broker.registrar().manifest_by_id(&manifest_id).await?]))
}

/// Every manifest. Needs no version header.
#[utoipa::path(get, path = route::LIST_MANIFESTS.path, tag = "elastest",
    responses(
        (status = 200, description = "The manifests", body = Vec<Manifest>),
        StoreDown,
    ))]
pub async fn list_manifests(State(state): State<AppState>) -> OsbResult<Json<Vec<Manifest>>> {
    Ok(Json(state.broker.registrar().list_manifests().await?))
}

/// Remove a manifest; refused while instances use it.
#[utoipa::path(delete, path = route::DELETE_MANIFEST.path, tag = "elastest",
    params(ManifestPath),
    responses(
        (status = 409, description = "Instances use the manifest", body = ErrorBody),
        Removed, NoSuchManifest, StoreDown,
    ))]
pub async fn delete_manifest(
    State(state): State<AppState>,
    OsbPath(manifest_id): OsbPath<ManifestId>,
) -> OsbResult<Json<Empty>> {
    state.broker.registrar().delete_manifest(&manifest_id).await?;
    Ok(Json(Empty {}))
}
