//! The catalog and registry caches across processes: two esm replicas on one MongoDB
//! database each serve `GET /v2/catalog` and read the registry from memory, and a
//! change made through one is served by the other within a second, with a new `ETag`,
//! and used by its provisions within a second.
//!
//! Needs `ESM_TEST_MONGO_URI` (a server CI starts); without it the test is ignored,
//! with it and no server it fails.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{self, Client, Esm, StoreSetup, VERSION, eventually, temp_dir};

/// The most a replica may serve a catalog another replica has changed.
const BOUND: Duration = Duration::from_secs(1);

/// `GET /v2/catalog` on `api`: the body and its `ETag`.
async fn catalog(http: &reqwest::Client, api: &str) -> Option<(Value, String)> {
    let r = http.get(format!("{api}/v2/catalog")).header("X-Broker-API-Version", VERSION).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let etag = r.headers().get("etag")?.to_str().ok()?.to_owned();
    Some((r.json().await.ok()?, etag))
}

/// Puts `service` through `writer`, then polls `reader` until its catalog satisfies
/// `shows`: that must happen within [`BOUND`] of the write's answer, with a new `ETag`.
async fn change_is_seen(writer: &Client, reader: &str, service: &Value, shows: impl Fn(&Value) -> bool) {
    let http = support::http();
    let (_, before) = catalog(&http, reader).await.expect("the reader serves its catalog");
    let (status, body) = writer.send(Method::PUT, "/v2/et/catalog", Some(service)).await;
    assert!(matches!(status, 200 | 201), "register: {status} {body}");
    let answered = Instant::now();
    let after = eventually(BOUND, "the other replica to serve the change", || async {
        catalog(&http, reader).await.filter(|(body, _)| shows(body)).map(|(_, etag)| etag)
    })
    .await;
    let took = answered.elapsed();
    assert!(took < BOUND, "the other replica served the old catalog for {took:?}");
    assert_ne!(after, before, "a changed catalog has a new ETag");
}

fn service(id: &str, description: &str) -> Value {
    json!({"id": id, "name": id, "description": description, "bindable": true,
           "plans": [{"id": format!("{id}-plan"), "name": "plan", "description": "d"}]})
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn a_catalog_change_through_one_replica_is_served_by_the_other_within_a_second() {
    let (_machine, store) = (support::machine::timed().await, StoreSetup::fresh_mongo());
    let dir = temp_dir("esm-catalog-cache");
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let a = Esm::start_logging(&store, &[], Some(&logs[0])).await;
    let b = Esm::start_logging(&store, &[], Some(&logs[1])).await;
    // Until its first look at the stored registry a replica reads the catalog from the
    // store every time, and the test would prove nothing about the cache.
    for log in &logs {
        eventually(Duration::from_secs(10), "both replicas to serve the catalog from memory", || async {
            std::fs::read_to_string(log)
                .ok()
                .filter(|text| text.contains("the catalog is served from memory"))
                .map(drop)
        })
        .await;
    }
    let (ca, cb) = (Client::new(&a.api), Client::new(&b.api));
    ca.register("x-esm-dummy: {mode: sync}").await;
    // Both serve it (and, once their watchers have looked, from memory).
    let http = support::http();
    for api in [&a.api, &b.api] {
        eventually(Duration::from_secs(5), "both replicas to serve the first service", || async {
            catalog(&http, api).await.filter(|(body, _)| body["services"].as_array().is_some_and(|s| s.len() == 1))
        })
        .await;
    }
    let services = |n: usize| move |body: &Value| body["services"].as_array().is_some_and(|s| s.len() == n);
    // A service added through a, seen by b.
    change_is_seen(&ca, &b.api, &service("second", "d"), services(2)).await;
    // A service changed through b, seen by a.
    change_is_seen(&cb, &a.api, &service("second", "changed"), |body| {
        body["services"].as_array().is_some_and(|s| s.iter().any(|s| s["description"] == "changed"))
    })
    .await;
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn a_plan_registered_through_one_replica_is_provisioned_by_the_other_within_a_second() {
    let (_machine, store) = (support::machine::timed().await, StoreSetup::fresh_mongo());
    let dir = temp_dir("esm-registry-cache");
    let log = dir.path().join("b.log");
    let a = Esm::start(&store).await;
    let b = Esm::start_logging(&store, &[], Some(&log)).await;
    eventually(Duration::from_secs(10), "replica b to read the registry from memory", || async {
        std::fs::read_to_string(&log).ok().filter(|text| text.contains("the catalog is served from memory")).map(drop)
    })
    .await;
    let (ca, cb) = (Client::new(&a.api), Client::new(&b.api));
    ca.register("x-esm-dummy: {mode: sync}").await;
    // b provisions on the first plan: from then on it holds the registry decoded.
    eventually(Duration::from_secs(5), "replica b to provision on the first plan", || async {
        let (status, _) = cb.provision(&uuid::Uuid::new_v4().to_string(), false).await;
        (status == 201).then_some(())
    })
    .await;
    let (status, body) = cb.provision_on("too-early", "plan-2", false).await;
    assert_eq!(status, 400, "no second plan yet: {body}");

    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
                         "plans": [{"id": "plan", "name": "plan", "description": "d"},
                                   {"id": "plan-2", "name": "plan-2", "description": "d"}]});
    let (status, body) = ca.send(Method::PUT, "/v2/et/catalog", Some(&service)).await;
    assert_eq!(status, 200, "replace the service: {body}");
    let manifest = json!({"service_id": "svc", "plan_id": "plan-2", "manifest_type": "dummy",
                          "manifest_content": "x-esm-dummy: {mode: sync}\n"});
    let (status, body) = ca.send(Method::PUT, "/v2/et/manifest/m2", Some(&manifest)).await;
    assert_eq!(status, 201, "register the second plan's manifest: {body}");
    let answered = Instant::now();
    eventually(BOUND, "replica b to provision on the new plan", || async {
        let (status, _) = cb.provision_on(&uuid::Uuid::new_v4().to_string(), "plan-2", false).await;
        (status == 201).then_some(())
    })
    .await;
    let took = answered.elapsed();
    assert!(took < BOUND, "replica b refused the new plan for {took:?}");
}
