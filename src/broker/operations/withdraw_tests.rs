//! A 503 means it did not happen (`withdraw.rs`), checked under a store that fails
//! right after an operation's write, or loses that write's answer: for every operation
//! kind, each way of answering, and the store failing from each call after the write on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::backend::Backends;
use crate::backend::dummy::DummyBackend;
use crate::broker::{Answer, Broker, BrokerSettings, fixture};
use crate::domain::binding::Binding;
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::operation::{OperationKind, OperationState, Tracked};
use crate::error::OsbError;
use crate::store::switchable::SwitchableStore;
use crate::store::{Collection, Record};
use crate::wire::DeleteQuery;

const LEASE: Duration = Duration::from_secs(30);

/// A broker on `store` with service `s`, plan `p`, whose dummy manifest runs either way
/// and logs every backend call to `calls`.
async fn broker(store: Arc<SwitchableStore>, calls: &Path) -> Arc<Broker> {
    let settings = BrokerSettings { operation_lease: LEASE, ..fixture::settings() };
    let broker = Broker::new(store, Backends::new().with(Arc::new(DummyBackend::new())), settings);
    let content = format!("x-esm-dummy: {{mode: either, call_log: {:?}}}\n", calls.display());
    fixture::register_plan(&broker, "dummy", &content).await;
    broker
}

/// A broker (see [`broker`]) on a store of its own, logging its calls into a fresh
/// temp dir, which lives as long as the rig.
struct Rig {
    store: Arc<SwitchableStore>,
    broker: Arc<Broker>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("calls.jsonl");
    let store = Arc::new(SwitchableStore::default());
    let broker = broker(Arc::clone(&store), &path).await;
    Rig { store, broker, path, _dir: dir }
}

/// How many backend calls of `kind` the dummy made.
fn calls(path: &Path, kind: OperationKind) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines = text.lines().map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"));
    lines.filter(|line| line["kind"] == json!(kind.as_str())).count()
}

fn query(accepts_incomplete: bool) -> DeleteQuery {
    serde_json::from_value(json!({"service_id": "s", "plan_id": "p", "accepts_incomplete": accepts_incomplete}))
        .expect("a query")
}

/// Sends a request of `kind` on instance `i` (binding `b`); the answer, as the status
/// it is sent with.
async fn request(broker: &Arc<Broker>, kind: OperationKind, accepts_incomplete: bool) -> Result<u16, OsbError> {
    let provision = json!({"service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s"});
    let bind = json!({"service_id": "s", "plan_id": "p"});
    let update = json!({"service_id": "s", "parameters": {"size": 2}});
    let status = |accepted: bool| if accepted { 202 } else { 200 };
    Ok(match kind {
        OperationKind::Provision => status(matches!(
            broker.instances().provision("i", parse(provision), accepts_incomplete).await?,
            Answer::Accepted(_)
        )),
        OperationKind::Update => status(matches!(
            broker.instances().update("i", parse(update), accepts_incomplete).await?,
            Answer::Accepted(_)
        )),
        OperationKind::Deprovision => status(matches!(
            broker.instances().deprovision("i", &query(accepts_incomplete)).await?,
            Answer::Accepted(_)
        )),
        OperationKind::Bind => status(matches!(
            broker.bindings().bind("i", "b", parse(bind), accepts_incomplete).await?,
            Answer::Accepted(_)
        )),
        OperationKind::Unbind => {
            status(matches!(broker.bindings().unbind("i", "b", &query(accepts_incomplete)).await?, Answer::Accepted(_)))
        }
        OperationKind::Relocate => unreachable!("no platform request moves an instance"),
    })
}

fn parse<T: serde::de::DeserializeOwned>(request: Value) -> T {
    serde_json::from_value(request).expect("a request")
}

/// Lets every run end and the sweeper take over whatever is left, for five leases.
async fn settle(broker: &Arc<Broker>) {
    for _ in 0..10 {
        tokio::time::sleep(LEASE / 2).await;
        broker.operations().claim_orphaned_operations(false).await.expect("the store answers again");
    }
    tokio::time::sleep(LEASE).await;
}

/// The operations of record `T` `id` (none if it is not stored).
async fn operations<T: Record + Tracked>(broker: &Arc<Broker>, id: &str) -> Vec<(OperationKind, OperationState)> {
    let found = broker.records().get::<T>(id).await.expect("reads");
    found.map(|v| v.record.operations().iter().map(|op| (op.kind, op.state)).collect()).unwrap_or_default()
}

struct Case {
    kind: OperationKind,
    accepts_incomplete: bool,
    lose_answer: bool,
    /// Calls answered after the operation's write before the store fails.
    pass: usize,
}

/// Runs `case` on a fresh broker: what it was answered, and how often the backend ran it.
async fn run(case: &Case, dir: &Path) -> (Result<u16, OsbError>, usize, Vec<(OperationKind, OperationState)>) {
    let path: PathBuf = dir.join(format!(
        "{}-{}-{}-{}.jsonl",
        case.kind.as_str(),
        case.accepts_incomplete,
        case.lose_answer,
        case.pass
    ));
    let store = Arc::new(SwitchableStore::default());
    let broker = broker(Arc::clone(&store), &path).await;
    let needs_instance = case.kind != OperationKind::Provision;
    if needs_instance {
        assert_eq!(request(&broker, OperationKind::Provision, false).await.expect("provisions"), 200);
    }
    if case.kind == OperationKind::Unbind {
        assert_eq!(request(&broker, OperationKind::Bind, false).await.expect("binds"), 200);
    }
    let collection = match case.kind {
        OperationKind::Bind | OperationKind::Unbind => Collection::Bindings,
        _ => Collection::Instances,
    };
    let before = calls(&path, case.kind);
    // Three failures: the request's own retries outlast them, well within its deadline.
    store.trip_on_write(collection, case.lose_answer, case.pass, 3);
    let answer = request(&broker, case.kind, case.accepts_incomplete).await;
    store.set_down(false);
    settle(&broker).await;
    let ran = calls(&path, case.kind) - before;
    let ops = match collection {
        Collection::Bindings => operations::<Binding>(&broker, "b").await,
        _ => operations::<ServiceInstance>(&broker, "i").await,
    };
    (answer, ran, ops)
}

#[tokio::test(start_paused = true)]
async fn a_request_answered_503_never_runs_and_one_answered_202_runs_once() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let kinds = [
        OperationKind::Provision,
        OperationKind::Update,
        OperationKind::Deprovision,
        OperationKind::Bind,
        OperationKind::Unbind,
    ];
    let mut answered_503 = 0;
    for kind in kinds {
        for accepts_incomplete in [true, false] {
            for lose_answer in [false, true] {
                for pass in 0..6 {
                    let case = Case { kind, accepts_incomplete, lose_answer, pass };
                    let (answer, ran, ops) = run(&case, dir.path()).await;
                    let what = format!(
                        "{} accepts_incomplete={accepts_incomplete} lose_answer={lose_answer} pass={pass}: \
                         {answer:?}, ran {ran}, operations {ops:?}",
                        kind.as_str()
                    );
                    assert!(
                        ops.iter().all(|(_, state)| *state != OperationState::InProgress),
                        "everything ended: {what}"
                    );
                    match answer {
                        Err(OsbError::Unavailable(_)) => {
                            answered_503 += 1;
                            assert_eq!(ran, 0, "a 503 never runs: {what}");
                        }
                        Ok(_) => assert_eq!(ran, 1, "an acknowledged operation runs once: {what}"),
                        // Not a 503: whether it ran is not promised (the backend was
                        // called and the outcome not recorded is run again: at least once).
                        Err(_) => {}
                    }
                }
            }
        }
    }
    assert!(answered_503 >= 40, "most cases fail with the store: {answered_503}");
}

#[tokio::test(start_paused = true)]
async fn a_store_away_past_the_deadline_gets_no_503_and_the_withdrawal_lands_when_it_is_back() {
    let Rig { store, broker, path, _dir } = rig().await;
    assert_eq!(request(&broker, OperationKind::Provision, false).await.expect("provisions"), 200);

    // The deprovision's write is made but its answer lost, and the store stays away.
    store.trip_on_write(Collection::Instances, true, 0, usize::MAX);
    let answer = request(&broker, OperationKind::Deprovision, true).await;
    assert!(matches!(&answer, Err(OsbError::Internal(d)) if d.contains("poll last_operation")), "{answer:?}");
    // Back within the lease: the background withdrawal lands before anyone takes it over.
    tokio::time::sleep(LEASE / 3).await;
    store.set_down(false);
    settle(&broker).await;
    assert_eq!(calls(&path, OperationKind::Deprovision), 0);
    let instance = broker.records().get::<ServiceInstance>("i").await.expect("reads").expect("kept").record;
    assert_eq!(instance.status, InstanceStatus::Provisioned);
    let last = instance.operations.last().expect("the deprovision");
    assert_eq!((last.kind, last.state), (OperationKind::Deprovision, OperationState::Failed));
}

#[tokio::test(start_paused = true)]
async fn a_provision_whose_insert_lost_its_answer_leaves_a_tombstone_and_can_be_sent_again() {
    let Rig { store, broker, path, _dir } = rig().await;
    store.trip_on_write(Collection::Instances, true, 0, 1);
    let answer = request(&broker, OperationKind::Provision, true).await;
    assert!(matches!(answer, Err(OsbError::Unavailable(_))), "{answer:?}");
    settle(&broker).await;
    assert_eq!(calls(&path, OperationKind::Provision), 0);
    assert_eq!(request(&broker, OperationKind::Provision, true).await.expect("provisions"), 202);
    settle(&broker).await;
    assert_eq!(calls(&path, OperationKind::Provision), 1);
    let ops = operations::<ServiceInstance>(&broker, "i").await;
    assert_eq!(
        ops,
        [(OperationKind::Provision, OperationState::Failed), (OperationKind::Provision, OperationState::Succeeded)]
    );
}
