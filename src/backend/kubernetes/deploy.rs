//! The one deployment path of the Kubernetes backend, whatever the manifest was: the
//! instance's namespace claimed → every object created or replaced → what an earlier
//! deployment made and this one does not, pruned → a wait on the API's watch until the
//! deployment is ready ([`readiness::look`]) → on a first provision's failure, the
//! namespace removed. Every step is idempotent, so a re-run after a crash converges.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ObjectMeta;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::cluster::Cluster;
use super::objects::{Kind, Objects};
use super::readiness::{self, Look, Seen};
use super::{dns_label, namespace};
use crate::backend::kit::{self, Changes};
use crate::backend::{BackendError, Deployment, labels};

/// How often a wait reads the cluster again when its watch said nothing: watches can
/// drop events, and a mock API server may not send them.
const BACKSTOP: Duration = Duration::from_secs(2);

/// One deployment to make.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The instance.
    pub instance_id: &'a str,
    /// The manifest it is deployed from.
    pub manifest_id: &'a str,
    /// Its parameters, for every container's environment.
    pub parameters: Option<&'a Value>,
    /// What to deploy.
    pub objects: &'a Objects,
    /// This esm deployment's name.
    pub owner: &'a str,
    /// How long it may take to be ready.
    pub timeout: Duration,
}

/// The labels that select everything of `instance_id` made by `owner` (label values
/// must be DNS-label-like; the verbatim ids are annotations).
pub fn selector(owner: &str, instance_id: Option<&str>) -> BTreeMap<String, String> {
    let mut selector = BTreeMap::from([(labels::OWNER.to_owned(), dns_label(owner))]);
    if let Some(id) = instance_id {
        selector.insert(labels::INSTANCE.to_owned(), dns_label(id));
    }
    selector
}

/// Whether `namespace` is the namespace esm `owner` made for `instance_id`.
pub fn is_ours(namespace: &Namespace, owner: &str, instance_id: &str) -> bool {
    let label = namespace.metadata.labels.as_ref().and_then(|l| l.get(labels::OWNER));
    label == Some(&dns_label(owner)) && instance_of(namespace).as_deref() == Some(instance_id)
}

/// The instance a namespace of esm's was made for (its annotation).
pub fn instance_of(namespace: &Namespace) -> Option<String> {
    namespace.metadata.annotations.as_ref()?.get(labels::INSTANCE).cloned()
}

/// Deploys an instance for the first time; on failure its namespace is removed.
pub async fn provision(cluster: &Cluster, target: &Target<'_>) -> Result<Deployment, BackendError> {
    kit::or_clean_up(target.instance_id, apply(cluster, target), || {
        remove(cluster, target.owner, target.instance_id, target.timeout)
    })
    .await
}

/// Redeploys an instance in place. A failure leaves it half rolled out: not usable,
/// and the update may be repeated.
pub async fn update(cluster: &Cluster, target: &Target<'_>) -> Result<Deployment, BackendError> {
    apply(cluster, target).await.map_err(kit::failed_update)
}

/// Removes an instance: its namespace, waited for until the cluster has deleted it and
/// everything in it. A namespace of that name that is not the instance's is left alone.
pub async fn remove(cluster: &Cluster, owner: &str, instance_id: &str, timeout: Duration) -> Result<(), BackendError> {
    let name = namespace(owner, instance_id);
    match cluster.namespace(&name).await? {
        None => return Ok(()),
        Some(found) if !is_ours(&found, owner, instance_id) => {
            tracing::warn!(namespace = %name, %instance_id, "a namespace of this name is not the instance's: left alone");
            return Ok(());
        }
        Some(_) => cluster.delete_namespace(&name).await?,
    }
    wait_gone(cluster, &name, timeout).await
}

/// Namespace → objects → prune → wait.
async fn apply(cluster: &Cluster, target: &Target<'_>) -> Result<Deployment, BackendError> {
    let name = namespace(target.owner, target.instance_id);
    let selector = selector(target.owner, Some(target.instance_id));
    let mut esm_labels: HashMap<String, String> = selector.clone().into_iter().collect();
    esm_labels.insert(labels::MANIFEST.to_owned(), dns_label(target.manifest_id));
    let annotations = HashMap::from([
        (labels::INSTANCE.to_owned(), target.instance_id.to_owned()),
        (labels::MANIFEST.to_owned(), target.manifest_id.to_owned()),
    ]);
    claim_namespace(cluster, &name, target, &esm_labels, &annotations).await?;
    for object in &target.objects.0 {
        let body = object.for_instance(&name, &esm_labels, &annotations, target.parameters);
        cluster.create_or_replace(&name, object.kind, body).await?;
    }
    let expected = target.objects.names();
    prune(cluster, &name, &selector, &expected).await?;
    wait_ready(cluster, &name, &selector, &expected, target.timeout).await?;
    let mut details = Map::new();
    details.insert("namespace".into(), json!(name));
    let keys: Vec<String> = target.objects.0.iter().map(|o| o.key()).collect();
    details.insert("objects".into(), json!(keys));
    Ok(Deployment { details })
}

/// Makes the instance's namespace, or checks that the one there is its own (and waits
/// out one still terminating from an earlier deprovision).
async fn claim_namespace(
    cluster: &Cluster,
    name: &str,
    target: &Target<'_>,
    esm_labels: &HashMap<String, String>,
    annotations: &HashMap<String, String>,
) -> Result<(), BackendError> {
    if let Some(found) = cluster.namespace(name).await? {
        if !is_ours(&found, target.owner, target.instance_id) {
            return Err(BackendError::new(format!("namespace {name} exists and is not this instance's")));
        }
        if found.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        wait_gone(cluster, name, target.timeout).await?;
    }
    let wanted = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(esm_labels.clone().into_iter().collect()),
            annotations: Some(annotations.clone().into_iter().collect()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    cluster.create_namespace(&wanted).await?;
    // Another replica may have made it first: it must still be this instance's.
    match cluster.namespace(name).await? {
        Some(found) if is_ours(&found, target.owner, target.instance_id) => Ok(()),
        _ => Err(BackendError::new(format!("namespace {name} exists and is not this instance's"))),
    }
}

/// Deletes the instance's objects that `expected` does not name (left by an earlier
/// deployment of another manifest or plan).
async fn prune(
    cluster: &Cluster,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    expected: &BTreeMap<Kind, BTreeSet<String>>,
) -> Result<(), BackendError> {
    for kind in Kind::ALL {
        for name in cluster.names(kind, namespace, selector).await? {
            if !expected.get(&kind).is_some_and(|names| names.contains(&name)) {
                cluster.delete(kind, namespace, &name).await?;
            }
        }
    }
    Ok(())
}

/// What the cluster shows of the deployment in `namespace`: four lists, at once.
pub async fn seen(
    cluster: &Cluster,
    namespace: &str,
    selector: &BTreeMap<String, String>,
) -> Result<Seen, BackendError> {
    let (deployments, stateful_sets, services, pods) = tokio::try_join!(
        cluster.list(namespace, selector),
        cluster.list(namespace, selector),
        cluster.list(namespace, selector),
        cluster.list(namespace, selector),
    )?;
    Ok(Seen { deployments, stateful_sets, services, pods })
}

/// Waits until the deployment is ready, woken by the watch on its objects and pods (or
/// the backstop); fails with the first failing pod's reason, or at `timeout` with what
/// it still waited for.
async fn wait_ready(
    cluster: &Cluster,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    expected: &BTreeMap<Kind, BTreeSet<String>>,
    timeout: Duration,
) -> Result<(), BackendError> {
    let changes = cluster.changes(Some(namespace), selector).map(drop).boxed();
    until(changes, timeout, || async { Ok(readiness::look(&seen(cluster, namespace, selector).await?, expected)) })
        .await
}

/// Waits until the namespace `name` is gone.
async fn wait_gone(cluster: &Cluster, name: &str, timeout: Duration) -> Result<(), BackendError> {
    until(cluster.namespace_changes(name), timeout, || async {
        Ok(match cluster.namespace(name).await? {
            None => Look::Ready,
            Some(_) => Look::Waiting(format!("namespace {name} is still terminating")),
        })
    })
    .await
}

/// Looks at the cluster until `look` says ready or failed ([`kit::until`]): again on
/// every change `changes` reports and at least every [`BACKSTOP`]; at `timeout`, fails
/// with what the last look waited for.
async fn until<F, Fut>(changes: BoxStream<'static, ()>, timeout: Duration, mut look: F) -> Result<(), BackendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look, BackendError>>,
{
    let mut changes = Changes::new(Some(changes), BACKSTOP);
    kit::until(&mut changes, Instant::now() + timeout, || {
        let look = look();
        async move {
            match look.await? {
                Look::Ready => Ok(kit::Look::Ready),
                Look::Failed(reason) => Err(BackendError::new(reason)),
                Look::Waiting(what) => Ok(kit::Look::Waiting {
                    late: format!("not done within {}s: {what}", timeout.as_secs()),
                    wake: None,
                }),
            }
        }
    })
    .await
}
