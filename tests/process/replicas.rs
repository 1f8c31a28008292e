//! Three esm replicas on one MongoDB behind nginx (round-robin, on loopback), under
//! concurrent provision, deprovision, bind and unbind on a small pool of ids for a
//! fixed time; amid the load (after 100 answers) one replica is killed with SIGKILL
//! and, after 60 more answers, restarted on its ports. Then: no instance or binding created twice, no
//! operation run twice by live replicas (the dummy's call log counts backend calls
//! across processes), no acknowledged operation lost, none left in progress, no 5xx
//! but 503 and that only while a replica is down. Once with synchronous operations,
//! once with asynchronous ones. A probe, a slow provision sent to the replica to be
//! killed just before the kill, makes sure it dies running an operation: another
//! replica must take that over once the lease lapses and finish it.
//!
//! Needs `ESM_TEST_MONGO_URI` (ignored without it, see `build.rs`) and nginx (CI
//! installs Debian's `nginx-light`; `ESM_TEST_NGINX` names another binary): with the
//! variable set and no nginx, the test fails. `--nocapture` prints the figures.
//! `bench/replicas.sh` runs the same test in release mode, longer, with these knobs:
//! `ESM_REPLICAS_SECONDS` (10), `ESM_REPLICAS_WORKERS` (8), `ESM_REPLICAS_INSTANCES`
//! (6, with 2 bindings each), `ESM_REPLICAS_BASELINE=1` (one replica, no nginx, no
//! kill: the bench's baseline), `ESM_REPLICAS_REPORT` (a file the figures are appended
//! to as `key=value` lines), `ESM_REPLICAS_KEEP` (keep the esm logs, nginx's and the
//! call log, which a failing run always keeps).

mod driver;
mod figures;
mod nginx;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use driver::{Accepts, Load, now_ms};
use figures::Figures;
use nginx::Nginx;
use verify::{Final, Kill};

use crate::support::wait::within;
use crate::support::{self, Client, Esm, StoreSetup, eventually, mongo_uri};

/// The operation lease the replicas run with: a dead replica's operations are taken
/// over after this. Short, so takeovers happen within the run, but well above the
/// stalls a loaded two-core machine shows (about 3 s with a build running next to the
/// test): a live replica stalled for a lease loses its operation to another, which
/// then runs it again (docs/state-and-scale.md, "Running several replicas").
const LEASE: Duration = Duration::from_secs(5);
/// The kill comes once the load has had this many answers, so it falls amid traffic.
const KILL_AFTER: usize = 100;
/// The killed replica stays down while the load gets this many more answers, so
/// requests meet the dead upstream through nginx before it is back.
const OUTAGE_ANSWERS: usize = 60;
/// Longest wait for the load to reach either count.
const PROGRESS_LIMIT: Duration = Duration::from_secs(30);
/// Longest wait for operations to end after the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Takeovers and warnings, without a line per request.
const LOG_FILTER: &str = "info,esm::audit=warn";

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Operations run within the request (200/201), 20 ms each.
    Sync,
    /// Operations run after a 202, 200 ms each, polled to the end.
    Async,
}

/// A run's shape, from the environment (see the module doc).
struct Scenario {
    mode: Mode,
    seconds: u64,
    workers: usize,
    instances: usize,
    /// One replica, direct, no kill.
    baseline: bool,
}

impl Scenario {
    fn from_env(mode: Mode) -> Self {
        fn number<T: std::str::FromStr>(name: &str, default: T) -> T {
            std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
        }
        Scenario {
            mode,
            seconds: number("ESM_REPLICAS_SECONDS", 10),
            workers: number("ESM_REPLICAS_WORKERS", 8),
            instances: number("ESM_REPLICAS_INSTANCES", 6),
            baseline: std::env::var("ESM_REPLICAS_BASELINE").is_ok_and(|v| v == "1"),
        }
    }

    fn title(&self) -> String {
        let mode = format!("{:?}", self.mode).to_lowercase();
        let topology =
            if self.baseline { "1 esm, direct (baseline)" } else { "3 esm behind nginx, one killed -9 amid the load" };
        format!("{mode}: {topology}; {} workers on {} instances × 2 bindings", self.workers, self.instances)
    }
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behind_nginx_survive_a_kill_9_with_synchronous_operations() {
    run(Scenario::from_env(Mode::Sync)).await;
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_behind_nginx_survive_a_kill_9_with_asynchronous_operations() {
    run(Scenario::from_env(Mode::Async)).await;
}

async fn run(scenario: Scenario) {
    // The runs share two cores: one at a time, and alongside no timed test.
    let _machine = support::machine::heavy().await;
    let dir = support::temp_dir("esm-replicas");
    let call_log = dir.path().join("calls.jsonl");
    let store = StoreSetup::Mongo { uri: mongo_uri(), db: format!("esm_replicas_{}", uuid::Uuid::new_v4().simple()) };
    let lease = LEASE.as_secs().to_string();
    let env = [("ESM_RETRY_AFTER", "1"), ("ESM_OPERATION_LEASE", lease.as_str())];
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let mut replicas = Vec::new();
    for n in 0..if scenario.baseline { 1 } else { 3 } {
        replicas.push(Esm::start_with_log(&store, &[], &env, &log(&format!("esm-{n}")), LOG_FILTER).await);
    }
    let (script, accepts) = match scenario.mode {
        Mode::Sync => {
            (format!("x-esm-dummy: {{mode: sync, delay_ms: 20, call_log: {call_log:?}}}"), Accepts::Sometimes)
        }
        Mode::Async => {
            (format!("x-esm-dummy: {{mode: async, delay_ms: 200, call_log: {call_log:?}}}"), Accepts::Always)
        }
    };
    Client::new(&replicas[0].api).register(&script).await;
    register_probe_plan(&Client::new(&replicas[0].api), &call_log).await;
    for replica in &replicas {
        let client = Client::new(&replica.api);
        eventually(Duration::from_secs(10), "every replica to see the manifest", || async {
            (client.send(Method::GET, "/v2/et/manifest/m", None).await.0 == 200).then_some(())
        })
        .await;
    }
    let addresses: Vec<String> = replicas.iter().map(|r| r.api.trim_start_matches("http://").to_owned()).collect();
    let nginx = if scenario.baseline { None } else { Some(Nginx::start(dir.path(), &addresses).await) };
    let url = nginx.as_ref().map_or_else(|| replicas[0].api.clone(), |n| n.url.clone());

    let started = now_ms();
    let load = Load {
        url: url.clone(),
        workers: scenario.workers,
        instances: scenario.instances,
        bindings: 2,
        until: started + scenario.seconds * 1000,
        accepts,
        poll_limit: Duration::from_secs(20),
        answered: Arc::new(AtomicUsize::new(0)),
    };
    let answered = Arc::clone(&load.answered);
    let traffic = tokio::spawn(async move { driver::run(&load).await });
    // A step of the scenario waits for the load's answers to reach `count` (or for the
    // load to be over, on a machine too slow to get there).
    let answers_reach = |count: usize| {
        let (answered, traffic) = (&answered, &traffic);
        eventually(PROGRESS_LIMIT, "the load's answers to reach the next step", move || {
            let reached = answered.load(Ordering::SeqCst) >= count || traffic.is_finished();
            async move { reached.then_some(()) }
        })
    };
    let kill = if scenario.baseline {
        None
    } else {
        // The kill falls amid the load, once the probe runs.
        answers_reach(KILL_AFTER).await;
        let victim = replicas.remove(1);
        let probe = start_probe(&victim.api, &Client::new(&url), scenario.mode).await;
        let port = |url: &str| url.rsplit(':').next().expect("a port").to_owned();
        let (api_port, ops_port) = (port(&victim.api), port(&victim.ops));
        let (pid, at) = (victim.pid(), now_ms());
        victim.kill_hard();
        let reaped = now_ms();
        // Synchronous, it was cut off by the kill; asynchronous, it was answered 202.
        probe.await.expect("the probe's request ended");
        answers_reach(answered.load(Ordering::SeqCst) + OUTAGE_ANSWERS).await;
        let args = ["--port", api_port.as_str(), "--check-port", ops_port.as_str()];
        replicas.insert(1, Esm::start_with_log(&store, &args, &env, &log("esm-1-restarted"), LOG_FILTER).await);
        Some(Kill { pid, at, reaped, back: now_ms() })
    };
    let traffic = traffic.await.expect("the load ran");
    let load_ms = now_ms() - started;

    let client = Client::new(&url);
    let drain_started = Instant::now();
    let finals = drain_and_read(&client, scenario.instances).await;
    let drain_ms = u64::try_from(drain_started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let probe = match kill {
        Some(kill) => Some(probe_outcome(&client, &call_log, kill).await),
        None => None,
    };
    let calls = verify::read_calls(&call_log);
    let findings = verify::check(&traffic.sent, &traffic.polls, &calls, &finals, kill);
    let figures = Figures {
        title: scenario.title(),
        traffic: &traffic,
        findings: &findings,
        load_ms,
        started,
        kill,
        takeovers: takeovers(dir.path()),
        drain_ms,
        probe,
    };
    // On lines of their own, after libtest's "test ... " (bench/replicas.sh reads them).
    println!("\n{}", figures.text());
    if let Ok(path) = std::env::var("ESM_REPLICAS_REPORT") {
        let prefix = format!("{:?}_{}_", scenario.mode, if scenario.baseline { "baseline" } else { "replicas" });
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("the report file");
        file.write_all(figures.report(&prefix.to_lowercase()).as_bytes()).expect("the report is written");
    }
    let failures = findings.failures();
    // A failure keeps the logs and the call log for whoever reads it.
    if std::env::var_os("ESM_REPLICAS_KEEP").is_some() || !failures.is_empty() {
        drop(nginx);
        let kept = dir.keep();
        assert!(failures.is_empty(), "{}\nlogs and the call log are in {}", failures.join("\n"), kept.display());
        println!("logs and the call log are in {}", kept.display());
        return;
    }
    assert!(findings.acknowledged.values().sum::<usize>() > 0, "the load got nothing done");
    drop(nginx);
}

/// How long the probe's backend call takes.
const PROBE_DELAY_MS: u64 = 3000;

/// A service whose dummy takes `PROBE_DELAY_MS` for every call, for the probe.
async fn register_probe_plan(client: &Client, call_log: &Path) {
    let service = json!({"id": "slow", "name": "slow", "description": "d", "bindable": true,
                         "plans": [{"id": "slow-plan", "name": "slow", "description": "d"}]});
    let (status, body) = client.send(Method::PUT, "/v2/et/catalog", Some(&service)).await;
    assert!(matches!(status, 200 | 201), "register the probe's service: {status} {body}");
    let script = format!("x-esm-dummy: {{delay_ms: {PROBE_DELAY_MS}, call_log: {call_log:?}}}");
    let manifest = json!({"service_id": "slow", "plan_id": "slow-plan", "manifest_type": "dummy",
                          "manifest_content": script});
    let (status, body) = client.send(Method::PUT, "/v2/et/manifest/slow-m", Some(&manifest)).await;
    assert!(matches!(status, 200 | 201), "register the probe's manifest: {status} {body}");
}

/// The probe: an operation the replica to be killed is surely running when it dies.
/// A provision of instance `probe` on the slow plan, sent to that replica directly
/// (synchronously or not, as the scenario's operations run); this returns once the
/// store shows it in progress. Its request, as a task.
async fn start_probe(victim: &str, balanced: &Client, mode: Mode) -> tokio::task::JoinHandle<(u16, Value)> {
    let direct = Client::new(victim);
    let query = if matches!(mode, Mode::Async) { "?accepts_incomplete=true" } else { "" };
    let path = format!("/v2/service_instances/probe{query}");
    let body = json!({"service_id": "slow", "plan_id": "slow-plan", "organization_guid": "o", "space_guid": "s"});
    let request = tokio::spawn(async move { direct.send(Method::PUT, &path, Some(&body)).await });
    eventually(Duration::from_secs(10), "the probe to be in progress", || async {
        (balanced.operation_state("probe").await.as_deref() == Some("in progress")).then_some(())
    })
    .await;
    request
}

/// The probe after the run: another replica took it over once the killed one's lease
/// lapsed and finished it, with one backend call (the killed replica died inside its
/// call, before the end of its delay). Panics otherwise; a line for the figures.
async fn probe_outcome(client: &Client, call_log: &Path, kill: Kill) -> String {
    let (status, body) = client.settle("probe", DRAIN_LIMIT).await;
    assert_eq!((status, &body["state"]), (200, &json!("succeeded")), "the probe: {body}");
    let calls = verify::read_calls(call_log);
    let probe_calls: Vec<&verify::Call> = calls.iter().filter(|c| c.id == "probe").collect();
    assert!(
        probe_calls.len() == 1 && probe_calls[0].pid != kill.pid && probe_calls[0].ok,
        "the probe's backend calls: {probe_calls:?} (killed pid {})",
        kill.pid
    );
    format!(
        "probe: a provision running on the killed replica, taken over and finished by pid {} {:.1} s after the kill, one backend call",
        probe_calls[0].pid,
        probe_calls[0].at_ms.saturating_sub(kill.at) as f64 / 1000.0
    )
}

/// Polls every id's last operation until none is in progress (at most `DRAIN_LIMIT`),
/// then reads what each instance and binding is.
async fn drain_and_read(client: &Client, instances: usize) -> BTreeMap<String, Final> {
    let mut paths = BTreeMap::new();
    for i in 0..instances {
        paths.insert(format!("i{i}"), format!("/v2/service_instances/i{i}"));
        for b in 0..2 {
            paths.insert(format!("i{i}-b{b}"), format!("/v2/service_instances/i{i}/service_bindings/i{i}-b{b}"));
        }
    }
    let pending = std::cell::RefCell::new(paths.keys().cloned().collect::<BTreeSet<String>>());
    within(DRAIN_LIMIT, || async {
        let ids = pending.borrow().clone();
        for id in ids {
            let (status, body) = client.send(Method::GET, &format!("{}/last_operation", paths[&id]), None).await;
            if !(status == 200 && body["state"] == "in progress") && status != 0 && status < 500 {
                pending.borrow_mut().remove(&id);
            }
        }
        pending.borrow().is_empty().then_some(())
    })
    .await;
    let pending = pending.into_inner();
    let mut finals = BTreeMap::new();
    for (id, path) in &paths {
        let (status, body) = client.send(Method::GET, path, None).await;
        assert!(matches!(status, 200 | 404), "reading {id} after the run: {status} {body}");
        finals.insert(id.clone(), Final { present: status == 200, in_progress: pending.contains(id) });
    }
    finals
}

/// "taking over operation" lines per esm log.
fn takeovers(dir: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("the run's directory").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("esm-") && name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            counts.insert(name.trim_end_matches(".log").to_owned(), text.matches("taking over operation").count());
        }
    }
    counts
}
