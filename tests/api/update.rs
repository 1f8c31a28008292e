//! `PATCH /v2/service_instances/{id}`: one test per row of the update table.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

fn patch_path(id: &str, async_ok: bool) -> String {
    provision_path(id, async_ok)
}

/// `i-1` provisioned synchronously on `plan-1` with `parameters`.
async fn provisioned_with_parameters(plan_extra: Value, script: &str, parameters: Value) -> TestApp {
    let app = with_catalog(plan_extra, script).await;
    let mut body = provision_body(PLAN);
    body["parameters"] = parameters;
    let r = app.put(&provision_path("i-1", false), &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    app
}

/// Updates `i-1`'s parameters to `parameters` (nothing else); `async_ok` sets
/// `accepts_incomplete=true`.
async fn set_parameters(app: &TestApp, parameters: Value, async_ok: bool) -> Reply {
    app.patch(&patch_path("i-1", async_ok), &json!({"service_id": SERVICE, "parameters": parameters})).await
}

/// Asserts `i-1` is on `plan` with `parameters`.
async fn assert_instance(app: &TestApp, plan: &str, parameters: Value) {
    let fetched = app.get("/v2/service_instances/i-1").await;
    assert_eq!(fetched.body["plan_id"], plan);
    assert_eq!(fetched.body["parameters"], parameters);
}

#[tokio::test]
async fn sync_update_is_200_and_changes_the_plan() {
    let app = provisioned_sync().await;
    let r = app.patch(&patch_path("i-1", false), &json!({"service_id": SERVICE, "plan_id": OTHER_PLAN})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.is_object() && r.body.get("operation").is_none(), "{}", r.body);
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["plan_id"], OTHER_PLAN);
}

#[tokio::test]
async fn async_update_is_202_then_succeeds() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [update]}").await;
    let r = set_parameters(&app, json!({"a": 1}), true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert!(r.body["operation"].is_string());
    assert!(r.header("retry-after").is_some());
    assert_eq!(app.get("/v2/service_instances/i-1/last_operation").await.body["state"], "in progress");
    app.release(OperationKind::Update, "i-1");
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["parameters"], json!({"a": 1}));
}

#[tokio::test]
async fn resent_update_while_running_is_202_with_the_same_operation() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [update]}").await;
    let body = json!({"service_id": SERVICE, "parameters": {"a": 2}});
    let first = app.patch(&patch_path("i-1", true), &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = app.patch(&patch_path("i-1", true), &body).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert!(second.body["operation"].is_string());
    assert_eq!(first.body["operation"], second.body["operation"]);
}

#[tokio::test]
async fn plan_change_on_a_non_updateable_plan_is_422_and_changes_nothing() {
    let app = provisioned(json!({"plan_updateable": false}), "x-esm-dummy: {mode: sync}").await;
    let r = app.patch(&patch_path("i-1", false), &json!({"service_id": SERVICE, "plan_id": OTHER_PLAN})).await;
    r.fails_with(StatusCode::UNPROCESSABLE_ENTITY);
    r.mentions("plan_updateable");
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["plan_id"], PLAN);
}

#[tokio::test]
async fn parameters_still_change_on_a_non_updateable_plan() {
    let app = provisioned(json!({"plan_updateable": false}), "x-esm-dummy: {mode: sync}").await;
    let r = set_parameters(&app, json!({"a": 1}), false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["parameters"], json!({"a": 1}));
}

#[tokio::test]
async fn async_only_update_without_accepts_incomplete_is_422_async_required() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    set_parameters(&app, json!({"a": 1}), false).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired");
    assert!(app.get("/v2/service_instances/i-1").await.body.get("parameters").is_none(), "nothing applied");
}

#[tokio::test]
async fn another_update_while_one_runs_is_422_concurrency_error() {
    let app = updating().await;
    set_parameters(&app, json!({"a": 2}), true).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
    // The first update is the one applied.
    app.release(OperationKind::Update, "i-1");
    app.poll_instance("i-1").await;
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["parameters"], json!({"a": 1}));
}

#[tokio::test]
async fn update_during_the_provision_is_422_concurrency_error() {
    let app = provisioning().await;
    set_parameters(&app, json!({"a": 1}), true).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
}

#[tokio::test]
async fn maintenance_info_mismatch_is_422_and_changes_nothing() {
    let app = provisioned(json!({"maintenance_info": {"version": "2.0.0"}}), "x-esm-dummy: {mode: sync}").await;
    let r = app
        .patch(&patch_path("i-1", false), &json!({"service_id": SERVICE, "maintenance_info": {"version": "3.0.0"}}))
        .await;
    r.refused(StatusCode::UNPROCESSABLE_ENTITY, "MaintenanceInfoConflict");
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["maintenance_info"]["version"], "2.0.0");
}

/// Asserts an update of `i-1` (on `plan-1`) with `body` is refused with a 400 naming
/// `needle`, and leaves the plan as it was.
async fn update_refused(body: Value, needle: &str) {
    let app = provisioned_sync().await;
    let r = app.patch(&patch_path("i-1", false), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions(needle);
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["plan_id"], PLAN);
}

#[tokio::test]
async fn missing_service_id_is_400() {
    update_refused(json!({"plan_id": OTHER_PLAN}), "service_id").await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = provisioned_sync().await;
    app.send_text(Method::PATCH, "/v2/service_instances/i-1", "{\"service_id\": ")
        .await
        .fails_with(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_plan_is_400() {
    update_refused(json!({"service_id": SERVICE, "plan_id": "nope"}), "nope").await;
}

#[tokio::test]
async fn absent_plan_id_leaves_the_plan() {
    let app = provisioned_sync().await;
    let r = set_parameters(&app, json!({"new": 1}), false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_instance(&app, PLAN, json!({"new": 1})).await;
}

#[tokio::test]
async fn absent_parameters_leave_the_parameters() {
    let app = provisioned_with_parameters(json!({}), "x-esm-dummy: {mode: sync}", json!({"keep": "me"})).await;
    let r = app.patch(&patch_path("i-1", false), &json!({"service_id": SERVICE, "plan_id": OTHER_PLAN})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_instance(&app, OTHER_PLAN, json!({"keep": "me"})).await;
}

#[tokio::test]
async fn a_no_op_update_is_200() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    // Nothing changes, so even an async-only plan answers 200 at once...
    let r = app.patch(&patch_path("i-1", true), &json!({"service_id": SERVICE, "plan_id": PLAN})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.get("operation").is_none());
    // ...to a platform that accepts asynchronous updates: what the request alone
    // decides (AsyncRequired) comes before what the state decides.
    let r = app.patch(&patch_path("i-1", false), &json!({"service_id": SERVICE, "plan_id": PLAN})).await;
    assert_eq!((r.status, r.body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("AsyncRequired")));
}

#[tokio::test]
async fn a_failed_sync_update_is_500_with_flags_and_changes_nothing() {
    let app =
        provisioned_with_parameters(json!({}), "x-esm-dummy: {mode: sync, fail: [update]}", json!({"v": 1})).await;
    let body = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN, "parameters": {"v": 2}});
    let r = app.patch(&patch_path("i-1", false), &body).await;
    r.fails_with(StatusCode::INTERNAL_SERVER_ERROR);
    assert_failure_flags(&r.body, Some(true));
    assert_instance(&app, PLAN, json!({"v": 1})).await;
}

#[tokio::test]
async fn a_failed_async_update_reports_failed_with_flags_and_changes_nothing() {
    let app = with_plan("x-esm-dummy: {mode: async, fail: [update]}").await;
    let mut provision = provision_body(PLAN);
    provision["parameters"] = json!({"v": 1});
    assert_eq!(app.put(&provision_path("i-1", true), &provision).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    let body = json!({"service_id": SERVICE, "plan_id": OTHER_PLAN, "parameters": {"v": 2}});
    assert_eq!(app.patch(&patch_path("i-1", true), &body).await.status, StatusCode::ACCEPTED);
    let last = app.poll_instance("i-1").await;
    assert_eq!(last.body["state"], "failed");
    assert_failure_flags(&last.body, Some(true));
    assert_instance(&app, PLAN, json!({"v": 1})).await;
}

#[tokio::test]
async fn update_of_an_unknown_instance_is_404() {
    let app = with_plan("{}").await;
    app.patch(&patch_path("nope", false), &json!({"service_id": SERVICE})).await.fails_with(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn parameters_failing_the_update_schema_are_400_and_change_nothing() {
    let schema = json!({"schemas": {"service_instance": {"update": {"parameters": {
        "$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
        "properties": {"size": {"type": "integer"}}}}}}});
    let app = provisioned_with_parameters(schema, "x-esm-dummy: {mode: sync}", json!({"size": 1})).await;
    let r = set_parameters(&app, json!({"size": "big"}), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions("/size");
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["parameters"], json!({"size": 1}));
}
