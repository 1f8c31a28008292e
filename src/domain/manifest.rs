//! Manifests: the deployment description (docker-compose, ...) registered for a plan.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::strict;

/// A registered manifest. The ElasTest platform reads `endpoints` and `config`, so both
/// are kept and returned exactly as registered.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    /// The manifest id. On `PUT /v2/et/manifest/{id}` the path wins over the body.
    #[serde(default)]
    pub id: String,
    /// The service the plan belongs to.
    #[schema(min_length = 1)]
    pub service_id: String,
    /// The plan this manifest deploys; a plan has at most one manifest.
    #[schema(min_length = 1)]
    pub plan_id: String,
    /// Which backend deploys it (`dummy`, `docker-compose` or `docker`, `docker-swarm`, `kubernetes` or `k8s`).
    #[schema(min_length = 1)]
    pub manifest_type: String,
    /// The deployment description itself (e.g. a docker-compose YAML document).
    #[schema(min_length = 1)]
    pub manifest_content: String,
    /// ElasTest: sub-service endpoints (`{name: {main, port}}`), read by the platform.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub endpoints: Option<Value>,
    /// ElasTest: free-form configuration, read by the platform.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

impl Manifest {
    /// A digest of the whole manifest (id included): registering a manifest again is
    /// recognised as a repeat by it.
    pub fn digest(&self) -> String {
        // serde_json writes struct fields in declaration order and object keys sorted,
        // so equal manifests always give equal bytes.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks the fields every manifest needs, whatever its type.
    pub fn validate_fields(&self) -> Result<(), String> {
        for (field, value) in [
            ("id", &self.id),
            ("service_id", &self.service_id),
            ("plan_id", &self.plan_id),
            ("manifest_type", &self.manifest_type),
            ("manifest_content", &self.manifest_content),
        ] {
            if value.is_empty() {
                return Err(format!("{field} must be a non-empty string"));
            }
        }
        for (field, value) in [("endpoints", &self.endpoints), ("config", &self.config)] {
            if value.as_ref().is_some_and(|v| !v.is_object()) {
                return Err(format!("{field} must be a JSON object"));
            }
        }
        Ok(())
    }
}
