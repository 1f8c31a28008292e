//! Durability across processes: kill -9 mid-flight, SIGTERM, two replicas on one
//! MongoDB, a MongoDB outage. These start the real `esm` binary.
//!
//! The MongoDB tests need `ESM_TEST_MONGO_URI` (a server CI starts) and, for the outage
//! test, the `secantus` Python module to run a server of their own. When CI sets the
//! variable and a server is missing, they fail; without it they do not run.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::support::{self, Client, Esm, MongoServer, StoreSetup, eventually, temp_dir};

/// Two replicas on one fresh database of this run's MongoDB, a client of each, and a
/// dummy plan running `script` registered through the first.
async fn two_replicas_on_mongodb(script: &str) -> ([Esm; 2], Client, Client) {
    let store = StoreSetup::fresh_mongo();
    let (a, b) = (Esm::start(&store).await, Esm::start(&store).await);
    let (ca, cb) = (Client::new(&a.api), Client::new(&b.api));
    ca.register(script).await;
    ([a, b], ca, cb)
}

/// Provisions many instances at once, kills esm with SIGKILL while some are still in
/// flight, restarts it: every provision that was answered 200/201/202 is there and
/// finishes; none is left "in progress".
async fn no_acknowledged_provision_is_lost(store: StoreSetup) {
    let (esm, client) = Esm::start_registered(&store, "x-esm-dummy: {mode: either, delay_ms: 400}").await;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, answered) = (client.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("crash-{i}");
            // Half asynchronous (answered at once, then run), half synchronous (answered
            // after the backend ran): the kill catches both kinds mid-flight.
            let (status, _) = client.provision(&id, i % 2 == 0).await;
            if (200..=202).contains(&status) {
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            (id, status)
        }));
    }
    // Killed once a good part of the burst is in the store and some of it answered, the
    // rest still arriving. (Ten stored is not enough: on a slow server the first answers
    // can come after the tenth insert.)
    eventually(Duration::from_secs(20), "ten provisions in the store, one answered", || async {
        let (_, listed) = client.send(Method::GET, "/v2/et/service_instances", None).await;
        let stored = listed.as_array().map_or(0, Vec::len);
        (stored >= 10 && answered.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    esm.kill_hard();
    let mut acknowledged = HashSet::new();
    let mut all = Vec::new();
    for task in tasks {
        let (id, status) = task.await.expect("joined");
        assert!(status == 0 || status < 500, "{id}: {status}");
        if (200..=202).contains(&status) {
            acknowledged.insert(id.clone());
        }
        all.push(id);
    }
    assert!(!acknowledged.is_empty(), "some provisions were acknowledged before the kill");

    let esm = Esm::start(&store).await;
    let client = Client::new(&esm.api);
    // Generous: after the restart every orphan is resumed at once, and SecantusDB, one
    // Python process, takes its time with the burst.
    let settling = Duration::from_secs(60);
    for id in &all {
        let (status, body) = client.settle(id, settling).await;
        if acknowledged.contains(id) {
            assert_eq!(status, 200, "{id} was acknowledged, so it must be known: {body}");
            assert_eq!(body["state"], "succeeded", "{id}: {body}");
        } else {
            // Never answered: either never stored, or stored and finished since.
            assert!(status == 404 || body["state"] != "in progress", "{id}: {status} {body}");
        }
    }
    // The event log went through the kill too: each stored provision was announced
    // once started and once ended, none twice, in increasing ids.
    eventually(settling, "each provision's two events in the log", || async {
        let (_, page) = client.send(Method::GET, "/v2/et/events?after=0&limit=1000", None).await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let ids: Vec<u64> = events.iter().filter_map(|e| e["id"].as_u64()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
        let count =
            |id: &str, kind: &str| events.iter().filter(|e| e["instance_id"] == id && e["type"] == kind).count();
        let settled = all.iter().all(|id| {
            let (started, ended) = (count(id, "provision.started"), count(id, "provision.succeeded"));
            assert!(started <= 1 && ended <= 1, "{id}: announced twice ({started}, {ended})");
            let expected = usize::from(acknowledged.contains(id));
            started == ended && started >= expected
        });
        settled.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_store_loses_no_acknowledged_write_on_kill_9() {
    let dir = temp_dir("esm-crash");
    no_acknowledged_provision_is_lost(StoreSetup::Embedded(dir.path().to_path_buf())).await;
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn mongodb_store_loses_no_acknowledged_write_on_kill_9() {
    no_acknowledged_provision_is_lost(StoreSetup::fresh_mongo()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_requests_and_closes_the_store_cleanly() {
    let dir = temp_dir("esm-term");
    let store = StoreSetup::Embedded(dir.path().to_path_buf());
    let (esm, client) = Esm::start_registered(&store, "x-esm-dummy: {mode: sync, delay_ms: 1000}").await;
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.provision("graceful", false).await })
    };
    // SIGTERM while the (one second long) provision runs.
    eventually(Duration::from_secs(10), "the provision to be running", || async {
        (client.operation_state("graceful").await.as_deref() == Some("in progress")).then_some(())
    })
    .await;
    esm.terminate();
    let (status, body) = in_flight.await.expect("joined");
    assert_eq!(status, 201, "the in-flight provision completes: {body}");
    assert!(esm.wait().success(), "esm exits 0 on SIGTERM");

    // The store reopens cleanly (the lock was released) with the instance in it.
    let esm = Esm::start(&store).await;
    let client = Client::new(&esm.api);
    let (status, body) = client.send(Method::GET, "/v2/service_instances/graceful", None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_esm_on_the_same_data_directory_fails_fast() {
    let dir = temp_dir("esm-lock");
    let store = StoreSetup::Embedded(dir.path().to_path_buf());
    let _first = Esm::start(&store).await;
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_esm"))
        .env_clear()
        .env("ESM_STORE", "embedded")
        .env("ESM_DATA_DIR", dir.path())
        .env("ESM_IP", "127.0.0.1")
        .env("ESM_CHECK_IP", "127.0.0.1")
        .env("ESM_PORT", "0")
        .env("ESM_CHECK_PORT", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("second esm spawns");
    let status = eventually(Duration::from_secs(10), "the second esm to exit on a locked directory", || {
        let exited = second.try_wait().expect("wait");
        async move { exited }
    })
    .await;
    assert!(!status.success());
    let output = second.wait_with_output().expect("output");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("in use by another process"), "{text}");
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_mongodb_never_provision_an_instance_twice() {
    let (_replicas, ca, cb) = two_replicas_on_mongodb("x-esm-dummy: {mode: sync, delay_ms: 50}").await;
    let mut tasks = Vec::new();
    for i in 0..15 {
        for client in [ca.clone(), cb.clone()] {
            tasks.push(tokio::spawn(async move {
                let id = format!("shared-{i}");
                let (status, _) = client.provision(&id, false).await;
                (id, status)
            }));
        }
    }
    let mut created = std::collections::HashMap::<String, usize>::new();
    for task in tasks {
        let (id, status) = task.await.expect("joined");
        // The loser sees the winner's provision done (200) or still running, which a
        // request without accepts_incomplete is told as 422 ConcurrencyError, never 202.
        assert!(matches!(status, 200 | 201 | 422), "{id}: {status}");
        if status == 201 {
            *created.entry(id).or_default() += 1;
        }
    }
    // Never created twice. Usually one request is answered 201; when the replica that
    // ran the provision lost its (2 s) lease to the other under load, that one finishes
    // it and the requests were answered 422: the instance is there all the same.
    for i in 0..15 {
        let id = format!("shared-{i}");
        assert!(created.get(&id).copied().unwrap_or(0) <= 1, "{id} created twice");
        for client in [&ca, &cb] {
            eventually(Duration::from_secs(30), &format!("{id} provisioned"), || async {
                (client.send(Method::GET, &format!("/v2/service_instances/{id}"), None).await.0 == 200).then_some(())
            })
            .await;
        }
    }
    assert!(!created.is_empty(), "some were answered 201 at once: {created:?}");
    // A binding made through one replica is listed by the other.
    let bind = json!({"service_id": "svc", "plan_id": "plan"});
    let (status, body) = ca.send(Method::PUT, "/v2/service_instances/shared-0/service_bindings/b-1", Some(&bind)).await;
    assert_eq!(status, 201, "{body}");
    let (status, listed) = cb.send(Method::GET, "/v2/et/service_instances/shared-0/bindings", None).await;
    assert_eq!((status, listed["bindings"][0]["binding_id"].as_str()), (200, Some("b-1")), "{listed}");
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_replicas_operation_is_finished_by_another() {
    let ([a, _b], ca, cb) = two_replicas_on_mongodb("x-esm-dummy: {mode: async, delay_ms: 2000}").await;
    let (status, body) = ca.provision("orphan", true).await;
    assert_eq!(status, 202, "{body}");
    // Killed while its operation runs, as b sees it.
    eventually(Duration::from_secs(10), "the operation to be running", || async {
        (cb.operation_state("orphan").await.as_deref() == Some("in progress")).then_some(())
    })
    .await;
    a.kill_hard();
    // Replica b takes the operation over once a's 2 s lease lapses, and finishes it.
    let (status, body) = cb.settle("orphan", Duration::from_secs(30)).await;
    assert_eq!((status, body["state"].clone()), (200, json!("succeeded")), "{body}");
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn a_mongodb_outage_is_503_and_esm_recovers_without_a_restart() {
    let dir = temp_dir("esm-mongo-outage");
    let mut server = MongoServer::start(dir.path()).await;
    let store = StoreSetup::Mongo { uri: server.uri(), db: "esm".into() };
    let (esm, client) = Esm::start_registered(&store, "x-esm-dummy: {mode: sync}").await;
    assert_eq!(client.provision("before", false).await.0, 201);
    let bind = json!({"service_id": "svc", "plan_id": "plan"});
    let (status, body) =
        client.send(Method::PUT, "/v2/service_instances/before/service_bindings/b-1", Some(&bind)).await;
    assert_eq!(status, 201, "{body}");
    let bindings = "/v2/et/service_instances/before/bindings";

    server.kill();
    // The catalog comes from the registry's copy while the watcher vouches for it (up
    // to a second after its last good read), then from the store: 503.
    let body = eventually(Duration::from_secs(10), "the catalog to be refused once MongoDB is gone", || async {
        let (status, body) = client.send(Method::GET, "/v2/catalog", None).await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["error"], "ServiceUnavailable");
    let (status, body) = client.provision("during", false).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = client.send(Method::GET, bindings, None).await;
    assert_eq!((status, body["error"].as_str()), (503, Some("ServiceUnavailable")), "{body}");
    let health = support::get(format!("{}/health", esm.ops)).await.expect("health answers");
    assert_eq!(health.status().as_u16(), 503);
    let health: serde_json::Value = health.json().await.expect("health JSON");
    assert_eq!(health["status"], "failure");
    assert!(
        health["results"]
            .as_array()
            .is_some_and(|r| r.iter().any(|c| c["checker"] == "store:mongodb" && c["passed"] == false)),
        "{health}"
    );

    server.restart().await;
    eventually(Duration::from_secs(30), "esm to recover after MongoDB came back", || async {
        (client.send(Method::GET, "/v2/catalog", None).await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = client.send(Method::GET, "/v2/service_instances/before", None).await;
    assert_eq!(status, 200, "the write acknowledged before the outage is there: {body}");
    let (status, _) = client.send(Method::GET, "/v2/service_instances/during", None).await;
    assert_eq!(status, 404, "the refused provision left nothing");
    let (status, body) = client.send(Method::GET, bindings, None).await;
    assert_eq!((status, body["bindings"][0]["binding_id"].as_str()), (200, Some("b-1")), "{body}");
    let health = support::get(format!("{}/health", esm.ops)).await.expect("health answers");
    assert_eq!(health.status().as_u16(), 200);
}

/// With MongoDB unreachable, the first store call waits for the driver's server
/// selection (3 s); after that esm knows the store is down and answers every /v2 call
/// 503 at once, with `Retry-After`, until a background ping finds it back.
#[tokio::test(flavor = "multi_thread")]
async fn with_mongodb_down_v2_calls_are_answered_503_at_once_with_retry_after() {
    let _machine = support::machine::timed().await;
    // Nothing listens on this port; the server selection timeout is esm's (3 s).
    let uri = format!("mongodb://127.0.0.1:{}/?directConnection=true", support::free_port());
    let store = StoreSetup::Mongo { uri, db: "esm".into() };
    let esm = Esm::start_unready(&store, &[("ESM_RETRY_AFTER", "7")]).await;
    let http = support::http();
    let catalog = || http.get(format!("{}/v2/catalog", esm.api)).header("X-Broker-API-Version", "2.17").send();
    // The first answer may take the selection timeout (or come at once, if start-up's
    // own store calls have found the store down already).
    let first = catalog().await.expect("answers");
    assert_eq!(first.status().as_u16(), 503);
    assert_eq!(first.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    let body: serde_json::Value = first.json().await.expect("an OSB error body");
    assert_eq!(body["error"], "ServiceUnavailable", "{body}");
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let next = catalog().await.expect("answers");
        let took = started.elapsed();
        assert_eq!(next.status().as_u16(), 503);
        assert_eq!(next.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
        // Half the selection timeout: far above a local 503, far below a driver wait.
        assert!(took < Duration::from_millis(1500), "a 503 took {took:?} with the store known to be down");
    }
    let client = Client::new(&esm.api);
    let (status, _) = client.provision("during", false).await;
    assert_eq!(status, 503, "writes are refused at once too");
}

#[tokio::test(flavor = "multi_thread")]
async fn esm_health_exits_zero_only_for_a_healthy_esm() {
    let dir = temp_dir("esm-health");
    let esm = Esm::start(&StoreSetup::Embedded(dir.path().to_path_buf())).await;
    let port = esm.ops.rsplit(':').next().expect("a port").to_owned();
    let run = |port: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_esm"))
            .env_clear()
            .args(["--check-port", port, "health"])
            .output()
            .expect("esm health runs")
    };
    assert!(run(&port).status.success());
    drop(esm);
    let down = run(&port);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

/// The sum of the `esm_instances` samples of the first scrape of `esm`.
async fn instances_counted(esm: &Esm) -> u64 {
    let text = support::get(format!("{}/metrics", esm.ops)).await.expect("answers").text().await.expect("text");
    text.lines()
        .filter(|l| l.starts_with("esm_instances{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// The first scrape after a restart counts every live instance (an operator once saw 3
// of 8 there), after a SIGTERM and after a kill -9.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_scrape_after_a_restart_counts_every_live_instance() {
    let dir = temp_dir("esm-census");
    let store = StoreSetup::Embedded(dir.path().to_path_buf());
    let (esm, client) = Esm::start_registered(&store, "x-esm-dummy: {mode: sync}").await;
    for n in 0..8 {
        assert_eq!(client.provision(&format!("i-{n}"), false).await.0, 201);
    }
    let bind = json!({"service_id": "svc", "plan_id": "plan"});
    assert_eq!(client.send(Method::PUT, "/v2/service_instances/i-0/service_bindings/b-0", Some(&bind)).await.0, 201);
    let gone = client.send(Method::DELETE, "/v2/service_instances/i-7?service_id=svc&plan_id=plan", None).await;
    assert_eq!(gone.0, 200, "{}", gone.1);
    assert_eq!(instances_counted(&esm).await, 7, "before the restart");
    esm.terminate();
    assert!(esm.wait().success());

    let esm = Esm::start(&store).await;
    assert_eq!(instances_counted(&esm).await, 7, "the first scrape after a SIGTERM");
    esm.kill_hard();
    let esm = Esm::start(&store).await;
    assert_eq!(instances_counted(&esm).await, 7, "the first scrape after a kill -9");
}
