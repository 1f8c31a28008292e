//! `PUT /v2/service_instances/{id}`: one test per row of the provision table.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sync_provision_is_201() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    let r = app.provision("i-1", false).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body.get("operation").is_none());
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn async_provision_is_202_with_an_operation_then_succeeds() {
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision]}").await;
    let r = app.provision("i-1", true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let operation = r.body["operation"].as_str().expect("operation").to_owned();
    assert!(r.header("retry-after").is_some());
    let polled = app.get(&format!("/v2/service_instances/i-1/last_operation?operation={operation}")).await;
    assert_eq!(polled.body["state"], "in progress");
    app.release(OperationKind::Provision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
}

#[tokio::test]
async fn identical_reprovision_is_200() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let r = app.provision("i-1", false).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn resent_provision_while_in_progress_is_202_with_the_same_operation() {
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision]}").await;
    let first = app.provision("i-1", true).await;
    let second = app.provision("i-1", true).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["operation"], second.body["operation"]);
}

#[tokio::test]
async fn different_attributes_are_409() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    app.put(&provision_path("i-1", false), &provision_body(OTHER_PLAN)).await.fails_with(StatusCode::CONFLICT);
}

#[tokio::test]
async fn different_attributes_while_provisioning_are_409() {
    let app = provisioning().await;
    let r = app.put(&provision_path("i-1", true), &provision_body(OTHER_PLAN)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn async_only_plan_without_accepts_incomplete_is_422_async_required() {
    let app = with_plan("x-esm-dummy: {mode: async}").await;
    app.provision("i-1", false).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired");
    // Nothing was created.
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::NOT_FOUND);
    let r = app.put("/v2/service_instances/i-1?accepts_incomplete=false", &provision_body(PLAN)).await;
    assert_eq!(r.osb_error(), "AsyncRequired");
}

#[tokio::test]
async fn the_originals_accept_incomplete_spelling_is_honoured() {
    let app = with_plan("x-esm-dummy: {mode: async}").await;
    let r = app.put("/v2/service_instances/i-1?accept_incomplete=true", &provision_body(PLAN)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

#[tokio::test]
async fn missing_required_fields_are_400() {
    let app = with_plan("{}").await;
    for field in ["service_id", "plan_id", "organization_guid", "space_guid"] {
        let mut body = provision_body(PLAN);
        body.as_object_mut().map(|o| o.remove(field));
        let r = app.put(&provision_path("i-1", false), &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "without {field}");
        r.mentions(field);
    }
}

#[tokio::test]
async fn malformed_json_is_400_with_osb_body() {
    let app = with_plan("{}").await;
    app.send_text(reqwest::Method::PUT, "/v2/service_instances/i-1", "{not json")
        .await
        .refused(StatusCode::BAD_REQUEST, "BadRequest");
}

#[tokio::test]
async fn unknown_service_or_plan_is_400() {
    let app = with_plan("{}").await;
    let mut body = provision_body(PLAN);
    body["service_id"] = json!("nope");
    assert_eq!(app.put(&provision_path("i-1", false), &body).await.status, StatusCode::BAD_REQUEST);
    let body = provision_body("nope");
    assert_eq!(app.put(&provision_path("i-1", false), &body).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn maintenance_info_mismatch_is_422() {
    let app = with_catalog(json!({"maintenance_info": {"version": "2.0.0"}}), "x-esm-dummy: {mode: sync}").await;
    let mut body = provision_body(PLAN);
    body["maintenance_info"] = json!({"version": "1.0.0"});
    app.put(&provision_path("i-1", false), &body)
        .await
        .refused(StatusCode::UNPROCESSABLE_ENTITY, "MaintenanceInfoConflict");
    body["maintenance_info"] = json!({"version": "2.0.0"});
    assert_eq!(app.put(&provision_path("i-1", false), &body).await.status, StatusCode::CREATED);
    let fetched = app.get("/v2/service_instances/i-1").await;
    assert_eq!(fetched.body["maintenance_info"]["version"], "2.0.0");
}

#[tokio::test]
async fn parameters_failing_the_plan_schema_are_400_naming_the_path() {
    let schema = json!({"schemas": {"service_instance": {"create": {"parameters": {
        "$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
        "properties": {"size": {"type": "integer", "maximum": 10}}}}}}});
    let app = with_catalog(schema, "x-esm-dummy: {mode: sync}").await;
    let mut body = provision_body(PLAN);
    body["parameters"] = json!({"size": 99});
    let r = app.put(&provision_path("i-1", false), &body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions("/size");
    body["parameters"] = json!({"size": 3});
    assert_eq!(app.put(&provision_path("i-1", false), &body).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_request_fields_are_ignored() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    let mut body = provision_body(PLAN);
    body["status"] = json!("whatever");
    body["statusMsg"] = json!({"nested": true});
    assert_eq!(app.put(&provision_path("i-1", false), &body).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn failed_sync_provision_is_500_and_leaves_nothing() {
    let app = with_plan("x-esm-dummy: {mode: sync, fail: [provision]}").await;
    app.provision("i-1", false).await.fails_with(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::GONE);
}

#[tokio::test]
async fn failed_async_provision_reports_failed() {
    let app = with_plan("x-esm-dummy: {mode: async, fail: [provision]}").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    let r = app.poll_instance("i-1").await;
    assert_eq!(r.body["state"], "failed");
    assert!(r.body["description"].as_str().is_some_and(|d| d.contains("fail")));
    // Orphan mitigation: the platform deprovisions; that works.
    assert_eq!(app.deprovision("i-1", true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_instance("i-1").await.status, StatusCode::GONE);
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413() {
    let app = with_plan("{}").await;
    let mut body = provision_body(PLAN);
    body["parameters"] = json!({"blob": "x".repeat(1024 * 1024 + 10)});
    app.put(&provision_path("i-1", false), &body).await.fails_with(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn many_provisions_at_once_all_succeed() {
    let app = with_plan("x-esm-dummy: {mode: either, delay_ms: 20}").await;
    let paths = (0..50).map(|i| format!("/v2/service_instances/many-{i}?accepts_incomplete=true"));
    for status in provisions_at_once(&app, paths).await {
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    for i in 0..50 {
        assert_eq!(app.poll_instance(&format!("many-{i}")).await.body["state"], "succeeded");
    }
    let listed = app.get("/v2/et/service_instances").await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(50));
}

#[tokio::test]
async fn the_same_id_at_once_creates_one_instance_and_no_5xx() {
    let app = with_plan("x-esm-dummy: {mode: sync, delay_ms: 50}").await;
    let mut created = 0;
    for status in provisions_at_once(&app, (0..20).map(|_| "/v2/service_instances/same".to_owned())).await {
        assert!(!status.is_server_error(), "{status}");
        if status == StatusCode::CREATED {
            created += 1;
        } else {
            // Losers see the winner's provision: done (200), or still running, which
            // these requests (without accepts_incomplete) are never answered 202 for.
            assert!(matches!(status, StatusCode::OK | StatusCode::UNPROCESSABLE_ENTITY), "{status}");
        }
    }
    assert_eq!(created, 1);
    assert_eq!(app.get("/v2/et/service_instances").await.body.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_operation_past_the_plans_maximum_polling_duration_fails() {
    let app =
        with_catalog(json!({"maximum_polling_duration": 1}), "x-esm-dummy: {mode: async, hold: [provision]}").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    let r = app.poll_instance("i-1").await;
    assert_eq!(r.body["state"], "failed");
    r.mentions("maximum_polling_duration");
}

/// Provisions of `plan-1` sent to `paths` at once, each from a task of its own: their
/// statuses, in order.
async fn provisions_at_once(app: &TestApp, paths: impl Iterator<Item = String>) -> Vec<StatusCode> {
    let tasks: Vec<_> = paths
        .map(|path| {
            let request = app.raw(reqwest::Method::PUT, &path).header("X-Broker-API-Version", VERSION);
            tokio::spawn(async move { request.json(&provision_body(PLAN)).send().await.expect("sent").status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("joined"));
    }
    statuses
}
