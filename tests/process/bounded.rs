//! Bounded by construction, against the real binary under a memory cap: oversized and
//! control-character ids, names and descriptions sent to every OSB and ElasTest route
//! are refused with a 400 naming the limit (and quoting nothing raw), without growing
//! esm's memory or store; re-registering a service as it is writes nothing; and the
//! catalog's counts and bytes stop at their settings. Every payload is generated here.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Client, Esm, eventually, temp_dir};

fn service(id: &str, name: &str, plans: &[&str]) -> Value {
    let plans: Vec<Value> = plans.iter().map(|p| json!({"id": p, "name": p, "description": "d"})).collect();
    json!({"id": id, "name": name, "description": "d", "bindable": true, "plans": plans})
}

/// The bytes of every file under `dir`.
fn store_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => store_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// How many events the log holds (at most 1000, which is all these tests make).
async fn event_count(client: &Client) -> usize {
    let (status, body) = client.send(Method::GET, "/v2/et/events?after=0&limit=1000", None).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().map_or(0, Vec::len)
}

/// Asserts a 400 with the OSB error body, naming a limit and quoting nothing raw.
fn assert_refused(what: &str, status: u16, body: &Value) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"], "BadRequest", "{what}: {body}");
    let description = body["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("at most") || description.contains("must hold only"),
        "{what}: the description names the limit: {description}"
    );
    assert!(!description.chars().any(char::is_control), "{what}: nothing quoted raw: {description:?}");
    assert!(description.len() <= 1024, "{what}: {} bytes of description", description.len());
}

#[tokio::test]
async fn oversized_and_control_character_text_is_refused_on_every_route_without_growing_esm() {
    let dir = temp_dir("esm-bounded");
    let (mut esm, client) = Esm::start_capped_in(&dir, &[]).await;
    let (status, body) = client.send(Method::PUT, "/v2/et/catalog", Some(&service("svc", "svc", &["plan"]))).await;
    assert_eq!(status, 201, "{body}");
    let store_before = store_bytes(dir.path());

    // Within the 1 MiB body limit: what the 900 KB ids were.
    let huge = "x".repeat(900_000);
    let escape = "a\u{1b}]0;owned\u{7}";
    // Paths and queries: long enough to be refused, short enough for any URI limit.
    let long = "y".repeat(300);
    let esc = "a%1B%5B2Jb";
    let provision = json!({"service_id": "svc", "plan_id": "plan", "organization_guid": "o", "space_guid": "s"});
    let with = |body: &Value, field: &str, value: &str| {
        let mut body = body.clone();
        body[field] = json!(value);
        body
    };
    let bind = json!({"service_id": "svc", "plan_id": "plan"});
    let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "dummy",
                          "manifest_content": "x-esm-dummy: {mode: sync}"});
    let svc = service("svc2", "svc2", &["plan2"]);
    let mut plan_huge = svc.clone();
    plan_huge["plans"][0]["description"] = json!(huge);
    let mut tag_escape = svc.clone();
    tag_escape["tags"] = json!([escape]);
    let mut version_long = svc.clone();
    version_long["plans"][0]["maintenance_info"] = json!({"version": long});

    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PUT, format!("/v2/service_instances/{long}"), Some(provision.clone())),
        (Method::PUT, format!("/v2/service_instances/{esc}"), Some(provision.clone())),
        (Method::PUT, "/v2/service_instances/i1".into(), Some(with(&provision, "service_id", &huge))),
        (Method::PUT, "/v2/service_instances/i1".into(), Some(with(&provision, "plan_id", escape))),
        (Method::PUT, "/v2/service_instances/i1".into(), Some(with(&provision, "organization_guid", &huge))),
        (Method::PUT, "/v2/service_instances/i1".into(), Some(with(&provision, "space_guid", escape))),
        (Method::PATCH, "/v2/service_instances/i1".into(), Some(json!({"service_id": "svc", "plan_id": huge}))),
        (Method::PATCH, format!("/v2/service_instances/{long}"), Some(json!({"service_id": "svc"}))),
        (Method::DELETE, format!("/v2/service_instances/i1?service_id={long}&plan_id=plan"), None),
        (Method::DELETE, format!("/v2/service_instances/i1?service_id=svc&plan_id={esc}"), None),
        (Method::GET, format!("/v2/service_instances/{long}"), None),
        (Method::GET, format!("/v2/service_instances/i1?plan_id={esc}"), None),
        (Method::GET, format!("/v2/service_instances/i1/last_operation?operation={long}"), None),
        (Method::PUT, format!("/v2/service_instances/i1/service_bindings/{long}"), Some(bind.clone())),
        (Method::PUT, "/v2/service_instances/i1/service_bindings/b1".into(), Some(with(&bind, "app_guid", &huge))),
        (
            Method::PUT,
            "/v2/service_instances/i1/service_bindings/b1".into(),
            Some(with(&bind, "predecessor_binding_id", escape)),
        ),
        (Method::DELETE, format!("/v2/service_instances/{esc}/service_bindings/b1?service_id=svc&plan_id=plan"), None),
        (Method::GET, format!("/v2/service_instances/i1/service_bindings/{long}"), None),
        (Method::GET, format!("/v2/service_instances/i1/service_bindings/b1/last_operation?operation={esc}"), None),
        (Method::PUT, "/v2/et/catalog".into(), Some(with(&svc, "id", &huge))),
        (Method::PUT, "/v2/et/catalog".into(), Some(with(&svc, "name", escape))),
        (Method::PUT, "/v2/et/catalog".into(), Some(with(&svc, "description", &huge))),
        (Method::PUT, "/v2/et/catalog".into(), Some(with(&svc, "short_name", escape))),
        (Method::PUT, "/v2/et/catalog".into(), Some(plan_huge)),
        (Method::PUT, "/v2/et/catalog".into(), Some(tag_escape)),
        (Method::PUT, "/v2/et/catalog".into(), Some(version_long)),
        (Method::DELETE, format!("/v2/et/catalog/{long}"), None),
        (Method::DELETE, format!("/v2/et/catalog?service_id={esc}"), None),
        (Method::PUT, format!("/v2/et/manifest/{long}"), Some(manifest.clone())),
        (Method::PUT, "/v2/et/manifest/m".into(), Some(with(&manifest, "service_id", &huge))),
        (Method::PUT, "/v2/et/manifest/m".into(), Some(with(&manifest, "manifest_type", escape))),
        (Method::GET, format!("/v2/et/manifest/{esc}"), None),
        (Method::DELETE, format!("/v2/et/manifest/{long}"), None),
        (Method::GET, format!("/v2/et/service_instances?service_id={long}"), None),
        (Method::GET, format!("/v2/et/service_instances?after={}", "c".repeat(2000)), None),
        (Method::GET, format!("/v2/et/service_instances?backend={esc}"), None),
        (Method::GET, format!("/v2/et/service_instances/{long}"), None),
        (Method::GET, format!("/v2/et/service_instances/{esc}/resources"), None),
        (Method::GET, format!("/v2/et/inventory?owner={long}"), None),
        (Method::GET, format!("/v2/et/inventory?name={esc}"), None),
    ];
    // Twice over, so that a leak per request would show.
    for _ in 0..2 {
        for (method, path, body) in &cases {
            let (status, answer) = client.send(method.clone(), path, body.as_ref()).await;
            assert_refused(&format!("{method} {}", &path[..path.len().min(80)]), status, &answer);
        }
    }
    assert!(esm.alive(), "esm died");
    let rss = esm.rss_bytes();
    assert!(rss < 256 << 20, "esm holds {} MB", rss >> 20);
    let (status, body) = client.send(Method::GET, "/v2/catalog", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["services"].as_array().map(Vec::len), Some(1), "nothing refused was registered");
    let grown = store_bytes(dir.path()).saturating_sub(store_before);
    eprintln!("after {} refused requests: RSS {} MB, the store grew by {grown} bytes", 2 * cases.len(), rss >> 20);
    assert!(grown < 1 << 20, "the store grew by {grown} bytes");
}

#[tokio::test]
async fn re_registering_the_same_service_a_thousand_times_writes_no_event_and_nothing_to_the_store() {
    let dir = temp_dir("esm-bounded");
    let (mut esm, client) = Esm::start_capped_in(&dir, &[]).await;
    let mut svc = service("svc", "svc", &["plan"]);
    svc["description"] = json!("d".repeat(1000));
    let (status, _) = client.send(Method::PUT, "/v2/et/catalog", Some(&svc)).await;
    assert_eq!(status, 201);
    let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "dummy",
                          "manifest_content": "x-esm-dummy: {mode: sync}"});
    let (status, body) = client.send(Method::PUT, "/v2/et/manifest/m", Some(&manifest)).await;
    assert_eq!(status, 201, "{body}");
    // The registration's event, once the writer has stored it.
    let events = eventually(Duration::from_secs(10), "the registration's event", || async {
        let n = event_count(&client).await;
        (n > 0).then_some(n)
    })
    .await;
    let store_before = store_bytes(dir.path());

    for _ in 0..1000 {
        let (status, body) = client.send(Method::PUT, "/v2/et/catalog", Some(&svc)).await;
        assert_eq!(status, 200, "{body}");
    }
    for _ in 0..100 {
        let (status, body) = client.send(Method::PUT, "/v2/et/manifest/m", Some(&manifest)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(event_count(&client).await, events, "a registration that changed nothing wrote an event");
    let grown = store_bytes(dir.path()).saturating_sub(store_before);
    assert!(grown < 256 << 10, "the store grew by {grown} bytes");

    // A registration that changes something still announces it.
    svc["description"] = json!("changed");
    let (status, _) = client.send(Method::PUT, "/v2/et/catalog", Some(&svc)).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), "the changed registration's event", || async {
        (event_count(&client).await == events + 1).then_some(())
    })
    .await;
    assert!(esm.alive());
}

#[tokio::test]
async fn the_catalog_caps_refuse_the_one_past_them_naming_the_setting() {
    let dir = temp_dir("esm-bounded");
    let (mut esm, client) = Esm::start_capped_in(
        &dir,
        &[
            ("ESM_CATALOG_MAX_SERVICES", "3"),
            ("ESM_CATALOG_MAX_PLANS", "2"),
            ("ESM_CATALOG_MAX_TAGS", "2"),
            ("ESM_CATALOG_MAX_MANIFESTS", "1"),
            ("ESM_CATALOG_MAX_BYTES", "8192"),
        ],
    )
    .await;
    let put = |body: Value| {
        let client = client.clone();
        async move { client.send(Method::PUT, "/v2/et/catalog", Some(&body)).await }
    };
    for n in 0..3 {
        let (status, body) = put(service(&format!("s{n}"), &format!("n{n}"), &[&format!("p{n}")])).await;
        assert_eq!(status, 201, "service {n}: {body}");
    }
    let (status, body) = put(service("s3", "n3", &["p3"])).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["description"].as_str().unwrap_or_default().contains("ESM_CATALOG_MAX_SERVICES"), "{body}");

    let (status, body) = put(service("s0", "n0", &["p0", "q0", "r0"])).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["description"].as_str().unwrap_or_default().contains("ESM_CATALOG_MAX_PLANS"), "{body}");
    let mut tagged = service("s0", "n0", &["p0"]);
    tagged["tags"] = json!(["a", "b", "c"]);
    let (status, body) = put(tagged).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["description"].as_str().unwrap_or_default().contains("ESM_CATALOG_MAX_TAGS"), "{body}");

    let mut heavy = service("s0", "n0", &["p0"]);
    heavy["metadata"] = json!({"pad": "m".repeat(10_000)});
    let (status, body) = put(heavy).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["description"].as_str().unwrap_or_default().contains("ESM_CATALOG_MAX_BYTES"), "{body}");

    let manifest = |plan: &str| {
        json!({"service_id": format!("s{}", &plan[1..]), "plan_id": plan, "manifest_type": "dummy",
               "manifest_content": "x-esm-dummy: {mode: sync}"})
    };
    let (status, body) = client.send(Method::PUT, "/v2/et/manifest/m0", Some(&manifest("p0"))).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = client.send(Method::PUT, "/v2/et/manifest/m1", Some(&manifest("p1"))).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["description"].as_str().unwrap_or_default().contains("ESM_CATALOG_MAX_MANIFESTS"), "{body}");

    // Making room lets the next one in.
    let (status, _) = client.send(Method::DELETE, "/v2/et/catalog/s2", None).await;
    assert_eq!(status, 200);
    let (status, body) = put(service("s3", "n3", &["p3"])).await;
    assert_eq!(status, 201, "{body}");
    assert!(esm.alive());
}
