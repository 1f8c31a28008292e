//! Warm pools on a real Docker engine: members are running containers handed out at
//! once; a member killed behind esm's back is replaced and its containers removed; a
//! handed-out instance deprovisions cleanly; a deleted pool leaves nothing.
//!
//! Runs when `ESM_TEST_DOCKER=1` (CI starts the engine and builds the test image with
//! `tests/docker/build-test-images.sh`); reported as ignored without it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::docker::{OnEngine, PUBLISHED, docker, httpd_manifest};
use crate::support::{self, Client, eventually};

const POOL: &str = "/v2/et/pools/plan";
const LIMIT: Duration = Duration::from_secs(30);

/// The containers (running or not) labelled `label`.
fn containers(label: &str) -> Vec<String> {
    docker(&["ps", "-aq", "--filter", &format!("label={label}")]).lines().map(str::to_owned).collect()
}

async fn pool_where(client: &Client, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    eventually(LIMIT, what, || async {
        let (status, body) = client.send(Method::GET, POOL, None).await;
        (status == 200 && wanted(&body)).then_some(body)
    })
    .await
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_docker_pool_hands_out_running_containers_and_replaces_a_killed_member() {
    // Reconciliation every second (the default for these tests) must keep the members.
    let on = OnEngine::compose("esm-docker-pools", &httpd_manifest(PUBLISHED, "")).await;
    let (client, name) = (&on.client, on.owner());
    let (status, body) = client.send(Method::PUT, POOL, Some(&json!({"size": 2}))).await;
    assert_eq!(status, 200, "{body}");
    pool_where(client, "two ready members", |p| p["ready"] == 2).await;

    // Handed out: the instance runs at once, in the member's containers.
    let (status, body) = client.provision("warm-1", false).await;
    assert_eq!(status, 201, "{body}");
    // The claim's event is numbered into the log just after the answer: polled.
    let member = eventually(Duration::from_secs(10), "the claim's event", || async {
        let (_, page) = client.send(Method::GET, "/v2/et/events?type=pool.member_claimed", None).await;
        page["events"][0]["member_id"].as_str().map(str::to_owned)
    })
    .await;
    let (status, view) = client.send(Method::GET, "/v2/et/service_instances/warm-1", None).await;
    assert_eq!(status, 200, "{view}");
    let port = view["context"]
        .as_object()
        .and_then(|c| c.iter().find(|(k, _)| k.ends_with("8080/tcp/HostPort")).map(|(_, v)| v.clone()))
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("a published port in {view}"));
    let answer = support::get(format!("http://127.0.0.1:{port}/")).await.expect("the handed-out web container answers");
    assert!(answer.status().as_u16() < 500, "{}", answer.status());
    let (_, liveness) = client.send(Method::GET, "/v2/et/service_instances/warm-1/liveness", None).await;
    assert_eq!(liveness["status"], "up", "{liveness}");

    // A member killed behind esm's back is replaced, and what it held goes.
    let refilled = pool_where(client, "refilled", |p| p["ready"] == 2).await;
    let victim = refilled["members"][0]["id"].as_str().expect("a member").to_owned();
    let victim_label = format!("esm.instance_id={victim}");
    for container in containers(&victim_label) {
        docker(&["kill", &container]);
    }
    pool_where(client, "the killed member replaced", |p| {
        p["ready"] == 2 && !p["members"].as_array().is_some_and(|m| m.iter().any(|m| m["id"] == victim.as_str()))
    })
    .await;
    eventually(LIMIT, "the killed member's containers removed", || async {
        containers(&victim_label).is_empty().then_some(())
    })
    .await;

    // The handed-out instance deprovisions like a cold one: its member's containers go.
    let (status, body) = client.deprovision("warm-1", false).await;
    assert_eq!(status, 200, "{body}");
    assert!(containers(&format!("esm.instance_id={member}")).is_empty());

    // A deleted pool leaves nothing of this esm on the engine.
    let (status, _) = client.send(Method::DELETE, POOL, None).await;
    assert_eq!(status, 200);
    eventually(LIMIT, "the pool gone", || async {
        (client.send(Method::GET, POOL, None).await.0 == 404).then_some(())
    })
    .await;
    eventually(LIMIT, "no container left", || async {
        containers(&format!("esm.owner={name}")).is_empty().then_some(())
    })
    .await;
    drop(on);
}
