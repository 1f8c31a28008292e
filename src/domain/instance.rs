//! Service instances as esm records them.

use crate::domain::time::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::catalog::MaintenanceInfo;
use super::liveness::{Liveness, LivenessStatus};
use super::operation::OperationLog;
use super::pool::Membership;

/// The label naming the backend that deploys an instance.
pub const BACKEND_LABEL: &str = "esm/backend";

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// The provision operation is running.
    Provisioning,
    /// Provisioned; it may be updating or deprovisioning (see its operations).
    Provisioned,
    /// The provision failed; only a deprovision makes sense now.
    ProvisionFailed,
    /// Deprovisioned. Kept as a tombstone so `last_operation` can answer 410 Gone.
    Deprovisioned,
}

/// OSB 2.16/2.17 instance metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceMetadata {
    /// Labels the broker attaches to the instance.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub labels: Map<String, Value>,
    /// Attributes the broker reports on fetch (2.17).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
}

impl InstanceMetadata {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.attributes.is_empty()
    }
}

/// An update waiting for its operation to succeed; absent fields stay as they are.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The new plan.
    pub plan_id: Option<String>,
    /// The new parameters (replacing the old ones).
    pub parameters: Option<Value>,
    /// The new platform context.
    pub context: Option<Value>,
    /// The maintenance version to move to.
    pub maintenance_info: Option<MaintenanceInfo>,
}

/// A service instance.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInstance {
    /// The platform's instance id.
    pub id: String,
    /// The offering.
    pub service_id: String,
    /// The current plan (changes only when an update succeeds).
    pub plan_id: String,
    /// The platform's organization (deprecated in OSB, still required).
    pub organization_guid: String,
    /// The platform's space (deprecated in OSB, still required).
    pub space_guid: String,
    /// The platform's context object.
    pub context: Option<Value>,
    /// The configuration parameters.
    pub parameters: Option<Value>,
    /// The maintenance version the instance runs.
    pub maintenance_info: Option<MaintenanceInfo>,
    /// Labels and attributes.
    #[serde(default)]
    pub metadata: InstanceMetadata,
    /// A dashboard, if the backend offers one.
    pub dashboard_url: Option<String>,
    /// The manifest that deploys the current plan.
    pub manifest_id: String,
    /// Its `manifest_type`, so the backend that deployed the instance is known even
    /// without the manifest (absent in records of esm 0.1).
    pub manifest_type: Option<String>,
    /// Where the instance is in its life.
    pub status: InstanceStatus,
    /// What the backend recorded about the deployment (e.g. container ids), so that a
    /// later update, deprovision or restart finds what was created.
    #[serde(default)]
    pub deployment: Map<String, Value>,
    /// Its operations, newest last.
    #[serde(default)]
    pub operations: OperationLog,
    /// When it was first requested (RFC 3339).
    pub created_at: Timestamp,
    /// Whether it is alive (absent until it is first watched: `unknown`).
    pub liveness: Option<Liveness>,
    /// The id its deployment was made under, when not its own: the pool member it was
    /// handed (the engine's resources carry that id for good).
    pub deployment_id: Option<String>,
    /// Set on a warm pool's member (`domain::pool`): not a platform's instance.
    pub pool: Option<Membership>,
    /// The host ports esm leased it from `ESM_HOST_PORT_RANGE`, by what they publish
    /// (`web/8080/tcp`); kept across updates and restarts.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub host_ports: std::collections::BTreeMap<String, u16>,
    /// The events of its changes not yet numbered in the log (`domain::outbox`).
    #[serde(default, skip_serializing_if = "super::outbox::Outbox::is_unused")]
    pub outbox: super::outbox::Outbox,
    /// The engine it was placed on (`domain::engine`); absent: the default engine.
    pub engine: Option<String>,
    /// The deployment it was moved away from, while that one is being retired
    /// (`broker::engines::evacuate`): present from the move's write until its bindings
    /// point at the new deployment and the old one is removed.
    pub retiring: Option<Retiring>,
}

/// A deployment an instance has moved away from and that is still to be removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retiring {
    /// Its engine (absent: the default engine).
    pub engine: Option<String>,
    /// The id it was made under.
    pub deployed_id: String,
    /// What its backend recorded about it.
    #[serde(default)]
    pub deployment: Map<String, Value>,
    /// The host ports leased for it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub host_ports: std::collections::BTreeMap<String, u16>,
    /// When the instance moved.
    pub since: Timestamp,
}

impl Retiring {
    /// Its engine's name.
    pub fn engine(&self) -> &str {
        super::engine::engine_of(self.engine.as_deref())
    }

    /// The instance as the retiring deployment's backend knows it: what removing it
    /// is given.
    pub fn deployed(&self, instance: &ServiceInstance) -> ServiceInstance {
        ServiceInstance {
            id: self.deployed_id.clone(),
            engine: self.engine.clone(),
            deployment: self.deployment.clone(),
            host_ports: self.host_ports.clone(),
            deployment_id: None,
            retiring: None,
            ..instance.clone()
        }
    }
}

impl ServiceInstance {
    /// The engine it was placed on.
    pub fn engine(&self) -> &str {
        super::engine::engine_of(self.engine.as_deref())
    }

    /// Whether the record holds a deployment (not deprovisioned).
    pub fn is_live(&self) -> bool {
        self.status != InstanceStatus::Deprovisioned
    }

    /// Whether it is a platform's instance that exists (not deprovisioned, not a pool
    /// member).
    pub fn is_platform_instance(&self) -> bool {
        self.is_live() && self.pool.is_none()
    }

    /// Its leased host ports with their protocols (the last part of their key).
    pub fn published_ports(&self) -> impl Iterator<Item = (u16, &str)> {
        self.host_ports.iter().map(|(key, port)| (*port, key.rsplit('/').next().unwrap_or("tcp")))
    }

    /// The id its deployment is known by to the backend.
    pub fn deployed_id(&self) -> &str {
        self.deployment_id.as_deref().unwrap_or(&self.id)
    }

    /// The instance as its backend knows it: under the id it was deployed with. Every
    /// backend call goes through this, so a claimed pool member is found where it runs.
    pub fn deployed(&self) -> std::borrow::Cow<'_, ServiceInstance> {
        match &self.deployment_id {
            Some(deployed) if *deployed != self.id => {
                std::borrow::Cow::Owned(ServiceInstance { id: deployed.clone(), ..self.clone() })
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    /// Its liveness verdict (`unknown` until it is first watched).
    pub fn liveness_status(&self) -> LivenessStatus {
        self.liveness.as_ref().map_or(LivenessStatus::Unknown, |l| l.status)
    }

    /// The name of the backend that deploys it (the `esm/backend` label), if known.
    pub fn backend(&self) -> Option<&str> {
        self.metadata.labels.get(BACKEND_LABEL).and_then(serde_json::Value::as_str)
    }
}
