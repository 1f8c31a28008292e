//! The Kubernetes backend: a manifest deployed on an existing cluster, one namespace
//! per instance.
//!
//! Two kinds of manifest end up as one list of namespaced objects ([`Objects`]):
//! Kubernetes YAML (`manifest_type: kubernetes` or `k8s`), checked at registration
//! ([`objects`]), and docker-compose manifests translated service by service
//! ([`translate`]) when `ESM_COMPOSE_TARGET=kubernetes`. From there one path deploys
//! them (`deploy`): the instance's namespace, every object created or replaced with
//! esm's labels and the instance parameters as environment variables, what an earlier
//! deployment made and this one does not pruned, then a wait (on the API's watch) until
//! every Deployment and StatefulSet has its replicas available and every Service has
//! its address. The Docker backends' template orders containers because an engine
//! starts what it is told; a cluster converges on what it is given, so this path hands
//! it everything at once and waits for the whole.
//!
//! Everything is found again by label and namespace, never by guessing: the namespace
//! carries esm's owner label and the instance id (verbatim, in an annotation, since an
//! OSB instance id need not be a valid label value), and esm never touches a namespace
//! that is not marked as its own instance's.
//!
//! Layout:
//! - `objects`: the object kinds esm deploys, and Kubernetes manifests parsed and checked.
//! - `policy`: what an object may do to its node, to scheduling and past its namespace,
//!   under the operator's settings.
//! - `translate`: compose manifests as Deployments, Services and PersistentVolumeClaims.
//! - `cluster`: the API calls (kube-rs).
//! - `reachability`: whether the API server answers, logged as it changes.
//! - `deploy`: create-or-replace, prune, wait ready, remove.
//! - `readiness`: what the objects' status says, as pure functions.
//! - `report`: instance details and binding credentials from Services.
//! - `backend`: the [`Backend`](crate::backend::Backend).

mod backend;
mod cluster;
mod deploy;
pub mod objects;
pub mod policy;
mod reachability;
mod readiness;
mod report;
pub mod translate;

use std::time::Duration;

use sha2::{Digest, Sha256};

pub use self::backend::KubernetesBackend;
pub use self::objects::{Kind, Object, Objects};
pub use self::policy::KubernetesPolicy;
pub use self::reachability::quiet_client_failures;
pub use crate::manifest::{Exposure, Quantity};

/// The API permissions the backend uses, as RBAC rules: (API group, resources, verbs).
/// `deploy/kubernetes/rbac.yaml` grants exactly these (`tests/broker/deploy_manifests.rs`).
pub const PERMISSIONS: &[(&str, &[&str], &[&str])] = &[
    ("", &["namespaces"], &["get", "list", "watch", "create", "delete"]),
    ("", &["configmaps", "secrets"], &["get", "list", "create", "update", "delete"]),
    // Claims (and Jobs) are created, never replaced: their specs are immutable.
    ("", &["persistentvolumeclaims"], &["list", "create", "delete"]),
    ("", &["services"], &["get", "list", "watch", "create", "update", "delete"]),
    // Why a rollout fails, and liveness.
    ("", &["pods"], &["list", "watch"]),
    // A node's address for node ports, when ESM_ADVERTISE_HOST does not say.
    ("", &["nodes"], &["list"]),
    ("apps", &["deployments", "statefulsets"], &["get", "list", "watch", "create", "update", "delete"]),
    ("batch", &["jobs"], &["list", "create", "delete"]),
];

/// Settings of the Kubernetes backend.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    /// What manifests may do to the nodes, to scheduling and to other namespaces.
    pub policy: KubernetesPolicy,
    /// How Services are exposed.
    pub exposure: Exposure,
    /// The address node ports are reached on; `None`: a node's own address.
    pub node_address: Option<String>,
    /// How long a deployment may take to be ready, and a namespace to go.
    pub ready_timeout: Duration,
    /// This esm deployment's name (`ESM_NAME`), the `esm.owner` label.
    pub owner: String,
    /// Whether docker-compose manifests are deployed here (`ESM_COMPOSE_TARGET`).
    pub compose: bool,
}

/// The longest DNS label (a namespace or Service name).
const DNS_LABEL_MAX: usize = 63;

/// A DNS label (RFC 1123: lowercase letters, digits and `-`, starting and ending with
/// a letter or digit, at most 63 characters) made from `text`: itself when it already
/// is one, else its safe characters and a hash of the whole, so texts that differ only
/// in unsafe characters stay apart.
pub fn dns_label(text: &str) -> String {
    if is_dns_label(text) {
        return text.to_owned();
    }
    let digest = Sha256::digest(text.as_bytes());
    let tag: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let safe: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(DNS_LABEL_MAX - tag.len() - 1)
        .collect();
    let safe = safe.trim_matches('-');
    if safe.is_empty() { format!("x{tag}") } else { format!("{safe}-{tag}") }
}

/// Whether `text` is a DNS label (RFC 1123).
pub fn is_dns_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= DNS_LABEL_MAX
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The namespace of an instance of the esm deployment `owner`.
pub fn namespace(owner: &str, instance_id: &str) -> String {
    dns_label(&format!("{owner}-{instance_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_dns_labels_and_distinct() {
        assert_eq!(namespace("esm", "abc-123"), "esm-abc-123");
        for id in ["Weird/ID", "weird-id", "-", "", "ÅÄÖ", "a_b", &"x".repeat(300), "UPPER"] {
            let ns = namespace("esm", id);
            assert!(is_dns_label(&ns), "{id:?} -> {ns:?}");
        }
        assert_ne!(namespace("esm", "Weird/ID"), namespace("esm", "weird-id"));
        assert_ne!(namespace("esm", "a_b"), namespace("esm", "a-b"));
        assert_ne!(namespace("esm", &"x".repeat(300)), namespace("esm", &"x".repeat(301)));
        assert_ne!(namespace("one", "i"), namespace("two", "i"));
    }

    #[test]
    fn a_label_of_nothing_safe_is_still_a_label() {
        assert!(is_dns_label(&dns_label("///")));
        assert!(dns_label("///").starts_with('x'));
    }
}
