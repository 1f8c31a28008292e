//! The catalog ([`route::CATALOG`]), served from the
//! [`CatalogCache`](crate::web::catalog_cache::CatalogCache).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::error::OsbResult;
use crate::web::version::ApiVersion;
use crate::web::{AppState, route};
use crate::wire::CatalogResponse;

/// The service catalog. Carries an `ETag`; `If-None-Match` with it answers 304 (OSB 2.16).
#[utoipa::path(get, path = route::CATALOG.path, tag = "catalog",
    responses(
        (status = 200, description = "The catalog", body = CatalogResponse,
            headers(("ETag" = String, description = "Changes whenever the catalog does"))),
        (status = 304, description = "The catalog still has the ETag sent in If-None-Match"),
    ))]
// The whole request rather than a `HeaderMap`, which would copy every header.
pub async fn catalog(State(state): State<AppState>, request: Request) -> OsbResult<Response> {
    let headers = request.headers();
    let rendered = state.catalog.get(&state.broker, ApiVersion::of(headers)).await?;
    let (status, body) = if if_none_match(headers, &rendered.etag) {
        (StatusCode::NOT_MODIFIED, Body::empty())
    } else {
        (StatusCode::OK, Body::from(rendered.body.clone()))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if status == StatusCode::OK {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response.headers_mut().insert(ETAG, rendered.etag.clone());
    Ok(response)
}

/// Whether `If-None-Match` names `etag` (weak comparison, lists and `*` allowed).
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag.as_bytes() == etag)
}
