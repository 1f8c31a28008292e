//! The objects esm deploys on a cluster, and Kubernetes manifests read as a list of
//! them: every document parsed under the manifest limits, of a kind esm knows,
//! namespaced, named, of the kind's schema (k8s-openapi's types) and within the
//! operator's policy (`policy`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service};
use kube::core::ApiResource;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::policy::{self, KubernetesPolicy};
use crate::yaml;

/// A kind of object esm deploys: namespaced, and nothing that reaches past the
/// instance's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `apps/v1` Deployment: waited for until its replicas are available.
    Deployment,
    /// `apps/v1` StatefulSet: waited for like a Deployment.
    StatefulSet,
    /// `batch/v1` Job: started, not waited for.
    Job,
    /// `v1` Service: waited for until it has its address.
    Service,
    /// `v1` ConfigMap.
    ConfigMap,
    /// `v1` Secret.
    Secret,
    /// `v1` PersistentVolumeClaim.
    PersistentVolumeClaim,
}

impl Kind {
    /// Every kind, in the order they are created (what pods use before the pods).
    pub const ALL: [Kind; 7] = [
        Kind::ConfigMap,
        Kind::Secret,
        Kind::PersistentVolumeClaim,
        Kind::Service,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::Job,
    ];

    /// Its `kind`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::Job => "Job",
            Kind::Service => "Service",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    /// Its `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::StatefulSet => "apps/v1",
            Kind::Job => "batch/v1",
            _ => "v1",
        }
    }

    /// Its resource name in API paths.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::Job => "jobs",
            Kind::Service => "services",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
        }
    }

    /// What kube-rs needs to call the API for it.
    pub fn api_resource(self) -> ApiResource {
        let (group, version) = self.api_version().split_once('/').unwrap_or(("", self.api_version()));
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: self.api_version().to_owned(),
            kind: self.name().to_owned(),
            plural: self.plural().to_owned(),
        }
    }

    /// Whether it runs pods from a template (`spec.template.spec`).
    pub fn has_pods(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet | Kind::Job)
    }

    /// The kind of `apiVersion` and `kind`, if esm deploys it.
    fn of(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.api_version() == api_version && k.name() == kind)
    }

    /// Checks `body` against the kind's schema: k8s-openapi's type must read it.
    pub(super) fn check_schema(self, body: &Value) -> Result<(), String> {
        fn read<T: DeserializeOwned>(body: &Value) -> Result<(), String> {
            T::deserialize(body).map(drop).map_err(|e| e.to_string())
        }
        match self {
            Kind::Deployment => read::<Deployment>(body),
            Kind::StatefulSet => read::<StatefulSet>(body),
            Kind::Job => read::<Job>(body),
            Kind::Service => read::<Service>(body),
            Kind::ConfigMap => read::<ConfigMap>(body),
            Kind::Secret => read::<Secret>(body),
            Kind::PersistentVolumeClaim => read::<PersistentVolumeClaim>(body),
        }
    }
}

/// Cluster-scoped kinds, named in the refusal so a user sees why, not just "unknown".
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "RuntimeClass",
    "IngressClass",
];

/// One object of a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// The whole object as the manifest gives it.
    pub body: Value,
}

impl Object {
    /// `Kind/name`, as messages and the deployment record name it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind.name(), self.name)
    }

    /// The object as esm creates it in `namespace`: esm's labels and annotations on it
    /// (and on its pods), and the instance parameters as environment variables of every
    /// container, as the Docker backends pass them.
    pub fn for_instance(
        &self,
        namespace: &str,
        esm: &HashMap<String, String>,
        annotations: &HashMap<String, String>,
        parameters: Option<&Value>,
    ) -> Value {
        let mut body = self.body.clone();
        let metadata = object_at(&mut body, &["metadata"]);
        metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
        add_strings(metadata, "labels", esm);
        add_strings(metadata, "annotations", annotations);
        if self.kind.has_pods() {
            let template = object_at(&mut body, &["spec", "template", "metadata"]);
            add_strings(template, "labels", esm);
            add_strings(template, "annotations", annotations);
            if let Some(Value::Object(parameters)) = parameters {
                let pod = object_at(&mut body, &["spec", "template", "spec"]);
                for list in ["containers", "initContainers"] {
                    for container in pod.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
                        if let Value::Object(container) = container {
                            set_env(container, parameters);
                        }
                    }
                }
            }
        }
        body
    }
}

/// The object at `path` in `value`, made (and made an object) where missing.
pub(super) fn object_at<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut at = value;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = at.as_object_mut().expect("just made an object").entry(*key).or_insert_with(|| Value::Null);
    }
    if !at.is_object() {
        *at = Value::Object(Map::new());
    }
    at.as_object_mut().expect("just made an object")
}

/// Adds `entries` to the string map `key` of `metadata`; they win over what is there.
fn add_strings(metadata: &mut Map<String, Value>, key: &str, entries: &HashMap<String, String>) {
    let map = metadata.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !map.is_object() {
        *map = Value::Object(Map::new());
    }
    let map = map.as_object_mut().expect("just made an object");
    for (k, v) in entries {
        map.insert(k.clone(), Value::String(v.clone()));
    }
}

/// Sets every parameter as an environment variable of `container` (replacing one of the
/// same name): strings as they are, other values as JSON.
fn set_env(container: &mut Map<String, Value>, parameters: &Map<String, Value>) {
    let env = container.entry("env").or_insert_with(|| Value::Array(Vec::new()));
    if !env.is_array() {
        *env = Value::Array(Vec::new());
    }
    let env = env.as_array_mut().expect("just made an array");
    env.retain(|var| var.get("name").and_then(Value::as_str).is_none_or(|name| !parameters.contains_key(name)));
    for (name, value) in parameters {
        let value = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
        env.push(serde_json::json!({"name": name, "value": value}));
    }
}

/// What one deployment is made of, in creation order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Objects(pub Vec<Object>);

impl Objects {
    /// Reads and checks a Kubernetes manifest (`---`-separated documents) under `policy`:
    /// what registration refuses never reaches a cluster.
    pub fn parse(content: &str, policy: &KubernetesPolicy) -> Result<Objects, String> {
        let documents =
            yaml::load_documents(content, &policy.docker.limits).map_err(|e| format!("manifest_content: {e}"))?;
        let mut objects = Vec::new();
        let mut seen = BTreeSet::new();
        for (n, document) in documents.into_iter().enumerate() {
            if document.is_null() {
                continue;
            }
            let object = read_object(document).map_err(|e| format!("manifest_content: document {}: {e}", n + 1))?;
            if !seen.insert((object.kind, object.name.clone())) {
                return Err(format!("manifest_content: {} is declared twice", object.key()));
            }
            policy::check(&object, policy).map_err(|e| format!("manifest_content: {}: {e}", object.key()))?;
            objects.push(object);
            if objects.len() > policy.docker.max_services {
                return Err(format!(
                    "manifest_content: more than {} objects (ESM_MANIFEST_MAX_SERVICES)",
                    policy.docker.max_services
                ));
            }
        }
        if objects.is_empty() {
            return Err("manifest_content: no Kubernetes objects".into());
        }
        policy::check_references(&objects).map_err(|e| format!("manifest_content: {e}"))?;
        Ok(Objects::ordered(objects))
    }

    /// `objects` in creation order ([`Kind::ALL`]), by name within a kind.
    pub fn ordered(mut objects: Vec<Object>) -> Objects {
        let rank = |kind: Kind| Kind::ALL.iter().position(|k| *k == kind).unwrap_or(usize::MAX);
        objects.sort_by(|a, b| (rank(a.kind), &a.name).cmp(&(rank(b.kind), &b.name)));
        Objects(objects)
    }

    /// The objects of `kind`.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        self.0.iter().filter(move |o| o.kind == kind)
    }

    /// Names by kind, as the deployment record keeps them.
    pub fn names(&self) -> BTreeMap<Kind, BTreeSet<String>> {
        let mut names: BTreeMap<Kind, BTreeSet<String>> = BTreeMap::new();
        for object in &self.0 {
            names.entry(object.kind).or_default().insert(object.name.clone());
        }
        names
    }
}

/// One document as an [`Object`], if it is one esm deploys.
fn read_object(document: Value) -> Result<Object, String> {
    let Value::Object(map) = &document else { return Err("not a mapping".into()) };
    let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind_name) = (text("apiVersion"), text("kind"));
    let Some(kind) = Kind::of(&api_version, &kind_name) else {
        if CLUSTER_SCOPED.contains(&kind_name.as_str()) {
            return Err(format!("{kind_name} is cluster-scoped: an instance may only hold objects in its namespace"));
        }
        let known: Vec<String> = Kind::ALL.iter().map(|k| format!("{} {}", k.api_version(), k.name())).collect();
        return Err(format!(
            "kind {kind_name:?} of apiVersion {api_version:?} is not one esm deploys ({})",
            known.join(", ")
        ));
    };
    let metadata = map.get("metadata").and_then(Value::as_object).ok_or("metadata is missing")?;
    let name = metadata.get("name").and_then(Value::as_str).ok_or("metadata.name is missing")?.to_owned();
    let valid = if kind == Kind::Service { super::is_dns_label(&name) } else { is_dns_subdomain(&name) };
    if !valid {
        return Err(format!("{} name {name:?} is not a valid Kubernetes name", kind.name()));
    }
    let object = Object { kind, name, body: document.clone() };
    if metadata.contains_key("namespace") {
        return Err(format!(
            "{}: metadata.namespace is set; esm places every object in the instance's namespace",
            object.key()
        ));
    }
    policy::check_reserved(&object).map_err(|e| format!("{}: {e}", object.key()))?;
    kind.check_schema(&object.body).map_err(|e| format!("{}: {e}", object.key()))?;
    Ok(object)
}

/// Whether `name` is a DNS subdomain (RFC 1123), as most object names must be.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(super::is_dns_label)
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
