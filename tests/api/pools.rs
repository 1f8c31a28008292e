//! `/v2/et/pools`: warm pools per plan, handing out ready members at once.

use std::collections::BTreeSet;
use std::time::Duration;

use esm::domain::liveness::ComponentStatus;
use esm::domain::operation::OperationKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::wait::eventually;

/// Cold provisions only run asynchronously: a 201 without `accepts_incomplete` can only
/// come from the pool.
const ASYNC: &str = "x-esm-dummy: {mode: async}\nservices:\n  web: {image: nginx}\n";
const LIMIT: Duration = Duration::from_secs(10);
const POOL: &str = "/v2/et/pools/plan-1";

async fn pool_where(app: &TestApp, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    eventually(LIMIT, what, || async {
        let reply = app.get(POOL).await;
        (reply.status == StatusCode::OK && wanted(&reply.body)).then_some(reply.body)
    })
    .await
}

async fn ready(app: &TestApp, count: u64) -> Value {
    pool_where(app, &format!("{count} ready members"), |p| p["ready"] == count && p["deploying"] == 0).await
}

/// The (member, instance) of every claim so far.
async fn claims(app: &TestApp) -> Vec<(String, String)> {
    let page = app.get("/v2/et/events?type=pool.member_claimed&limit=1000").await.body;
    let events = page["events"].as_array().expect("events").clone();
    events
        .iter()
        .map(|e| {
            (e["member_id"].as_str().expect("member").to_owned(), e["instance_id"].as_str().expect("id").to_owned())
        })
        .collect()
}

fn ids(listing: &Value) -> BTreeSet<String> {
    listing.as_array().expect("array").iter().map(|i| i["context"]["id"].as_str().expect("id").to_owned()).collect()
}

/// An app running `script` with a pool of `size` for `plan-1`, filled.
async fn pool_of(script: &str, size: u64) -> TestApp {
    let app = with_plan(script).await;
    let set = app.put(POOL, &json!({"size": size})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    ready(&app, size).await;
    app
}

#[tokio::test]
async fn a_pool_fills_and_a_provision_is_handed_a_ready_member_at_once() {
    let app = with_plan(ASYNC).await;
    let set = app.put(POOL, &json!({"size": 2})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!((set.body["plan_id"].as_str(), set.body["size"].as_u64()), (Some(PLAN), Some(2)));
    ready(&app, 2).await;
    // Cold (other parameters than the pool's), this plan needs accepts_incomplete; warm,
    // it is answered within the request.
    let mut other = provision_body(PLAN);
    other["parameters"] = json!({"tier": "gold"});
    let cold = app.put(&provision_path("cold-refused", false), &other).await;
    assert_eq!(cold.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", cold.body);
    let warm = app.provision("i-1", false).await;
    assert_eq!(warm.status, StatusCode::CREATED, "{}", warm.body);
    assert!(warm.body.get("operation").is_none(), "{}", warm.body);
    // Members are nobody's instances: the listings show the platform's only.
    assert_eq!(ids(&app.get("/v2/et/service_instances").await.body), BTreeSet::from(["i-1".to_owned()]));
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/et/service_instances/i-1/liveness").await.body["status"], "up");
    let (member, instance) = claims(&app).await.pop().expect("a claim");
    assert_eq!(instance, "i-1");
    assert!(member.starts_with("esm-pool-"), "{member}");
    // A member's id is not the platform's to use.
    assert_eq!(app.get(&format!("/v2/service_instances/{member}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.provision(&member, true).await.status, StatusCode::BAD_REQUEST);
    // The instance works like a cold one; its member is refilled.
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "succeeded");
    let refilled =
        pool_where(&app, "refilled, one claim counted", |p| p["ready"] == 2 && p["claimed_total"] == 1).await;
    assert_eq!(refilled["misses_total"], 1, "the provision with other parameters");
    assert!(!refilled["members"].as_array().expect("members").iter().any(|m| m["id"] == member.as_str()));
}

#[tokio::test]
async fn bad_pool_requests_are_400s_with_an_osb_body() {
    let app = with_plan(ASYNC).await;
    for (path, body) in [
        ("/v2/et/pools/no-such-plan", json!({"size": 1})),
        (POOL, json!({"size": -1})),
        (POOL, json!({"size": 101})),
        (POOL, json!({"size": 1, "max_age_seconds": 0})),
        (POOL, json!({"size": 1, "max_age_seconds": 40_000_000})),
        (POOL, json!({"size": 1, "parameters": [1]})),
        (POOL, json!({"size": 100, "parameters": {"blob": "x".repeat(70_000)}})),
        (POOL, json!({"size": 1, "sizes": 2})),
        (POOL, json!({"size": "1"})),
        (POOL, json!([])),
        (&format!("/v2/et/pools/{}", "p".repeat(256)), json!({"size": 1})),
        ("/v2/et/pools/plan%0Aforged", json!({"size": 1})),
    ] {
        let reply = app.put(path, &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", reply.body);
        reply.osb_error();
    }
    let long = app.get(&format!("/v2/et/pools/{}", "p".repeat(256))).await;
    long.fails_with(StatusCode::BAD_REQUEST);
    long.mentions("at most 255 bytes");
    assert_eq!(app.get(POOL).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(POOL).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v2/et/pools").await.body, json!({"pools": []}));

    let unpoolable = with_plan("x-esm-dummy: {pool: false}\n").await;
    let reply = unpoolable.put(POOL, &json!({"size": 1})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    reply.mentions("cannot be pooled");
}

#[tokio::test]
async fn parameters_must_be_the_pools_exactly_else_the_provision_is_cold_and_a_miss() {
    let app = with_plan("x-esm-dummy: {mode: either}\n").await;
    app.put(POOL, &json!({"size": 1, "parameters": {"tier": "gold"}})).await;
    ready(&app, 1).await;
    let mut other = provision_body(PLAN);
    other["parameters"] = json!({"tier": "silver"});
    let cold = app.put(&provision_path("silver", true), &other).await;
    assert_eq!(cold.status, StatusCode::ACCEPTED, "{}", cold.body);
    let none = app.put(&provision_path("plain", true), &provision_body(PLAN)).await;
    assert_eq!(none.status, StatusCode::ACCEPTED, "{}", none.body);
    other["parameters"] = json!({"tier": "gold"});
    let warm = app.put(&provision_path("gold", true), &other).await;
    assert_eq!(warm.status, StatusCode::CREATED, "a claim is answered at once, async or not: {}", warm.body);
    let fetched = app.get("/v2/service_instances/gold").await;
    assert_eq!(fetched.body["parameters"], json!({"tier": "gold"}));
    let counted = pool_where(&app, "the counts", |p| p["claimed_total"] == 1 && p["misses_total"] == 2).await;
    assert_eq!(counted["parameters"], json!({"tier": "gold"}));
    // New parameters: the member made with the old ones is replaced.
    let before: Vec<Value> = ready(&app, 1).await["members"].as_array().expect("members").clone();
    app.put(POOL, &json!({"size": 1, "parameters": {"tier": "platinum"}})).await;
    let after = pool_where(&app, "a member with the new parameters", |p| {
        p["ready"] == 1 && p["members"].as_array().is_some_and(|m| m.len() == 1 && m[0]["id"] != before[0]["id"])
    })
    .await;
    assert_eq!(after["parameters"], json!({"tier": "platinum"}));
}

#[tokio::test]
async fn fifty_concurrent_provisions_against_ten_ready_members_make_exactly_ten_claims() {
    // Members and cold instances wait for the test, so no refill can be claimed during
    // the burst: exactly the ten ready ones are there to take.
    let app = with_plan("x-esm-dummy: {mode: async, hold: [provision]}\n").await;
    app.put(POOL, &json!({"size": 10})).await;
    let released = std::sync::Mutex::new(BTreeSet::new());
    eventually(LIMIT, "ten ready members", || async {
        let pool = app.get(POOL).await.body;
        for member in pool["members"].as_array().expect("members") {
            let id = member["id"].as_str().expect("id").to_owned();
            if released.lock().expect("lock").insert(id.clone()) {
                app.release(OperationKind::Provision, &id);
            }
        }
        (pool["ready"] == 10).then_some(())
    })
    .await;
    let released = released.into_inner().expect("lock");
    let answers = futures_util::future::join_all((0..50).map(|n| {
        let app = &app;
        async move { app.provision(&format!("burst-{n}"), true).await.status }
    }))
    .await;
    let count = |status| answers.iter().filter(|s| **s == status).count();
    assert_eq!((count(StatusCode::CREATED), count(StatusCode::ACCEPTED)), (10, 40), "{answers:?}");
    let claims = claims(&app).await;
    assert_eq!(claims.len(), 10);
    let members: BTreeSet<_> = claims.iter().map(|(m, _)| m.clone()).collect();
    let instances: BTreeSet<_> = claims.iter().map(|(_, i)| i.clone()).collect();
    assert_eq!((members.len(), instances.len()), (10, 10), "no member twice, no instance twice");
    assert!(members.is_subset(&released));
    let counted = pool_where(&app, "the counts", |p| p["claimed_total"] == 10 && p["misses_total"] == 40).await;
    assert_eq!(counted["ready"], 0);
    for n in 0..50 {
        app.release(OperationKind::Provision, &format!("burst-{n}"));
    }
}

#[tokio::test]
async fn a_member_that_dies_behind_esms_back_is_replaced() {
    let app = with_plan(ASYNC).await;
    app.put(POOL, &json!({"size": 1})).await;
    let pool = ready(&app, 1).await;
    let member = pool["members"][0]["id"].as_str().expect("id").to_owned();
    app.liveness_script().set(&member, "web", ComponentStatus::Down, Some("exited (137)"));
    let replaced = pool_where(&app, "a new member", |p| {
        p["ready"] == 1 && p["members"].as_array().is_some_and(|m| m.len() == 1 && m[0]["id"] != member.as_str())
    })
    .await;
    assert_eq!(replaced["claimed_total"], 0);
    // Dying after it was deployed is a failure, told in esm's words.
    assert_eq!(replaced["failures"], 1, "{replaced}");
    assert_eq!(replaced["last_error"]["message"], "a member was down after it was deployed");
    let events = app.get("/v2/et/events?type=pool.member_replaced").await.body;
    let event = &events["events"][0];
    assert_eq!(event["member_id"], member.as_str());
    assert_eq!(event["reason"], "a member was down after it was deployed", "{event}");
    // Nobody's instance saw any of it.
    assert_eq!(app.get("/v2/et/events?type=liveness.changed").await.body["events"], json!([]));
}

#[tokio::test]
async fn a_claimed_instance_deprovisions_like_a_cold_one_and_its_member_never_returns() {
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let script = format!("x-esm-dummy: {{mode: sync, call_log: {}}}\n", log.path().display());
    let app = pool_of(&script, 1).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let (member, _) = claims(&app).await.pop().expect("a claim");
    assert_eq!(app.bind("i-1", "b-1", None, false).await.status, StatusCode::CREATED);
    assert_eq!(app.unbind("i-1", "b-1", false).await.status, StatusCode::OK);
    let update = json!({"service_id": SERVICE, "parameters": {"size": 2}});
    let updated = app.patch("/v2/service_instances/i-1", &update).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(app.get("/v2/service_instances/i-1").await.body["parameters"], json!({"size": 2}));
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/service_instances/i-1").await.status, StatusCode::NOT_FOUND);
    let calls = std::fs::read_to_string(log.path()).expect("call log");
    let on_member: Vec<Value> = calls
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|c| c["id"] == member.as_str() || c["id"] == "b-1")
        .collect();
    let kinds: Vec<&str> = on_member.iter().filter_map(|c| c["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["provision", "bind", "unbind", "update", "deprovision"],
        "deployed once, changed and removed under the member's id"
    );
    let pool = ready(&app, 1).await;
    assert!(!pool["members"].as_array().expect("members").iter().any(|m| m["id"] == member.as_str()));
}

#[tokio::test]
async fn deleting_a_pool_removes_its_idle_members_and_leaves_claimed_ones() {
    let app = pool_of(ASYNC, 3).await;
    assert_eq!(app.provision("kept", false).await.status, StatusCode::CREATED);
    pool_where(&app, "refilled", |p| p["ready"] == 3 && p["claimed_total"] == 1).await;
    assert_eq!(app.delete(POOL).await.status, StatusCode::OK);
    eventually(LIMIT, "the pool to go", || async {
        (app.get(POOL).await.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert_eq!(app.get("/v2/service_instances/kept").await.status, StatusCode::OK);
    let replaced = app.get("/v2/et/events?type=pool.member_replaced").await.body;
    assert_eq!(replaced["events"].as_array().map(Vec::len), Some(3), "{replaced}");
    // A provision now is cold.
    assert_eq!(app.provision("after", false).await.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn failing_deploys_back_off_and_say_why() {
    let app = with_plan("x-esm-dummy: {mode: async, fail: [provision]}\n").await;
    app.put(POOL, &json!({"size": 2})).await;
    let pool = pool_where(&app, "a recorded failure", |p| p["failures"].as_u64().is_some_and(|f| f >= 2)).await;
    // In esm's words: what the engine said stays in the log.
    assert_eq!(pool["last_error"]["message"], "deploying a member failed", "{pool}");
    assert!(pool["retry_at"].is_string(), "the next deploy waits: {pool}");
    assert_eq!(pool["ready"], 0);
    let failed = app.get("/v2/et/events?type=pool.member_failed").await.body;
    assert!(failed["events"].as_array().is_some_and(|e| !e.is_empty()), "{failed}");
}

/// A dummy manifest whose content names an app version (cold provisions only async).
fn versioned(version: &str) -> String {
    format!("x-esm-dummy: {{mode: async}}\nservices:\n  web: {{image: 'app:{version}'}}\n")
}

fn member_ids(pool: &Value) -> BTreeSet<String> {
    pool["members"].as_array().expect("members").iter().map(|m| m["id"].as_str().expect("id").to_owned()).collect()
}

#[tokio::test]
async fn a_manifest_deleted_and_registered_again_with_other_content_never_hands_out_an_old_member() {
    let app = with_plan(&versioned("1.0-vulnerable")).await;
    app.put(POOL, &json!({"size": 2})).await;
    let old = member_ids(&ready(&app, 2).await);
    // Back to back: the only way to change a manifest.
    assert_eq!(app.delete("/v2/et/manifest/manifest-1").await.status, StatusCode::OK);
    let fixed = json!({"service_id": SERVICE, "plan_id": PLAN, "manifest_type": "dummy",
                       "manifest_content": versioned("2.0-fixed")});
    assert_eq!(app.put("/v2/et/manifest/manifest-1", &fixed).await.status, StatusCode::CREATED);
    for n in 0..4 {
        let id = format!("after-{n}");
        let reply = app.provision(&id, true).await;
        match reply.status {
            // Cold: the old members are not there to take.
            StatusCode::ACCEPTED => {}
            // Handed a member: one made from the new manifest.
            StatusCode::CREATED => {
                let (member, _) = eventually(LIMIT, "the claim's event", || async {
                    claims(&app).await.into_iter().find(|(_, instance)| *instance == id)
                })
                .await;
                assert!(!old.contains(&member), "{id} was handed {member}, made from the old manifest");
            }
            status => panic!("{id}: {status} {}", reply.body),
        }
    }
    // The old members are replaced by members of the new manifest, which are handed out.
    let renewed = pool_where(&app, "members of the new manifest", |p| {
        p["ready"] == 2 && p["deploying"] == 0 && member_ids(p).is_disjoint(&old)
    })
    .await;
    assert_eq!(renewed["failures"], 0, "replacing stale members is no failure");
    assert_eq!(app.provision("warm", false).await.status, StatusCode::CREATED);
    let replaced = app.get("/v2/et/events?type=pool.member_replaced").await.body;
    let reasons: BTreeSet<&str> =
        replaced["events"].as_array().expect("events").iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(reasons.contains("the plan's manifest changed"), "{replaced}");
}

#[tokio::test]
async fn a_new_pool_beyond_esm_max_pools_is_refused_naming_the_cap() {
    let app = spawn_app_with(esm::config::Config { max_pools: 1, ..test_config() }).await;
    app.register_catalog(json!({}), ASYNC).await;
    assert_eq!(app.put(POOL, &json!({"size": 0})).await.status, StatusCode::OK);
    let refused = app.put(&format!("/v2/et/pools/{OTHER_PLAN}"), &json!({"size": 0})).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.body);
    refused.osb_error();
    refused.mentions("ESM_MAX_POOLS");
    // Changing the pool there is is no new pool.
    assert_eq!(app.put(POOL, &json!({"size": 1})).await.status, StatusCode::OK);
    assert_eq!(app.get("/v2/et/pools").await.body["pools"].as_array().map(Vec::len), Some(1));
}

/// The sample lines of `/metrics` that name plan `plan`'s pool.
async fn pool_series(app: &TestApp, plan: &str) -> Vec<String> {
    let text = app.client.get(format!("{}/metrics", app.ops)).send().await.expect("sent").text().await.expect("text");
    let label = format!("plan_id=\"{plan}\"");
    text.lines().filter(|l| l.starts_with("esm_pool_") && l.contains(&label)).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_deleted_pool_leaves_no_series_on_metrics() {
    let app = pool_of(ASYNC, 1).await;
    assert_eq!(app.provision("i-1", false).await.status, StatusCode::CREATED);
    let series = pool_series(&app, PLAN).await;
    for family in ["esm_pool_hits_total", "esm_pool_refill_duration_seconds", "esm_pool_members"] {
        assert!(series.iter().any(|l| l.starts_with(family)), "{family} in {series:?}");
    }
    assert_eq!(app.delete(POOL).await.status, StatusCode::OK);
    eventually(LIMIT, "the pool to go", || async {
        (app.get(POOL).await.status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    eventually(LIMIT, "its series to go", || async { pool_series(&app, PLAN).await.is_empty().then_some(()) }).await;
}
