//! The Docker backends: a compose manifest deployed on a Docker engine, as containers
//! ([`ComposeBackend`]) or as swarm services ([`SwarmBackend`]).
//!
//! Per instance esm makes a project named from `ESM_NAME` and the instance id
//! ([`project`], `<ESM_NAME>-<id>`): a network `<project>_default` (plus the
//! manifest's own networks), its named volumes `<project>_<volume>`, and one container
//! or service `<project>_<service>` per manifest service, started in `depends_on`
//! order. Everything carries the labels of [`labels`] (`esm.owner` is `ESM_NAME`), and
//! everything is found again by those labels and removed by the engine's id, never by
//! name, so esm deployments sharing an engine never touch each other's. Each call is
//! idempotent: provisioning starts by removing what an interrupted earlier attempt
//! left, so esm can re-run it after a crash; a failed provision removes what it made
//! (orphan mitigation).
//!
//! Layout:
//! - [`crate::manifest`] (not here: shared with Kubernetes): the manifest, parsed and
//!   checked at registration.
//! - `spec`: what the engine is asked to make, as pure functions of the manifest.
//! - `deploy`: the one deployment sequence, over a `Runtime` trait.
//! - `backend`: the one `Backend` of both, and their one runtime type (`Units<U>`, the
//!   units containers or services), over `DockerRuntime`.
//! - `compose` and `swarm`: the two kinds of unit (containers, swarm services), each a
//!   `Runtime` and `DockerRuntime` of `Units`: everything that differs between the
//!   backends.
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
mod report;
mod spec;
mod swarm;

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use self::backend::DockerBackend;
pub use self::compose::ComposeBackend;
pub use self::engine::{Engine as DockerEngine, TlsClient};
pub use self::swarm::SwarmBackend;
#[cfg(doc)]
use super::labels;
use crate::manifest::Policy;
pub use crate::manifest::PullPolicy;

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

/// The longest project name: a swarm service is named `<project>_<service>`, and swarm
/// takes at most 63 characters, so most of that is left to the manifest's service name.
const PROJECT_MAX: usize = 48;

/// The project name of an instance of the esm deployment `owner` (`ESM_NAME`): the
/// prefix of the engine name of everything esm makes for it, so two deployments on one
/// engine never ask for the same name. The one mapping from an instance id to engine
/// names.
///
/// `<owner>-<instance id>` when that is short and plain: the owner lowercase letters,
/// digits and `_` (no `-`, so where it ends is never in doubt), the id lowercase
/// letters, digits, `-` and `_`. Otherwise their safe characters, shortened, and a hash
/// of the pair, so pairs that differ only in unsafe characters, in case, or in where
/// the owner ends stay apart. Instance ids may hold any printable character, spaces
/// included (`domain::bounded`); whatever they hold, the result is a valid container,
/// network, volume and swarm service name prefix (starts with a letter or digit; only
/// `[a-z0-9_-]`).
///
/// The default `ESM_NAME` (`esm`) gives the names esm gave before names carried the
/// deployment (`esm-<id>`). Objects an earlier esm made under other names are still
/// its: they carry its `esm.owner` and `esm.instance_id` labels, and esm finds and
/// removes what it made by those labels and the engine's ids, never by name.
pub fn project(owner: &str, instance_id: &str) -> String {
    let plain_owner = owner.starts_with(|c: char| c.is_ascii_alphanumeric())
        && owner.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let plain_id = instance_id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if plain_owner && plain_id && owner.len() + 1 + instance_id.len() <= PROJECT_MAX {
        return format!("{owner}-{instance_id}");
    }
    let safe = |text: &str, most: usize| -> String {
        text.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
            .take(most)
            .collect()
    };
    // Length-prefixed: ("a-b", "c") and ("a", "b-c") hash apart.
    let digest = Sha256::digest(format!("{}:{owner}{instance_id}", owner.len()).as_bytes());
    let tag: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut head = safe(owner, 16);
    if !head.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        head.insert(0, 'x');
    }
    let id = safe(instance_id, PROJECT_MAX - head.len() - tag.len() - 2);
    format!("{head}-{id}-{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_safe_and_distinct() {
        assert_eq!(project("esm", "abc-123"), "esm-abc-123", "the default ESM_NAME keeps the names it always gave");
        assert_eq!(project("prod", "abc-123"), "prod-abc-123");
        let a = project("esm", "Weird/ID");
        let b = project("esm", "weird-id");
        assert!(a.starts_with("esm-weird-id-"), "{a}");
        assert_ne!(a, b);
        // Where the owner ends is never in doubt.
        assert_ne!(project("esm-a", "b"), project("esm", "a-b"));
        assert_ne!(project("one", "i"), project("two", "i"));
        assert_ne!(project("One", "i"), project("one", "i"));
        let container = regex::Regex::new("^[a-z0-9][a-z0-9_-]*$").expect("regex");
        let long = "x".repeat(300);
        for (owner, id) in [
            ("esm", "Instance/With Odd Chars"),
            ("esm-docker-AbC123", "web-1"),
            ("_", "a"),
            ("esm", ""),
            ("esm", "ÅÄÖ ✓"),
            (long.as_str(), long.as_str()),
            ("esm.prod", "x y"),
        ] {
            let name = project(owner, id);
            assert!(container.is_match(&name) && name.len() <= PROJECT_MAX, "{owner:?} {id:?} -> {name:?}");
        }
        assert_ne!(project("esm", &"x".repeat(300)), project("esm", &"x".repeat(301)));
    }
}
