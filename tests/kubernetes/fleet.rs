//! Two clusters, one esm: two `kmock` API servers, the first the default engine
//! (`KUBECONFIG`), the second declared as engine `b` by a kubeconfig in
//! `ESM_ENGINE_CREDENTIALS_DIR`. Instances go where the plan's rule and the capacities
//! say, each instance's namespace is made (and removed) in its own cluster only.
//!
//! Runs with `ESM_TEST_KUBERNETES=kmock` (two emulators; a real cluster from
//! `ESM_TEST_KUBECONFIG` is only one); reported as ignored without it.

use std::time::Duration;

use esm::backend::kubernetes;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use reqwest::Method;
use serde_json::{Value, json};

use crate::backend::{app_manifest, start_esm};
use crate::k8s::TestCluster;
use crate::support::docker::IMAGE;
use crate::support::{Client, temp_dir};

async fn send_ok(client: &Client, method: Method, path: &str, body: &Value) -> Value {
    let (status, answer) = client.send(method, path, Some(body)).await;
    assert!(matches!(status, 200 | 201), "{path}: {status} {answer}");
    answer
}

async fn has_namespace(cluster: &TestCluster, name: &str) -> bool {
    Api::<Namespace>::all(cluster.client.clone()).get_opt(name).await.expect("the API answers").is_some()
}

#[cfg_attr(not(esm_test_kmock), ignore = "needs two Kubernetes API emulators: set ESM_TEST_KUBERNETES=kmock")]
#[tokio::test(flavor = "multi_thread")]
async fn two_clusters_take_instances_by_capacity_each_in_its_own_namespace() {
    let (a, b) = (TestCluster::start().await, TestCluster::start().await);
    let (dir, credentials) = (temp_dir("esm-k8s-fleet"), temp_dir("esm-k8s-credentials"));
    std::fs::create_dir(credentials.path().join("b")).expect("a directory");
    std::fs::copy(&b.kubeconfig, credentials.path().join("b/kubeconfig")).expect("b's kubeconfig");
    let credentials_dir = credentials.path().display().to_string();
    let (esm, owner) = start_esm(&a, &dir, &[("ESM_ENGINE_CREDENTIALS_DIR", credentials_dir.as_str())]).await;
    let client = Client::new(&esm.api);

    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
        "plans": [{"id": "plan", "name": "plan", "description": "d",
                   "metadata": {"placement": {"requires": {"fleet": "yes"}}}}]});
    send_ok(&client, Method::PUT, "/v2/et/catalog", &service).await;
    let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "kubernetes",
                          "manifest_content": app_manifest(IMAGE)});
    send_ok(&client, Method::PUT, "/v2/et/manifest/m", &manifest).await;
    let one = json!({"instances": 1});
    send_ok(
        &client,
        Method::PUT,
        "/v2/et/engines/default",
        &json!({"backend": "kubernetes", "labels": {"fleet": "yes"}, "capacity": one}),
    )
    .await;
    send_ok(
        &client,
        Method::PUT,
        "/v2/et/engines/b",
        &json!({"backend": "kubernetes", "endpoint": {"kubeconfig": "b/kubeconfig"},
                    "labels": {"fleet": "yes"}, "capacity": one}),
    )
    .await;
    // A kubeconfig outside the credentials directory is never read.
    let (status, body) = client
        .send(
            Method::PUT,
            "/v2/et/engines/c",
            Some(&json!({"backend": "kubernetes",
              "endpoint": {"kubeconfig": b.kubeconfig.display().to_string()}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    for id in ["k-1", "k-2"] {
        let (status, body) = client.provision(id, true).await;
        assert_eq!(status, 202, "{body}");
        let (_, last) = client.settle(id, Duration::from_secs(60)).await;
        assert_eq!(last["state"], "succeeded", "{last}");
    }
    let (status, body) = client.provision("k-3", true).await;
    assert_eq!(status, 422, "{body}");

    for id in ["k-1", "k-2"] {
        let (_, view) = client.view(id).await;
        let (mine, other) = if view["engine"] == "b" { (&b, &a) } else { (&a, &b) };
        let ns = kubernetes::namespace(&owner, id);
        assert!(has_namespace(mine, &ns).await, "{id} on {}: its namespace", view["engine"]);
        assert!(!has_namespace(other, &ns).await, "{id} on {}: nothing in the other cluster", view["engine"]);
        let (status, body) = client.deprovision(id, false).await;
        assert_eq!(status, 200, "{body}");
        assert!(!has_namespace(mine, &ns).await, "{id}: removed from its cluster");
    }
    let (_, listed) = client.send(Method::GET, "/v2/et/engines", None).await;
    let engines: Vec<&str> =
        listed["engines"].as_array().expect("engines").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(engines, ["default", "b"]);
}

#[cfg_attr(not(esm_test_kmock), ignore = "needs two Kubernetes API emulators: set ESM_TEST_KUBERNETES=kmock")]
#[tokio::test(flavor = "multi_thread")]
async fn draining_a_cluster_moves_a_relocatable_instance_to_the_other() {
    let (a, b) = (TestCluster::start().await, TestCluster::start().await);
    let (dir, credentials) = (temp_dir("esm-k8s-drain"), temp_dir("esm-k8s-drain-credentials"));
    std::fs::create_dir(credentials.path().join("b")).expect("a directory");
    std::fs::copy(&b.kubeconfig, credentials.path().join("b/kubeconfig")).expect("b's kubeconfig");
    let credentials_dir = credentials.path().display().to_string();
    let settings = [("ESM_ENGINE_CREDENTIALS_DIR", credentials_dir.as_str()), ("ESM_ENGINE_PROBE_INTERVAL", "1")];
    let (esm, owner) = start_esm(&a, &dir, &settings).await;
    let client = Client::new(&esm.api);
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
        "plans": [{"id": "plan", "name": "plan", "description": "d",
                   "metadata": {"placement": {"requires": {"fleet": "yes"}, "relocatable": true}}}]});
    send_ok(&client, Method::PUT, "/v2/et/catalog", &service).await;
    let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "kubernetes",
                          "manifest_content": app_manifest(IMAGE)});
    send_ok(&client, Method::PUT, "/v2/et/manifest/m", &manifest).await;
    let labelled = json!({"backend": "kubernetes", "labels": {"fleet": "yes"}});
    send_ok(&client, Method::PUT, "/v2/et/engines/default", &labelled).await;
    send_ok(
        &client,
        Method::PUT,
        "/v2/et/engines/b",
        &json!({"backend": "kubernetes", "endpoint": {"kubeconfig": "b/kubeconfig"}, "labels": {"fleet": "yes"}}),
    )
    .await;
    client.send(Method::POST, "/v2/et/engines/default/cordon", None).await;
    let (status, body) = client.provision("k-1", true).await;
    assert_eq!(status, 202, "{body}");
    let (_, last) = client.settle("k-1", Duration::from_secs(60)).await;
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(client.view("k-1").await.1["engine"], "b");
    let (status, body) = client.bind("k-1", "b-1").await;
    assert_eq!(status, 201, "{body}");
    client.send(Method::POST, "/v2/et/engines/default/uncordon", None).await;

    let (status, body) = client.send(Method::POST, "/v2/et/engines/b/drain", None).await;
    assert_eq!(status, 200, "{body}");
    let old = kubernetes::namespace(&owner, "k-1");
    crate::support::eventually(Duration::from_secs(60), "k-1 moved to the default cluster", || async {
        let (_, moved) = client.send(Method::GET, "/v2/et/events?type=instance.relocated", None).await;
        let finished = moved["events"].as_array().is_some_and(|e| e.len() == 1);
        (finished && !has_namespace(&b, &old).await).then_some(())
    })
    .await;
    assert_eq!(client.view("k-1").await.1["engine"], "default");
    let (_, held) = client.send(Method::GET, "/v2/et/service_instances/k-1/resources", None).await;
    let deployed = held["resources"][0]["owner"].as_str().expect("what it holds").to_owned();
    assert!(deployed.starts_with("moved-"), "{held}");
    assert!(has_namespace(&a, &kubernetes::namespace(&owner, &deployed)).await, "its namespace in the default cluster");
    let (status, body) = client.deprovision("k-1", false).await;
    assert_eq!(status, 200, "{body}");
    assert!(!has_namespace(&a, &kubernetes::namespace(&owner, &deployed)).await, "removed with its instance");
}
