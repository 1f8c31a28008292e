//! Host ports from `ESM_HOST_PORT_RANGE` on a real Docker engine: a container is
//! published on the port esm leased, keeps it across an update (so credentials stay
//! valid), and a handed-out pool member brings its port along.
//!
//! Runs when `ESM_TEST_DOCKER=1` (CI starts the engine and builds the test image with
//! `tests/docker/build-test-images.sh`); reported as ignored without it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::docker::{OnEngine, PUBLISHED, httpd_manifest};
use crate::support::{self, Client, eventually, free_port};

/// The host port instance `id`'s web container publishes 8080 on.
async fn host_port(client: &Client, id: &str) -> u16 {
    let (status, view) = client.view(id).await;
    assert_eq!(status, 200, "{view}");
    let port = view["context"]
        .as_object()
        .and_then(|c| c.iter().find(|(k, _)| k.ends_with("8080/tcp/HostPort")).map(|(_, v)| v.clone()));
    port.and_then(|p| p.as_str()?.parse().ok()).unwrap_or_else(|| panic!("a published port in {view}"))
}

async fn answers(port: u16) {
    let url = format!("http://127.0.0.1:{port}/");
    eventually(Duration::from_secs(10), &format!("{url} to answer"), || async {
        support::get(&url).await.ok().filter(|r| r.status().as_u16() < 500).map(|_| ())
    })
    .await;
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn containers_publish_the_leased_port_and_keep_it_across_an_update() {
    // A range of four free ports, found the way tests find a dead address.
    let low = loop {
        let low = free_port();
        if low < 65000 && (1..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", low + i)).is_ok()) {
            break low;
        }
    };
    let range = format!("{low}-{}", low + 3);
    let on = OnEngine::start("esm-docker-ports", "docker-compose", &[("ESM_HOST_PORT_RANGE", range.as_str())]).await;
    let client = &on.client;
    client.register_manifest("docker-compose", &httpd_manifest(PUBLISHED, "")).await;
    let (status, body) = client.provision("p-1", false).await;
    assert_eq!(status, 201, "{body}");
    let port = host_port(client, "p-1").await;
    assert!((low..=low + 3).contains(&port), "{port} in {range}");
    answers(port).await;

    let update = json!({"service_id": "svc", "parameters": {"GREETING": "hello"}});
    let (status, body) = client.send(Method::PATCH, "/v2/service_instances/p-1", Some(&update)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(host_port(client, "p-1").await, port, "the same port after the update");
    answers(port).await;

    // A pool member leases its port when it is deployed; the instance handed it keeps it.
    let (status, body) = client.send(Method::PUT, "/v2/et/pools/plan", Some(&json!({"size": 1}))).await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(30), "a ready member", || async {
        let (_, pool) = client.send(Method::GET, "/v2/et/pools/plan", None).await;
        (pool["ready"] == 1).then_some(())
    })
    .await;
    let (status, body) = client.provision("p-2", false).await;
    assert_eq!(status, 201, "{body}");
    let handed = host_port(client, "p-2").await;
    assert!((low..=low + 3).contains(&handed) && handed != port, "{handed}");
    answers(handed).await;

    let (status, body) = client.deprovision("p-1", false).await;
    assert_eq!(status, 200, "{body}");
    let (status, _): (u16, Value) = client.send(Method::DELETE, "/v2/et/pools/plan", None).await;
    assert_eq!(status, 200);
    drop(on);
}
