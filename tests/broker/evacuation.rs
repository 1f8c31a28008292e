//! Draining an engine, at the broker: its relocatable instances are deployed again on
//! another engine, their bindings get the new deployment's credentials, and only then
//! is the old deployment removed, with an `instance.relocated` event per instance.
//! Instances of other plans stay. A move that cannot deploy leaves the instance where
//! it was; one whose old engine stops answering after the move is finished by a later
//! round; two replicas draining at once move each instance once.

use std::sync::Arc;
use std::time::Duration;

use esm::broker::{Broker, ScheduleChange};
use esm::clock::Clock;
use esm::domain::bounded::EngineName;
use esm::domain::event::{EventKind, Step};
use esm::domain::instance::ServiceInstance;
use esm::domain::operation::OperationKind;
use esm::events::Filter;
use esm::store::Store;
use esm::store::memory::MemoryStore;
use serde_json::{Value, json};

use crate::placement::{PluggedEngines, broker, declare};
use crate::support::catalog::{provision_request, register};
use crate::support::wait::eventually;

fn name(text: &str) -> EngineName {
    EngineName::parse(text).expect("name")
}

fn bind_request() -> esm::wire::BindRequest {
    serde_json::from_value(json!({"service_id": "s", "plan_id": "p"})).expect("request")
}

/// A fleet of dummy engines `e1` and `e2` (zone `a`), the plan's instances all placed
/// on `e1` (`e2` is cordoned meanwhile) and each bound once, then `e2` uncordoned.
async fn fleet_on_e1(broker: &Arc<Broker>, relocatable: bool, instances: usize) {
    fleet_on_e1_by(broker, relocatable, instances, "x-esm-dummy: {mode: sync}", |_| {}).await;
}

/// [`fleet_on_e1`] with the dummy's `script`, and `before` called before each provision.
async fn fleet_on_e1_by(
    broker: &Arc<Broker>,
    relocatable: bool,
    instances: usize,
    script: &str,
    before: impl Fn(&str),
) {
    broker.spawn_event_log();
    let rule = json!({"requires": {"zone": "a"}, "relocatable": relocatable});
    register(broker, json!({"metadata": {"placement": rule}}), script).await;
    for engine in ["e1", "e2"] {
        declare(broker, engine, json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    }
    broker.engines().probe_round().await.expect("probes");
    broker.engines().change_schedule(&name("e2"), ScheduleChange::Cordon).await.expect("cordon");
    for n in 0..instances {
        before(&format!("i-{n}"));
        broker.instances().provision(&format!("i-{n}"), provision_request(), false).await.expect("placed");
        broker.bindings().bind(&format!("i-{n}"), &format!("b-{n}"), bind_request(), false).await.expect("bound");
    }
    broker.engines().change_schedule(&name("e2"), ScheduleChange::Uncordon).await.expect("uncordon");
}

async fn engine_of(broker: &Arc<Broker>, id: &str) -> String {
    broker.instances().et_instance(id).await.expect("instance").engine
}

async fn credentials(broker: &Arc<Broker>, n: usize) -> Value {
    let binding = broker.bindings().fetch(&format!("i-{n}"), &format!("b-{n}")).await.expect("binding");
    serde_json::to_value(binding.credentials.expect("credentials")).expect("json")
}

/// The events of `kind` in the log, once there are at least `expected`.
async fn events_of(broker: &Arc<Broker>, kind: EventKind, expected: usize) -> Vec<esm::domain::event::Event> {
    let filter = Filter { kind: Some(kind), ..Filter::default() };
    eventually(Duration::from_secs(10), "the events", || async {
        let events = broker.events().page(&filter, 0, 100).await.expect("events");
        (events.len() >= expected).then_some(events)
    })
    .await
}

async fn relocated_events(broker: &Arc<Broker>, expected: usize) -> Vec<(String, String)> {
    let events = events_of(broker, EventKind::InstanceRelocated, expected).await;
    events.into_iter().map(|e| (e.from.unwrap_or_default(), e.to.unwrap_or_default())).collect()
}

#[tokio::test(start_paused = true)]
async fn a_drain_moves_relocatable_instances_with_their_bindings_then_removes_the_old_deployments() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let broker = broker(&store, engines.clone(), Clock::tokio());
    fleet_on_e1(&broker, true, 3).await;
    let before: Vec<Value> = futures_util::future::join_all((0..3).map(|n| credentials(&broker, n))).await;
    assert!(before.iter().all(|c| c["instance_id"].as_str().is_some_and(|id| id.starts_with("i-"))), "{before:?}");

    let draining = broker.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    assert_eq!(draining.state.as_str(), "draining");
    // The drain's own round runs in a task of its own; this one moves what it left.
    broker.engines().evacuate_round().await.expect("a round");
    broker.engines().evacuate_round().await.expect("a round");

    for (n, before) in before.iter().enumerate() {
        assert_eq!(engine_of(&broker, &format!("i-{n}")).await, "e2");
        let now = credentials(&broker, n).await;
        let deployed = now["instance_id"].as_str().expect("the dummy names the deployment");
        assert!(deployed.starts_with("moved-"), "the credentials are the new deployment's: {now}");
        assert!(before["esm_liveness_token"].is_string(), "{before}");
        assert_eq!(now["esm_liveness_token"], before["esm_liveness_token"], "esm's reporting token is kept");
    }
    assert_eq!(relocated_events(&broker, 3).await, vec![("e1".to_owned(), "e2".to_owned()); 3]);
    assert_eq!(engines.plug("e2").provisions(), 3, "one deployment per instance");
    let e1 = broker.engines().get(&name("e1")).await.expect("e1");
    assert_eq!(e1.instances, 0, "{e1:?}");
    let progress = e1.evacuation.expect("a draining engine shows its evacuation");
    assert_eq!((progress.to_move, progress.moving, progress.leaving, progress.staying), (0, 0, 0, 0));
    // Nothing is left on it: it can be removed.
    broker.engines().delete(&name("e1")).await.expect("an emptied engine is removed");
    // The moved instances work as any other: fetched, updated, deprovisioned.
    broker.instances().fetch("i-0").await.expect("fetch");
    let query = serde_json::from_value(json!({"service_id": "s", "plan_id": "p"})).expect("query");
    broker.bindings().unbind("i-0", "b-0", &query).await.expect("unbind");
    broker.instances().deprovision("i-0", &query).await.expect("deprovision");
}

#[tokio::test(start_paused = true)]
async fn instances_of_a_plan_that_is_not_relocatable_stay_on_a_draining_engine() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let broker = broker(&store, Arc::new(PluggedEngines::default()), Clock::tokio());
    fleet_on_e1(&broker, false, 2).await;
    broker.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    assert_eq!(broker.engines().evacuate_round().await.expect("a round"), 0);
    assert_eq!(engine_of(&broker, "i-0").await, "e1");
    let progress = broker.engines().get(&name("e1")).await.expect("e1").evacuation.expect("progress");
    assert_eq!((progress.to_move, progress.staying, progress.counted_all), (0, 2, true));
    let refused = broker.engines().delete(&name("e1")).await.expect_err("it still holds instances");
    assert!(refused.to_string().contains("e1"), "{refused}");
}

#[tokio::test(start_paused = true)]
async fn a_move_that_cannot_deploy_leaves_the_instance_where_it_was_and_is_tried_again_later() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let broker = broker(&store, engines.clone(), Clock::tokio());
    fleet_on_e1(&broker, true, 1).await;
    let before = credentials(&broker, 0).await;
    // e2 stops answering after its last probe: still `active` in the record.
    engines.plug("e2").unplug(true);
    broker.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    assert_eq!(broker.engines().evacuate_round().await.expect("a round"), 0);
    assert_eq!(engine_of(&broker, "i-0").await, "e1");
    assert_eq!(credentials(&broker, 0).await, before, "the binding is untouched");
    let failures = events_of(&broker, EventKind::Operation(OperationKind::Relocate, Step::Failed), 1).await;
    assert!(
        failures.iter().any(|e| e.reason.as_deref().is_some_and(|r| r.contains("connection refused"))),
        "{failures:?}"
    );
    // Nothing of the failed move stays: no room taken on e2, no instance counted there.
    assert_eq!(broker.engines().get(&name("e2")).await.expect("e2").instances, 0);
    // Not tried again at once …
    engines.plug("e2").unplug(false);
    assert_eq!(broker.engines().evacuate_round().await.expect("a round"), 0);
    // … but once a minute has passed.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(broker.engines().evacuate_round().await.expect("a round"), 1);
    assert_eq!(engine_of(&broker, "i-0").await, "e2");
}

#[tokio::test(start_paused = true)]
async fn a_move_whose_old_engine_stops_answering_is_finished_when_it_answers_again() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let broker = broker(&store, engines.clone(), Clock::tokio());
    fleet_on_e1(&broker, true, 1).await;
    broker.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    // e1 stops answering: the new deployment is made on e2, the old one cannot go.
    engines.plug("e1").unplug(true);
    broker.engines().evacuate_round().await.expect("a round");
    assert_eq!(engine_of(&broker, "i-0").await, "e2", "the move is written");
    let moved = credentials(&broker, 0).await;
    assert!(moved["instance_id"].as_str().is_some_and(|id| id.starts_with("moved-")), "{moved}");
    let e1 = broker.engines().get(&name("e1")).await.expect("e1");
    assert_eq!(e1.evacuation.expect("progress").leaving, 1);
    broker.engines().delete(&name("e1")).await.expect_err("its old deployment is still on it");

    engines.plug("e1").unplug(false);
    broker.engines().evacuate_round().await.expect("a round");
    assert_eq!(relocated_events(&broker, 1).await, vec![("e1".to_owned(), "e2".to_owned())]);
    assert_eq!(broker.engines().get(&name("e1")).await.expect("e1").instances, 0);
    assert_eq!(engines.plug("e2").provisions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_draining_at_once_move_each_instance_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let (a, b) = (broker(&store, engines.clone(), Clock::system()), broker(&store, engines.clone(), Clock::system()));
    fleet_on_e1(&a, true, 12).await;
    a.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ea, eb) = (a.engines(), b.engines());
        let (ra, rb) = tokio::join!(ea.evacuate_round(), eb.evacuate_round());
        ra.expect("a's round");
        rb.expect("b's round");
        if a.engines().get(&name("e1")).await.expect("e1").instances == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "e1 was not emptied in time");
    }
    for n in 0..12 {
        assert_eq!(engine_of(&a, &format!("i-{n}")).await, "e2");
    }
    assert_eq!(engines.plug("e2").provisions(), 12, "each instance deployed once on e2");
    assert_eq!(relocated_events(&a, 12).await.len(), 12, "one event per moved instance");
}

#[tokio::test(start_paused = true)]
async fn a_move_handed_back_mid_deploy_is_finished_by_another_replica_on_the_engine_it_chose() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let (a, b) = (broker(&store, engines.clone(), Clock::tokio()), broker(&store, engines.clone(), Clock::tokio()));
    let script = "x-esm-dummy: {mode: sync, hold: [provision]}";
    let e1 = engines.dummy("e1").holds();
    fleet_on_e1_by(&a, true, 1, script, |id| e1.release(OperationKind::Provision, id)).await;
    declare(&a, "e3", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    a.engines().probe_round().await.expect("probes");

    // The drain's round starts the move: it chose e2 (the names break the tie) and
    // waits there for the hold.
    a.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    let records = esm::store::Records::new(Arc::clone(&store));
    let op = eventually(Duration::from_secs(10), "the move recorded", || async {
        let instance = records.get::<ServiceInstance>("i-0").await.expect("reads")?.record;
        instance.operations.running().filter(|op| op.kind == OperationKind::Relocate).cloned()
    })
    .await;
    assert_eq!(op.relocate_to.as_deref(), Some("e2"));
    // e2 is cordoned, then the replica running the move stops: another takes it over
    // and deploys where the move was decided, never a second time elsewhere.
    a.engines().change_schedule(&name("e2"), ScheduleChange::Cordon).await.expect("cordon");
    a.shutdown().await;
    let moved_id = op.moved_id().expect("a move's deployment id");
    engines.dummy("e2").holds().release(OperationKind::Provision, &moved_id);
    assert_eq!(b.operations().claim_orphaned_operations(false).await.expect("claims"), 1);
    eventually(Duration::from_secs(10), "the move finished", || async {
        (engine_of(&b, "i-0").await == "e2").then_some(())
    })
    .await;
    assert_eq!(
        (engines.plug("e2").provisions(), engines.plug("e3").provisions()),
        (2, 0),
        "e2 twice (a resumed run), e3 never"
    );
}

#[tokio::test(start_paused = true)]
async fn a_move_with_nowhere_to_go_waits_and_says_why() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let broker = broker(&store, Arc::new(PluggedEngines::default()), Clock::tokio());
    fleet_on_e1(&broker, true, 1).await;
    broker.engines().change_schedule(&name("e2"), ScheduleChange::Cordon).await.expect("cordon");
    broker.engines().change_schedule(&name("e1"), ScheduleChange::Drain).await.expect("drain");
    assert_eq!(broker.engines().evacuate_round().await.expect("a round"), 0);
    let progress = broker.engines().get(&name("e1")).await.expect("e1").evacuation.expect("progress");
    assert_eq!(progress.to_move, 1);
    let why = progress.blocked.expect("why it waits");
    assert!(why.contains("e2: cordoned") && why.contains("e1: draining"), "{why}");
    assert_eq!(engine_of(&broker, "i-0").await, "e1");
    // Room again: the next round moves it, and the reason goes.
    broker.engines().change_schedule(&name("e2"), ScheduleChange::Uncordon).await.expect("uncordon");
    assert_eq!(broker.engines().evacuate_round().await.expect("a round"), 1);
    let progress = broker.engines().get(&name("e1")).await.expect("e1").evacuation.expect("progress");
    assert_eq!((progress.to_move, progress.blocked), (0, None));
}
