//! Change events across replicas: two esm processes on one MongoDB database; a
//! subscriber of one sees the events of operations and liveness changes made through
//! the other within a second, in one id order.
//!
//! Needs `ESM_TEST_MONGO_URI` (a server CI starts); without it the test is ignored,
//! with it and no server it fails.

#[path = "support/sse.rs"]
mod sse;
mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use sse::SseReader;
use support::{Client, Esm, StoreSetup, eventually, mongo_uri};

/// The most a replica may take to pass on another replica's event.
const BOUND: Duration = Duration::from_secs(1);

async fn subscribe(api: &str, query: &str) -> SseReader {
    let response = support::http()
        .get(format!("{api}/v2/et/events{query}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("esm answers");
    assert_eq!(response.status(), 200);
    SseReader::new(response)
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_of_one_replica_sees_the_others_events_within_a_second() {
    let store = StoreSetup::Mongo { uri: mongo_uri(), db: format!("esm_test_{}", uuid::Uuid::new_v4().simple()) };
    let a = Esm::start(&store).await;
    let b = Esm::start(&store).await;
    let (ca, cb) = (Client::new(&a.api), Client::new(&b.api));
    ca.register("x-esm-dummy: {mode: sync, observe: false}").await;
    let mut on_b = subscribe(&b.api, "?type=provision.succeeded").await;
    let mut all_on_a = subscribe(&a.api, "").await;

    let (status, body) = ca.provision("i-1", false).await;
    assert_eq!(status, 201, "{body}");
    let answered = Instant::now();
    let frame = on_b.next(Duration::from_secs(5), "replica A's provision, on replica B").await;
    assert!(answered.elapsed() < BOUND, "took {:?}", answered.elapsed());
    assert_eq!(frame.data["instance_id"], "i-1");

    // Both replicas write events; one id order for all.
    let (status, body) = cb.provision("i-2", false).await;
    assert_eq!(status, 201, "{body}");
    let report = json!({"status": "down", "ttl_seconds": 60, "note": "maintenance"});
    let (status, body) = cb.send(Method::PUT, "/v2/et/service_instances/i-1/liveness", Some(&report)).await;
    assert_eq!(status, 200, "{body}");
    let mut ids = Vec::new();
    let mut kinds = Vec::new();
    while !kinds.iter().any(|k: &String| k == "liveness.changed") {
        let frame = all_on_a.next(Duration::from_secs(5), "every event, on replica A").await;
        ids.push(frame.id.expect("an id").parse::<u64>().expect("a number"));
        kinds.push(frame.event.expect("a type"));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for kind in ["provision.started", "provision.succeeded", "liveness.changed"] {
        assert_eq!(
            kinds.iter().filter(|k| *k == kind).count(),
            if kind == "liveness.changed" { 1 } else { 2 },
            "{kinds:?}"
        );
    }
    // Pages agree on both replicas (once each has read the other's latest writes).
    eventually(BOUND, "both replicas to page the same events", || async {
        let (_, page_a) = ca.send(Method::GET, "/v2/et/events", None).await;
        let (_, page_b) = cb.send(Method::GET, "/v2/et/events", None).await;
        let last = page_a["events"].as_array().and_then(|e| e.last()).map(|e| e["id"].clone());
        let same = page_a["events"] == page_b["events"] && last == ids.last().map(|id| json!(id));
        same.then_some(())
    })
    .await;
}
