//! The operator port: `/health` and `/environment`.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_reports_one_result_per_check() {
    let app = spawn_app().await;
    let r = reply(app.client.get(format!("{}/health", app.ops)).send().await.expect("sent")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "success");
    let checkers: Vec<&str> =
        r.body["results"].as_array().expect("results").iter().filter_map(|c| c["checker"].as_str()).collect();
    assert_eq!(checkers, ["store:memory", "backend:dummy"]);
    assert!(r.body["results"].as_array().is_some_and(|r| r.iter().all(|c| c["passed"] == Value::Bool(true))));
}

#[tokio::test]
async fn environment_shows_the_config() {
    let app = spawn_app().await;
    let r = reply(app.client.get(format!("{}/environment", app.ops)).send().await.expect("sent")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["config"]["ESM_STORE"], "memory");
    assert_eq!(r.body["config"]["ESM_RETRY_AFTER"], 1);
    assert_eq!(r.body["config"]["ESM_BACKENDS"], "dummy", "as typed, not the Rust variant name");
    assert_eq!(r.body["config"]["ESM_BROKER_PASSWORD"], Value::Null, "no password configured");
    assert_eq!(r.body["store"], "memory");
    assert_eq!(r.body["backends"], serde_json::json!(["dummy"]));
    // The config asked for port 0; the real ports are reported.
    assert_eq!(r.body["config"]["ESM_PORT"], 0);
    assert_eq!(r.body["listening"]["api"], app.api.trim_start_matches("http://"));
    assert_eq!(r.body["listening"]["ops"], app.ops.trim_start_matches("http://"));
}

#[tokio::test]
async fn environment_never_shows_the_broker_password() {
    let app = spawn_app_with_auth("admin", "hunter2-secret").await;
    let response = app.client.get(format!("{}/environment", app.ops)).send().await.expect("sent");
    let text = response.text().await.expect("body");
    assert!(!text.contains("hunter2-secret"), "{text}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["config"]["ESM_BROKER_USERNAME"], "admin");
    assert_eq!(body["config"]["ESM_BROKER_PASSWORD"], "********");
    assert_eq!(body["build"]["name"], "esm");
}

#[tokio::test]
async fn a_graceful_stop_finishes() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn environment_shows_urls_as_their_scheme_and_hosts() {
    let webhook = "https://hook:p4ss@127.0.0.1:9/hooks/s3cr3t?token=k3y";
    let config = esm::config::Config {
        event_webhook_url: Some(webhook.parse().expect("secret")),
        mongo_host: Some("admin:pw0rd@db".into()),
        ..test_config()
    };
    let app = spawn_app_with(config).await;
    let response = app.client.get(format!("{}/environment", app.ops)).send().await.expect("sent");
    let text = response.text().await.expect("body");
    for secret in ["p4ss", "s3cr3t", "k3y", "pw0rd"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["config"]["ESM_EVENT_WEBHOOK_URL"], "https://127.0.0.1:9");
    assert_eq!(body["config"]["ESM_MONGO_HOST"], "db");
}
