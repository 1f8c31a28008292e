//! Starting and stopping under load and faults, with the real `esm` binary: a stop is
//! bounded by `ESM_SHUTDOWN_TIMEOUT` even with the store frozen, a restart with
//! hundreds of operations in progress refuses connections (and says "starting") until
//! its takeover scan is done instead of making requests wait for it, and a replica
//! stopped gracefully hands its operations to another at once.
//!
//! The MongoDB tests need `ESM_TEST_MONGO_URI` (and, for the frozen store, the
//! `secantus` Python module to run a server of their own); without it they are ignored.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::wait::within;
use crate::support::{self, Client, Esm, MongoServer, StoreSetup, eventually, free_port, http, temp_dir};

/// Seconds the stop may take in these tests.
const SHUTDOWN_TIMEOUT: u64 = 4;

/// How much longer than `ESM_SHUTDOWN_TIMEOUT` the process may take to be gone: the
/// runtime's exit (1 s at most for blocking work) and the test's polling.
const EXIT_MARGIN: Duration = Duration::from_secs(3);

/// The `status` of `/health` on operator port `ops`, with its HTTP status; `None` while
/// nothing answers there.
async fn health(ops: &str) -> Option<(u16, String)> {
    let r = http().get(format!("{ops}/health")).timeout(Duration::from_secs(10)).send().await.ok()?;
    let status = r.status().as_u16();
    let body: Value = r.json().await.ok()?;
    Some((status, body["status"].as_str().unwrap_or_default().to_owned()))
}

/// Lines of the log at `path` that contain `text`.
fn lines_with(path: &Path, text: &str) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| l.contains(text)).count()
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_the_store_frozen_and_events_queued_exits_within_the_shutdown_timeout() {
    let _machine = support::machine::timed().await;
    let (data, logs) = (temp_dir("esm-frozen-db"), temp_dir("esm-frozen-log"));
    let mut mongo = MongoServer::start(data.path()).await;
    let store = StoreSetup::Mongo { uri: mongo.uri(), db: "esm".into() };
    let log = logs.path().join("esm.log");
    let timeout = SHUTDOWN_TIMEOUT.to_string();
    let env = [("ESM_SHUTDOWN_TIMEOUT", timeout.as_str()), ("ESM_OPERATION_LEASE", "30")];
    let mut esm = Esm::start_logging(&store, &env, Some(&log)).await;
    let client = Client::new(&esm.api);
    client.register("x-esm-dummy: {mode: async, delay_ms: 500}").await;
    // A burst of operations: their ends are being recorded and their events written when
    // the store freezes.
    for i in 0..40 {
        let client = client.clone();
        tokio::spawn(async move { client.provision(&format!("frozen-{i}"), true).await });
    }
    eventually(Duration::from_secs(30), "a provision of the burst to finish", || async {
        (client.operation_state("frozen-0").await.as_deref() == Some("succeeded")).then_some(())
    })
    .await;
    mongo.freeze();
    // Requests that hang on the frozen store: the stop cannot wait for them either.
    for i in 0..5 {
        let client = client.clone();
        tokio::spawn(async move { client.provision(&format!("hung-{i}"), true).await });
    }
    eventually(Duration::from_secs(10), "esm to notice the frozen store", || async {
        (lines_with(&log, "WARN") > 0 || !matches!(health(&esm.ops).await, Some((200, _)))).then_some(())
    })
    .await;

    let stopped = Instant::now();
    esm.terminate();
    let limit = Duration::from_secs(SHUTDOWN_TIMEOUT) + EXIT_MARGIN;
    let exited = within(limit + Duration::from_secs(30), || {
        let gone = !esm.alive();
        async move { gone.then_some(()) }
    })
    .await;
    let took = stopped.elapsed();
    let left: Vec<String> = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("time") && l.contains("WARN"))
        .map(str::to_owned)
        .collect();
    println!("esm exited {took:?} after SIGTERM with the store frozen; what it left:\n{}", left.join("\n"));
    assert!(exited.is_some(), "esm still runs {took:?} after SIGTERM with the store frozen");
    assert!(took < limit, "esm took {took:?} to stop; ESM_SHUTDOWN_TIMEOUT is {SHUTDOWN_TIMEOUT} s");
    assert!(!left.is_empty(), "what the stop could not finish is logged");
    mongo.kill();
}

/// Provisions `count` instances on `client` asynchronously, `parallel` at a time; each
/// must be accepted.
async fn provision_many(client: &Client, prefix: &str, count: usize, parallel: usize) {
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    for chunk in ids.chunks(parallel) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|id| {
                let (client, id) = (client.clone(), id.clone());
                tokio::spawn(async move { (client.provision(&id, true).await, id) })
            })
            .collect();
        for task in tasks {
            let ((status, body), id) = task.await.expect("joined");
            assert_eq!(status, 202, "{id}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_hundreds_of_operations_in_progress_refuses_connections_until_its_scan_is_done() {
    let _machine = support::machine::heavy().await;
    const OPERATIONS: usize = 300;
    let (dir, logs) = (temp_dir("esm-restart"), temp_dir("esm-restart-log"));
    let store = StoreSetup::Embedded(dir.path().to_path_buf());
    let esm = Esm::start(&store).await;
    let client = Client::new(&esm.api);
    // Operations that stay in progress for as long as the test runs.
    client.register("x-esm-dummy: {mode: async, delay_ms: 600000}").await;
    provision_many(&client, "held", OPERATIONS, 16).await;
    esm.kill_hard();

    let (api, ops) = (free_port().to_string(), free_port().to_string());
    let log = logs.path().join("esm.log");
    let out = File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let args = ["--port", api.as_str(), "--check-port", ops.as_str()];
    let esm = Esm::spawn_with_output(&store, &args, &[], (Stdio::from(out), Stdio::from(err)));
    let catalog = format!("{}/v2/catalog", esm.api);
    let (mut starting, mut refused, mut slowest) = (0, 0, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(120);
    // A look every 10 ms: a connection refused costs nothing.
    let mut looks = tokio::time::interval(Duration::from_millis(10));
    loop {
        looks.tick().await;
        assert!(Instant::now() < deadline, "esm did not serve within 120 s of its restart");
        let before = health(&esm.ops).await;
        let sent = Instant::now();
        let answer = http()
            .get(&catalog)
            .header("X-Broker-API-Version", support::VERSION)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        slowest = slowest.max(sent.elapsed());
        let after = health(&esm.ops).await;
        let starting_throughout = [&before, &after].iter().all(|h| matches!(h, Some((503, s)) if s == "starting"));
        if starting_throughout {
            // Still starting after the attempt ended: the API port was not listening.
            starting += 1;
            assert!(answer.as_ref().is_err_and(reqwest::Error::is_connect), "while starting: {answer:?}");
        }
        match answer {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => panic!("the API answered {} before it served", r.status()),
            Err(e) if e.is_connect() => refused += 1,
            Err(e) => panic!("the API neither refused nor answered: {e}"),
        }
    }
    println!("restart: {starting} looks while starting, {refused} connections refused, slowest attempt {slowest:?}");
    assert!(starting > 0, "/health said starting while the scan of {OPERATIONS} operations ran");
    assert!(slowest < Duration::from_secs(2), "no request waits for the scan; the slowest took {slowest:?}");
    assert_eq!(health(&esm.ops).await, Some((200, "success".to_owned())), "ready: healthy");
    assert_eq!(lines_with(&log, &format!("resumed={OPERATIONS}")), 1, "every operation was taken over at start");
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_stopped_gracefully_hands_its_operations_to_another_well_within_the_lease() {
    let _machine = support::machine::timed().await;
    const OPERATIONS: usize = 20;
    const LEASE: Duration = Duration::from_secs(30);
    let store = StoreSetup::fresh_mongo();
    let logs = temp_dir("esm-handback-log");
    let log = logs.path().join("other.log");
    let lease = LEASE.as_secs().to_string();
    let env = [("ESM_OPERATION_LEASE", lease.as_str())];
    let mut stopping = Esm::start_with(&store, &env).await;
    let other = Esm::start_logging(&store, &env, Some(&log)).await;
    let client = Client::new(&stopping.api);
    // Operations far longer than the test: the stopping replica is running each one.
    client.register("x-esm-dummy: {mode: async, delay_ms: 600000}").await;
    provision_many(&client, "handed", OPERATIONS, OPERATIONS).await;
    assert_eq!(lines_with(&log, "taking over operation"), 0, "the other replica leaves them to their owner");

    let stopped = Instant::now();
    stopping.terminate();
    eventually(Duration::from_secs(30), "the stopping replica to exit", || {
        let gone = !stopping.alive();
        async move { gone.then_some(()) }
    })
    .await;
    eventually(LEASE, "the other replica to take every operation over", || async {
        (lines_with(&log, "taking over operation") >= OPERATIONS).then_some(())
    })
    .await;
    let took = stopped.elapsed();
    println!("{OPERATIONS} operations handed over {took:?} after SIGTERM (lease {LEASE:?})");
    assert!(took < LEASE / 2, "taken over after {took:?}: the lease ({LEASE:?}) was waited for");
    let other_client = Client::new(&other.api);
    for i in 0..OPERATIONS {
        let state = other_client.operation_state(&format!("handed-{i}")).await;
        assert_eq!(state.as_deref(), Some("in progress"), "handed-{i} runs on the other replica");
    }
}
