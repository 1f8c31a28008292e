//! One error type for everything a request can fail with.
//!
//! Every failure a client can see maps here to an HTTP status and the OSB error body
//! `{"error": "...", "description": "..."}`. The table of codes lives in one `match`
//! ([`OsbError::status`] and [`OsbError::code`]) so it can be checked against the spec
//! line by line. Conversion to a response does not log: the access-log middleware logs
//! each failed request once, with its request identity (see `web::middleware`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::backend::BackendError;
use crate::store::StoreError;

/// A failed broker request, rendered as an OSB error response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OsbError {
    /// Malformed request, missing mandatory data, or invalid data (unknown ids,
    /// parameters failing the plan schema). OSB defines no error code for 400.
    #[error("{0}")]
    BadRequest(String),
    /// Basic auth is configured and the request did not carry valid credentials.
    #[error("missing or invalid broker credentials")]
    Unauthorized,
    /// The credentials are valid but may not do this (the broker's credentials
    /// reporting liveness where `ESM_LIVENESS_BROKER_REPORTS` is off).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist (fetch, last_operation, ElasTest lookups).
    #[error("{0}")]
    NotFound(String),
    /// The resource exists with different attributes, or is in use.
    #[error("{0}")]
    Conflict(String),
    /// Delete of something that does not exist (or no longer does): OSB wants `410 {}`.
    #[error("gone")]
    Gone,
    /// The route exists, but not for this method.
    #[error("this route does not support the request's method")]
    MethodNotAllowed,
    /// `X-Broker-API-Version` missing or not a 2.x version esm speaks.
    #[error("{0}")]
    UnsupportedVersion(String),
    /// Request body over the configured limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The request body did not arrive within `ESM_BODY_READ_TIMEOUT` seconds.
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    /// The operation can only run asynchronously and `accepts_incomplete=true` was not sent.
    #[error(
        "this service plan requires client support for asynchronous operations; retry with accepts_incomplete=true"
    )]
    AsyncRequired,
    /// Another operation on the same instance or binding is in progress.
    #[error("{0}")]
    ConcurrencyError(String),
    /// `maintenance_info.version` in the request differs from the catalog's.
    #[error("{0}")]
    MaintenanceInfoConflict(String),
    /// The backend needs an `app_guid` to bind and none was sent.
    #[error("this service plan requires an app_guid (or bind_resource.app_guid) to bind")]
    RequiresApp,
    /// A valid request that cannot be carried out (e.g. a plan change the plan forbids).
    #[error("{0}")]
    Unprocessable(String),
    /// The backend failed while carrying out a synchronous operation.
    #[error("{description}")]
    OperationFailed {
        /// What went wrong, for the platform's user.
        description: String,
        /// OSB 2.16: only on failed update or deprovision.
        instance_usable: Option<bool>,
        /// OSB 2.16: only on failed update.
        update_repeatable: Option<bool>,
    },
    /// The store (or another dependency) does not answer; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state; the description is safe to show.
    #[error("{0}")]
    Internal(String),
}

/// A refused bounded text (`crate::domain::bounded`): the message names the limit.
impl From<crate::domain::bounded::TextError> for OsbError {
    fn from(e: crate::domain::bounded::TextError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl OsbError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedVersion(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::AsyncRequired
            | Self::ConcurrencyError(_)
            | Self::MaintenanceInfoConflict(_)
            | Self::RequiresApp
            | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::OperationFailed { .. } | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The OSB `error` code. The four 422 codes are fixed by the spec; the others are
    /// esm's own, so that every error body carries a machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFound(_) => "NotFound",
            Self::Conflict(_) => "Conflict",
            Self::Gone => "Gone",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::UnsupportedVersion(_) => "UnsupportedAPIVersion",
            Self::PayloadTooLarge(_) => "PayloadTooLarge",
            Self::BodyTimeout(_) => "RequestTimeout",
            Self::AsyncRequired => "AsyncRequired",
            Self::ConcurrencyError(_) => "ConcurrencyError",
            Self::MaintenanceInfoConflict(_) => "MaintenanceInfoConflict",
            Self::RequiresApp => "RequiresApp",
            Self::Unprocessable(_) => "UnprocessableEntity",
            Self::OperationFailed { .. } => "OperationFailed",
            Self::Unavailable(_) => "ServiceUnavailable",
            Self::Internal(_) => "InternalError",
        }
    }

    /// The wire body of this error.
    pub fn body(&self) -> ErrorBody {
        let (instance_usable, update_repeatable) = match self {
            Self::OperationFailed { instance_usable, update_repeatable, .. } => (*instance_usable, *update_repeatable),
            _ => (None, None),
        };
        ErrorBody { error: self.code().to_owned(), description: self.to_string(), instance_usable, update_repeatable }
    }
}

/// The OSB error body.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A CamelCase error code; `AsyncRequired`, `ConcurrencyError`, `RequiresApp` and
    /// `MaintenanceInfoConflict` are the spec's fixed codes.
    pub error: String,
    /// What went wrong, in words meant for the platform's user.
    pub description: String,
    /// On a failed update or deprovision: whether the instance can still be used.
    pub instance_usable: Option<bool>,
    /// On a failed update: whether repeating the update may succeed.
    pub update_repeatable: Option<bool>,
}

impl IntoResponse for OsbError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = if matches!(self, Self::Gone) {
            // OSB: deleting what does not exist answers `410 {}` (a success for the platform).
            (status, axum::Json(serde_json::json!({}))).into_response()
        } else {
            (status, axum::Json(self.body())).into_response()
        };
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"esm\""),
            );
        }
        // Stashed for the access log, which logs every failure once.
        response.extensions_mut().insert(self);
        response
    }
}

impl From<StoreError> for OsbError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(msg) => Self::Unavailable(format!("the store is unavailable: {msg}")),
            other => Self::Internal(format!("store error: {other}")),
        }
    }
}

impl From<BackendError> for OsbError {
    fn from(err: BackendError) -> Self {
        Self::OperationFailed { description: err.to_string(), instance_usable: None, update_repeatable: None }
    }
}

/// Shorthand for handler and broker results.
pub type OsbResult<T> = Result<T, OsbError>;
