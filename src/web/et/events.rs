//! The events route ([`route::EVENTS`]): the change-event log, as a Server-Sent Events
//! stream or as JSON pages.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::ACCEPT;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::domain::bounded::{InstanceId, ServiceId};
use crate::domain::event::EventKind;
use crate::error::{ErrorBody, OsbError, OsbResult};
use crate::events::{Filter, Item};
use crate::web::extract::OsbQuery;
use crate::web::listing::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::web::{AppState, route};
use crate::wire::{EventPage, EventQuery, Gap};

/// How often an idle stream sends a comment, so proxies (and esm's own idle timeout,
/// 60 s by default) do not cut it. Keep-alives do not move the stream's end: it lasts
/// `ESM_EVENT_STREAM_LIFETIME` from its start whatever it sends.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How soon a client should reconnect after a stream reached its lifetime (the SSE
/// `retry` field, which browsers' `EventSource` follows).
const RESUME_RETRY: Duration = Duration::from_secs(1);

/// The change events: every lifecycle step and liveness transition.
///
/// With `Accept: text/event-stream`, a Server-Sent Events stream: each event with its
/// `id` and its type as the SSE event name; resumed after `Last-Event-ID` (or
/// `?after=`); an event named `gap` says which ids the log no longer holds. After
/// `ESM_EVENT_STREAM_LIFETIME` the stream ends with an event named `resume` whose `id`
/// is where to resume (with `Last-Event-ID`, as `EventSource` does by itself); more
/// than `ESM_MAX_SUBSCRIBERS` streams at once answer 503 with `Retry-After`.
/// Otherwise a JSON page of the log after `?after=` (default: from its oldest event),
/// within `?limit=` events and `ESM_EVENT_PAGE_MAX_BYTES`. A cursor (`after`,
/// `Last-Event-ID`) beyond the newest event id is a 400 naming the newest, for pages
/// and streams alike.
#[utoipa::path(get, path = route::EVENTS.path, tag = "elastest",
    params(EventQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume a stream after this event id")),
    responses(
        (status = 200, description = "A page of events (JSON), or a stream (`text/event-stream`)", body = EventPage),
        (status = 400, description = "Bad `after`, `Last-Event-ID`, `limit` or `type`, or a cursor beyond the newest event", body = ErrorBody),
        (status = 503, description = "The store is unavailable, or as many streams are open as esm serves (`Retry-After`)", body = ErrorBody),
    ))]
pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    OsbQuery(query): OsbQuery<EventQuery>,
) -> OsbResult<Response> {
    let filter = filter(query.clone())?;
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let after = match (last_event_id, query.after.as_deref()) {
        (Some(id), _) => Some(event_id("Last-Event-ID", id)?),
        (None, Some(after)) => Some(event_id("after", after)?),
        (None, None) => None,
    };
    let log = state.broker.events();
    if let Some(after) = after {
        // Refused rather than waited for: an id beyond the newest was never handed out
        // (or belongs to a log since wiped), and a stream would stay silent until the
        // log caught up with it.
        let newest = log.newest().await?;
        if after > newest {
            return Err(OsbError::BadRequest(format!(
                "event id {after} is beyond the newest event id {newest}; resume from {newest} or less"
            )));
        }
    }
    if wants_stream(&headers) {
        let stopping = state.stopping.clone();
        let Some(items) = log.subscribe(filter, after) else {
            return Err(OsbError::Unavailable(format!(
                "esm serves {} event streams at once (ESM_MAX_SUBSCRIBERS) and all are open; retry later",
                log.limits().subscribers
            )));
        };
        let stream = items.map(|item| Ok::<_, Infallible>(sse_event(item))).take_until(stopping.cancelled_owned());
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

fn filter(query: EventQuery) -> OsbResult<Filter> {
    let kind = match query.kind.as_deref() {
        Some(text) => Some(
            EventKind::parse(text)
                .ok_or_else(|| OsbError::BadRequest(format!("type {} is not an event type", shown(text))))?,
        ),
        None => None,
    };
    Ok(Filter {
        instance_id: query.instance_id.map(InstanceId::into_string),
        service_id: query.service_id.map(ServiceId::into_string),
        kind,
    })
}

fn event_id(what: &str, text: &str) -> OsbResult<u64> {
    text.trim()
        .parse()
        .map_err(|_| OsbError::BadRequest(format!("{what} must be an event id (a whole number), not {}", shown(text))))
}

/// Client text in an error message: escaped, and cut after a few dozen characters.
fn shown(text: &str) -> String {
    const SHOWN: usize = 64;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{:?}… ({} bytes)", &text[..end], text.len()),
        None => format!("{text:?}"),
    }
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
        // The `id` moves the client's Last-Event-ID to where it resumes, even when no
        // event it wanted came; `retry` says how soon.
        Item::Resume { after } => SseEvent::default()
            .id(after.to_string())
            .event("resume")
            .retry(RESUME_RETRY)
            .comment("this stream has reached its lifetime (ESM_EVENT_STREAM_LIFETIME); resume with Last-Event-ID")
            .data(serde_json::json!({"after": after}).to_string()),
    }
}
