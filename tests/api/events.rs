//! `GET /v2/et/events`: the change events as JSON pages and as a resumable SSE stream.

use std::time::Duration;

use esm::config::Config;
use reqwest::{Method, StatusCode};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::sse::SseReader;
use crate::wait::eventually;

const SCRIPT: &str = "x-esm-dummy: {mode: sync}\n";
const LIMIT: Duration = Duration::from_secs(5);

fn kinds(events: &Value) -> Vec<String> {
    events.as_array().expect("events").iter().map(|e| e["type"].as_str().expect("type").to_owned()).collect()
}

/// The events of `query` once there are at least `count`.
async fn events_of(app: &TestApp, query: &str, count: usize) -> Value {
    eventually(LIMIT, &format!("{count} events for {query}"), || async {
        let reply = app.get(&format!("/v2/et/events?{query}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        (reply.body["events"].as_array().is_some_and(|e| e.len() >= count)).then_some(reply.body)
    })
    .await
}

async fn stream(app: &TestApp, last_event_id: Option<&str>, query: &str) -> SseReader {
    let mut request = app.raw(Method::GET, &format!("/v2/et/events{query}")).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("esm answers");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().expect("text").to_owned();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    SseReader::new(response)
}

#[tokio::test]
async fn each_step_of_an_operation_is_an_event_in_order() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    app.bind("i-1", "b-1", None, false).await;
    app.unbind("i-1", "b-1", false).await;
    app.deprovision("i-1", false).await;
    let page = events_of(&app, "instance_id=i-1", 9).await;
    // The instance's liveness (unknown → up) interleaves with the operations.
    let steps: Vec<Value> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] != "liveness.changed")
        .cloned()
        .collect();
    assert_eq!(
        kinds(&Value::Array(steps.clone())),
        [
            "provision.started",
            "provision.succeeded",
            "bind.started",
            "bind.succeeded",
            "unbind.started",
            "unbind.succeeded",
            "deprovision.started",
            "deprovision.succeeded"
        ]
    );
    let events = page["events"].as_array().expect("events");
    assert!(events.windows(2).all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64()), "ids increase: {page}");
    assert_eq!(steps[1]["from"], "in progress");
    assert_eq!(steps[1]["to"], "succeeded");
    assert_eq!(steps[1]["service_id"], SERVICE);
    assert_eq!(steps[2]["binding_id"], "b-1");
    assert_eq!(page["after"], events[events.len() - 1]["id"]);
    // A failed operation says why.
    let failing = with_plan("x-esm-dummy: {mode: sync, fail: [provision]}\n").await;
    failing.provision("i-2", false).await;
    let page = events_of(&failing, "type=provision.failed", 1).await;
    assert!(page["events"][0]["reason"].as_str().is_some_and(|r| r.contains("told to fail")), "{page}");
}

#[tokio::test]
async fn pages_follow_after_and_limit_and_filters() {
    let app = with_plan(SCRIPT).await;
    for id in ["i-1", "i-2", "i-3"] {
        app.provision(id, false).await;
    }
    let all = events_of(&app, "type=provision.succeeded", 3).await;
    let first = app.get("/v2/et/events?type=provision.succeeded&limit=2").await.body;
    assert_eq!(first["events"].as_array().map(Vec::len), Some(2));
    let rest = app.get(&format!("/v2/et/events?type=provision.succeeded&after={}", first["after"])).await.body;
    let ids: Vec<&Value> = first["events"]
        .as_array()
        .into_iter()
        .chain(rest["events"].as_array())
        .flatten()
        .map(|e| &e["instance_id"])
        .collect();
    assert_eq!(ids, [&json!("i-1"), &json!("i-2"), &json!("i-3")]);
    assert_eq!(rest["after"], all["events"][2]["id"]);
    let empty = app.get(&format!("/v2/et/events?after={}", rest["after"].as_u64().expect("id") + 1000)).await.body;
    assert_eq!(empty["events"], json!([]));
    let last = app.get(&format!("/v2/et/events?after={}", u64::MAX)).await;
    assert_eq!((last.status, &last.body["events"]), (StatusCode::OK, &json!([])), "{}", last.body);
    let mut at_the_end = stream(&app, Some(&u64::MAX.to_string()), "").await;
    app.provision("i-9", false).await;
    let frame =
        tokio::time::timeout(Duration::from_millis(300), at_the_end.next(LIMIT, "nothing after the last id")).await;
    assert!(frame.is_err(), "no event comes after u64::MAX: {frame:?}");
    // Served without the version header, as a browser's EventSource asks.
    let reply =
        crate::helpers::reply(app.client.get(format!("{}/v2/et/events", app.api)).send().await.expect("esm answers"))
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn bad_parameters_are_400_with_an_osb_body() {
    let app = with_plan(SCRIPT).await;
    for query in ["after=abc", "after=-1", "type=provision.exploded", "limit=0", "limit=1001", "after=1e3"] {
        let reply = app.get(&format!("/v2/et/events?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}: {}", reply.body);
        reply.osb_error();
    }
    for last_event_id in ["abc", "-5", "1.5"] {
        let response = app
            .raw(Method::GET, "/v2/et/events")
            .header("accept", "text/event-stream")
            .header("last-event-id", last_event_id)
            .send()
            .await
            .expect("esm answers");
        let reply = crate::helpers::reply(response).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{last_event_id}: {}", reply.body);
        reply.osb_error();
    }
}

#[tokio::test]
async fn a_stream_resumed_with_last_event_id_loses_nothing_and_repeats_nothing() {
    let app = with_plan(SCRIPT).await;
    let mut live = stream(&app, None, "?type=provision.succeeded").await;
    app.provision("i-1", false).await;
    let seen = live.next(LIMIT, "i-1 provisioned").await;
    assert_eq!(seen.data["instance_id"], "i-1");
    assert_eq!(seen.event.as_deref(), Some("provision.succeeded"));
    let last = seen.id.clone().expect("an id");
    drop(live);
    // Disconnected while these happen.
    app.provision("i-2", false).await;
    app.provision("i-3", false).await;
    let mut resumed = stream(&app, Some(&last), "?type=provision.succeeded").await;
    let second = resumed.next(LIMIT, "i-2, missed while away").await;
    let third = resumed.next(LIMIT, "i-3, missed while away").await;
    assert_eq!((second.data["instance_id"].as_str(), third.data["instance_id"].as_str()), (Some("i-2"), Some("i-3")));
    // And then what happens next, live.
    app.provision("i-4", false).await;
    assert_eq!(resumed.next(LIMIT, "i-4 live").await.data["instance_id"], "i-4");
    // ?after= resumes the same way.
    let mut by_query = stream(&app, None, &format!("?type=provision.succeeded&after={last}")).await;
    assert_eq!(by_query.next(LIMIT, "i-2 again").await.data["instance_id"], "i-2");
}

#[tokio::test]
async fn asking_for_more_than_the_log_keeps_is_told_as_a_gap() {
    let app = spawn_app_with(Config { event_retention: 3, ..test_config() }).await;
    app.register_catalog(json!({}), SCRIPT).await;
    for id in ["i-1", "i-2", "i-3", "i-4"] {
        app.provision(id, false).await;
    }
    // Trimmed within a second or so to the latest three.
    let page = eventually(LIMIT, "the log trimmed to 3", || async {
        let body = app.get("/v2/et/events?after=1").await.body;
        body.get("gap").is_some().then_some(body)
    })
    .await;
    let oldest = page["events"][0]["id"].as_u64().expect("an id");
    assert_eq!(page["gap"], json!({"from": 2, "to": oldest - 1}));
    assert_eq!(page["events"].as_array().map(Vec::len), Some(3));
    let mut resumed = stream(&app, Some("1"), "").await;
    let gap = resumed.next(LIMIT, "the gap").await;
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_eq!(gap.data, json!({"from": 2, "to": oldest - 1}));
    assert!(gap.id.is_none(), "a gap has no id of its own");
    let next = resumed.next(LIMIT, "the oldest kept event").await;
    assert_eq!(next.id, Some(oldest.to_string()));
}
