//! The OpenAPI response rows many routes share, written once and named in the routes'
//! `responses(...)`. The 401 and 412 rows are not here: every `/v2` route checks
//! credentials and the route table says which check the version, so `openapi.rs` adds
//! those two to every operation from the table.

use utoipa::IntoResponses;

use crate::error::ErrorBody;

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
