//! Host ports leased from `ESM_HOST_PORT_RANGE`: from the range, never one port twice
//! (50 concurrent provisions), kept across an update, released at deprovision and when
//! a provision fails, and an exhausted range a clear failure.

use std::collections::BTreeSet;

use esm::config::{Config, PortRange};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const PORTS: &str = "x-esm-dummy: {mode: sync}\nservices:\n  web:\n    ports: [\"8080\", \"9090/udp\"]\n";
const ONE_PORT: &str = "x-esm-dummy: {mode: sync}\nservices:\n  web:\n    ports: [\"8080\"]\n";

async fn with_range(low: u16, high: u16, script: &str) -> TestApp {
    let app = spawn_app_with(Config { host_port_range: Some(PortRange { low, high }), ..test_config() }).await;
    app.register_catalog(json!({}), script).await;
    app
}

/// The host port instance `id` publishes container port `key` (`8080/tcp`) on.
async fn host_port(app: &TestApp, id: &str, key: &str) -> Option<u16> {
    let view = app.get(&format!("/v2/et/service_instances/{id}")).await.body;
    view["context"][format!("{id}_web_{key}/HostPort")].as_str().and_then(|p| p.parse().ok())
}

#[tokio::test]
async fn ports_come_from_the_range_stay_across_an_update_and_go_back_at_deprovision() {
    let app = with_range(30000, 30003, PORTS).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let tcp = host_port(&app, "i-1", "8080/tcp").await.expect("a tcp port");
    let udp = host_port(&app, "i-1", "9090/udp").await.expect("a udp port");
    assert!((30000..=30003).contains(&tcp) && (30000..=30003).contains(&udp), "{tcp} {udp}");
    let update = json!({"service_id": SERVICE, "parameters": {"size": 2}});
    assert_eq!(app.patch("/v2/service_instances/i-1", &update).await.status, StatusCode::OK);
    assert_eq!(host_port(&app, "i-1", "8080/tcp").await, Some(tcp), "kept across the update");
    assert_eq!(host_port(&app, "i-1", "9090/udp").await, Some(udp));

    // Four tcp ports: three more instances take the rest, a fifth finds none.
    for id in ["i-2", "i-3", "i-4"] {
        assert_eq!(app.provision(id, false).await.status, StatusCode::CREATED, "{id}");
    }
    let full = app.provision("i-5", false).await;
    assert_eq!(full.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", full.body);
    let description = full.body["description"].as_str().unwrap_or_default();
    assert!(description.contains("no free host port left in ESM_HOST_PORT_RANGE 30000-30003"), "{}", full.body);
    // A deprovision gives its ports back.
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.provision("i-5", false).await.status, StatusCode::CREATED);
    assert_eq!(host_port(&app, "i-5", "8080/tcp").await, Some(tcp));
}

#[tokio::test]
async fn fifty_concurrent_provisions_never_share_a_port_and_the_rest_fail_clearly() {
    let app = with_range(31000, 31039, ONE_PORT).await;
    let answers = futures_util::future::join_all((0..50).map(|n| {
        let app = &app;
        async move { (n, app.provision(&format!("c-{n}"), false).await) }
    }))
    .await;
    let created: Vec<String> =
        answers.iter().filter(|(_, r)| r.status == StatusCode::CREATED).map(|(n, _)| format!("c-{n}")).collect();
    let failed: Vec<&Value> =
        answers.iter().filter(|(_, r)| r.status != StatusCode::CREATED).map(|(_, r)| &r.body).collect();
    assert_eq!((created.len(), failed.len()), (40, 10), "{failed:?}");
    assert!(
        failed.iter().all(|b| b["description"].as_str().is_some_and(|d| d.contains("no free host port"))),
        "{failed:?}"
    );
    let mut ports = BTreeSet::new();
    for id in &created {
        let port = host_port(&app, id, "8080/tcp").await.expect("a port");
        assert!((31000..=31039).contains(&port));
        assert!(ports.insert(port), "port {port} handed out twice");
    }
}

#[tokio::test]
async fn a_failed_provision_gives_its_port_back() {
    let app = with_range(
        32000,
        32000,
        "x-esm-dummy: {mode: sync, fail: [provision]}\nservices:\n  web:\n    ports: [\"8080\"]\n",
    )
    .await;
    for id in ["f-1", "f-2"] {
        let failed = app.provision(id, false).await;
        assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
        let description = failed.body["description"].as_str().unwrap_or_default().to_owned();
        // The second fails as the dummy was told to, not for want of the only port.
        assert!(!description.contains("no free host port"), "{id}: {description}");
    }
}

#[tokio::test]
async fn without_a_range_the_engine_picks() {
    let app = with_plan(PORTS).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    assert_eq!(host_port(&app, "i-1", "8080/tcp").await, None);
}

#[tokio::test]
async fn a_port_another_process_holds_is_skipped_not_leased() {
    // A port of the range someone else listens on: the engine would refuse it.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let held = listener.local_addr().expect("address").port();
    let app = with_range(held, held, ONE_PORT).await;
    let refused = app.provision("h-1", false).await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", refused.body);
    let description = refused.body["description"].as_str().unwrap_or_default();
    assert!(description.contains("(1 held by processes other than esm)"), "{}", refused.body);
    // Nothing was leased for it, and once the port is free it is handed out.
    let leases = app.get(&format!("/v2/et/inventory?type=port&name={held}/tcp")).await.body;
    assert_eq!(leases["resources"].as_array().map(Vec::len), Some(0), "{leases}");
    drop(listener);
    assert_eq!(app.provision("h-2", false).await.status, StatusCode::CREATED);
    assert_eq!(host_port(&app, "h-2", "8080/tcp").await, Some(held));
}

#[tokio::test]
async fn the_range_is_the_default_engines_and_another_engine_picks_its_own_ports() {
    let app =
        spawn_app_with(Config { host_port_range: Some(PortRange { low: 32000, high: 32009 }), ..test_config() }).await;
    app.register_catalog(json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), ONE_PORT).await;
    let spec = json!({"backend": "dummy", "labels": {"zone": "a"}});
    assert_eq!(app.put("/v2/et/engines/e1", &spec).await.status, StatusCode::CREATED);
    assert_eq!(app.provision("on-e1", false).await.status, StatusCode::CREATED);
    let view = app.get("/v2/et/service_instances/on-e1").await.body;
    assert_eq!(view["engine"], "e1");
    let port = host_port(&app, "on-e1", "8080/tcp").await;
    assert!(port.is_none_or(|p| !(32000..=32009).contains(&p)), "not from the default engine's range: {view}");
    let leased = app.get("/v2/et/inventory?type=port").await.body;
    assert_eq!(leased["resources"].as_array().map(Vec::len), Some(0), "no lease for it: {leased}");
}
