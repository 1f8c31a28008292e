//! `/v2/et/service_instances/{id}/liveness`: what the backend observes, what the
//! instance reports of itself, and the listing by liveness.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// An app with `i-1` provisioned on [`SCRIPT`] and observed up.
async fn up_instance() -> TestApp {
    let app = with_plan(SCRIPT).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    status_becomes(&app, "i-1", "up").await;
    app
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
async fn a_synchronous_provision_answers_with_its_instance_already_up() {
    // The first look is taken in the provision's run and written with its result.
    let app = with_plan(SCRIPT).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let reply = app.get(&path("i-1")).await;
    assert_eq!((reply.status, reply.body["status"].as_str()), (StatusCode::OK, Some("up")), "{}", reply.body);
    // Its events, in the order of their writes: the transition comes with the end.
    let events = eventually(LIMIT, "three events", || async {
        let reply = app.get("/v2/et/events?instance_id=i-1").await;
        (reply.body["events"].as_array().is_some_and(|e| e.len() >= 3)).then_some(reply.body)
    })
    .await;
    let kinds: Vec<&str> =
        events["events"].as_array().expect("events").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["provision.started", "provision.succeeded", "liveness.changed"], "{events}");
    assert_eq!(
        (events["events"][2]["from"].as_str(), events["events"][2]["to"].as_str()),
        (Some("unknown"), Some("up"))
    );
}

#[tokio::test]
async fn an_engine_silent_at_the_first_look_leaves_the_instance_unknown_until_it_answers() {
    let app = with_plan(SCRIPT).await;
    app.liveness_script().set_unreachable(true);
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let reply = app.get(&path("i-1")).await;
    assert_eq!(reply.body["status"], "unknown", "{}", reply.body);
    app.liveness_script().set_unreachable(false);
    status_becomes(&app, "i-1", "up").await;
}

#[tokio::test]
async fn a_report_sent_while_the_instance_deploys_counts_once_it_is_up() {
    // The first look does not read reports: the instance that has one gets the prompt look.
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision]}\nservices:\n  web: {image: nginx}\n").await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    let reply = app.put(&path("i-1"), &json!({"status": "down", "ttl_seconds": 60, "note": "warming caches"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    app.release(esm::domain::operation::OperationKind::Provision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    let body = status_becomes(&app, "i-1", "down").await;
    assert_eq!(body["reported"]["note"], "warming caches", "{body}");
    assert_eq!(body["components"][0]["status"], "up", "{body}");
}

#[tokio::test]
async fn a_component_down_makes_the_instance_degraded_then_down_and_it_comes_back() {
    let app = up_instance().await;
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
    let app = up_instance().await;
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
    let app = up_instance().await;
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
    let app = up_instance().await;
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
    app.get(&path("nope")).await.fails_with(StatusCode::NOT_FOUND);
    app.put(&path("nope"), &json!({"status": "up", "ttl_seconds": 10})).await.fails_with(StatusCode::NOT_FOUND);
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
    app.get("/v2/et/service_instances?limit=10&liveness=sideways").await.fails_with(StatusCode::BAD_REQUEST);
}

/// An app with the broker's credentials `admin`/`secret` and `config`'s liveness
/// settings, the catalog registered, instances `i-1` and `i-2` provisioned.
async fn guarded(config: esm::config::Config) -> TestApp {
    let config = esm::config::Config {
        broker_username: Some("admin".into()),
        broker_password: Some("secret".parse().expect("a secret")),
        ..config
    };
    let mut app = spawn_app_with(config).await;
    app.auth = Some(("admin".into(), "secret".into()));
    app.register_catalog(json!({}), SCRIPT).await;
    for id in ["i-1", "i-2"] {
        assert_eq!(app.provision(id, false).await.status, StatusCode::CREATED);
    }
    app
}

/// The reporting token in binding `binding`'s credentials, made now on `instance`.
async fn token_of(app: &TestApp, instance: &str, binding: &str) -> (String, Value) {
    let reply = app.bind(instance, binding, None, false).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let credentials = reply.body["credentials"].clone();
    let token = credentials["esm_liveness_token"].as_str().expect("a reporting token").to_owned();
    (token, credentials)
}

/// `PUT .../liveness` of instance `id` with `Authorization: Bearer <token>` only (no
/// broker credentials, no OSB version).
async fn report_with(app: &TestApp, id: &str, token: &str) -> Reply {
    let request = app
        .raw(reqwest::Method::PUT, &path(id))
        .bearer_auth(token)
        .json(&json!({"status": "up", "ttl_seconds": 60, "note": "by token"}));
    reply(request.send().await.expect("sent")).await
}

#[tokio::test]
async fn a_bindings_token_reports_for_its_instance_only_and_unbinding_revokes_it() {
    let app = guarded(test_config()).await;
    let (token, credentials) = token_of(&app, "i-1", "b-1").await;
    assert!(credentials.get("esm_liveness_url").is_none(), "no URL unless ESM_LIVENESS_URL says where");

    let reply = report_with(&app, "i-1", &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["reported"]["note"], "by token");

    let (other, _) = token_of(&app, "i-2", "b-2").await;
    for (id, token) in [("i-2", token.as_str()), ("i-1", other.as_str()), ("i-1", "esmlt.YjE.00"), ("i-1", "")] {
        let reply = report_with(&app, id, token).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{id} with {token:?}: {}", reply.body);
        reply.osb_error();
    }
    // A token is no broker credential: it reports, and nothing else.
    let fetch = app.raw(reqwest::Method::GET, &path("i-1")).bearer_auth(&token).header("X-Broker-API-Version", "2.17");
    assert_eq!(fetch.send().await.expect("sent").status(), StatusCode::UNAUTHORIZED);

    assert_eq!(app.unbind("i-1", "b-1", false).await.status, StatusCode::OK);
    assert_eq!(report_with(&app, "i-1", &token).await.status, StatusCode::UNAUTHORIZED, "revoked with its binding");
}

#[tokio::test]
async fn the_brokers_credentials_report_only_where_the_operator_allows() {
    let config = esm::config::Config {
        liveness_broker_reports: false,
        liveness_url: Some("https://esm.example:8443/".into()),
        ..test_config()
    };
    let app = guarded(config).await;
    let reply = app.put(&path("i-1"), &json!({"status": "up", "ttl_seconds": 60})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.osb_error(), "Forbidden");
    reply.mentions("reporting token");
    // Asking keeps the broker's credentials.
    assert_eq!(app.get(&path("i-1")).await.status, StatusCode::OK);

    let (token, credentials) = token_of(&app, "i-1", "b-1").await;
    assert_eq!(credentials["esm_liveness_url"], "https://esm.example:8443/v2/et/service_instances/i-1/liveness");
    assert_eq!(report_with(&app, "i-1", &token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn reports_on_pool_members_are_refused_as_unknown_ids() {
    let app = with_plan(SCRIPT).await;
    app.put("/v2/et/pools/plan-1", &json!({"size": 1})).await;
    let member = eventually(LIMIT, "a ready member", || async {
        let pool = app.get("/v2/et/pools/plan-1").await.body;
        (pool["ready"] == 1).then(|| pool["members"][0]["id"].as_str().expect("an id").to_owned())
    })
    .await;
    let reply = app.put(&path(&member), &json!({"status": "down", "ttl_seconds": 60})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    reply.osb_error();
    assert_eq!(app.get(&path(&member)).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn eight_reporters_storming_one_instance_never_fail_a_report_or_the_deprovision() {
    let app = Arc::new(up_instance().await);
    let stop = Arc::new(AtomicBool::new(false));
    let reporters: Vec<_> = (0..8)
        .map(|n| {
            let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut sent = 0;
                // Until the deprovision is over, and at least a hundred reports each.
                while sent < 100 || !stop.load(Ordering::Relaxed) {
                    let status = if sent % 2 == 0 { "up" } else { "down" };
                    let body = json!({"status": status, "ttl_seconds": 60, "note": format!("reporter {n}")});
                    statuses.push(app.put(&path("i-1"), &body).await.status);
                    sent += 1;
                }
                statuses
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let deprovision = app.deprovision("i-1", false).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(deprovision.status, StatusCode::OK, "{}", deprovision.body);
    for reporter in reporters {
        for status in reporter.await.expect("a reporter") {
            assert!(matches!(status, StatusCode::OK | StatusCode::NOT_FOUND), "a report answered {status}");
        }
    }
    assert_eq!(app.get(&path("i-1")).await.status, StatusCode::NOT_FOUND, "gone");
}
