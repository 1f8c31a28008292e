//! `/v2/et/engines`: declaring engines, placing instances on them by the plan's rule,
//! capacity, cordon and removal, on dummy engines (each its own in-process stand-in).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const SYNC: &str = "x-esm-dummy: {mode: sync}";

/// An app whose `plan-1` places by `placement` (its `metadata.placement`).
async fn placing(placement: Value) -> TestApp {
    with_catalog(json!({"metadata": {"placement": placement}}), SYNC).await
}

async fn declare(app: &TestApp, name: &str, spec: Value) -> Value {
    let r = app.put(&format!("/v2/et/engines/{name}"), &spec).await;
    assert!(matches!(r.status, StatusCode::CREATED | StatusCode::OK), "{} {}", r.status, r.body);
    r.body
}

async fn engine_of(app: &TestApp, id: &str) -> String {
    let r = app.get(&format!("/v2/et/service_instances/{id}")).await;
    r.expect(StatusCode::OK)["engine"].as_str().expect("engine").to_owned()
}

async fn post(app: &TestApp, path: &str) -> Reply {
    app.send(Method::POST, path, None).await
}

#[tokio::test]
async fn the_default_engine_is_listed_and_instances_land_on_it_as_before() {
    let app = with_plan(SYNC).await;
    let list = app.get("/v2/et/engines").await;
    let engines = list.expect(StatusCode::OK)["engines"].as_array().expect("engines").clone();
    assert_eq!(engines.len(), 1);
    assert_eq!((engines[0]["name"].as_str(), engines[0]["state"].as_str()), (Some("default"), Some("active")));
    assert_eq!(engines[0]["backend"], "dummy");
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    assert_eq!(engine_of(&app, "i-1").await, "default");
    assert_eq!(app.get("/v2/et/engines/default").await.expect(StatusCode::OK)["instances"], 1);
}

#[tokio::test]
async fn an_engine_is_declared_once_changed_in_place_and_read_back() {
    let app = spawn_app().await;
    let spec = json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"instances": 3}});
    let created = app.put("/v2/et/engines/e1", &spec).await;
    let body = created.expect(StatusCode::CREATED);
    assert_eq!((body["state"].as_str(), body["labels"]["zone"].as_str()), (Some("active"), Some("a")));
    assert_eq!(body["source"], "api");
    app.put("/v2/et/engines/e1", &spec).await.expect(StatusCode::OK);
    let changed = json!({"backend": "dummy", "labels": {"zone": "b"}});
    assert_eq!(app.put("/v2/et/engines/e1", &changed).await.expect(StatusCode::OK)["labels"]["zone"], "b");
    let names: Vec<String> = app.get("/v2/et/engines").await.body["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names, ["default", "e1"]);
    app.get("/v2/et/engines/nope").await.fails_with(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostile_declarations_are_refused_with_the_reason() {
    let app = spawn_app().await;
    let many: serde_json::Map<String, Value> = (0..33).map(|n| (format!("k{n}"), json!("v"))).collect();
    for (path, body, status) in [
        ("/v2/et/engines/E1", json!({"backend": "dummy"}), StatusCode::BAD_REQUEST),
        (&*format!("/v2/et/engines/{}", "e".repeat(64)), json!({"backend": "dummy"}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/a%0Ab", json!({"backend": "dummy"}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "podman"}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "labels": many}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "labels": {"zone": "a\u{1b}[2J"}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"cpu": 4}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"cpus": 0.01}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"cpus": 1e308}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"cpus": "many"}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"cpus": {"a": [1]}}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"memory": "99t"}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"memory": "1m"}}), StatusCode::BAD_REQUEST),
        ("/v2/et/engines/e1", json!({"backend": "dummy", "capacity": {"memory": -5}}), StatusCode::BAD_REQUEST),
        (
            "/v2/et/engines/e1",
            json!({"backend": "dummy", "endpoint": {"docker_host": "unix:///var/run/docker.sock"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v2/et/engines/e1",
            json!({"backend": "kubernetes", "endpoint": {"kubeconfig": "../../../etc/shadow"}}),
            StatusCode::BAD_REQUEST,
        ),
        // The test esm runs only the dummy backend.
        ("/v2/et/engines/e1", json!({"backend": "docker-compose"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/v2/et/engines/default",
            json!({"backend": "dummy", "endpoint": {}, "capacity": {"instances": 1}}),
            StatusCode::OK,
        ),
    ] {
        let r = app.put(path, &body).await;
        if status == StatusCode::OK {
            r.expect(status);
        } else {
            r.fails_with(status);
        }
    }
    // Nothing refused was stored; the default engine took its capacity.
    let engines = app.get("/v2/et/engines").await.body["engines"].as_array().expect("engines").clone();
    assert_eq!(engines.len(), 1);
    assert_eq!(engines[0]["capacity"]["instances"], 1);
    // Written as compose writes limits, answered in CPUs and bytes.
    let spec = json!({"backend": "dummy", "capacity": {"cpus": 1.5, "memory": "2g"}});
    let created = app.put("/v2/et/engines/e1", &spec).await;
    let created = created.expect(StatusCode::CREATED);
    assert_eq!(
        (created["capacity"]["cpus"].as_f64(), created["capacity"]["memory"].as_u64()),
        (Some(1.5), Some(2 << 30))
    );
    assert_eq!((created["used"]["cpus"].as_f64(), created["used"]["memory"].as_u64()), (Some(0.0), Some(0)));
}

#[tokio::test]
async fn placement_follows_required_labels_and_capacity_and_says_why_nothing_fits() {
    let app = placing(json!({"requires": {"zone": "a"}})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"instances": 2}})).await;
    declare(&app, "e2", json!({"backend": "dummy", "labels": {"zone": "b"}})).await;
    for id in ["i-1", "i-2"] {
        app.provision(id, false).await.expect(StatusCode::CREATED);
        assert_eq!(engine_of(&app, id).await, "e1");
    }
    let full = app.provision("i-3", false).await;
    full.fails_with(StatusCode::UNPROCESSABLE_ENTITY);
    for why in ["e1: full (2 of 2)", "e2: zone=b, the plan requires zone=a", "default: no label zone"] {
        full.mentions(why);
    }
    // Nothing of the refused provision stays.
    app.get("/v2/service_instances/i-3").await.fails_with(StatusCode::NOT_FOUND);
    // A deprovision gives its room back.
    app.deprovision("i-1", false).await.expect(StatusCode::OK);
    app.provision("i-3", false).await.expect(StatusCode::CREATED);
    assert_eq!(engine_of(&app, "i-3").await, "e1");
    assert_eq!(app.get("/v2/et/engines/e1").await.body["instances"], 2);
}

#[tokio::test]
async fn spread_alternates_and_binpack_fills_one_engine_first() {
    let spread = placing(json!({"requires": {"pool": "x"}})).await;
    for name in ["e1", "e2"] {
        declare(&spread, name, json!({"backend": "dummy", "labels": {"pool": "x"}, "capacity": {"instances": 10}}))
            .await;
    }
    let mut engines = Vec::new();
    for n in 0..4 {
        spread.provision(&format!("i-{n}"), false).await.expect(StatusCode::CREATED);
        engines.push(engine_of(&spread, &format!("i-{n}")).await);
    }
    assert_eq!(engines.iter().filter(|e| *e == "e1").count(), 2, "{engines:?}");

    let binpack = placing(json!({"requires": {"pool": "x"}, "strategy": "binpack"})).await;
    for name in ["e1", "e2"] {
        declare(&binpack, name, json!({"backend": "dummy", "labels": {"pool": "x"}, "capacity": {"instances": 2}}))
            .await;
    }
    let mut engines = Vec::new();
    for n in 0..4 {
        binpack.provision(&format!("i-{n}"), false).await.expect(StatusCode::CREATED);
        engines.push(engine_of(&binpack, &format!("i-{n}")).await);
    }
    assert_eq!(engines[0], engines[1], "{engines:?}");
    assert_eq!(engines[2], engines[3], "{engines:?}");
    assert_ne!(engines[0], engines[2], "{engines:?}");
}

#[tokio::test]
async fn a_cordoned_engine_takes_nothing_new_and_uncordoned_takes_again() {
    let app = placing(json!({"requires": {"zone": "a"}})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    assert_eq!(post(&app, "/v2/et/engines/e1/cordon").await.expect(StatusCode::OK)["state"], "cordoned");
    app.provision("i-2", false).await.fails_with(StatusCode::UNPROCESSABLE_ENTITY);
    // What runs there stays, and is still served by its engine.
    app.get("/v2/service_instances/i-1").await.expect(StatusCode::OK);
    assert_eq!(post(&app, "/v2/et/engines/e1/uncordon").await.expect(StatusCode::OK)["state"], "active");
    app.provision("i-2", false).await.expect(StatusCode::CREATED);
    assert_eq!(post(&app, "/v2/et/engines/e1/drain").await.expect(StatusCode::OK)["state"], "draining");
    post(&app, "/v2/et/engines/nope/cordon").await.fails_with(StatusCode::NOT_FOUND);
    // Each change is an event, in order.
    let changes = crate::wait::eventually(std::time::Duration::from_secs(10), "four engine events", || async {
        let page = app.get("/v2/et/events?type=engine.changed&limit=100").await.body;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        (events.len() == 4).then_some(events)
    })
    .await;
    let steps: Vec<(Value, Value)> = changes.iter().map(|e| (e["from"].clone(), e["to"].clone())).collect();
    assert_eq!(
        steps,
        [
            (Value::Null, json!("active")),
            (json!("active"), json!("cordoned")),
            (json!("cordoned"), json!("active")),
            (json!("active"), json!("draining"))
        ]
    );
    assert!(changes.iter().all(|e| e["engine"] == "e1"), "{changes:?}");
}

#[tokio::test]
async fn an_engine_is_removed_only_cordoned_and_empty() {
    let app = placing(json!({"requires": {"zone": "a"}})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    app.delete("/v2/et/engines/e1").await.fails_with(StatusCode::UNPROCESSABLE_ENTITY);
    post(&app, "/v2/et/engines/e1/cordon").await.expect(StatusCode::OK);
    let holding = app.delete("/v2/et/engines/e1").await;
    holding.fails_with(StatusCode::UNPROCESSABLE_ENTITY);
    holding.mentions("still holds");
    app.deprovision("i-1", false).await.expect(StatusCode::OK);
    app.delete("/v2/et/engines/e1").await.expect(StatusCode::OK);
    app.get("/v2/et/engines/e1").await.fails_with(StatusCode::NOT_FOUND);
    app.delete("/v2/et/engines/default").await.fails_with(StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_later_operation_of_an_instance_goes_to_its_engine() {
    let app = placing(json!({"requires": {"zone": "a"}})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    app.bind("i-1", "b-1", None, false).await.expect(StatusCode::CREATED);
    let update = json!({"service_id": SERVICE, "parameters": {"a": 1}});
    app.patch(&provision_path("i-1", false), &update).await.expect(StatusCode::OK);
    // The default engine's dummy never saw the instance: the ElasTest view reads e1's.
    let view = app.get("/v2/et/service_instances/i-1").await;
    assert_eq!(view.expect(StatusCode::OK)["engine"], "e1");
    let listed = app.get("/v2/et/service_instances?engine=e1&limit=10").await;
    assert_eq!(listed.expect(StatusCode::OK)["instances"].as_array().map(Vec::len), Some(1));
    let none = app.get("/v2/et/service_instances?engine=default&limit=10").await;
    assert_eq!(none.expect(StatusCode::OK)["instances"].as_array().map(Vec::len), Some(0));
    app.unbind("i-1", "b-1", false).await.expect(StatusCode::OK);
    app.deprovision("i-1", false).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_placement_rule_is_refused_at_registration() {
    let app = spawn_app().await;
    let plan = json!({"id": "p", "name": "p", "description": "d",
                      "metadata": {"placement": {"strategy": "random"}}});
    let service = json!({"id": "s", "name": "s", "description": "d", "bindable": true, "plans": [plan]});
    let r = app.put("/v2/et/catalog", &service).await;
    r.fails_with(StatusCode::BAD_REQUEST);
    r.mentions("metadata.placement");
}

#[tokio::test]
async fn metrics_and_health_show_each_engine_and_forget_a_removed_one() {
    let app = placing(json!({"requires": {"zone": "a"}})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"instances": 3}})).await;
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    let scrape = || async {
        let response = app.client.get(format!("{}/metrics", app.ops)).send().await.expect("sent");
        response.text().await.expect("text")
    };
    let text = scrape().await;
    for line in [
        "esm_engine_instances{engine=\"e1\"} 1",
        "esm_engine_capacity{engine=\"e1\"} 3",
        "esm_engine_up{engine=\"e1\"} 1",
        "esm_engine_state{engine=\"e1\",state=\"active\"} 1",
        "esm_engine_state{engine=\"e1\",state=\"cordoned\"} 0",
        "esm_engine_up{engine=\"default\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let health = reply(app.client.get(format!("{}/health", app.ops)).send().await.expect("sent")).await;
    let engines = health.expect(StatusCode::OK)["engines"].as_array().expect("engines").clone();
    let e1 = engines.iter().find(|e| e["name"] == "e1").expect("e1 listed");
    assert_eq!(
        (e1["state"].as_str(), e1["instances"].as_u64(), e1["capacity"].as_u64()),
        (Some("active"), Some(1), Some(3))
    );

    app.deprovision("i-1", false).await.expect(StatusCode::OK);
    post(&app, "/v2/et/engines/e1/cordon").await.expect(StatusCode::OK);
    app.delete("/v2/et/engines/e1").await.expect(StatusCode::OK);
    // The rows are read again at most every 5 s, as esm_instances is.
    crate::wait::eventually(std::time::Duration::from_secs(10), "e1's series gone", || async {
        (!scrape().await.contains("engine=\"e1\"")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_engines_file_declares_engines_at_start_and_a_bad_one_stops_the_start() {
    let dir = tempfile::tempdir().expect("a directory");
    let file = dir.path().join("engines.yaml");
    std::fs::write(&file, "engines:\n  e1:\n    backend: dummy\n    labels: {zone: a}\n    capacity: {instances: 5}\n")
        .expect("written");
    let app = spawn_app_with(esm::config::Config { engines_file: Some(file.clone()), ..test_config() }).await;
    let e1 = app.get("/v2/et/engines/e1").await;
    let body = e1.expect(StatusCode::OK);
    assert_eq!((body["source"].as_str(), body["capacity"]["instances"].as_u64()), (Some("file"), Some(5)));

    for bad in [
        "engines:\n  E1: {backend: dummy}\n",
        "engines:\n  e1: {backend: dummy, endpoint: {kubeconfig: ../x}}\n",
        "engines: [1, 2]\n",
        "surprise: 1\n",
    ] {
        std::fs::write(&file, bad).expect("written");
        let config = esm::config::Config { engines_file: Some(file.clone()), ..test_config() };
        let refused = esm::app::Server::bind(config).await.err().map(|e| e.to_string());
        assert!(refused.as_deref().is_some_and(|e| e.contains("ESM_ENGINES_FILE")), "{bad:?}: {refused:?}");
    }
}

#[tokio::test]
async fn draining_an_engine_moves_its_warm_pool_members_to_another() {
    let app = placing(json!({"requires": {"pool": "x"}})).await;
    for name in ["e1", "e2"] {
        declare(&app, name, json!({"backend": "dummy", "labels": {"pool": "x"}})).await;
    }
    app.put("/v2/et/pools/plan-1", &json!({"size": 2})).await.expect(StatusCode::OK);
    let held = |name: &'static str| {
        let app = &app;
        async move { app.get(&format!("/v2/et/engines/{name}")).await.body["instances"].as_u64().unwrap_or(0) }
    };
    let limit = std::time::Duration::from_secs(30);
    crate::wait::eventually(limit, "two ready members", || async {
        let pool = app.get("/v2/et/pools/plan-1").await.body;
        (pool["ready"] == 2).then_some(())
    })
    .await;
    assert_eq!(held("e1").await + held("e2").await, 2, "spread over the plan's engines");
    post(&app, "/v2/et/engines/e1/drain").await.expect(StatusCode::OK);
    crate::wait::eventually(limit, "both members on e2, ready", || async {
        let pool = app.get("/v2/et/pools/plan-1").await.body;
        (held("e1").await == 0 && held("e2").await == 2 && pool["ready"] == 2).then_some(())
    })
    .await;
    let replaced = app.get("/v2/et/events?type=pool.member_replaced").await.body;
    let reasons: Vec<&str> =
        replaced["events"].as_array().expect("events").iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.iter().all(|r| *r == "its engine is being drained") && !reasons.is_empty(), "{reasons:?}");
}

#[tokio::test]
async fn a_pool_targeting_an_engine_keeps_its_members_there_and_follows_a_new_target() {
    let app = placing(json!({"requires": {"pool": "x"}})).await;
    for name in ["e1", "e2"] {
        declare(&app, name, json!({"backend": "dummy", "labels": {"pool": "x"}})).await;
    }
    let held = |name: &'static str| {
        let app = &app;
        async move { app.get(&format!("/v2/et/engines/{name}")).await.body["instances"].as_u64().unwrap_or(0) }
    };
    let limit = std::time::Duration::from_secs(30);
    let set = app.put("/v2/et/pools/plan-1", &json!({"size": 3, "engine": "e2"})).await;
    assert_eq!(set.expect(StatusCode::OK)["engine"], "e2");
    crate::wait::eventually(limit, "three ready members on e2", || async {
        let pool = app.get("/v2/et/pools/plan-1").await.body;
        (pool["ready"] == 3 && held("e2").await == 3).then_some(())
    })
    .await;
    assert_eq!(held("e1").await, 0);
    app.put("/v2/et/pools/plan-1", &json!({"size": 3, "engine": "e1"})).await.expect(StatusCode::OK);
    crate::wait::eventually(limit, "the members moved to e1", || async {
        let pool = app.get("/v2/et/pools/plan-1").await.body;
        (pool["ready"] == 3 && held("e1").await == 3 && held("e2").await == 0).then_some(())
    })
    .await;
    for (body, status) in [
        (json!({"size": 1, "engine": "nope"}), StatusCode::BAD_REQUEST),
        (json!({"size": 1, "engine": "E1"}), StatusCode::BAD_REQUEST),
    ] {
        app.put("/v2/et/pools/plan-1", &body).await.fails_with(status);
    }
}

#[tokio::test]
async fn draining_an_engine_moves_relocatable_instances_and_their_bindings_follow() {
    let app = placing(json!({"requires": {"zone": "a"}, "relocatable": true})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    app.bind("i-1", "b-1", None, false).await.expect(StatusCode::CREATED);
    declare(&app, "e2", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    assert_eq!(engine_of(&app, "i-1").await, "e1");

    let draining = post(&app, "/v2/et/engines/e1/drain").await;
    let draining = draining.expect(StatusCode::OK);
    assert_eq!(draining["state"], "draining");
    assert!(draining["evacuation"].is_object(), "a draining engine shows its evacuation: {draining}");
    let limit = std::time::Duration::from_secs(30);
    crate::wait::eventually(limit, "i-1 moved to e2 and e1 emptied", || async {
        let e1 = app.get("/v2/et/engines/e1").await.body;
        (e1["instances"] == 0 && e1["evacuation"]["to_move"] == 0).then_some(())
    })
    .await;
    assert_eq!(engine_of(&app, "i-1").await, "e2");
    let binding = app.get("/v2/service_instances/i-1/service_bindings/b-1").await;
    let binding = binding.expect(StatusCode::OK);
    let deployed = binding["credentials"]["instance_id"].as_str().expect("the dummy names the deployment");
    assert!(deployed.starts_with("moved-"), "the binding has the new deployment's credentials: {binding}");
    let moved = app.get("/v2/et/events?type=instance.relocated").await;
    let moved = moved.expect(StatusCode::OK)["events"].as_array().expect("events").clone();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!((moved[0]["instance_id"].as_str(), moved[0]["from"].as_str()), (Some("i-1"), Some("e1")));
    // The platform never sees the move as its own operation: the instance is there.
    app.get("/v2/service_instances/i-1").await.expect(StatusCode::OK);
    app.send(Method::DELETE, "/v2/et/engines/e1", None).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn a_pool_fills_its_engine_to_full_and_refills_what_is_given_back() {
    let app = placing(json!({"requires": {"pool": "x"}})).await;
    declare(&app, "e1", json!({"backend": "dummy", "labels": {"pool": "x"}, "capacity": {"instances": 3}})).await;
    declare(&app, "e2", json!({"backend": "dummy", "labels": {"pool": "x"}})).await;
    for (body, status) in [
        (json!({"size": 10, "fill": true}), StatusCode::BAD_REQUEST),
        (json!({"size": 10, "engine": "e2", "fill": true}), StatusCode::UNPROCESSABLE_ENTITY),
        (json!({"size": 10, "engine": "e1", "fill": "yes"}), StatusCode::BAD_REQUEST),
    ] {
        app.put("/v2/et/pools/plan-1", &body).await.fails_with(status);
    }
    let held = |name: &'static str| {
        let app = &app;
        async move { app.get(&format!("/v2/et/engines/{name}")).await.body["instances"].as_u64().unwrap_or(0) }
    };
    let ready = || async { app.get("/v2/et/pools/plan-1").await.body["ready"].as_u64().unwrap_or(0) };
    let limit = std::time::Duration::from_secs(30);
    let set = app.put("/v2/et/pools/plan-1", &json!({"size": 10, "engine": "e1", "fill": true})).await;
    assert_eq!(set.expect(StatusCode::OK)["fill"], true);
    crate::wait::eventually(limit, "e1 filled with three members", || async {
        (ready().await == 3 && held("e1").await == 3).then_some(())
    })
    .await;
    // A provision takes a member: e1 stays full, so the pool holds two.
    app.provision("i-1", false).await.expect(StatusCode::CREATED);
    assert_eq!(engine_of(&app, "i-1").await, "e1");
    crate::wait::eventually(limit, "the member handed out and not replaced", || async {
        (ready().await == 2 && held("e1").await == 3).then_some(())
    })
    .await;
    assert_eq!(held("e2").await, 0);
    // Room given back is filled again.
    app.deprovision("i-1", false).await.expect(StatusCode::OK);
    crate::wait::eventually(limit, "e1 filled again", || async {
        (ready().await == 3 && held("e1").await == 3).then_some(())
    })
    .await;
    assert_eq!(held("e2").await, 0, "a pool that fills one engine places nothing elsewhere");
}
