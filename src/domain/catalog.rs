//! The service catalog: offerings, plans, their schemas and maintenance info.
//!
//! These are both the wire shapes of `GET /v2/catalog` and what `PUT /v2/et/catalog`
//! registers. Unknown fields in a registration are ignored (OSB 2.14 "vendor extension
//! fields"), optional fields left out are not echoed back.
//!
//! A registration arrives as `crate::wire::ServiceRegistration`, whose text is
//! bounded by type; these records keep `String`s so that a store written before those
//! bounds still decodes (see `crate::wire`'s catalog module). The counts — services,
//! plans, tags, manifests, the registry's bytes — are bounded by [`CatalogLimits`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::strict;

/// A service offering.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    /// Globally unique, stable id (the only identity the platform uses).
    #[schema(min_length = 1)]
    pub id: String,
    /// CLI-friendly name, unique across offerings.
    #[schema(min_length = 1)]
    pub name: String,
    /// What the service is.
    #[schema(min_length = 1)]
    pub description: String,
    /// Whether instances can be bound (plans may override).
    #[serde(default)]
    pub bindable: bool,
    /// At least one plan.
    #[schema(min_items = 1)]
    #[serde(deserialize_with = "strict::objects")]
    pub plans: Vec<Plan>,
    /// ElasTest: the short name the ElasTest platform shows.
    pub short_name: Option<String>,
    /// Free-form tags.
    pub tags: Option<Vec<String>>,
    /// Subset of `syslog_drain`, `route_forwarding`, `volume_mount`.
    pub requires: Option<Vec<String>>,
    /// Opaque metadata (display name, image URL, ...).
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// OSB 2.14: `GET /v2/service_instances/:id` works. esm supports it for every
    /// service, so registration fills in `true` when it is left out.
    pub instances_retrievable: Option<bool>,
    /// OSB 2.14: `GET .../service_bindings/:id` works; filled in like `instances_retrievable`.
    pub bindings_retrievable: Option<bool>,
    /// OSB 2.15: context-only updates are accepted.
    pub allow_context_updates: Option<bool>,
    /// Whether plans can be changed by an update (plans may override).
    pub plan_updateable: Option<bool>,
    /// SSO client of the dashboard (CF profile).
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub dashboard_client: Option<Value>,
}

/// A plan of a service offering.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// Globally unique, stable id.
    #[schema(min_length = 1)]
    pub id: String,
    /// Name, unique within the offering.
    #[schema(min_length = 1)]
    pub name: String,
    /// What the plan gives.
    #[schema(min_length = 1)]
    pub description: String,
    /// Opaque metadata (costs, bullets, display name).
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Whether the plan is free (OSB default: true).
    pub free: Option<bool>,
    /// Overrides the offering's `bindable`.
    pub bindable: Option<bool>,
    /// OSB 2.15: overrides the offering's `plan_updateable`.
    pub plan_updateable: Option<bool>,
    /// OSB 2.13: JSON Schemas for the `parameters` of provision, update and bind.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub schemas: Option<Schemas>,
    /// OSB 2.15: seconds the platform should poll an operation at most.
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub maximum_polling_duration: Option<u32>,
    /// OSB 2.15: the version instances of this plan should run.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub maintenance_info: Option<MaintenanceInfo>,
    /// OSB 2.17: bindings may be rotated with `predecessor_binding_id`.
    pub binding_rotatable: Option<bool>,
    /// esm extension: bindings of this plan expire this many seconds after creation
    /// (reported as `metadata.expires_at`, OSB 2.16).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64)]
    pub binding_lifetime_seconds: Option<u32>,
}

/// OSB 2.13 plan schemas.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schemas {
    /// Schemas for instance create and update.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub service_instance: Option<InstanceSchemas>,
    /// Schemas for binding create.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub service_binding: Option<BindingSchemas>,
}

/// Schemas of instance operations.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceSchemas {
    /// Provision parameters.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub create: Option<ParametersSchema>,
    /// Update parameters.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub update: Option<ParametersSchema>,
}

/// Schemas of binding operations.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BindingSchemas {
    /// Bind parameters.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub create: Option<ParametersSchema>,
}

/// A JSON Schema for an operation's `parameters`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ParametersSchema {
    /// The JSON Schema object.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// OSB 2.15 maintenance info.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MaintenanceInfo {
    /// A SemVer 2.0 version.
    pub version: String,
    /// What this version brings.
    pub description: Option<String>,
}

/// Which operation's parameters are being validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFor {
    /// `schemas.service_instance.create`
    Provision,
    /// `schemas.service_instance.update`
    Update,
    /// `schemas.service_binding.create`
    Bind,
}

/// OSB: schemas must not exceed 64 kB.
const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// How much the catalog may hold (`ESM_CATALOG_MAX_*`): a registration past a limit
/// is refused with the setting's name, so no client can make the one registry record
/// (read by every provision and bind) grow without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogLimits {
    /// Most services in the catalog.
    pub max_services: usize,
    /// Most plans of one service.
    pub max_plans: usize,
    /// Most tags of one service.
    pub max_tags: usize,
    /// Most registered manifests.
    pub max_manifests: usize,
    /// Most bytes of the registry record (every service and manifest entry, as JSON).
    pub max_registry_bytes: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        Self {
            max_services: 1000,
            max_plans: 100,
            max_tags: 64,
            max_manifests: 10_000,
            max_registry_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Service {
    /// The plan with this id, if the offering has it.
    pub fn plan(&self, plan_id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == plan_id)
    }

    /// Whether instances of `plan` can be bound.
    pub fn plan_bindable(&self, plan: &Plan) -> bool {
        plan.bindable.unwrap_or(self.bindable)
    }

    /// Whether an update may move an instance of `plan` to another plan.
    pub fn plan_updateable(&self, plan: &Plan) -> bool {
        plan.plan_updateable.unwrap_or(self.plan_updateable.unwrap_or(false))
    }

    /// Checks a registration against the rules and `limits` and fills in esm's
    /// defaults. Returns the reason on failure.
    pub fn validate_for_registration(&mut self, limits: &CatalogLimits) -> Result<(), String> {
        non_empty("id", &self.id)?;
        non_empty("name", &self.name)?;
        non_empty("description", &self.description)?;
        if self.plans.is_empty() {
            return Err(format!("service {} must have at least one plan", self.id));
        }
        if self.plans.len() > limits.max_plans {
            return Err(format!(
                "service {} has {} plans; at most {} are allowed (ESM_CATALOG_MAX_PLANS)",
                self.id,
                self.plans.len(),
                limits.max_plans
            ));
        }
        let tags = self.tags.as_ref().map_or(0, Vec::len);
        if tags > limits.max_tags {
            return Err(format!(
                "service {} has {tags} tags; at most {} are allowed (ESM_CATALOG_MAX_TAGS)",
                self.id, limits.max_tags
            ));
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for plan in &self.plans {
            non_empty("plans[].id", &plan.id)?;
            non_empty("plans[].name", &plan.name)?;
            non_empty("plans[].description", &plan.description)?;
            if !ids.insert(plan.id.as_str()) {
                return Err(format!("plan id {} appears more than once", plan.id));
            }
            if !names.insert(plan.name.as_str()) {
                return Err(format!("plan name {} appears more than once", plan.name));
            }
            if let Some(info) = &plan.maintenance_info {
                check_semver(&info.version).map_err(|e| format!("plan {}: maintenance_info.version: {e}", plan.id))?;
            }
            plan.placement().map_err(|e| format!("plan {}: {e}", plan.id))?;
            for which in [SchemaFor::Provision, SchemaFor::Update, SchemaFor::Bind] {
                if let Some(schema) = plan.schema(which) {
                    check_schema(schema).map_err(|e| format!("plan {}: {} schema: {e}", plan.id, which.path()))?;
                }
            }
        }
        if let Some(requires) = &self.requires {
            let mut seen = HashSet::new();
            for r in requires {
                if !matches!(r.as_str(), "syslog_drain" | "route_forwarding" | "volume_mount") {
                    return Err(format!(
                        "requires: unknown permission {r:?} (allowed: syslog_drain, route_forwarding, volume_mount)"
                    ));
                }
                if !seen.insert(r.as_str()) {
                    return Err(format!("requires: {r} appears more than once"));
                }
            }
        }
        self.instances_retrievable.get_or_insert(true);
        self.bindings_retrievable.get_or_insert(true);
        Ok(())
    }
}

impl Plan {
    /// What its instances need of an engine (`metadata.placement`, checked at
    /// registration).
    pub fn placement(&self) -> Result<crate::domain::placement::Placement, String> {
        crate::domain::placement::Placement::of_plan(self.metadata.as_ref())
    }

    /// The JSON Schema for `which`, if the plan declares one.
    pub fn schema(&self, which: SchemaFor) -> Option<&Value> {
        let schemas = self.schemas.as_ref()?;
        let holder = match which {
            SchemaFor::Provision => schemas.service_instance.as_ref()?.create.as_ref(),
            SchemaFor::Update => schemas.service_instance.as_ref()?.update.as_ref(),
            SchemaFor::Bind => schemas.service_binding.as_ref()?.create.as_ref(),
        };
        holder?.parameters.as_ref()
    }

    /// Validates `parameters` against the plan's schema for `which`. The error names the
    /// failing path, e.g. `parameters/size: "big" is not of type "integer"`.
    pub fn validate_parameters(&self, which: SchemaFor, parameters: Option<&Value>) -> Result<(), String> {
        let Some(schema) = self.schema(which) else {
            return Ok(());
        };
        let empty = Value::Object(Default::default());
        let instance = parameters.unwrap_or(&empty);
        let validator = jsonschema::validator_for(schema)
            .map_err(|e| format!("the plan's {} schema is invalid: {e}", which.path()))?;
        let problems: Vec<String> =
            validator.iter_errors(instance).take(5).map(|e| format!("parameters{}: {e}", e.instance_path())).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("parameters do not match the plan's schema: {}", problems.join("; ")))
        }
    }
}

impl SchemaFor {
    fn path(self) -> &'static str {
        match self {
            Self::Provision => "service_instance.create",
            Self::Update => "service_instance.update",
            Self::Bind => "service_binding.create",
        }
    }
}

fn non_empty(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() { Err(format!("{field} must be a non-empty string")) } else { Ok(()) }
}

fn check_schema(schema: &Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err("must be a JSON object".into());
    }
    let size = serde_json::to_vec(schema).map(|v| v.len()).unwrap_or(0);
    if size > MAX_SCHEMA_BYTES {
        return Err(format!("is {size} bytes, over the 64 kB OSB allows"));
    }
    if contains_external_ref(schema) {
        return Err("must not contain external $ref (OSB)".into());
    }
    jsonschema::validator_for(schema).map(|_| ()).map_err(|e| e.to_string())
}

/// OSB forbids external references; local ones (`#/...`) are fine.
fn contains_external_ref(value: &Value) -> bool {
    match value {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| (k == "$ref" && v.as_str().is_some_and(|r| !r.starts_with('#'))) || contains_external_ref(v)),
        Value::Array(items) => items.iter().any(contains_external_ref),
        _ => false,
    }
}

/// A SemVer 2.0 version: `MAJOR.MINOR.PATCH` with optional `-pre` and `+build`, no
/// leading zeros.
fn check_semver(version: &str) -> Result<(), String> {
    semver::Version::parse(version)
        .map(|_| ())
        .map_err(|e| format!("{version:?} is not a SemVer 2.0 version (MAJOR.MINOR.PATCH): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(v: Value) -> Service {
        serde_json::from_value(v).expect("test service parses")
    }

    fn minimal() -> Value {
        json!({"id": "s", "name": "svc", "description": "d", "bindable": true,
               "plans": [{"id": "p", "name": "plan", "description": "d"}]})
    }

    #[test]
    fn registration_fills_in_retrievable_flags() {
        let mut s = service(minimal());
        s.validate_for_registration(&CatalogLimits::default()).expect("valid");
        assert_eq!(s.instances_retrievable, Some(true));
        assert_eq!(s.bindings_retrievable, Some(true));
    }

    #[test]
    fn registration_rejects_empty_fields_and_plans() {
        let mut v = minimal();
        v["name"] = json!("");
        assert!(service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err().contains("name"));
        let mut v = minimal();
        v["plans"] = json!([]);
        assert!(
            service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err().contains("at least one plan")
        );
    }

    #[test]
    fn registration_rejects_duplicate_plan_ids() {
        let mut v = minimal();
        v["plans"] = json!([{"id": "p", "name": "a", "description": "d"},
                            {"id": "p", "name": "b", "description": "d"}]);
        let err = service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err();
        assert!(err.contains("plan id p appears more than once"), "{err}");
    }

    #[test]
    fn registration_rejects_bad_semver_and_external_refs() {
        let mut v = minimal();
        v["plans"][0]["maintenance_info"] = json!({"version": "1.2"});
        assert!(service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err().contains("SemVer"));
        let mut v = minimal();
        v["plans"][0]["schemas"] = json!({"service_instance": {"create": {"parameters":
            {"$schema": "http://json-schema.org/draft-04/schema#", "$ref": "http://x/y.json"}}}});
        assert!(service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err().contains("external"));
    }

    #[test]
    fn registration_refuses_more_plans_or_tags_than_the_limits_naming_the_setting() {
        let limits = CatalogLimits { max_plans: 2, max_tags: 1, ..CatalogLimits::default() };
        let plan = |i: usize| json!({"id": format!("p{i}"), "name": format!("n{i}"), "description": "d"});
        let mut v = minimal();
        v["plans"] = json!([plan(1), plan(2)]);
        v["tags"] = json!(["a"]);
        assert!(service(v.clone()).validate_for_registration(&limits).is_ok(), "the limits themselves are allowed");
        v["plans"] = json!([plan(1), plan(2), plan(3)]);
        let err = service(v.clone()).validate_for_registration(&limits).unwrap_err();
        assert!(err.contains("3 plans; at most 2") && err.contains("ESM_CATALOG_MAX_PLANS"), "{err}");
        v["plans"] = json!([plan(1)]);
        v["tags"] = json!(["a", "b"]);
        let err = service(v).validate_for_registration(&limits).unwrap_err();
        assert!(err.contains("ESM_CATALOG_MAX_TAGS"), "{err}");
    }

    #[test]
    fn registration_rejects_repeated_requires() {
        let mut v = minimal();
        v["requires"] = json!(["volume_mount", "volume_mount"]);
        assert!(
            service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err().contains("more than once")
        );
    }

    #[test]
    fn registration_rejects_unknown_requires() {
        let mut v = minimal();
        v["requires"] = json!(["telepathy"]);
        assert!(service(v).validate_for_registration(&CatalogLimits::default()).unwrap_err().contains("telepathy"));
    }

    #[test]
    fn parameters_are_checked_against_the_plan_schema_with_the_failing_path() {
        let mut v = minimal();
        v["plans"][0]["schemas"] = json!({"service_instance": {"create": {"parameters": {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {"size": {"type": "integer"}},
            "required": ["size"]}}}});
        let s = service(v);
        let plan = &s.plans[0];
        assert!(plan.validate_parameters(SchemaFor::Provision, Some(&json!({"size": 3}))).is_ok());
        let err = plan.validate_parameters(SchemaFor::Provision, Some(&json!({"size": "big"}))).unwrap_err();
        assert!(err.contains("parameters/size"), "{err}");
        let err = plan.validate_parameters(SchemaFor::Provision, None).unwrap_err();
        assert!(err.contains("size"), "{err}");
        // No schema for update or bind: anything goes.
        assert!(plan.validate_parameters(SchemaFor::Update, Some(&json!({"x": 1}))).is_ok());
    }

    #[test]
    fn semver_check() {
        for good in ["1.0.0", "10.20.30-rc.1+build.5"] {
            assert!(check_semver(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("1.0", "three parts"),
            ("v1.0.0", "no prefix"),
            ("01.0.0", "no leading zeros"),
            ("1.0.0-01", "no leading zeros in numeric pre-release parts"),
        ] {
            assert!(check_semver(bad).is_err(), "{bad}: {why}");
        }
    }
}
