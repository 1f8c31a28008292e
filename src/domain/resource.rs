//! The inventory: every resource an instance or pool member holds (containers, swarm
//! services, networks, volumes, published host ports), one [`Resource`] record each,
//! with its owner and state.
//!
//! A backend says what it holds ([`Holding`]); esm records it as the deploy path goes
//! and reconciliation compares the two. A host port's record id is the port itself, so
//! the store's insert is also its allocation from `ESM_HOST_PORT_RANGE`.

use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The `type` of a published host port.
pub const PORT: &str = "port";
/// The `type` of room taken on an engine with a capacity (`broker/engines/`): esm's
/// own record, which no backend holds.
pub const SLOT: &str = "slot";

/// Where a resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// Taken for a deployment that is being made (a leased port before its container
    /// exists, or what an engine holds for a provision still running).
    Creating,
    /// Held by a deployment esm knows.
    InUse,
    /// Its deployment is being removed.
    Releasing,
    /// Held by the engine for an instance esm does not know; reconciliation removes it.
    Orphaned,
    /// Recorded as held, but the engine no longer has it (removed behind esm's back).
    Gone,
}

impl ResourceState {
    /// Every state.
    pub const ALL: [ResourceState; 5] = [Self::Creating, Self::InUse, Self::Releasing, Self::Orphaned, Self::Gone];

    /// As the API spells it (`in_use`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::InUse => "in_use",
            Self::Releasing => "releasing",
            Self::Orphaned => "orphaned",
            Self::Gone => "gone",
        }
    }

    /// The state `text` names; `in use` is read as `in_use`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.replace(' ', "_");
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A host port a resource publishes on.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostPort {
    /// The host address it listens on, once the engine said (`0.0.0.0`, `127.0.0.1`).
    pub address: Option<String>,
    /// The port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Something a backend holds for a deployment, as its engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// `container`, `service`, `network`, `volume`, `port`, or the backend's own kind.
    pub kind: String,
    /// The engine's name for it (a port: `30000/tcp`).
    pub name: String,
    /// The id the deployment was made under (its `esm.instance_id` label).
    pub owner: String,
    /// For a port: where it is published.
    pub port: Option<HostPort>,
    /// A volume marked to outlive its instance (`x-esm-keep`): not an orphan once the
    /// instance is gone.
    pub kept: bool,
}

impl Holding {
    /// A resource `owner` holds.
    pub fn new(kind: &str, name: impl Into<String>, owner: impl Into<String>) -> Self {
        Self { kind: kind.to_owned(), name: name.into(), owner: owner.into(), port: None, kept: false }
    }

    /// Host port `port` that `owner` publishes on `address`.
    pub fn port(address: Option<String>, port: u16, protocol: &str, owner: impl Into<String>) -> Self {
        let published = HostPort { address, port, protocol: protocol.to_owned() };
        Self { port: Some(published), ..Self::new(PORT, format!("{port}/{protocol}"), owner) }
    }

    /// The id of its record when backend `backend` holds it.
    pub fn id(&self, backend: &str) -> String {
        match &self.port {
            Some(port) => Resource::port_id(&port.protocol, port.port),
            None => format!("{backend}/{}/{}", self.kind, self.name),
        }
    }
}

/// One resource in the inventory.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resource {
    /// `<backend>/<type>/<name>`; a host port's is `port/<protocol>/<port>`, so a port
    /// has one record whichever backend holds it.
    pub id: String,
    /// `container`, `service`, `network`, `volume`, `port`, `deployment` (the dummy's).
    #[serde(rename = "type")]
    pub kind: String,
    /// The engine's name for it (a port: `30000/tcp`).
    pub name: String,
    /// The instance or pool member id the deployment was made under. An instance handed
    /// a pool member holds the member's resources: their owner stays the member's id.
    pub owner: String,
    /// The backend holding it.
    pub backend: String,
    /// Where it is in its life.
    pub state: ResourceState,
    /// When esm first recorded it (RFC 3339).
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// When its state last changed (RFC 3339).
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
    /// For a host port: its address, port and protocol.
    pub port: Option<HostPort>,
}

impl Resource {
    /// The record id of host port `port`/`protocol`: zero-padded, so ids sort as ports do.
    pub fn port_id(protocol: &str, port: u16) -> String {
        format!("{PORT}/{protocol}/{port:05}")
    }

    /// The record of `holding`, held by `backend`, in `state` since `now`.
    pub fn of(holding: &Holding, backend: &str, state: ResourceState, now: Timestamp) -> Self {
        Self {
            id: holding.id(backend),
            kind: holding.kind.clone(),
            name: holding.name.clone(),
            owner: holding.owner.clone(),
            backend: backend.to_owned(),
            state,
            created_at: now,
            updated_at: now,
            port: holding.port.clone(),
        }
    }

    /// Whether it is a host port.
    pub fn is_port(&self) -> bool {
        self.kind == PORT
    }

    /// Whether it is room on an engine: kept whatever the engine shows, released with
    /// its deployment.
    pub fn is_slot(&self) -> bool {
        self.kind == SLOT
    }

    /// Moves it to `state` at `now`; whether that changed anything.
    pub fn set_state(&mut self, state: ResourceState, now: Timestamp) -> bool {
        if self.state == state {
            return false;
        }
        self.state = state;
        self.updated_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_has_one_id_whichever_backend_holds_it_and_ids_sort_as_ports() {
        let port = Holding::port(Some("0.0.0.0".into()), 30000, "tcp", "i-1");
        assert_eq!(port.id("docker-compose"), port.id("docker-swarm"));
        assert_eq!(port.id("dummy"), "port/tcp/30000");
        assert_eq!(port.name, "30000/tcp");
        assert!(Resource::port_id("tcp", 9999) < Resource::port_id("tcp", 10000));
        assert_eq!(Holding::new("container", "web-1", "i-1").id("docker-compose"), "docker-compose/container/web-1");
    }

    #[test]
    fn states_read_as_written_and_in_use_with_a_space() {
        for state in ResourceState::ALL {
            assert_eq!(ResourceState::parse(state.as_str()), Some(state));
            assert_eq!(serde_json::to_value(state).expect("serialises"), state.as_str());
        }
        assert_eq!(ResourceState::parse("in use"), Some(ResourceState::InUse));
        assert_eq!(ResourceState::parse("busy"), None);
    }

    #[test]
    fn a_state_change_moves_the_timestamp_and_no_change_does_not() {
        let mut r = Resource::of(
            &Holding::new("volume", "v", "i"),
            "docker-compose",
            ResourceState::Creating,
            Timestamp::from_millis(0),
        );
        assert!(r.set_state(ResourceState::InUse, Timestamp::from_millis(1)));
        assert!(!r.set_state(ResourceState::InUse, Timestamp::from_millis(2)));
        assert_eq!((r.created_at.millis(), r.updated_at.millis()), (0, 1));
    }
}
