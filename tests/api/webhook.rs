//! `ESM_EVENT_WEBHOOK_URL`: every event POSTed at least once, in order, retried while
//! the receiver fails, without holding up operations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use esm::config::{Config, Secret};
use reqwest::StatusCode as Status;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::wait::eventually;

#[derive(Default)]
struct Received {
    /// Refuse this many POSTs first.
    refuse: usize,
    attempts: usize,
    events: Vec<Value>,
    authorization: Option<String>,
}

async fn receive(State(received): State<Arc<Mutex<Received>>>, headers: HeaderMap, body: String) -> StatusCode {
    let mut received = received.lock().expect("not poisoned");
    received.attempts += 1;
    received.authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if received.refuse > 0 {
        received.refuse -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let event: Value = serde_json::from_str(&body).expect("an event");
    assert_eq!(headers["x-esm-event-id"].to_str().ok(), Some(event["id"].to_string().as_str()));
    received.events.push(event);
    StatusCode::NO_CONTENT
}

#[tokio::test]
async fn every_event_is_posted_in_order_and_retried_while_the_receiver_fails() {
    let received = Arc::new(Mutex::new(Received { refuse: 3, ..Received::default() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = listener.local_addr().expect("bound").port();
    let app = Router::new().route("/hook", post(receive)).with_state(Arc::clone(&received));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let url = format!("http://esm:s3cret@127.0.0.1:{port}/hook?key=k");
    let config = Config { event_webhook_url: Some(url.parse::<Secret>().expect("secret")), ..test_config() };
    let app = spawn_app_with(config).await;
    app.register_catalog(json!({}), "x-esm-dummy: {mode: sync, observe: false}\n").await;
    // The receiver refuses its first POSTs: operations go on regardless.
    for id in ["i-1", "i-2"] {
        let reply = tokio::time::timeout(Duration::from_secs(2), app.provision(id, false)).await.expect("not held up");
        assert_eq!(reply.status, Status::CREATED);
    }
    let events = eventually(Duration::from_secs(15), "both provisions delivered", || async {
        let received = received.lock().expect("not poisoned");
        let done = received.events.iter().filter(|e| e["type"] == "provision.succeeded").count() == 2;
        done.then(|| received.events.clone())
    })
    .await;
    let ids: Vec<u64> = events.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        kinds.ends_with(&["provision.started", "provision.succeeded", "provision.started", "provision.succeeded"]),
        "{kinds:?}"
    );
    {
        let received = received.lock().expect("not poisoned");
        assert!(received.attempts >= events.len() + 3, "refused POSTs were retried");
        assert_eq!(received.authorization.as_deref(), Some("Basic ZXNtOnMzY3JldA=="), "user info as basic auth");
    }
    // The URL's secrets never show in /environment.
    let env = app.client.get(format!("{}/environment", app.ops)).send().await.expect("ops").text().await.expect("text");
    assert!(!env.contains("s3cret") && !env.contains("key=k"), "{env}");
}
