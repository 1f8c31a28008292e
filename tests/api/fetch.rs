//! `GET /v2/service_instances/{id}` and `GET .../last_operation`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn fetch_returns_what_was_provisioned() {
    let app = with_catalog(
        json!({"maintenance_info": {"version": "1.0.0"}}),
        "x-esm-dummy: {mode: sync, dashboard_url: 'http://dash/1'}",
    )
    .await;
    let mut body = provision_body(PLAN);
    body["parameters"] = json!({"p": 1});
    assert_eq!(app.put(&provision_path("i-1", false), &body).await.status, StatusCode::CREATED);
    let r = app.get("/v2/service_instances/i-1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["service_id"], SERVICE);
    assert_eq!(r.body["plan_id"], PLAN);
    assert_eq!(r.body["parameters"], json!({"p": 1}));
    assert_eq!(r.body["maintenance_info"]["version"], "1.0.0");
    assert_eq!(r.body["dashboard_url"], "http://dash/1");
    assert_eq!(r.body["metadata"]["labels"]["esm/backend"], "dummy");
}

#[tokio::test]
async fn fetch_of_an_unknown_instance_is_404() {
    let app = spawn_app().await;
    let r = app.get("/v2/service_instances/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.osb_error();
}

#[tokio::test]
async fn fetch_while_provisioning_is_404() {
    let app = with_plan("x-esm-dummy: {mode: async, delay_ms: 300}").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::NOT_FOUND);
    app.poll_instance("i-1").await;
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn fetch_while_updating_is_422_concurrency_error() {
    let app = with_plan("x-esm-dummy: {mode: async, delay_ms: 300}").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    app.poll_instance("i-1").await;
    let r = app.patch(&provision_path("i-1", true), &json!({"service_id": SERVICE, "parameters": {"a": 1}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = app.get("/v2/service_instances/i-1").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.osb_error(), "ConcurrencyError");
}

#[tokio::test]
async fn last_operation_of_an_unknown_instance_is_404() {
    let app = spawn_app().await;
    let r = app.get("/v2/service_instances/nope/last_operation").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.osb_error();
}

#[tokio::test]
async fn last_operation_states_and_retry_after() {
    let app = with_plan("x-esm-dummy: {mode: async, delay_ms: 200}").await;
    let op = app.provision("i-1", true).await.body["operation"].as_str().expect("operation").to_owned();
    let r = app.get("/v2/service_instances/i-1/last_operation").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["state"], "in progress");
    assert_eq!(r.header("retry-after"), Some("1"));
    let done = app.poll_instance("i-1").await;
    assert_eq!(done.body["state"], "succeeded");
    assert!(done.header("retry-after").is_none());
    // The outcome is not forgotten: the first operation still answers after another one.
    let r = app.patch(&provision_path("i-1", true), &json!({"service_id": SERVICE, "parameters": {"b": 1}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    app.poll_instance("i-1").await;
    let old = app.get(&format!("/v2/service_instances/i-1/last_operation?operation={op}")).await;
    assert_eq!(old.body["state"], "succeeded");
}

#[tokio::test]
async fn last_operation_with_an_unknown_operation_is_400() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let r = app.get("/v2/service_instances/i-1/last_operation?operation=bogus").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.osb_error();
}
