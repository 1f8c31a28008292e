//! `DELETE /v2/service_instances/{id}`: one test per row of the deprovision table.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// An app whose provisioned `i-1` is being deprovisioned: the deprovision answered 202
/// (that answer comes back too) and is held until [`TestApp::release`].
async fn deprovisioning() -> (TestApp, Reply) {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [deprovision]}").await;
    let r = app.deprovision("i-1", true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    (app, r)
}

#[tokio::test]
async fn sync_deprovision_is_200_with_an_empty_object() {
    let app = provisioned_sync().await;
    assert_eq!(app.deprovision("i-1", false).await.expect(StatusCode::OK), &json!({}));
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn async_deprovision_is_202_then_last_operation_is_410() {
    let (app, r) = deprovisioning().await;
    assert!(r.body["operation"].is_string());
    assert_eq!(app.get("/v2/service_instances/i-1/last_operation").await.body["state"], "in progress");
    app.release(OperationKind::Deprovision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.expect(StatusCode::GONE), &json!({}));
}

#[tokio::test]
async fn deprovision_of_an_unknown_instance_is_410_with_an_empty_object() {
    let app = with_plan("{}").await;
    assert_eq!(app.deprovision("nope", false).await.expect(StatusCode::GONE), &json!({}));
}

#[tokio::test]
async fn a_repeated_deprovision_is_410() {
    let app = provisioned_sync().await;
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.deprovision("i-1", false).await.expect(StatusCode::GONE), &json!({}));
}

#[tokio::test]
async fn missing_service_id_or_plan_id_is_400() {
    let app = provisioned_sync().await;
    for query in ["?plan_id=x", "?service_id=x", "?service_id=&plan_id=x", ""] {
        let r = app.delete(&format!("/v2/service_instances/i-1{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        r.osb_error();
    }
    // Nothing was deleted.
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn async_only_deprovision_without_accepts_incomplete_is_422() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    app.deprovision("i-1", false).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired");
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn resent_deprovision_while_running_is_202_with_the_same_operation() {
    let (app, first) = deprovisioning().await;
    let second = app.deprovision("i-1", true).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert!(second.body["operation"].is_string());
    assert_eq!(first.body["operation"], second.body["operation"]);
}

#[tokio::test]
async fn deprovision_during_the_provision_is_422_concurrency_error() {
    let app = provisioning().await;
    app.deprovision("i-1", true).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
    // The provision carries on undisturbed.
    app.release(OperationKind::Provision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
}

#[tokio::test]
async fn deprovision_while_a_binding_is_busy_is_422_concurrency_error() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    app.deprovision("i-1", true).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
}

#[tokio::test]
async fn a_failed_sync_deprovision_is_500_with_instance_usable() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync, fail: [deprovision]}").await;
    let r = app.deprovision("i-1", false).await;
    r.fails_with(StatusCode::INTERNAL_SERVER_ERROR);
    assert_failure_flags(&r.body, None);
    // Still there, so the platform can retry.
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_async_deprovision_reports_failed_with_instance_usable() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, fail: [deprovision]}").await;
    assert_eq!(app.deprovision("i-1", true).await.status, StatusCode::ACCEPTED);
    let last = app.poll_instance("i-1").await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(last.body["state"], "failed");
    assert_failure_flags(&last.body, None);
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn bindings_are_retired_with_their_instance() {
    let app = provisioned_sync().await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    let r = app.get("/v2/service_instances/i-1/service_bindings/b-1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.unbind("i-1", "b-1", false).await.status, StatusCode::GONE);
}
