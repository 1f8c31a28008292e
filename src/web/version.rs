//! What each OSB version defines: a response never carries a field that the request's
//! `X-Broker-API-Version` does not know, since strict clients (the conformance suite
//! validates with `additionalProperties: false`) reject it.
//!
//! [`Field::since`] is the one table, per field, from the spec's release notes
//! (`../shared/osb-contract.md` §13); [`ForVersion`] applies it to each response body.
//! esm's own extension fields (ElasTest's `short_name`, `binding_lifetime_seconds`) are
//! kept: the spec lets brokers add them, and the ElasTest platform reads them.

use crate::domain::binding::BindingMetadata;
use crate::domain::catalog::{Plan, Service};
use crate::domain::instance::InstanceMetadata;
use crate::error::OsbError;
use crate::wire::{
    BindingResponse, CatalogResponse, FetchInstanceResponse, LastOperationResponse, ProvisionResponse, UpdateResponse,
};

/// The newest minor version of OSB 2.x esm speaks.
pub const NEWEST_MINOR: u32 = 17;
/// The oldest one: older requests are refused with 412.
pub const OLDEST_MINOR: u32 = 12;

/// The `X-Broker-API-Version` header as sent (the original ESM's clients spell it with
/// underscores), trimmed.
pub fn version_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    ["x-broker-api-version", "x_broker_api_version"]
        .iter()
        .find_map(|name| headers.get(*name))
        .map(|v| v.to_str().unwrap_or_default().trim())
}

/// The OSB version of a request (the minor of 2.x). Requests without the header (the
/// ElasTest routes that do not need it) get the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32);

impl ApiVersion {
    /// The newest version esm speaks.
    pub const NEWEST: Self = Self(NEWEST_MINOR);

    /// A 2.x version from `MAJOR.MINOR` (anything after the minor is ignored, as the
    /// version check has always done); `None` for other majors or garbage.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let major = parts.next()?.parse::<u32>().ok()?;
        let minor = parts.next()?.parse::<u32>().ok()?;
        (major == 2).then_some(Self(minor))
    }

    /// Reads `X-Broker-API-Version` (already checked by the version middleware).
    pub fn of(headers: &axum::http::HeaderMap) -> Self {
        version_header(headers).and_then(Self::parse).unwrap_or(Self::NEWEST)
    }

    /// Whether this version defines `field`.
    pub fn has(self, field: Field) -> bool {
        self.0 >= field.since()
    }
}

/// The response fields OSB added after 2.12 (and async bindings, which came in 2.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Plan `schemas`.
    PlanSchemas,
    /// Offering `instances_retrievable` and `bindings_retrievable`.
    Retrievable,
    /// `dashboard_url` in an update's answer.
    UpdateDashboardUrl,
    /// Asynchronous bindings: `operation` in a bind's answer.
    AsyncBindings,
    /// Offering `allow_context_updates`.
    AllowContextUpdates,
    /// Plan `plan_updateable`.
    PlanUpdateable,
    /// Plan `maximum_polling_duration`.
    MaximumPollingDuration,
    /// `maintenance_info` in the catalog and on fetch.
    MaintenanceInfo,
    /// Binding `endpoints`.
    BindingEndpoints,
    /// `instance_usable` and `update_repeatable` in errors and last_operation.
    FailureFlags,
    /// Instance `metadata.labels` (provision, update, fetch).
    InstanceLabels,
    /// Binding `metadata.expires_at`.
    BindingExpiry,
    /// Instance `metadata.attributes`.
    InstanceAttributes,
    /// Binding `metadata.renew_before`.
    BindingRenewal,
    /// Plan `binding_rotatable`.
    BindingRotatable,
}

impl Field {
    /// The minor version of OSB 2.x that added the field.
    pub const fn since(self) -> u32 {
        match self {
            Self::PlanSchemas => 13,
            Self::Retrievable | Self::UpdateDashboardUrl | Self::AsyncBindings => 14,
            Self::AllowContextUpdates
            | Self::PlanUpdateable
            | Self::MaximumPollingDuration
            | Self::MaintenanceInfo
            | Self::BindingEndpoints => 15,
            Self::FailureFlags | Self::InstanceLabels | Self::BindingExpiry => 16,
            Self::InstanceAttributes | Self::BindingRenewal | Self::BindingRotatable => 17,
        }
    }
}

/// A response body as a client of one version may see it.
pub trait ForVersion {
    /// Drops the fields `version` does not define.
    fn for_version(self, version: ApiVersion) -> Self;
}

/// `value` if `version` has `field`.
fn keep<T>(value: Option<T>, version: ApiVersion, field: Field) -> Option<T> {
    value.filter(|_| version.has(field))
}

impl ForVersion for Option<InstanceMetadata> {
    fn for_version(self, version: ApiVersion) -> Self {
        let mut metadata = keep(self, version, Field::InstanceLabels)?;
        if !version.has(Field::InstanceAttributes) {
            metadata.attributes.clear();
        }
        Some(metadata).filter(|m| !m.is_empty())
    }
}

impl ForVersion for Option<BindingMetadata> {
    fn for_version(self, version: ApiVersion) -> Self {
        let mut metadata = keep(self, version, Field::BindingExpiry)?;
        metadata.renew_before = keep(metadata.renew_before, version, Field::BindingRenewal);
        Some(metadata).filter(|m| !m.is_empty())
    }
}

impl ForVersion for crate::wire::OperationResponse {
    fn for_version(self, _version: ApiVersion) -> Self {
        self
    }
}

impl ForVersion for ProvisionResponse {
    fn for_version(self, version: ApiVersion) -> Self {
        Self { metadata: self.metadata.for_version(version), ..self }
    }
}

impl ForVersion for UpdateResponse {
    fn for_version(self, version: ApiVersion) -> Self {
        Self {
            dashboard_url: keep(self.dashboard_url, version, Field::UpdateDashboardUrl),
            metadata: self.metadata.for_version(version),
            ..self
        }
    }
}

impl ForVersion for FetchInstanceResponse {
    fn for_version(self, version: ApiVersion) -> Self {
        Self {
            maintenance_info: keep(self.maintenance_info, version, Field::MaintenanceInfo),
            metadata: self.metadata.for_version(version),
            ..self
        }
    }
}

impl ForVersion for LastOperationResponse {
    fn for_version(self, version: ApiVersion) -> Self {
        Self {
            instance_usable: keep(self.instance_usable, version, Field::FailureFlags),
            update_repeatable: keep(self.update_repeatable, version, Field::FailureFlags),
            ..self
        }
    }
}

impl ForVersion for BindingResponse {
    fn for_version(self, version: ApiVersion) -> Self {
        Self {
            endpoints: keep(self.endpoints, version, Field::BindingEndpoints),
            metadata: self.metadata.for_version(version),
            operation: keep(self.operation, version, Field::AsyncBindings),
            ..self
        }
    }
}

impl ForVersion for OsbError {
    fn for_version(self, version: ApiVersion) -> Self {
        match self {
            Self::OperationFailed { description, instance_usable, update_repeatable } => Self::OperationFailed {
                description,
                instance_usable: keep(instance_usable, version, Field::FailureFlags),
                update_repeatable: keep(update_repeatable, version, Field::FailureFlags),
            },
            other => other,
        }
    }
}

impl ForVersion for Plan {
    fn for_version(self, version: ApiVersion) -> Self {
        Self {
            schemas: keep(self.schemas, version, Field::PlanSchemas),
            plan_updateable: keep(self.plan_updateable, version, Field::PlanUpdateable),
            maximum_polling_duration: keep(self.maximum_polling_duration, version, Field::MaximumPollingDuration),
            maintenance_info: keep(self.maintenance_info, version, Field::MaintenanceInfo),
            binding_rotatable: keep(self.binding_rotatable, version, Field::BindingRotatable),
            ..self
        }
    }
}

impl ForVersion for Service {
    fn for_version(self, version: ApiVersion) -> Self {
        Self {
            instances_retrievable: keep(self.instances_retrievable, version, Field::Retrievable),
            bindings_retrievable: keep(self.bindings_retrievable, version, Field::Retrievable),
            allow_context_updates: keep(self.allow_context_updates, version, Field::AllowContextUpdates),
            plans: self.plans.into_iter().map(|p| p.for_version(version)).collect(),
            ..self
        }
    }
}

impl ForVersion for CatalogResponse {
    fn for_version(self, version: ApiVersion) -> Self {
        Self { services: self.services.into_iter().map(|s| s.for_version(version)).collect() }
    }
}

#[cfg(test)]
#[path = "version_tests.rs"]
mod tests;
