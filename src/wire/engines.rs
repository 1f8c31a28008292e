//! The shapes of `/v2/et/engines`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::net::IpAddr;

use crate::domain::engine::{Capacity, Endpoint, EngineKind, EngineState, Health, Labels, Schedule, Source};

/// An engine as the API shows it: what was declared, its state, and what esm knows of
/// it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EngineView {
    /// Its name (`default`: the engine of the single-engine settings).
    pub name: String,
    /// The backend that drives it.
    pub backend: EngineKind,
    /// Its labels.
    pub labels: Labels,
    /// How much it takes.
    pub capacity: Capacity,
    /// How esm reaches it.
    pub endpoint: Endpoint,
    /// The host address a Docker engine publishes container ports on.
    #[schema(value_type = Option<String>)]
    pub publish_address: Option<IpAddr>,
    /// The host name bindings hand out for its published ports.
    pub advertise_host: Option<String>,
    /// `active`, `cordoned`, `draining`, `unreachable` or `needs_repair`.
    pub state: EngineState,
    /// The operator's word: `active`, `cordoned` or `draining`.
    pub schedule: Schedule,
    /// The probes' word: `reachable`, `unreachable` or `needs_repair`.
    pub health: Health,
    /// The manifest types it deploys.
    pub manifest_types: Vec<String>,
    /// Instances and warm pool members placed on it.
    pub instances: u64,
    /// Why it did not answer, last time.
    pub problem: Option<String>,
    /// What the last good probe learned (engine version, swarm, nodes, cluster version).
    pub facts: Option<String>,
    /// When this replica last probed it (RFC 3339).
    pub last_probe: Option<String>,
    /// Since when it has not answered (RFC 3339).
    pub unreachable_since: Option<String>,
    /// Where it was declared: `settings`, `file` or `api`.
    pub source: Source,
    /// The CPU and memory its deployments' declared limits take, for what its
    /// capacity counts (in its units: tenths of a CPU, 256 MiB).
    pub used: Option<Used>,
    /// While it drains: how far moving its relocatable instances away is.
    pub evacuation: Option<Evacuation>,
}

/// The CPU and memory taken on an engine.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Used {
    /// CPUs.
    pub cpus: Option<f64>,
    /// Memory, in bytes.
    pub memory: Option<u64>,
}

/// How far a draining engine's evacuation is, by instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Evacuation {
    /// Relocatable instances still to be moved.
    pub to_move: u64,
    /// Instances being deployed elsewhere now.
    pub moving: u64,
    /// Instances deployed elsewhere whose old deployment here is being removed.
    pub leaving: u64,
    /// Instances whose plan is not relocatable: they stay until deprovisioned.
    pub staying: u64,
    /// Whether every instance on the engine was counted (at most 1000 are).
    pub counted_all: bool,
    /// Why the last move off it found no engine to go to (as this replica saw it):
    /// what to fix (capacity, labels, a cordon) for the evacuation to go on.
    pub blocked: Option<String>,
}

/// `GET /v2/et/engines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EngineList {
    /// Every engine, `default` first, then by name.
    pub engines: Vec<EngineView>,
}
