//! `/v2/et/service_instances/{id}/liveness`: what the backend observes, what the
//! instance reports of itself, and the listing by liveness.

use std::time::Duration;

use esm::domain::liveness::ComponentStatus;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::sse::SseReader;
use crate::wait::eventually;

const SCRIPT: &str = "x-esm-dummy: {mode: sync}\nservices:\n  web: {image: nginx}\n  db: {image: postgres}\n";
const LIMIT: Duration = Duration::from_secs(5);

fn path(id: &str) -> String {
    format!("/v2/et/service_instances/{id}/liveness")
}

async fn status_becomes(app: &TestApp, id: &str, wanted: &str) -> Value {
    eventually(LIMIT, &format!("{id} {wanted}"), || async {
        let reply = app.get(&path(id)).await;
        (reply.status == StatusCode::OK && reply.body["status"] == wanted).then_some(reply.body)
    })
    .await
}

#[tokio::test]
async fn a_provisioned_instance_is_observed_up_with_each_component() {
    let app = with_plan(SCRIPT).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let body = status_becomes(&app, "i-1", "up").await;
    assert_eq!(body["instance_id"], "i-1");
    let names: Vec<&str> =
        body["components"].as_array().expect("components").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    assert!(body["since"].as_str().is_some_and(|s| s.ends_with('Z')), "{body}");
}

#[tokio::test]
async fn a_component_down_makes_the_instance_degraded_then_down_and_it_comes_back() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    status_becomes(&app, "i-1", "up").await;
    let events = app
        .raw(reqwest::Method::GET, "/v2/et/events?type=liveness.changed")
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    let mut events = SseReader::new(events);

    app.liveness_script().set("i-1", "db", ComponentStatus::Down, Some("exited with code 137"));
    let body = status_becomes(&app, "i-1", "degraded").await;
    assert_eq!(body["reason"], "db down: exited with code 137");
    let frame = events.next_named("liveness.changed", Duration::from_secs(2)).await;
    assert_eq!((frame.data["from"].as_str(), frame.data["to"].as_str()), (Some("up"), Some("degraded")));
    assert_eq!(frame.data["instance_id"], "i-1");

    app.liveness_script().set("i-1", "web", ComponentStatus::Unhealthy, None);
    app.liveness_script().set("i-1", "db", ComponentStatus::Down, None);
    status_becomes(&app, "i-1", "down").await;
    app.liveness_script().set("i-1", "db", ComponentStatus::Up, None);
    app.liveness_script().set("i-1", "web", ComponentStatus::Up, None);
    status_becomes(&app, "i-1", "up").await;
}

#[tokio::test]
async fn an_engine_that_does_not_answer_makes_unknown_never_up() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    status_becomes(&app, "i-1", "up").await;
    app.liveness_script().set_unreachable(true);
    let body = status_becomes(&app, "i-1", "unknown").await;
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("cannot ask the backend")), "{body}");
    app.liveness_script().set_unreachable(false);
    status_becomes(&app, "i-1", "up").await;
}

#[tokio::test]
async fn a_heartbeat_counts_for_its_ttl_and_a_missed_one_is_down() {
    // Only the instance's own reports count: the dummy observes nothing.
    let app = with_plan("x-esm-dummy: {mode: sync, observe: false}\n").await;
    app.provision("i-1", false).await;
    let reply = app.put(&path("i-1"), &json!({"status": "up", "ttl_seconds": 1, "note": "serving"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "up");
    assert_eq!(reply.body["reason"], "reported up: serving");
    assert_eq!(reply.body["reported"]["note"], "serving");
    let body = status_becomes(&app, "i-1", "down").await;
    assert_eq!(body["reason"], "heartbeat missed");
    // The next heartbeat brings it back at once.
    let reply = app.put(&path("i-1"), &json!({"status": "up", "ttl_seconds": 60})).await;
    assert_eq!(reply.body["status"], "up");
}

#[tokio::test]
async fn the_worse_of_observed_and_reported_wins() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    status_becomes(&app, "i-1", "up").await;
    let reply =
        app.put(&path("i-1"), &json!({"status": "down", "ttl_seconds": 60, "note": "database migrating"})).await;
    assert_eq!(
        (reply.body["status"].as_str(), reply.body["reason"].as_str()),
        (Some("down"), Some("reported down: database migrating"))
    );
    // The backend still sees every component up: the report wins until it says up.
    assert_eq!(reply.body["observed"]["status"], "up");
    let reply = app.put(&path("i-1"), &json!({"status": "up", "ttl_seconds": 60})).await;
    assert_eq!(reply.body["status"], "up");
}

#[tokio::test]
async fn bad_reports_are_400_with_an_osb_body_and_change_nothing() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    status_becomes(&app, "i-1", "up").await;
    for body in [
        json!({"status": "sideways", "ttl_seconds": 10}),
        json!({"status": "UP", "ttl_seconds": 10}),
        json!({"status": "up", "ttl_seconds": -1}),
        json!({"status": "up", "ttl_seconds": 0}),
        json!({"status": "up", "ttl_seconds": 86_401}),
        json!({"status": "up", "ttl_seconds": 1e30}),
        json!({"status": "up"}),
        json!({"status": "up", "ttl_seconds": 10, "note": "x".repeat(1025)}),
        json!({"status": "up", "ttl_seconds": 10, "extra": true}),
        json!(["up"]),
    ] {
        let reply = app.put(&path("i-1"), &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        reply.osb_error();
    }
    let body = app.get(&path("i-1")).await.body;
    assert_eq!(body["status"], "up");
    assert!(body.get("reported").is_none(), "{body}");
}

#[tokio::test]
async fn an_unknown_instance_is_404_for_the_query_and_the_report() {
    let app = with_plan(SCRIPT).await;
    let reply = app.get(&path("nope")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    reply.osb_error();
    let reply = app.put(&path("nope"), &json!({"status": "up", "ttl_seconds": 10})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    reply.osb_error();
}

#[tokio::test]
async fn the_listing_filters_by_liveness_and_backend() {
    let app = with_plan(SCRIPT).await;
    for id in ["i-1", "i-2", "i-3"] {
        app.provision(id, false).await;
        status_becomes(&app, id, "up").await;
    }
    app.liveness_script().set("i-2", "db", ComponentStatus::Down, None);
    status_becomes(&app, "i-2", "degraded").await;
    let ids = |body: &Value| -> Vec<String> {
        body["instances"]
            .as_array()
            .expect("a page")
            .iter()
            .map(|i| i["context"]["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let degraded = app.get("/v2/et/service_instances?limit=10&liveness=degraded").await;
    assert_eq!(ids(&degraded.body), ["i-2"]);
    let up =
        app.get(&format!("/v2/et/service_instances?limit=10&liveness=up&backend=dummy&service_id={SERVICE}")).await;
    assert_eq!(ids(&up.body), ["i-1", "i-3"]);
    let none = app.get("/v2/et/service_instances?limit=10&backend=docker-compose").await;
    assert_eq!(ids(&none.body), Vec::<String>::new());
    let bad = app.get("/v2/et/service_instances?limit=10&liveness=sideways").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    bad.osb_error();
}
