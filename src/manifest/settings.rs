//! The plain values the operator sets for deploying manifests, read by
//! [`crate::config`] and taken by the backends: kept here, with the manifest language,
//! so the settings depend on no backend.

/// When images are pulled (the Docker backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Only images the engine does not have.
    Missing,
    /// Never: a missing image fails the operation.
    Never,
    /// Before every deployment.
    Always,
}

/// How the addresses of an instance's Services are handed out, and the type of the
/// Services esm makes from compose manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Exposure {
    /// The Service's cluster IP: reachable from inside the cluster only.
    ClusterIp,
    /// A node port on a node's address (`ESM_ADVERTISE_HOST`, else a node's own).
    NodePort,
    /// The load balancer's ingress address, once the cluster has assigned one.
    LoadBalancer,
}

impl Exposure {
    /// The Service `spec.type` it stands for.
    pub fn service_type(self) -> &'static str {
        match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// `ESM_K8S_MAX_REPLICAS`'s default, as the Docker backends cap swarm replicas.
pub const DEFAULT_MAX_REPLICAS: u64 = 100;
/// `ESM_K8S_MAX_CPU`'s default.
pub const DEFAULT_MAX_CPU: &str = "8";
/// `ESM_K8S_MAX_MEMORY`'s default.
pub const DEFAULT_MAX_MEMORY: &str = "32Gi";
/// `ESM_K8S_MAX_EPHEMERAL_STORAGE`'s default.
pub const DEFAULT_MAX_EPHEMERAL_STORAGE: &str = "100Gi";
/// `ESM_K8S_MAX_STORAGE`'s default.
pub const DEFAULT_MAX_STORAGE: &str = "100Gi";
