//! The memory store: the conformance suite, and its index checked against its
//! documents after every kind of write.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::store::index::INDEX_FIELD;

#[tokio::test]
async fn conforms() {
    crate::store::conformance::run(Arc::new(MemoryStore::new())).await;
}

/// The index a collection's documents call for, built afresh.
fn rebuilt(docs: &BTreeMap<String, std::sync::Arc<Document>>) -> Index {
    let mut ix = Index::new();
    for (id, doc) in docs {
        add(&mut ix, id, &index::entries(&doc.body));
    }
    ix
}

/// Checks the kept index against the documents: the same entries, no empty set.
fn assert_consistent(store: &MemoryStore, collection: Collection, after: &str) {
    store.with(collection, |table| {
        assert_eq!(table.index, rebuilt(&table.docs), "after {after}");
        let empty = table.index.values().any(|values| values.is_empty() || values.values().any(BTreeSet::is_empty));
        assert!(!empty, "after {after}: an empty set is kept");
    });
}

fn tagged(tags: &[&str]) -> Value {
    json!({ INDEX_FIELD: { "tag": tags }, "n": tags.len() })
}

/// The index of one collection, as (field, value, id) triples.
fn entries(store: &MemoryStore, collection: Collection) -> Vec<(String, String, String)> {
    store.with(collection, |table| {
        let mut out = Vec::new();
        for (field, values) in &table.index {
            for (value, ids) in values {
                out.extend(ids.iter().map(|id| (field.clone(), value.clone(), id.clone())));
            }
        }
        out
    })
}

fn triples(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter().map(|&(f, v, id)| (f.to_owned(), v.to_owned(), id.to_owned())).collect()
}

#[tokio::test]
async fn a_write_moves_the_entries_of_the_old_body_to_the_new_one() {
    let store = MemoryStore::new();
    let c = Collection::Bindings;
    store.insert(c, "a", tagged(&["old", "kept"])).await.expect("insert");
    store.insert(c, "b", tagged(&["old"])).await.expect("insert");
    store.replace(c, "a", 1, tagged(&["new", "kept"])).await.expect("replace");
    let expected = [("tag", "kept", "a"), ("tag", "new", "a"), ("tag", "old", "b")];
    assert_eq!(entries(&store, c), triples(&expected), "a replace drops what the new body no longer names");
    store.upsert(c, "b", json!({"no": "entries"})).await.expect("upsert");
    assert_eq!(entries(&store, c), triples(&[("tag", "kept", "a"), ("tag", "new", "a")]), "an upsert too");
    store.upsert(c, "c", tagged(&["new"])).await.expect("upsert");
    store.delete(c, "a", Some(2)).await.expect("delete");
    assert_eq!(entries(&store, c), triples(&[("tag", "new", "c")]), "a delete drops the record's entries");
    assert!(store.replace(c, "c", 7, tagged(&["stale"])).await.is_err(), "a stale write is refused");
    assert!(store.delete(c, "c", Some(7)).await.is_err(), "a stale delete too");
    assert_eq!(entries(&store, c), triples(&[("tag", "new", "c")]), "and leaves the index alone");
    store.delete(c, "c", None).await.expect("delete");
    store.with(c, |table| assert!(table.index.is_empty(), "no empty map is kept: {:?}", table.index));
    assert!(entries(&store, Collection::Instances).is_empty(), "per collection");
}

/// A long run of writes of every kind, over few ids and values so that they collide:
/// after each, the index is exactly what the documents call for.
#[tokio::test]
async fn the_index_follows_a_long_run_of_writes() {
    let store = MemoryStore::new();
    let c = Collection::Resources;
    // xorshift: a fixed sequence, so a failure repeats.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for step in 0..2_000 {
        let id = format!("r{}", next(8));
        let values = ["a", "b", "c", "d"];
        let mut body = json!({ "step": step });
        if next(4) > 0 {
            let mut ix = serde_json::Map::new();
            for field in ["x", "y", "z"] {
                if next(2) == 0 {
                    continue;
                }
                let picked: Vec<&str> = values.into_iter().filter(|_| next(3) == 0).collect();
                ix.insert(field.into(), json!(picked));
            }
            body[INDEX_FIELD] = Value::Object(ix);
        }
        let version = store.version(c, &id).await.expect("version");
        let what = match next(5) {
            0 => store.insert(c, &id, body).await.map(|_| ()),
            1 => store.upsert(c, &id, body).await.map(|_| ()),
            // Now and then against a wrong version: refused, and nothing moves.
            2 => store.replace(c, &id, version.unwrap_or(1) + next(2), body).await.map(|_| ()),
            3 => store.delete(c, &id, version.map(|v| v + next(2))).await.map(|_| ()),
            _ => store.delete(c, &id, None).await.map(|_| ()),
        };
        assert_consistent(&store, c, &format!("step {step}: {what:?}"));
    }
    let indexed = entries(&store, c).len();
    assert!(indexed > 0, "the run left entries to check ({indexed})");
}
