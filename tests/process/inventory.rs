//! The inventory across a kill -9: provisions killed mid-deploy resume after the
//! restart, and the inventory then holds exactly what their deployments hold (each
//! instance its deployment and its leased port, in use), no port twice, nothing of
//! anyone else; a deprovision afterwards leaves it empty.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::support::{Client, Esm, StoreSetup, eventually, temp_dir};

/// Every resource in the inventory (one page holds them all here).
async fn inventory(client: &Client, query: &str) -> Vec<Value> {
    let (status, body) = client.send(Method::GET, &format!("/v2/et/inventory?limit=1000{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["resources"].as_array().expect("resources").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_mid_deploy_leaves_the_inventory_consistent_after_the_restart() {
    let dir = temp_dir("esm-inventory-kill");
    let store = StoreSetup::Embedded(dir.path().join("data"));
    let env = [("ESM_HOST_PORT_RANGE", "34000-34009")];
    let esm = Esm::start_with(&store, &env).await;
    let client = Client::new(&esm.api);
    let script = "x-esm-dummy: {mode: async, delay_ms: {provision: 1500}}\nservices:\n  web:\n    ports: [\"8080\"]\n";
    client.register(script).await;
    let ids = ["k-0", "k-1", "k-2"];
    for id in ids {
        assert_eq!(client.provision(id, true).await.0, 202, "{id}");
    }
    // Killed while the three deploy: their ports are leased, nothing else is made.
    let limit = Duration::from_secs(20);
    eventually(limit, "three ports leased", || async {
        (inventory(&client, "&type=port&state=creating").await.len() == 3).then_some(())
    })
    .await;
    esm.kill_hard();

    let esm = Esm::start_with(&store, &env).await;
    let client = Client::new(&esm.api);
    for id in ids {
        assert_eq!(client.settle(id, limit).await.1["state"], "succeeded", "{id} resumed and finished");
    }
    let held = inventory(&client, "").await;
    let entries: BTreeSet<(String, String, String)> = held
        .iter()
        .map(|r| {
            let text = |key: &str| r[key].as_str().unwrap_or_default().to_owned();
            (text("owner"), text("type"), text("state"))
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = ids
        .iter()
        .flat_map(|id| ["deployment", "port"].map(|kind| (id.to_string(), kind.to_owned(), "in_use".to_owned())))
        .collect();
    assert_eq!((held.len(), entries), (6, expected), "{held:?}");
    let ports: BTreeSet<u64> = held.iter().filter_map(|r| r["port"]["port"].as_u64()).collect();
    assert_eq!(ports.len(), 3, "no port twice: {held:?}");
    // Each instance's port is the one its deployment publishes.
    for id in ids {
        let (_, view) = client.send(Method::GET, &format!("/v2/et/service_instances/{id}"), None).await;
        let published = view["context"][format!("{id}_web_8080/tcp/HostPort")].as_str().and_then(|p| p.parse().ok());
        let (_, own) = client.send(Method::GET, &format!("/v2/et/service_instances/{id}/resources"), None).await;
        let leased = own["resources"].as_array().into_iter().flatten().find_map(|r| r["port"]["port"].as_u64());
        assert_eq!(published, leased, "{id}: {view} {own}");
    }

    let path = "/v2/service_instances/k-0?service_id=svc&plan_id=plan&accepts_incomplete=true";
    assert_eq!(client.send(Method::DELETE, path, None).await.0, 202);
    assert_eq!(client.settle("k-0", limit).await.0, 410);
    // Released just after the instance is recorded gone (the 410): polled, not read once.
    eventually(limit, "k-0's resources released", || async {
        inventory(&client, "&owner=k-0").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(inventory(&client, "").await.len(), 4);
}
