//! The instance listing: the original's array, pages with a cursor, and filters.

use esm::config::{Config, StoreKind};
use esm::domain::operation::OperationKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

fn ids(instances: &Value) -> Vec<String> {
    let list = instances.as_array().expect("an array of instances");
    list.iter().map(|i| i["context"]["id"].as_str().expect("an id").to_owned()).collect()
}

/// Every page of `query` (which must ask for paging), following `next` to the end.
async fn walk(app: &TestApp, query: &str) -> (Vec<String>, usize) {
    let (mut seen, mut pages) = (Vec::new(), 0);
    let mut path = format!("/v2/et/service_instances?{query}");
    loop {
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        seen.extend(ids(&r.body["instances"]));
        pages += 1;
        let Some(next) = r.body.get("next").and_then(Value::as_str) else {
            return (seen, pages);
        };
        path = format!("/v2/et/service_instances?{query}&after={next}");
        assert!(pages < 100, "the cursor keeps going");
    }
}

async fn provision_many(app: &TestApp, n: usize, plan: &str) -> Vec<String> {
    let mut made = Vec::new();
    for i in 0..n {
        let id = format!("{plan}-i-{i:02}");
        let r = app.put(&provision_path(&id, false), &provision_body(plan)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        made.push(id);
    }
    made
}

async fn pages_walk_every_instance_once(app: &TestApp) {
    let mut all = provision_many(app, 11, PLAN).await;
    all.extend(provision_many(app, 4, OTHER_PLAN).await);
    let r = app.deprovision(&all.remove(0), false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    all.sort();

    let (seen, pages) = walk(app, "limit=4").await;
    assert_eq!(seen, all, "every live instance once, in id order; none deprovisioned");
    assert_eq!(pages, 4, "14 instances in pages of 4");
    let (on_other, _) = walk(app, &format!("limit=3&plan_id={OTHER_PLAN}")).await;
    assert_eq!(on_other, all.iter().filter(|id| id.starts_with(OTHER_PLAN)).cloned().collect::<Vec<_>>());
    let (of_service, _) = walk(app, &format!("limit=50&service_id={SERVICE}")).await;
    assert_eq!(of_service, all);
    let (of_nothing, pages) = walk(app, "limit=5&service_id=nope").await;
    assert_eq!((of_nothing.len(), pages), (0, 1), "an empty page, and no next");

    let unpaged = app.get(&format!("/v2/et/service_instances?plan_id={OTHER_PLAN}")).await;
    assert_eq!(unpaged.status, StatusCode::OK);
    assert_eq!(ids(&unpaged.body).len(), 4, "filters also narrow the unpaged array");
    let everything = app.get("/v2/et/service_instances").await;
    assert_eq!(ids(&everything.body), all, "the unpaged listing is the original's array");
}

#[tokio::test]
async fn pages_walk_every_instance_once_in_memory() {
    pages_walk_every_instance_once(&with_plan("x-esm-dummy: {mode: sync}").await).await;
}

#[tokio::test]
async fn pages_walk_every_instance_once_in_the_embedded_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config { store: Some(StoreKind::Embedded), data_dir: dir.path().into(), ..test_config() };
    let app = spawn_app_with(config).await;
    app.register_catalog(serde_json::json!({}), "x-esm-dummy: {mode: sync}").await;
    pages_walk_every_instance_once(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn the_state_filter_follows_the_operations() {
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision]}").await;
    for id in ["s-1", "s-2", "s-3"] {
        assert_eq!(app.provision(id, true).await.status, StatusCode::ACCEPTED);
    }
    app.release(OperationKind::Provision, "s-2");
    assert_eq!(app.poll_instance("s-2").await.body["state"], "succeeded");
    let running = app.get("/v2/et/service_instances?state=in%20progress").await;
    assert_eq!(ids(&running.body), ["s-1", "s-3"]);
    let done = app.get("/v2/et/service_instances?limit=10&state=succeeded").await;
    assert_eq!(ids(&done.body["instances"]), ["s-2"]);
    // What the filters match, beside the original's fields.
    let row = &done.body["instances"][0];
    assert_eq!(
        (&row["operation_state"], &row["liveness"], &row["plan_id"]),
        (&json!("succeeded"), &json!("up"), &json!("plan-1"))
    );
    assert!(row["created_at"].as_str().is_some_and(|at| at.starts_with("20")), "{row}");
    for id in ["s-1", "s-3"] {
        app.release(OperationKind::Provision, id);
    }
}

#[tokio::test]
async fn bad_paging_is_a_400_with_an_osb_body() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    for query in ["limit=0", "limit=1001", "limit=x", "limit=-1", "after=nope", "after=c1zz", "state=running"] {
        let r = app.get(&format!("/v2/et/service_instances?{query}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
        r.osb_error();
    }
}
