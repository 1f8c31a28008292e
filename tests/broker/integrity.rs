//! The rules that span records hold under concurrency, on every store: a plan has one
//! manifest, plan ids and service names are unique, an instance's plan, service and
//! manifest exist while it lives, and its bindings do not outlive it. Each race runs many rounds against the broker itself
//! (no HTTP, so rounds are cheap), on the memory, embedded and MongoDB stores.
//!
//! The MongoDB run needs a server: set `ESM_TEST_MONGO_URI` (CI starts one and sets it).

use std::sync::Arc;

use esm::backend::Backends;
use esm::backend::dummy::DummyBackend;
use esm::broker::{Answer, Broker, BrokerSettings, InstanceFilter, Registered};
use esm::domain::catalog::Service;
use esm::domain::instance::ServiceInstance;
use esm::domain::manifest::Manifest;
use esm::error::OsbError;
use esm::store::embedded::EmbeddedStore;
use esm::store::memory::MemoryStore;
use esm::store::mongo::MongoStore;
use esm::store::{Records, Store};
use esm::wire::{BindRequest, DeleteQuery, ProvisionRequest, UpdateRequest};
use futures_util::TryStreamExt;
use serde_json::json;

/// Rounds of each race per store.
const ROUNDS: usize = 200;

fn broker(store: Arc<dyn Store>) -> Arc<Broker> {
    Broker::new(store, Backends::new().with(Arc::new(DummyBackend::new())), BrokerSettings::default())
}

fn service(id: &str, name: &str, plans: &[&str]) -> Service {
    let plans: Vec<_> = plans.iter().map(|p| json!({"id": p, "name": p, "description": "d"})).collect();
    serde_json::from_value(json!({"id": id, "name": name, "description": "d", "bindable": true,
                                  "plan_updateable": true, "plans": plans}))
    .expect("service")
}

fn manifest(service_id: &str, plan_id: &str) -> Manifest {
    Manifest {
        id: String::new(),
        service_id: service_id.into(),
        plan_id: plan_id.into(),
        manifest_type: "dummy".into(),
        manifest_content: "x-esm-dummy: {mode: sync}\n".into(),
        endpoints: None,
        config: None,
    }
}

fn provision_request(service_id: &str, plan_id: &str) -> ProvisionRequest {
    serde_json::from_value(json!({"service_id": service_id, "plan_id": plan_id,
                                  "organization_guid": "o", "space_guid": "s"}))
    .expect("request")
}

fn delete_query(service_id: &str, plan_id: &str) -> DeleteQuery {
    DeleteQuery {
        service_id: Some(service_id.parse().expect("a service id")),
        plan_id: Some(plan_id.parse().expect("a plan id")),
        ..Default::default()
    }
}

/// A service `s{n}` with plans `p{n}` and `q{n}`, each with a manifest `m{n}` / `n{n}`.
async fn register_round(broker: &Arc<Broker>, n: usize) {
    let (s, p, q) = (format!("s{n}"), format!("p{n}"), format!("q{n}"));
    broker.registrar().register_service(service(&s, &format!("svc-{n}"), &[&p, &q])).await.expect("service");
    broker.registrar().register_manifest(&format!("m{n}"), manifest(&s, &p)).await.expect("manifest of p");
    broker.registrar().register_manifest(&format!("n{n}"), manifest(&s, &q)).await.expect("manifest of q");
}

/// After a race: the instance either lives with its plan, service and manifest in
/// place (and can be deprovisioned), or does not live at all. Returns whether it lived.
async fn instance_is_whole_or_absent(broker: &Arc<Broker>, id: &str, service_id: &str, plan_id: &str) -> bool {
    let lives = broker.instances().fetch(id).await.is_ok();
    let listing =
        broker.instances().et_instances(&InstanceFilter::default()).await.expect("the instance listing answers");
    let listed: Vec<_> = listing.try_collect().await.expect("the instance listing answers after every race");
    assert_eq!(listed.iter().any(|i| i.context["id"] == id), lives, "{id}: listing and fetch disagree");
    if lives {
        let catalog = broker.registrar().catalog().await.expect("catalog");
        let service = catalog.services.iter().find(|s| s.id == service_id);
        assert!(service.is_some_and(|s| s.plan(plan_id).is_some()), "{id} lives but its plan {plan_id} is gone");
        let manifests = broker.registrar().list_manifests().await.expect("manifests");
        assert!(manifests.iter().any(|m| m.plan_id == plan_id), "{id} lives but its plan has no manifest");
        let gone = broker.instances().deprovision(id, &delete_query(service_id, plan_id)).await;
        assert!(matches!(gone, Ok(Answer::Done(_))), "{id} cannot be deprovisioned: {gone:?}");
    }
    // The next round starts from an empty catalog, so rounds cost the same.
    match broker.registrar().delete_service(service_id).await {
        Ok(()) | Err(OsbError::NotFound(_)) => {}
        Err(e) => panic!("{id}: the service cannot be deleted once nothing uses it: {e:?}"),
    }
    lives
}

/// A provision racing the removal of its plan: never both succeed.
async fn provision_races_removal(broker: &Arc<Broker>, label: &str, remove: impl Fn(usize) -> Removal) {
    let (mut provisions, mut removals) = (0, 0);
    let started = std::time::Instant::now();
    for n in 0..ROUNDS {
        register_round(broker, n).await;
        let (s, p) = (format!("s{n}"), format!("p{n}"));
        let id = format!("{label}-i{n}");
        let provision = {
            let (broker, id, s, p) = (broker.clone(), id.clone(), s.clone(), p.clone());
            tokio::spawn(async move { broker.instances().provision(&id, provision_request(&s, &p), false).await })
        };
        let removal = {
            let broker = broker.clone();
            let removal = remove(n);
            tokio::spawn(async move { removal.run(&broker).await })
        };
        let provisioned = provision.await.expect("joined");
        let removed = removal.await.expect("joined");
        assert!(!(provisioned.is_ok() && removed.is_ok()), "round {n}: the provision and the removal both succeeded");
        for error in [provisioned.as_ref().err(), removed.as_ref().err()].into_iter().flatten() {
            assert!(
                error.status().is_client_error(),
                "round {n}: {error:?} (provision: {:?}, removal: {:?})",
                provisioned.is_ok(),
                removed.is_ok()
            );
        }
        let lived = instance_is_whole_or_absent(broker, &id, &s, &p).await;
        assert_eq!(lived, provisioned.is_ok(), "round {n}: the provision's answer and the record disagree");
        provisions += usize::from(provisioned.is_ok());
        removals += usize::from(removed.is_ok());
    }
    eprintln!(
        "{label}: {ROUNDS} rounds in {:?}, provision won {provisions}, removal won {removals}",
        started.elapsed()
    );
}

/// What removes plan `p{n}`.
enum Removal {
    Manifest(usize),
    Service(usize),
    DropPlan(usize),
}

impl Removal {
    async fn run(self, broker: &Arc<Broker>) -> Result<(), OsbError> {
        match self {
            Self::Manifest(n) => broker.registrar().delete_manifest(&format!("m{n}")).await,
            Self::Service(n) => broker.registrar().delete_service(&format!("s{n}")).await,
            Self::DropPlan(n) => broker
                .registrar()
                .register_service(service(&format!("s{n}"), &format!("svc-{n}"), &[&format!("q{n}")]))
                .await
                .map(|_| ()),
        }
    }
}

/// An update moving an instance to plan `p{n}` racing the deletion of that plan's manifest.
async fn update_races_manifest_deletion(broker: &Arc<Broker>) {
    let started = std::time::Instant::now();
    let mut updates = 0;
    for n in 0..ROUNDS {
        register_round(broker, n).await;
        let (s, p, q) = (format!("s{n}"), format!("p{n}"), format!("q{n}"));
        let id = format!("upd-i{n}");
        broker.instances().provision(&id, provision_request(&s, &q), false).await.expect("provisioned on q");
        let update = {
            let (broker, id, s, p) = (broker.clone(), id.clone(), s.clone(), p.clone());
            let req: UpdateRequest = serde_json::from_value(json!({"service_id": s, "plan_id": p})).expect("request");
            tokio::spawn(async move { broker.instances().update(&id, req, false).await })
        };
        let deletion = {
            let broker = broker.clone();
            tokio::spawn(async move { broker.registrar().delete_manifest(&format!("m{n}")).await })
        };
        let updated = update.await.expect("joined");
        let deleted = deletion.await.expect("joined");
        assert!(!(updated.is_ok() && deleted.is_ok()), "round {n}: the update and the deletion both succeeded");
        updates += usize::from(updated.is_ok());
        let on = if updated.is_ok() { &p } else { &q };
        assert!(instance_is_whole_or_absent(broker, &id, &s, on).await, "round {n}: the instance vanished");
    }
    eprintln!("update: {ROUNDS} rounds in {:?}, update won {updates}", started.elapsed());
}

/// Concurrent registrations that only one may win.
async fn registrations_have_one_winner(broker: &Arc<Broker>) {
    const RACERS: usize = 8;
    let started = std::time::Instant::now();
    for n in 0..ROUNDS / 5 {
        let plan = format!("r{n}");
        broker
            .registrar()
            .register_service(service(&format!("rs{n}"), &format!("reg-{n}"), &[&plan]))
            .await
            .expect("service");
        let mut manifests = Vec::new();
        let mut names = Vec::new();
        let mut plan_ids = Vec::new();
        for k in 0..RACERS {
            let (b, svc, plan) = (broker.clone(), format!("rs{n}"), plan.clone());
            manifests.push(tokio::spawn(async move {
                b.registrar().register_manifest(&format!("rm{n}-{k}"), manifest(&svc, &plan)).await
            }));
            let b = broker.clone();
            let same_name = service(&format!("name{n}-{k}"), &format!("name-{n}"), &[&format!("np{n}-{k}")]);
            names.push(tokio::spawn(async move { b.registrar().register_service(same_name).await }));
            let b = broker.clone();
            let same_plan = service(&format!("plan{n}-{k}"), &format!("plan-{n}-{k}"), &[&format!("shared{n}")]);
            plan_ids.push(tokio::spawn(async move { b.registrar().register_service(same_plan).await }));
        }
        for (what, racers) in [("manifest for one plan", manifests), ("service name", names), ("plan id", plan_ids)] {
            let mut created = 0;
            for racer in racers {
                match racer.await.expect("joined") {
                    Ok(Registered::Created) => created += 1,
                    Ok(Registered::Existing) => panic!("round {n}: a {what} racer replaced another"),
                    Err(OsbError::Conflict(_)) => {}
                    Err(e) => panic!("round {n}: a {what} racer failed: {e:?}"),
                }
            }
            assert_eq!(created, 1, "round {n}: {created} racers registered the same {what}");
        }
        let manifests = broker.registrar().list_manifests().await.expect("manifests");
        assert_eq!(manifests.iter().filter(|m| m.plan_id == plan).count(), 1, "round {n}: one manifest per plan");
    }
    let catalog = broker.registrar().catalog().await.expect("catalog");
    let mut names: Vec<_> = catalog.services.iter().map(|s| s.name.as_str()).collect();
    let mut plans: Vec<_> = catalog.services.iter().flat_map(|s| s.plans.iter().map(|p| p.id.as_str())).collect();
    let (all_names, all_plans) = (names.len(), plans.len());
    names.sort_unstable();
    names.dedup();
    plans.sort_unstable();
    plans.dedup();
    assert_eq!((names.len(), plans.len()), (all_names, all_plans), "the catalog holds duplicates");
    eprintln!("registrations: {} rounds of 3 x {RACERS} racers in {:?}", ROUNDS / 5, started.elapsed());
}

/// A bind (even rounds) or an unbind (odd rounds) racing the deprovision of its
/// instance: no 5xx, and never a binding still bound to an instance that is gone.
async fn bindings_race_deprovision(broker: &Arc<Broker>) {
    let started = std::time::Instant::now();
    let (mut binding_won, mut deprovision_won) = (0, 0);
    // A quarter of the others' rounds: each is a provision, a race and a clean-up,
    // and on MongoDB the whole suite already takes minutes.
    for n in 0..ROUNDS / 4 {
        register_round(broker, n).await;
        let (s, p, id) = (format!("s{n}"), format!("p{n}"), format!("bind-i{n}"));
        let bind_request =
            || -> BindRequest { serde_json::from_value(json!({"service_id": s, "plan_id": p})).expect("request") };
        broker.instances().provision(&id, provision_request(&s, &p), false).await.expect("provisioned");
        let unbinding = n % 2 == 1;
        if unbinding {
            broker.bindings().bind(&id, "b", bind_request(), false).await.expect("bound before the race");
        }
        let binding = {
            let (broker, id, req, query) = (broker.clone(), id.clone(), bind_request(), delete_query(&s, &p));
            tokio::spawn(async move {
                if unbinding {
                    broker.bindings().unbind(&id, "b", &query).await.map(|_| ())
                } else {
                    broker.bindings().bind(&id, "b", req, false).await.map(|_| ())
                }
            })
        };
        let deprovision = {
            let (broker, id, query) = (broker.clone(), id.clone(), delete_query(&s, &p));
            tokio::spawn(async move { broker.instances().deprovision(&id, &query).await })
        };
        let bound = binding.await.expect("joined");
        let deprovisioned = deprovision.await.expect("joined");
        for error in [bound.as_ref().err(), deprovisioned.as_ref().err()].into_iter().flatten() {
            assert!(error.status().is_client_error(), "round {n}: {error:?}");
        }
        let instance_lives = broker.instances().fetch(&id).await.is_ok();
        let binding_lives = broker.bindings().fetch(&id, "b").await.is_ok();
        assert!(instance_lives || !binding_lives, "round {n}: binding b is bound to {id}, which is gone");
        binding_won += usize::from(bound.is_ok());
        deprovision_won += usize::from(deprovisioned.is_ok());
        if instance_lives {
            if binding_lives {
                broker.bindings().unbind(&id, "b", &delete_query(&s, &p)).await.expect("unbinds after the race");
            }
            broker.instances().deprovision(&id, &delete_query(&s, &p)).await.expect("deprovisions after the race");
        }
        broker.registrar().delete_service(&s).await.expect("the service goes once nothing uses it");
    }
    eprintln!(
        "bind/unbind vs deprovision: {} rounds in {:?}, binding won {binding_won}, deprovision won {deprovision_won}",
        ROUNDS / 4,
        started.elapsed()
    );
}

async fn every_race(store: Arc<dyn Store>) {
    let broker = broker(store);
    provision_races_removal(&broker, "manifest", Removal::Manifest).await;
    provision_races_removal(&broker, "service", Removal::Service).await;
    provision_races_removal(&broker, "drop-plan", Removal::DropPlan).await;
    update_races_manifest_deletion(&broker).await;
    registrations_have_one_winner(&broker).await;
    bindings_race_deprovision(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_on_the_memory_store() {
    every_race(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_on_the_embedded_store() {
    let dir = tempfile::Builder::new().prefix("esm-integrity-").tempdir().expect("temp dir");
    every_race(Arc::new(EmbeddedStore::open(dir.path(), esm::store::embedded::DEFAULT_CACHE_BYTES).expect("opens")))
        .await;
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariants_hold_on_mongodb() {
    let uri = std::env::var("ESM_TEST_MONGO_URI").expect("ESM_TEST_MONGO_URI names the MongoDB server");
    let db = format!("esm_integrity_{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(MongoStore::connect(&uri, &db).await.expect("MongoDB URI is valid"));
    every_race(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn records_of_esm_0_1_are_moved_in_and_an_instance_without_its_manifest_is_deprovisioned() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let records = Records::new(store.clone());
    // esm 0.1 kept one record per service and manifest; the race it allowed could
    // leave an instance whose manifest is gone.
    records.insert(&service("s", "legacy", &["p", "q"])).await.expect("legacy service");
    let mut kept = manifest("s", "q");
    kept.id = "m-q".into();
    records.insert(&kept).await.expect("legacy manifest");
    let orphan: ServiceInstance = serde_json::from_value(json!({
        "id": "i", "service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "s",
        "metadata": {"labels": {"esm/manifest_id": "m-p", "esm/backend": "dummy"}},
        "manifest_id": "m-p", "status": "provisioned", "created_at": "2026-01-01T00:00:00Z"
    }))
    .expect("an esm 0.1 instance");
    records.insert(&orphan).await.expect("legacy instance");

    let broker = broker(store);
    let catalog = broker.registrar().catalog().await.expect("catalog");
    assert_eq!(catalog.services.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["s"]);
    assert_eq!(broker.registrar().manifest_by_id("m-q").await.expect("moved in"), kept);
    let gone = broker.instances().deprovision("i", &delete_query("s", "p")).await;
    assert!(matches!(gone, Ok(Answer::Done(_))), "{gone:?}");
    assert!(broker.instances().fetch("i").await.is_err(), "deprovisioned");
}
