//! `GET /v2/et/events`: the change-event log, as a Server-Sent Events stream or as
//! JSON pages.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use super::AppState;
use super::extract::OsbQuery;
use super::listing::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::domain::event::is_known_type;
use crate::error::{ErrorBody, OsbError, OsbResult};
use crate::events::{Filter, Item};
use crate::wire::{EventPage, EventQuery, Gap};

/// How often an idle stream sends a comment, so proxies (and esm's own idle timeout,
/// 60 s by default) do not cut it.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The change events: every lifecycle step and liveness transition.
///
/// With `Accept: text/event-stream`, a Server-Sent Events stream: each event with its
/// `id` and its type as the SSE event name; resumed after `Last-Event-ID` (or
/// `?after=`); an event named `gap` says which ids the log no longer holds. Otherwise
/// a JSON page of the log after `?after=` (default: from its oldest event).
#[utoipa::path(get, path = "/v2/et/events", tag = "elastest",
    params(EventQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume a stream after this event id")),
    responses(
        (status = 200, description = "A page of events (JSON), or a stream (`text/event-stream`)", body = EventPage),
        (status = 400, description = "Bad `after`, `Last-Event-ID`, `limit` or `type`", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    OsbQuery(query): OsbQuery<EventQuery>,
) -> OsbResult<Response> {
    let filter = filter(&query)?;
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let after = match (last_event_id, query.after.as_deref()) {
        (Some(id), _) => Some(event_id("Last-Event-ID", id)?),
        (None, Some(after)) => Some(event_id("after", after)?),
        (None, None) => None,
    };
    let log = state.broker.events();
    if wants_stream(&headers) {
        let stopping = state.stopping.clone();
        let stream = log
            .subscribe(filter, after)
            .map(|item| Ok::<_, Infallible>(sse_event(item)))
            .take_until(stopping.cancelled_owned());
        return Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response());
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(OsbError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}, not {limit}")));
    }
    let after = after.unwrap_or(0);
    let oldest = log.oldest().await?;
    let gap = oldest
        .filter(|&oldest| after > 0 && after.saturating_add(1) < oldest)
        .map(|oldest| Gap { from: after + 1, to: oldest - 1 });
    let events = log.page(&filter, after, limit).await?;
    let next = events.last().map_or(after, |e| e.id);
    Ok(Json(EventPage { events, after: next, gap }).into_response())
}

fn filter(query: &EventQuery) -> OsbResult<Filter> {
    if let Some(kind) = query.kind.as_deref().filter(|k| !is_known_type(k)) {
        return Err(OsbError::BadRequest(format!("type {kind:?} is not an event type")));
    }
    let non_empty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    Ok(Filter {
        instance_id: non_empty(&query.instance_id),
        service_id: non_empty(&query.service_id),
        kind: non_empty(&query.kind),
    })
}

fn event_id(what: &str, text: &str) -> OsbResult<u64> {
    text.trim()
        .parse()
        .map_err(|_| OsbError::BadRequest(format!("{what} must be an event id (a whole number), not {text:?}")))
}

fn wants_stream(headers: &HeaderMap) -> bool {
    headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/event-stream"))
}

fn sse_event(item: Item) -> SseEvent {
    match item {
        Item::Event(delivered) => SseEvent::default()
            .id(delivered.event.id.to_string())
            .event(delivered.event.kind.as_str())
            .data(delivered.json.as_str()),
        Item::Gap { from, to } => {
            let gap = serde_json::json!({"from": from, "to": to}).to_string();
            SseEvent::default().event("gap").data(gap)
        }
    }
}
