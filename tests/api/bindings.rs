//! Bind, fetch, unbind and the binding's last_operation: one test per contract row.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn binding_path(binding: &str) -> String {
    format!("/v2/service_instances/i-1/service_bindings/{binding}")
}

/// A bind body for `plan-1` with extra fields.
fn bind_body(extra: Value) -> Value {
    let mut body = json!({"service_id": SERVICE, "plan_id": PLAN});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

refusals! {
    fetch_of_an_unknown_binding_is_404: provisioned_sync(), GET binding_path("nope") => NOT_FOUND;
    binding_last_operation_of_an_unknown_binding_is_404:
        provisioned_sync(), GET format!("{}/last_operation", binding_path("nope")) => NOT_FOUND;
}

#[tokio::test]
async fn sync_bind_is_201_with_credentials_and_fetchable() {
    let app = provisioned_sync().await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["credentials"]["username"], "user-b-1");
    assert!(r.body.get("operation").is_none());
    let fetched = app.get(&binding_path("b-1")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["credentials"], r.body["credentials"]);
}

#[tokio::test]
async fn async_bind_is_202_without_credentials_then_fetch_has_them() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    let r = app.bind("i-1", "b-1", None, true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.body.get("credentials").is_none(), "a 202 never carries credentials: {}", r.body);
    assert!(r.body["operation"].is_string());
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "succeeded");
    let fetched = app.get(&binding_path("b-1")).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["credentials"]["username"], "user-b-1");
    assert!(fetched.body["credentials"]["password"].is_string());
}

#[tokio::test]
async fn identical_rebind_is_200_with_the_same_body() {
    let app = provisioned_sync().await;
    let first = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["credentials"], first.body["credentials"]);
}

#[tokio::test]
async fn rebind_with_different_parameters_is_409() {
    let app = provisioned_sync().await;
    let first = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(first.status, StatusCode::CREATED);
    app.bind("i-1", "b-1", Some(bind_body(json!({"parameters": {"role": "admin"}}))), false)
        .await
        .fails_with(StatusCode::CONFLICT);
    // The binding is untouched.
    assert_eq!(app.get(&binding_path("b-1")).await.body["credentials"], first.body["credentials"]);
}

#[tokio::test]
async fn resent_bind_while_running_is_202_with_the_same_operation() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [bind]}").await;
    let first = app.bind("i-1", "b-1", None, true).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = app.bind("i-1", "b-1", None, true).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert!(second.body.get("credentials").is_none());
    assert!(second.body["operation"].is_string());
    assert_eq!(first.body["operation"], second.body["operation"]);
}

#[tokio::test]
async fn a_different_bind_while_binding_is_409() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    app.bind("i-1", "b-1", Some(bind_body(json!({"parameters": {"role": "admin"}}))), true)
        .await
        .fails_with(StatusCode::CONFLICT);
}

#[tokio::test]
async fn requires_app_is_422_without_an_app_guid() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync, requires_app: true}").await;
    app.bind("i-1", "b-1", None, false).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "RequiresApp");
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn app_guid_or_bind_resource_app_guid_satisfies_requires_app() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync, requires_app: true}").await;
    let with_resource = bind_body(json!({"bind_resource": {"app_guid": "app-1"}}));
    assert_eq!(app.bind("i-1", "b-1", Some(with_resource), false).await.status, StatusCode::CREATED);
    let legacy = bind_body(json!({"app_guid": "app-2"}));
    assert_eq!(app.bind("i-1", "b-2", Some(legacy), false).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn async_only_bind_without_accepts_incomplete_is_422() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    app.bind("i-1", "b-1", None, false).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired");
}

#[tokio::test]
async fn bind_to_an_unknown_instance_is_404() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    app.bind("nope", "b-1", None, false).await.fails_with(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn missing_service_id_or_plan_id_is_400() {
    let app = provisioned_sync().await;
    for body in [json!({"plan_id": PLAN}), json!({"service_id": SERVICE})] {
        let r = app.bind("i-1", "b-1", Some(body.clone()), false).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        r.osb_error();
    }
}

#[tokio::test]
async fn bind_on_a_non_bindable_plan_is_400() {
    let app = provisioned(json!({"bindable": false}), "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions("not bindable");
}

#[tokio::test]
async fn parameters_failing_the_bind_schema_are_400() {
    let schema = json!({"schemas": {"service_binding": {"create": {"parameters": {
        "$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
        "properties": {"role": {"enum": ["ro", "rw"]}}}}}}});
    let app = provisioned(schema, "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-1", Some(bind_body(json!({"parameters": {"role": "god"}}))), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions("/role");
    let ok = app.bind("i-1", "b-1", Some(bind_body(json!({"parameters": {"role": "ro"}}))), false).await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bind_while_the_instance_updates_is_422_concurrency_error() {
    let app = updating().await;
    app.bind("i-1", "b-1", None, true).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
}

#[tokio::test]
async fn fetch_while_binding_is_404() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    app.get(&binding_path("b-1")).await.fails_with(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn binding_last_operation_reports_in_progress_then_succeeded() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    let r = app.get(&format!("{}/last_operation", binding_path("b-1"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["state"], "in progress");
    assert!(r.header("retry-after").is_some());
    app.release(OperationKind::Bind, "b-1");
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "succeeded");
}

#[tokio::test]
async fn a_failed_async_bind_reports_failed_without_instance_flags() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, fail: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    let r = app.poll_binding("i-1", "b-1").await;
    assert_eq!(r.body["state"], "failed");
    assert!(r.body.get("instance_usable").is_none() && r.body.get("update_repeatable").is_none(), "{}", r.body);
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unbind_is_200_with_an_empty_object() {
    let app = provisioned_sync().await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    assert_eq!(app.unbind("i-1", "b-1", false).await.expect(StatusCode::OK), &json!({}));
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unbind_of_an_unknown_binding_is_410_with_an_empty_object() {
    let app = provisioned_sync().await;
    assert_eq!(app.unbind("i-1", "nope", false).await.expect(StatusCode::GONE), &json!({}));
    // Also once it has been unbound, and on an unknown instance.
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    assert_eq!(app.unbind("i-1", "b-1", false).await.status, StatusCode::OK);
    assert_eq!(app.unbind("i-1", "b-1", false).await.status, StatusCode::GONE);
    assert_eq!(app.unbind("no-instance", "b-1", false).await.status, StatusCode::GONE);
}

#[tokio::test]
async fn unbind_without_service_id_or_plan_id_is_400() {
    let app = provisioned_sync().await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    for query in [format!("?service_id={SERVICE}"), format!("?plan_id={PLAN}"), String::new()] {
        let r = app.delete(&format!("{}{query}", binding_path("b-1"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        r.osb_error();
    }
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::OK, "still bound");
}

#[tokio::test]
async fn async_unbind_then_binding_last_operation_is_410() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "succeeded");
    let r = app.unbind("i-1", "b-1", true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.body["operation"].is_string());
    assert_eq!(app.poll_binding("i-1", "b-1").await.expect(StatusCode::GONE), &json!({}));
}

#[tokio::test]
async fn resent_unbind_while_running_is_202_with_the_same_operation() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [unbind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    app.poll_binding("i-1", "b-1").await;
    let first = app.unbind("i-1", "b-1", true).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = app.unbind("i-1", "b-1", true).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["operation"], second.body["operation"]);
}

#[tokio::test]
async fn async_only_unbind_without_accepts_incomplete_is_422() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "succeeded");
    app.unbind("i-1", "b-1", false).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired");
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::OK, "still bound");
}

#[tokio::test]
async fn a_failed_sync_unbind_is_500_and_keeps_the_binding() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync, fail: [unbind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    let r = app.unbind("i-1", "b-1", false).await;
    r.fails_with(StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.body.get("instance_usable").is_none(), "only update/deprovision carry the flags: {}", r.body);
    assert_eq!(app.get(&binding_path("b-1")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unbind_while_binding_is_422_concurrency_error() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, hold: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    app.unbind("i-1", "b-1", true).await.refused(StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError");
}

#[tokio::test]
async fn rotation_on_a_non_rotatable_plan_is_400() {
    let app = provisioned_sync().await;
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    let r = app.bind("i-1", "b-2", Some(bind_body(json!({"predecessor_binding_id": "b-1"}))), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions("binding_rotatable");
    assert_eq!(app.get(&binding_path("b-2")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rotation_from_an_unknown_predecessor_is_400() {
    let app = provisioned(json!({"binding_rotatable": true}), "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-2", Some(bind_body(json!({"predecessor_binding_id": "nope"}))), false).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.mentions("nope");
}

#[tokio::test]
async fn rotation_gives_new_credentials_and_keeps_both_bindings() {
    let app = provisioned(json!({"binding_rotatable": true}), "x-esm-dummy: {mode: sync}").await;
    let first = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.bind("i-1", "b-2", Some(bind_body(json!({"predecessor_binding_id": "b-1"}))), false).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_ne!(second.body["credentials"], first.body["credentials"]);
    assert_eq!(app.get(&binding_path("b-1")).await.body["credentials"], first.body["credentials"]);
    assert_eq!(app.get(&binding_path("b-2")).await.body["credentials"], second.body["credentials"]);
}

#[tokio::test]
async fn a_plan_lifetime_sets_expires_at_and_renew_before() {
    let app = provisioned(json!({"binding_lifetime_seconds": 3600}), "x-esm-dummy: {mode: sync}").await;
    let r = app.bind("i-1", "b-1", None, false).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let expires = r.body["metadata"]["expires_at"].as_str().expect("expires_at");
    let renew = r.body["metadata"]["renew_before"].as_str().expect("renew_before");
    assert!(expires.ends_with('Z') && renew.ends_with('Z'), "UTC: {expires} {renew}");
    let expires_at = humantime::parse_rfc3339(expires).expect("RFC 3339");
    let renew_at = humantime::parse_rfc3339(renew).expect("RFC 3339");
    let now = std::time::SystemTime::now();
    let lifetime = expires_at.duration_since(now).expect("in the future").as_secs();
    assert!((3590..=3600).contains(&lifetime), "{lifetime}");
    assert!(renew_at < expires_at && renew_at > now);
    // Fetch shows the same metadata.
    assert_eq!(app.get(&binding_path("b-1")).await.body["metadata"], r.body["metadata"]);
}
