//! The shapes of `/v2/et/inventory` and `/v2/et/service_instances/{id}/resources`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::bounded::{Cursor, Name, OpaqueId};
use crate::domain::resource::Resource;

/// `?owner=&type=&state=&backend=&name=&limit=&after=` on the inventory.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// esm's own listing: an unknown parameter is a mistake worth a 400.
#[serde(deny_unknown_fields)]
pub struct InventoryQuery {
    /// Only what this instance or pool member id holds (an instance handed a pool
    /// member holds the member's: ask `/v2/et/service_instances/{id}/resources`).
    pub owner: Option<OpaqueId>,
    /// Only this type (`container`, `service`, `network`, `volume`, `port`,
    /// `deployment`).
    #[serde(default, rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<Name>,
    /// Only this state (`creating`, `in_use`, `releasing`, `orphaned`, `gone`).
    pub state: Option<Name>,
    /// Only what this backend holds.
    pub backend: Option<Name>,
    /// Only the resource with this engine name (a host port: `30000/tcp`).
    pub name: Option<Name>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<Cursor>,
}

/// A page of the inventory.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InventoryPage {
    /// The resources, in id order.
    pub resources: Vec<Resource>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// What one instance holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InstanceResources {
    /// The instance.
    pub instance_id: String,
    /// Its resources, in id order.
    pub resources: Vec<Resource>,
}
