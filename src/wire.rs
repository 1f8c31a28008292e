//! The JSON shapes of OSB requests and responses (and the ElasTest instance view).
//!
//! Requests ignore unknown fields (OSB 2.14: vendor extensions must be ignored; the
//! ElasTest platform also sends extra ones). Responses leave out what is unset.
//!
//! Every id a request or query carries is a bounded type ([`crate::domain::bounded`]),
//! parsed as the request is read: a value over its limit or with a control character
//! is a 400 naming the field, and nothing past here holds an unbounded id. Responses
//! keep `String`s: they are built from stored records, which may predate the bounds.

mod bindings;
mod catalog;
mod engines;
mod events;
mod inventory;
mod liveness;
mod pools;

pub use bindings::{BindingListQuery, BindingPage, BindingSummary};
pub use catalog::{
    MAX_DASHBOARD_CLIENT_BYTES, MAX_METADATA_BYTES, MaintenanceInfoRequest, ManifestRegistration, PlanRegistration,
    ServiceRegistration,
};
pub use engines::{EngineList, EngineView, Evacuation, Used};
pub use events::{EventPage, EventQuery, Gap};
pub use inventory::{InstanceResources, InventoryPage, InventoryQuery};
pub use liveness::{LivenessReport, LivenessView, MAX_TTL_SECONDS, ReportView};
pub use pools::{MemberView, PoolList, PoolRequest, PoolStatus};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::domain::binding::{BindingMetadata, Credentials, Endpoint};
use crate::domain::bounded::{BindingId, Cursor, Name, OpaqueId, OperationId, PlanId, ServiceId};
use crate::domain::catalog::{MaintenanceInfo, Service};
use crate::domain::instance::InstanceMetadata;
use crate::domain::liveness::LivenessStatus;
use crate::domain::operation::OperationState;
use crate::domain::strict;

/// Whether an answer leaves its dashboard URL out: there is none, or it is not one
/// esm hands out now (an instance recorded before URLs were limited to http(s)).
fn no_dashboard_url(url: &Option<String>) -> bool {
    url.as_deref().is_none_or(|url| crate::backend::check_dashboard_url(url).is_err())
}

/// `GET /v2/catalog`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CatalogResponse {
    /// The offerings (possibly none).
    pub services: Vec<Service>,
}

/// An empty JSON object, `{}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Empty {}

/// Body of `PUT /v2/service_instances/{instance_id}`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProvisionRequest {
    /// The offering to provision.
    pub service_id: ServiceId,
    /// The plan to provision.
    pub plan_id: PlanId,
    /// Deprecated in favour of `context`, but required by every OSB version.
    pub organization_guid: OpaqueId,
    /// Deprecated in favour of `context`, but required by every OSB version.
    pub space_guid: OpaqueId,
    /// Platform-specific context.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Configuration parameters, checked against the plan's schema.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// The maintenance version the platform expects (422 if it is not the plan's).
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub maintenance_info: Option<MaintenanceInfoRequest>,
}

/// Answer to provision: 201, 200 or 202.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ProvisionResponse {
    /// The instance's dashboard, if it has one.
    #[serde(default, skip_serializing_if = "no_dashboard_url")]
    pub dashboard_url: Option<String>,
    /// On 202: the operation to poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// OSB 2.16 labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
}

/// Body of `PATCH /v2/service_instances/{instance_id}`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateRequest {
    /// The instance's offering.
    pub service_id: ServiceId,
    /// The new plan; absent means the plan stays.
    pub plan_id: Option<PlanId>,
    /// New parameters; absent means they stay.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// New platform context.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// What the platform believes the instance had.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub previous_values: Option<Value>,
    /// The maintenance version to move to.
    #[serde(default, deserialize_with = "strict::optional_object")]
    pub maintenance_info: Option<MaintenanceInfoRequest>,
}

/// Answer to update: 200 or 202.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateResponse {
    /// The dashboard, if it changed.
    #[serde(default, skip_serializing_if = "no_dashboard_url")]
    pub dashboard_url: Option<String>,
    /// On 202: the operation to poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// OSB 2.16 labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
}

/// Answer to deprovision and unbind: `{}` on 200, `{"operation"}` on 202.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OperationResponse {
    /// On 202: the operation to poll.
    pub operation: Option<String>,
}

/// `GET /v2/service_instances/{instance_id}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FetchInstanceResponse {
    /// The offering.
    pub service_id: String,
    /// The current plan.
    pub plan_id: String,
    /// The dashboard, if any.
    #[serde(default, skip_serializing_if = "no_dashboard_url")]
    pub dashboard_url: Option<String>,
    /// The parameters in effect.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// The maintenance version the instance runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    /// Labels and attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<InstanceMetadata>,
}

/// `GET .../last_operation`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LastOperationResponse {
    /// `in progress`, `succeeded` or `failed`.
    pub state: OperationState,
    /// Progress or failure text.
    pub description: Option<String>,
    /// After a failed update or deprovision: whether the instance still works.
    pub instance_usable: Option<bool>,
    /// After a failed update: whether repeating it may succeed.
    pub update_repeatable: Option<bool>,
}

/// Body of `PUT .../service_bindings/{binding_id}`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BindRequest {
    /// The instance's offering.
    pub service_id: ServiceId,
    /// The instance's plan.
    pub plan_id: PlanId,
    /// Deprecated: the application to bind.
    pub app_guid: Option<OpaqueId>,
    /// What to bind (`app_guid`, `route`).
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub bind_resource: Option<Value>,
    /// Platform-specific context.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Bind parameters, checked against the plan's schema.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// OSB 2.17: the binding this one rotates (plan must be `binding_rotatable`).
    pub predecessor_binding_id: Option<BindingId>,
}

/// A binding: the answer to bind (201/200; 202 carries only `operation`) and to fetch.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BindingResponse {
    /// Credentials for the application (never on 202).
    pub credentials: Option<Credentials>,
    /// OSB 2.15 endpoints.
    pub endpoints: Option<Vec<Endpoint>>,
    /// On fetch: the bind parameters.
    #[serde(default, deserialize_with = "strict::optional_json_object")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Expiry and renewal times.
    pub metadata: Option<BindingMetadata>,
    /// On 202: the operation to poll.
    pub operation: Option<String>,
}

/// `?accepts_incomplete=` on provision, update and bind.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsyncQuery {
    /// The platform can poll `last_operation` (OSB spelling).
    #[serde(default)]
    pub accepts_incomplete: Option<bool>,
    /// The same, in the original ESM's spelling, which its clients send.
    #[serde(default)]
    pub accept_incomplete: Option<bool>,
}

impl AsyncQuery {
    /// Whether the platform accepts an asynchronous answer.
    pub fn accepts_incomplete(&self) -> bool {
        self.accepts_incomplete.or(self.accept_incomplete).unwrap_or(false)
    }
}

/// `?service_id=&plan_id=&accepts_incomplete=` on deprovision and unbind.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Required: the offering.
    #[serde(default)]
    #[param(required = true, value_type = ServiceId)]
    pub service_id: Option<ServiceId>,
    /// Required: the plan.
    #[serde(default)]
    #[param(required = true, value_type = PlanId)]
    pub plan_id: Option<PlanId>,
    /// The platform can poll `last_operation` (OSB spelling).
    #[serde(default)]
    pub accepts_incomplete: Option<bool>,
    /// The same, in the original ESM's spelling.
    #[serde(default)]
    pub accept_incomplete: Option<bool>,
}

impl DeleteQuery {
    /// Whether the platform accepts an asynchronous answer.
    pub fn accepts_incomplete(&self) -> bool {
        self.accepts_incomplete.or(self.accept_incomplete).unwrap_or(false)
    }
}

/// `?service_id=&plan_id=&operation=` on last_operation (all optional hints).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LastOperationQuery {
    /// Hint: the offering.
    #[serde(default)]
    pub service_id: Option<ServiceId>,
    /// Hint: the plan.
    #[serde(default)]
    pub plan_id: Option<PlanId>,
    /// The `operation` value of the 202 being polled.
    #[serde(default)]
    pub operation: Option<OperationId>,
}

/// `?service_id=&plan_id=` hints on the fetch endpoints (OSB 2.16).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FetchQuery {
    /// Hint: the offering.
    #[serde(default)]
    pub service_id: Option<ServiceId>,
    /// Hint: the plan.
    #[serde(default)]
    pub plan_id: Option<PlanId>,
}

/// ElasTest: an instance with its live deployment details.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EtInstance {
    /// `id`, `manifest_id` and the backend's flat keys (`<container>_Ip`, ...).
    #[schema(value_type = Object)]
    pub context: Map<String, Value>,
    /// The instance's offering.
    pub service_type: Service,
    /// esm: the instance's plan (with `service_type.id`, what a deprovision names,
    /// whatever state the instance is in).
    pub plan_id: String,
    /// esm: the state of the last operation as it ended, what `?state=` filters on.
    /// (`state` is the original's: it says `failed` too when a provisioned
    /// deployment broke since; `liveness` says how it is now.)
    pub operation_state: OperationState,
    /// esm: what liveness last saw of the deployment, what `?liveness=` filters on.
    pub liveness: LivenessStatus,
    /// esm: when the instance was requested (RFC 3339).
    pub created_at: String,
    /// esm: the engine it was placed on (`default`: the single-engine settings').
    #[serde(default)]
    pub engine: String,
    /// The instance's last operation (or, once provisioned, a problem of the deployment).
    pub state: EtState,
    /// esm: the deployment for programs, one object per container (`service`,
    /// `container`, `state`, `image`, `ip`, `ports`).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub deployment: Vec<Value>,
}

/// `?limit=&after=&service_id=&plan_id=&state=` on the instance listing.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// esm's own listing: a parameter it does not know is a mistake worth a 400 (a
// misspelt filter would otherwise list everything).
#[serde(deny_unknown_fields)]
pub struct InstanceListQuery {
    /// A page of at most this many instances (1–1000; 100 when only `after` is given).
    /// Without `limit` and `after` the listing is the original's plain array.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<Cursor>,
    /// Only instances of this offering.
    pub service_id: Option<ServiceId>,
    /// Only instances on this plan.
    pub plan_id: Option<PlanId>,
    /// Only instances whose last operation is in this state (`in progress`,
    /// `succeeded`, `failed`).
    #[param(value_type = Option<String>)]
    pub state: Option<OperationState>,
    /// Only instances with this liveness (`up`, `degraded`, `down`, `unknown`).
    #[param(value_type = Option<String>)]
    pub liveness: Option<LivenessStatus>,
    /// Only instances deployed by this backend (`dummy`, `docker-compose`, `docker-swarm`, `kubernetes`).
    pub backend: Option<Name>,
    /// Only instances placed on this engine (`default`: the single-engine settings').
    pub engine: Option<crate::domain::bounded::EngineName>,
}

/// A page of the instance listing.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, ToSchema)]
pub struct EtInstancePage {
    /// The instances, in id order.
    pub instances: Vec<EtInstance>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// The instance listing: the original's array, or one page.
// For the OpenAPI document only: the handler streams the array, so this is never built.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EtInstanceListing {
    /// Without `limit` and `after`: every instance, as the original answered.
    All(Vec<EtInstance>),
    /// With `limit` or `after`: one page.
    Page(EtInstancePage),
}

/// ElasTest: an instance's state.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EtState {
    /// `in progress`, `succeeded` or `failed`.
    pub state: OperationState,
    /// What is happening or happened.
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dashboard_url_that_is_not_http_is_never_answered() {
        for (url, shown) in
            [("https://d.example/i-1", true), ("javascript:alert(1)", false), ("data:text/html,x", false)]
        {
            let answer = ProvisionResponse { dashboard_url: Some(url.into()), ..Default::default() };
            let json = serde_json::to_value(&answer).expect("JSON");
            assert_eq!(json.get("dashboard_url").is_some(), shown, "{url}: {json}");
        }
        let fetched = serde_json::to_value(FetchInstanceResponse {
            service_id: "s".into(),
            plan_id: "p".into(),
            dashboard_url: Some("javascript:alert(1)".into()),
            parameters: None,
            maintenance_info: None,
            metadata: None,
        })
        .expect("JSON");
        assert!(fetched.get("dashboard_url").is_none(), "{fetched}");
    }

    // OSB 2.15 endpoints are an array; the client read them as an object and failed on
    // every bind answer that had them (a re-sent bind, a Docker binding).
    #[test]
    fn a_binding_with_endpoints_reads_back_as_it_was_sent() {
        let answer = serde_json::json!({
            "credentials": {"username": "u"},
            "endpoints": [{"host": "10.0.0.1", "ports": ["8080", "9000-9010"], "protocol": "tcp"}, {"host": "h", "ports": []}]
        });
        let read: BindingResponse = serde_json::from_value(answer.clone()).expect("an OSB binding");
        assert_eq!(serde_json::to_value(&read).expect("JSON"), answer);
        let object = serde_json::json!({"endpoints": {"web": {"host": "h"}}});
        assert!(serde_json::from_value::<BindingResponse>(object).is_err(), "not OSB's shape");
    }
}
