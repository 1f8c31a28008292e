//! The sequencer on the memory store: one order, none lost, none twice, also when a
//! replica died halfway through a batch and when two replicas number at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::clock::Clock;
use crate::domain::event::EventKind;
use crate::events::Limits;
use crate::store::Records;
use crate::store::memory::MemoryStore;

fn instance(id: &str) -> ServiceInstance {
    serde_json::from_value(json!({
        "id": id, "service_id": "s", "plan_id": "p", "organization_guid": "o", "space_guid": "sp",
        "manifest_id": "m", "status": "provisioned", "created_at": "2026-01-01T00:00:00.000Z"
    }))
    .expect("an instance")
}

fn log_over(records: &Records) -> Arc<EventLog> {
    EventLog::new(records.clone(), Clock::tokio(), Limits::default())
}

/// Puts `kinds` in instance `id`'s outbox, in one write each (as changes do).
async fn announce(log: &EventLog, id: &str, kinds: &[&str]) {
    if log.records.get::<ServiceInstance>(id).await.expect("reads").is_none() {
        log.records.insert(&instance(id)).await.expect("inserts");
    }
    for kind in kinds {
        let event = log.stamped(Event::new(EventKind::parse(kind).expect("a known type")).on_instance(id, "s", "p"));
        log.records
            .modify::<ServiceInstance, StoreError, _>(id, |record| {
                record.outbox.push(event.clone());
                Ok(true)
            })
            .await
            .expect("writes");
    }
}

async fn logged(records: &Records) -> Vec<Event> {
    records.page_values::<Event>(Collection::Events, &Query::new([], 10_000)).await.expect("reads the log")
}

/// Ids are 1..=n without a hole and each instance's events are in the order announced.
fn check(events: &[Event], expected: &[(&str, Vec<String>)]) {
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "no hole, none twice");
    for (id, kinds) in expected {
        let seen: Vec<String> =
            events.iter().filter(|e| e.instance_id.as_deref() == Some(*id)).map(|e| e.kind.to_string()).collect();
        assert_eq!(&seen, kinds, "instance {id}");
    }
}

fn kinds(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

#[tokio::test]
async fn outboxes_and_standalone_events_are_numbered_once_in_order_and_drained() {
    let records = Records::new(Arc::new(MemoryStore::unnumbered()));
    let log = log_over(&records);
    announce(&log, "a", &["provision.started", "provision.succeeded"]).await;
    announce(&log, "b", &["provision.started"]).await;
    log.records
        .insert_value(
            Collection::EventOutbox,
            "k-1",
            &log.stamped(Event::new(EventKind::ServiceRegistered)),
            &Vec::new(),
        )
        .await
        .expect("a standalone event");
    announce(&log, "a", &["deprovision.started", "deprovision.succeeded"]).await;
    assert!(log.number_waiting().await.expect("numbers") >= 1);
    let events = logged(&records).await;
    assert_eq!(events.len(), 6);
    let a = ["provision.started", "provision.succeeded", "deprovision.started", "deprovision.succeeded"];
    check(&events, &[("a", kinds(&a)), ("b", kinds(&["provision.started"]))]);
    let a = records.get::<ServiceInstance>("a").await.expect("reads").expect("there");
    assert!(!a.record.outbox.has_pending(), "drained");
    assert!(records.store().page(Collection::EventOutbox, &Query::new([], 10)).await.expect("reads").is_empty());
    assert_eq!(log.number_waiting().await.expect("numbers"), 0, "nothing twice");
    assert_eq!(logged(&records).await.len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_batch_a_dead_replica_left_halfway_is_finished_by_another_without_duplicates() {
    let records = Records::new(Arc::new(MemoryStore::unnumbered()));
    let dead = log_over(&records);
    announce(&dead, "a", &["provision.started", "provision.succeeded", "deprovision.started"]).await;
    // The dead replica planned a batch and inserted its second event, then died.
    let (version, head) = head(&dead).await.expect("a head");
    let (items, known) = plan(&dead, head.next).await.expect("planned");
    let planned = Head { next: head.next + 3, batch: items.clone(), owner: "dead".into(), since: dead.clock.millis() };
    records
        .store()
        .replace(Collection::EventSequence, HEAD, version, encode(&planned).expect("json"))
        .await
        .expect("cas");
    let mut second = known.events[&(items[1].source.clone(), items[1].seq)].clone();
    second.id = items[1].id;
    records.insert_value(Collection::Events, &Event::key(second.id), &second, &Vec::new()).await.expect("inserts");

    let survivor = log_over(&records);
    assert!(in_flight(&survivor, items[0].id).await, "the tail waits for the rest of the batch");
    assert_eq!(round(&survivor).await.expect("a round"), Round::Waiting, "the owner may still be working");
    tokio::time::advance(TAKEOVER + Duration::from_secs(1)).await;
    survivor.number_waiting().await.expect("numbers");
    announce(&survivor, "a", &["deprovision.succeeded"]).await;
    survivor.number_waiting().await.expect("numbers");
    let all = ["provision.started", "provision.succeeded", "deprovision.started", "deprovision.succeeded"];
    check(&logged(&records).await, &[("a", kinds(&all))]);
    assert!(!in_flight(&survivor, items[0].id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_numbering_at_once_never_number_an_event_twice() {
    let records = Records::new(Arc::new(MemoryStore::unnumbered()));
    let (one, two) = (log_over(&records), log_over(&records));
    let ids: Vec<String> = (0..8).map(|n| format!("i-{n}")).collect();
    let cycle = ["provision.started", "provision.succeeded", "deprovision.started", "deprovision.succeeded"];
    let writers = ids.iter().enumerate().map(|(n, id)| {
        let log = if n % 2 == 0 { Arc::clone(&one) } else { Arc::clone(&two) };
        let id = id.clone();
        async move {
            for _ in 0..3 {
                for kind in cycle {
                    announce(&log, &id, &[kind]).await;
                    tokio::task::yield_now().await;
                }
            }
        }
    });
    let numbering = |log: Arc<EventLog>| async move {
        for _ in 0..200 {
            log.number_waiting().await.expect("numbers");
            tokio::task::yield_now().await;
        }
    };
    let (_, _, _) =
        tokio::join!(futures_util::future::join_all(writers), numbering(Arc::clone(&one)), numbering(Arc::clone(&two)));
    // What was announced after the last rounds is numbered now; a batch the other left
    // unfinished (cancelled by nothing here) is finished by its owner's next round.
    one.number_waiting().await.expect("numbers");
    two.number_waiting().await.expect("numbers");
    let expected: Vec<String> = (0..3).flat_map(|_| kinds(&cycle)).collect();
    let per: Vec<(&str, Vec<String>)> = ids.iter().map(|id| (id.as_str(), expected.clone())).collect();
    check(&logged(&records).await, &per);
}
