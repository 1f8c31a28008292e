//! How an OSB handler answers: a body as the request's OSB version sees it, and the
//! status a broker answer maps to.
//!
//! The version is applied here, once: an OSB handler is handed the [`Platform`] that
//! asked (with the request, see [`Osb`](super::extract::Osb)) and answers through it
//! ([`Platform::json`], [`Platform::reply`], [`Platform::polled`]), so no handler calls
//! `for_version`.
//!
//! Error bodies are versioned by the `/v2` layer ([`version_error`]), which sees every
//! request's version and every answer: a refusal from an extractor, a handler or the
//! fallback is versioned the same way whichever route gave it.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::middleware::retry_after;
use super::version::{ApiVersion, ForVersion};
use crate::broker::Answer;
use crate::domain::operation::OperationState;
use crate::error::OsbError;
use crate::wire::LastOperationResponse;

/// The platform that asked, as an OSB handler answers it: its version, and when to
/// tell it to come back.
#[derive(Debug, Clone, Copy)]
pub struct Platform {
    /// The request's `X-Broker-API-Version` (already checked by the layer).
    pub version: ApiVersion,
    /// `Retry-After` on a 202 and while an operation runs, in seconds.
    retry_after: u64,
}

impl Platform {
    /// The platform of a request with `headers`, told to come back after `retry_after` seconds.
    pub fn of(headers: &HeaderMap, retry_after: u64) -> Self {
        Self { version: ApiVersion::of(headers), retry_after }
    }

    /// `body` with 200, as this platform's version sees it.
    pub fn json<T>(self, body: T) -> Versioned<T> {
        Versioned { body, version: self.version }
    }

    /// A broker answer: `done` for work carried out now (201 for creates, 200
    /// otherwise), 200 for "already so", 202 with `Retry-After` for accepted.
    pub fn reply<T>(self, answer: Answer<T>, done: StatusCode) -> Reply<T> {
        Reply { answer, done, version: self.version, retry_after: self.retry_after }
    }

    /// A last_operation answer, with `Retry-After` while the operation runs.
    pub fn polled(self, op: LastOperationResponse) -> Polled {
        Polled { op: self.json(op), retry_after: self.retry_after }
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

/// A broker [`Answer`] as a response (see [`Platform::reply`]).
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

/// A last_operation answer (see [`Platform::polled`]).
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
