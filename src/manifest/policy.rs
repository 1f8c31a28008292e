//! What the operator allows manifests to do: the boundary between the platform's
//! users and the Docker host.

use crate::yaml;

/// What the operator allows manifests to do to the host, and how large they may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Bind mounts of host paths (`/host/path:/in/container`), and external volumes
    /// whose driver options bind a host path.
    pub allow_bind_mounts: bool,
    /// `privileged`, `cap_add`, `pid: host`, `network_mode: host`, `devices`.
    pub allow_privileged: bool,
    /// `external: true` networks and volumes: resources esm did not make. Even then,
    /// never those of an esm instance (checked at deployment, by label).
    pub allow_external: bool,
    /// Host ports a manifest may name (`"30001:80"`), inclusive; `None`: none, Docker
    /// picks an ephemeral port for every published one.
    pub host_ports: Option<(u16, u16)>,
    /// Services one manifest may declare.
    pub max_services: usize,
    /// What reading the YAML may cost.
    pub limits: yaml::Limits,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            allow_bind_mounts: false,
            allow_privileged: false,
            allow_external: false,
            host_ports: None,
            max_services: 100,
            limits: yaml::Limits::default(),
        }
    }
}
