//! How an OSB handler answers: a body as the request's OSB version sees it, and the
//! status a broker answer maps to.
//!
//! The version is applied here, once: a handler starts from [`Osb`] (the state and the
//! request's version) and hands its body back through it ([`Osb::json`],
//! [`Osb::reply`], [`Osb::polled`]), so no handler calls `for_version`.
//! Error bodies are versioned by the `/v2` layer ([`version_error`]), which sees every
//! request's version and every answer: a refusal from an extractor, a handler or the
//! fallback is versioned the same way whichever route gave it.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::middleware::retry_after;
use super::version::{ApiVersion, ForVersion};
use crate::broker::Answer;
use crate::domain::operation::OperationState;
use crate::error::OsbError;
use crate::wire::LastOperationResponse;

/// What every OSB handler starts from: the state and the request's OSB version.
#[derive(Clone)]
pub struct Osb {
    /// What handlers share.
    pub state: AppState,
    /// The request's `X-Broker-API-Version` (already checked by the layer).
    pub version: ApiVersion,
}

impl FromRequestParts<AppState> for Osb {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self { state: state.clone(), version: ApiVersion::of(&parts.headers) })
    }
}

impl Osb {
    /// `body` with 200, as this request's version sees it.
    pub fn json<T>(&self, body: T) -> Versioned<T> {
        Versioned { body, version: self.version }
    }

    /// A broker answer: `done` for work carried out now (201 for creates, 200
    /// otherwise), 200 for "already so", 202 with `Retry-After` for accepted.
    pub fn reply<T>(&self, answer: Answer<T>, done: StatusCode) -> Reply<T> {
        Reply { answer, done, version: self.version, retry_after: self.retry_after() }
    }

    /// A last_operation answer, with `Retry-After` while the operation runs.
    pub fn polled(&self, op: LastOperationResponse) -> Polled {
        Polled { op: self.json(op), retry_after: self.retry_after() }
    }

    fn retry_after(&self) -> u64 {
        self.state.broker.settings().retry_after_seconds
    }
}

/// A JSON body as a client of one version sees it.
#[derive(Debug)]
pub struct Versioned<T> {
    body: T,
    version: ApiVersion,
}

impl<T: Serialize + ForVersion> IntoResponse for Versioned<T> {
    fn into_response(self) -> Response {
        axum::Json(self.body.for_version(self.version)).into_response()
    }
}

/// A broker [`Answer`] as a response (see [`Osb::reply`]).
#[derive(Debug)]
pub struct Reply<T> {
    answer: Answer<T>,
    /// The status of work carried out now.
    done: StatusCode,
    version: ApiVersion,
    /// `Retry-After` on a 202, in seconds.
    retry_after: u64,
}

impl<T: Serialize + ForVersion> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let (status, body) = match self.answer {
            Answer::Done(body) => (self.done, body),
            Answer::AlreadyDone(body) => (StatusCode::OK, body),
            Answer::Accepted(body) => (StatusCode::ACCEPTED, body),
        };
        let body = Versioned { body, version: self.version };
        if status == StatusCode::ACCEPTED {
            (status, [retry_after(self.retry_after)], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

/// A last_operation answer (see [`Osb::polled`]).
#[derive(Debug)]
pub struct Polled {
    op: Versioned<LastOperationResponse>,
    /// `Retry-After` while in progress, in seconds.
    retry_after: u64,
}

impl IntoResponse for Polled {
    fn into_response(self) -> Response {
        if self.op.body.state == OperationState::InProgress {
            ([retry_after(self.retry_after)], self.op).into_response()
        } else {
            self.op.into_response()
        }
    }
}

/// Renders the error a response carries (every [`OsbError`] answer stashes itself in
/// the response) as a client of `version` sees it: the failure flags only from 2.16.
/// The `/v2` layer calls this on every answer, so no handler versions an error by hand.
pub fn version_error(response: &mut Response, version: ApiVersion) {
    // The newest version defines every field: nothing to drop, nothing to render again.
    if version >= ApiVersion::NEWEST {
        return;
    }
    let Some(error) = response.extensions().get::<OsbError>().cloned() else {
        return;
    };
    let headers = std::mem::take(response.headers_mut());
    let mut versioned = error.for_version(version).into_response();
    // What was set on the answer stays (the status and body are the error's own).
    versioned.headers_mut().extend(headers);
    *response = versioned;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_loses_the_fields_its_version_lacks_and_keeps_its_headers() {
        let failed =
            OsbError::OperationFailed { description: "x".into(), instance_usable: Some(true), update_repeatable: None };
        let flagged = |minor| {
            let mut response = failed.clone().into_response();
            response.headers_mut().insert("x-kept", axum::http::HeaderValue::from_static("1"));
            version_error(&mut response, ApiVersion(minor));
            assert!(response.headers().contains_key("x-kept"));
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            response.extensions().get::<OsbError>().map(|e| e.body().instance_usable.is_some())
        };
        assert_eq!(flagged(15), Some(false));
        assert_eq!(flagged(16), Some(true));
        assert_eq!(flagged(17), Some(true));
    }
}
