//! What each client sees: fields per OSB version, the order of refusals, re-sent
//! requests, and operations a platform asks about after they ended.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::wait::eventually;

/// A plan with a field from each later version, and an instance provisioned on it.
async fn rich_catalog() -> TestApp {
    let extra = json!({
        "maintenance_info": {"version": "1.0.0"},
        "maximum_polling_duration": 600,
        "binding_rotatable": true,
        "schemas": {"service_instance": {"create": {"parameters": {"type": "object"}}}}
    });
    provisioned(extra, "x-esm-dummy: {mode: sync}").await
}

#[tokio::test]
async fn each_version_sees_only_the_fields_it_defines() {
    let app = rich_catalog().await;
    for minor in 12..=17 {
        let version = format!("2.{minor}");
        let catalog = app.send_as(&version, Method::GET, "/v2/catalog", None).await;
        let plan = &catalog.body["services"][0]["plans"][0];
        assert_eq!(plan.get("schemas").is_some(), minor >= 13, "{version}: schemas");
        assert_eq!(plan.get("maintenance_info").is_some(), minor >= 15, "{version}: maintenance_info");
        assert_eq!(plan.get("plan_updateable").is_some(), minor >= 15, "{version}: plan-level plan_updateable");
        assert_eq!(plan.get("maximum_polling_duration").is_some(), minor >= 15, "{version}");
        assert_eq!(plan.get("binding_rotatable").is_some(), minor >= 17, "{version}: binding_rotatable");
        let service = &catalog.body["services"][0];
        assert_eq!(service.get("instances_retrievable").is_some(), minor >= 14, "{version}: instances_retrievable");

        let id = format!("v{minor}");
        let body = json!({"service_id": SERVICE, "plan_id": PLAN, "organization_guid": "o", "space_guid": "s",
                          "maintenance_info": {"version": "1.0.0"}});
        let provisioned = app.send_as(&version, Method::PUT, &format!("/v2/service_instances/{id}"), Some(&body)).await;
        assert_eq!(provisioned.status, StatusCode::CREATED, "{version}: {}", provisioned.body);
        assert_eq!(provisioned.body.get("metadata").is_some(), minor >= 16, "{version}: {}", provisioned.body);

        if minor >= 14 {
            let fetched = app.send_as(&version, Method::GET, &format!("/v2/service_instances/{id}"), None).await;
            assert_eq!(fetched.status, StatusCode::OK, "{version}");
            assert_eq!(fetched.body.get("maintenance_info").is_some(), minor >= 15, "{version}: {}", fetched.body);
            assert_eq!(fetched.body.get("metadata").is_some(), minor >= 16, "{version}: {}", fetched.body);
        }
    }
}

#[tokio::test]
async fn failure_flags_only_reach_clients_that_know_them() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: sync, fail: [update]}").await;
    let patch = json!({"service_id": SERVICE, "parameters": {"a": 1}});
    for (version, flagged) in [("2.15", false), ("2.16", true)] {
        let r = app.send_as(version, Method::PATCH, "/v2/service_instances/i-1", Some(&patch)).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{version}");
        assert_eq!(r.body.get("instance_usable").is_some(), flagged, "{version}: {}", r.body);
        assert_eq!(r.body.get("update_repeatable").is_some(), flagged, "{version}: {}", r.body);
    }
}

#[tokio::test]
async fn bindings_are_synchronous_for_clients_before_2_14() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: either}").await;
    let body = json!({"service_id": SERVICE, "plan_id": PLAN});
    let path = "/v2/service_instances/i-1/service_bindings/b-1?accepts_incomplete=true";
    let r = app.send_as("2.13", Method::PUT, path, Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body.get("credentials").is_some() && r.body.get("operation").is_none(), "{}", r.body);
}

#[tokio::test]
async fn request_refusals_come_before_answers_from_state() {
    let app = provisioned(json!({"maintenance_info": {"version": "1.0.0"}}), "x-esm-dummy: {mode: async}").await;
    // The same id with other attributes would be 409, but the request itself is refused.
    let mut other = provision_body(PLAN);
    other["parameters"] = json!({"other": true});
    let r = app.put(&provision_path("i-1", false), &other).await;
    assert_eq!((r.status, r.osb_error()), (StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired"));
    let mut stale = provision_body(PLAN);
    stale["maintenance_info"] = json!({"version": "0.9.0"});
    let r = app.put(&provision_path("i-1", true), &stale).await;
    assert_eq!((r.status, r.osb_error()), (StatusCode::UNPROCESSABLE_ENTITY, "MaintenanceInfoConflict"));
    // An unknown instance would be 410; the plan needs asynchronous deprovisioning first.
    let r = app.deprovision("nobody", false).await;
    assert_eq!((r.status, r.osb_error()), (StatusCode::UNPROCESSABLE_ENTITY, "AsyncRequired"));
    assert_eq!(app.deprovision("nobody", true).await.status, StatusCode::GONE);
}

#[tokio::test]
async fn a_resent_request_gets_202_only_if_it_accepts_it() {
    let app = with_plan("x-esm-dummy: {mode: either, hold: [provision]}").await;
    let first = app.provision("i-1", true).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = app.provision("i-1", true).await;
    assert_eq!((again.status, &again.body["operation"]), (StatusCode::ACCEPTED, &first.body["operation"]));
    let without = app.provision("i-1", false).await;
    assert_eq!((without.status, without.osb_error()), (StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError"));
    assert!(without.header("retry-after").is_none());
}

#[tokio::test]
async fn a_resent_deprovision_or_bind_gets_202_only_if_it_accepts_it() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: either, hold: [deprovision, bind]}").await;
    let bind = app.bind("i-1", "b-1", None, true).await;
    assert_eq!(bind.status, StatusCode::ACCEPTED, "{}", bind.body);
    assert_eq!(app.bind("i-1", "b-1", None, true).await.body["operation"], bind.body["operation"]);
    let without = app.bind("i-1", "b-1", None, false).await;
    assert_eq!((without.status, without.osb_error()), (StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError"));

    let app = provisioned(json!({}), "x-esm-dummy: {mode: either, hold: [deprovision]}").await;
    let gone = app.deprovision("i-1", true).await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.body);
    assert_eq!(app.deprovision("i-1", true).await.body["operation"], gone.body["operation"]);
    let without = app.deprovision("i-1", false).await;
    assert_eq!((without.status, without.osb_error()), (StatusCode::UNPROCESSABLE_ENTITY, "ConcurrencyError"));
}

#[tokio::test]
async fn an_asynchronous_provision_answers_its_dashboard_at_once() {
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision], dashboard_url: 'http://dash.example/x'}").await;
    let r = app.provision("i-1", true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["dashboard_url"], "http://dash.example/x", "{}", r.body);
}

#[tokio::test]
async fn a_finished_deprovision_is_reported_when_asked_by_its_operation() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async}").await;
    let r = app.deprovision("i-1", true).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let operation = r.body["operation"].as_str().expect("operation").to_owned();
    let path = "/v2/service_instances/i-1/last_operation";
    assert_eq!(app.poll(path).await.status, StatusCode::GONE, "without operation: 410 once it is gone");
    let asked = app.get(&format!("{path}?operation={operation}")).await;
    assert_eq!((asked.status, &asked.body["state"]), (StatusCode::OK, &json!("succeeded")), "{}", asked.body);
}

#[tokio::test]
async fn a_client_hanging_up_does_not_strand_its_synchronous_provision() {
    let app = with_plan("x-esm-dummy: {mode: sync, hold: [provision]}").await;
    let hung_up = app
        .raw(Method::PUT, &provision_path("i-1", false))
        .header("X-Broker-API-Version", VERSION)
        .json(&provision_body(PLAN))
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up before the answer");
    app.release(OperationKind::Provision, "i-1");
    // Far sooner than the 30 s operation lease that used to free it.
    let state = eventually(Duration::from_secs(10), "the provision to finish", || async {
        let r = app.get("/v2/service_instances/i-1/last_operation").await;
        (r.body["state"] != json!("in progress")).then_some(r.body["state"].clone())
    })
    .await;
    assert_eq!(state, Value::from("succeeded"));
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
}
