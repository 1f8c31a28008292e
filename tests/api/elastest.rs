//! The ElasTest extensions, and what the ElasTest platform (TORM) depends on.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const SPARK: &str = "version: '2'\nservices:\n  spark-master:\n    image: elastest/ebs-spark-base:0.5.0\n    container_name: spark-master\n  spark-worker:\n    image: elastest/ebs-spark-base:0.5.0\n    environment: [SPARK_MODE=worker]\n";

/// The original README's service, and its manifest `test_manifest` (with endpoints and
/// config) for plan `plan-id-for-free`.
async fn register_spark(app: &TestApp) {
    let service = json!({"description": "this is a test service", "id": "a_service_type", "name": "test_svc",
        "bindable": false, "plan_updateable": false, "requires": [], "tags": ["test", "tester"],
        "plans": [{"bindable": false, "description": "plan for testing", "free": true,
                   "id": "plan-id-for-free", "name": "testing plan"}]});
    let r = app.put("/v2/et/catalog", &service).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body, json!({}));
    let r = app.put("/v2/et/manifest/test_manifest", &spark_manifest()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body, json!({}));
}

fn spark_manifest() -> Value {
    json!({"id": "test-mani", "manifest_content": SPARK, "manifest_type": "dummy",
        "plan_id": "plan-id-for-free", "service_id": "a_service_type",
        "endpoints": {"spark-master": {"main": true, "port": 8080}}, "config": {"k": "v"}})
}

/// A manifest body for `plan` of `svc-1`.
fn manifest_for(plan: &str, content: &str) -> Value {
    json!({"service_id": SERVICE, "plan_id": plan, "manifest_type": "dummy", "manifest_content": content})
}

/// A request as the ElasTest platform sends it: lower-case 2.12 version header.
async fn torm(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> Reply {
    let mut req = app.raw(method, path).header("x-broker-api-version", "2.12");
    if let Some(body) = body {
        req = req.json(body);
    }
    reply(req.send().await.expect("sent")).await
}

/// GET without any header, as the platform fetches manifests.
async fn get_bare(app: &TestApp, path: &str) -> Reply {
    reply(app.raw(Method::GET, path).send().await.expect("sent")).await
}

refusals! {
    an_unknown_instance_view_is_404_with_an_osb_body: spawn_app(), GET "/v2/et/service_instances/nope" => NOT_FOUND;
    deleting_an_unknown_manifest_is_404: with_plan("{}"), DELETE "/v2/et/manifest/nope" => NOT_FOUND;
}

#[tokio::test]
async fn the_original_walkthrough_works() {
    let app = spawn_app().await;
    register_spark(&app).await;
    let listed = app.get("/v2/et/manifest").await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body[0]["id"], "test_manifest", "the path id wins over the body's");

    let payload = json!({"organization_guid": "org", "plan_id": "plan-id-for-free",
        "service_id": "a_service_type", "space_guid": "space",
        "parameters": {"ET_ESM_API": "http://esm:37005/", "parameter2": "value"}});
    let r = app.put("/v2/service_instances/123-123-123?accept_incomplete=true", &payload).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(app.poll_instance("123-123-123").await.body["state"], "succeeded");

    let all = app.get("/v2/et/service_instances").await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(all.body.as_array().map(Vec::len), Some(1));
    assert_eq!(all.body[0]["context"]["id"], "123-123-123");
    let one = app.get("/v2/et/service_instances/123-123-123").await;
    assert_eq!(one.status, StatusCode::OK);
    let context = one.body["context"].as_object().expect("context");
    assert_eq!(context["id"], "123-123-123");
    assert_eq!(context["manifest_id"], "test_manifest");
    assert!(context.contains_key("spark-master_Ip"), "{context:?}");
    assert!(context.keys().any(|k| k.contains("spark-worker") && k.ends_with("_Ip")), "{context:?}");
    assert_eq!(context["spark-master_environment_ET_ESM_API"], "http://esm:37005/");
    assert_eq!(context["123-123-123_spark-worker_environment_SPARK_MODE"], "worker");
    assert_eq!(one.body["service_type"]["id"], "a_service_type");
    assert_eq!(one.body["state"]["state"], "succeeded");

    // The original's tests send placeholder ids on delete.
    let r = app.delete("/v2/service_instances/123-123-123?service_id=srv&plan_id=plan").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.get("/v2/et/service_instances").await.body, json!([]));
}

#[tokio::test]
async fn the_elastest_platforms_calls_work() {
    let app = spawn_app().await;
    register_spark(&app).await;
    // Provision: sync, with extra fields from the platform's status view.
    let payload = json!({"organization_guid": "org", "plan_id": "plan-id-for-free",
        "service_id": "a_service_type", "space_guid": "space", "context": {},
        "parameters": {"ET_ESM_API": "http://esm:37005/"}, "status": "Ready", "statusMsg": "Ready"});
    let r = torm(&app, Method::PUT, "/v2/service_instances/tss-1?accept_incomplete=false", Some(&payload)).await;
    assert!(r.status.is_success(), "{} {}", r.status, r.body);
    // The manifest: no headers, double slash, a one-element array.
    let m = get_bare(&app, "//v2/et/manifest/test_manifest").await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.body[0]["endpoints"]["spark-master"]["main"], true);
    // The instance: `_Ip` keys that contain the endpoint name.
    let info = torm(&app, Method::GET, "/v2/et/service_instances/tss-1", None).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.body["context"]["manifest_id"], "test_manifest");
    let ips: Vec<&String> = info.body["context"]
        .as_object()
        .expect("context")
        .keys()
        .filter(|k| k.contains("_Ip") && k.contains("spark-master"))
        .collect();
    assert!(!ips.is_empty(), "{}", info.body);
    // Deprovision without accept_incomplete; the answer is parsed as a JSON object.
    let path = "/v2/service_instances/tss-1?service_id=a_service_type&plan_id=plan-id-for-free";
    let r = torm(&app, Method::DELETE, path, None).await;
    assert!(r.status.is_success(), "{}", r.status);
    assert_eq!(r.body, json!({}));
}

#[tokio::test]
async fn a_manifest_is_fetched_without_headers_as_a_one_element_array() {
    let app = spawn_app().await;
    register_spark(&app).await;
    let r = get_bare(&app, "/v2/et/manifest/test_manifest").await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.body.as_array().expect("an array");
    assert_eq!(list.len(), 1);
    let mut expected = spark_manifest();
    expected["id"] = json!("test_manifest");
    assert_eq!(list[0], expected, "every field kept, endpoints and config included");
}

#[tokio::test]
async fn a_double_slash_manifest_url_is_served() {
    let app = with_plan(SPARK).await;
    let r = get_bare(&app, "//v2/et/manifest/manifest-1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(r.body[0]["id"], "manifest-1");
}

#[tokio::test]
async fn an_unknown_manifest_is_404() {
    let app = with_plan("{}").await;
    get_bare(&app, "/v2/et/manifest/nope").await.fails_with(StatusCode::NOT_FOUND);
}

/// [`with_plan`] with `manifest-1` deleted, so `plan-1` has room for a new manifest.
async fn without_a_manifest() -> TestApp {
    let app = with_plan("{}").await;
    assert_eq!(app.delete("/v2/et/manifest/manifest-1").await.status, StatusCode::OK);
    app
}

/// PUTs `body` as manifest `new` and asserts it is refused with a 400 and not stored;
/// the refusal.
async fn refused_manifest(app: &TestApp, body: &Value) -> Reply {
    let r = app.put("/v2/et/manifest/new", body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
    assert_eq!(get_bare(app, "/v2/et/manifest/new").await.status, StatusCode::NOT_FOUND);
    r
}

#[tokio::test]
async fn a_manifest_with_an_unknown_manifest_type_is_400() {
    let app = without_a_manifest().await;
    let mut body = manifest_for(PLAN, "{}");
    body["manifest_type"] = json!("helm");
    refused_manifest(&app, &body).await.mentions("helm");
}

#[tokio::test]
async fn a_manifest_for_an_unknown_service_or_plan_is_400() {
    let app = without_a_manifest().await;
    let mut unknown_service = manifest_for(PLAN, "{}");
    unknown_service["service_id"] = json!("nope");
    for body in [unknown_service, manifest_for("nope", "{}")] {
        refused_manifest(&app, &body).await.mentions("nope");
    }
}

#[tokio::test]
async fn an_invalid_dummy_manifest_is_400() {
    let app = without_a_manifest().await;
    for content in ["x-esm-dummy: {mode: [unclosed", "x-esm-dummy: {mode: sometimes}", "x-esm-dummy: {fial: [bind]}"] {
        refused_manifest(&app, &manifest_for(PLAN, content)).await.osb_error();
    }
}

#[tokio::test]
async fn the_same_manifest_again_is_200() {
    let app = with_plan("{}").await;
    assert_eq!(
        app.put("/v2/et/manifest/manifest-1", &manifest_for(PLAN, "{}")).await.expect(StatusCode::OK),
        &json!({})
    );
}

#[tokio::test]
async fn a_different_manifest_under_the_same_id_is_409() {
    let app = with_plan("{}").await;
    app.put("/v2/et/manifest/manifest-1", &manifest_for(PLAN, "services: {}")).await.fails_with(StatusCode::CONFLICT);
    assert_eq!(get_bare(&app, "/v2/et/manifest/manifest-1").await.body[0]["manifest_content"], "{}");
}

#[tokio::test]
async fn a_second_manifest_for_the_same_plan_is_409() {
    let app = with_plan("{}").await;
    let r = app.put("/v2/et/manifest/another", &manifest_for(PLAN, "{}")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "plan-1 already has manifest-1");
    r.mentions("manifest-1");
}

#[tokio::test]
async fn deleting_a_manifest_in_use_is_409() {
    let app = provisioned_sync().await;
    let r = app.delete("/v2/et/manifest/manifest-1").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    r.mentions("i-1");
    assert_eq!(get_bare(&app, "/v2/et/manifest/manifest-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn deleting_an_unused_manifest_is_200() {
    let app = provisioned_sync().await;
    assert_eq!(app.delete("/v2/et/manifest/manifest-2").await.expect(StatusCode::OK), &json!({}));
    assert_eq!(get_bare(&app, "/v2/et/manifest/manifest-2").await.status, StatusCode::NOT_FOUND);
    // Once its instance is gone, manifest-1 can go too.
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.delete("/v2/et/manifest/manifest-1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn deleting_a_service_with_instances_is_409() {
    let app = provisioned_sync().await;
    app.delete(&format!("/v2/et/catalog/{SERVICE}")).await.fails_with(StatusCode::CONFLICT);
    assert_eq!(app.get("/v2/catalog").await.body["services"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn deleting_an_unknown_service_is_404() {
    let app = with_plan("{}").await;
    app.delete("/v2/et/catalog/nope").await.fails_with(StatusCode::NOT_FOUND);
    let r = app.delete("/v2/et/catalog?service_id=nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleting_a_service_takes_its_manifests() {
    let app = with_plan("{}").await;
    assert_eq!(app.delete(&format!("/v2/et/catalog/{SERVICE}")).await.expect(StatusCode::OK), &json!({}));
    assert_eq!(app.get("/v2/catalog").await.body, json!({"services": []}));
    assert_eq!(app.get("/v2/et/manifest").await.body, json!([]));
}

#[tokio::test]
async fn the_originals_query_form_of_the_service_delete_works() {
    let app = with_plan("{}").await;
    assert_eq!(app.delete(&format!("/v2/et/catalog?service_id={SERVICE}")).await.expect(StatusCode::OK), &json!({}));
    assert_eq!(app.get("/v2/catalog").await.body, json!({"services": []}));
    let r = app.delete("/v2/et/catalog").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "service_id is required");
}

#[tokio::test]
async fn the_instance_list_is_empty_without_instances() {
    let app = with_plan("{}").await;
    assert_eq!(app.get("/v2/et/service_instances").await.expect(StatusCode::OK), &json!([]));
}

// The original README's manifest step, as printed there: YAML pasted into a JSON string
// with its line breaks raw. Refused (it is not JSON), with what to do about it.
#[tokio::test]
async fn a_manifest_pasted_with_raw_line_breaks_is_refused_with_what_to_do() {
    let app = spawn_app().await;
    let body = "{\"id\": \"m\", \"manifest_content\": \"version: '2'\nservices:\n  spark: {image: busybox}\n\", \
                \"manifest_type\": \"docker-compose\", \"plan_id\": \"p\", \"service_id\": \"s\"}";
    let response = app
        .raw(Method::PUT, "/v2/et/manifest/m")
        .header("X-Broker-API-Version", "2.12")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let answer: Value = response.json().await.expect("an OSB error body");
    let description = answer["description"].as_str().unwrap_or_default();
    assert!(description.contains("control character"), "{answer}");
    assert!(description.contains(r"write them as \n and \t") && description.contains("jq -n --rawfile"), "{answer}");
    app.stop().await;
}
