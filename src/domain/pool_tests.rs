use serde_json::json;

use super::*;
use crate::domain::instance::InstanceMetadata;
use crate::domain::liveness::Liveness;
use crate::domain::operation::{Operation, OperationLog};
use crate::domain::registry::ManifestEntry;

fn pool(parameters: Option<Value>) -> Pool {
    Pool {
        max_age_seconds: Some(60),
        parameters: parameters.and_then(|p| p.as_object().cloned()),
        ..Pool::new("p", "s", 2, Timestamp::from_millis(0))
    }
}

/// A member whose provision started at Unix time 0 and `finished` (None: still running).
fn member(finished: Option<bool>, parameters: Option<Value>) -> ServiceInstance {
    let mut op = Operation::start(OperationKind::Provision, true, std::time::UNIX_EPOCH);
    let status = match finished {
        None => InstanceStatus::Provisioning,
        Some(true) => {
            op.succeed(std::time::UNIX_EPOCH + Duration::from_secs(1));
            InstanceStatus::Provisioned
        }
        Some(false) => {
            op.fail(std::time::UNIX_EPOCH, "image missing", None, None);
            InstanceStatus::ProvisionFailed
        }
    };
    let mut operations = OperationLog::default();
    operations.push(op);
    ServiceInstance {
        id: format!("{MEMBER_PREFIX}1"),
        service_id: "s".into(),
        plan_id: "p".into(),
        organization_guid: "esm-pool".into(),
        space_guid: "esm-pool".into(),
        context: None,
        parameters,
        maintenance_info: None,
        metadata: InstanceMetadata::default(),
        dashboard_url: None,
        manifest_id: "m".into(),
        manifest_type: Some("dummy".into()),
        status,
        deployment: Map::new(),
        operations,
        created_at: Timestamp::from_millis(0),
        liveness: None,
        deployment_id: None,
        pool: Some(Membership { manifest_digest: Some("d".into()), ..Membership::default() }),
        host_ports: Default::default(),
        outbox: Default::default(),
        engine: None,
        retiring: None,
    }
}

#[test]
fn only_the_pools_exact_parameters_are_handed_a_member() {
    let none = pool(None);
    assert!(none.accepts(None) && none.accepts(Some(&json!({}))));
    assert!(!none.accepts(Some(&json!({"size": 1}))));
    let some = pool(Some(json!({"size": 1})));
    assert!(some.accepts(Some(&json!({"size": 1}))));
    assert!(!some.accepts(None) && !some.accepts(Some(&json!({"size": 2}))));
    assert!(!some.accepts(Some(&json!({"size": 1, "more": true}))));
    assert_eq!(pool(Some(json!({}))).member_parameters(), None, "an empty object is none");
}

#[test]
fn a_member_is_ready_only_when_deployed_live_current_and_young() {
    let p = pool(None);
    let at = |seconds: u64| seconds * 1000;
    assert_eq!(judge_member(&member(None, None), &p, "d", at(5)), MemberState::Deploying);
    assert_eq!(judge_member(&member(Some(true), None), &p, "d", at(5)), MemberState::Ready);
    assert_eq!(judge_member(&member(Some(false), None), &p, "d", at(5)), MemberState::Broken(Fault::DeployFailed));
    assert_eq!(judge_member(&member(Some(true), None), &p, "d", at(61)), MemberState::Broken(Fault::Aged(60)));
    let other = judge_member(&member(Some(true), Some(json!({"a": 1}))), &p, "d", at(5));
    assert_eq!(other, MemberState::Broken(Fault::ParametersChanged));
    let mut down = member(Some(true), None);
    let mut liveness = Liveness::unknown(0, Timestamp::from_millis(0));
    liveness.status = LivenessStatus::Down;
    liveness.reason = "container web exited".into();
    down.liveness = Some(liveness);
    assert_eq!(judge_member(&down, &p, "d", at(5)), MemberState::Broken(Fault::Died(LivenessStatus::Down)));
    let mut removing = member(Some(true), None);
    removing.operations.push(Operation::start(OperationKind::Deprovision, true, std::time::UNIX_EPOCH));
    assert_eq!(judge_member(&removing, &p, "d", at(5)), MemberState::Removing);
    let targeting = Pool { engine: Some("e2".into()), ..pool(None) };
    let on_default = member(Some(true), None);
    assert_eq!(judge_member(&on_default, &targeting, "d", at(5)), MemberState::Broken(Fault::OtherEngine));
    let on_e2 = ServiceInstance { engine: Some("e2".into()), ..member(Some(true), None) };
    assert_eq!(judge_member(&on_e2, &targeting, "d", at(5)), MemberState::Ready);
}

#[test]
fn a_member_made_from_another_manifest_content_is_stale_whatever_its_manifest_id() {
    let p = pool(None);
    let current = member(Some(true), None);
    assert!(made_from(&current, "d"));
    // The same manifest id registered again with other content: another digest.
    assert_eq!(judge_member(&current, &p, "e", 5000), MemberState::Broken(Fault::ManifestChanged));
    // A member recorded before esm kept digests is never taken for a current one.
    let mut unknown = member(Some(true), None);
    unknown.pool = Some(Membership::default());
    assert!(!made_from(&unknown, "d") && !made_from(&unknown, ""));
    assert_eq!(judge_member(&unknown, &p, "d", 5000), MemberState::Broken(Fault::ManifestChanged));
}

#[test]
fn a_member_deploys_only_while_its_plan_has_the_manifest_it_records() {
    let entry = |digest: &str| ManifestEntry {
        service_id: "s".into(),
        plan_id: "p".into(),
        manifest_type: "dummy".into(),
        digest: digest.into(),
        content: "k".into(),
    };
    let mut registry = Registry::default();
    let m = member(None, None);
    assert!(!deploys_recorded_manifest(&m, &registry), "its manifest is gone");
    registry.manifests.insert("m".into(), entry("e"));
    assert!(!deploys_recorded_manifest(&m, &registry), "replaced by other content since it was recorded");
    registry.manifests.insert("m".into(), entry("d"));
    assert!(deploys_recorded_manifest(&m, &registry));
    let platform = ServiceInstance { pool: None, ..m };
    assert!(deploys_recorded_manifest(&platform, &Registry::default()), "not a member: not this rule's business");
}

#[test]
fn only_a_member_dying_after_it_was_deployed_is_a_new_failure_and_faults_are_told_in_esms_words() {
    let died = Fault::Died(LivenessStatus::Down);
    assert!(died.is_new_failure());
    for counted_elsewhere_or_blameless in
        [Fault::DeployFailed, Fault::ManifestChanged, Fault::ParametersChanged, Fault::Aged(60)]
    {
        assert!(!counted_elsewhere_or_blameless.is_new_failure(), "{counted_elsewhere_or_blameless:?}");
    }
    assert_eq!(died.to_string(), "a member was down after it was deployed");
    // What the engine said (the failed operation's description) is not part of it.
    let mut p = pool(None);
    p.failed(&Fault::DeployFailed, Timestamp::from_millis(1), 0);
    assert_eq!(
        p.last_error,
        Some(PoolError { message: "deploying a member failed".into(), at: Timestamp::from_millis(1) })
    );
}

#[test]
fn failures_back_off_from_a_second_to_five_minutes_until_a_member_proves_itself() {
    let mut p = pool(None);
    let waits: Vec<u64> = (0..12)
        .map(|_| {
            p.failed(&Fault::Died(LivenessStatus::Down), Timestamp::from_millis(0), 0);
            p.retry_at
        })
        .collect();
    assert_eq!(&waits[..4], &[1000, 2000, 4000, 8000]);
    assert_eq!(waits[11], 300_000, "capped");
    assert_eq!(backoff_ms(u32::MAX), 300_000, "no overflow");
    // Deployed at 1 s: not proven before it has been ready for a minute.
    let deployed = member(Some(true), None);
    assert!(!proven(&deployed, 60_999));
    assert!(proven(&deployed, 61_000));
    assert!(p.recovered());
    assert_eq!((p.failures, p.retry_at), (0, 0));
    assert!(!p.recovered(), "nothing left to end");
    assert!(p.last_error.is_some(), "the last error stays visible");
}

#[test]
fn the_keeper_looks_again_soon_while_a_pool_moves_later_when_settled_and_never_when_it_is_empty() {
    let now = 100_000;
    let mut idle = pool(None);
    idle.size = 0;
    assert_eq!(next_look(&idle, &Look::default(), now), None, "holds and wants nothing: only a change wakes it");
    idle.draining = true;
    idle.size = 3;
    assert_eq!(next_look(&idle, &Look::default(), now), None, "drained and empty");
    let busy = Look { held: 1, busy: true, due: None };
    assert_eq!(next_look(&idle, &busy, now), Some(now + 1000));
    let p = pool(None);
    let settled = Look { held: 2, busy: false, due: None };
    assert_eq!(next_look(&p, &settled, now), Some(now + 10_000));
    // A member ages out (max_age_seconds 60, ready at 1 s) before the settled look.
    let mut ageing = settled.clone();
    ageing.ready_member(&p, &member(Some(true), None));
    assert_eq!(ageing.due, Some(61_000));
    assert_eq!(next_look(&p, &ageing, 58_000), Some(61_000));
    assert_eq!(next_look(&p, &ageing, now), Some(now), "overdue: at once");
    // While the pool backs off, a member proving itself is due too.
    let mut failing = pool(None);
    failing.max_age_seconds = None;
    let mut look = settled.clone();
    look.ready_member(&failing, &member(Some(true), None));
    assert_eq!(look.due, None, "no failures, no age limit: nothing at its own time");
    failing.failed(&Fault::Died(LivenessStatus::Down), Timestamp::from_millis(0), 0);
    look.ready_member(&failing, &member(Some(true), None));
    assert_eq!(look.due, Some(61_000));
}

#[test]
fn one_replica_keeps_a_pool_until_its_lease_lapses() {
    let mut p = pool(None);
    assert!(p.keepable_by("a", 0));
    p.keeper = Some(Keeper { owner: "a".into(), until: 100 });
    assert!(p.keepable_by("a", 50) && !p.keepable_by("b", 50));
    assert!(p.keepable_by("b", 100));
    p.draining = true;
    assert_eq!(p.wanted(), 0);
}
