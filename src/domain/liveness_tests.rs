use super::*;
use crate::domain::bounded::Note;
use crate::domain::time::Timestamp;

const THRESHOLDS: Thresholds = Thresholds { active_ms: 300_000, drop_ms: None, reports_may_drop: false };
/// A drop threshold of a minute, reports not counting toward it (the default).
const DROPPING: Thresholds = Thresholds { active_ms: 30_000, drop_ms: Some(60_000), reports_may_drop: false };

fn component(name: &str, status: ComponentStatus) -> Component {
    Component { name: name.into(), kind: "container".into(), status, reason: None }
}

fn observed(components: Vec<Component>) -> Liveness {
    let mut liveness = Liveness::unknown(0, Timestamp::from_millis(0));
    liveness.observed = Some(Observation::of(&components));
    liveness.components = components;
    liveness
}

fn report(status: LivenessStatus, expires_at: u64) -> Report {
    Report { status, note: Some(Note::parse("ok").expect("a note")), at: 0, expires_at }
}

#[test]
fn components_make_up_degraded_or_down() {
    let up = component("web", ComponentStatus::Up);
    let down = Component { reason: Some("exited with 137".into()), ..component("db", ComponentStatus::Down) };
    assert_eq!(observed_status(std::slice::from_ref(&up)).0, LivenessStatus::Up);
    let (status, reason) = observed_status(&[up.clone(), down.clone()]);
    assert_eq!((status, reason.as_str()), (LivenessStatus::Degraded, "db down: exited with 137"));
    assert_eq!(observed_status(&[up, component("db", ComponentStatus::Starting)]).0, LivenessStatus::Degraded);
    assert_eq!(observed_status(&[down]).0, LivenessStatus::Down);
    assert_eq!(observed_status(&[]).0, LivenessStatus::Down, "a deployment with nothing left is down");
}

#[test]
fn nothing_observed_and_nothing_reported_is_unknown_never_up() {
    let mut liveness = Liveness::unknown(0, Timestamp::from_millis(0));
    assert!(!liveness.judge(1_000, THRESHOLDS));
    assert_eq!(liveness.status, LivenessStatus::Unknown);
}

#[test]
fn the_worse_source_wins() {
    let mut liveness = observed(vec![component("web", ComponentStatus::Up)]);
    liveness.reported = Some(report(LivenessStatus::Down, 60_000));
    assert!(liveness.judge(1_000, THRESHOLDS));
    assert_eq!(liveness.status, LivenessStatus::Down);
    assert_eq!(liveness.reason, "reported down: ok");

    liveness.reported = Some(report(LivenessStatus::Up, 60_000));
    assert!(liveness.judge(2_000, THRESHOLDS));
    assert_eq!(liveness.status, LivenessStatus::Up);
    assert_eq!(liveness.last_up_at, Some(2_000));
}

#[test]
fn a_missed_heartbeat_is_down() {
    let mut liveness = Liveness::unknown(0, Timestamp::from_millis(0));
    liveness.reported = Some(report(LivenessStatus::Up, 30_000));
    liveness.judge(29_999, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Up);
    assert!(liveness.judge(30_000, THRESHOLDS));
    assert_eq!((liveness.status, liveness.reason.as_str()), (LivenessStatus::Down, "heartbeat missed"));
}

#[test]
fn not_seen_up_past_the_active_threshold_is_lost_and_past_the_drop_threshold_dropped() {
    let thresholds = Thresholds { active_ms: 300_000, drop_ms: Some(600_000), reports_may_drop: false };
    let mut liveness = observed(vec![component("web", ComponentStatus::Up)]);
    liveness.judge(10_000, thresholds);
    assert_eq!(liveness.status, LivenessStatus::Up);
    liveness.components = vec![component("web", ComponentStatus::Up), component("db", ComponentStatus::Unhealthy)];
    liveness.observed = Some(Observation::of(&liveness.components));
    // Seen degraded at 20 s: up until then, so the thresholds count from there.
    assert!(liveness.judge(20_000, thresholds));
    assert_eq!(liveness.status, LivenessStatus::Degraded);
    assert!(!liveness.judge(319_999, thresholds));
    assert_eq!(liveness.verdict(319_999, thresholds), Verdict::Active);
    assert!(liveness.judge(320_000, thresholds));
    assert_eq!(liveness.status, LivenessStatus::Down);
    assert!(liveness.reason.starts_with("lost: not seen up since 1970-01-01T00:00:20"), "{}", liveness.reason);
    assert_eq!(liveness.verdict(320_000, thresholds), Verdict::Lost);
    assert_eq!(liveness.verdict(620_000, thresholds), Verdict::Drop);
}

#[test]
fn an_instance_never_seen_up_is_lost_after_the_threshold_from_when_it_was_first_watched() {
    let mut liveness = Liveness::unknown(5_000, Timestamp::from_millis(0));
    liveness.observed = Some(Observation::unreachable("engine down"));
    liveness.judge(304_999, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Unknown);
    liveness.judge(305_000, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Down);
    assert!(liveness.reason.contains("since it was first watched"), "{}", liveness.reason);
}

#[test]
fn an_instance_nothing_watches_stays_unknown_past_the_thresholds() {
    let mut liveness = Liveness::unknown(0, Timestamp::from_millis(0));
    liveness.judge(10_000_000, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Unknown);
    assert_eq!(
        liveness.verdict(10_000_000, Thresholds { active_ms: 1, drop_ms: Some(1), reports_may_drop: true }),
        Verdict::Active
    );
}

#[test]
fn statuses_spell_as_the_api_does() {
    for status in [LivenessStatus::Up, LivenessStatus::Degraded, LivenessStatus::Down, LivenessStatus::Unknown] {
        assert_eq!(LivenessStatus::parse(status.as_str()), Some(status));
        assert_eq!(serde_json::to_value(status).expect("serialises"), status.as_str());
    }
    assert_eq!(LivenessStatus::parse("UP"), None);
}

#[test]
fn a_reported_down_never_drops_an_instance_its_backend_sees_up() {
    let mut liveness = observed(vec![component("web", ComponentStatus::Up)]);
    liveness.reported = Some(report(LivenessStatus::Down, 10_000_000));
    for now in [1_000, 100_000, 1_000_000] {
        liveness.judge(now, DROPPING);
        assert_eq!(liveness.status, LivenessStatus::Down, "the report still shows");
        assert_ne!(liveness.verdict(now, DROPPING), Verdict::Drop, "at {now}");
    }
    // Where the operator lets reports drop, the same report does.
    let reports_drop = Thresholds { reports_may_drop: true, ..DROPPING };
    assert_eq!(liveness.verdict(1_000_000, reports_drop), Verdict::Drop);
}

#[test]
fn a_lapsed_heartbeat_on_an_instance_no_backend_watches_never_drops_it() {
    let mut liveness = Liveness::unknown(0, Timestamp::from_millis(0));
    liveness.reported = Some(report(LivenessStatus::Up, 1_000));
    liveness.judge(2_000, DROPPING);
    assert_eq!((liveness.status, liveness.reason.as_str()), (LivenessStatus::Down, "heartbeat missed"));
    assert_eq!(liveness.verdict(10_000_000, DROPPING), Verdict::Lost, "lost, shown down, kept");
}

#[test]
fn the_backend_seeing_it_down_past_the_drop_threshold_drops_it_whatever_it_reports() {
    let mut liveness = observed(vec![component("web", ComponentStatus::Up)]);
    liveness.judge(1_000, DROPPING);
    assert_eq!(liveness.observed_up_at, Some(1_000));
    liveness.components = vec![component("web", ComponentStatus::Down)];
    liveness.observed = Some(Observation::of(&liveness.components));
    // A heartbeat saying up keeps it "seen up", but not observed up.
    liveness.reported = Some(report(LivenessStatus::Up, 10_000_000));
    liveness.judge(30_000, DROPPING);
    assert_ne!(liveness.verdict(60_999, DROPPING), Verdict::Drop);
    assert_eq!(liveness.verdict(61_000, DROPPING), Verdict::Drop);
}

#[test]
fn an_engine_that_does_not_answer_never_drops_an_instance() {
    let mut liveness = observed(vec![component("web", ComponentStatus::Up)]);
    liveness.judge(1_000, DROPPING);
    liveness.observed = Some(Observation::unreachable("engine down"));
    liveness.judge(2_000, DROPPING);
    assert_eq!(liveness.verdict(10_000_000, DROPPING), Verdict::Lost);
}

#[test]
fn heartbeats_that_say_the_same_are_not_worth_writing() {
    let mut before = observed(vec![component("web", ComponentStatus::Up)]);
    before.reported = Some(report(LivenessStatus::Up, 30_000));
    before.judge(1_000, THRESHOLDS);
    let mut next = before.clone();
    next.reported = Some(Report { at: 20_000, expires_at: 50_000, ..report(LivenessStatus::Up, 0) });
    next.judge(20_000, THRESHOLDS);
    assert!(!next.differs_from(&before), "only the times moved on");
    next.reported =
        Some(Report { note: Some(Note::parse("draining").expect("a note")), ..report(LivenessStatus::Up, 0) });
    assert!(next.differs_from(&before), "a new note is worth writing");
}

#[test]
fn a_stored_note_that_is_no_note_now_is_dropped_not_fatal() {
    let stored = serde_json::json!({"status": "up", "note": "\u{1b}[2J".repeat(2), "at": 0, "expires_at": 1});
    let report: Report = serde_json::from_value(stored).expect("still readable");
    assert_eq!(report.note, None);
}
