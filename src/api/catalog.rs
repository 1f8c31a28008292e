//! `GET /v2/catalog`.

use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::version::{ApiVersion, ForVersion};
use crate::error::{ErrorBody, OsbError, OsbResult};
use crate::wire::CatalogResponse;

/// The service catalog. Carries an `ETag`; `If-None-Match` with it answers 304 (OSB 2.16).
#[utoipa::path(get, path = "/v2/catalog", tag = "catalog",
    responses(
        (status = 200, description = "The catalog", body = CatalogResponse,
            headers(("ETag" = String, description = "Changes whenever the catalog does"))),
        (status = 304, description = "The catalog still has the ETag sent in If-None-Match"),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
    ))]
pub async fn catalog(State(state): State<AppState>, headers: HeaderMap) -> OsbResult<Response> {
    let catalog = state.broker.catalog().await?.for_version(ApiVersion::of(&headers));
    let body =
        serde_json::to_vec(&catalog).map_err(|e| OsbError::Internal(format!("cannot encode the catalog: {e}")))?;
    let digest = Sha256::digest(&body);
    let etag: String = std::iter::once("\"".to_owned())
        .chain(digest.iter().take(16).map(|b| format!("{b:02x}")))
        .chain(std::iter::once("\"".to_owned()))
        .collect();
    if if_none_match(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response());
    }
    Ok(([(CONTENT_TYPE, "application/json".to_owned()), (ETAG, etag)], body).into_response())
}

/// Whether `If-None-Match` names `etag` (weak comparison, lists and `*` allowed).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}
