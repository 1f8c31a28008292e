//! The OpenAPI document, generated from the handlers and wire types (no hand-written
//! spec). Served at `/swagger.json` with Swagger UI at `/ui`; a copy is committed at
//! `openapi/esm.json` and a test keeps the two equal.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Required, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::web::route::Route;

/// Swagger UI at `/ui` over `spec` at `/swagger.json`. Its pages may not be framed
/// (`frame-ancestors 'none'`, and `X-Frame-Options` for older browsers): a page that
/// framed it could lure an operator into clicking "Try it out" with their credentials.
pub fn swagger_ui<S: Clone + Send + Sync + 'static>(spec: utoipa::openapi::OpenApi) -> Router<S> {
    Router::from(utoipa_swagger_ui::SwaggerUi::new("/ui").url("/swagger.json", spec))
        .layer(axum::middleware::map_response(not_framed))
}

/// `Content-Security-Policy: frame-ancestors 'none'` and `X-Frame-Options: DENY`.
async fn not_framed(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The document's fixed parts; the paths come from the router (`web::routes`).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "esm",
        description = "Open Service Broker API 2.12-2.17 with the ElasTest extensions.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "catalog", description = "The service catalog"),
        (name = "instances", description = "Service instances"),
        (name = "bindings", description = "Service bindings"),
        (name = "elastest", description = "ElasTest extensions: registration, manifests, instance details"),
        (name = "engines", description = "The Docker hosts, swarms and clusters instances are placed on"),
    ),
    // The bounded text types that paths and queries name by reference (bodies bring
    // theirs along).
    components(schemas(
        crate::domain::bounded::InstanceId,
        crate::domain::bounded::BindingId,
        crate::domain::bounded::ServiceId,
        crate::domain::bounded::PlanId,
        crate::domain::bounded::ManifestId,
        crate::domain::bounded::OperationId,
        crate::domain::bounded::OpaqueId,
        crate::domain::bounded::Cursor,
        crate::domain::bounded::Name,
        crate::domain::bounded::EngineName,
    )),
    modifiers(&BrokerHeaders)
)]
pub struct ApiDoc;

/// Adds what every `/v2` operation shares: basic auth, the required
/// `X-Broker-API-Version` header (except on the manifest reads the ElasTest platform
/// makes without it), and the optional identity headers.
struct BrokerHeaders;

impl Modify for BrokerHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("basic", Vec::<String>::new())]);
    }
}

fn header(name: &str, required: bool, description: &str, default: Option<&str>) -> RefOr<Parameter> {
    let schema = ObjectBuilder::new().schema_type(Type::String).default(default.map(serde_json::Value::from));
    RefOr::T(
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(if required { Required::True } else { Required::False })
            .description(Some(description))
            .schema(Some(schema.build()))
            .build(),
    )
}

/// A response with the OSB error body.
fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content("application/json", body).build())
}

/// The full document: the router's paths plus the shared headers.
pub fn document() -> utoipa::openapi::OpenApi {
    with_broker_headers(crate::web::routes().1)
}

/// Adds what every operation of the router's document shares: the OSB headers, and the
/// refusals of the extractors (400), of auth (401) and of the version check (412, on
/// the routes the table does not exempt).
pub fn with_broker_headers(mut spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for (path, item) in spec.paths.paths.iter_mut() {
        let operations = [
            ("get", item.get.as_mut()),
            ("put", item.put.as_mut()),
            ("patch", item.patch.as_mut()),
            ("delete", item.delete.as_mut()),
            ("post", item.post.as_mut()),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            // Every path and query value is parsed into a bounded type by the extractors:
            // an operation that takes one can answer 400 however its handler reads.
            let takes_input =
                operation.parameters.iter().flatten().any(
                    |p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)),
                );
            let responses = &mut operation.responses.responses;
            if takes_input {
                let refused = "A path or query value out of its bounds (length, characters) or malformed";
                responses.entry("400".into()).or_insert_with(|| error_response(refused));
            }
            // Every `/v2` route checks credentials (a route may say more of its own 401).
            responses.entry("401".into()).or_insert_with(|| error_response("Missing or wrong credentials"));
            // Every operation is a row of the route table, which says whether it is exempt.
            let checked = !Route::of_operation(method, path).is_some_and(Route::exempt);
            if checked {
                let refused = "Missing or unsupported X-Broker-API-Version";
                responses.entry("412".into()).or_insert_with(|| error_response(refused));
            }
            let params = operation.parameters.get_or_insert_with(Vec::new);
            if checked {
                // The default fills Swagger UI's "Try it out", so no request needs it typed.
                let version = "OSB API version, 2.12 or later (e.g. 2.17)";
                params.push(header(
                    "X-Broker-API-Version",
                    true,
                    version,
                    Some(&format!("2.{}", crate::web::version::NEWEST_MINOR)),
                ));
            }
            params.push(header(
                "X-Broker-API-Originating-Identity",
                false,
                "Who originated the request: `<platform> <base64 JSON>`",
                None,
            ));
            params.push(header(
                "X-Broker-API-Request-Identity",
                false,
                "A request id, echoed back in the response",
                None,
            ));
        }
    }
    spec
}

/// The document as the pretty JSON committed at `openapi/esm.json`.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed copy is what clients generate from: it must be what the code says.
    #[test]
    fn committed_copy_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/esm.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document_json(),
            "openapi/esm.json is stale: run `cargo run --quiet -- openapi > openapi/esm.json` and commit it"
        );
    }

    #[test]
    fn every_broker_operation_requires_the_version_header_but_manifest_and_event_reads() {
        let spec = document();
        for (path, item) in &spec.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("patch", &item.patch),
                ("delete", &item.delete),
                ("post", &item.post),
            ] {
                let Some(op) = op else { continue };
                let has_version = op.parameters.iter().flatten().any(|p| match p {
                    RefOr::T(p) => p.name == "X-Broker-API-Version",
                    RefOr::Ref(_) => false,
                });
                let exempt = method == "get" && (path.starts_with("/v2/et/manifest") || path == "/v2/et/events");
                assert_eq!(has_version, !exempt, "{method} {path}");
            }
        }
    }
}
