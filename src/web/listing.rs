//! What every listing shares: `?limit=` and the opaque `?after=` cursor, and a JSON
//! array written as it is produced.

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::Serialize;

use crate::error::{OsbError, OsbResult};

/// A page's size when only `after` is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// Where a page starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// The id the previous page ended with.
    pub after: Option<String>,
    /// The most items in the page.
    pub limit: usize,
}

impl Paging {
    /// The paging a request asks for, or `None` when it sends neither `limit` nor
    /// `after` (then a listing answers in full, in its unpaged shape).
    pub fn of(limit: Option<usize>, after: Option<&str>) -> OsbResult<Option<Self>> {
        if limit.is_none() && after.is_none() {
            return Ok(None);
        }
        Self::paged(limit, after).map(Some)
    }

    /// The paging a request asks for, a page of [`DEFAULT_LIMIT`] when it sends no
    /// `limit` (for listings that always answer a page).
    pub fn paged(limit: Option<usize>, after: Option<&str>) -> OsbResult<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(OsbError::BadRequest(format!("limit must be between 1 and {MAX_LIMIT}, not {limit}")));
        }
        let after = after.map(decode_cursor).transpose()?;
        Ok(Self { after, limit })
    }
}

/// The cursor a page hands out for the id it ended with: opaque to clients, so what it
/// holds can change without breaking them.
pub fn cursor(last_id: &str) -> String {
    let mut out = String::with_capacity(2 + 2 * last_id.len());
    out.push_str("c1");
    for byte in last_id.bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn decode_cursor(cursor: &str) -> OsbResult<String> {
    let invalid = || OsbError::BadRequest("after is not a cursor this esm handed out".into());
    let hex = cursor.strip_prefix("c1").ok_or_else(invalid)?;
    if hex.len() % 2 != 0 {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

/// How much serialised JSON a chunk of a streamed array holds before it is sent.
const CHUNK: usize = 64 * 1024;

/// A `200` whose body is the JSON array of `items`, serialised as they arrive and sent
/// in chunks of about 64 KiB: memory holds one chunk, not the whole array. An
/// error after the first byte cannot change the status any more: it is logged and the
/// connection is cut, so the client sees a truncated body, never a wrong complete one.
pub fn json_array<T, S>(items: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = OsbResult<T>> + Send + 'static,
{
    struct State<S> {
        items: std::pin::Pin<Box<S>>,
        opened: bool,
        written: bool,
        done: bool,
    }
    let state = State { items: Box::pin(items), opened: false, written: false, done: false };
    let chunks = futures_util::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        let mut chunk = Vec::with_capacity(CHUNK + 1024);
        if !state.opened {
            chunk.push(b'[');
            state.opened = true;
        }
        while chunk.len() < CHUNK {
            match state.items.next().await {
                Some(Ok(item)) => {
                    if state.written {
                        chunk.push(b',');
                    }
                    state.written = true;
                    if let Err(e) = serde_json::to_writer(&mut chunk, &item) {
                        return Some((Err(cut(&e.to_string())), State { done: true, ..state }));
                    }
                }
                Some(Err(e)) => return Some((Err(cut(&e.to_string())), State { done: true, ..state })),
                None => {
                    chunk.push(b']');
                    return Some((Ok(Bytes::from(chunk)), State { done: true, ..state }));
                }
            }
        }
        Some((Ok(Bytes::from(chunk)), state))
    });
    ([(CONTENT_TYPE, "application/json")], Body::from_stream(chunks)).into_response()
}

fn cut(reason: &str) -> std::io::Error {
    tracing::error!(error = reason, "a streamed listing failed part-way; the response is cut off");
    std::io::Error::other(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_opaque_and_round_trips() {
        for id in ["a", "instance-1", "ünï/ id", ""] {
            let c = cursor(id);
            assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric()), "{c} is URL-safe");
            assert_eq!(decode_cursor(&c).expect("decodes"), id);
        }
        for bad in ["", "c", "c1f", "c1zz", "x1aa", "c1ff"] {
            assert!(matches!(decode_cursor(bad), Err(OsbError::BadRequest(_))), "{bad:?} refused");
        }
    }

    #[test]
    fn paging_is_asked_for_by_limit_or_after_and_bounded() {
        assert_eq!(Paging::of(None, None).expect("fine"), None, "neither: the unpaged listing");
        let from = cursor("x");
        assert_eq!(
            Paging::of(None, Some(&from)).expect("fine"),
            Some(Paging { after: Some("x".into()), limit: DEFAULT_LIMIT })
        );
        assert_eq!(Paging::of(Some(5), None).expect("fine"), Some(Paging { after: None, limit: 5 }));
        for limit in [0, MAX_LIMIT + 1] {
            assert!(matches!(Paging::of(Some(limit), None), Err(OsbError::BadRequest(_))), "{limit} refused");
        }
    }

    #[tokio::test]
    async fn a_streamed_array_is_valid_json_of_every_item() {
        for n in [0_usize, 1, 2, 5000] {
            let items =
                futures_util::stream::iter((0..n).map(|i| Ok(serde_json::json!({"i": i, "pad": "x".repeat(40)}))));
            let body = json_array(items).into_body();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("complete");
            let back: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("valid JSON");
            assert_eq!(back.len(), n);
            assert!(back.iter().enumerate().all(|(i, v)| v["i"] == i));
        }
    }

    #[tokio::test]
    async fn an_error_part_way_cuts_the_body_off() {
        let items = futures_util::stream::iter(vec![Ok(1), Err(OsbError::Internal("store gone".into()))]);
        let body = json_array(items).into_body();
        assert!(axum::body::to_bytes(body, usize::MAX).await.is_err(), "the client sees a broken body");
    }
}
