//! Change events across replicas: two esm processes on one MongoDB database; a
//! subscriber of one sees the events of operations and liveness changes made through
//! the other within a second, in one id order. And three replicas cycling the same
//! instances through provision and deprovision, one killed -9 amid it, give one log:
//! ids without a hole, no event twice, every finished operation's end once, after its
//! start, and each instance's events in the order its operations ran.
//!
//! Needs `ESM_TEST_MONGO_URI` (a server CI starts); without it the test is ignored,
//! with it and no server it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::sse::SseReader;
use crate::support::{self, Client, Esm, StoreSetup, eventually};

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
    let _machine = support::machine::timed().await;
    let store = StoreSetup::fresh_mongo();
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

/// Instances cycled at once, each by one client.
const INSTANCES: usize = 6;
/// Provision/deprovision cycles per instance.
const CYCLES: usize = 4;
/// The replica killed -9 once this many operations have finished.
const KILL_AFTER: usize = 10;

/// An operation a client saw finish: its instance, kind and id, and how it ended.
#[derive(Debug, Clone)]
struct Finished {
    instance: String,
    kind: &'static str,
    operation: String,
    state: String,
}

/// Sends `kind` for `instance` to the replicas alive, starting at `first`, until one
/// answers for it; the operation id when it runs (None if it was already done).
async fn request(apis: &[String], dead: &AtomicBool, first: usize, instance: &str, kind: &str) -> Option<String> {
    let path = match kind {
        "provision" => format!("/v2/service_instances/{instance}?accepts_incomplete=true"),
        _ => format!("/v2/service_instances/{instance}?accepts_incomplete=true&service_id=svc&plan_id=plan"),
    };
    let body = json!({"service_id": "svc", "plan_id": "plan", "organization_guid": "o", "space_guid": "s"});
    eventually(Duration::from_secs(30), &format!("{kind} of {instance} to be taken"), || {
        let (path, body) = (path.clone(), body.clone());
        async move {
            for n in 0..apis.len() {
                let index = (first + n) % apis.len();
                if index == apis.len() - 1 && dead.load(Ordering::Acquire) {
                    continue;
                }
                let client = Client::new(&apis[index]);
                let (status, answer) = match kind {
                    "provision" => client.send(Method::PUT, &path, Some(&body)).await,
                    _ => client.send(Method::DELETE, &path, None).await,
                };
                match status {
                    202 => return Some(answer["operation"].as_str().map(str::to_owned)),
                    // Done already: a retry after an answer lost with the killed replica.
                    200 | 201 | 410 => return Some(None),
                    // The killed replica, a store moment, or the previous operation
                    // still being taken over: another replica, or again.
                    _ => {}
                }
            }
            None
        }
    })
    .await
}

/// The final state of `kind` operation `operation` of `instance`, asked of the live
/// replicas.
async fn settled(apis: &[String], dead: &AtomicBool, instance: &str, operation: &str) -> String {
    let path = format!("/v2/service_instances/{instance}/last_operation?operation={operation}");
    eventually(Duration::from_secs(30), &format!("operation {operation} to finish"), || {
        let path = path.clone();
        async move {
            let alive = apis.len() - usize::from(dead.load(Ordering::Acquire));
            for api in &apis[..alive] {
                let (status, body) = Client::new(api).send(Method::GET, &path, None).await;
                let state = body["state"].as_str().unwrap_or_default();
                if status == 200 && state != "in progress" {
                    return Some(state.to_owned());
                }
                if status == 410 {
                    return Some("succeeded".to_owned());
                }
            }
            None
        }
    })
    .await
}

/// One client cycling `instance`; what it saw finish, in order.
async fn cycle(apis: Vec<String>, dead: Arc<AtomicBool>, finished: Arc<AtomicUsize>, n: usize) -> Vec<Finished> {
    let instance = format!("i-{n}");
    let mut seen = Vec::new();
    for round in 0..CYCLES {
        for (step, kind) in ["provision", "deprovision"].into_iter().enumerate() {
            // Each request of an instance goes to another replica than the last.
            let first = n + round * 2 + step;
            let Some(operation) = request(&apis, &dead, first, &instance, kind).await else { continue };
            let state = settled(&apis, &dead, &instance, &operation).await;
            finished.fetch_add(1, Ordering::AcqRel);
            seen.push(Finished { instance: instance.clone(), kind, operation, state });
        }
    }
    seen
}

/// The whole log, paged from `api`.
async fn whole_log(api: &str) -> Vec<Value> {
    let client = Client::new(api);
    let (mut events, mut after) = (Vec::new(), 0);
    loop {
        let (status, page) = client.send(Method::GET, &format!("/v2/et/events?after={after}&limit=500"), None).await;
        assert_eq!(status, 200, "{page}");
        let read = page["events"].as_array().cloned().unwrap_or_default();
        if read.is_empty() {
            return events;
        }
        after = read.last().and_then(|e| e["id"].as_u64()).expect("an id");
        events.extend(read);
    }
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread")]
async fn replicas_cycling_instances_with_one_killed_give_one_log_in_the_order_of_the_changes() {
    let _machine = support::machine::heavy().await;
    let store = StoreSetup::fresh_mongo();
    let mut replicas = vec![Esm::start(&store).await, Esm::start(&store).await, Esm::start(&store).await];
    let apis: Vec<String> = replicas.iter().map(|r| r.api.clone()).collect();
    Client::new(&apis[0]).register("x-esm-dummy: {mode: async, delay_ms: 150}").await;
    let (dead, finished) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..INSTANCES)
        .map(|n| tokio::spawn(cycle(apis.clone(), Arc::clone(&dead), Arc::clone(&finished), n)))
        .collect();
    // Killed -9 amid the cycles: it is running operations and has committed changes
    // whose events may not be numbered yet; the survivors finish both.
    eventually(Duration::from_secs(30), "operations to finish before the kill", || async {
        (finished.load(Ordering::Acquire) >= KILL_AFTER).then_some(())
    })
    .await;
    dead.store(true, Ordering::Release);
    replicas.pop().expect("three").kill_hard();
    let mut seen = Vec::new();
    for client in clients {
        seen.extend(client.await.expect("a client"));
    }
    assert!(seen.iter().all(|f| f.state == "succeeded"), "{seen:?}");

    // Every operation seen to finish has its end in the log (numbered by a survivor
    // if the killed replica committed it).
    let survivor = &apis[0];
    let log = eventually(Duration::from_secs(20), "every finished operation's end in the log", || async {
        let log = whole_log(survivor).await;
        let ends: BTreeSet<&str> = log
            .iter()
            .filter(|e| e["to"] == json!("succeeded") || e["to"] == json!("failed"))
            .filter_map(|e| e["operation"].as_str())
            .collect();
        seen.iter().all(|f| ends.contains(f.operation.as_str())).then_some(log.clone())
    })
    .await;

    let ids: Vec<u64> = log.iter().filter_map(|e| e["id"].as_u64()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "ids without a hole, none twice");
    let mut per_operation: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for event in &log {
        if let (Some(op), Some(kind)) = (event["operation"].as_str(), event["type"].as_str()) {
            per_operation.entry(op).or_default().push(kind);
        }
    }
    for (op, kinds) in &per_operation {
        let step = |k: &&str| k.rsplit_once('.').map(|(_, s)| s.to_owned());
        let steps: Vec<String> = kinds.iter().filter_map(step).collect();
        assert_eq!(steps, ["started", "succeeded"], "operation {op}: its start, then its end, once each");
    }
    for n in 0..INSTANCES {
        let instance = format!("i-{n}");
        // The log's order of this instance's ends is the order its operations ran.
        let ends: Vec<(&str, &str)> = log
            .iter()
            .filter(|e| e["instance_id"] == json!(instance) && e["to"] == json!("succeeded"))
            .filter_map(|e| Some((e["type"].as_str()?, e["operation"].as_str()?)))
            .collect();
        let kinds: Vec<&str> = ends.iter().map(|(kind, _)| *kind).collect();
        let alternating: Vec<&str> = (0..kinds.len())
            .map(|i| if i % 2 == 0 { "provision.succeeded" } else { "deprovision.succeeded" })
            .collect();
        assert_eq!(kinds, alternating, "instance {instance}: provisions and deprovisions alternate");
        let logged: Vec<&str> = ends.iter().map(|(_, op)| *op).collect();
        let ran: Vec<&str> = seen.iter().filter(|f| f.instance == instance).map(|f| f.operation.as_str()).collect();
        let logged_known: Vec<&str> = logged.iter().copied().filter(|op| ran.contains(op)).collect();
        assert_eq!(logged_known, ran, "instance {instance}: ends in the order the client saw them");
        for (op, kind) in ends.iter().filter_map(|(_, op)| Some((*op, seen.iter().find(|f| f.operation == *op)?.kind)))
        {
            assert!(kinds.contains(&format!("{kind}.succeeded").as_str()), "operation {op}: a {kind}");
            assert_eq!(per_operation[op][0], format!("{kind}.started"), "operation {op}: of its kind");
        }
        assert_eq!(kinds.len(), 2 * CYCLES, "instance {instance}: every cycle's two ends");
    }
    eprintln!("{} events, {} operations seen finished, one replica killed -9", log.len(), seen.len());
}
