//! The shapes of `/v2/et/service_instances/{id}/liveness`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::bounded::{InstanceId, Note};
use crate::domain::liveness::{Component, Liveness, LivenessStatus, Observation};
use crate::domain::time::Timestamp;

/// Body of `PUT /v2/et/service_instances/{id}/liveness`: what an instance says of itself.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LivenessReport {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: String,
    /// Seconds the report counts for (1–86400): no newer report by then is a missed
    /// heartbeat, and the instance is `down`.
    pub ttl_seconds: u64,
    /// A word from the instance, shown as the reason (one line of at most 1024 bytes).
    #[serde(default)]
    pub note: Option<Note>,
}

/// The longest TTL a report may ask for: a day.
pub const MAX_TTL_SECONDS: u64 = 86_400;

/// An instance's own report, as shown.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportView {
    /// What it said.
    pub status: LivenessStatus,
    /// Its note.
    pub note: Option<Note>,
    /// When esm received it (RFC 3339).
    pub received_at: String,
    /// When it stops counting (RFC 3339).
    pub expires_at: String,
}

/// `GET /v2/et/service_instances/{id}/liveness`: is the instance up?
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LivenessView {
    /// The instance.
    pub instance_id: InstanceId,
    /// `up`, `degraded`, `down` or `unknown`.
    pub status: LivenessStatus,
    /// Since when (RFC 3339).
    pub since: String,
    /// Why, in words.
    pub reason: String,
    /// Each component (container, swarm task) as last observed.
    pub components: Vec<Component>,
    /// What the backend observed last; absent when it cannot observe.
    pub observed: Option<Observation>,
    /// The instance's latest report of itself.
    pub reported: Option<ReportView>,
    /// When it was last seen up (RFC 3339), as recorded at its last change.
    pub last_up_at: Option<String>,
}

fn at(millis: u64) -> String {
    Timestamp::from_millis(millis).to_string()
}

impl LivenessView {
    /// The view of instance `instance_id`'s `liveness`.
    pub fn of(instance_id: InstanceId, liveness: Liveness) -> Self {
        Self {
            instance_id,
            status: liveness.status,
            since: liveness.since.to_string(),
            reason: liveness.reason,
            components: liveness.components,
            observed: liveness.observed,
            reported: liveness.reported.map(|r| ReportView {
                status: r.status,
                note: r.note,
                received_at: at(r.at),
                expires_at: at(r.expires_at),
            }),
            last_up_at: liveness.last_up_at.map(at),
        }
    }
}
