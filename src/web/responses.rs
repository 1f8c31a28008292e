//! The OpenAPI response rows many routes share, written once and named in the routes'
//! `responses(...)`. The 401 and 412 rows are not here: every `/v2` route checks
//! credentials and the route table says which check the version, so `openapi.rs` adds
//! those two to every operation from the table.

use utoipa::IntoResponses;

use crate::error::ErrorBody;
use crate::wire::Empty;

/// 503: the store does not answer (the layer adds `Retry-After`).
#[derive(IntoResponses)]
#[response(status = 503, description = "The store is unavailable")]
pub struct StoreDown(pub ErrorBody);

/// 404 on a route under an instance.
#[derive(IntoResponses)]
#[response(status = 404, description = "No such instance")]
pub struct NoSuchInstance(pub ErrorBody);

/// 413 on a route with a body.
#[derive(IntoResponses)]
#[response(status = 413, description = "Body over 1 MiB")]
pub struct TooLarge(pub ErrorBody);

/// 201 of a registration.
#[derive(IntoResponses)]
#[response(status = 201, description = "Registered")]
pub struct RegisteredNew(pub Empty);

/// 200 of a removal.
#[derive(IntoResponses)]
#[response(status = 200, description = "Removed")]
pub struct Removed(pub Empty);

/// 404 on a route under a service.
#[derive(IntoResponses)]
#[response(status = 404, description = "No such service")]
pub struct NoSuchService(pub ErrorBody);

/// 409 of removing a service that has instances.
#[derive(IntoResponses)]
#[response(status = 409, description = "The service still has instances")]
pub struct ServiceInUse(pub ErrorBody);

/// 404 on a route under a manifest.
#[derive(IntoResponses)]
#[response(status = 404, description = "No such manifest")]
pub struct NoSuchManifest(pub ErrorBody);

/// 404 on a route under a pool.
#[derive(IntoResponses)]
#[response(status = 404, description = "The plan has no pool")]
pub struct NoPool(pub ErrorBody);
