//! `GET /v2/service_instances/{id}` and `GET .../last_operation`: one test per row of
//! the fetch-instance and last-operation tables.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

refusals! {
    fetch_of_an_unknown_instance_is_404: spawn_app(), GET "/v2/service_instances/nope" => NOT_FOUND;
    last_operation_of_an_unknown_instance_is_404:
        spawn_app(), GET "/v2/service_instances/nope/last_operation" => NOT_FOUND;
    last_operation_with_an_unknown_operation_is_400:
        provisioned_sync(), GET "/v2/service_instances/i-1/last_operation?operation=bogus" => BAD_REQUEST;
}

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
    assert_eq!(r.body["metadata"]["labels"]["esm/manifest_id"], "manifest-1");
}

/// A dashboard URL is shown as a link: a manifest naming one that is not http(s) (or
/// too long) is refused at registration, naming the field.
#[tokio::test]
async fn a_manifest_with_a_script_dashboard_url_is_refused() {
    let app = spawn_app().await;
    let service = json!({"id": SERVICE, "name": "test-service", "description": "a test service", "bindable": true,
                         "plans": [{"id": PLAN, "name": "small", "description": "a small plan"}]});
    assert_eq!(app.put("/v2/et/catalog", &service).await.status, StatusCode::CREATED);
    for url in ["javascript:alert(document.cookie)", "data:text/html,x", &format!("https://d/{}", "a".repeat(3000))] {
        let body = json!({"service_id": SERVICE, "plan_id": PLAN, "manifest_type": "dummy",
                          "manifest_content": format!("x-esm-dummy: {{dashboard_url: '{url}'}}")});
        let r = app.put("/v2/et/manifest/manifest-1", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.body);
        r.mentions("dashboard_url");
    }
}

#[tokio::test]
async fn fetch_while_provisioning_is_404() {
    let app = provisioning().await;
    app.get("/v2/service_instances/i-1").await.fails_with(StatusCode::NOT_FOUND);
    // And available as soon as last_operation says succeeded.
    app.release(OperationKind::Provision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn fetch_while_updating_is_422_concurrency_error() {
    let app = updating().await;
    app.get("/v2/service_instances/i-1").await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
}

#[tokio::test]
async fn fetch_after_deprovision_is_404() {
    let app = provisioned_sync().await;
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn last_operation_states_are_spelled_exactly() {
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision], fail: [update]}").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    let running = app.get("/v2/service_instances/i-1/last_operation").await;
    assert_eq!(running.status, StatusCode::OK);
    assert_eq!(running.body["state"], "in progress");
    app.release(OperationKind::Provision, "i-1");
    let done = app.poll_instance("i-1").await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["state"], "succeeded");
    let r = app.patch(&provision_path("i-1", true), &json!({"service_id": SERVICE, "parameters": {"b": 1}})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let failed = app.poll_instance("i-1").await;
    assert_eq!(failed.status, StatusCode::OK);
    assert_eq!(failed.body["state"], "failed");
    assert!(failed.body["description"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn retry_after_is_sent_while_in_progress_only() {
    let app = provisioning().await;
    let r = app.get("/v2/service_instances/i-1/last_operation").await;
    assert_eq!(r.body["state"], "in progress");
    assert_eq!(r.header("retry-after"), Some("1"), "the test config's ESM_RETRY_AFTER");
    app.release(OperationKind::Provision, "i-1");
    let done = app.poll_instance("i-1").await;
    assert_eq!(done.body["state"], "succeeded");
    assert!(done.header("retry-after").is_none());
}

#[tokio::test]
async fn an_older_operation_is_still_answered() {
    let app = with_plan("x-esm-dummy: {mode: async, fail: [update]}").await;
    let r = app.provision("i-1", true).await;
    let provision_op = r.body["operation"].as_str().expect("operation").to_owned();
    app.poll_instance("i-1").await;
    let r = app.patch(&provision_path("i-1", true), &json!({"service_id": SERVICE, "parameters": {"b": 1}})).await;
    let update_op = r.body["operation"].as_str().expect("operation").to_owned();
    assert_ne!(provision_op, update_op);
    assert_eq!(app.poll_instance("i-1").await.body["state"], "failed", "the newest operation by default");
    let old = app.get(&format!("/v2/service_instances/i-1/last_operation?operation={provision_op}")).await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.body["state"], "succeeded");
    let newest = app.get(&format!("/v2/service_instances/i-1/last_operation?operation={update_op}")).await;
    assert_eq!(newest.body["state"], "failed");
}

#[tokio::test]
async fn last_operation_ignores_the_service_and_plan_hints() {
    let app = provisioned_sync().await;
    let r = app.get(&format!("/v2/service_instances/i-1/last_operation?service_id={SERVICE}&plan_id=old-plan")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["state"], "succeeded");
}
