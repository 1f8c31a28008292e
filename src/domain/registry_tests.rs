use serde_json::json;

use super::*;

fn service(id: &str, name: &str, plans: &[&str]) -> Service {
    let plans: Vec<_> = plans.iter().map(|p| json!({"id": p, "name": p, "description": "d"})).collect();
    serde_json::from_value(json!({"id": id, "name": name, "description": "d", "plans": plans})).expect("service")
}

fn entry(service_id: &str, plan_id: &str, content: &str) -> ManifestEntry {
    ManifestEntry {
        service_id: service_id.into(),
        plan_id: plan_id.into(),
        manifest_type: "dummy".into(),
        digest: format!("digest-of-{content}"),
        content: content.into(),
    }
}

fn registry() -> Registry {
    let mut r = Registry::default();
    r.put_service(service("s1", "one", &["p1", "p2"]));
    r.manifests.insert("m1".into(), entry("s1", "p1", "c1"));
    r
}

const NOW: u64 = 1_000_000;

#[test]
fn service_names_and_plan_ids_are_unique_across_services() {
    let r = registry();
    assert!(
        matches!(r.check_service(&service("s2", "one", &["p9"]), NOW), Err(Refusal::Conflict(m)) if m.contains("name"))
    );
    assert!(
        matches!(r.check_service(&service("s2", "two", &["p2"]), NOW), Err(Refusal::Conflict(m)) if m.contains("plan id p2"))
    );
    assert_eq!(r.check_service(&service("s2", "two", &["p3"]), NOW), Ok(BTreeSet::new()));
    // Its own name and plans are no clash for a replacement.
    assert_eq!(r.check_service(&service("s1", "one", &["p1", "p2"]), NOW), Ok(BTreeSet::new()));
}

#[test]
fn a_replacement_names_the_plans_it_drops_and_their_manifests_go() {
    let mut r = registry();
    let replacement = service("s1", "one", &["p2"]);
    assert_eq!(r.check_service(&replacement, NOW), Ok(BTreeSet::from(["p1".to_owned()])));
    assert_eq!(r.put_service(replacement), vec!["c1".to_owned()]);
    assert!(r.manifests.is_empty());
    assert_eq!(r.service("s1").map(|s| s.plans.len()), Some(1));
}

#[test]
fn services_stay_ordered_by_id() {
    let mut r = registry();
    r.put_service(service("s0", "zero", &["q0"]));
    r.put_service(service("s9", "nine", &["q9"]));
    let ids: Vec<_> = r.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s0", "s1", "s9"]);
}

#[test]
fn removing_a_service_takes_its_manifests() {
    let mut r = registry();
    assert_eq!(r.remove_service("s1"), vec!["c1".to_owned()]);
    assert!(r.services.is_empty() && r.manifests.is_empty());
}

#[test]
fn a_plan_has_one_manifest_and_a_manifest_needs_its_service_and_plan() {
    let r = registry();
    assert_eq!(r.check_manifest("m1", &entry("s1", "p1", "c1"), NOW), Ok(ManifestChange::Same));
    assert!(matches!(r.check_manifest("m1", &entry("s1", "p1", "other"), NOW), Err(Refusal::Conflict(_))));
    assert!(
        matches!(r.check_manifest("m2", &entry("s1", "p1", "c2"), NOW), Err(Refusal::Conflict(m)) if m.contains("one manifest"))
    );
    assert!(matches!(r.check_manifest("m2", &entry("sx", "p2", "c2"), NOW), Err(Refusal::BadRequest(_))));
    assert!(matches!(r.check_manifest("m2", &entry("s1", "px", "c2"), NOW), Err(Refusal::BadRequest(_))));
    assert_eq!(r.check_manifest("m2", &entry("s1", "p2", "c2"), NOW), Ok(ManifestChange::New));
}

#[test]
fn a_retiring_plan_takes_no_new_manifest_instance_or_service() {
    let mut r = registry();
    r.retire("t", BTreeSet::from(["p1".to_owned(), "p2".to_owned()]), NOW);
    assert!(matches!(r.check_plan_in_use("s1", "p1", "c1", NOW + 1), Err(Refusal::Busy(_))));
    assert!(matches!(r.check_manifest("m2", &entry("s1", "p2", "c2"), NOW), Err(Refusal::Busy(_))));
    assert!(matches!(r.check_service(&service("s1", "one", &["p1", "p2"]), NOW), Err(Refusal::Busy(_))));
    assert!(r.release("t"));
    assert!(!r.release("t"), "released once");
    assert_eq!(r.check_plan_in_use("s1", "p1", "c1", NOW), Ok(()));
}

#[test]
fn a_retirement_lapses_so_a_dead_remover_blocks_nothing_for_long() {
    let mut r = registry();
    r.retire("t", BTreeSet::from(["p1".to_owned()]), NOW);
    let later = NOW + RETIREMENT_TTL_MS;
    assert!(r.retiring("p1", later - 1).is_some());
    assert!(r.retiring("p1", later).is_none());
    assert!(r.drop_lapsed_retirements(later));
    assert!(!r.release("t"), "its remover can no longer finish");
}

#[test]
fn an_instance_needs_its_plan_and_the_manifest_it_read() {
    let r = registry();
    assert_eq!(r.check_plan_in_use("s1", "p1", "c1", NOW), Ok(()));
    assert!(matches!(r.check_plan_in_use("s1", "p1", "c0", NOW), Err(Refusal::Busy(_))));
    assert!(matches!(r.check_plan_in_use("s1", "p2", "c1", NOW), Err(Refusal::Busy(_))), "p2 has no manifest");
    assert!(matches!(r.check_plan_in_use("s1", "p7", "c1", NOW), Err(Refusal::BadRequest(_))));
}

#[test]
fn a_manifest_digest_follows_its_content_and_id() {
    let m: Manifest = serde_json::from_value(json!({
        "id": "m", "service_id": "s", "plan_id": "p", "manifest_type": "dummy", "manifest_content": "x",
        "config": {"b": 1, "a": 2}
    }))
    .expect("manifest");
    let mut other = m.clone();
    assert_eq!(m.digest(), other.digest());
    other.manifest_content = "y".into();
    assert_ne!(m.digest(), other.digest());
    let mut renamed = m.clone();
    renamed.id = "n".into();
    assert_ne!(m.digest(), renamed.digest());
    assert_eq!(m.digest().len(), 64);
}

#[test]
fn the_service_count_and_the_record_size_are_capped_naming_the_setting() {
    let limits = CatalogLimits { max_services: 2, ..CatalogLimits::default() };
    let mut r = registry();
    r.check_service_limits(&service("s2", "two", &["p3"]), &limits).expect("the second service fits");
    r.put_service(service("s2", "two", &["p3"]));
    let Err(Refusal::Conflict(m)) = r.check_service_limits(&service("s3", "three", &["p4"]), &limits) else {
        panic!("the third service is refused")
    };
    assert!(m.contains("ESM_CATALOG_MAX_SERVICES"), "{m}");
    r.check_service_limits(&service("s2", "two", &["p3", "p5"]), &limits).expect("replacing one still works");

    let tight = CatalogLimits { max_registry_bytes: json_size(&r) + 10, ..CatalogLimits::default() };
    let Err(Refusal::Conflict(m)) = r.check_service_limits(&service("s2", "two", &["p3", "p5"]), &tight) else {
        panic!("a replacement growing the record past the bound is refused")
    };
    assert!(m.contains("ESM_CATALOG_MAX_BYTES"), "{m}");
    let over = CatalogLimits { max_registry_bytes: 1, ..CatalogLimits::default() };
    r.check_service_limits(&service("s2", "two", &["p3"]), &over).expect("a replacement that does not grow passes");
}

#[test]
fn the_manifest_count_is_capped_naming_the_setting() {
    let limits = CatalogLimits { max_manifests: 1, ..CatalogLimits::default() };
    let r = registry();
    let Err(Refusal::Conflict(m)) = r.check_manifest_limits("m2", &entry("s1", "p2", "c2"), &limits) else {
        panic!("the second manifest is refused")
    };
    assert!(m.contains("ESM_CATALOG_MAX_MANIFESTS"), "{m}");
    r.check_manifest_limits("m2", &entry("s1", "p2", "c2"), &CatalogLimits::default()).expect("within the default");
}
