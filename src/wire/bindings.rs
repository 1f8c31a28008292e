//! The shapes of `GET /v2/et/service_instances/{instance_id}/bindings`: an
//! instance's bindings as a page, without their credentials (those are fetched one
//! binding at a time, where access to them is explicit).

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::binding::{Binding, BindingStatus, Endpoint};
use crate::domain::bounded::Cursor;
use crate::domain::operation::{OperationKind, OperationState};

/// `?limit=&after=` on an instance's binding listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// esm's own listing: a parameter it does not know is a mistake worth a 400.
#[serde(deny_unknown_fields)]
pub struct BindingListQuery {
    /// A page of at most this many bindings (1–1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<Cursor>,
}

/// A binding as the listing shows it: what it is and where it stands, never its
/// credentials or bind parameters.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BindingSummary {
    /// The binding id.
    pub binding_id: String,
    /// The instance it binds.
    pub instance_id: String,
    /// The offering, as sent on bind.
    pub service_id: String,
    /// The plan, as sent on bind.
    pub plan_id: String,
    /// `binding` (its bind is running), `bound` or `bind_failed`.
    #[schema(value_type = String)]
    pub status: BindingStatus,
    /// Its last operation (`bind` or `unbind`) and that operation's state.
    #[schema(value_type = Option<String>)]
    pub last_operation: Option<OperationKind>,
    /// `in progress`, `succeeded` or `failed`.
    pub operation_state: Option<OperationState>,
    /// The application bound, when the platform named one.
    pub app_guid: Option<String>,
    /// Where the application reaches the instance (OSB 2.15).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// When the credentials stop working (RFC 3339).
    pub expires_at: Option<String>,
    /// When the bind was requested (RFC 3339).
    pub created_at: String,
}

impl From<&Binding> for BindingSummary {
    fn from(binding: &Binding) -> Self {
        let last = binding.operations.last();
        Self {
            binding_id: binding.id.clone(),
            instance_id: binding.instance_id.clone(),
            service_id: binding.service_id.clone(),
            plan_id: binding.plan_id.clone(),
            status: binding.status,
            last_operation: last.map(|op| op.kind),
            operation_state: last.map(|op| op.state),
            app_guid: binding.app_guid().map(str::to_owned),
            endpoints: binding.endpoints.clone().unwrap_or_default(),
            expires_at: binding.metadata.expires_at.map(|at| at.to_string()),
            created_at: binding.created_at.to_string(),
        }
    }
}

/// A page of an instance's bindings.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BindingPage {
    /// The live bindings (not unbound), in id order.
    pub bindings: Vec<BindingSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}
