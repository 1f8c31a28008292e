//! One conformance suite every [`Store`] must pass, run unchanged against the memory,
//! embedded and MongoDB stores (see `tests/stores.rs`). The stores must agree exactly on
//! compare-and-set, or multi-replica safety would silently differ per store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Collection, REGISTRY_ID, Records, Store, StoreError};
use crate::domain::binding::{Binding, BindingMetadata, BindingStatus, Credentials};
use crate::domain::catalog::Service;
use crate::domain::instance::{InstanceMetadata, InstanceStatus, PendingUpdate, ServiceInstance};
use crate::domain::manifest::Manifest;
use crate::domain::operation::{Operation, OperationKind, OperationLog};
use crate::domain::registry::{ManifestEntry, Registry, StoredManifest};

/// Runs every check against an empty store; panics with the failing check's name.
pub async fn run(store: Arc<dyn Store>) {
    insert_get_and_conflict(&store).await;
    replace_is_compare_and_set(&store).await;
    upsert_bumps_the_version(&store).await;
    delete_honours_the_version(&store).await;
    list_is_per_collection_and_ordered(&store).await;
    concurrent_inserts_of_one_id_have_one_winner(&store).await;
    concurrent_replaces_from_one_version_have_one_winner(&store).await;
    awkward_json_round_trips(&store).await;
    every_record_round_trips(&store).await;
    store.ping().await.expect("ping");
}

async fn insert_get_and_conflict(store: &Arc<dyn Store>) {
    let c = Collection::ManifestContents;
    assert_eq!(store.insert(c, "a", json!({"n": 1})).await, Ok(1), "insert starts at version 1");
    let doc = store.get(c, "a").await.expect("get").expect("present");
    assert_eq!((doc.version, doc.body), (1, json!({"n": 1})));
    assert!(matches!(store.insert(c, "a", json!({"n": 2})).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get(c, "a").await.expect("get").map(|d| d.body), Some(json!({"n": 1})));
    assert_eq!(store.get(c, "missing").await, Ok(None));
    assert_eq!(store.get(Collection::Registry, "a").await, Ok(None), "collections are separate");
}

async fn replace_is_compare_and_set(store: &Arc<dyn Store>) {
    let c = Collection::Instances;
    store.insert(c, "r", json!({"step": 0})).await.expect("insert");
    assert_eq!(store.replace(c, "r", 1, json!({"step": 1})).await, Ok(2));
    assert!(matches!(store.replace(c, "r", 1, json!({"step": 9})).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get(c, "r").await.expect("get").map(|d| d.body), Some(json!({"step": 1})));
    assert!(matches!(store.replace(c, "nope", 1, json!({})).await, Err(StoreError::NotFound(_))));
}

async fn upsert_bumps_the_version(store: &Arc<dyn Store>) {
    let c = Collection::Registry;
    assert_eq!(store.upsert(c, "u", json!({"a": 1})).await, Ok(1));
    assert_eq!(store.upsert(c, "u", json!({"a": 2})).await, Ok(2));
    let doc = store.get(c, "u").await.expect("get").expect("present");
    assert_eq!((doc.version, doc.body), (2, json!({"a": 2})));
}

async fn delete_honours_the_version(store: &Arc<dyn Store>) {
    let c = Collection::Bindings;
    assert_eq!(store.delete(c, "d", None).await, Ok(false), "deleting nothing");
    store.insert(c, "d", json!({})).await.expect("insert");
    assert!(matches!(store.delete(c, "d", Some(7)).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.delete(c, "d", Some(1)).await, Ok(true));
    assert_eq!(store.get(c, "d").await, Ok(None));
    store.insert(c, "d2", json!({})).await.expect("insert");
    assert_eq!(store.delete(c, "d2", None).await, Ok(true));
}

async fn list_is_per_collection_and_ordered(store: &Arc<dyn Store>) {
    let c = Collection::Bindings;
    for id in ["l-c", "l-a", "l-b"] {
        store.insert(c, id, json!({"id": id})).await.expect("insert");
    }
    let ids: Vec<String> =
        store.list(c).await.expect("list").into_iter().map(|(id, _)| id).filter(|id| id.starts_with("l-")).collect();
    assert_eq!(ids, ["l-a", "l-b", "l-c"]);
    let services = store.list(Collection::Registry).await.expect("list");
    assert!(services.iter().all(|(id, _)| !id.starts_with("l-")));
}

async fn concurrent_inserts_of_one_id_have_one_winner(store: &Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.insert(Collection::Instances, "race", json!({"n": n})).await }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("joined") {
            Ok(1) => winners += 1,
            Err(StoreError::Conflict(_)) => {}
            other => panic!("unexpected insert result {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one insert of an id wins");
}

async fn concurrent_replaces_from_one_version_have_one_winner(store: &Arc<dyn Store>) {
    store.insert(Collection::Instances, "cas", json!({"owner": null})).await.expect("insert");
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(
            async move { store.replace(Collection::Instances, "cas", 1, json!({"owner": n})).await },
        ));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("joined") {
            Ok(2) => winners += 1,
            Err(StoreError::Conflict(_)) => {}
            other => panic!("unexpected replace result {other:?}"),
        }
    }
    assert_eq!(winners, 1, "exactly one compare-and-set from a version wins");
}

async fn awkward_json_round_trips(store: &Arc<dyn Store>) {
    let body = json!({
        "dotted.key": 1, "$dollar": "x", "unicode": "ünï — 字", "empty": {}, "list": [1, "a", null, true],
        "big": 9_007_199_254_740_993_i64, "float": 1.5, "neg": -3, "nested": {"a": {"b": [{"c": null}]}}
    });
    store.insert(Collection::ManifestContents, "awkward/id with spaces", body.clone()).await.expect("insert");
    let back = store.get(Collection::ManifestContents, "awkward/id with spaces").await.expect("get").expect("present");
    assert_eq!(back.body, body, "JSON comes back exactly");
}

async fn every_record_round_trips(store: &Arc<dyn Store>) {
    let records = Records::new(store.clone());
    let service: Service = serde_json::from_value(json!({
        "id": "rt-svc", "name": "rt", "description": "d", "bindable": true, "short_name": "RT",
        "tags": ["a"], "requires": ["volume_mount"], "metadata": {"displayName": "RT"},
        "instances_retrievable": true, "bindings_retrievable": true, "allow_context_updates": true,
        "plan_updateable": true, "dashboard_client": {"id": "c", "secret": "s", "redirect_uri": "http://x"},
        "plans": [{"id": "rt-plan", "name": "p", "description": "d", "metadata": {"bullets": ["x"]},
            "free": false, "bindable": true, "plan_updateable": false, "maximum_polling_duration": 60,
            "maintenance_info": {"version": "1.2.3", "description": "m"}, "binding_rotatable": true,
            "binding_lifetime_seconds": 3600,
            "schemas": {"service_instance": {"create": {"parameters": {"type": "object"}},
                                             "update": {"parameters": {"type": "object"}}},
                        "service_binding": {"create": {"parameters": {"type": "object"}}}}}]
    }))
    .expect("service parses");
    let mut registry = Registry::default();

    let manifest = Manifest {
        id: "rt-manifest".into(),
        service_id: "rt-svc".into(),
        plan_id: "rt-plan".into(),
        manifest_type: "dummy".into(),
        manifest_content: "services:\n  web:\n    image: x\n".into(),
        endpoints: Some(json!({"web": {"main": true, "port": 80}})),
        config: Some(json!({"k": "v"})),
    };
    let stored = StoredManifest { key: "rt-content".into(), manifest: manifest.clone() };
    records.insert(&stored).await.expect("insert manifest");
    assert_eq!(records.get::<StoredManifest>("rt-content").await.expect("get").map(|v| v.record), Some(stored));
    registry.put_service(service);
    registry.manifests.insert(manifest.id.clone(), ManifestEntry::of(&manifest, "rt-content".into()));
    registry.retire("t", ["rt-plan".to_owned()].into(), 7);
    records.insert(&registry).await.expect("insert registry");
    assert_eq!(records.get::<Registry>(REGISTRY_ID).await.expect("get").map(|v| v.record), Some(registry));

    let clock = crate::clock::Clock::system();
    let mut operations = OperationLog::default();
    let mut done = Operation::start(OperationKind::Provision, true, clock.now());
    done.succeed(clock.now());
    operations.push(done);
    let mut update = Operation::start(OperationKind::Update, true, clock.now());
    update.update = Some(PendingUpdate {
        plan_id: Some("rt-plan".into()),
        parameters: Some(json!({"size": 2})),
        context: Some(json!({"platform": "cloudfoundry"})),
        maintenance_info: None,
    });
    update.fail(clock.now(), "boom", Some(true), Some(false));
    operations.push(update);
    let mut labels = serde_json::Map::new();
    labels.insert("esm/backend".into(), json!("dummy"));
    let instance = ServiceInstance {
        id: "rt-instance".into(),
        service_id: "rt-svc".into(),
        plan_id: "rt-plan".into(),
        organization_guid: "org".into(),
        space_guid: "space".into(),
        context: Some(json!({"platform": "kubernetes", "namespace": "ns"})),
        parameters: Some(json!({"size": 1, "dotted.key": true})),
        maintenance_info: None,
        metadata: InstanceMetadata { labels, attributes: serde_json::Map::new() },
        dashboard_url: Some("http://dash/x".into()),
        manifest_id: "rt-manifest".into(),
        manifest_type: Some("dummy".into()),
        status: InstanceStatus::Provisioned,
        deployment: serde_json::Map::from_iter([("containers".to_owned(), json!(["a", "b"]))]),
        operations: operations.clone(),
        created_at: clock.timestamp(),
    };
    records.insert(&instance).await.expect("insert instance");
    assert_eq!(records.get::<ServiceInstance>("rt-instance").await.expect("get").map(|v| v.record), Some(instance));

    let binding = Binding {
        id: "rt-binding".into(),
        instance_id: "rt-instance".into(),
        service_id: "rt-svc".into(),
        plan_id: "rt-plan".into(),
        app_guid: Some("app".into()),
        bind_resource: Some(json!({"app_guid": "app", "route": "r"})),
        context: Some(json!({"platform": "cloudfoundry"})),
        parameters: Some(json!({"role": "ro"})),
        predecessor_binding_id: Some("older".into()),
        credentials: Some(Credentials(json!({"password": "p", "port": 5432}))),
        endpoints: Some(json!([{"host": "h", "ports": ["443"]}])),
        metadata: BindingMetadata {
            expires_at: Some(clock.timestamp_in(Duration::from_secs(60))),
            renew_before: Some(clock.timestamp_in(Duration::from_secs(30))),
        },
        status: BindingStatus::Bound,
        operations,
        created_at: clock.timestamp(),
    };
    records.insert(&binding).await.expect("insert binding");
    assert_eq!(records.get::<Binding>("rt-binding").await.expect("get").map(|v| v.record), Some(binding));

    // Every document carries the schema version it was written with.
    let raw = store.get(Collection::Bindings, "rt-binding").await.expect("get").expect("present");
    assert_eq!(raw.body.get("_schema"), Some(&Value::from(super::SCHEMA_VERSION)));
}
