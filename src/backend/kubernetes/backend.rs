//! The [`Backend`] on a Kubernetes cluster: a stored manifest read as objects (a
//! Kubernetes manifest as it is, a compose manifest translated), deployed and removed by
//! [`deploy`], reported from what the cluster shows.

use std::collections::BTreeMap;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::cluster::Cluster;
use super::deploy::{self, Target};
use super::objects::Objects;
use super::report::{self, Address};
use super::{KubernetesSettings, namespace, policy, translate};
use crate::backend::{Backend, BackendError, BindOutput, Deployment, Execution, Info, kit, labels};
use crate::domain::binding::Binding;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::resource::Holding;
use crate::manifest::{Compose, CredentialSource};

/// The manifest types of Kubernetes manifests.
const KUBERNETES_TYPES: &[&str] = &["kubernetes", "k8s"];
/// The same, and docker-compose manifests (`ESM_COMPOSE_TARGET=kubernetes`).
const WITH_COMPOSE_TYPES: &[&str] = &["kubernetes", "k8s", "docker-compose", "docker"];

/// What one manifest deploys.
struct Workload {
    objects: Objects,
    /// A compose manifest's `x-esm-credentials`.
    credentials: BTreeMap<String, CredentialSource>,
}

/// The Kubernetes backend.
#[derive(Clone)]
pub struct KubernetesBackend {
    cluster: Cluster,
    settings: KubernetesSettings,
}

impl KubernetesBackend {
    /// A backend on the cluster kubectl would use (`KUBECONFIG`, `~/.kube/config`, or the
    /// pod's service account). The API server need not answer yet.
    pub async fn connect(settings: KubernetesSettings) -> Result<Self, BackendError> {
        Ok(Self { cluster: Cluster::connect().await?, settings })
    }

    /// A backend on the cluster of `context` in the kubeconfig file `path`.
    pub async fn from_kubeconfig(
        path: &std::path::Path,
        context: Option<&str>,
        settings: KubernetesSettings,
    ) -> Result<Self, BackendError> {
        Ok(Self { cluster: Cluster::from_kubeconfig(path, context).await?, settings })
    }

    /// A backend on the cluster `client` talks to.
    pub fn new(client: kube::Client, settings: KubernetesSettings) -> Self {
        Self { cluster: Cluster::new(client), settings }
    }

    /// Reads a manifest as the objects it deploys, off the runtime's workers.
    async fn workload(&self, manifest: &Manifest) -> Result<Workload, BackendError> {
        let (manifest, settings) = (manifest.clone(), self.settings.clone());
        tokio::task::spawn_blocking(move || read(&manifest, &settings))
            .await
            .map_err(|e| BackendError::new(format!("the manifest could not be read: {e}")))?
            .map_err(BackendError::new)
    }

    /// The deployment of `instance` from `objects`.
    fn target<'a>(&'a self, instance: &'a ServiceInstance, manifest: &'a Manifest, objects: &'a Objects) -> Target<'a> {
        Target {
            instance_id: &instance.id,
            manifest_id: &manifest.id,
            parameters: instance.parameters.as_ref(),
            objects,
            owner: &self.settings.owner,
            timeout: self.settings.ready_timeout,
        }
    }

    /// What the cluster shows of an instance, and its Services' addresses.
    async fn seen(&self, instance_id: &str) -> Result<(super::readiness::Seen, Vec<Address>), BackendError> {
        let ns = namespace(&self.settings.owner, instance_id);
        let seen = deploy::seen(&self.cluster, &ns, &deploy::selector(&self.settings.owner, Some(instance_id))).await?;
        let node_address = match (&self.settings.node_address, report::uses_node_ports(&seen.services)) {
            (Some(address), _) => Some(address.clone()),
            (None, true) => self.cluster.node_address().await?,
            (None, false) => None,
        };
        let addresses = report::addresses(&seen.services, node_address.as_deref());
        Ok((seen, addresses))
    }
}

/// A manifest as objects: Kubernetes YAML checked as it is, a compose manifest checked
/// and translated.
fn read(manifest: &Manifest, settings: &KubernetesSettings) -> Result<Workload, String> {
    let policy = &settings.policy;
    if KUBERNETES_TYPES.contains(&manifest.manifest_type.as_str()) {
        let objects = Objects::parse(&manifest.manifest_content, policy)?;
        return Ok(Workload { objects, credentials: BTreeMap::new() });
    }
    let compose = Compose::parse(&manifest.manifest_content, &policy.docker)?;
    let objects =
        translate::translate(&compose, settings.exposure, policy).map_err(|e| format!("manifest_content: {e}"))?;
    Ok(Workload { objects, credentials: compose.credentials })
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn manifest_types(&self) -> &'static [&'static str] {
        if self.settings.compose { WITH_COMPOSE_TYPES } else { KUBERNETES_TYPES }
    }

    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String> {
        read(manifest, &self.settings).map(drop)
    }

    fn execution(&self, _manifest: &Manifest, _kind: OperationKind) -> Execution {
        Execution::Either
    }

    /// A compose manifest's limits, each replica counted; Kubernetes YAML counts
    /// nothing yet.
    async fn demand(&self, manifest: &Manifest) -> Result<crate::backend::Demand, BackendError> {
        if KUBERNETES_TYPES.contains(&manifest.manifest_type.as_str()) {
            return Ok(crate::backend::Demand::default());
        }
        let compose = Compose::parse(&manifest.manifest_content, &self.settings.policy.docker);
        Ok(compose.map_err(BackendError::new)?.demand(true))
    }

    /// Two deployments cannot hold one fixed node port or host port.
    async fn poolable(&self, manifest: &Manifest) -> Result<(), String> {
        let workload = self.workload(manifest).await.map_err(|e| e.message)?;
        for object in &workload.objects.0 {
            if let Some((what, port)) = policy::fixed_ports(object).first() {
                return Err(format!(
                    "{} names the fixed {what} {port}, which only one deployment can hold",
                    object.key()
                ));
            }
        }
        Ok(())
    }

    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let workload = self.workload(manifest).await?;
        deploy::provision(&self.cluster, &self.target(instance, manifest, &workload.objects)).await
    }

    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError> {
        let workload = self.workload(manifest).await?;
        deploy::update(&self.cluster, &self.target(instance, manifest, &workload.objects)).await
    }

    async fn deprovision(&self, instance: &ServiceInstance, _manifest: Option<&Manifest>) -> Result<(), BackendError> {
        deploy::remove(&self.cluster, &self.settings.owner, &instance.id, self.settings.ready_timeout)
            .await
            .map_err(kit::failed_deprovision)
    }

    async fn bind(
        &self,
        instance: &ServiceInstance,
        _binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError> {
        let workload = self.workload(manifest).await?;
        let (seen, addresses) = self.seen(&instance.id).await?;
        report::bind_output(&instance.id, &addresses, &seen.deployments, &workload.credentials)
    }

    async fn info(&self, instance: &ServiceInstance, _manifest: &Manifest) -> Result<Info, BackendError> {
        let (seen, addresses) = self.seen(&instance.id).await?;
        Ok(report::info(&namespace(&self.settings.owner, &instance.id), &seen, &addresses))
    }

    /// The instances' namespaces: deleting one removes all the instance holds.
    async fn held(&self, owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        let esm = &self.settings.owner;
        let namespaces = self.cluster.namespaces(&deploy::selector(esm, owner)).await?;
        Ok(namespaces
            .iter()
            .filter_map(|ns| {
                let instance = deploy::instance_of(ns)?;
                let name = ns.metadata.name.clone()?;
                (owner.is_none_or(|id| id == instance) && deploy::is_ours(ns, esm, &instance))
                    .then(|| Holding::new("namespace", name, instance))
            })
            .collect())
    }

    async fn remove_instance(&self, instance_id: &str) -> Result<(), BackendError> {
        deploy::remove(&self.cluster, &self.settings.owner, instance_id, self.settings.ready_timeout).await
    }

    async fn observe(&self, instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        let (seen, _) = self.seen(&instance.id).await?;
        Ok(Some(super::readiness::components(&seen)))
    }

    /// The instances whose workloads or pods changed, from one watch per kind across
    /// the cluster (selected by esm's owner label).
    fn changes(&self) -> Option<BoxStream<'static, String>> {
        let changes = self.cluster.changes(None, &deploy::selector(&self.settings.owner, None));
        Some(changes.filter_map(|annotations| async move { annotations.get(labels::INSTANCE).cloned() }).boxed())
    }

    async fn probe(&self) -> Result<String, BackendError> {
        self.cluster.version().await
    }
}
