//! `GET /v2/et/service_instances/{instance_id}/bindings`: an instance's bindings a page
//! at a time, never their credentials; hostile queries are 400s, not crashes.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const LISTING: &str = "/v2/et/service_instances/i-1/bindings";

/// The binding ids of a listing's page.
fn ids(page: &Value) -> Vec<&str> {
    page["bindings"].as_array().into_iter().flatten().filter_map(|b| b["binding_id"].as_str()).collect()
}

#[tokio::test]
async fn lists_the_live_bindings_of_the_instance_without_credentials() {
    let app = provisioned_sync().await;
    assert_eq!(app.provision("i-2", false).await.status, StatusCode::CREATED);
    let secret = json!({"service_id": SERVICE, "plan_id": PLAN, "parameters": {"note": "a-parameter"}});
    for (instance, binding) in [("i-1", "b-1"), ("i-1", "b-2"), ("i-1", "b-3"), ("i-2", "other")] {
        let r = app.bind(instance, binding, Some(secret.clone()), false).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    assert_eq!(app.unbind("i-1", "b-3", false).await.status, StatusCode::OK);

    let r = app.get(LISTING).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(ids(&r.body), ["b-1", "b-2"], "unbound and other instances' bindings are not listed");
    let first = &r.body["bindings"][0];
    assert_eq!((first["status"].as_str(), first["operation_state"].as_str()), (Some("bound"), Some("succeeded")));
    assert_eq!((first["instance_id"].as_str(), first["plan_id"].as_str()), (Some("i-1"), Some(PLAN)));
    assert!(first["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{first}");
    let text = r.body.to_string();
    let fetched = app.get("/v2/service_instances/i-1/service_bindings/b-1").await.body;
    let password = fetched["credentials"]["password"].as_str().expect("a password");
    for hidden in ["credentials", password, "a-parameter"] {
        assert!(!text.contains(hidden), "the listing shows {hidden:?}: {text}");
    }
    assert!(r.body.get("next").is_none(), "one page: {}", r.body);
}

#[tokio::test]
async fn a_failed_bind_is_listed_as_failed() {
    let app = provisioned(json!({}), "x-esm-dummy: {mode: async, fail: [bind]}").await;
    assert_eq!(app.bind("i-1", "b-1", None, true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_binding("i-1", "b-1").await.body["state"], "failed");
    let r = app.get(LISTING).await;
    let listed = &r.body["bindings"][0];
    assert_eq!((listed["status"].as_str(), listed["operation_state"].as_str()), (Some("bind_failed"), Some("failed")));
}

// Binds racing the paging: every binding made before the first page is listed exactly
// once across the pages, whatever the page size.
#[tokio::test]
async fn pages_list_each_binding_once_while_binds_race_them() {
    let app = provisioned_sync().await;
    let before: BTreeSet<String> = (0..24).map(|n| format!("b-{n:02}")).collect();
    let binds = futures_util::future::join_all(before.iter().map(|id| app.bind("i-1", id, None, false))).await;
    assert!(binds.iter().all(|r| r.status == StatusCode::CREATED));

    let late: Vec<String> = (0..12).map(|n| format!("late-{n}")).collect();
    let racing = futures_util::future::join_all(late.iter().map(|id| app.bind("i-1", id, None, false)));
    let paging = async {
        let (mut seen, mut after) = (Vec::<String>::new(), None::<String>);
        loop {
            let query = after.as_deref().map_or(String::new(), |a| format!("&after={a}"));
            let r = app.get(&format!("{LISTING}?limit=5{query}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            assert!(ids(&r.body).len() <= 5, "{}", r.body);
            seen.extend(ids(&r.body).into_iter().map(str::to_owned));
            match r.body["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return seen,
            }
        }
    };
    let (_, seen) = tokio::join!(racing, paging);
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a binding listed twice: {seen:?}");
    assert!(before.is_subset(&unique), "missing: {:?}", before.difference(&unique).collect::<Vec<_>>());
}

#[tokio::test]
async fn hostile_queries_are_400s_and_an_unknown_instance_404() {
    let app = provisioned_sync().await;
    let long_id = "i".repeat(10_000);
    let cases: [(String, StatusCode); 8] = [
        (format!("{LISTING}?limit=0"), StatusCode::BAD_REQUEST),
        (format!("{LISTING}?limit=1001"), StatusCode::BAD_REQUEST),
        (format!("{LISTING}?limit=-1"), StatusCode::BAD_REQUEST),
        (format!("{LISTING}?after=not-a-cursor"), StatusCode::BAD_REQUEST),
        (format!("{LISTING}?after=c1zz"), StatusCode::BAD_REQUEST),
        (format!("{LISTING}?state=bound"), StatusCode::BAD_REQUEST),
        (format!("/v2/et/service_instances/{long_id}/bindings"), StatusCode::BAD_REQUEST),
        ("/v2/et/service_instances/nobody/bindings".to_owned(), StatusCode::NOT_FOUND),
    ];
    for (path, status) in cases {
        let r = app.get(&path).await;
        assert_eq!(r.status, status, "{}: {}", &path[..path.len().min(80)], r.body);
        assert!(r.body["description"].is_string(), "an OSB error body: {}", r.body);
    }
    // A deprovisioned instance has no bindings to list.
    assert_eq!(app.deprovision("i-1", false).await.status, StatusCode::OK);
    assert_eq!(app.get(LISTING).await.status, StatusCode::NOT_FOUND);
}
