//! Leases under races: a compare-and-set that loses to another replica's write leaves
//! no trace of the attempt (no claim, no announced result), and a graceful stop hands
//! its operations back so another replica takes them at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::backend::BackendError;
use crate::backend::dummy::DummyBackend;
use crate::broker::runner::{Call, Outcome, Work};
use crate::broker::*;
use crate::domain::instance::ServiceInstance;
use crate::domain::operation::Operation;
use crate::store::switchable::SwitchableStore;
use crate::store::{Collection, Store};

fn broker(store: &Arc<SwitchableStore>, dummy: &Arc<DummyBackend>) -> Arc<Broker> {
    fixture::broker(store.clone(), dummy.clone())
}

/// Instance `id` with operation `op` running.
async fn stored_with(broker: &Arc<Broker>, id: &str, op: Operation) {
    let mut instance: ServiceInstance = serde_json::from_value(json!({
        "id": id, "service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s",
        "manifest_id": "m", "status": "provisioning", "created_at": "2026-01-01T00:00:00.000Z"
    }))
    .expect("an instance");
    instance.operations.push(op);
    broker.records().insert(&instance).await.expect("stored");
}

/// Another replica holds the last operation of a stored instance now, for a long lease.
fn taken_over(body: &mut Value) {
    let op = body["operations"].as_array_mut().and_then(|ops| ops.last_mut()).expect("an operation");
    op["owner"] = json!("other");
    op["lease_until"] = json!(u64::MAX / 2);
}

async fn last_op(broker: &Arc<Broker>, id: &str) -> Operation {
    let instance = broker.records().get::<ServiceInstance>(id).await.expect("reads").expect("stored").record;
    instance.operations.last().cloned().expect("an operation")
}

#[tokio::test]
async fn a_claim_that_loses_its_race_takes_nothing() {
    let (store, dummy) = (Arc::new(SwitchableStore::new(true, Duration::ZERO)), Arc::new(DummyBackend::new()));
    let broker = broker(&store, &dummy);
    let mut op = Operation::start(OperationKind::Provision, true, broker.clock().now());
    (op.owner, op.lease_until) = (Some("gone".into()), 0);
    stored_with(&broker, "i", op).await;
    let instance = broker.records().get::<ServiceInstance>("i").await.expect("reads").expect("stored").record;
    // Between this replica's read and its write, another replica takes it over.
    store.race_next_replace(Collection::Instances, "i", taken_over);
    let claimed = broker.operations().claim(&instance, false).await.expect("the claim answers");
    assert!(claimed.is_none(), "the attempt that lost the race is not a claim: {claimed:?}");
    assert_eq!(last_op(&broker, "i").await.owner.as_deref(), Some("other"));
}

/// A backend call that succeeds at once and changes nothing.
struct Nothing;

#[async_trait]
impl Work for Nothing {
    const KIND: OperationKind = OperationKind::Provision;
    type Record = ServiceInstance;
    type Output = ();

    async fn call(&self, _: Call<'_, ServiceInstance>) -> Result<(), BackendError> {
        Ok(())
    }

    fn record(&self, _: &mut ServiceInstance, _: &Operation, _: &Result<(), BackendError>) {}
}

#[tokio::test]
async fn a_result_whose_write_lost_to_a_takeover_is_not_this_replicas_to_announce() {
    let (store, dummy) = (Arc::new(SwitchableStore::new(true, Duration::ZERO)), Arc::new(DummyBackend::new()));
    let broker = broker(&store, &dummy);
    let op = broker.operations().start_op(OperationKind::Provision, true);
    let op_id = op.id.clone();
    stored_with(&broker, "i", op).await;
    // The result's write meets the record of the replica that took the operation over.
    store.race_next_replace(Collection::Instances, "i", taken_over);
    let outcome = broker.operations().run(&Nothing, "i", &op_id, None).await.expect("runs");
    assert!(matches!(outcome, Outcome::LeaseLost), "the other replica records the result: {outcome:?}");
    let op = last_op(&broker, "i").await;
    assert!(op.in_progress() && op.owner.as_deref() == Some("other"), "{op:?}");
}

#[tokio::test(start_paused = true)]
async fn a_graceful_stop_hands_its_operations_back_for_another_replica_to_take_at_once() {
    let (store, dummy) = (Arc::new(SwitchableStore::new(true, Duration::ZERO)), Arc::new(DummyBackend::new()));
    let (first, second) = (broker(&store, &dummy), broker(&store, &dummy));
    fixture::register_plan(&first, "dummy", "x-esm-dummy: {mode: async, hold: [provision]}\n").await;
    let answer = first.instances().provision("i", fixture::provision_request(), true).await;
    assert!(matches!(answer, Ok(Answer::Accepted(_))), "{answer:?}");
    // The backend call has started and waits for the hold.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(second.operations().claim_orphaned_operations(false).await.expect("claims"), 0, "held by the first");

    let marker = || store.version(Collection::Registry, "_handed_back");
    assert_eq!(marker().await.expect("reads"), None);
    first.shutdown().await;
    let op = last_op(&first, "i").await;
    assert!(op.in_progress() && op.lease_until == 0, "handed back, not finished: {op:?}");
    assert!(marker().await.expect("reads").is_some(), "the other replicas are told");
    // No lease to wait for.
    assert_eq!(second.operations().claim_orphaned_operations(false).await.expect("claims"), 1, "taken over at once");
    dummy.holds().release(OperationKind::Provision, "i");
    for _ in 0..100 {
        if !last_op(&second, "i").await.in_progress() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last_op(&second, "i").await.state, crate::domain::operation::OperationState::Succeeded);
}
