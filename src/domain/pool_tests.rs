use serde_json::json;

use super::*;
use crate::domain::instance::InstanceMetadata;
use crate::domain::liveness::Liveness;
use crate::domain::operation::{Operation, OperationLog};

fn pool(parameters: Option<Value>) -> Pool {
    Pool {
        max_age_seconds: Some(60),
        parameters: parameters.and_then(|p| p.as_object().cloned()),
        ..Pool::new("p", "s", 2, "")
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
        created_at: String::new(),
        liveness: None,
        deployment_id: None,
        pool: Some(Membership::default()),
        host_ports: Default::default(),
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
    assert_eq!(judge_member(&member(None, None), &p, "m", at(5)), MemberState::Deploying);
    assert_eq!(judge_member(&member(Some(true), None), &p, "m", at(5)), MemberState::Ready);
    let failed = judge_member(&member(Some(false), None), &p, "m", at(5));
    assert!(matches!(&failed, MemberState::Broken(why) if why.contains("image missing")), "{failed:?}");
    let aged = judge_member(&member(Some(true), None), &p, "m", at(61));
    assert!(matches!(&aged, MemberState::Broken(why) if why.contains("max_age_seconds")), "{aged:?}");
    let stale = judge_member(&member(Some(true), None), &p, "other manifest", at(5));
    assert!(matches!(&stale, MemberState::Broken(why) if why.contains("manifest")), "{stale:?}");
    let other = judge_member(&member(Some(true), Some(json!({"a": 1}))), &p, "m", at(5));
    assert!(matches!(&other, MemberState::Broken(why) if why.contains("parameters")), "{other:?}");
    let mut down = member(Some(true), None);
    let mut liveness = Liveness::unknown(0, String::new());
    liveness.status = LivenessStatus::Down;
    liveness.reason = "container web exited".into();
    down.liveness = Some(liveness);
    let down = judge_member(&down, &p, "m", at(5));
    assert!(matches!(&down, MemberState::Broken(why) if why.contains("web exited")), "{down:?}");
    let mut removing = member(Some(true), None);
    removing.operations.push(Operation::start(OperationKind::Deprovision, true, std::time::UNIX_EPOCH));
    assert_eq!(judge_member(&removing, &p, "m", at(5)), MemberState::Removing);
}

#[test]
fn failed_deploys_back_off_from_a_second_to_five_minutes_and_a_success_ends_it() {
    let mut p = pool(None);
    let waits: Vec<u64> = (0..12)
        .map(|_| {
            p.failed("no image".into(), String::new(), 0);
            p.retry_at
        })
        .collect();
    assert_eq!(&waits[..4], &[1000, 2000, 4000, 8000]);
    assert_eq!(waits[11], 300_000, "capped");
    assert_eq!(backoff_ms(u32::MAX), 300_000, "no overflow");
    p.deployed();
    assert_eq!((p.failures, p.retry_at), (0, 0));
    assert_eq!(p.last_error.as_ref().map(|e| e.message.as_str()), Some("no image"), "the last error stays visible");
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
