//! One conformance suite every [`Store`] must pass, run unchanged against the memory,
//! embedded and MongoDB stores (see `tests/broker/stores.rs`). The stores must agree exactly on
//! compare-and-set, or multi-replica safety would silently differ per store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::index::{self, INDEX_FIELD};
use super::{Collection, Cutoff, Query, REGISTRY_ID, Records, Store, StoreError};
use crate::domain::binding::{Binding, BindingMetadata, BindingStatus, Credentials, Endpoint};
use crate::domain::catalog::Service;
use crate::domain::event::{Event, EventKind, Step};
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
    pages_are_served_from_the_indexes(&store).await;
    compound_filters_page_as_a_full_scan_would(&store).await;
    a_page_costs_what_it_shows_not_what_the_collection_holds(&store).await;
    indexes_follow_every_write(&store).await;
    expired_finds_what_sorts_before(&store).await;
    counts_tally_the_index_per_value(&store).await;
    records_are_indexed_by_what_they_are(&store).await;
    exclusive_stores_number_events_as_they_write(&store).await;
    store.ping().await.expect("ping");
    store.health().await.expect("a store that answers and writes is healthy");
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
    assert_eq!(store.version(c, "r").await, Ok(Some(2)), "the version alone");
    assert_eq!(store.version(c, "nope").await, Ok(None));
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
    assert_eq!(winners(tasks, 1).await, 1, "exactly one insert of an id wins");
}

/// How many of `tasks` won (answered version `won`); each other one must have lost
/// the race with a `Conflict`.
async fn winners(tasks: Vec<tokio::task::JoinHandle<Result<u64, StoreError>>>, won: u64) -> usize {
    let mut winners = 0;
    for task in tasks {
        match task.await.expect("joined") {
            Ok(version) if version == won => winners += 1,
            Err(StoreError::Conflict(_)) => {}
            other => panic!("unexpected result {other:?}"),
        }
    }
    winners
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
    assert_eq!(winners(tasks, 2).await, 1, "exactly one compare-and-set from a version wins");
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
        liveness: Some(crate::domain::liveness::Liveness::unknown(clock.millis(), clock.timestamp())),
        deployment_id: Some("esm-pool-rt".into()),
        pool: None,
        host_ports: [("web/8080/tcp".to_owned(), 30001)].into(),
        outbox: Default::default(),
        engine: None,
        retiring: None,
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
        endpoints: Some(vec![Endpoint { host: "h".into(), ports: vec!["443".into()], protocol: None }]),
        metadata: BindingMetadata {
            expires_at: Some(clock.timestamp_in(Duration::from_secs(60))),
            renew_before: Some(clock.timestamp_in(Duration::from_secs(30))),
        },
        status: BindingStatus::Bound,
        operations,
        created_at: clock.timestamp(),
        liveness_token_sha256: None,
        // An outbox round-trips too (`domain::outbox`).
        outbox: {
            let mut outbox = crate::domain::outbox::Outbox::default();
            outbox.push(Event::new(EventKind::Operation(OperationKind::Bind, Step::Started)));
            outbox
        },
    };
    records.insert(&binding).await.expect("insert binding");
    let mut stored = binding.clone();
    if store.exclusive() {
        // Numbered in the write (`numbering`): in the log, not waiting.
        stored.outbox.drain_below(u64::MAX);
        let log = store.page(Collection::Events, &Query::new([], 10)).await.expect("reads the log");
        assert_eq!(log.len(), 1, "one event");
        assert_eq!(log[0].1.body["type"], "bind.started");
    }
    assert_eq!(records.get::<Binding>("rt-binding").await.expect("get").map(|v| v.record), Some(stored));

    // Every document carries the schema version it was written with.
    let raw = store.get(Collection::Bindings, "rt-binding").await.expect("get").expect("present");
    assert_eq!(raw.body.get("_schema"), Some(&Value::from(super::SCHEMA_VERSION)));
}

/// A body indexed under `entries`.
fn indexed(entries: Value) -> Value {
    json!({ INDEX_FIELD: entries })
}

fn ids(page: &[(String, super::Document)]) -> Vec<&str> {
    page.iter().map(|(id, _)| id.as_str()).collect()
}

async fn pages_are_served_from_the_indexes(store: &Arc<dyn Store>) {
    let c = Collection::Bindings;
    for (id, colour, size) in [("ix-5", "red", "s"), ("ix-1", "red", "l"), ("ix-3", "blue", "s"), ("ix-2", "red", "s")]
    {
        store.insert(c, id, indexed(json!({"colour": [colour], "size": [size]}))).await.expect("insert");
    }
    let red = |limit| Query::new([("colour", "red")], limit);
    assert_eq!(ids(&store.page(c, &red(10)).await.expect("page")), ["ix-1", "ix-2", "ix-5"], "in id order");
    assert_eq!(ids(&store.page(c, &red(2)).await.expect("page")), ["ix-1", "ix-2"], "limited");
    let next = red(2).after(Some("ix-2".into()));
    assert_eq!(ids(&store.page(c, &next).await.expect("page")), ["ix-5"], "after the cursor");
    let small_red = Query::new([("colour", "red"), ("size", "s")], 10);
    assert_eq!(ids(&store.page(c, &small_red).await.expect("page")), ["ix-2", "ix-5"], "every filter holds");
    assert!(store.page(c, &Query::new([("colour", "green")], 10)).await.expect("page").is_empty());
    let all = Query::new([], 3).after(Some("ix-1".into()));
    assert_eq!(ids(&store.page(c, &all).await.expect("page")), ["ix-2", "ix-3", "ix-5"], "no filter: every record");
    let red_ids = store.page_ids(c, &red(2).after(Some("ix-1".into()))).await.expect("ids");
    assert_eq!(red_ids, ["ix-2", "ix-5"], "ids alone, from the index");
    let small_red_ids = store.page_ids(c, &small_red).await.expect("ids");
    assert_eq!(small_red_ids, ["ix-2", "ix-5"], "ids alone, every filter holds");
    let all_ids = store.page_ids(c, &Query::new([], 2).after(Some("ix-1".into()))).await.expect("ids");
    assert_eq!(all_ids, ["ix-2", "ix-3"], "ids alone, no filter");
    let found = store.page(c, &Query::new([("colour", "blue")], 1)).await.expect("page");
    assert_eq!(found[0].1, super::Document { version: 1, body: indexed(json!({"colour": ["blue"], "size": ["s"]})) });
}

/// Two and three filters, over records whose index ranges interleave, paged a few at a
/// time: the pages hold exactly what checking every record would, in id order.
async fn compound_filters_page_as_a_full_scan_would(store: &Arc<dyn Store>) {
    let c = Collection::Resources;
    let mut records = Vec::new();
    for n in 0..60u32 {
        let (a, b, t) = ((n * 7 % 4).to_string(), (n * 5 % 3).to_string(), if n % 2 == 0 { "x" } else { "y" });
        // A field with two values, as a moving plan has.
        let tags = [t.to_owned(), format!("n{}", n % 5)];
        let id = format!("cf-{n:02}");
        store.insert(c, &id, indexed(json!({"a": [a], "b": [b], "t": tags}))).await.expect("insert");
        records.push((id, a, b, tags));
    }
    let queries: [&[(&str, &str)]; 5] = [
        &[("a", "1"), ("b", "2")],
        &[("b", "0"), ("a", "3")],
        &[("a", "2"), ("t", "x"), ("b", "1")],
        &[("t", "y"), ("t", "n3")],
        &[("a", "0"), ("a", "1")],
    ];
    for filters in queries {
        let expected: Vec<&str> = records
            .iter()
            .filter(|(_, a, b, tags)| {
                filters.iter().all(|&(f, v)| match f {
                    "a" => a == v,
                    "b" => b == v,
                    _ => tags.iter().any(|t| t == v),
                })
            })
            .map(|(id, ..)| id.as_str())
            .collect();
        let (mut found, mut found_ids, mut after) = (Vec::new(), Vec::new(), None);
        loop {
            let query = Query::new(filters.iter().copied(), 3).after(after.clone());
            let page = store.page(c, &query).await.expect("page");
            found_ids.extend(store.page_ids(c, &query).await.expect("ids"));
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            found.extend(page.into_iter().map(|(id, _)| id));
        }
        assert_eq!(found, expected, "{filters:?}");
        assert_eq!(found_ids, expected, "{filters:?}: ids alone");
    }
}

/// A filtered page reads the index entries and records around what it shows, not the
/// collection: it visits as many with 2,000 unrelated records as with 100 (counted by
/// the store, see `Store::visits`; a store that cannot count skips the check).
async fn a_page_costs_what_it_shows_not_what_the_collection_holds(store: &Arc<dyn Store>) {
    if store.visits().is_none() {
        return;
    }
    let c = Collection::Events;
    // Five needles among the hay, three of them small; the hay shares their size.
    for (n, size) in [(10, "s"), (40, "l"), (50, "s"), (60, "l"), (90, "s")] {
        store
            .insert(c, &format!("pc-{n:04}n"), indexed(json!({"kind": ["needle"], "size": [size]})))
            .await
            .expect("insert");
    }
    let (small, all) =
        (["pc-0010n", "pc-0050n", "pc-0090n"], ["pc-0010n", "pc-0040n", "pc-0050n", "pc-0060n", "pc-0090n"]);
    // Filters, limit, after, and the page they find.
    type Page<'a> = (&'a [(&'a str, &'a str)], usize, Option<&'a str>, &'a [&'a str]);
    let queries: [Page; 5] = [
        (&[("kind", "needle")], 10, None, &all),
        (&[("kind", "needle"), ("size", "s")], 10, None, &small),
        // The large range first: the leapfrog still seeks from needle to needle.
        (&[("size", "s"), ("kind", "needle")], 10, None, &small),
        (&[("size", "s"), ("kind", "needle")], 1, Some("pc-0010n"), &["pc-0050n"]),
        (&[("kind", "needle")], 2, Some("pc-0040n"), &["pc-0050n", "pc-0060n"]),
    ];
    let hay = |n: usize| async move {
        let body = indexed(json!({"kind": [format!("hay-{}", n % 7)], "size": ["s"]}));
        store.insert(c, &format!("pc-{n:04}"), body).await.expect("insert");
    };
    let mut costs = Vec::new();
    for (from, to) in [(0, 100), (100, 2_000)] {
        futures_util::future::join_all((from..to).map(hay)).await;
        let mut cost = Vec::new();
        for (filters, limit, after, expected) in queries {
            let query = Query::new(filters.iter().copied(), limit).after(after.map(str::to_owned));
            let before = store.visits().expect("counted before");
            let page = store.page(c, &query).await.expect("page");
            let ids = store.page_ids(c, &query).await.expect("ids");
            cost.push(store.visits().expect("counted after") - before);
            assert_eq!(self::ids(&page), expected, "{filters:?} after {after:?}");
            assert_eq!(ids, expected, "{filters:?} after {after:?}: ids alone");
        }
        assert!(cost.iter().all(|&n| n <= 50), "at {to} records, pages visited {cost:?}");
        costs.push(cost);
    }
    assert_eq!(costs[0], costs[1], "the visits of the same pages with 100 and 2,000 records");
}

async fn indexes_follow_every_write(store: &Arc<dyn Store>) {
    let c = Collection::Bindings;
    let tagged = |tag: &str| Query::new([("tag", tag)], 10);
    store.insert(c, "iw-a", indexed(json!({"tag": ["old", "both"]}))).await.expect("insert");
    store.replace(c, "iw-a", 1, indexed(json!({"tag": ["new", "both"]}))).await.expect("replace");
    assert!(store.page(c, &tagged("old")).await.expect("page").is_empty(), "a replaced entry is gone");
    assert_eq!(ids(&store.page(c, &tagged("new")).await.expect("page")), ["iw-a"]);
    assert_eq!(ids(&store.page(c, &tagged("both")).await.expect("page")), ["iw-a"], "a kept entry stays once");
    store.upsert(c, "iw-a", json!({"no": "entries"})).await.expect("upsert");
    assert!(store.page(c, &tagged("new")).await.expect("page").is_empty(), "an upsert drops entries");
    store.upsert(c, "iw-b", indexed(json!({"tag": ["up"]}))).await.expect("upsert");
    assert_eq!(ids(&store.page(c, &tagged("up")).await.expect("page")), ["iw-b"], "an upsert adds entries");
    store.delete(c, "iw-b", None).await.expect("delete");
    assert!(store.page(c, &tagged("up")).await.expect("page").is_empty(), "a deleted record leaves its index");
    assert!(
        matches!(store.replace(c, "iw-a", 1, indexed(json!({"tag": ["stale"]}))).await, Err(StoreError::Conflict(_))),
        "a refused write"
    );
    assert!(store.page(c, &tagged("stale")).await.expect("page").is_empty(), "a refused write indexes nothing");
}

async fn expired_finds_what_sorts_before(store: &Arc<dyn Store>) {
    let c = Collection::Bindings;
    for (id, at) in [("ex-1", "2020-01-01"), ("ex-2", "2020-06-01"), ("ex-3", "2021-01-01")] {
        store.insert(c, id, indexed(json!({"ended": [at]}))).await.expect("insert");
    }
    let mut found = store.expired(c, Cutoff { field: "ended", below: "2020-12-31", limit: 10 }).await.expect("expired");
    found.sort();
    assert_eq!(found, [("ex-1".to_owned(), 1), ("ex-2".to_owned(), 1)]);
    assert_eq!(
        store.expired(c, Cutoff { field: "ended", below: "2020-12-31", limit: 1 }).await.expect("expired").len(),
        1,
        "limited"
    );
    assert!(store.expired(c, Cutoff { field: "ended", below: "2000", limit: 10 }).await.expect("expired").is_empty());
}

async fn counts_tally_the_index_per_value(store: &Arc<dyn Store>) {
    let c = Collection::Bindings;
    assert!(store.counts(c, "tally").await.expect("counts").is_empty(), "nothing indexed yet");
    for (id, values) in
        [("ct-1", json!(["b"])), ("ct-2", json!(["a", "b"])), ("ct-3", json!(["b"])), ("ct-4", json!([]))]
    {
        store.insert(c, id, indexed(json!({"tally": values, "other": ["a"]}))).await.expect("insert");
    }
    let counts = |n: &[(&str, u64)]| n.iter().map(|&(v, n)| (v.to_owned(), n)).collect::<Vec<_>>();
    assert_eq!(store.counts(c, "tally").await.expect("counts"), counts(&[("a", 1), ("b", 3)]), "ordered by value");
    store.replace(c, "ct-3", 1, indexed(json!({"tally": ["c"]}))).await.expect("replace");
    store.delete(c, "ct-1", None).await.expect("delete");
    assert_eq!(
        store.counts(c, "tally").await.expect("counts"),
        counts(&[("a", 1), ("b", 1), ("c", 1)]),
        "the counts follow every write"
    );
    assert!(store.counts(c, "tal").await.expect("counts").is_empty(), "a prefix of a field is another field");
    assert!(store.counts(Collection::Instances, "tally").await.expect("counts").is_empty(), "per collection");
}

async fn records_are_indexed_by_what_they_are(store: &Arc<dyn Store>) {
    let records = Records::new(store.clone());
    let mut instance = records.get::<ServiceInstance>("rt-instance").await.expect("get").expect("present");
    let live = |field: &'static str, value: &'static str| Query::new([(field, value)], 10);
    let found = records.page::<ServiceInstance>(&live(index::SERVICE_ID, "rt-svc")).await.expect("page");
    assert_eq!(found.iter().map(|v| v.record.id.as_str()).collect::<Vec<_>>(), ["rt-instance"]);
    let by_state = records.page::<ServiceInstance>(&live(index::STATE, "failed")).await.expect("page");
    assert_eq!(by_state.len(), 1, "the last operation (a failed update) names the state");
    let census =
        |instances: &[&str]| -> Vec<(String, u64)> { instances.iter().map(|labels| (labels.to_string(), 1)).collect() };
    assert_eq!(
        store.counts(Collection::Instances, index::CENSUS).await.expect("counts"),
        census(&[r#"["rt-svc","rt-plan","failed","unknown"]"#]),
        "a live instance is counted by service, plan, state and liveness"
    );
    instance.record.status = InstanceStatus::Deprovisioned;
    records.replace(instance.version, &instance.record).await.expect("replace");
    assert!(
        store.counts(Collection::Instances, index::CENSUS).await.expect("counts").is_empty(),
        "a tombstone is not counted"
    );
    assert!(
        records.page::<ServiceInstance>(&live(index::SERVICE_ID, "rt-svc")).await.expect("page").is_empty(),
        "a tombstone is not listed"
    );
    let gone = records.expired::<ServiceInstance>(index::GONE_AT, "9999", 10).await.expect("expired");
    assert_eq!(gone.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["rt-instance"], "but purgeable");
    let bindings = records.page::<Binding>(&live(index::INSTANCE_ID, "rt-instance")).await.expect("page");
    assert_eq!(bindings.len(), 1, "a live binding is found by its instance");
}

/// An exclusive store numbers events in the write that makes them (`numbering`): in
/// commit order, each once (also when written from a copy older than the stored
/// document), standalone ones too, and concurrent writers get consecutive ids.
async fn exclusive_stores_number_events_as_they_write(store: &Arc<dyn Store>) {
    if !store.exclusive() {
        return;
    }
    let records = Records::new(store.clone());
    let logged = store.page_ids(Collection::Events, &Query::new([], 1000)).await.expect("reads the log");
    let base = logged.iter().filter_map(|key| Event::id_of(key)).max().unwrap_or(0);
    let instance = |id: &str| -> ServiceInstance {
        serde_json::from_value(json!({
            "id": id, "service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "sp",
            "manifest_id": "m", "status": "provisioned", "created_at": "2026-01-01T00:00:00.000Z"
        }))
        .expect("an instance")
    };
    let mut copy = instance("numbered");
    copy.outbox.push(
        Event::new(EventKind::Operation(OperationKind::Provision, Step::Started)).on_instance("numbered", "s", "p"),
    );
    let version = records.insert(&copy).await.expect("inserts");
    // Written again from the same copy, which still holds the first event.
    copy.outbox.push(
        Event::new(EventKind::Operation(OperationKind::Provision, Step::Succeeded)).on_instance("numbered", "s", "p"),
    );
    records.replace(version, &copy).await.expect("replaces");
    let standalone = json!({"id": 0, "at": "2026-01-01T00:00:00.000Z", "type": "pool.member_ready"});
    store.insert(Collection::EventOutbox, "standalone", standalone).await.expect("inserts");
    assert_eq!(store.get(Collection::EventOutbox, "standalone").await.expect("reads"), None, "it went to the log");
    let writers = (0..16).map(|n| {
        let (records, mut record) = (records.clone(), instance(&format!("writer-{n}")));
        record.outbox.push(Event::new(EventKind::Operation(OperationKind::Provision, Step::Started)));
        async move { records.insert(&record).await }
    });
    for written in futures_util::future::join_all(writers).await {
        written.expect("inserts");
    }
    let query = Query::new([], 100).after(Some(Event::key(base)));
    let log = store.page(Collection::Events, &query).await.expect("reads the log");
    let ids: Vec<u64> = log.iter().filter_map(|(_, doc)| doc.body["id"].as_u64()).collect();
    assert_eq!(ids, (base + 1..=base + 19).collect::<Vec<_>>(), "consecutive, none twice");
    let kinds: Vec<&str> = log.iter().take(3).filter_map(|(_, doc)| doc.body["type"].as_str()).collect();
    assert_eq!(kinds, ["provision.started", "provision.succeeded", "pool.member_ready"], "in commit order");
    let stored = records.get::<ServiceInstance>("numbered").await.expect("reads").expect("stored").record;
    assert!(!stored.outbox.has_pending() && stored.outbox.next_seq == 2, "nothing waits; the count is kept");
    let waiting = Query::new([(index::OUTBOX, "1")], 10);
    assert!(store.page(Collection::Instances, &waiting).await.expect("pages").is_empty(), "none for the sequencer");
}
