//! The API port, as one web shell: [`AppState`], every `/v2` route in one table with
//! its layers, and beside them the dashboard and the OpenAPI document with Swagger UI.
//!
//! - `osb/`: the Open Service Broker routes, a file per endpoint.
//! - `et/`: the ElasTest extensions and esm's own (registration, the instance view,
//!   bindings, liveness, pools, inventory, events).
//! - `dashboard/`: the operator's HTML pages.
//! - `openapi.rs`: the OpenAPI document generated from the routes, and Swagger UI;
//!   `responses.rs` and `params.rs`: the response rows and path parameters many
//!   routes share.
//! - `route.rs`: the table of every `/v2` route (method, path, audit name, version
//!   exemption, handler) that the router, the OpenAPI document and the layers read.
//! - `extract.rs`, `listing.rs`, `middleware.rs`, `version.rs`, `reply.rs`: what
//!   every route shares: extractors with OSB error bodies, paging, auth and the
//!   version check, what each OSB version sees, and answers rendered for the
//!   request's version.
//! - `catalog_cache.rs`: the catalog route's answers, kept while the registry is
//!   unchanged.

pub mod catalog_cache;
pub mod dashboard;
pub mod et;
pub mod extract;
pub mod listing;
pub mod middleware;
pub mod openapi;
pub mod osb;
pub mod params;
pub mod reply;
pub mod responses;
pub mod route;
pub mod version;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use utoipa::OpenApi;

use crate::broker::Broker;
use crate::error::OsbError;
use crate::metrics::http::HttpMetricsLayer;
use middleware::BasicAuth;
use openapi::ApiDoc;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Every operation goes through the broker.
    pub broker: Arc<Broker>,
    /// The catalog route's answers, kept while the registry is unchanged.
    pub catalog: Arc<catalog_cache::CatalogCache>,
    /// Cancelled when esm starts stopping: endless responses (event streams) end then,
    /// so the graceful stop does not wait for them.
    pub stopping: CancellationToken,
}

impl AppState {
    /// The state of an API over `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker, catalog: Arc::new(catalog_cache::CatalogCache::new()), stopping: CancellationToken::new() }
    }

    /// The same, with streams ending when `stopping` is cancelled.
    pub fn stopping_with(mut self, stopping: CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }
}

/// The `/v2` routes (unlayered) and the OpenAPI document generated from them: the
/// rows of [`route::ROUTES`].
pub fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    route::mount(ApiDoc::openapi())
}

/// The whole API port: `/v2` behind auth and the version check, `/swagger.json` and
/// `/ui` open.
pub fn router(state: AppState, auth: Option<BasicAuth>) -> Router {
    let (v2, spec) = routes();
    let spec = openapi::with_broker_headers(spec);
    if auth.is_none() {
        tracing::warn!(
            "ESM_BROKER_USERNAME/ESM_BROKER_PASSWORD are not set: the broker API is open to anyone who can reach it"
        );
    }
    let retry_after = state.broker.settings().retry_after_seconds;
    let (state_for_dashboard, auth_for_dashboard) = (state.clone(), auth.clone());
    // One `layer` call: each wraps every route (and the fallbacks) once more.
    let layers = ServiceBuilder::new()
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::V2Layer::new(auth, retry_after));
    let metrics = HttpMetricsLayer::new(state.broker.metrics().clone());
    v2.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(layers)
        .with_state(state)
        .merge(openapi::swagger_ui(spec))
        .merge(dashboard::router(state_for_dashboard, auth_for_dashboard))
        .route("/", axum::routing::get(index))
        // Last, so it wraps every route (each with its template known) and the
        // fallbacks, and times what the inner layers add.
        .layer(metrics)
}

/// `GET /`: a browser is sent to the dashboard; anything else is told where things are
/// (nothing here needs the broker's credentials, nor says more than the docs do).
async fn index(headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if accept.contains("text/html") {
        return axum::response::Redirect::to("/dashboard").into_response();
    }
    axum::Json(serde_json::json!({
        "name": "esm",
        "version": env!("CARGO_PKG_VERSION"),
        "broker_api": "/v2",
        "catalog": route::CATALOG.path,
        "swagger_ui": "/ui/",
        "openapi": "/swagger.json",
        "dashboard": "/dashboard",
        "operator_port": ["/health", "/metrics", "/environment"],
    }))
    .into_response()
}

async fn not_found() -> OsbError {
    OsbError::NotFound("no such route".into())
}

async fn method_not_allowed() -> OsbError {
    OsbError::MethodNotAllowed
}
