//! The event log as replicas share it: two logs on one store number their events
//! without duplicates or gaps, each subscriber sees every event once in id order, and
//! an id never written (and not being written by the sequencer) is passed over rather
//! than stalling the log.

use std::sync::Arc;
use std::time::Duration;

use esm::clock::Clock;
use esm::domain::event::{Event, EventKind};
use esm::events::{EventLog, Filter, Item, Limits};
use esm::store::memory::MemoryStore;
use esm::store::{Collection, Records, Store, index};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::support::wait::eventually;

fn log(records: &Records, stop: &CancellationToken) -> Arc<EventLog> {
    let log = EventLog::new(records.clone(), Clock::tokio(), Limits::default());
    // As on a shared store: each log polls for the other's writes.
    tokio::spawn(Arc::clone(&log).run(stop.clone(), Some(Duration::from_millis(250))));
    log
}

fn event(n: usize, replica: &str) -> Event {
    let mut event = Event::new(EventKind::LivenessChanged);
    event.instance_id = Some(format!("{replica}-{n}"));
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logs_on_one_store_number_every_event_once_and_every_subscriber_sees_all() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let records = Records::new(store);
    let stop = CancellationToken::new();
    let (a, b) = (log(&records, &stop), log(&records, &stop));
    // Both tails start at the (empty) log's end before anything is emitted.
    eventually(Duration::from_secs(5), "both logs to tail", || async { (a.tailing() && b.tailing()).then_some(()) })
        .await;
    let mut on_a = Box::pin(a.subscribe(Filter::default(), None).expect("a subscriber slot"));
    let mut on_b = Box::pin(b.subscribe(Filter::default(), None).expect("a subscriber slot"));
    for n in 0..200 {
        a.emit(event(n, "a"));
        b.emit(event(n, "b"));
        if n % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for (name, subscriber) in [("a", &mut on_a), ("b", &mut on_b)] {
        let mut ids = Vec::new();
        let mut instances = std::collections::BTreeSet::new();
        while ids.len() < 400 {
            let item = tokio::time::timeout(Duration::from_secs(10), subscriber.next())
                .await
                .unwrap_or_else(|_| panic!("subscriber {name} got {} of 400 events", ids.len()))
                .expect("the stream goes on");
            let Item::Event(delivered) = item else { panic!("no gap expected") };
            ids.push(delivered.event.id);
            instances.insert(delivered.event.instance_id.clone().expect("an instance"));
        }
        assert_eq!(ids, (1..=400).collect::<Vec<u64>>(), "subscriber {name}: every id once, in order");
        assert_eq!(instances.len(), 400, "subscriber {name}: every event");
    }
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_id_never_written_is_passed_over_after_a_moment() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let records = Records::new(store);
    let stop = CancellationToken::new();
    let log = log(&records, &stop);
    eventually(Duration::from_secs(5), "the log to tail", || async { log.tailing().then_some(()) }).await;
    let mut subscriber = Box::pin(log.subscribe(Filter::default(), None).expect("a subscriber slot"));
    // Ids 1 and 3 exist, 2 never will (its record was deleted before its batch was
    // inserted); the sequencer numbers the next event after them.
    for id in [1_u64, 3] {
        let mut written = event(usize::try_from(id).expect("small"), "x");
        written.id = id;
        let keys = index::event_keys(&written);
        records.insert_value(Collection::Events, &Event::key(id), &written, &keys).await.expect("insert");
    }
    log.emit(event(4, "x"));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(10), subscriber.next()).await.expect("in time").expect("open") {
            Item::Event(delivered) => seen.push(delivered.event.id),
            Item::Gap { .. } => panic!("a live subscriber is not told of ids never written"),
            Item::Resume { .. } => panic!("the stream lasts ten minutes"),
        }
    }
    assert_eq!(seen, [1, 3, 4]);
    stop.cancel();
}
