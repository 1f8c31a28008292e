//! Liveness ([`route::GET_LIVENESS`], [`route::REPORT_LIVENESS`]): is an instance up,
//! and what it says of itself.

use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};

use crate::broker::Reporter;
use crate::domain::bounded::InstanceId;
use crate::domain::liveness::LivenessStatus;
use crate::error::{ErrorBody, OsbError, OsbResult};
use crate::web::extract::{OsbJson, OsbPath};
use crate::web::responses::{NoSuchInstance, StoreDown};
use crate::web::{AppState, route};
use crate::wire::{LivenessReport, LivenessView, MAX_TTL_SECONDS};

/// Whether an instance is up: one small answer.
#[utoipa::path(get, path = route::GET_LIVENESS.path, tag = "elastest",
    params(("instance_id" = String, Path, description = "Instance id")),
    responses(
        (status = 200, description = "The instance's liveness", body = LivenessView),
        NoSuchInstance, StoreDown,
    ))]
pub async fn get_liveness(
    State(state): State<AppState>,
    OsbPath(instance_id): OsbPath<InstanceId>,
) -> OsbResult<Json<LivenessView>> {
    let (_, liveness) = state.broker.liveness().of(&instance_id).await?;
    Ok(Json(LivenessView::of(instance_id, liveness)))
}

/// An instance reports itself up or down, for `ttl_seconds` (a heartbeat: no newer
/// report within the TTL makes it `down`, "heartbeat missed"). What the backend
/// observes counts too: the worse of the two wins.
///
/// Sent with `Authorization: Bearer <token>`, the `esm_liveness_token` of one of the
/// instance's bindings (no `X-Broker-API-Version` needed), or with the broker's
/// credentials where `ESM_LIVENESS_BROKER_REPORTS` allows.
#[utoipa::path(put, path = route::REPORT_LIVENESS.path, tag = "elastest",
    params(("instance_id" = String, Path, description = "Instance id")),
    request_body = LivenessReport,
    responses(
        (status = 200, description = "Recorded; the instance's liveness now", body = LivenessView),
        (status = 400, description = "Unknown status, TTL out of 1–86400, note too long", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials, or a token not of this instance", body = ErrorBody),
        (status = 403, description = "The broker's credentials, where ESM_LIVENESS_BROKER_REPORTS is off", body = ErrorBody),
        (status = 503, description = "The store is unavailable, or too many instances' reports wait", body = ErrorBody),
        NoSuchInstance,
    ))]
pub async fn report_liveness(
    State(state): State<AppState>,
    reporter: Option<Extension<Reporter>>,
    OsbPath(instance_id): OsbPath<InstanceId>,
    OsbJson(report): OsbJson<LivenessReport>,
) -> OsbResult<Json<LivenessView>> {
    let status = match report.status.as_str() {
        "up" => LivenessStatus::Up,
        "down" => LivenessStatus::Down,
        other => return Err(OsbError::BadRequest(format!("status must be \"up\" or \"down\", not {other:?}"))),
    };
    if !(1..=MAX_TTL_SECONDS).contains(&report.ttl_seconds) {
        return Err(OsbError::BadRequest(format!(
            "ttl_seconds must be between 1 and {MAX_TTL_SECONDS}, not {}",
            report.ttl_seconds
        )));
    }
    let ttl = Duration::from_secs(report.ttl_seconds);
    // The layer says who sent it; without a token, the broker's credentials (checked
    // there) or an open API.
    let reporter = reporter.map_or(Reporter::Broker, |Extension(r)| r);
    let liveness = state.broker.liveness().report(&instance_id, &reporter, status, ttl, report.note).await?;
    Ok(Json(LivenessView::of(instance_id, liveness)))
}
