//! The bodies of `PUT /v2/et/catalog` and `PUT /v2/et/manifest/{id}`: the catalog's
//! records as a client sends them, every id, name, description and tag a bounded type
//! and every free-form object bounded in bytes.
//!
//! They are converted into the stored records ([`Service`], [`Manifest`]) as they
//! enter. The stored records keep plain `String`s on purpose: a store written before
//! these bounds may hold an oversized id, and the one registry record holding every
//! service must still decode (a refusal there would take the whole catalog down, not
//! the one offending service). So the bound is enforced where text comes in, and what
//! is already stored is read as it is.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::bounded::{Description, Label, ManifestId, Name, PlanId, ServiceId, Version};
use crate::domain::catalog::{MaintenanceInfo, Plan, Schemas, Service};
use crate::domain::manifest::Manifest;
use crate::domain::strict;

/// The most bytes of JSON a service's or plan's `metadata` may hold (display names,
/// image URLs: an image inlined as a `data:` URL fits).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// The most bytes of JSON a service's `dashboard_client` (`id`, `secret`,
/// `redirect_uri`) may hold.
pub const MAX_DASHBOARD_CLIENT_BYTES: usize = 4 * 1024;

/// Body of `PUT /v2/et/catalog`: a service offering.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServiceRegistration {
    /// Globally unique, stable id (the only identity the platform uses).
    pub id: ServiceId,
    /// CLI-friendly name, unique across offerings.
    pub name: Name,
    /// What the service is.
    pub description: Description,
    /// Whether instances can be bound (plans may override).
    #[serde(default)]
    pub bindable: bool,
    /// At least one plan (at most `ESM_CATALOG_MAX_PLANS`).
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "strict::objects")]
    pub plans: Vec<PlanRegistration>,
    /// ElasTest: the short name the ElasTest platform shows.
    pub short_name: Option<Name>,
    /// Free-form tags (at most `ESM_CATALOG_MAX_TAGS`).
    pub tags: Option<Vec<Label>>,
    /// Subset of `syslog_drain`, `route_forwarding`, `volume_mount`.
    pub requires: Option<Vec<Label>>,
    /// Opaque metadata (display name, image URL, ...), at most 64 KiB of JSON.
    #[serde(default, deserialize_with = "metadata")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// OSB 2.14: `GET /v2/service_instances/:id` works (filled in as `true`).
    pub instances_retrievable: Option<bool>,
    /// OSB 2.14: `GET .../service_bindings/:id` works (filled in as `true`).
    pub bindings_retrievable: Option<bool>,
    /// OSB 2.15: context-only updates are accepted.
    pub allow_context_updates: Option<bool>,
    /// Whether plans can be changed by an update (plans may override).
    pub plan_updateable: Option<bool>,
    /// SSO client of the dashboard (CF profile), at most 4 KiB of JSON.
    #[serde(default, deserialize_with = "dashboard_client")]
    #[schema(value_type = Option<Object>)]
    pub dashboard_client: Option<Value>,
}

/// A plan of a [`ServiceRegistration`].
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanRegistration {
    /// Globally unique, stable id.
    pub id: PlanId,
    /// Name, unique within the offering.
    pub name: Name,
    /// What the plan gives.
    pub description: Description,
    /// Opaque metadata (costs, bullets, display name), at most 64 KiB of JSON.
    #[serde(default, deserialize_with = "metadata")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Whether the plan is free (OSB default: true).
    pub free: Option<bool>,
    /// Overrides the offering's `bindable`.
    pub bindable: Option<bool>,
    /// OSB 2.15: overrides the offering's `plan_updateable`.
    pub plan_updateable: Option<bool>,
    /// OSB 2.13: JSON Schemas for the `parameters` of provision, update and bind (each
    /// at most 64 kB, as OSB allows).
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub schemas: Option<Schemas>,
    /// OSB 2.15: seconds the platform should poll an operation at most.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub maximum_polling_duration: Option<u32>,
    /// OSB 2.15: the version instances of this plan should run.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub maintenance_info: Option<MaintenanceInfoRequest>,
    /// OSB 2.17: bindings may be rotated with `predecessor_binding_id`.
    pub binding_rotatable: Option<bool>,
    /// esm extension: bindings of this plan expire this many seconds after creation.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub binding_lifetime_seconds: Option<u32>,
}

/// OSB 2.15 maintenance info, as a client sends it (a plan's, or the one a provision
/// or update expects).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceInfoRequest {
    /// A SemVer 2.0 version.
    pub version: Version,
    /// What this version brings.
    pub description: Option<Description>,
}

impl From<MaintenanceInfoRequest> for MaintenanceInfo {
    fn from(info: MaintenanceInfoRequest) -> Self {
        Self { version: info.version.into(), description: info.description.map(Into::into) }
    }
}

impl From<ServiceRegistration> for Service {
    fn from(s: ServiceRegistration) -> Self {
        Self {
            id: s.id.into(),
            name: s.name.into(),
            description: s.description.into(),
            bindable: s.bindable,
            plans: s.plans.into_iter().map(Plan::from).collect(),
            short_name: s.short_name.map(Into::into),
            tags: s.tags.map(strings),
            requires: s.requires.map(strings),
            metadata: s.metadata,
            instances_retrievable: s.instances_retrievable,
            bindings_retrievable: s.bindings_retrievable,
            allow_context_updates: s.allow_context_updates,
            plan_updateable: s.plan_updateable,
            dashboard_client: s.dashboard_client,
        }
    }
}

impl From<PlanRegistration> for Plan {
    fn from(p: PlanRegistration) -> Self {
        Self {
            id: p.id.into(),
            name: p.name.into(),
            description: p.description.into(),
            metadata: p.metadata,
            free: p.free,
            bindable: p.bindable,
            plan_updateable: p.plan_updateable,
            schemas: p.schemas,
            maximum_polling_duration: p.maximum_polling_duration,
            maintenance_info: p.maintenance_info.map(Into::into),
            binding_rotatable: p.binding_rotatable,
            binding_lifetime_seconds: p.binding_lifetime_seconds,
        }
    }
}

fn strings(labels: Vec<Label>) -> Vec<String> {
    labels.into_iter().map(Into::into).collect()
}

/// Body of `PUT /v2/et/manifest/{manifest_id}`. `manifest_content` is bounded by
/// `ESM_MANIFEST_MAX_BYTES` (and the body by 1 MiB).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ManifestRegistration {
    /// Ignored: the path names the manifest (as the original did).
    pub id: Option<ManifestId>,
    /// The service the plan belongs to.
    pub service_id: ServiceId,
    /// The plan this manifest deploys; a plan has at most one manifest.
    pub plan_id: PlanId,
    /// Which backend deploys it (`dummy`, `docker-compose` or `docker`, `docker-swarm`, `kubernetes` or `k8s`).
    pub manifest_type: Name,
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

impl ManifestRegistration {
    /// The manifest to store, named `id` (the path's).
    pub fn into_manifest(self, id: ManifestId) -> Manifest {
        Manifest {
            id: id.into(),
            service_id: self.service_id.into(),
            plan_id: self.plan_id.into(),
            manifest_type: self.manifest_type.into(),
            manifest_content: self.manifest_content,
            endpoints: self.endpoints,
            config: self.config,
        }
    }
}

fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    object_within(d, "metadata", MAX_METADATA_BYTES)
}

fn dashboard_client<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    object_within(d, "dashboard_client", MAX_DASHBOARD_CLIENT_BYTES)
}

/// An optional JSON object of at most `max` bytes (as compact JSON).
fn object_within<'de, D: Deserializer<'de>>(d: D, what: &str, max: usize) -> Result<Option<Value>, D::Error> {
    let value = crate::domain::strict::optional_json_object(d)?;
    if let Some(object) = &value {
        let len = serde_json::to_vec(object).map(|v| v.len()).unwrap_or(usize::MAX);
        if len > max {
            return Err(serde::de::Error::custom(format!("{what} must be at most {max} bytes of JSON (got {len})")));
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"id": "s", "name": "svc", "description": "d",
               "plans": [{"id": "p", "name": "plan", "description": "d"}]})
    }

    #[test]
    fn a_registration_becomes_the_stored_service() {
        let mut v = minimal();
        v["tags"] = json!(["a", "b"]);
        v["plans"][0]["maintenance_info"] = json!({"version": "1.0.0", "description": "x"});
        let service: Service = serde_json::from_value::<ServiceRegistration>(v).unwrap().into();
        assert_eq!(service.tags, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(service.plans[0].maintenance_info.as_ref().unwrap().version, "1.0.0");
    }

    #[test]
    fn oversized_or_control_character_text_is_refused() {
        type Change = fn(&mut Value);
        let cases: [(&str, Change); 7] = [
            ("id", |v| v["id"] = json!("x".repeat(256))),
            ("name", |v| v["name"] = json!("a\u{1b}]0;owned\u{7}")),
            ("description", |v| v["description"] = json!("d".repeat(1025))),
            ("plan id", |v| v["plans"][0]["id"] = json!("p\nq")),
            ("short_name", |v| v["short_name"] = json!("")),
            ("tags", |v| v["tags"] = json!(["t".repeat(256)])),
            ("version", |v| v["plans"][0]["maintenance_info"] = json!({"version": "v".repeat(256)})),
        ];
        for (what, change) in cases {
            let mut v = minimal();
            change(&mut v);
            assert!(serde_json::from_value::<ServiceRegistration>(v).is_err(), "{what}");
        }
    }

    #[test]
    fn metadata_is_bounded_in_bytes() {
        let mut v = minimal();
        v["metadata"] = json!({"imageUrl": "i".repeat(MAX_METADATA_BYTES)});
        let err = serde_json::from_value::<ServiceRegistration>(v).unwrap_err().to_string();
        assert!(err.contains("metadata must be at most 65536 bytes"), "{err}");
        let mut v = minimal();
        v["dashboard_client"] = json!({"id": "c", "secret": "s".repeat(MAX_DASHBOARD_CLIENT_BYTES)});
        assert!(serde_json::from_value::<ServiceRegistration>(v).is_err());
    }
}
