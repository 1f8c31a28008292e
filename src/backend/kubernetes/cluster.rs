//! The Kubernetes API as the backend uses it (kube-rs): namespaces, objects created or
//! replaced, lists, deletions, and watches that wake a wait. Found by label selector
//! and checked again here, so a server that ignores selectors (or a label that was
//! changed by hand) never makes esm act on what is not its own.

use std::collections::BTreeMap;
use std::fmt::Debug;

use futures_util::stream::{self, BoxStream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::client::ClientBuilder;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::objects::Kind;
use super::reachability::Watch;
use crate::backend::BackendError;

/// A connection to the cluster's API server.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl Cluster {
    /// The cluster `KUBECONFIG` (or `~/.kube/config`, or the pod's service account) names,
    /// found as kubectl finds it; whether it answers is logged as it changes
    /// ([`reachability`](super::reachability)).
    pub async fn connect() -> Result<Self, BackendError> {
        crate::tls::install_default_provider();
        let config =
            kube::Config::infer().await.map_err(|e| BackendError::new(format!("no Kubernetes configuration: {e}")))?;
        let client = ClientBuilder::try_from(config)
            .map_err(|e| BackendError::new(format!("Kubernetes client: {e}")))?
            .with_layer(&Watch::new())
            .build();
        Ok(Self::new(client))
    }

    /// The cluster of `context` (its current one when `None`) in the kubeconfig file
    /// `path` (one of a fleet's engines).
    pub async fn from_kubeconfig(path: &std::path::Path, context: Option<&str>) -> Result<Self, BackendError> {
        crate::tls::install_default_provider();
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| BackendError::new(format!("cannot read the kubeconfig {}: {e}", path.display())))?;
        let options = kube::config::KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| BackendError::new(format!("the kubeconfig {}: {e}", path.display())))?;
        let client = ClientBuilder::try_from(config)
            .map_err(|e| BackendError::new(format!("Kubernetes client: {e}")))?
            .with_layer(&Watch::new())
            .build();
        Ok(Self::new(client))
    }

    /// The cluster `client` talks to.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The API of `kind` in `namespace`.
    fn api(&self, kind: Kind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &kind.api_resource())
    }

    /// The server's version, for `/health`.
    pub async fn version(&self) -> Result<String, BackendError> {
        let info = self.client.apiserver_version().await.map_err(|e| api_error("the API server's version", e))?;
        Ok(format!("Kubernetes {}", info.git_version))
    }

    /// The namespace `name`, if it exists.
    pub async fn namespace(&self, name: &str) -> Result<Option<Namespace>, BackendError> {
        Api::<Namespace>::all(self.client.clone()).get_opt(name).await.map_err(|e| api_error(name, e))
    }

    /// Creates `namespace`; one that exists already is left as it is (the caller checks
    /// whose it is).
    pub async fn create_namespace(&self, namespace: &Namespace) -> Result<(), BackendError> {
        let name = namespace.metadata.name.as_deref().unwrap_or_default();
        match Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), namespace).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
            Err(e) => Err(api_error(&format!("namespace {name}"), e)),
        }
    }

    /// Deletes the namespace `name` (and so everything in it); gone already is success.
    pub async fn delete_namespace(&self, name: &str) -> Result<(), BackendError> {
        match Api::<Namespace>::all(self.client.clone()).delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => Err(api_error(&format!("namespace {name}"), e)),
        }
    }

    /// The namespaces with every label of `selector` (checked here too).
    pub async fn namespaces(&self, selector: &BTreeMap<String, String>) -> Result<Vec<Namespace>, BackendError> {
        let params = ListParams::default().labels(&selector_text(selector));
        let listed =
            Api::<Namespace>::all(self.client.clone()).list(&params).await.map_err(|e| api_error("namespaces", e))?;
        Ok(listed.items.into_iter().filter(|n| has_labels(n.metadata.labels.as_ref(), selector)).collect())
    }

    /// Creates `body` in `namespace`, or replaces the object of that name: idempotent, so
    /// a re-run after a crash converges. Claims and Jobs are kept as they are when they
    /// exist (their specs are immutable once bound or started); a replaced Service keeps
    /// the addresses the cluster gave it.
    pub async fn create_or_replace(&self, namespace: &str, kind: Kind, body: Value) -> Result<(), BackendError> {
        let object: DynamicObject =
            serde_json::from_value(body).map_err(|e| BackendError::new(format!("{}: {e}", kind.name())))?;
        let name = object.metadata.name.clone().unwrap_or_default();
        let what = format!("{} {name}", kind.name());
        let api = self.api(kind, namespace);
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(e) => return Err(api_error(&what, e)),
        }
        if matches!(kind, Kind::PersistentVolumeClaim | Kind::Job) {
            return Ok(());
        }
        let existing = api.get(&name).await.map_err(|e| api_error(&what, e))?;
        let mut object = object;
        object.metadata.resource_version = existing.metadata.resource_version.clone();
        if kind == Kind::Service {
            keep_addresses(&mut object.data, &existing.data);
        }
        api.replace(&name, &PostParams::default(), &object).await.map(drop).map_err(|e| api_error(&what, e))
    }

    /// The objects of type `K` in `namespace` with every label of `selector`.
    pub async fn list<K>(&self, namespace: &str, selector: &BTreeMap<String, String>) -> Result<Vec<K>, BackendError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let params = ListParams::default().labels(&selector_text(selector));
        let listed = Api::<K>::namespaced(self.client.clone(), namespace)
            .list(&params)
            .await
            .map_err(|e| api_error(&K::plural(&()), e))?;
        Ok(listed.items.into_iter().filter(|o| has_labels(o.meta().labels.as_ref(), selector)).collect())
    }

    /// The names of the objects of `kind` in `namespace` with every label of `selector`.
    pub async fn names(
        &self,
        kind: Kind,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, BackendError> {
        let params = ListParams::default().labels(&selector_text(selector));
        let listed = self.api(kind, namespace).list(&params).await.map_err(|e| api_error(kind.plural(), e))?;
        Ok(listed
            .items
            .into_iter()
            .filter(|o| has_labels(o.metadata.labels.as_ref(), selector))
            .filter_map(|o| o.metadata.name)
            .collect())
    }

    /// Deletes the object `name` of `kind` in `namespace`; gone already is success.
    pub async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), BackendError> {
        match self.api(kind, namespace).delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => Err(api_error(&format!("{} {name}", kind.name()), e)),
        }
    }

    /// A node's address for node ports: the first node's external address, else its
    /// internal one.
    pub async fn node_address(&self) -> Result<Option<String>, BackendError> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .map_err(|e| api_error("nodes", e))?;
        let addresses = nodes.items.into_iter().next().and_then(|n| n.status).and_then(|s| s.addresses);
        let addresses = addresses.unwrap_or_default();
        let by_type = |t: &str| addresses.iter().find(|a| a.type_ == t).map(|a| a.address.clone());
        Ok(by_type("ExternalIP").or_else(|| by_type("InternalIP")))
    }

    /// Wakes once for every change to what `selector` selects among the workloads,
    /// Services and pods in `namespace` (`None`: all namespaces): the watch a wait
    /// listens on. Each item carries the changed object's annotations. Never ends: the
    /// watchers re-list and back off on errors.
    pub fn changes(
        &self,
        namespace: Option<&str>,
        selector: &BTreeMap<String, String>,
    ) -> BoxStream<'static, BTreeMap<String, String>> {
        let config = watcher::Config::default().labels(&selector_text(selector));
        let dynamic = [Kind::Deployment, Kind::StatefulSet, Kind::Service].map(|kind| {
            let api = match namespace {
                Some(ns) => self.api(kind, ns),
                None => Api::all_with(self.client.clone(), &kind.api_resource()),
            };
            annotations_of(watcher(api, config.clone()).default_backoff().boxed())
        });
        let pods = match namespace {
            Some(ns) => Api::<Pod>::namespaced(self.client.clone(), ns),
            None => Api::<Pod>::all(self.client.clone()),
        };
        let pods = annotations_of(watcher(pods, config).default_backoff().boxed());
        stream::select_all(dynamic.into_iter().chain([pods])).boxed()
    }

    /// Wakes once for every change to the namespace `name`, until it is gone.
    pub fn namespace_changes(&self, name: &str) -> BoxStream<'static, ()> {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher(Api::<Namespace>::all(self.client.clone()), config).default_backoff().map(drop).boxed()
    }
}

/// The annotations of every object a watcher reports (of each, for an initial list).
fn annotations_of<K: Resource + Send + 'static>(
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
) -> BoxStream<'static, BTreeMap<String, String>> {
    events
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o)) => {
                    Some(o.meta().annotations.clone().unwrap_or_default())
                }
                // A re-list that finished, or an error the watcher retries after: wake
                // the wait, which reads everything again.
                Ok(watcher::Event::Init | watcher::Event::InitDone) | Err(_) => Some(BTreeMap::new()),
            }
        })
        .boxed()
}

/// A Service replaced keeps what the cluster allocated: its cluster IPs and the node
/// ports the manifest leaves to the cluster.
fn keep_addresses(new: &mut Value, existing: &Value) {
    for key in ["clusterIP", "clusterIPs"] {
        if let Some(value) = existing.pointer(&format!("/spec/{key}"))
            && new.pointer(&format!("/spec/{key}")).is_none()
        {
            new["spec"][key] = value.clone();
        }
    }
    let allocated: Vec<(Value, Value)> = existing
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p.get("port")?.clone(), p.get("nodePort")?.clone())))
        .collect();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for port in ports {
            if port.get("nodePort").is_none()
                && let Some((_, node_port)) = allocated.iter().find(|(p, _)| Some(p) == port.get("port"))
            {
                port["nodePort"] = node_port.clone();
            }
        }
    }
}

/// `a=b,c=d`.
fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Whether `labels` has every label of `selector`.
fn has_labels(labels: Option<&BTreeMap<String, String>>, selector: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// A failed API call, saying what it was about. Only the server's status message is
/// passed on: it names objects and fields, never credentials.
fn api_error(what: &str, error: kube::Error) -> BackendError {
    match error {
        kube::Error::Api(status) => {
            let message = crate::backend::said::api_message(what, &status.message, "the API refused the request");
            BackendError::new(format!("Kubernetes API: {what}: {message} ({} {})", status.code, status.reason))
        }
        other => crate::backend::said::unreachable(&format!("Kubernetes API: {what}"), &other),
    }
}
