//! The Docker backends: a compose manifest deployed on a Docker engine, as containers
//! ([`ComposeBackend`]) or as swarm services ([`SwarmBackend`]).
//!
//! Per instance esm makes a project named from the instance id (`esm-<id>`): a network
//! `<project>_default` (plus the manifest's own networks), its named volumes
//! `<project>_<volume>`, and one container or service `<project>_<service>` per manifest
//! service, started in `depends_on` order. Everything carries the labels of
//! [`labels`], and everything is found again by label, never by name. Each call is
//! idempotent: provisioning starts by removing what an interrupted earlier attempt
//! left, so esm can re-run it after a crash; a failed provision removes what it made
//! (orphan mitigation).
//!
//! Layout:
//! - `model`: the manifest, parsed and checked at registration.
//! - `spec`: what the engine is asked to make, as pure functions of the manifest.
//! - `deploy`: the one deployment sequence, over a `Runtime` trait.
//! - `backend`: the one `Backend` of both, over a `DockerRuntime`.
//! - `compose` and `swarm`: the two runtimes (containers, swarm services): everything
//!   that differs between the backends.
//! - `engine`: the connection, and the engine calls both backends make.
//! - `events`: the engine's container events about esm's instances (liveness's
//!   changes, and what wakes a deployment waiting for its units).
//! - `liveness`: containers and swarm tasks as liveness components.
//! - `report`: instance details and binding credentials, from what runs.

mod backend;
mod compose;
mod deploy;
mod engine;
mod events;
mod liveness;
pub mod model;
mod report;
mod spec;
mod swarm;

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use self::backend::DockerBackend;
pub use self::compose::ComposeBackend;
pub use self::engine::PullPolicy;
use self::model::Policy;
pub use self::swarm::SwarmBackend;
#[cfg(doc)]
use super::labels;

/// Settings of the Docker backends.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// The host address ports are published on.
    pub publish_address: IpAddr,
    /// The host name bindings hand out for published ports.
    pub advertise_host: String,
    /// When images are pulled.
    pub pull: PullPolicy,
    /// What manifests may do to the host.
    pub policy: Policy,
    /// How long a deployment may take to be running (and healthy).
    pub ready_timeout: Duration,
    /// This esm deployment's name (`ESM_NAME`), the `esm.owner` label of what it makes.
    pub owner: String,
}

/// The project name of an instance: `esm-` and the id made safe for engine names; a
/// hash of the id keeps ids that differ only in unsafe characters apart.
pub fn project(instance_id: &str) -> String {
    let safe: String = instance_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    if safe == instance_id && instance_id.len() <= 40 {
        format!("esm-{safe}")
    } else {
        let digest = Sha256::digest(instance_id.as_bytes());
        let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("esm-{safe}-{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_safe_and_distinct() {
        assert_eq!(project("abc-123"), "esm-abc-123");
        let a = project("Weird/ID");
        let b = project("weird-id");
        assert!(a.starts_with("esm-weird-id-"), "{a}");
        assert_ne!(a, b);
        assert!(project(&"x".repeat(200)).len() < 60);
    }
}
