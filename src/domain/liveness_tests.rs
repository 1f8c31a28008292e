use super::*;

const THRESHOLDS: Thresholds = Thresholds { active_ms: 300_000, drop_ms: None };

fn component(name: &str, status: ComponentStatus) -> Component {
    Component { name: name.into(), kind: "container".into(), status, reason: None }
}

fn observed(components: Vec<Component>) -> Liveness {
    let mut liveness = Liveness::unknown(0, "t0".into());
    liveness.observed = Some(observed_status(&components).0);
    liveness.components = components;
    liveness
}

fn report(status: LivenessStatus, expires_at: u64) -> Report {
    Report { status, note: Some("ok".into()), at: 0, expires_at }
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
    let mut liveness = Liveness::unknown(0, "t0".into());
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
    let mut liveness = Liveness::unknown(0, "t0".into());
    liveness.reported = Some(report(LivenessStatus::Up, 30_000));
    liveness.judge(29_999, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Up);
    assert!(liveness.judge(30_000, THRESHOLDS));
    assert_eq!((liveness.status, liveness.reason.as_str()), (LivenessStatus::Down, "heartbeat missed"));
}

#[test]
fn not_seen_up_past_the_active_threshold_is_lost_and_past_the_drop_threshold_dropped() {
    let thresholds = Thresholds { active_ms: 300_000, drop_ms: Some(600_000) };
    let mut liveness = observed(vec![component("web", ComponentStatus::Up)]);
    liveness.judge(10_000, thresholds);
    assert_eq!(liveness.status, LivenessStatus::Up);
    // Degraded from then on: never seen up again.
    liveness.components = vec![component("web", ComponentStatus::Up), component("db", ComponentStatus::Unhealthy)];
    liveness.observed = Some(LivenessStatus::Degraded);
    liveness.judge(309_999, thresholds);
    assert_eq!(liveness.status, LivenessStatus::Degraded);
    assert_eq!(liveness.verdict(309_999, thresholds), Verdict::Active);
    assert!(liveness.judge(310_000, thresholds));
    assert_eq!(liveness.status, LivenessStatus::Down);
    assert!(liveness.reason.starts_with("lost: not seen up for 300 s"), "{}", liveness.reason);
    assert_eq!(liveness.verdict(310_000, thresholds), Verdict::Lost);
    assert_eq!(liveness.verdict(610_000, thresholds), Verdict::Drop);
}

#[test]
fn an_instance_never_seen_up_is_lost_after_the_threshold_from_when_it_was_first_watched() {
    let mut liveness = Liveness::unknown(5_000, "t0".into());
    liveness.judge(304_999, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Unknown);
    liveness.judge(305_000, THRESHOLDS);
    assert_eq!(liveness.status, LivenessStatus::Down);
}

#[test]
fn statuses_spell_as_the_api_does() {
    for status in [LivenessStatus::Up, LivenessStatus::Degraded, LivenessStatus::Down, LivenessStatus::Unknown] {
        assert_eq!(LivenessStatus::parse(status.as_str()), Some(status));
        assert_eq!(serde_json::to_value(status).expect("serialises"), status.as_str());
    }
    assert_eq!(LivenessStatus::parse("UP"), None);
}
