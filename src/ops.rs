//! The operator port: `/health`, `/environment` and `/metrics`, apart from the broker
//! API so that it can be exposed to monitoring only. Like the other two, `/metrics`
//! asks for no credentials: the port is meant for an operator's network alone.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::broker::Broker;
use crate::clock::Clock;
use crate::config::{Config, redact_value};

/// How long one health check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the operator routes need.
#[derive(Clone)]
pub struct OpsState {
    /// The broker, to reach the store and backends.
    pub broker: Arc<Broker>,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Where the two ports listen (the real ports when the config asked for port 0).
    pub listening: Listening,
}

/// The addresses esm listens on.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// The OSB API.
    pub api: std::net::SocketAddr,
    /// The operator port.
    pub ops: std::net::SocketAddr,
}

/// The operator router.
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/environment", get(environment))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Every metric family in the OpenMetrics text format (see [`crate::metrics`]).
async fn metrics(State(state): State<OpsState>) -> Response {
    let (metrics, events) = (state.broker.metrics(), state.broker.events());
    metrics.set_sse_subscribers(u64::try_from(events.subscribers()).unwrap_or(u64::MAX));
    // A store that does not answer leaves the last figure (the scrape still answers).
    if let Ok(stored) = events.stored().await {
        metrics.set_events_stored(stored);
    }
    // Reading the pools' status sets their member gauges.
    if let Err(e) = state.broker.pool_statuses().await {
        tracing::debug!(error = %e, "cannot read the pools for the metrics");
    }
    let text = metrics.render(state.broker.store().as_ref()).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// 200 when the store and every backend answer, 503 otherwise; one result per check,
/// in the spirit of the original's `healthcheck` output.
async fn health(State(state): State<OpsState>) -> Response {
    let mut results = Vec::new();
    let store = state.broker.store().clone();
    let store_check = tokio::time::timeout(CHECK_TIMEOUT, store.ping()).await;
    results.push(check_result(
        format!("store:{}", store.kind()),
        match store_check {
            Ok(Ok(())) => Ok("the store answers".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
        },
    ));
    for backend in state.broker.backends().all() {
        let probe = tokio::time::timeout(CHECK_TIMEOUT, backend.probe()).await;
        results.push(check_result(
            format!("backend:{}", backend.name()),
            match probe {
                Ok(Ok(output)) => Ok(output),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
            },
        ));
    }
    let healthy = results.iter().all(|r| r["passed"] == json!(true));
    let body = json!({
        "hostname": hostname(),
        "status": if healthy { "success" } else { "failure" },
        "timestamp": Clock::system().timestamp(),
        "results": results,
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

fn check_result(checker: String, outcome: Result<String, String>) -> Value {
    let (passed, output) = match outcome {
        Ok(output) => (true, output),
        Err(output) => (false, output),
    };
    json!({"checker": checker, "passed": passed, "output": output, "timestamp": Clock::system().timestamp()})
}

/// The effective configuration and build, secrets shown as `********`.
async fn environment(State(state): State<OpsState>) -> Json<Value> {
    let esm_env: serde_json::Map<String, Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("ESM_") || k == "RUST_LOG")
        .map(|(k, v)| {
            let shown = redact_value(&k, &v);
            (k, Value::String(shown))
        })
        .collect();
    Json(json!({
        "config": state.config.redacted(),
        "environment": esm_env,
        "build": {
            "name": env!("CARGO_PKG_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        },
        "store": state.broker.store().kind(),
        "backends": state.broker.backends().types(),
        "process": {"pid": std::process::id(), "hostname": hostname()},
        "listening": {"api": state.listening.api.to_string(), "ops": state.listening.ops.to_string()},
        "application": {"maintainer": "ElasTest", "license": "Apache-2.0"},
    }))
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}
