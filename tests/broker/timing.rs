//! Deadlines, leases and takeovers in controlled time: the broker runs on paused Tokio
//! time with a clock that follows it ([`Clock::tokio`]), and the dummy backend holds
//! its operation until the test releases it. Minutes of operation time pass in
//! microseconds, and nothing races a real delay.

use std::sync::Arc;
use std::time::Duration;

use esm::backend::Backends;
use esm::backend::dummy::DummyBackend;
use esm::broker::{Answer, Broker, BrokerSettings};
use esm::clock::Clock;
use esm::domain::instance::ServiceInstance;
use esm::domain::operation::{OperationKind, OperationState};
use esm::error::OsbError;
use esm::store::memory::MemoryStore;
use esm::store::{Records, Store};
use serde_json::json;

use crate::support::catalog::{provision_request, register};

const LEASE: Duration = Duration::from_secs(30);

/// A broker on `store` deploying with `dummy`, reading `clock`.
fn broker(store: &Arc<dyn Store>, dummy: &Arc<DummyBackend>, clock: Clock) -> Arc<Broker> {
    let settings = BrokerSettings { operation_lease: LEASE, clock, ..BrokerSettings::default() };
    Broker::new(Arc::clone(store), Backends::new().with(dummy.clone()), settings)
}

/// `N` brokers (replicas) on one memory store, deploying with one dummy backend, all
/// reading the Tokio clock: the store, the backend and the replicas.
fn replicas<const N: usize>() -> (Arc<dyn Store>, Arc<DummyBackend>, [Arc<Broker>; N]) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (dummy, clock) = (Arc::new(DummyBackend::new()), Clock::tokio());
    let brokers = std::array::from_fn(|_| broker(&store, &dummy, clock));
    (store, dummy, brokers)
}

/// Registers plan `p` (with `plan_extra`) on a dummy `script` through `broker`, and
/// provisions `i` on it asynchronously: accepted.
async fn provision_accepted(broker: &Arc<Broker>, plan_extra: serde_json::Value, script: &str) {
    register(broker, plan_extra, script).await;
    let answer = broker.instances().provision("i", provision_request(), true).await.expect("provision");
    assert!(matches!(answer, Answer::Accepted(_)), "{answer:?}");
}

/// The held provision of `i` (see [`provision_accepted`]), as a plan that holds it.
const HELD: &str = "x-esm-dummy: {mode: async, hold: [provision]}";

/// Waits until `i`'s last operation, as `broker` reports it, is over, and asserts it
/// succeeded.
async fn finishes_successfully(broker: &Arc<Broker>) {
    until("the provision to finish", || async { last_operation(broker).await.0 != OperationState::InProgress }).await;
    assert_eq!(last_operation(broker).await.0, OperationState::Succeeded);
}

/// The state of instance `i`'s last operation, and its description.
async fn last_operation(broker: &Arc<Broker>) -> (OperationState, String) {
    let last = broker.instances().last_operation("i", None).await.expect("last_operation");
    (last.state, last.description.unwrap_or_default())
}

/// Lets `time` pass on the paused clock: returns at once in real time, having fired
/// every timer due meanwhile in order (lease renewals, deadlines), as real time would.
async fn elapse(time: Duration) {
    tokio::time::sleep(time).await;
}

/// Lets the broker's tasks run until `done` holds, moving virtual time on meanwhile.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    for _ in 0..1000 {
        if done().await {
            return;
        }
        elapse(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 10 s of virtual time");
}

#[tokio::test(start_paused = true)]
async fn an_operation_fails_once_the_plans_maximum_polling_duration_has_passed() {
    let (_, _, [broker]) = replicas();
    provision_accepted(&broker, json!({"maximum_polling_duration": 600}), HELD).await;

    elapse(Duration::from_secs(599)).await;
    assert_eq!(last_operation(&broker).await.0, OperationState::InProgress, "within the plan's 600 s");
    until("the deadline", || async { last_operation(&broker).await.0 != OperationState::InProgress }).await;
    let (state, description) = last_operation(&broker).await;
    assert_eq!(state, OperationState::Failed);
    assert!(description.contains("maximum_polling_duration"), "{description}");
}

#[tokio::test(start_paused = true)]
async fn a_dead_replicas_operation_is_taken_over_once_its_lease_lapses() {
    let (_, dummy, [first, second]) = replicas();
    provision_accepted(&first, json!({}), HELD).await;
    // The first replica dies where it is: its operation stays in progress, leased.
    first.halt().await;

    assert_eq!(second.operations().claim_orphaned_operations(false).await.expect("claim"), 0, "the lease still holds");
    elapse(LEASE / 2).await;
    assert_eq!(
        second.operations().claim_orphaned_operations(false).await.expect("claim"),
        0,
        "half the lease: still held"
    );
    elapse(LEASE / 2 + Duration::from_secs(1)).await;
    assert_eq!(second.operations().claim_orphaned_operations(false).await.expect("claim"), 1, "lapsed: taken over");
    assert_eq!(
        second.operations().claim_orphaned_operations(false).await.expect("claim"),
        0,
        "and held by the new owner"
    );

    dummy.holds().release(OperationKind::Provision, "i");
    finishes_successfully(&second).await;
}

#[tokio::test(start_paused = true)]
async fn a_running_operation_keeps_its_lease_for_as_long_as_it_runs() {
    let (_, dummy, [owner, other]) = replicas();
    provision_accepted(&owner, json!({}), HELD).await;
    // Ten leases pass; the owner renews all along, so nobody takes the operation over.
    for _ in 0..10 {
        elapse(LEASE).await;
        assert_eq!(other.operations().claim_orphaned_operations(false).await.expect("claim"), 0);
    }
    dummy.holds().release(OperationKind::Provision, "i");
    finishes_successfully(&owner).await;
}

#[tokio::test(start_paused = true)]
async fn a_process_never_takes_over_an_operation_it_runs_itself() {
    let (store, dummy, [owner]) = replicas();
    provision_accepted(&owner, json!({}), HELD).await;
    // Past the first renewal: the backend call has started.
    elapse(LEASE / 3 + Duration::from_secs(1)).await;
    // The lease lapses while the operation still runs here, as when the process or
    // the store stalls for longer than a lease.
    Records::new(Arc::clone(&store))
        .modify::<ServiceInstance, OsbError, _>("i", |instance| {
            Ok(instance.operations.last_mut().map(|op| op.lease_until = 0).is_some())
        })
        .await
        .expect("the lease is made to lapse");
    assert_eq!(
        owner.operations().claim_orphaned_operations(false).await.expect("claim"),
        0,
        "it runs that operation already"
    );
    dummy.holds().release(OperationKind::Provision, "i");
    finishes_successfully(&owner).await;
}

/// An asynchronous provision recorded by one replica that stopped before running it;
/// once its lease lapsed, a second replica claimed it (its run is spawned, not yet
/// started). The backend, that second replica, and the records.
async fn claimed_after_the_first_replica_stopped() -> (Arc<DummyBackend>, Arc<Broker>, Records) {
    let (store, dummy, [first, second]) = replicas();
    provision_accepted(&first, json!({}), "x-esm-dummy: {mode: async, delay_ms: 10}").await;
    first.shutdown().await;
    elapse(LEASE + Duration::from_secs(1)).await;
    assert_eq!(second.operations().claim_orphaned_operations(false).await.expect("claim"), 1, "claimed");
    (dummy, second, Records::new(store))
}

#[tokio::test(start_paused = true)]
async fn a_takeover_that_reaches_the_store_with_its_lease_lapsed_renews_it_before_running() {
    // The second replica's claim lands as if it had waited in a stalled store for a
    // lease: the lease it wrote has (nearly) lapsed already. Before its backend call
    // it renews the lease with a compare-and-set (so no sweep takes it over after
    // that), and runs it.
    let (_, second, records) = claimed_after_the_first_replica_stopped().await;
    records
        .modify::<ServiceInstance, OsbError, _>("i", |instance| {
            Ok(instance.operations.last_mut().map(|op| op.lease_until = 1).is_some())
        })
        .await
        .expect("the lease is made stale");
    finishes_successfully(&second).await;
}

#[tokio::test(start_paused = true)]
async fn a_run_whose_operation_another_replica_took_over_meanwhile_does_not_call_the_backend() {
    let (dummy, second, records) = claimed_after_the_first_replica_stopped().await;
    // Before the run starts, a third replica's claim lands: the operation is its own.
    records
        .modify::<ServiceInstance, OsbError, _>("i", |instance| {
            let op = instance.operations.last_mut();
            Ok(op.map(|op| op.owner = Some("a-third-replica".into())).is_some())
        })
        .await
        .expect("taken over");
    elapse(Duration::from_millis(100)).await;
    assert_eq!(last_operation(&second).await.0, OperationState::InProgress, "left to its new owner");
    let owned = esm::backend::Backend::held(dummy.as_ref(), None).await.expect("held");
    assert!(owned.is_empty(), "the backend was not called: {owned:?}");
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_operation_was_taken_over_is_told_so_not_that_esm_shuts_down() {
    let (store, _, [broker]) = replicas();
    register(&broker, json!({}), "x-esm-dummy: {mode: sync, hold: [provision]}").await;
    let request = tokio::spawn({
        let broker = Arc::clone(&broker);
        async move { broker.instances().provision("i", provision_request(), false).await }
    });
    let records = Records::new(Arc::clone(&store));
    until("the provision to be recorded", || async {
        records.get::<ServiceInstance>("i").await.expect("read").is_some()
    })
    .await;
    // Another replica owns the operation now (as after a long pause of this one).
    records
        .modify::<ServiceInstance, OsbError, _>("i", |instance| {
            let op = instance.operations.last_mut().expect("the provision");
            op.owner = Some("another-replica".into());
            Ok(true)
        })
        .await
        .expect("taken over");

    let answer = request.await.expect("the request task");
    match answer {
        Err(OsbError::ConcurrencyError(message)) => assert!(message.contains("another esm replica"), "{message}"),
        other => panic!("expected a ConcurrencyError naming the takeover, got {other:?}"),
    }
    assert_eq!(last_operation(&broker).await.0, OperationState::InProgress, "left to its new owner");
}

#[tokio::test(start_paused = true)]
async fn a_binding_expires_after_its_plans_lifetime_and_cannot_be_rotated_then() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = Clock::tokio();
    let broker = broker(&store, &Arc::new(DummyBackend::new()), clock);
    let plan = json!({"binding_lifetime_seconds": 100, "binding_rotatable": true});
    register(&broker, plan, "x-esm-dummy: {mode: sync}").await;
    broker.instances().provision("i", provision_request(), false).await.expect("provision");
    let bind = |id: &str, predecessor: Option<&str>| {
        let request = serde_json::from_value(json!({"service_id": "s", "plan_id": "p",
                                                    "predecessor_binding_id": predecessor}))
        .expect("bind request");
        let (broker, id) = (Arc::clone(&broker), id.to_owned());
        async move { broker.bindings().bind("i", &id, request, false).await }
    };
    let Ok(Answer::Done(first)) = bind("b1", None).await else { panic!("the first bind") };
    let expires_at = first.metadata.and_then(|m| m.expires_at).expect("expires_at");
    assert_eq!(
        expires_at,
        clock.timestamp_in(Duration::from_secs(100)),
        "counted from the bind, on the broker's clock"
    );

    elapse(Duration::from_secs(99)).await;
    assert!(matches!(bind("b2", Some("b1")).await, Ok(Answer::Done(_))), "rotated within the lifetime");
    elapse(Duration::from_secs(2)).await;
    match bind("b3", Some("b1")).await {
        Err(OsbError::BadRequest(message)) => assert!(message.contains("expired"), "{message}"),
        other => panic!("an expired predecessor must be refused, got {other:?}"),
    }
}
