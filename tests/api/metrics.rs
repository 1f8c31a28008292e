//! `GET /metrics` on the operator port: what API traffic and operations leave there,
//! that hostile paths cannot grow it, and that a real parser reads it.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::wait::eventually;

/// The OpenMetrics text `GET /metrics` answers, after checking its content type.
async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(format!("{}/metrics", app.ops)).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert_eq!(content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    response.text().await.expect("body")
}

/// What an instance's liveness may be.
const LIVENESS: [&str; 4] = ["up", "degraded", "down", "unknown"];

/// The sample lines of `family` in `text`.
fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .collect()
}

/// Provisions two instances, binds one, fails a bind, deprovisions one and asks for a
/// path no route serves: everything synchronous, so each operation's count is in
/// before its answer.
async fn some_traffic() -> TestApp {
    let app = with_plan("x-esm-dummy: {mode: sync, fail: [unbind]}").await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    assert_eq!(app.provision("i-2", false).await.status, StatusCode::CREATED);
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    assert_eq!(app.unbind("i-1", "b-1", false).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(app.deprovision("i-2", false).await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/no/such/route-i-1").await.status, StatusCode::NOT_FOUND);
    app
}

#[tokio::test]
async fn metrics_show_requests_operations_instances_store_and_backend_calls() {
    let app = some_traffic().await;
    let text = scrape(&app).await;
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");

    let instance = "/v2/service_instances/{instance_id}";
    has(&format!(r#"esm_http_requests_total{{route="{instance}",method="PUT",status="201"}} 2"#));
    has(&format!(r#"esm_http_requests_total{{route="{instance}",method="DELETE",status="200"}} 1"#));
    has(r#"esm_http_requests_total{route="/v2/et/catalog",method="PUT",status="201"} 1"#);
    has(r#"esm_http_requests_total{route="unmatched",method="GET",status="404"} 1"#);
    has(&format!(r#"esm_http_request_duration_seconds_count{{route="{instance}",method="PUT"}} 2"#));

    has(r#"esm_operations_total{kind="provision",outcome="succeeded"} 2"#);
    has(r#"esm_operations_total{kind="bind",outcome="succeeded"} 1"#);
    has(r#"esm_operations_total{kind="unbind",outcome="failed"} 1"#);
    has(r#"esm_operations_total{kind="deprovision",outcome="succeeded"} 1"#);
    has(r#"esm_operation_duration_seconds_count{kind="provision"} 2"#);
    has(r#"esm_backend_errors_total{backend="dummy",call="unbind"} 1"#);
    has(r#"esm_backend_up{backend="dummy"} 1"#);
    has(&format!(r#"esm_build_info{{version="{}"}} 1"#, env!("CARGO_PKG_VERSION")));
    for family in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds"]
    {
        assert_eq!(samples(&text, family).len(), 1, "{family} in\n{text}");
    }
    assert!(samples(&text, "process_start_time_seconds").len() == 1, "{text}");

    // i-2 is deprovisioned; i-1's last operation is its provision. Its liveness is
    // whatever watching it has found by now.
    let instances = samples(&text, "esm_instances");
    assert_eq!(instances.len(), 1, "{instances:?}");
    let counted = instances[0].strip_prefix(r#"esm_instances{service_id="svc-1",plan_id="plan-1",state="succeeded","#);
    let liveness = counted.and_then(|rest| rest.strip_suffix("} 1")).unwrap_or_default();
    assert!(LIVENESS.iter().any(|l| liveness == format!(r#"liveness="{l}""#)), "{instances:?}");
    assert!(samples(&text, "esm_store_call_duration_seconds_count").iter().any(|l| l.contains(r#"call="insert""#)));
    // Counted from the index, each with one store call: esm_instances and the engines'
    // loads (esm_engine_instances).
    has(r#"esm_store_call_duration_seconds_count{store="memory",call="counts"} 2"#);
    // An instance id, or a path a client sent, is never a label value.
    for raw in ["i-1", "i-2", "b-1", "/v2/no/such"] {
        assert!(!text.contains(raw), "{raw} in\n{text}");
    }
}

/// 10,000 requests to random paths (and with made-up methods) leave a handful of
/// series, not one per path: the second 5,000 add none.
#[tokio::test]
async fn the_event_log_and_its_subscribers_are_counted() {
    let app = some_traffic().await;
    let _subscriber =
        app.raw(Method::GET, "/v2/et/events").header("accept", "text/event-stream").send().await.expect("subscribed");
    let text = crate::wait::eventually(std::time::Duration::from_secs(5), "the events counted", || async {
        let text = scrape(&app).await;
        let stored =
            samples(&text, "esm_events_stored").first().and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
        // Provisions, a bind, an unbind, a deprovision: at least ten steps.
        stored.is_some_and(|n| n >= 10).then_some(text)
    })
    .await;
    assert_eq!(samples(&text, "esm_sse_subscribers"), ["esm_sse_subscribers 1"]);
}

#[tokio::test]
async fn ten_thousand_random_paths_do_not_make_ten_thousand_series() {
    let app = Arc::new(spawn_app().await);
    random_requests(&app, 0..5_000).await;
    let half = scrape(&app).await;
    random_requests(&app, 5_000..10_000).await;
    let text = scrape(&app).await;
    let http = |text: &str| -> usize {
        ["esm_http_requests_total", "esm_http_request_duration_seconds_bucket"]
            .map(|f| samples(text, f).len())
            .iter()
            .sum()
    };
    assert_eq!(http(&text), http(&half), "the second half added series");
    let series = samples(&text, "esm_http_requests_total");
    assert!(series.len() <= 6, "{} series:\n{}", series.len(), series.join("\n"));
    let total: f64 = series.iter().filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum();
    assert_eq!(total, 10_000.0, "every request counted");
}

/// Requests `n` of `range` to random paths, with made-up methods too, from 16 clients
/// at once; each must be refused.
async fn random_requests(app: &Arc<TestApp>, range: std::ops::Range<usize>) {
    const CLIENTS: usize = 16;
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (app, range) = (app.clone(), range.clone());
        clients.spawn(async move {
            for n in range.skip(client).step_by(CLIENTS) {
                let id = uuid::Uuid::new_v4().simple();
                let (method, path) = match n % 4 {
                    0 => (Method::GET, format!("/{id}/{n}")),
                    1 => (Method::GET, format!("/v2/service_instances/{id}")),
                    2 => (Method::from_bytes(format!("M{n}").as_bytes()).expect("a token"), format!("/v2/{id}")),
                    _ => (Method::DELETE, format!("/v2/et/manifest/{id}?x={n}")),
                };
                let status = app.send(method, &path, None).await.status;
                assert!(status.is_client_error(), "{path}: {status}");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("a client finished");
    }
}

/// The exposition read by `prometheus_client`'s OpenMetrics parser, which refuses
/// anything outside the format (and its Prometheus text parser too), through the
/// interpreter `ESM_TEST_PYTHON` names.
#[cfg_attr(not(esm_test_python), ignore = "needs Python with prometheus_client: set ESM_TEST_PYTHON=python3")]
#[tokio::test]
async fn a_real_parser_reads_every_family() {
    let app = some_traffic().await;
    let text = scrape(&app).await;
    let parsed = parse_with_python(&text);
    let family = |name: &str| parsed.get(name).unwrap_or_else(|| panic!("no family {name} in {parsed}"));
    for (name, kind) in [
        ("esm_http_requests", "counter"),
        ("esm_http_request_duration_seconds", "histogram"),
        ("esm_operations", "counter"),
        ("esm_operation_duration_seconds", "histogram"),
        ("esm_instances", "gauge"),
        ("esm_store_call_duration_seconds", "histogram"),
        ("esm_backend_errors", "counter"),
        ("esm_events_stored", "gauge"),
        ("esm_sse_subscribers", "gauge"),
    ] {
        assert_eq!(family(name)["type"], kind, "{name}");
        assert!(family(name)["help"].as_str().is_some_and(|h| !h.is_empty()), "{name} has help text");
    }
    let samples = |name: &str| family(name)["samples"].as_array().cloned().unwrap_or_default();
    let instances = samples("esm_instances");
    let liveness = instances.first().and_then(|s| s[1]["liveness"].as_str()).unwrap_or_default().to_owned();
    assert!(LIVENESS.contains(&liveness.as_str()), "{instances:?}");
    assert_eq!(
        instances,
        [json!(["esm_instances",
                {"service_id": "svc-1", "plan_id": "plan-1", "state": "succeeded", "liveness": liveness}, 1.0])]
    );
    let requests = samples("esm_http_requests");
    let routes: Vec<&str> = requests.iter().filter_map(|s| s[1]["route"].as_str()).collect();
    assert!(routes.contains(&"/v2/service_instances/{instance_id}/service_bindings/{binding_id}"), "{routes:?}");
    assert!(routes.contains(&"unmatched"), "{routes:?}");
    let buckets = samples("esm_operation_duration_seconds");
    assert!(buckets.iter().any(|s| s[0] == "esm_operation_duration_seconds_bucket" && s[1]["le"] == "+Inf"));
}

/// The warm pool families, as the real parser reads them: one hit, one miss, the
/// refills timed, the ready members counted.
#[cfg_attr(not(esm_test_python), ignore = "needs Python with prometheus_client: set ESM_TEST_PYTHON=python3")]
#[tokio::test]
async fn pool_hits_misses_refills_and_ready_members_are_counted() {
    let app = with_plan("x-esm-dummy: {mode: either}\n").await;
    assert_eq!(app.put("/v2/et/pools/plan-1", &json!({"size": 2})).await.status, StatusCode::OK);
    let ready = |n: u64| {
        let app = &app;
        async move {
            eventually(Duration::from_secs(5), "ready members", || async {
                (app.get("/v2/et/pools/plan-1").await.body["ready"] == n).then_some(())
            })
            .await
        }
    };
    ready(2).await;
    assert_eq!(app.provision("warm", true).await.status, StatusCode::CREATED);
    let mut other = provision_body(PLAN);
    other["parameters"] = json!({"tier": "gold"});
    assert_eq!(app.put(&provision_path("cold", true), &other).await.status, StatusCode::ACCEPTED);
    ready(2).await;
    // The refill is timed once its record is written: the scrape that shows it.
    let refill_count = |parsed: &Value| {
        let samples = parsed["esm_pool_refill_duration_seconds"]["samples"].as_array().cloned().unwrap_or_default();
        samples.iter().find(|s| s[0] == "esm_pool_refill_duration_seconds_count").map(|s| s[2].clone())
    };
    let parsed = eventually(Duration::from_secs(5), "three refills timed", || async {
        let parsed = parse_with_python(&scrape(&app).await);
        (refill_count(&parsed) == Some(json!(3.0))).then_some(parsed)
    })
    .await;
    let samples = |name: &str| parsed[name]["samples"].as_array().cloned().unwrap_or_default();
    let plan = json!({"plan_id": "plan-1"});
    assert_eq!(parsed["esm_pool_hits"]["type"], "counter");
    assert_eq!(samples("esm_pool_hits")[0], json!(["esm_pool_hits_total", plan, 1.0]));
    assert_eq!(samples("esm_pool_misses")[0], json!(["esm_pool_misses_total", plan, 1.0]));
    assert_eq!(parsed["esm_pool_refill_duration_seconds"]["type"], "histogram");
    let members = samples("esm_pool_members");
    assert!(
        members.contains(&json!(["esm_pool_members", {"plan_id": "plan-1", "state": "ready"}, 2.0])),
        "{members:?}"
    );
}

/// `{family: {"type", "help", "samples": [[name, labels, value], …]}}` as the Python
/// parsers read `text`; panics with what they said if either refuses it.
fn parse_with_python(text: &str) -> Value {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let python = std::env::var("ESM_TEST_PYTHON").expect("ESM_TEST_PYTHON names a Python interpreter");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/parse_metrics.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("ESM_TEST_PYTHON is set but {python} does not run: {e}"));
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("the exposition written");
    let output = child.wait_with_output().expect("the parser finished");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the parser refused the exposition: {stderr}\n{text}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("the parser's answer is not JSON: {e}"))
}
