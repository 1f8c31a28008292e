//! Engines under races and faults, at the broker: replicas placing at once onto an
//! engine never overfill it, on every store (the store's insert of a slot decides, as
//! for host ports); an engine that stops answering is seen `unreachable`, takes no
//! placements, leaves its instances' liveness `unknown`, needs repair after the
//! threshold, and comes back when it answers.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use esm::backend::dummy::DummyBackend;
use esm::backend::layered::{BackendLayer, Call, Layered, Work};
use esm::backend::{Backend, BackendError, Backends};
use esm::broker::{Broker, BrokerSettings, EngineFactory, FleetSettings, InstanceFilter, ScheduleChange};
use esm::clock::Clock;
use esm::domain::bounded::EngineName;
use esm::domain::engine::{EngineSpec, Source};
use esm::domain::liveness::LivenessStatus;
use esm::error::OsbError;
use esm::store::embedded::EmbeddedStore;
use esm::store::memory::MemoryStore;
use esm::store::mongo::MongoStore;
use esm::store::{Collection, Store, index};
use futures_util::StreamExt;
use serde_json::json;

use crate::support::catalog::{provision_request, register};
use crate::support::wait::eventually;
use esm::domain::event::EventKind;
use esm::domain::instance::ServiceInstance;
use esm::events::Filter;

/// An engine whose every call fails while it is unplugged, counting the deployments
/// made on it.
#[derive(Clone, Default)]
pub(crate) struct Plug {
    unplugged: Arc<AtomicBool>,
    provisions: Arc<AtomicUsize>,
}

impl Plug {
    /// Unplugs the engine (`true`) or plugs it back.
    pub(crate) fn unplug(&self, unplugged: bool) {
        self.unplugged.store(unplugged, Ordering::SeqCst);
    }

    /// How many provisions reached the engine.
    pub(crate) fn provisions(&self) -> usize {
        self.provisions.load(Ordering::SeqCst)
    }
}

impl BackendLayer for Plug {
    fn around<T: Send>(
        &self,
        _backend: &'static str,
        call: Call,
        work: impl Work<T>,
    ) -> impl Future<Output = Result<T, BackendError>> + Send {
        let unplugged = self.unplugged.load(Ordering::SeqCst);
        if !unplugged && matches!(call, Call::Provision) {
            self.provisions.fetch_add(1, Ordering::SeqCst);
        }
        async move { if unplugged { Err(BackendError::new("connection refused")) } else { work.await } }
    }
}

/// Dummy engines, each behind its own plug: one engine per name, shared by every
/// replica as a real engine is.
#[derive(Default)]
pub(crate) struct PluggedEngines(Mutex<HashMap<String, PluggedEngine>>);

/// An engine's plug, its backend, and the dummy behind them (its holds).
type PluggedEngine = (Plug, Arc<dyn Backend>, Arc<DummyBackend>);

impl PluggedEngines {
    pub(crate) fn plug(&self, name: &str) -> Plug {
        self.engine(name).0
    }

    /// The dummy engine `name` runs on.
    pub(crate) fn dummy(&self, name: &str) -> Arc<DummyBackend> {
        self.engine(name).2
    }

    fn engine(&self, name: &str) -> PluggedEngine {
        let mut engines = self.0.lock().expect("engines");
        let engine = engines.entry(name.to_owned()).or_insert_with(|| {
            let (plug, dummy) = (Plug::default(), Arc::new(DummyBackend::new()));
            let inner: Arc<dyn Backend> = dummy.clone();
            let backend: Arc<dyn Backend> = Arc::new(Layered::over(inner, plug.clone()));
            (plug, backend, dummy)
        });
        engine.clone()
    }
}

#[async_trait]
impl EngineFactory for PluggedEngines {
    async fn build(&self, name: &str, _spec: &EngineSpec) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(self.engine(name).1)
    }
}

pub(crate) fn broker(store: &Arc<dyn Store>, factory: Arc<PluggedEngines>, clock: Clock) -> Arc<Broker> {
    let engines =
        FleetSettings { factory, probe_interval: Duration::from_secs(5), repair_after: Duration::from_secs(60) };
    let settings = BrokerSettings { engines, clock, ..BrokerSettings::default() };
    Broker::new(Arc::clone(store), Backends::new().with(Arc::new(DummyBackend::new())), settings)
}

pub(crate) async fn declare(broker: &Arc<Broker>, name: &str, spec: serde_json::Value) {
    let spec: EngineSpec = serde_json::from_value(spec).expect("spec");
    let name = EngineName::parse(name).expect("name");
    broker.engines().put(&name, spec, Source::Api).await.expect("engine declared");
}

fn request_id(replica: usize, n: usize) -> String {
    format!("i-{replica}-{n}")
}

/// Eight replicas provision 40 instances at once onto the one engine the plan may use,
/// of capacity 10: exactly 10 are placed; the others are refused, naming the engine full.
async fn replicas_never_overfill_an_engine(store: Arc<dyn Store>) {
    let factory = Arc::new(PluggedEngines::default());
    let replicas: Vec<Arc<Broker>> = (0..8).map(|_| broker(&store, factory.clone(), Clock::system())).collect();
    register(
        &replicas[0],
        json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}),
        "x-esm-dummy: {mode: sync}",
    )
    .await;
    declare(&replicas[0], "e1", json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"instances": 10}}))
        .await;
    let mut attempts = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for n in 0..5 {
            let replica = Arc::clone(replica);
            attempts.push(tokio::spawn(async move {
                replica.instances().provision(&request_id(r, n), provision_request(), false).await
            }));
        }
    }
    let (mut placed, mut full) = (0, 0);
    for attempt in attempts {
        match attempt.await.expect("provision task") {
            Ok(_) => placed += 1,
            Err(OsbError::Unprocessable(why)) => {
                assert!(why.contains("e1:"), "{why}");
                full += 1;
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    assert_eq!((placed, full), (10, 30));
    let listed: Vec<_> = replicas[0]
        .instances()
        .et_instances(&InstanceFilter::default())
        .await
        .expect("listing")
        .map(|i| i.expect("listed"))
        .collect::<Vec<_>>()
        .await;
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|i| i.engine == "e1"));
    let slots = index::Query::new([(index::TYPE, "slot")], 100);
    assert_eq!(store.page_ids(Collection::Resources, &slots).await.expect("slots").len(), 10, "one slot each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_overfill_an_engine_on_the_memory_store() {
    replicas_never_overfill_an_engine(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_overfill_an_engine_on_the_embedded_store() {
    let dir = tempfile::Builder::new().prefix("esm-placement-").tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), esm::store::embedded::DEFAULT_CACHE_BYTES).expect("opens");
    replicas_never_overfill_an_engine(Arc::new(store)).await;
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_overfill_an_engine_on_mongodb() {
    let uri = std::env::var("ESM_TEST_MONGO_URI").expect("ESM_TEST_MONGO_URI names the MongoDB server");
    let db = format!("esm_placement_{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(MongoStore::connect(&uri, &db).await.expect("MongoDB URI is valid"));
    replicas_never_overfill_an_engine(store.clone()).await;
    store.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_engine_that_stops_answering_is_unreachable_then_needs_repair_then_comes_back() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let factory = Arc::new(PluggedEngines::default());
    let broker = broker(&store, factory.clone(), Clock::tokio());
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), "x-esm-dummy: {mode: sync}")
        .await;
    for name in ["e1", "e2"] {
        declare(&broker, name, json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    }
    let e1 = EngineName::parse("e1").expect("name");
    broker.engines().probe_round().await.expect("probes");
    assert_eq!(broker.engines().get(&e1).await.expect("e1").state.as_str(), "active");
    // Spread puts the first instance on e1 (the names break the tie).
    broker.instances().provision("on-e1", provision_request(), false).await.expect("placed");

    factory.plug("e1").unplug(true);
    broker.engines().probe_round().await.expect("probes");
    let view = broker.engines().get(&e1).await.expect("e1");
    assert_eq!(view.state.as_str(), "unreachable");
    assert!(view.problem.as_deref().is_some_and(|p| p.contains("connection refused")), "{view:?}");
    // No placement there: every new instance goes to e2.
    for n in 0..3 {
        broker.instances().provision(&format!("i-{n}"), provision_request(), false).await.expect("placed");
        let fetched = broker.instances().et_instance(&format!("i-{n}")).await.expect("instance");
        assert_eq!(fetched.engine, "e2");
    }
    // Its instance's liveness is not guessed: unknown, because of the engine.
    broker.liveness().liveness_round().await.expect("a liveness round");
    let (_, liveness) = broker.liveness().of("on-e1").await.expect("liveness");
    assert_eq!(liveness.status, LivenessStatus::Unknown);
    assert!(liveness.reason.contains("engine e1 unreachable"), "{}", liveness.reason);

    tokio::time::sleep(Duration::from_secs(61)).await;
    broker.engines().probe_round().await.expect("probes");
    assert_eq!(broker.engines().get(&e1).await.expect("e1").state.as_str(), "needs_repair");
    // Answering again is not enough: an operator clears it.
    factory.plug("e1").unplug(false);
    broker.engines().probe_round().await.expect("probes");
    assert_eq!(broker.engines().get(&e1).await.expect("e1").state.as_str(), "needs_repair");
    broker.engines().change_schedule(&e1, ScheduleChange::Uncordon).await.expect("uncordon");
    broker.engines().probe_round().await.expect("probes");
    assert_eq!(broker.engines().get(&e1).await.expect("e1").state.as_str(), "active");
}

/// A slot planted as a process that died between taking it and writing its instance
/// would leave it.
fn slot(n: u32, owner: &str, at: esm::domain::time::Timestamp) -> esm::domain::resource::Resource {
    esm::domain::resource::Resource {
        id: format!("slot/e1/{n:07}"),
        kind: "slot".into(),
        name: "e1".into(),
        owner: owner.into(),
        backend: "esm".into(),
        state: esm::domain::resource::ResourceState::InUse,
        created_at: at,
        updated_at: at,
        port: None,
    }
}

#[tokio::test(start_paused = true)]
async fn reconciliation_gives_back_room_no_deployment_holds_once_it_is_old() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (clock, records) = (Clock::tokio(), esm::store::Records::new(Arc::clone(&store)));
    let broker = broker(&store, Arc::new(PluggedEngines::default()), clock);
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), "x-esm-dummy: {mode: sync}")
        .await;
    declare(&broker, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}, "capacity": {"instances": 10}})).await;
    records.insert(&slot(7, "died-before-its-record", clock.timestamp())).await.expect("planted");
    broker.instances().provision("lives", provision_request(), false).await.expect("placed");

    tokio::time::sleep(Duration::from_secs(121)).await;
    records.insert(&slot(8, "being-provisioned-now", clock.timestamp())).await.expect("planted");
    broker.inventory().reconcile().await.expect("a round");
    let slots = index::Query::new([(index::TYPE, "slot")], 100);
    let mut left = store.page_ids(Collection::Resources, &slots).await.expect("slots");
    left.sort();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"slot/e1/0000008".to_owned()), "a young slot stays: {left:?}");
    assert!(!left.contains(&"slot/e1/0000007".to_owned()), "the abandoned one went: {left:?}");
}

#[tokio::test(start_paused = true)]
async fn reconciling_the_default_engine_leaves_another_engines_instances_alone() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let broker = broker(&store, Arc::new(PluggedEngines::default()), Clock::tokio());
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), "x-esm-dummy: {mode: sync}")
        .await;
    declare(&broker, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    broker.instances().provision("on-e1", provision_request(), false).await.expect("placed");
    // Reconciliation looks only at what was recorded before its listing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.inventory().reconcile().await.expect("a round");
    let gone = index::Query::new([(index::STATE, "gone")], 100);
    assert_eq!(store.page_ids(Collection::Resources, &gone).await.expect("resources"), Vec::<String>::new());
    let instance = broker.instances().et_instance("on-e1").await.expect("still there");
    assert_eq!(instance.engine, "e1");
}

/// The deployments dummy engine `name` holds.
async fn held_on(engines: &PluggedEngines, name: &str) -> Vec<String> {
    let held = engines.dummy(name).held(None).await.expect("the dummy answers");
    held.into_iter().filter(|h| h.kind == "deployment").map(|h| h.owner).collect()
}

#[tokio::test(start_paused = true)]
async fn an_engine_that_answers_again_is_reconciled_before_it_takes_placements() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let broker = broker(&store, engines.clone(), Clock::tokio());
    broker.spawn_event_log();
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), "x-esm-dummy: {mode: sync}")
        .await;
    declare(&broker, "e1", json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    broker.instances().provision("kept", provision_request(), false).await.expect("placed");
    broker.instances().provision("forgotten", provision_request(), false).await.expect("placed");
    // What esm forgets while the engine is away stays on it: an orphan.
    esm::store::Records::new(Arc::clone(&store)).delete::<ServiceInstance>("forgotten", None).await.expect("gone");
    let e1 = EngineName::parse("e1").expect("name");
    engines.plug("e1").unplug(true);
    broker.engines().probe_round().await.expect("probes");
    assert_eq!(broker.engines().get(&e1).await.expect("e1").state.as_str(), "unreachable");
    assert_eq!(held_on(&engines, "e1").await, ["forgotten", "kept"]);

    engines.plug("e1").unplug(false);
    broker.engines().probe_round().await.expect("probes");
    assert_eq!(broker.engines().get(&e1).await.expect("e1").state.as_str(), "active");
    assert_eq!(held_on(&engines, "e1").await, ["kept"], "the orphan went before the engine took placements");
    let removed = eventually(Duration::from_secs(10), "the removal's event", || async {
        let filter = Filter { kind: Some(EventKind::InstanceRemoved), ..Filter::default() };
        let events = broker.events().page(&filter, 0, 10).await.expect("events");
        events.into_iter().next()
    })
    .await;
    assert_eq!((removed.instance_id.as_deref(), removed.engine.as_deref()), (Some("forgotten"), Some("e1")));
}

#[tokio::test(start_paused = true)]
async fn reconciliation_removes_orphans_on_every_declared_engine_and_leaves_what_esm_knows() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let engines = Arc::new(PluggedEngines::default());
    let broker = broker(&store, engines.clone(), Clock::tokio());
    register(&broker, json!({"metadata": {"placement": {"requires": {"zone": "a"}}}}), "x-esm-dummy: {mode: sync}")
        .await;
    for name in ["e1", "e2"] {
        declare(&broker, name, json!({"backend": "dummy", "labels": {"zone": "a"}})).await;
    }
    broker.engines().probe_round().await.expect("probes");
    for n in 0..4 {
        broker.instances().provision(&format!("i-{n}"), provision_request(), false).await.expect("placed");
    }
    let records = esm::store::Records::new(Arc::clone(&store));
    for id in ["i-0", "i-1"] {
        records.delete::<ServiceInstance>(id, None).await.expect("forgotten");
    }
    // Reconciliation looks only at what was recorded before its listing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(broker.inventory().reconcile().await.expect("a round"), 2);
    let mut left = held_on(&engines, "e1").await;
    left.extend(held_on(&engines, "e2").await);
    left.sort();
    assert_eq!(left, ["i-2", "i-3"]);
}

#[tokio::test]
async fn instances_an_esm_before_engines_wrote_count_on_the_default_engine_after_the_start() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    // As esm 0.x left them: indexed (version 2 done), but without the engine.
    let body = json!({
        "id": "old", "service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s",
        "manifest_id": "m", "status": "provisioned", "created_at": "2026-01-01T00:00:00.000Z",
        "_ix": {"live": ["1"], "service_id": ["s"], "plan_id": ["p"]}
    });
    store.insert(Collection::Instances, "old", body).await.expect("stored");
    store.insert(Collection::Registry, "_indexed_instances", json!({"index_version": 2})).await.expect("marked");
    assert!(store.counts(Collection::Instances, index::ENGINE).await.expect("counts").is_empty());
    let broker = broker(&store, Arc::new(PluggedEngines::default()), Clock::system());
    broker.operations().claim_orphaned_operations(true).await.expect("the start's sweep");
    let counted = store.counts(Collection::Instances, index::ENGINE).await.expect("counts");
    assert_eq!(counted, [("default".to_owned(), 1)]);
    let default = broker.engines().get(&EngineName::parse("default").expect("name")).await.expect("default");
    assert_eq!(default.instances, 1);
}
