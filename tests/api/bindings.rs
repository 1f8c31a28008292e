//! Bind, fetch, unbind and the binding's last_operation: one test per contract row.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn provisioned(plan_extra: serde_json::Value, script: &str) -> TestApp {
    let app = with_catalog(plan_extra, script).await;
    let r = app.provision("i-1", true).await;
    assert!(matches!(r.status, StatusCode::CREATED | StatusCode::ACCEPTED), "{}", r.body);
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    app
}

fn binding_path(binding: &str) -> String {
    format!("/v2/service_instances/i-1/service_bindings/{binding}")
}

#[tokio::test]
async fn sync_bind_is_201_with_credentials_and_fetchable() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["credentials"]["username"], "user-b-1");
    let fetched = app.get(&binding_path("b-1")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["credentials"], r.body["credentials"]);
}

#[tokio::test]
async fn async_bind_is_202_without_credentials_then_fetch_has_them() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, delay_ms: 100}").await;
    let r = app.bind("i-1", "b-1", None, true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.body.get("credentials").is_none(), "a 202 never carries credentials: {}", r.body);
    assert!(r.body["operation"].is_string());
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::NOT_FOUND, "404 while binding");
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "succeeded");
    let fetched = app.get(&binding_path("b-1")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert!(fetched.body["credentials"]["password"].is_string());
}

#[tokio::test]
async fn identical_rebind_is_200_and_different_is_409() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync}").await;
    let first = app.bind("i-1", "b-1", None, false).await;
    let again = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["credentials"], first.body["credentials"]);
    let body = json!({"service_id": SERVICE, "plan_id": PLAN, "parameters": {"role": "admin"}});
    let r = app.bind("i-1", "b-1", Some(body), false).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.osb_error();
}

#[tokio::test]
async fn requires_app_is_422_without_an_app_guid() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync, requires_app: true}").await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.osb_error(), "RequiresApp");
    let with_app = json!({"service_id": SERVICE, "plan_id": PLAN, "bind_resource": {"app_guid": "app-1"}});
    assert_eq!(app.bind("i-1", "b-1", Some(with_app), false).await.status, StatusCode::CREATED);
    let legacy = json!({"service_id": SERVICE, "plan_id": PLAN, "app_guid": "app-2"});
    assert_eq!(app.bind("i-1", "b-2", Some(legacy), false).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn async_only_bind_without_accepts_incomplete_is_422() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.osb_error(), "AsyncRequired");
}

#[tokio::test]
async fn bind_to_an_unknown_instance_is_404() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    let r = app.bind("nope", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.osb_error();
}

#[tokio::test]
async fn missing_fields_and_non_bindable_plans_are_400() {
    let app = provisioned(json!({"bindable": false}), "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-1", Some(json!({"plan_id": PLAN})), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["description"].as_str().is_some_and(|d| d.contains("not bindable")), "{}", r.body);
}

#[tokio::test]
async fn parameters_failing_the_bind_schema_are_400() {
    let schema = json!({"schemas": {"service_binding": {"create": {"parameters": {
        "$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
        "properties": {"role": {"enum": ["ro", "rw"]}}}}}}});
    let app = provisioned(schema, "x-esm-dummy: {mode: sync}").await;
    let body = json!({"service_id": SERVICE, "plan_id": PLAN, "parameters": {"role": "god"}});
    let r = app.bind("i-1", "b-1", Some(body), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["description"].as_str().is_some_and(|d| d.contains("/role")), "{}", r.body);
}

#[tokio::test]
async fn bind_while_the_instance_updates_is_422_concurrency_error() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, delay_ms: 300}").await;
    let r = app.patch(&provision_path("i-1", true), &json!({"service_id": SERVICE, "parameters": {"a": 1}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app.bind("i-1", "b-1", None, true).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.osb_error(), "ConcurrencyError");
}

#[tokio::test]
async fn fetch_of_an_unknown_binding_is_404() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync}").await;
    let r = app.get(&binding_path("nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.osb_error();
    let r = app.get(&format!("{}/last_operation", binding_path("nope"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unbind_is_200_then_410() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    let r = app.unbind("i-1", "b-1", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({}));
    let r = app.unbind("i-1", "b-1", false).await;
    assert_eq!(r.status, StatusCode::GONE);
    assert_eq!(r.body, json!({}));
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unbind_without_service_id_or_plan_id_is_400() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    let r = app.delete(&format!("{}?service_id={SERVICE}", binding_path("b-1"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.osb_error();
}

#[tokio::test]
async fn async_unbind_then_binding_last_operation_is_410() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, delay_ms: 50}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    app.poll_binding("i-1", "b-1").await;
    let r = app.unbind("i-1", "b-1", true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.body["operation"].is_string());
    assert_eq!(app.poll_binding("i-1", "b-1").await.status, StatusCode::GONE);
}

#[tokio::test]
async fn unbind_while_binding_is_422_concurrency_error() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, delay_ms: 300}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    let r = app.unbind("i-1", "b-1", true).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.osb_error(), "ConcurrencyError");
}

#[tokio::test]
async fn rotation_needs_a_rotatable_plan_and_a_live_predecessor() {
    let rotating = json!({"service_id": SERVICE, "plan_id": PLAN, "predecessor_binding_id": "b-1"});
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    let r = app.bind("i-1", "b-2", Some(rotating.clone()), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the plan is not binding_rotatable");

    let app = provisioned(json!({"binding_rotatable": true}), "x-esm-dummy: {mode: sync}").await;
    let first = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let unknown = json!({"service_id": SERVICE, "plan_id": PLAN, "predecessor_binding_id": "nope"});
    assert_eq!(app.bind("i-1", "b-3", Some(unknown), false).await.status, StatusCode::BAD_REQUEST);
    let second = app.bind("i-1", "b-2", Some(rotating), false).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_ne!(second.body["credentials"], first.body["credentials"]);
    // Both stay valid.
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::OK);
    assert_eq!(app.get(&binding_path("b-2")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_plan_lifetime_sets_expires_at_and_renew_before() {
    let app = provisioned(json!({"binding_lifetime_seconds": 3600}), "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let expires = r.body["metadata"]["expires_at"].as_str().expect("expires_at");
    let renew = r.body["metadata"]["renew_before"].as_str().expect("renew_before");
    let expires_at = humantime::parse_rfc3339(expires).expect("RFC 3339");
    let renew_at = humantime::parse_rfc3339(renew).expect("RFC 3339");
    let now = std::time::SystemTime::now();
    let lifetime = expires_at.duration_since(now).expect("in the future").as_secs();
    assert!((3590..=3600).contains(&lifetime), "{lifetime}");
    assert!(renew_at < expires_at && renew_at > now);
}
