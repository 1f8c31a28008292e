//! The MongoDB store's round trips, counted from the driver's command events: each
//! store call is one command whose cursor (if any) the server closed with the answer,
//! so no `getMore` or `killCursors` follows. A call that grows a round trip costs every
//! provision that makes it.
//!
//! Needs a server: set `ESM_TEST_MONGO_URI` (the conformance suite in `tests/broker/stores.rs`
//! checks what the calls answer; this checks what they send).

use std::sync::{Arc, Mutex};

use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use serde_json::{Value, json};

use super::*;

/// What the client sent: each command's name, and the commands whose reply left a
/// cursor open on the server.
#[derive(Default)]
struct Wire {
    sent: Vec<String>,
    open_cursors: Vec<String>,
}

/// A store on a database of its own whose commands are recorded in the returned log.
async fn counted_store() -> (MongoStore, Arc<Mutex<Wire>>) {
    let uri = std::env::var("ESM_TEST_MONGO_URI").expect("ESM_TEST_MONGO_URI names the MongoDB server");
    let wire = Arc::new(Mutex::new(Wire::default()));
    let log = wire.clone();
    let mut options = MongoStore::options(&uri).await.expect("the MongoDB URI is valid");
    options.command_event_handler = Some(EventHandler::callback(move |event: CommandEvent| {
        let mut wire = log.lock().expect("the log is not poisoned");
        match event {
            CommandEvent::Started(started) => wire.sent.push(started.command_name),
            CommandEvent::Succeeded(done) => {
                let open = done.reply.get_document("cursor").is_ok_and(|c| c.get_i64("id").is_ok_and(|id| id != 0));
                if open {
                    wire.open_cursors.push(done.command_name);
                }
            }
            _ => {}
        }
    }));
    let db = format!("esm_round_trips_{}", uuid::Uuid::new_v4().simple());
    (MongoStore::with_options(options, &db).expect("the client starts"), wire)
}

/// The commands sent since the last call, and whether every cursor was closed.
fn take(wire: &Mutex<Wire>) -> Vec<String> {
    let mut wire = wire.lock().expect("the log is not poisoned");
    assert!(wire.open_cursors.is_empty(), "replies left cursors open: {:?}", wire.open_cursors);
    std::mem::take(&mut wire.sent)
}

fn instance(plan: &str, gone_at: &str) -> Value {
    json!({"_ix": {"plan_id": [plan], "gone_at": [gone_at]}, "name": "an instance"})
}

#[cfg_attr(not(esm_test_mongo), ignore = "needs MongoDB: set ESM_TEST_MONGO_URI")]
#[tokio::test]
async fn every_store_call_is_one_round_trip() {
    let (store, wire) = counted_store().await;
    let instances = Collection::Instances;
    // The first write creates the indexes, once per process.
    store.insert(instances, "i-0000", instance("other", "9")).await.expect("inserts");
    assert!(take(&wire).iter().any(|name| name == "createIndexes"));
    // A page of more documents than the server's default first batch (101).
    let many: Vec<Bson> = (1..=150)
        .map(|n| {
            let body = instance("p", &format!("{n:04}"));
            let json = json_text(&body).expect("encodes");
            doc! {"_id": format!("i-{n:04}"), "version": 1_i64, "json": json, "ix": index_doc(&body)}
        })
        .collect();
    store.collection(instances).insert_many(many).await.expect("seeds");
    take(&wire);

    let one = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert_eq!(store.insert(instances, "i-new", instance("p", "9")).await, Ok(1));
    assert_eq!(take(&wire), one(&["insert"]), "insert");
    assert_eq!(store.replace(instances, "i-new", 1, instance("p", "9")).await, Ok(2));
    assert_eq!(take(&wire), one(&["update"]), "replace");
    assert_eq!(store.upsert(instances, "i-new", instance("p", "9")).await, Ok(3));
    assert_eq!(take(&wire), one(&["findAndModify"]), "upsert");
    assert_eq!(store.get(instances, "i-new").await.expect("reads").map(|d| d.version), Some(3));
    assert_eq!(take(&wire), one(&["find"]), "get");
    assert_eq!(store.version(instances, "i-new").await, Ok(Some(3)));
    assert_eq!(take(&wire), one(&["find"]), "version");
    let query = Query::new([(index::PLAN_ID, "p")], 200);
    assert_eq!(store.page(instances, &query).await.expect("reads").len(), 151);
    assert_eq!(take(&wire), one(&["find"]), "page");
    assert_eq!(store.page_ids(instances, &query).await.expect("reads").len(), 151);
    assert_eq!(take(&wire), one(&["find"]), "page_ids");
    assert_eq!(
        store
            .expired(instances, Cutoff { field: index::GONE_AT, below: "0121", limit: 200 })
            .await
            .expect("reads")
            .len(),
        120
    );
    assert_eq!(take(&wire), one(&["find"]), "expired");
    assert_eq!(store.last_id(instances).await, Ok(Some("i-new".to_owned())));
    assert_eq!(take(&wire), one(&["find"]), "last_id");
    assert!(!store.counts(instances, index::PLAN_ID).await.expect("counts").is_empty());
    assert_eq!(take(&wire), one(&["aggregate"]), "counts");
    assert_eq!(store.delete(instances, "i-new", Some(3)).await, Ok(true));
    assert_eq!(take(&wire), one(&["delete"]), "delete");
    // Only a lost compare-and-set reads again (the version alone), to tell why.
    assert!(matches!(store.replace(instances, "i-0001", 7, instance("p", "9")).await, Err(StoreError::Conflict(_))));
    assert_eq!(take(&wire), one(&["update", "find"]), "a lost replace");
    store.db.drop().await.expect("drops the test database");
    store.close().await;
}
