//! The inventory: what each instance holds, recorded through its life (creating, in
//! use, releasing, forgotten), found by owner, type, state and name, paged, and left
//! empty by a failed provision.

use std::collections::BTreeSet;
use std::time::Duration;

use esm::config::{Config, PortRange};
use esm::domain::operation::OperationKind;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::wait::eventually;

const HELD: &str = "x-esm-dummy: {mode: async, hold: [provision, deprovision]}\nservices:\n  web:\n    ports: [\"8080\", \"9090/udp\"]\n";

async fn with_range(script: &str) -> TestApp {
    let range = PortRange { low: 33000, high: 33009 };
    let app = spawn_app_with(Config { host_port_range: Some(range), ..test_config() }).await;
    app.register_catalog(json!({}), script).await;
    app
}

/// (type, name, state) of each resource in a listing, in its order.
fn summary(listing: &Value) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let resources = listing["resources"].as_array().expect("resources");
    resources.iter().map(|r| (text(&r["type"]), text(&r["name"]), text(&r["state"]))).collect()
}

fn states(listing: &Value) -> BTreeSet<String> {
    summary(listing).into_iter().map(|(_, _, state)| state).collect()
}

#[tokio::test]
async fn an_instance_s_resources_are_creating_in_use_releasing_then_forgotten() {
    let app = with_range(HELD).await;
    assert_eq!(app.provision("i-1", true).await.status, StatusCode::ACCEPTED);
    // While the deployment is made (held), its leased ports are being created.
    let creating = eventually(Duration::from_secs(10), "i-1's ports leased", || async {
        let listing = app.get("/v2/et/inventory?owner=i-1").await;
        (summary(&listing.body).len() == 2).then_some(listing)
    })
    .await;
    assert_eq!(states(&creating.body), ["creating".to_owned()].into(), "{}", creating.body);

    app.release(OperationKind::Provision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.body["state"], "succeeded");
    let held = app.get("/v2/et/service_instances/i-1/resources").await;
    assert_eq!(held.status, StatusCode::OK, "{}", held.body);
    assert_eq!(held.body["instance_id"], "i-1");
    let kinds: Vec<(String, String)> = summary(&held.body).into_iter().map(|(k, _, s)| (k, s)).collect();
    let in_use = |kind: &str| (kind.to_owned(), "in_use".to_owned());
    assert_eq!(kinds, [in_use("deployment"), in_use("port"), in_use("port")], "{}", held.body);
    let ports: Vec<&Value> = held.body["resources"].as_array().expect("resources")[1..].iter().collect();
    for port in &ports {
        assert_eq!(port["owner"], "i-1");
        assert_eq!(port["backend"], "dummy");
        assert_eq!(port["port"]["address"], "127.0.0.1", "the address the engine publishes on: {port}");
        let number = port["port"]["port"].as_u64().expect("a port number");
        assert!((33000..=33009).contains(&number), "{port}");
        assert_eq!(port["name"], format!("{number}/{}", port["port"]["protocol"].as_str().expect("protocol")));
    }
    // Who holds this port?
    let name = ports[0]["name"].as_str().expect("name");
    let holder = app.get(&format!("/v2/et/inventory?type=port&name={name}")).await;
    assert_eq!(summary(&holder.body).len(), 1, "{}", holder.body);
    assert_eq!(holder.body["resources"][0]["owner"], "i-1");

    assert_eq!(app.deprovision("i-1", true).await.status, StatusCode::ACCEPTED);
    // The 202 comes first; the operation marks what it removes as it starts.
    eventually(Duration::from_secs(10), "i-1's resources releasing", || async {
        let listing = app.get("/v2/et/inventory?owner=i-1").await;
        (states(&listing.body) == ["releasing".to_owned()].into()).then_some(())
    })
    .await;
    let only = app.get("/v2/et/inventory?state=releasing&type=deployment").await;
    assert_eq!(summary(&only.body), [("deployment".into(), "i-1".into(), "releasing".into())]);

    app.release(OperationKind::Deprovision, "i-1");
    assert_eq!(app.poll_instance("i-1").await.status, StatusCode::GONE);
    assert_eq!(summary(&app.get("/v2/et/inventory").await.body), [], "nothing is left");
    assert_eq!(app.get("/v2/et/service_instances/i-1/resources").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_inventory_pages_and_refuses_bad_filters_with_an_osb_error() {
    let app = with_plan("x-esm-dummy: {mode: sync}").await;
    for n in 0..5 {
        assert_eq!(app.provision(&format!("p-{n}"), false).await.status, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut path = "/v2/et/inventory?limit=2".to_owned();
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(summary(&page.body).into_iter().map(|(_, name, _)| name));
        let Some(next) = page.body["next"].as_str() else { break };
        path = format!("/v2/et/inventory?limit=2&after={next}");
    }
    assert_eq!(seen, ["p-0", "p-1", "p-2", "p-3", "p-4"], "every resource once, in order");
    assert_eq!(summary(&app.get("/v2/et/inventory?owner=p-3").await.body).len(), 1);
    assert_eq!(summary(&app.get("/v2/et/inventory?state=in%20use").await.body).len(), 5, "`in use` reads as in_use");

    for bad in ["state=busy", "limit=0", "limit=1001", "after=junk", "limit=x"] {
        let r = app.get(&format!("/v2/et/inventory?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.body);
        assert!(!r.osb_error().is_empty(), "{bad}: an OSB error body: {}", r.body);
    }
    assert_eq!(app.get("/v2/et/service_instances/nope/resources").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_failed_provision_leaves_nothing_in_the_inventory() {
    let app =
        with_range("x-esm-dummy: {mode: async, fail: [provision]}\nservices:\n  web:\n    ports: [\"8080\"]\n").await;
    assert_eq!(app.provision("f-1", true).await.status, StatusCode::ACCEPTED);
    assert_eq!(app.poll_instance("f-1").await.body["state"], "failed");
    assert_eq!(summary(&app.get("/v2/et/inventory").await.body), [], "its port went back, nothing else is held");
}
