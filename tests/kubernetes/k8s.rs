//! A Kubernetes API for the Kubernetes backend's tests, and what a cluster's controllers
//! would do behind it.
//!
//! With `ESM_TEST_KUBECONFIG`, the tests use that cluster (kind, k3s, minikube) as it is:
//! its controllers run the pods. Otherwise (`ESM_TEST_KUBERNETES=kmock`) they start the
//! `kmock` emulator (`tests/k8s/kmock_server.py`, a third-party API server emulator with
//! the shims listed there) on a loopback port and run [`Controllers`] against it: no
//! pods run, so the test drives readiness by writing status through the API the way the
//! deployment controller, the kubelet and the Service IP allocator would.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// An image name with this in it fails to pull under [`Controllers`] (on a real
/// cluster it does not exist).
pub const MISSING_IMAGE: &str = "esm-test/never-built:1";

/// The API the tests talk to.
pub struct TestCluster {
    /// A kubeconfig naming it, for esm processes (`KUBECONFIG`).
    pub kubeconfig: PathBuf,
    /// A client of it.
    pub client: Client,
    /// Whether it is the emulator (whose controllers this harness plays).
    pub emulated: bool,
    _server: Option<KmockServer>,
    _controllers: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// The cluster of `ESM_TEST_KUBECONFIG`, else the emulator with its controllers.
    pub async fn start() -> TestCluster {
        esm::tls::install_default_provider();
        if let Ok(path) = std::env::var("ESM_TEST_KUBECONFIG") {
            let kubeconfig = PathBuf::from(path);
            let client = client(&kubeconfig).await;
            return TestCluster { kubeconfig, client, emulated: false, _server: None, _controllers: None, _dir: None };
        }
        let server = KmockServer::start();
        let dir = tempfile::Builder::new().prefix("esm-k8s-").tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&format!("http://127.0.0.1:{}", server.port))).unwrap();
        let client = client(&kubeconfig).await;
        let controllers = Controllers::start(client.clone());
        TestCluster {
            kubeconfig,
            client,
            emulated: true,
            _server: Some(server),
            _controllers: Some(controllers),
            _dir: Some(dir),
        }
    }
}

/// A client from a kubeconfig file, as kubectl would read it.
pub async fn client(kubeconfig: &Path) -> Client {
    let config = Kubeconfig::read_from(kubeconfig).expect("a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await.expect("a config");
    Client::try_from(config).expect("a client")
}

fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster: {{server: \"{server}\"}}\n\
         users:\n- name: esm\n  user: {{}}\ncontexts:\n- name: kmock\n  context: {{cluster: kmock, user: esm}}\n\
         current-context: kmock\n"
    )
}

/// The emulator, served by `tests/k8s/kmock_server.py`; stopped when dropped.
struct KmockServer {
    child: Child,
    port: u16,
}

impl KmockServer {
    fn start() -> KmockServer {
        let python = std::env::var("ESM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/kmock_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs tests/k8s/kmock_server.py (pip install kmock)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the kmock runner did not start: {line:?}"));
        KmockServer { child, port }
    }
}

impl Drop for KmockServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a cluster's controllers do for esm's objects, played through the API: a
/// Deployment or StatefulSet gets all its replicas available, unless its image is
/// [`MISSING_IMAGE`]: then a pod of it waits in `ErrImagePull`, as the kubelet reports;
/// a Service gets a cluster IP, node ports, and a load balancer address as its type asks.
pub struct Controllers;

impl Controllers {
    /// Runs them until the returned task is aborted (or the test ends).
    pub fn start(client: Client) -> JoinHandle<()> {
        tokio::spawn(async move {
            let deployments = watcher(Api::<Deployment>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let sets = watcher(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
                .default_backoff()
                .applied_objects();
            let mut deployments = std::pin::pin!(deployments);
            let mut sets = std::pin::pin!(sets);
            let mut services = std::pin::pin!(services);
            loop {
                tokio::select! {
                    Some(Ok(d)) = deployments.next() => roll_out_deployment(&client, &d).await,
                    Some(Ok(s)) = sets.next() => roll_out_set(&client, &s).await,
                    Some(Ok(s)) = services.next() => allocate(&client, &s).await,
                    else => break,
                }
            }
        })
    }
}

/// The image of a pod template's first container.
fn image_of(template: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> String {
    template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn roll_out_deployment(client: &Client, deployment: &Deployment) {
    let spec = deployment.spec.clone().unwrap_or_default();
    let observed = deployment.status.as_ref().and_then(|s| s.observed_generation);
    let rollout = Rollout { template: &spec.template, replicas: spec.replicas, observed };
    rollout.play(client, deployment, &["availableReplicas", "updatedReplicas"]).await;
}

async fn roll_out_set(client: &Client, set: &StatefulSet) {
    let spec = set.spec.clone().unwrap_or_default();
    let observed = set.status.as_ref().and_then(|s| s.observed_generation);
    let rollout = Rollout { template: &spec.template, replicas: spec.replicas, observed };
    rollout.play(client, set, &["availableReplicas"]).await;
}

/// What the controller of a workload (a Deployment, a StatefulSet) reads of it.
struct Rollout<'a> {
    /// Its pod template.
    template: &'a k8s_openapi::api::core::v1::PodTemplateSpec,
    /// The replicas its spec asks for.
    replicas: Option<i32>,
    /// The generation its status says was rolled out.
    observed: Option<i64>,
}

impl Rollout<'_> {
    /// Rolls `workload` out as its controller would: a pod failing to pull a missing
    /// image, or every replica ready, reported in its status with the `counts` its kind
    /// has beyond `replicas` and `readyReplicas`.
    async fn play<K>(&self, client: &Client, workload: &K, counts: &[&str])
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let ns = workload.namespace().unwrap_or_default();
        if image_of(Some(self.template)).contains(MISSING_IMAGE) {
            failing_pod(client, &ns, &workload.name_any(), self.template).await;
            return;
        }
        let replicas = self.replicas.unwrap_or(1);
        let generation = workload.meta().generation.unwrap_or(1);
        // Like the deployment controller, it rolls out each new spec once; a status a
        // test writes afterwards (a crash) stays until the next spec.
        if self.observed == Some(generation) {
            return;
        }
        let mut status = json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas});
        for count in counts {
            status[*count] = json!(replicas);
        }
        let patch = json!({ "status": status });
        let api = Api::<K>::namespaced(client.clone(), &ns);
        let _ = api.patch_status(&workload.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
    }
}

/// A pod of `owner` whose image cannot be pulled, as the kubelet would report it.
async fn failing_pod(client: &Client, ns: &str, owner: &str, template: &k8s_openapi::api::core::v1::PodTemplateSpec) {
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let name = format!("{owner}-0");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": name, "labels": template.metadata.as_ref().and_then(|m| m.labels.clone())},
                     "spec": {"containers": [{"name": owner, "image": MISSING_IMAGE}]}});
    let _ = api.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await;
    let status = json!({"status": {"phase": "Pending", "containerStatuses": [{"name": owner, "image": MISSING_IMAGE,
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": format!("pull access denied for {MISSING_IMAGE}")}}}]}});
    let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await;
}

/// The next address or port the allocator hands out.
static NEXT: AtomicU32 = AtomicU32::new(1);

async fn allocate(client: &Client, service: &Service) {
    let ns = service.namespace().unwrap_or_default();
    let api = Api::<Service>::namespaced(client.clone(), &ns);
    let spec = service.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_else(|| "ClusterIP".into());
    let needs_ip = spec.cluster_ip.as_deref().is_none_or(str::is_empty);
    let ports = spec.ports.clone().unwrap_or_default();
    let needs_node_ports = kind != "ClusterIP" && ports.iter().any(|p| p.node_port.is_none());
    if needs_ip || needs_node_ports {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let ports: Vec<_> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut port = serde_json::to_value(p).unwrap();
                if kind != "ClusterIP" && p.node_port.is_none() {
                    port["nodePort"] = json!(30000 + (n * 8 + i as u32) % 2700);
                }
                port
            })
            .collect();
        let ip =
            spec.cluster_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or(format!("10.96.{}.{}", n / 250, n % 250 + 1));
        let patch = json!({"spec": {"clusterIP": ip, "ports": ports}});
        let _ = api.patch(&service.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
    }
    let balanced = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    if kind == "LoadBalancer" && balanced.is_none_or(Vec::is_empty) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": format!("192.0.2.{}", n % 250 + 1)}]}}});
        let _ = api.patch_status(&service.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await;
    }
}

/// What the kubelet and the deployment controller report when the pods of Deployment
/// `name` crash: a pod in `CrashLoopBackOff` and no replica available.
pub async fn crash(client: &Client, ns: &str, name: &str) {
    let deployments = Api::<Deployment>::namespaced(client.clone(), ns);
    let deployment = deployments.get(name).await.expect("the Deployment");
    let template = deployment.spec.clone().unwrap_or_default().template;
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let pod_name = format!("{name}-crashed");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name,
                     "labels": template.metadata.as_ref().and_then(|m| m.labels.clone()),
                     "annotations": template.metadata.as_ref().and_then(|m| m.annotations.clone())},
                     "spec": {"containers": [{"name": name, "image": image_of(Some(&template))}]}});
    pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.expect("a pod");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{"name": name, "image": "x",
        "imageID": "", "ready": false, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}}]}});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(status)).await.expect("the pod's status");
    let status = json!({"status": {"availableReplicas": 0, "readyReplicas": 0}});
    deployments.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("the status");
}
