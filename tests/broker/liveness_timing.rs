//! Liveness in controlled time: heartbeat TTLs, the active threshold and the drop
//! threshold, on paused Tokio time with a clock that follows it. Minutes pass in
//! microseconds; the liveness rounds run as they would, every interval.

use std::sync::Arc;
use std::time::Duration;

use esm::backend::Backends;
use esm::backend::dummy::DummyBackend;
use esm::broker::{Answer, Broker, BrokerSettings, LivenessSettings, REPORT_SPACING, Reporter};
use esm::clock::Clock;
use esm::domain::bounded::Note;
use esm::domain::event::EventKind;
use esm::domain::liveness::{LivenessStatus, Thresholds};
use esm::events::Filter;
use esm::store::memory::MemoryStore;
use esm::store::{Collection, Store};
use serde_json::json;

use crate::support::catalog::{provision_request, register};

const INTERVAL: Duration = Duration::from_secs(10);
/// Lost after a minute, dropped after two; reports do not count toward the drop (the
/// default).
const DROPPING: Thresholds = Thresholds { active_ms: 60_000, drop_ms: Some(120_000), reports_may_drop: false };

fn broker(dummy: &Arc<DummyBackend>, thresholds: Thresholds) -> Arc<Broker> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let settings = BrokerSettings {
        clock: Clock::tokio(),
        liveness: LivenessSettings { interval: INTERVAL, thresholds, ..LivenessSettings::default() },
        ..BrokerSettings::default()
    };
    let broker = Broker::new(store, Backends::new().with(dummy.clone()), settings);
    broker.spawn_event_log();
    broker.liveness().spawn_liveness();
    broker
}

/// Service `s`, plan `p`, a synchronous dummy `script`, and instance `i` provisioned.
async fn provisioned(broker: &Arc<Broker>, script: &str) {
    register(broker, json!({}), script).await;
    let answer = broker.instances().provision("i", provision_request(), false).await.expect("provisions");
    assert!(matches!(answer, Answer::Done(_)), "{answer:?}");
}

/// The plain synchronous dummy deployment.
const SYNC: &str = "x-esm-dummy: {mode: sync}\n";

/// A dummy backend, and a broker on it with `thresholds` whose instance `i` is
/// provisioned on a dummy `script` (see [`provisioned`]).
async fn started(thresholds: Thresholds, script: &str) -> (Arc<DummyBackend>, Arc<Broker>) {
    let dummy = Arc::new(DummyBackend::new());
    let broker = broker(&dummy, thresholds);
    provisioned(&broker, script).await;
    (dummy, broker)
}

async fn status(broker: &Arc<Broker>) -> (LivenessStatus, String) {
    let (_, liveness) = broker.liveness().of("i").await.expect("the instance lives");
    (liveness.status, liveness.reason)
}

/// Lets paused time move on by `by` (rounds run meanwhile).
async fn pass(by: Duration) {
    tokio::time::sleep(by).await;
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_counts_until_its_ttl_and_then_is_missed() {
    let (_dummy, broker) = started(
        Thresholds { active_ms: 300_000, drop_ms: None, reports_may_drop: false },
        "x-esm-dummy: {mode: sync, observe: false}\n",
    )
    .await;
    pass(Duration::from_secs(1)).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Unknown, "nothing watches it yet");
    broker
        .liveness()
        .report("i", &Reporter::Broker, LivenessStatus::Up, Duration::from_secs(30), None)
        .await
        .expect("report");
    pass(Duration::from_secs(29)).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Up);
    // The first round after the TTL sees the heartbeat missed.
    pass(INTERVAL + Duration::from_secs(1)).await;
    assert_eq!(status(&broker).await, (LivenessStatus::Down, "heartbeat missed".to_owned()));
    let events = broker
        .events()
        .page(&Filter { kind: Some(EventKind::LivenessChanged), ..Filter::default() }, 0, 10)
        .await
        .expect("events");
    let transitions: Vec<_> =
        events.iter().map(|e| (e.from.clone().unwrap_or_default(), e.to.clone().unwrap_or_default())).collect();
    assert_eq!(transitions, [("unknown".to_owned(), "up".to_owned()), ("up".to_owned(), "down".to_owned())]);
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn not_seen_up_for_the_active_threshold_is_lost() {
    let (dummy, broker) =
        started(Thresholds { active_ms: 300_000, drop_ms: None, reports_may_drop: false }, SYNC).await;
    pass(Duration::from_secs(1)).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Up);
    dummy.liveness().set_unreachable(true);
    pass(INTERVAL).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Unknown, "an engine that does not answer is unknown");
    pass(Duration::from_secs(280)).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Unknown);
    pass(Duration::from_secs(20)).await;
    let (status, reason) = status(&broker).await;
    assert_eq!(status, LivenessStatus::Down);
    assert!(reason.starts_with("lost: not seen up since"), "{reason}");
    // Seen again: up again.
    dummy.liveness().set_unreachable(false);
    pass(INTERVAL).await;
    assert_eq!(self::status(&broker).await.0, LivenessStatus::Up);
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn lost_past_the_drop_threshold_is_deprovisioned_through_the_normal_operation() {
    let (dummy, broker) = started(DROPPING, SYNC).await;
    pass(Duration::from_secs(1)).await;
    dummy.liveness().set("i", "main", esm::domain::liveness::ComponentStatus::Down, Some("exited with code 1"));
    pass(Duration::from_secs(90)).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Down);
    assert!(broker.instances().fetch("i").await.is_ok(), "lost, not dropped yet");
    pass(Duration::from_secs(40)).await;
    assert!(broker.instances().fetch("i").await.is_err(), "dropped");
    let last = broker.instances().last_operation("i", None).await;
    assert!(matches!(last, Err(esm::error::OsbError::Gone)), "last_operation tells the deprovision: {last:?}");
    let events = broker
        .events()
        .page(&Filter { instance_id: Some("i".into()), ..Filter::default() }, 0, 50)
        .await
        .expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).filter(|k| !k.starts_with("liveness")).collect();
    assert_eq!(
        kinds,
        [
            "provision.started",
            "provision.succeeded",
            "instance.dropped",
            "deprovision.started",
            "deprovision.succeeded"
        ]
    );
    broker.shutdown().await;
}

/// Reports `status` for `ttl` as the broker's credentials would.
async fn report(broker: &Arc<Broker>, status: LivenessStatus, ttl: Duration) {
    broker.liveness().report("i", &Reporter::Broker, status, ttl, None).await.expect("report");
}

#[tokio::test(start_paused = true)]
async fn a_report_of_down_never_drops_an_instance_the_backend_sees_up() {
    let (_dummy, broker) = started(DROPPING, SYNC).await;
    pass(Duration::from_secs(1)).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Up);
    report(&broker, LivenessStatus::Down, Duration::from_secs(86_400)).await;
    pass(INTERVAL).await;
    assert_eq!(status(&broker).await.0, LivenessStatus::Down, "the report shows");
    pass(Duration::from_secs(600)).await;
    assert!(broker.instances().fetch("i").await.is_ok(), "ten drop thresholds later it is still there");
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_lapsed_heartbeat_on_an_instance_nothing_observes_never_drops_it() {
    let (_dummy, broker) = started(DROPPING, "x-esm-dummy: {mode: sync, observe: false}\n").await;
    report(&broker, LivenessStatus::Up, Duration::from_secs(1)).await;
    pass(Duration::from_secs(600)).await;
    assert_eq!(status(&broker).await, (LivenessStatus::Down, "heartbeat missed".to_owned()));
    assert!(broker.instances().fetch("i").await.is_ok(), "missed heartbeats alone do not drop it");
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn where_reports_may_drop_a_report_of_down_drops_the_instance() {
    let (_dummy, broker) = started(Thresholds { reports_may_drop: true, ..DROPPING }, SYNC).await;
    pass(Duration::from_secs(1)).await;
    report(&broker, LivenessStatus::Down, Duration::from_secs(86_400)).await;
    pass(Duration::from_secs(60)).await;
    assert!(broker.instances().fetch("i").await.is_ok(), "not yet");
    pass(Duration::from_secs(90)).await;
    assert!(broker.instances().fetch("i").await.is_err(), "dropped, as the operator allowed");
    broker.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_reports_on_one_instance_is_coalesced_into_a_few_writes() {
    let (_dummy, broker) = started(DROPPING, SYNC).await;
    pass(Duration::from_secs(1)).await;
    let ttl = Duration::from_secs(60);
    for n in 0..1000 {
        let note = Note::parse(format!("report {n}")).expect("a note");
        broker.liveness().report("i", &Reporter::Broker, LivenessStatus::Up, ttl, Some(note)).await.expect("report");
    }
    pass(Duration::from_secs(1)).await;
    let stored = broker.store().get(Collection::LivenessReports, "i").await.expect("read").expect("written");
    // Each write bumps the version: the 1,000 reports of one instant took a few.
    assert!(stored.version <= 1 + (Duration::from_secs(1).as_millis() / REPORT_SPACING.as_millis()) as u64);
    assert_eq!(stored.body["report"]["note"], "report 999", "the latest one is kept");
    let (_, liveness) = broker.liveness().of("i").await.expect("lives");
    assert_eq!(liveness.reported.and_then(|r| r.note).as_deref(), Some("report 999"));
    broker.shutdown().await;
}
