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
use tokio::sync::watch;

use crate::broker::Broker;
use crate::clock::Clock;
use crate::config::{Config, shown_variable};
use crate::metrics::engines::EngineRow;
use crate::wire::EngineView;

/// Whether esm is ready: the start-up scan is done and the API port listens.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<watch::Sender<bool>>);

impl Readiness {
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Whether it is ready now.
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once it is ready (never, if it stops before).
    pub async fn wait(&self) {
        let mut ready = self.0.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = ready.wait_for(|ready| *ready).await;
    }

    pub(crate) fn set(&self) {
        self.0.send_replace(true);
    }
}

/// How long one health check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a scrape waits for a backend's probe (`esm_backend_up`): well within
/// Prometheus's default scrape timeout of 10 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the operator routes need.
#[derive(Clone)]
pub struct OpsState {
    /// The broker, to reach the store and backends.
    pub broker: Arc<Broker>,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Where the two ports listen (the real ports when the config asked for port 0).
    pub listening: Listening,
    /// Whether esm is ready: `/health` says "starting" until it is.
    pub ready: Readiness,
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
    // Whether each engine answers: asked of all at once, each for at most
    // PROBE_TIMEOUT, so a hung engine shows as down instead of holding the scrape.
    let probes = state.broker.backends().all().iter().map(|backend| async move {
        (backend.name(), matches!(tokio::time::timeout(PROBE_TIMEOUT, backend.probe()).await, Ok(Ok(_))))
    });
    for (backend, up) in futures_util::future::join_all(probes).await {
        metrics.set_backend_up(backend, up);
    }
    if metrics.engines_due() {
        match state.broker.engines().list().await {
            Ok(engines) => metrics.set_engines(engines.into_iter().map(engine_row).collect()),
            Err(e) => tracing::debug!(error = %e, "cannot read the engines for the metrics"),
        }
    }
    // Reading the pools' status sets their member gauges.
    if let Err(e) = state.broker.pools().statuses().await {
        tracing::debug!(error = %e, "cannot read the pools for the metrics");
    }
    let text = metrics.render(state.broker.store().as_ref()).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// An engine as its metrics show it.
fn engine_row(engine: EngineView) -> EngineRow {
    EngineRow {
        name: engine.name,
        state: engine.state,
        instances: engine.instances,
        capacity: engine.capacity.instances,
    }
}

/// 200 when the store and every backend answer, 503 otherwise; one result per check,
/// in the spirit of the original's `healthcheck` output. Each engine is listed with its
/// state under `engines`: one that does not answer keeps instances from being placed
/// there, not esm from serving, so it does not fail the check.
async fn health(State(state): State<OpsState>) -> Response {
    if !state.ready.is_ready() {
        return starting();
    }
    let mut results = Vec::new();
    let store = state.broker.store().clone();
    // Reads and writes: a store that answers but cannot write (a full disk) fails it.
    results.push(check_result(format!("store:{}", store.kind()), within_timeout(store.health()).await));
    for backend in state.broker.backends().all() {
        results.push(check_result(format!("backend:{}", backend.name()), within_timeout(backend.probe()).await));
    }
    let healthy = results.iter().all(|r| r["passed"] == json!(true));
    let engines = match tokio::time::timeout(CHECK_TIMEOUT, state.broker.engines().list()).await {
        Ok(Ok(listed)) => Value::from(listed.iter().map(engine_health).collect::<Vec<_>>()),
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(_) => json!({"error": format!("no answer within {}s", CHECK_TIMEOUT.as_secs())}),
    };
    let body = json!({
        "hostname": hostname(),
        "status": if healthy { "success" } else { "failure" },
        "timestamp": Clock::system().timestamp(),
        "results": results,
        "engines": engines,
    });
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// One engine's row in `/health`.
fn engine_health(engine: &EngineView) -> Value {
    json!({
        "name": engine.name,
        "backend": engine.backend,
        "state": engine.state,
        "instances": engine.instances,
        "capacity": engine.capacity.instances,
        "last_probe": engine.last_probe,
        "problem": engine.problem,
    })
}

/// 503 "starting" while the start-up scan runs and the API port does not listen yet.
fn starting() -> Response {
    let check = check_result("startup".to_owned(), Err("taking over operations left in progress".to_owned()));
    let body = json!({
        "hostname": hostname(),
        "status": "starting",
        "timestamp": Clock::system().timestamp(),
        "results": [check],
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// A check's answer within [`CHECK_TIMEOUT`], or why there is none: the same rule for
/// the store and every backend.
async fn within_timeout<E: std::fmt::Display>(
    check: impl Future<Output = Result<String, E>>,
) -> Result<String, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
    }
}

fn check_result(checker: String, outcome: Result<String, String>) -> Value {
    let (passed, output) = match outcome {
        Ok(output) => (true, output),
        Err(output) => (false, output),
    };
    json!({"checker": checker, "passed": passed, "output": output, "timestamp": Clock::system().timestamp()})
}

/// The effective configuration and build, secrets shown as `********` and URLs as
/// their scheme and hosts (see [`Config::redacted`] and [`shown_variable`]).
async fn environment(State(state): State<OpsState>) -> Json<Value> {
    Json(json!({
        "config": state.config.redacted(),
        "environment": shown_environment(std::env::vars()),
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

/// esm's variables in a process environment (`ESM_*` and `RUST_LOG`), each shown as
/// [`shown_variable`] allows.
fn shown_environment(vars: impl Iterator<Item = (String, String)>) -> serde_json::Map<String, Value> {
    vars.filter(|(name, _)| name.starts_with("ESM_") || name == "RUST_LOG")
        .map(|(name, value)| {
            let shown = shown_variable(&name, &value);
            (name, Value::String(shown))
        })
        .collect()
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_shows_only_what_esm_knows_to_be_safe() {
        let vars = [
            ("ESM_PORT", "8080"),
            ("RUST_LOG", "info,esm=debug"),
            ("ESM_BROKER_USERNAME", "admin"),
            ("ESM_BROKER_PASSWORD", "hunter2"),
            ("ESM_EVENT_WEBHOOK_URL", "https://u:p4ss@hooks.example:8443/hooks/s3cr3t?token=k3y"),
            ("ESM_MONGO_URI", "mongodb://admin:pw@db:27017/esm?tlsCertificateKeyFilePassword=k3y"),
            ("ESM_MONGO_HOST", "admin:pw@db"),
            // Names esm does not declare, however harmless they look.
            ("ESM_DEBUG_NOTE", "s3cr3t"),
            ("ESM_PORT_EXTRA", "k3y"),
            ("HOME", "/root"),
        ];
        let shown = shown_environment(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let text = serde_json::to_string(&shown).expect("JSON");
        for secret in ["hunter2", "p4ss", "s3cr3t", "k3y", "pw@", "/root"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown["ESM_PORT"], "8080");
        assert_eq!(shown["RUST_LOG"], "info,esm=debug");
        assert_eq!(shown["ESM_BROKER_USERNAME"], "admin");
        assert_eq!(shown["ESM_BROKER_PASSWORD"], crate::config::REDACTED);
        assert_eq!(shown["ESM_EVENT_WEBHOOK_URL"], "https://hooks.example:8443");
        assert_eq!(shown["ESM_MONGO_URI"], "mongodb://db:27017");
        assert_eq!(shown["ESM_MONGO_HOST"], "db");
        assert_eq!(shown["ESM_DEBUG_NOTE"], crate::config::REDACTED);
        assert_eq!(shown["ESM_PORT_EXTRA"], crate::config::REDACTED);
        assert!(!shown.contains_key("HOME"));
    }
}
