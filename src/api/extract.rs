//! Extractors whose rejections are OSB errors, so a malformed request never gets
//! axum's plain-text answer.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use http_body::Body as _;
use serde::de::DeserializeOwned;

use crate::error::OsbError;
use crate::serve::BodyTimeout;

/// The request body limit (larger bodies answer 413).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body. The `Content-Type` is not insisted on (OSB: a broker MAY parse a body
/// without it), so `curl -d` works as it did with the original.
#[derive(Debug)]
pub struct OsbJson<T>(pub T);

impl<S, T> FromRequest<S> for OsbJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OsbError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body announced (Content-Length) over the limit is refused before a byte of it
        // is read: a client waiting for `100 Continue` then need not send it at all.
        if req.body().size_hint().lower() > BODY_LIMIT as u64 {
            return Err(OsbError::PayloadTooLarge(BODY_LIMIT));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OsbError::PayloadTooLarge(BODY_LIMIT)
            } else if let Some(timeout) = BodyTimeout::find(&rejection) {
                // Named here too (the transport answers 408 anyway) so the audit log says why.
                OsbError::BodyTimeout(timeout.limit().as_secs())
            } else {
                OsbError::BadRequest(format!("cannot read the request body: {}", rejection.body_text()))
            }
        })?;
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Err(OsbError::BadRequest("the request body is empty; a JSON object is expected".into())),
            // Every esm request body is an object (serde would take a struct's array form).
            Some(b'{') => {}
            Some(_) => return Err(OsbError::BadRequest("the request body must be a JSON object".into())),
        }
        serde_json::from_slice(&bytes)
            .map(OsbJson)
            .map_err(|e| OsbError::BadRequest(format!("invalid request body: {e}")))
    }
}

/// Query parameters.
#[derive(Debug)]
pub struct OsbQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for OsbQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OsbError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| OsbQuery(q))
            .map_err(|e| OsbError::BadRequest(format!("invalid query string: {}", e.body_text())))
    }
}

/// Path parameters, percent-decoded.
#[derive(Debug)]
pub struct OsbPath<T>(pub T);

impl<S, T> FromRequestParts<S> for OsbPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = OsbError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| OsbPath(p))
            .map_err(|e| OsbError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}
