//! The operator dashboard, under `/dashboard` on the API port: what runs, read-only but
//! for the few actions an operator needs at 3 a.m. (deprovision an instance, drain or
//! resize a pool), which the page's script sends to the broker API itself.
//!
//! Pages are rendered on the server from the same broker calls the API makes, with
//! maud: everything shown is escaped by construction (service names, parameters and
//! container output are user input). Binding credentials and instance parameters are
//! never shown. The pages need the broker's credentials when they are set (the browser
//! asks for them, HTTP basic auth), and carry a strict Content-Security-Policy: only
//! this origin's own script and style, no inline code, no framing. The script and style
//! are compiled into the binary: no CDN, nothing fetched at run time.
//!
//! - `pages`: the overview, services and plans, pools, the live event feed.
//! - `instances`: the instance table and one instance.
//! - `engines`: the engines instances are placed on.

mod engines;
mod instances;
pub(crate) mod pages;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::domain::event::EventKind;
use crate::error::OsbError;
use crate::web::AppState;
use crate::web::middleware::BasicAuth;

/// What the pages may load: this origin's script, style and event stream, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's routes, behind the broker credentials when `auth` is set.
pub fn router(state: AppState, auth: Option<BasicAuth>) -> Router {
    Router::new()
        .route("/dashboard", get(pages::overview))
        .route("/dashboard/", get(|| async { axum::response::Redirect::permanent("/dashboard") }))
        .route("/dashboard/services", get(pages::services))
        .route("/dashboard/instances", get(instances::list))
        .route("/dashboard/instances/{instance_id}", get(instances::one))
        .route("/dashboard/pools", get(pages::pools))
        .route("/dashboard/engines", get(engines::list))
        .route("/dashboard/events", get(pages::events))
        .route("/dashboard/assets/dashboard.js", get(script))
        .route("/dashboard/assets/dashboard.css", get(style))
        .route("/dashboard/assets/favicon.svg", get(icon))
        .with_state(state)
        .layer(middleware::from_fn_with_state(auth.map(std::sync::Arc::new), guard))
}

/// Asks for the broker credentials when they are set, and puts the security headers on
/// every answer.
async fn guard(State(auth): State<Option<std::sync::Arc<BasicAuth>>>, request: Request, next: Next) -> Response {
    let mut response =
        match auth {
            Some(auth) if !auth.accepts(request.headers()) => {
                let mut refused = (StatusCode::UNAUTHORIZED, page("Sign in", html! {
                p { "The dashboard needs the broker's credentials (ESM_BROKER_USERNAME, ESM_BROKER_PASSWORD)." }
            }))
                .into_response();
                refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"esm\""));
                refused
            }
            _ => next.run(request).await,
        };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("assets/dashboard.js"))
}

async fn icon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml")], include_str!("assets/favicon.svg"))
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("assets/dashboard.css"))
}

/// The types of every event esm makes that `wanted` keeps, space-separated.
fn event_types(wanted: impl Fn(&EventKind) -> bool) -> String {
    EventKind::known().filter(|kind| wanted(kind)).map(|kind| kind.as_str().to_owned()).collect::<Vec<_>>().join(" ")
}

/// A page: the navigation, the title, the content.
pub fn page(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "esm · " (title) }
                link rel="icon" href="/dashboard/assets/favicon.svg";
                link rel="stylesheet" href="/dashboard/assets/dashboard.css";
                script type="module" src="/dashboard/assets/dashboard.js" {}
            }
            // The event types to follow and those shown as failures, from the one list
            // (`EventKind`), so the script keeps no copy of its own.
            body data-event-types=(event_types(|_| true)) data-failure-types=(event_types(EventKind::is_failure)) {
                nav {
                    strong { "esm" }
                    a href="/dashboard" { "Overview" }
                    a href="/dashboard/services" { "Services" }
                    a href="/dashboard/instances" { "Instances" }
                    a href="/dashboard/pools" { "Pools" }
                    a href="/dashboard/engines" { "Engines" }
                    a href="/dashboard/events" { "Events" }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

/// A page that could not be made: the broker's error, as a page with its status.
pub struct PageError(OsbError);

impl From<OsbError> for PageError {
    fn from(error: OsbError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = self.0.to_string();
        (status, page(status.canonical_reason().unwrap_or("Error"), html! { p.error { (message) } })).into_response()
    }
}

/// What a page handler returns.
pub type PageResult = Result<Markup, PageError>;
