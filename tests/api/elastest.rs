//! The ElasTest extensions, and what the ElasTest platform depends on.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

const SPARK: &str = "version: '2'\nservices:\n  spark-master:\n    image: elastest/ebs-spark-base:0.5.0\n    container_name: spark-master\n  spark-worker:\n    image: elastest/ebs-spark-base:0.5.0\n    environment: [SPARK_MODE=worker]\n";

#[tokio::test]
async fn the_original_walkthrough_works() {
    let app = spawn_app().await;
    let service = json!({"description": "this is a test service", "id": "a_service_type", "name": "test_svc",
        "bindable": false, "plan_updateable": false, "requires": [], "tags": ["test", "tester"],
        "plans": [{"bindable": false, "description": "plan for testing", "free": true,
                   "id": "plan-id-for-free", "name": "testing plan"}]});
    assert_eq!(app.put("/v2/et/catalog", &service).await.status, StatusCode::CREATED);
    let manifest = json!({"id": "test-mani", "manifest_content": SPARK, "manifest_type": "dummy",
        "plan_id": "plan-id-for-free", "service_id": "a_service_type",
        "endpoints": {"spark-master": {"main": true, "port": 8080}}, "config": {"k": "v"}});
    assert_eq!(app.put("/v2/et/manifest/test_manifest", &manifest).await.status, StatusCode::CREATED);
    let listed = app.get("/v2/et/manifest").await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body[0]["id"], "test_manifest", "the path id wins over the body's");

    let payload = json!({"organization_guid": "org", "plan_id": "plan-id-for-free",
        "service_id": "a_service_type", "space_guid": "space",
        "parameters": {"ET_ESM_API": "http://esm:37005/", "parameter2": "value"}});
    let r = app.put("/v2/service_instances/123-123-123?accept_incomplete=true", &payload).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(app.poll_instance("123-123-123").await.body["state"], "succeeded");

    let all = app.get("/v2/et/service_instances").await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(1));
    let one = app.get("/v2/et/service_instances/123-123-123").await;
    assert_eq!(one.status, StatusCode::OK);
    let context = one.body["context"].as_object().expect("context");
    assert_eq!(context["id"], "123-123-123");
    assert_eq!(context["manifest_id"], "test_manifest");
    assert!(context.contains_key("spark-master_Ip"), "{context:?}");
    assert!(context.keys().any(|k| k.contains("spark-worker") && k.ends_with("_Ip")));
    assert_eq!(context["spark-master_environment_ET_ESM_API"], "http://esm:37005/");
    assert_eq!(one.body["service_type"]["id"], "a_service_type");
    assert_eq!(one.body["state"]["state"], "succeeded");

    let r = app.delete("/v2/service_instances/123-123-123?service_id=srv&plan_id=plan").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get("/v2/et/service_instances").await.body, json!([]));
}

#[tokio::test]
async fn a_manifest_is_fetched_without_headers_as_a_one_element_array() {
    let app = with_plan(SPARK).await;
    let r = reply(app.raw(Method::GET, "/v2/et/manifest/manifest-1").send().await.expect("sent")).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.body.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], "manifest-1");
    assert_eq!(list[0]["manifest_type"], "dummy");
    // The ElasTest platform's URL has a double slash.
    let r = reply(app.raw(Method::GET, "//v2/et/manifest/manifest-1").send().await.expect("sent")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body[0]["id"], "manifest-1");
    let r = app.get("/v2/et/manifest/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.osb_error();
}

#[tokio::test]
async fn bad_manifests_are_400() {
    let app = with_plan("{}").await;
    let base = json!({"service_id": SERVICE, "plan_id": PLAN, "manifest_type": "dummy", "manifest_content": "{}"});
    let cases = [
        ("manifest_type", json!("helm")),
        ("service_id", json!("nope")),
        ("plan_id", json!("nope")),
        ("manifest_content", json!("x-esm-dummy: {mode: [unclosed")),
        ("manifest_content", json!("")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value;
        let r = app.put("/v2/et/manifest/new", &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{field}: {}", r.body);
        r.osb_error();
    }
    assert_eq!(app.get("/v2/et/manifest").await.body.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn manifest_reregistration_and_one_manifest_per_plan() {
    let app = with_plan("{}").await;
    let same = json!({"service_id": SERVICE, "plan_id": PLAN, "manifest_type": "dummy", "manifest_content": "{}"});
    assert_eq!(app.put("/v2/et/manifest/manifest-1", &same).await.status, StatusCode::OK);
    let mut different = same.clone();
    different["manifest_content"] = json!("services: {}");
    assert_eq!(app.put("/v2/et/manifest/manifest-1", &different).await.status, StatusCode::CONFLICT);
    let r = app.put("/v2/et/manifest/another", &same).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "plan-1 already has manifest-1");
}

#[tokio::test]
async fn deleting_manifests_and_services() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.delete("/v2/et/manifest/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let r = app.delete("/v2/et/manifest/manifest-1").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "in use");
    r.osb_error();
    let r = app.delete(&format!("/v2/et/catalog/{SERVICE}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the service has instances");
    assert_eq!(app.delete("/v2/et/catalog/nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("/v2/et/manifest/manifest-2").await.status, StatusCode::OK);
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.delete("/v2/et/manifest/manifest-1").await.status, StatusCode::OK);
    // The original's form of the service delete.
    let r = app.delete(&format!("/v2/et/catalog?service_id={SERVICE}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get("/v2/catalog").await.body, json!({"services": []}));
}

#[tokio::test]
async fn deleting_a_service_takes_its_manifests() {
    let app = with_plan("{}").await;
    assert_eq!(app.delete(&format!("/v2/et/catalog/{SERVICE}")).await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/et/manifest").await.body, json!([]));
}

#[tokio::test]
async fn an_unknown_instance_view_is_404() {
    let app = spawn_app().await;
    let r = app.get("/v2/et/service_instances/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.osb_error();
}
