//! The shapes of `GET /v2/et/events`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::bounded::{InstanceId, ServiceId};
use crate::domain::event::Event;

/// `GET /v2/et/events` query parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
// esm's own listing: an unknown parameter is a mistake worth a 400.
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Events after this id (a stream resumes from `Last-Event-ID` the same way).
    pub after: Option<String>,
    /// A page of at most this many events (1–1000, default 100) and at most
    /// `ESM_EVENT_PAGE_MAX_BYTES` of them (at least one); pages only.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Only events of this instance.
    #[param(value_type = Option<String>, max_length = 255)]
    pub instance_id: Option<InstanceId>,
    /// Only events of this service.
    #[param(value_type = Option<String>, max_length = 255)]
    pub service_id: Option<ServiceId>,
    /// Only events of this type (`provision.succeeded`, `liveness.changed`, …).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// Events that can no longer be had: older than what the log keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Gap {
    /// The first id missed.
    pub from: u64,
    /// The last id missed.
    pub to: u64,
}

/// A page of the event log.
#[serde_with::skip_serializing_none]
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// Pass as `after` for the next page (the last id read, or the `after` asked for).
    pub after: u64,
    /// Set when `after` asked for events older than the log keeps.
    pub gap: Option<Gap>,
}
