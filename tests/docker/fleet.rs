//! A fleet of two real engines: the machine's Docker engine (the default engine) and a
//! test's own private dockerd declared beside it. Placement by label and capacity,
//! cordon, every call of an instance going to its engine, and an engine whose daemon is
//! killed: `unreachable`, no placements there, its instance's liveness `unknown`, and
//! back once the daemon answers again.
//!
//! Runs when `ESM_TEST_DOCKER=1` and `ESM_TEST_DOCKERD=1` (root, to start a dockerd);
//! reported as ignored without them.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::docker::{OnEngine, PUBLISHED, httpd_manifest, leftovers};
use crate::support::dockerd::PrivateEngine;
use crate::support::{self, Client, eventually};

const LIMIT: Duration = Duration::from_secs(60);

/// Registers service `svc` with plan `plan` placing by `placement`, deployed by the
/// httpd compose manifest.
async fn register_placing(client: &Client, placement: Value) {
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
        "plans": [{"id": "plan", "name": "plan", "description": "d", "metadata": {"placement": placement}}]});
    let (status, body) = client.send(Method::PUT, "/v2/et/catalog", Some(&service)).await;
    assert!(matches!(status, 200 | 201), "{status} {body}");
    let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "docker-compose",
                          "manifest_content": httpd_manifest(PUBLISHED, "")});
    let (status, body) = client.send(Method::PUT, "/v2/et/manifest/m", Some(&manifest)).await;
    assert!(matches!(status, 200 | 201), "{status} {body}");
}

async fn declare(client: &Client, name: &str, spec: Value) {
    let (status, body) = client.send(Method::PUT, &format!("/v2/et/engines/{name}"), Some(&spec)).await;
    assert!(matches!(status, 200 | 201), "{status} {body}");
}

async fn engine_state(client: &Client, name: &str) -> String {
    let (_, body) = client.send(Method::GET, &format!("/v2/et/engines/{name}"), None).await;
    body["state"].as_str().unwrap_or_default().to_owned()
}

async fn provisioned_on(client: &Client, id: &str) -> String {
    let (status, body) = client.provision(id, true).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = client.settle(id, LIMIT).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("succeeded")), "{body}");
    let (_, view) = client.view(id).await;
    view["engine"].as_str().unwrap_or_default().to_owned()
}

/// The host port instance `id` publishes 8080 on, from its details.
async fn published_port(client: &Client, id: &str) -> String {
    let (_, view) = client.view(id).await;
    view["context"]
        .as_object()
        .and_then(|c| c.iter().find(|(k, _)| k.ends_with("8080/tcp/HostPort")).map(|(_, v)| v.clone()))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("a published port in {view}"))
}

#[cfg_attr(
    not(all(esm_test_docker, esm_test_dockerd)),
    ignore = "needs Docker and root: set ESM_TEST_DOCKER=1 ESM_TEST_DOCKERD=1"
)]
#[tokio::test(flavor = "multi_thread")]
async fn two_real_engines_take_instances_by_label_and_capacity_and_serve_them() {
    let second = PrivateEngine::start();
    let on = OnEngine::start("esm-fleet", "docker-compose", &[("ESM_ENGINE_PROBE_INTERVAL", "1")]).await;
    let client = &on.client;
    register_placing(client, json!({"requires": {"tier": "test"}})).await;
    declare(
        client,
        "default",
        json!({"backend": "docker-compose", "labels": {"tier": "test"}, "capacity": {"instances": 1}}),
    )
    .await;
    declare(
        client,
        "second",
        json!({"backend": "docker-compose", "endpoint": {"docker_host": second.host()},
               "labels": {"tier": "test"}, "capacity": {"instances": 2}}),
    )
    .await;
    let mut placed = Vec::new();
    for id in ["f-1", "f-2", "f-3"] {
        placed.push(provisioned_on(client, id).await);
    }
    placed.sort();
    assert_eq!(placed, ["default", "second", "second"]);
    let (status, body) = client.provision("f-4", true).await;
    assert_eq!(status, 422, "{body}");
    let why = body["description"].as_str().unwrap_or_default();
    assert!(why.contains("default: full (1 of 1)") && why.contains("second: full (2 of 2)"), "{why}");

    // Each instance's containers are on its own engine, and its published port answers.
    for id in ["f-1", "f-2", "f-3"] {
        let (_, view) = client.view(id).await;
        let on_second = view["engine"] == "second";
        assert_eq!(!second.containers_of(id).is_empty(), on_second, "{id} on {}", view["engine"]);
        assert_eq!(!leftovers(id).is_empty(), !on_second, "{id} on {}", view["engine"]);
        let port = published_port(client, id).await;
        let answer = support::get(format!("http://127.0.0.1:{port}/")).await.expect("the web container answers");
        assert!(answer.status().as_u16() < 500, "{id}: {}", answer.status());
    }
    let (status, body) = client.bind("f-2", "b-1").await;
    assert_eq!(status, 201, "{body}");
    // Reconciliation of the default engine (every second here, so several rounds ran
    // while the three deployed) never took the second engine's containers for removed
    // behind esm's back.
    let (_, gone) = client.send(Method::GET, "/v2/et/events?type=resource.gone", None).await;
    assert_eq!(gone["events"].as_array().map(Vec::len), Some(0), "{gone}");

    // Deprovisions go to each instance's engine, and leave nothing on either.
    for id in ["f-1", "f-2", "f-3"] {
        let (status, body) = client.deprovision(id, true).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(client.settle(id, LIMIT).await.0, 410);
        assert!(second.containers_of(id).is_empty() && leftovers(id).is_empty(), "{id} left containers");
    }
}

#[cfg_attr(
    not(all(esm_test_docker, esm_test_dockerd)),
    ignore = "needs Docker and root: set ESM_TEST_DOCKER=1 ESM_TEST_DOCKERD=1"
)]
#[tokio::test(flavor = "multi_thread")]
async fn an_engine_whose_daemon_is_killed_is_unreachable_takes_nothing_and_comes_back() {
    let mut second = PrivateEngine::start();
    let settings = [("ESM_ENGINE_PROBE_INTERVAL", "1"), ("ESM_LIVENESS_INTERVAL", "1")];
    let on = OnEngine::start("esm-fleet-kill", "docker-compose", &settings).await;
    let client = &on.client;
    register_placing(client, json!({"requires": {"zone": "b"}})).await;
    declare(
        client,
        "second",
        json!({"backend": "docker-compose", "endpoint": {"docker_host": second.host()},
                                     "labels": {"zone": "b"}}),
    )
    .await;
    assert_eq!(provisioned_on(client, "k-1").await, "second");

    second.kill();
    eventually(LIMIT, "the engine seen unreachable", || async {
        (engine_state(client, "second").await == "unreachable").then_some(())
    })
    .await;
    let (status, body) = client.provision("k-2", true).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["description"].as_str().unwrap_or_default().contains("second: unreachable"), "{body}");
    // Unknown at once (the engine refuses the look), and then because esm knows the
    // engine is unreachable: never guessed down.
    eventually(LIMIT, "k-1's liveness unknown because of its engine", || async {
        let (_, body) = client.send(Method::GET, "/v2/et/service_instances/k-1/liveness", None).await;
        let observed = body["observed"]["reason"].as_str().unwrap_or_default();
        (body["status"] == "unknown" && observed.contains("engine second unreachable")).then_some(())
    })
    .await;

    second.restart();
    eventually(LIMIT, "the engine active again", || async {
        (engine_state(client, "second").await == "active").then_some(())
    })
    .await;
    assert_eq!(provisioned_on(client, "k-2").await, "second");
    for id in ["k-1", "k-2"] {
        let (status, body) = client.deprovision(id, true).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(client.settle(id, LIMIT).await.0, 410);
    }
}

/// The deployment id instance `id` runs under, from its inventory.
async fn deployed_as(client: &Client, id: &str) -> String {
    let (_, body) = client.send(Method::GET, &format!("/v2/et/service_instances/{id}/resources"), None).await;
    let owners: Vec<&str> =
        body["resources"].as_array().into_iter().flatten().filter_map(|r| r["owner"].as_str()).collect();
    owners.first().map(|o| (*o).to_owned()).unwrap_or_else(|| panic!("{id} holds resources: {body}"))
}

#[cfg_attr(
    not(all(esm_test_docker, esm_test_dockerd)),
    ignore = "needs Docker and root: set ESM_TEST_DOCKER=1 ESM_TEST_DOCKERD=1"
)]
#[tokio::test(flavor = "multi_thread")]
async fn draining_a_real_engine_moves_a_relocatable_instance_and_its_binding_to_the_other() {
    let second = PrivateEngine::start();
    let on = OnEngine::start("esm-fleet-drain", "docker-compose", &[("ESM_ENGINE_PROBE_INTERVAL", "1")]).await;
    let client = &on.client;
    register_placing(client, json!({"requires": {"tier": "test"}, "relocatable": true})).await;
    declare(client, "default", json!({"backend": "docker-compose", "labels": {"tier": "test"}})).await;
    declare(
        client,
        "second",
        json!({"backend": "docker-compose", "endpoint": {"docker_host": second.host()}, "labels": {"tier": "test"}}),
    )
    .await;
    client.send(Method::POST, "/v2/et/engines/default/cordon", None).await;
    assert_eq!(provisioned_on(client, "r-1").await, "second");
    let (status, bound) = client.bind("r-1", "b-1").await;
    assert_eq!(status, 201, "{bound}");
    client.send(Method::POST, "/v2/et/engines/default/uncordon", None).await;

    let (status, body) = client.send(Method::POST, "/v2/et/engines/second/drain", None).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("draining")), "{body}");
    eventually(LIMIT, "r-1 moved to the default engine and gone from the second", || async {
        let (_, moved) = client.send(Method::GET, "/v2/et/events?type=instance.relocated", None).await;
        let finished = moved["events"].as_array().is_some_and(|e| e.len() == 1);
        (finished && second.containers_of("r-1").is_empty()).then_some(())
    })
    .await;
    let (_, view) = client.view("r-1").await;
    assert_eq!(view["engine"], "default", "{view}");
    // It runs on the default engine now, under the move's deployment, and answers there.
    let deployed = deployed_as(client, "r-1").await;
    assert!(deployed.starts_with("moved-") && !leftovers(&deployed).is_empty(), "{deployed}");
    let port = published_port(client, "r-1").await;
    let answer = support::get(format!("http://127.0.0.1:{port}/")).await.expect("the moved instance answers");
    assert!(answer.status().as_u16() < 500, "{}", answer.status());
    // Its binding was made again there: the platform's fetch shows the new credentials.
    let (status, binding) = client.send(Method::GET, "/v2/service_instances/r-1/service_bindings/b-1", None).await;
    assert_eq!(status, 200, "{binding}");
    assert_ne!(binding["credentials"], bound["credentials"], "the credentials follow the deployment");
    let (status, body) = client.send(Method::GET, "/v2/et/engines/second", None).await;
    assert_eq!((status, body["instances"].as_u64()), (200, Some(0)), "{body}");

    let (status, body) = client.deprovision("r-1", true).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(client.settle("r-1", LIMIT).await.0, 410);
    assert!(leftovers(&deployed).is_empty(), "the moved deployment is removed with its instance");
}
