//! The inventory on a real Docker engine: a compose instance's container, network,
//! volume and published port are recorded in use; a container removed behind esm's
//! back is marked gone (with an event); a labelled container of an instance esm does
//! not know is recorded as orphaned and removed; a deprovision leaves nothing.
//!
//! Runs when `ESM_TEST_DOCKER=1` (CI starts the engine and builds the test image with
//! `tests/docker/build-test-images.sh`); reported as ignored without it.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::support::docker::{IMAGE, OnEngine, PUBLISHED, docker, httpd_manifest, instance_filter, unique};
use crate::support::{Client, eventually};

/// What `id` holds: type → (name, state, the resource).
async fn held(client: &Client, id: &str) -> BTreeMap<String, (String, String, Value)> {
    let (status, body) = client.send(Method::GET, &format!("/v2/et/service_instances/{id}/resources"), None).await;
    assert_eq!(status, 200, "{body}");
    let text = |r: &Value, key: &str| r[key].as_str().unwrap_or_default().to_owned();
    let resources = body["resources"].as_array().expect("resources").iter();
    resources.map(|r| (text(r, "type"), (text(r, "name"), text(r, "state"), r.clone()))).collect()
}

/// The events of `kind` about instance `id`, once there is one.
async fn event_about(client: &Client, kind: &str, id: &str) -> Value {
    eventually(Duration::from_secs(30), &format!("a {kind} event about {id}"), || async {
        let (_, page) = client.send(Method::GET, &format!("/v2/et/events?type={kind}&limit=1000"), None).await;
        page["events"].as_array()?.iter().find(|e| e["instance_id"] == id).cloned()
    })
    .await
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_records_what_the_engine_holds_and_follows_what_happens_behind_esm_s_back() {
    let web_extra = format!("{PUBLISHED}    volumes: [\"data:/data\"]\n");
    let on = OnEngine::compose("esm-docker-inventory", &httpd_manifest(&web_extra, "volumes:\n  data: {}\n")).await;
    let (client, owner) = (&on.client, on.owner());
    let id = unique("inv");
    let (status, body) = client.provision(&id, false).await;
    assert_eq!(status, 201, "{body}");

    let recorded = held(client, &id).await;
    let kinds: Vec<&str> = recorded.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["container", "network", "port", "volume"], "{recorded:?}");
    assert!(recorded.values().all(|(_, state, _)| state == "in_use"), "{recorded:?}");
    let filter = instance_filter(&id);
    let container = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    assert_eq!(recorded["container"].0, container);
    assert_eq!(recorded["volume"].0, docker(&["volume", "ls", "-q", "--filter", &filter]));
    assert_eq!(recorded["network"].0, docker(&["network", "ls", "--filter", &filter, "--format", "{{.Name}}"]));
    let port = &recorded["port"].2["port"];
    assert_eq!(port["address"], "127.0.0.1", "{port}");
    let published = docker(&["port", &container, "8080/tcp"]);
    assert_eq!(published, format!("127.0.0.1:{}", port["port"]), "what the engine publishes");

    // Removed behind esm's back: reconciliation (every second here) marks it gone.
    docker(&["rm", "-f", &container]);
    let event = event_about(client, "resource.gone", &id).await;
    assert!(event["reason"].as_str().is_some_and(|r| r.contains(&container)), "{event}");
    assert_eq!(held(client, &id).await["container"].1, "gone");

    // Held for an instance esm does not know: recorded as orphaned, then removed.
    let ghost = unique("ghost");
    let labels = [format!("esm.instance_id={ghost}"), format!("esm.owner={owner}")];
    docker(&["run", "-d", "--label", &labels[0], "--label", &labels[1], IMAGE, "sleep", "3600"]);
    let orphaned = event_about(client, "resource.orphaned", &ghost).await;
    assert!(orphaned["reason"].as_str().is_some_and(|r| r.contains("container")), "{orphaned}");
    event_about(client, "instance.removed", &ghost).await;
    let ghost_filter = instance_filter(&ghost);
    assert_eq!(docker(&["ps", "-aq", "--filter", &ghost_filter]), "");
    let (_, left) = client.send(Method::GET, &format!("/v2/et/inventory?owner={ghost}"), None).await;
    assert_eq!(left["resources"], serde_json::json!([]), "removed, so forgotten");

    assert_eq!(client.deprovision(&id, false).await.0, 200);
    let (_, left) = client.send(Method::GET, &format!("/v2/et/inventory?owner={id}"), None).await;
    assert_eq!(left["resources"], serde_json::json!([]), "a deprovision leaves nothing recorded");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &filter]), "", "nor anything on the engine");
}
