//! Liveness of Docker instances end to end: a container killed (or paused) behind
//! esm's back is `down` in the liveness query and on the event stream within 2
//! seconds, and the instance listing says `failed`; `up` and `succeeded` again once it
//! is started (or unpaused).
//!
//! Runs when `ESM_TEST_DOCKER=1` (CI starts the engine and builds the test image with
//! `tests/docker/build-test-images.sh`); reported as ignored without it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::support::docker::{IMAGE, OnEngine, docker, httpd_manifest, instance_filter, unique};
use crate::support::sse::SseReader;
use crate::support::{self, Client, eventually};

/// How soon a change behind esm's back must show.
const PROMPTLY: Duration = Duration::from_secs(2);

async fn liveness(client: &Client, id: &str) -> Value {
    let (status, body) = client.send(Method::GET, &format!("/v2/et/service_instances/{id}/liveness"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The instance's state in esm's instance listing (`/v2/et/service_instances`).
async fn listed_state(client: &Client, id: &str) -> Value {
    let (status, body) = client.view(id).await;
    assert_eq!(status, 200, "{body}");
    body["state"].clone()
}

#[cfg_attr(not(esm_test_docker), ignore = "needs Docker: set ESM_TEST_DOCKER=1")]
#[tokio::test(flavor = "multi_thread")]
async fn a_container_killed_or_paused_behind_esms_back_is_down_within_two_seconds_and_up_once_restarted() {
    // Unique per run: an earlier run's leftovers never stand in for this one's.
    let id = unique("live");
    let id = id.as_str();
    let manifest = httpd_manifest("", &format!("  worker:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"));
    let OnEngine { esm, client, cleanup: _cleanup, dir: _dir } =
        OnEngine::compose("esm-docker-events", &manifest).await;
    let (status, body) = client.provision(id, false).await;
    assert_eq!(status, 201, "{body}");
    eventually(Duration::from_secs(10), "the instance up", || async {
        (liveness(&client, id).await["status"] == "up").then_some(())
    })
    .await;

    let response = support::http()
        .get(format!("{}/v2/et/events?instance_id={id}&type=liveness.changed", esm.api))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("esm answers");
    let mut events = SseReader::new(response);
    let filter = instance_filter(id);
    let filter = filter.as_str();
    let worker = docker(&["ps", "-q", "--filter", filter, "--filter", "label=esm.service=worker"]);
    assert!(!worker.is_empty(), "the worker container runs");

    let killed = Instant::now();
    docker(&["kill", &worker]);
    let frame = events.next(PROMPTLY, "liveness.changed after the kill").await;
    assert_eq!(frame.data["from"], "up");
    assert_ne!(frame.data["to"], "up", "{}", frame.data);
    let body = liveness(&client, id).await;
    assert!(killed.elapsed() < PROMPTLY, "seen after {:?}", killed.elapsed());
    assert!(matches!(body["status"].as_str(), Some("degraded" | "down")), "{body}");
    let worker_component =
        body["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "worker")).cloned();
    assert_eq!(worker_component.as_ref().map(|c| c["status"].clone()), Some(Value::from("down")), "{body}");
    let listed = listed_state(&client, id).await;
    assert_eq!(listed["state"], "failed", "{listed}");
    // The original's `state` says failed; esm's own fields tell the two stories apart.
    let (_, view) = client.view(id).await;
    assert_eq!(view["operation_state"], "succeeded", "{view}");
    assert!(matches!(view["liveness"].as_str(), Some("degraded" | "down")), "{view}");

    let started = Instant::now();
    docker(&["start", &worker]);
    let frame = events.next(PROMPTLY, "liveness.changed after the restart").await;
    assert_eq!(frame.data["to"], "up", "{}", frame.data);
    assert!(started.elapsed() < PROMPTLY);
    assert_eq!(liveness(&client, id).await["status"], "up");
    assert_eq!(listed_state(&client, id).await["state"], "succeeded");

    // Paused: down and failed, as killed (a paused container serves nobody).
    docker(&["pause", &worker]);
    let frame = events.next(PROMPTLY, "liveness.changed after the pause").await;
    assert_ne!(frame.data["to"], "up", "{}", frame.data);
    let body = liveness(&client, id).await;
    let worker_component =
        body["components"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "worker")).cloned();
    assert_eq!(
        worker_component.map(|c| (c["status"].clone(), c["reason"].clone())),
        Some(("down".into(), "paused".into())),
        "{body}"
    );
    let listed = listed_state(&client, id).await;
    assert_eq!(listed["state"], "failed", "{listed}");
    assert!(listed["description"].as_str().is_some_and(|d| d.contains("Paused")), "{listed}");
    docker(&["unpause", &worker]);
    let frame = events.next(PROMPTLY, "liveness.changed after the unpause").await;
    assert_eq!(frame.data["to"], "up", "{}", frame.data);
    assert_eq!(listed_state(&client, id).await["state"], "succeeded");

    let (status, body) = client.deprovision(id, false).await;
    assert_eq!(status, 200, "{body}");
    drop(esm);
}
