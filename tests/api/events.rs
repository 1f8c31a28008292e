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
/// Six instance ids, for tests that fill the log.
const SIX: [&str; 6] = ["i-1", "i-2", "i-3", "i-4", "i-5", "i-6"];

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

/// esm with `config`, the catalog of [`SCRIPT`], and `ids` provisioned.
async fn with_provisions(config: Config, ids: &[&str]) -> TestApp {
    let app = spawn_app_with(config).await;
    app.register_catalog(json!({}), SCRIPT).await;
    for id in ids {
        app.provision(id, false).await;
    }
    app
}

#[tokio::test]
async fn a_refused_request_about_a_known_instance_is_an_event() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    let other = json!({"service_id": "svc-1", "plan_id": "plan-1", "organization_guid": "elsewhere",
                       "space_guid": "space-guid"});
    let refused = app.put("/v2/service_instances/i-1", &other).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    let page = events_of(&app, "type=provision.refused", 1).await;
    let event = &page["events"][0];
    assert_eq!((event["instance_id"].as_str(), event["to"].as_str()), (Some("i-1"), Some("Conflict")), "{event}");
    assert!(event["reason"].as_str().is_some_and(|r| !r.is_empty()), "{event}");
    // An unknown instance is not announced: anyone could fill the log so.
    let unknown = app.put("/v2/service_instances/never", &json!({"service_id": "nope"})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{}", unknown.body);
    let page = app.get("/v2/et/events?type=provision.refused").await;
    assert_eq!(page.body["events"].as_array().map(Vec::len), Some(1), "{}", page.body);
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
    let app = with_provisions(test_config(), &["i-1", "i-2", "i-3"]).await;
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
    // Cursors beyond the newest id are refused at once (see
    // a_cursor_beyond_the_newest_event_is_refused_at_once_naming_the_newest).
    let last = app.get(&format!("/v2/et/events?after={}", u64::MAX)).await;
    assert_eq!(last.status, StatusCode::BAD_REQUEST, "{}", last.body);
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
    let app = with_provisions(Config { event_retention: 3, ..test_config() }, &["i-1", "i-2", "i-3", "i-4"]).await;
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

/// Opens a stream and returns the raw response, whatever its status.
async fn open_stream(app: &TestApp) -> reqwest::Response {
    app.raw(Method::GET, "/v2/et/events").header("accept", "text/event-stream").send().await.expect("esm answers")
}

#[tokio::test]
async fn streams_beyond_the_subscriber_cap_are_503_with_retry_after_and_the_catalog_still_answers() {
    let app = spawn_app_with(Config { max_subscribers: Some(2), ..test_config() }).await;
    app.register_catalog(json!({}), SCRIPT).await;
    let open = [open_stream(&app).await, open_stream(&app).await];
    assert!(open.iter().all(|r| r.status() == StatusCode::OK), "two streams fit under the cap");
    let refused = crate::helpers::reply(open_stream(&app).await).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.body);
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "{:?}", refused.headers);
    assert_eq!(refused.osb_error(), "ServiceUnavailable");
    assert!(
        refused.body["description"].as_str().is_some_and(|d| d.contains("ESM_MAX_SUBSCRIBERS")),
        "{}",
        refused.body
    );
    // The platform's own requests are served while the subscribers hold their slots,
    // and so are JSON pages of the same log.
    assert_eq!(app.get("/v2/catalog").await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/et/events").await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_subscriber_cap_defaults_to_a_quarter_of_the_connection_cap_and_stays_below_it() {
    let limits = |max_connections, max_subscribers| {
        Config { max_connections, max_subscribers, ..Config::default() }.event_limits().subscribers
    };
    assert_eq!(limits(1024, None), 256);
    assert_eq!(limits(8, Some(100)), 7, "below the connection cap");
    assert_eq!(limits(1, None), 1, "never zero");
}

#[tokio::test]
async fn a_stream_ends_after_its_lifetime_saying_where_to_resume_and_the_resume_misses_nothing() {
    let app = spawn_app_with(Config { event_stream_lifetime: 1, ..test_config() }).await;
    app.register_catalog(json!({}), SCRIPT).await;
    app.provision("i-1", false).await;
    let newest = events_of(&app, "type=provision.succeeded", 1).await["after"].as_u64().expect("a cursor");
    // Nothing new matches the filter while it lasts; its end still tells the client
    // how far it got.
    let mut first = stream(&app, None, "?type=provision.succeeded").await;
    let resume = first.next_named("resume", LIMIT).await;
    let after = resume.data["after"].as_u64().expect("where to resume");
    assert_eq!(resume.id, Some(after.to_string()), "the id is where EventSource resumes");
    assert!(after >= newest, "{after} < {newest}");
    assert!(first.ended(LIMIT).await, "the stream ends after its resume event");
    // Provisioned between the end and the reconnect: the resumed stream has it.
    app.provision("i-2", false).await;
    let mut resumed = stream(&app, Some(&after.to_string()), "?type=provision.succeeded").await;
    assert_eq!(resumed.next(LIMIT, "i-2, missed while away").await.data["instance_id"], "i-2");
}

#[tokio::test]
async fn a_cursor_beyond_the_newest_event_is_refused_at_once_naming_the_newest() {
    let app = with_plan(SCRIPT).await;
    app.provision("i-1", false).await;
    let newest = events_of(&app, "", 1).await["after"].as_u64().expect("a cursor");
    let beyond = newest + 1000;
    let page = app.get(&format!("/v2/et/events?after={beyond}")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert_eq!(page.osb_error(), "BadRequest");
    assert!(page.body["description"].as_str().is_some_and(|d| d.contains(&format!("newest event id {newest}"))));
    let response = app
        .raw(Method::GET, "/v2/et/events")
        .header("accept", "text/event-stream")
        .header("last-event-id", beyond.to_string())
        .send();
    let streamed =
        crate::helpers::reply(tokio::time::timeout(LIMIT, response).await.expect("at once").expect("answers")).await;
    assert_eq!(streamed.status, StatusCode::BAD_REQUEST, "{}", streamed.body);
    assert_eq!(streamed.osb_error(), "BadRequest");
    assert!(streamed.body["description"].as_str().is_some_and(|d| d.contains(&format!("newest event id {newest}"))));
    // The newest itself is a cursor like any other: nothing after it yet.
    let at_newest = app.get(&format!("/v2/et/events?after={newest}")).await;
    assert_eq!((at_newest.status, at_newest.body["events"].clone()), (StatusCode::OK, json!([])));
}

/// What the log counts an event as weighing (`Event::size`).
fn size(event: &Value) -> usize {
    serde_json::from_value::<esm::domain::event::Event>(event.clone()).expect("an event").size()
}

#[tokio::test]
async fn a_page_is_bounded_in_bytes_and_paging_still_reads_every_event_once() {
    const PAGE_BYTES: usize = 2_000;
    let app = with_provisions(Config { event_page_max_bytes: PAGE_BYTES, ..test_config() }, &SIX).await;
    let provisioned = |body: &Value| {
        body["events"].as_array().expect("events").iter().filter(|e| e["type"] == "provision.succeeded").count()
    };
    let (mut after, mut ids, mut pages, mut succeeded) = (0, Vec::new(), 0, 0);
    loop {
        let page = app.get(&format!("/v2/et/events?after={after}&limit=1000")).await.body;
        let events = page["events"].as_array().expect("events");
        if events.is_empty() {
            break;
        }
        let bytes: usize = events.iter().map(size).sum();
        assert!(events.len() == 1 || bytes <= PAGE_BYTES, "{} events, {bytes} bytes", events.len());
        ids.extend(events.iter().map(|e| e["id"].as_u64().expect("an id")));
        succeeded += provisioned(&page);
        after = page["after"].as_u64().expect("a cursor");
        pages += 1;
    }
    assert!(pages > 1, "the log did not fit in one page of {PAGE_BYTES} bytes");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order, none twice: {ids:?}");
    assert_eq!(succeeded, 6, "every provision's event read once");
}

#[tokio::test]
async fn the_log_keeps_no_more_bytes_than_its_retention() {
    const RETENTION_BYTES: usize = 3_000;
    let app = with_provisions(Config { event_retention_bytes: RETENTION_BYTES, ..test_config() }, &SIX).await;
    events_of(&app, "type=provision.succeeded", 6).await;
    // Trimmed within a second or so to the newest events that fit.
    let kept = eventually(LIMIT, "the log trimmed to its bytes", || async {
        let page = app.get("/v2/et/events?limit=1000").await.body;
        let events = page["events"].as_array().expect("events").clone();
        (events.iter().map(size).sum::<usize>() <= RETENTION_BYTES).then_some(events)
    })
    .await;
    assert!(kept.len() > 1, "the newest events that fit are kept: {kept:?}");
    let gap = app.get("/v2/et/events?after=1").await.body;
    assert!(gap.get("gap").is_some(), "older ones are told as a gap: {gap}");
}
