use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use serde_json::json;
use tower::ServiceExt;

use super::census::MAX_AGE;
use super::http::{HttpMetricsLayer, method_label};
use super::*;
use crate::domain::instance::ServiceInstance;
use crate::store::Records;
use crate::store::memory::MemoryStore;
use crate::store::switchable::SwitchableStore;

/// The lines of `text` that are samples of `family` (its name, then `{` or a space).
fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.strip_prefix(family).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .collect()
}

fn instance(id: &str, plan: &str) -> ServiceInstance {
    serde_json::from_value(json!({
        "id": id, "service_id": "svc", "plan_id": plan, "organization_guid": "o", "space_guid": "s",
        "manifest_id": "m", "status": "provisioned", "created_at": "2026-01-01T00:00:00.000Z"
    }))
    .expect("an instance")
}

/// A labelled family appears once it has a sample (prometheus-client leaves out an
/// empty one); the unlabelled gauges and the instance counts are always there.
#[tokio::test]
async fn every_family_is_described_once_it_has_samples() {
    let metrics = Metrics::new();
    let text = metrics.render(&MemoryStore::new()).await;
    for family in ["esm_http_requests", "esm_operations", "esm_store_errors", "esm_backend_errors"] {
        assert!(!text.contains(family), "{family} has no sample yet: left out");
    }
    let route = super::http::Route::Unmatched;
    metrics.http_request(route, "GET", 404, Duration::from_millis(1));
    metrics.operation_finished(OperationKind::Bind, "succeeded", Duration::from_millis(1));
    metrics.store_call("memory", "get", Duration::ZERO, Some(&StoreError::Corrupt("x".into())));
    metrics.backend_error("dummy", "probe");
    metrics.reconcile_removed("dummy");
    let store = MemoryStore::new();
    let text = metrics.render(&store).await;
    for (family, kind) in [
        ("esm_http_requests", "counter"),
        ("esm_http_request_duration_seconds", "histogram"),
        ("esm_operations", "counter"),
        ("esm_operation_duration_seconds", "histogram"),
        ("esm_instances", "gauge"),
        ("esm_store_call_duration_seconds", "histogram"),
        ("esm_store_errors", "counter"),
        ("esm_backend_errors", "counter"),
        ("esm_reconcile_removals", "counter"),
        ("esm_events_stored", "gauge"),
        ("esm_sse_subscribers", "gauge"),
    ] {
        assert!(text.contains(&format!("# TYPE {family} {kind}\n")), "{family} {kind} in\n{text}");
        assert!(text.contains(&format!("# HELP {family} ")), "{family} has help text");
    }
    assert!(text.ends_with("# EOF\n"), "a complete OpenMetrics exposition");
}

#[tokio::test]
async fn the_event_gauges_show_what_they_were_set_to() {
    let metrics = Metrics::new();
    metrics.set_events_stored(1234);
    metrics.set_sse_subscribers(3);
    metrics.set_sse_subscribers(2);
    let text = metrics.render(&MemoryStore::new()).await;
    assert_eq!(samples(&text, "esm_events_stored"), ["esm_events_stored 1234"]);
    assert_eq!(samples(&text, "esm_sse_subscribers"), ["esm_sse_subscribers 2"]);
}

#[tokio::test]
async fn operations_are_counted_by_kind_and_outcome_and_timed_by_kind() {
    let metrics = Metrics::new();
    metrics.operation_finished(OperationKind::Provision, "succeeded", Duration::from_millis(20));
    metrics.operation_finished(OperationKind::Provision, "failed", Duration::from_secs(2));
    metrics.operation_finished(OperationKind::Unbind, "lease_lost", Duration::ZERO);
    metrics.reconcile_removed("dummy");
    let text = metrics.render(&MemoryStore::new()).await;
    let mut counted = samples(&text, "esm_operations_total");
    counted.sort_unstable();
    assert_eq!(
        counted,
        [
            r#"esm_operations_total{kind="provision",outcome="failed"} 1"#,
            r#"esm_operations_total{kind="provision",outcome="succeeded"} 1"#,
            r#"esm_operations_total{kind="unbind",outcome="lease_lost"} 1"#,
        ]
    );
    assert!(text.contains(r#"esm_operation_duration_seconds_count{kind="provision"} 2"#), "{text}");
    assert!(text.contains(r#"esm_operation_duration_seconds_bucket{le="0.1",kind="provision"} 1"#), "{text}");
    assert!(text.contains(r#"esm_reconcile_removals_total{backend="dummy"} 1"#), "{text}");
}

#[tokio::test(start_paused = true)]
async fn instances_are_counted_from_the_index_and_the_counts_kept_for_a_few_seconds() {
    let metrics = Metrics::new();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let records = Records::new(store.clone());
    records.insert(&instance("a", "small")).await.expect("insert");
    records.insert(&instance("b", "small")).await.expect("insert");
    let mut gone = instance("c", "large");
    gone.status = crate::domain::instance::InstanceStatus::Deprovisioned;
    records.insert(&gone).await.expect("insert");

    let line = |plan: &str, n: u32| {
        format!(r#"esm_instances{{service_id="svc",plan_id="{plan}",state="succeeded",liveness="unknown"}} {n}"#)
    };
    let text = metrics.render(store.as_ref()).await;
    assert_eq!(samples(&text, "esm_instances"), [line("small", 2)], "a tombstone is not counted");

    records.insert(&instance("d", "large")).await.expect("insert");
    let text = metrics.render(store.as_ref()).await;
    assert_eq!(samples(&text, "esm_instances"), [line("small", 2)], "within MAX_AGE the last counts stand");

    tokio::time::advance(MAX_AGE).await;
    let text = metrics.render(store.as_ref()).await;
    assert_eq!(samples(&text, "esm_instances"), [line("large", 1), line("small", 2)], "then they are taken again");
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_leaves_the_last_counts() {
    let metrics = Metrics::new();
    let store = Arc::new(SwitchableStore::new(false, Duration::ZERO));
    Records::new(store.clone()).insert(&instance("a", "small")).await.expect("insert");
    let before = samples(&metrics.render(store.as_ref()).await, "esm_instances").join("\n");
    assert!(before.ends_with("} 1"), "{before}");
    store.set_down(true);
    tokio::time::advance(MAX_AGE).await;
    let calls = store.calls();
    let after = metrics.render(store.as_ref()).await;
    assert_eq!(store.calls(), calls + 1, "the stale counts were asked for");
    assert_eq!(samples(&after, "esm_instances").join("\n"), before);
}

#[test]
fn methods_outside_http_are_one_label() {
    assert_eq!(method_label(&Method::DELETE), "DELETE");
    assert_eq!(method_label(&Method::from_bytes(b"BREW").expect("a token")), "other");
    assert_eq!(method_label(&Method::from_bytes(b"PROPFIND").expect("a token")), "other");
}

#[tokio::test]
async fn requests_are_labelled_by_route_template_and_unmatched_paths_share_one_label() {
    let metrics = Metrics::new();
    let router = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(HttpMetricsLayer::new(metrics.clone()));
    let send = |method: Method, path: String| {
        let router = router.clone();
        async move {
            let request = Request::builder().method(method).uri(path).body(Body::empty()).expect("a request");
            router.oneshot(request).await.expect("answered").status()
        }
    };
    for n in 0..50 {
        assert_eq!(send(Method::GET, format!("/items/{n}")).await, StatusCode::OK);
        assert_eq!(send(Method::GET, format!("/random/{n}/x")).await, StatusCode::NOT_FOUND);
    }
    assert_eq!(send(Method::DELETE, "/items/1".into()).await, StatusCode::METHOD_NOT_ALLOWED);
    let text = metrics.render(&MemoryStore::new()).await;
    let mut counted = samples(&text, "esm_http_requests_total");
    counted.sort_unstable();
    assert_eq!(
        counted,
        [
            r#"esm_http_requests_total{route="/items/{id}",method="DELETE",status="405"} 1"#,
            r#"esm_http_requests_total{route="/items/{id}",method="GET",status="200"} 50"#,
            r#"esm_http_requests_total{route="unmatched",method="GET",status="404"} 50"#,
        ]
    );
    assert!(text.contains(r#"esm_http_request_duration_seconds_count{route="/items/{id}",method="GET"} 50"#));
}

#[test]
fn no_label_value_is_longer_than_an_id() {
    let max = crate::domain::bounded::MAX_ID_BYTES;
    assert_eq!(bounded_label("plan-1"), "plan-1");
    let exact = "p".repeat(max);
    assert_eq!(bounded_label(&exact), exact);
    let (a, b) = (format!("{}a", "é".repeat(25_000)), format!("{}b", "é".repeat(25_000)));
    let (shown_a, shown_b) = (bounded_label(&a), bounded_label(&b));
    assert!(shown_a.len() <= max && shown_b.len() <= max, "{} {}", shown_a.len(), shown_b.len());
    assert_ne!(shown_a, shown_b, "two long ids stay two series");
    assert_eq!(shown_a, bounded_label(&a), "the same id, the same series");
    assert!(shown_a.starts_with("éé"), "{shown_a}");
}
