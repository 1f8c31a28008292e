//! The OpenAPI path parameters many routes share, written once and named in the
//! routes' `params(...)`. Documentation only: handlers read the ids with the OSB
//! extractors (`extract.rs`), whose refusals name the id's bounds.

use utoipa::IntoParams;

use crate::domain::bounded::{BindingId, InstanceId};

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
