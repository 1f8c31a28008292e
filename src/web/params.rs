//! The OpenAPI path parameters many routes share, written once and named in the
//! routes' `params(...)`. Documentation only: handlers read the ids with the OSB
//! extractors (`extract.rs`), whose refusals name the id's bounds.

use utoipa::IntoParams;

use crate::domain::bounded::{BindingId, EngineName, InstanceId, ManifestId};

/// `{instance_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    /// Instance id
    pub instance_id: InstanceId,
}

/// `{instance_id}` and `{binding_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BindingPath {
    /// Instance id
    pub instance_id: InstanceId,
    /// Binding id
    pub binding_id: BindingId,
}

/// `{manifest_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ManifestPath {
    /// Manifest id
    pub manifest_id: ManifestId,
}

/// `{plan_id}` of a pool route, documented as a plain string as it always was.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PlanPath {
    /// Plan id
    pub plan_id: String,
}

/// `{name}` of an engine.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EnginePath {
    /// Engine name
    pub name: EngineName,
}
