//! `GET /v2/catalog`, the cross-cutting header rules, and `PUT /v2/et/catalog`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn empty_catalog_is_200_with_no_services() {
    let app = spawn_app().await;
    assert_eq!(app.get("/v2/catalog").await.expect(StatusCode::OK), &json!({"services": []}));
}

#[tokio::test]
async fn catalog_lists_registered_services() {
    let app = with_plan("{}").await;
    let r = app.get("/v2/catalog").await;
    assert_eq!(r.status, StatusCode::OK);
    let services = r.body["services"].as_array().expect("services array");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["id"], SERVICE);
    assert_eq!(services[0]["plans"].as_array().map(Vec::len), Some(2));
    // esm serves fetch endpoints for every service, and says so.
    assert_eq!(services[0]["instances_retrievable"], true);
    assert_eq!(services[0]["bindings_retrievable"], true);
}

#[tokio::test]
async fn missing_version_header_is_412() {
    let app = spawn_app().await;
    reply(app.raw(Method::GET, "/v2/catalog").send().await.expect("sent"))
        .await
        .refused(StatusCode::PRECONDITION_FAILED, "UnsupportedAPIVersion");
}

#[tokio::test]
async fn old_or_foreign_versions_are_412() {
    let app = spawn_app().await;
    for version in ["2.11", "1.0", "3.0", "latest"] {
        let r = reply(
            app.raw(Method::GET, "/v2/catalog").header("X-Broker-API-Version", version).send().await.expect("sent"),
        )
        .await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "version {version}");
        assert!(r.body["description"].as_str().is_some_and(|d| d.contains("2.12")));
    }
}

#[tokio::test]
async fn the_originals_underscore_header_spelling_is_accepted() {
    let app = spawn_app().await;
    let r =
        reply(app.raw(Method::GET, "/v2/catalog").header("X_Broker_Api_Version", "2.12").send().await.expect("sent"))
            .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let app = with_plan("{}").await;
    let first = app.get("/v2/catalog").await;
    let etag = first.header("etag").expect("catalog has an ETag").to_owned();
    let again = app.get_with("/v2/catalog", "If-None-Match", &etag).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // Changing the catalog changes the ETag.
    let svc = json!({"id": "svc-2", "name": "other", "description": "d", "bindable": false,
                     "plans": [{"id": "p-x", "name": "x", "description": "d"}]});
    assert_eq!(app.put("/v2/et/catalog", &svc).await.status, StatusCode::CREATED);
    let changed = app.get_with("/v2/catalog", "If-None-Match", &etag).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn basic_auth_is_required_when_configured() {
    let app = spawn_app_with_auth("admin", "s3cret").await;
    // Version but no auth: 401.
    let r =
        reply(app.raw(Method::GET, "/v2/catalog").header("X-Broker-API-Version", VERSION).send().await.expect("sent"))
            .await;
    r.refused(StatusCode::UNAUTHORIZED, "Unauthorized");
    // Wrong password: 401.
    let r = reply(
        app.raw(Method::GET, "/v2/catalog")
            .header("X-Broker-API-Version", VERSION)
            .basic_auth("admin", Some("nope"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Auth but no version: 412.
    let r = reply(app.raw(Method::GET, "/v2/catalog").basic_auth("admin", Some("s3cret")).send().await.expect("sent"))
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    // Both: 200.
    assert_eq!(app.get("/v2/catalog").await.status, StatusCode::OK);
}

#[tokio::test]
async fn request_identity_is_echoed() {
    let app = spawn_app().await;
    let r = reply(
        app.raw(Method::GET, "/v2/catalog")
            .header("X-Broker-API-Version", VERSION)
            .header("X-Broker-API-Request-Identity", "e26cde4c-2d09-4b5a-8a0e-1d6bd7b2f3a9")
            .header("X-Broker-API-Originating-Identity", "cloudfoundry eyJ1c2VyX2lkIjogIjY4M2VhNzQ4In0=")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-broker-api-request-identity"), Some("e26cde4c-2d09-4b5a-8a0e-1d6bd7b2f3a9"));
}

#[tokio::test]
async fn registering_a_service_twice_replaces_it() {
    let app = with_plan("{}").await;
    let svc = json!({"id": SERVICE, "name": "test-service", "description": "new text", "bindable": true,
        "plans": [{"id": PLAN, "name": "small", "description": "d"},
                  {"id": OTHER_PLAN, "name": "large", "description": "d"}]});
    assert_eq!(app.put("/v2/et/catalog", &svc).await.expect(StatusCode::OK), &json!({}));
    let catalog = app.get("/v2/catalog").await;
    assert_eq!(catalog.body["services"][0]["description"], "new text");
    assert_eq!(catalog.body["services"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn invalid_service_registrations_are_400() {
    let app = spawn_app().await;
    let cases = [
        json!({"name": "n", "description": "d", "plans": [{"id": "p", "name": "p", "description": "d"}]}),
        json!({"id": "s", "name": "", "description": "d", "plans": [{"id": "p", "name": "p", "description": "d"}]}),
        json!({"id": "s", "name": "n", "description": "d", "plans": []}),
        json!({"id": "s", "name": "n", "description": "d", "plans": [
            {"id": "p", "name": "a", "description": "d"}, {"id": "p", "name": "b", "description": "d"}]}),
        json!("not an object"),
    ];
    for case in cases {
        let r = app.put("/v2/et/catalog", &case).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{case}");
        r.osb_error();
    }
    assert_eq!(app.get("/v2/catalog").await.body, json!({"services": []}));
}

#[tokio::test]
async fn unknown_routes_and_methods_get_osb_errors() {
    let app = spawn_app().await;
    app.get("/v2/nothing-here").await.fails_with(StatusCode::NOT_FOUND);
    app.send(Method::POST, "/v2/catalog", None).await.fails_with(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn unknown_paths_are_404_even_without_the_version_header() {
    let app = spawn_app().await;
    for path in ["/v2/nothing-here", "/nothing", "/v2/service_instances/i-1/extra/parts"] {
        let r = reply(app.raw(Method::GET, path).send().await.expect("sent")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.osb_error(), "NotFound", "{path}");
    }
    // A known path without the header is still refused for the header.
    reply(app.raw(Method::GET, "/v2/service_instances/i-1").send().await.expect("sent"))
        .await
        .refused(StatusCode::PRECONDITION_FAILED, "UnsupportedAPIVersion");
}
