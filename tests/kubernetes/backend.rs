//! The Kubernetes backend against a Kubernetes API it did not write: the backend
//! conformance suite, and esm end to end (provision, details with real addresses, bind,
//! a failed rollout, deprovision, compose manifests translated, reconciliation).
//!
//! Runs with `ESM_TEST_KUBERNETES=kmock` (the `kmock` emulator from PyPI, served by
//! `tests/k8s/kmock_server.py`, with this harness playing the cluster's controllers: see
//! `tests/kubernetes/k8s.rs`) or `ESM_TEST_KUBECONFIG=<file>` (a real cluster; the test
//! image `esm-test/busybox:latest` must be loadable there, e.g. `kind load
//! docker-image`). Reported as ignored without either.

use std::sync::Arc;
use std::time::Duration;

use esm::backend::Backend;
use esm::backend::conformance::{self, Subject};
use esm::backend::kubernetes::{self, Exposure, KubernetesBackend, KubernetesPolicy, KubernetesSettings};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use reqwest::Method;
use serde_json::json;

use crate::k8s::{self, MISSING_IMAGE, TestCluster};
use crate::support::docker::IMAGE;
use crate::support::{Client, Esm, StoreSetup, TempDir, eventually, temp_dir};

/// A Deployment `app` of the test image listening on 8080, and its Service.
pub(crate) fn app_manifest(image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, labels: {{app: app}}}}
spec:
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers:
        - name: app
          image: {image}
          command: [httpd, -f, -p, "8080", -h, /tmp]
          env: [{{name: GREETING, value: hello}}]
          ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  selector: {{app: app}}
  ports: [{{port: 8080}}]
"#
    )
}

fn settings(owner: &str) -> KubernetesSettings {
    KubernetesSettings {
        policy: KubernetesPolicy::default(),
        exposure: Exposure::ClusterIp,
        node_address: None,
        ready_timeout: Duration::from_secs(30),
        owner: owner.to_owned(),
        compose: false,
    }
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_backend_conforms() {
    let cluster = TestCluster::start().await;
    let client = cluster.client.clone();
    let new_backend = move || -> Arc<dyn Backend> {
        let owner = format!("conformance-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Arc::new(KubernetesBackend::new(client.clone(), settings(&owner)))
    };
    let probe = new_backend().probe().await;
    assert!(probe.as_ref().is_ok_and(|v| v.starts_with("Kubernetes")), "{probe:?}");
    conformance::run(Subject {
        new_backend: Box::new(new_backend),
        manifest: conformance::manifest("conformance", "kubernetes", app_manifest(IMAGE)),
        failing: conformance::manifest("conformance", "kubernetes", app_manifest(MISSING_IMAGE)),
    })
    .await;
}

/// esm on the cluster, with an owner name of its own.
pub(crate) async fn start_esm(cluster: &TestCluster, dir: &TempDir, extra: &[(&str, &str)]) -> (Esm, String) {
    let owner = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let mut env = vec![
        ("ESM_BACKENDS", "kubernetes"),
        ("KUBECONFIG", kubeconfig.as_str()),
        ("ESM_K8S_READY_TIMEOUT", "30"),
        ("ESM_RECONCILE_INTERVAL", "1"),
        ("ESM_NAME", owner.as_str()),
    ];
    env.extend_from_slice(extra);
    let esm = Esm::start_with(&StoreSetup::Embedded(dir.path().to_path_buf()), &env).await;
    (esm, owner)
}

/// esm on a cluster of the test's own: the one way these tests start it.
struct OnCluster {
    /// A client of the esm.
    client: Client,
    /// The esm (stopped before its directory and the cluster go).
    esm: Esm,
    /// Its owner name, which names its namespaces.
    owner: String,
    /// Where its embedded store lives.
    _dir: TempDir,
    /// The Kubernetes API.
    cluster: TestCluster,
}

impl OnCluster {
    /// A [`TestCluster`], and esm on it with `extra` settings ([`start_esm`]).
    async fn start(extra: &[(&str, &str)]) -> OnCluster {
        let cluster = TestCluster::start().await;
        let dir = temp_dir("esm-k8s");
        let (esm, owner) = start_esm(&cluster, &dir, extra).await;
        let client = Client::new(&esm.api);
        OnCluster { client, esm, owner, _dir: dir, cluster }
    }

    /// [`OnCluster::start`], with service `svc` and plan `plan` deployed by the
    /// Kubernetes manifest of [`app_manifest`] running `image`.
    async fn with_app(image: &str) -> OnCluster {
        let on = Self::start(&[]).await;
        on.client.register_manifest("kubernetes", &app_manifest(image)).await;
        on
    }
}

/// Waits until the namespace `name` is gone.
async fn gone(cluster: &TestCluster, name: &str) {
    let api = Api::<Namespace>::all(cluster.client.clone());
    eventually(Duration::from_secs(30), &format!("namespace {name} to go"), || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_deployed_in_its_namespace_reported_with_real_addresses_bound_and_removed() {
    let OnCluster { client, owner, cluster, .. } = &OnCluster::with_app(IMAGE).await;
    let (id, encoded) = ("Instance/With Odd Chars", "Instance%2FWith%20Odd%20Chars");
    let path = format!("/v2/service_instances/{encoded}");
    let body = json!({"service_id": "svc", "plan_id": "plan", "organization_guid": "o", "space_guid": "s",
                      "parameters": {"GREETING": "from parameters", "SIZE": 3}});
    let (status, answer) = client.send(Method::PUT, &format!("{path}?accepts_incomplete=true"), Some(&body)).await;
    assert_eq!(status, 202, "{answer}");
    let (_, last) = client.settle(encoded, Duration::from_secs(60)).await;
    assert_eq!(last["state"], "succeeded", "{last}");

    // One namespace, a DNS label, carrying the verbatim id; the parameters are env.
    let ns = kubernetes::namespace(owner, id);
    let namespace = Api::<Namespace>::all(cluster.client.clone()).get(&ns).await.expect("the instance's namespace");
    assert_eq!(namespace.metadata.annotations.unwrap()["esm.instance_id"], id);
    let deployment = Api::<Deployment>::namespaced(cluster.client.clone(), &ns).get("app").await.unwrap();
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!((value("GREETING").as_deref(), value("SIZE").as_deref()), (Some("from parameters"), Some("3")));

    // The flat keys carry the Service's cluster IP: a real address, never "pending".
    let service = Api::<Service>::namespaced(cluster.client.clone(), &ns).get("app").await.unwrap();
    let cluster_ip = service.spec.unwrap().cluster_ip.expect("a cluster IP");
    let (status, details) = client.view(encoded).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["context"]["app_Ip"], json!(cluster_ip), "{details}");
    assert_eq!(details["context"]["app_8080/tcp/HostPort"], "8080", "{details}");
    assert_eq!(details["context"]["namespace_name"], json!(ns));

    let (status, bound) = client.bind(encoded, "b1").await;
    assert_eq!(status, 201, "{bound}");
    assert_eq!(bound["credentials"]["host"], json!(cluster_ip));
    assert_eq!(bound["credentials"]["services"]["app"]["ports"]["8080/tcp"], 8080);

    let (status, _) =
        client.send(Method::DELETE, &format!("{path}/service_bindings/b1?service_id=svc&plan_id=plan"), None).await;
    assert_eq!(status, 200);
    let (status, answer) = client.deprovision(encoded, false).await;
    assert_eq!(status, 200, "{answer}");
    // A synchronous deprovision answers once the namespace is gone.
    assert!(Api::<Namespace>::all(cluster.client.clone()).get_opt(&ns).await.unwrap().is_none());
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_that_cannot_pull_its_image_fails_with_the_pods_reason_and_leaves_nothing() {
    let OnCluster { client, owner, cluster, .. } = &OnCluster::start(&[]).await;
    client.register_manifest("k8s", &app_manifest(MISSING_IMAGE)).await;
    let (status, _) = client.provision("broken", true).await;
    assert_eq!(status, 202);
    let (_, last) = client.settle("broken", Duration::from_secs(60)).await;
    assert_eq!(last["state"], "failed", "{last}");
    let description = last["description"].as_str().unwrap_or_default();
    assert!(description.contains("ErrImagePull") || description.contains("ImagePullBackOff"), "{last}");
    gone(cluster, &kubernetes::namespace(owner, "broken")).await;
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn registration_refuses_what_reaches_past_the_namespace() {
    let OnCluster { client, .. } = &OnCluster::start(&[]).await;
    let service = json!({"id": "svc", "name": "svc", "description": "d", "bindable": true,
                         "plans": [{"id": "plan", "name": "plan", "description": "d"}]});
    assert!(matches!(client.send(Method::PUT, "/v2/et/catalog", Some(&service)).await.0, 200 | 201));
    let host_path = app_manifest(IMAGE).replace(
        "          ports: [{containerPort: 8080}]\n",
        "          ports: [{containerPort: 8080}]\n      volumes: [{name: root, hostPath: {path: /}}]\n",
    );
    let cluster_role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\n".to_owned();
    for (content, expected) in [(host_path, "hostPath"), (cluster_role, "cluster-scoped")] {
        let manifest = json!({"service_id": "svc", "plan_id": "plan", "manifest_type": "kubernetes",
                              "manifest_content": content});
        let (status, body) = client.send(Method::PUT, "/v2/et/manifest/refused", Some(&manifest)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["description"].as_str().unwrap_or_default().contains(expected), "{body}");
    }
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn compose_manifests_run_translated_with_node_ports_when_so_configured() {
    let extra = [
        ("ESM_COMPOSE_TARGET", "kubernetes"),
        ("ESM_K8S_SERVICE_EXPOSURE", "node-port"),
        ("ESM_ADVERTISE_HOST", "node.example"),
    ];
    let OnCluster { client, owner, cluster, .. } = &OnCluster::start(&extra).await;
    let compose = format!(
        "services:\n  web_app:\n    image: {IMAGE}\n    command: [httpd, -f, -p, \"8080\"]\n    ports: [\"8080\"]\n\
         \x20 worker:\n    image: {IMAGE}\n    command: [sleep, \"3600\"]\n"
    );
    client.register_manifest("docker-compose", &compose).await;
    let (status, body) = client.provision("composed", false).await;
    assert_eq!(status, 201, "{body}");
    let ns = kubernetes::namespace(owner, "composed");
    let services = Api::<Service>::namespaced(cluster.client.clone(), &ns);
    let listed = services.list(&Default::default()).await.unwrap().items;
    assert_eq!(listed.len(), 1, "only web_app has ports");
    let spec = listed[0].spec.clone().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    let node_port = spec.ports.unwrap()[0].node_port.expect("a node port");
    let (_, details) = client.view("composed").await;
    // Keys under the compose service's own name, as the original's clients look them up.
    assert_eq!(details["context"]["web_app_Ip"], "node.example", "{details}");
    assert_eq!(details["context"]["web_app_8080/tcp/HostPort"], json!(node_port.to_string()), "{details}");
    assert_eq!(details["context"]["worker_state"], "Up", "{details}");
    assert_eq!(client.deprovision("composed", false).await.0, 200);
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_removes_a_namespace_of_esms_that_no_instance_owns_and_leaves_others_alone() {
    let OnCluster { owner, cluster, .. } = &OnCluster::start(&[]).await;
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    let labelled = |name: &str, owner: &str, instance: &str| Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([("esm.owner".to_owned(), owner.to_owned())].into()),
            annotations: Some([("esm.instance_id".to_owned(), instance.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let orphan = kubernetes::namespace(owner, "nobody");
    namespaces.create(&PostParams::default(), &labelled(&orphan, owner, "nobody")).await.unwrap();
    let someone_elses = format!("other-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    namespaces.create(&PostParams::default(), &labelled(&someone_elses, "another-esm", "nobody")).await.unwrap();
    gone(cluster, &orphan).await;
    assert!(
        namespaces.get_opt(&someone_elses).await.unwrap().is_some(),
        "another owner's namespace is not esm's to remove"
    );
    let _ = namespaces.delete(&someone_elses, &Default::default()).await;
}

#[cfg_attr(
    not(esm_test_kmock),
    ignore = "needs the emulator (ESM_TEST_KUBERNETES=kmock): its controllers make a pod crash"
)]
#[tokio::test(flavor = "multi_thread")]
async fn a_crashing_pod_makes_the_instance_down_within_two_seconds_from_the_watch() {
    // Periodic observation every 60 s: only the watch can tell within 2.
    let OnCluster { client, owner, cluster, .. } = &OnCluster::start(&[("ESM_LIVENESS_INTERVAL", "60")]).await;
    assert!(cluster.emulated, "the crash is played by the emulated controllers");
    client.register_manifest("kubernetes", &app_manifest(IMAGE)).await;
    let (status, body) = client.provision("live", false).await;
    assert_eq!(status, 201, "{body}");
    let liveness = || async {
        let (status, body) = client.send(Method::GET, "/v2/et/service_instances/live/liveness", None).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    eventually(Duration::from_secs(10), "the instance up", || async {
        (liveness().await["status"] == "up").then_some(())
    })
    .await;
    k8s::crash(&cluster.client, &kubernetes::namespace(owner, "live"), "app").await;
    let crashed = std::time::Instant::now();
    let body = eventually(Duration::from_secs(10), "the instance down", || async {
        let body = liveness().await;
        (body["status"] == "down").then_some(body)
    })
    .await;
    assert!(crashed.elapsed() < Duration::from_secs(2), "seen after {:?}", crashed.elapsed());
    let component = &body["components"][0];
    assert_eq!((component["name"].as_str(), component["status"].as_str()), (Some("app"), Some("down")), "{body}");
    assert!(component["reason"].as_str().unwrap_or_default().contains("CrashLoopBackOff"), "{body}");
}

#[cfg_attr(not(esm_test_kubernetes), ignore = "needs Kubernetes: set ESM_TEST_KUBERNETES=kmock or ESM_TEST_KUBECONFIG")]
#[tokio::test(flavor = "multi_thread")]
async fn a_deprovision_answers_once_the_namespace_is_gone_and_the_id_deploys_again() {
    let OnCluster { client, esm, owner, cluster, .. } = &OnCluster::with_app(IMAGE).await;
    let ns = kubernetes::namespace(owner, "again");
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    for round in 0..2 {
        let (status, body) = client.provision("again", false).await;
        assert_eq!(status, 201, "round {round}: {body}");
        // A finalizer holds the namespace terminating, as a slow namespace controller
        // would, until the test lets it go.
        let hold = json!({"metadata": {"finalizers": ["esm-test/held"]}});
        namespaces.patch(&ns, &PatchParams::default(), &Patch::Merge(hold)).await.expect("held");
        let api = esm.api.clone();
        let deprovision = tokio::spawn(async move { Client::new(&api).deprovision("again", false).await });
        eventually(Duration::from_secs(30), "the namespace terminating", || async {
            namespaces.get_opt(&ns).await.ok()??.metadata.deletion_timestamp.map(drop)
        })
        .await;
        assert!(!deprovision.is_finished(), "round {round}: answered while terminating");
        let release = json!({"metadata": {"finalizers": []}});
        namespaces.patch(&ns, &PatchParams::default(), &Patch::Merge(release)).await.expect("released");
        let (status, body) = deprovision.await.expect("the deprovision");
        assert_eq!(status, 200, "round {round}: {body}");
        assert!(namespaces.get_opt(&ns).await.unwrap().is_none(), "round {round}: answered before it was gone");
    }
}
