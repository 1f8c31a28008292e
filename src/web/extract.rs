//! Extractors whose rejections are OSB errors, so a malformed request never gets
//! axum's plain-text answer.
//!
//! The wire shapes hold bounded types (`crate::domain::bounded`), so a value over its
//! limit or with a forbidden character fails right here, and the 400 names the field
//! (the path into the body or the query parameter) and the limit. What the message
//! quotes back of the request is escaped and cut short ([`client_text`]): a refused
//! value never reaches a log line, a header or the platform's terminal raw, and a
//! 900 KB value is not echoed back whole.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use http_body::Body as _;
use serde::de::DeserializeOwned;

use super::AppState;
use super::reply::Platform;
use crate::error::OsbError;
use crate::serve::BodyTimeout;

/// The request body limit (larger bodies answer 413).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body. The `Content-Type` is not insisted on (OSB: a broker MAY parse a body
/// without it), so `curl -d` works as it did with the original.
#[derive(Debug)]
pub struct OsbJson<T>(pub T);

impl<S, T> FromRequest<S> for OsbJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OsbError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body announced (Content-Length) over the limit is refused before a byte of it
        // is read: a client waiting for `100 Continue` then need not send it at all.
        if req.body().size_hint().lower() > BODY_LIMIT as u64 {
            return Err(OsbError::PayloadTooLarge(BODY_LIMIT));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OsbError::PayloadTooLarge(BODY_LIMIT)
            } else if let Some(timeout) = BodyTimeout::find(&rejection) {
                // Named here too (the transport answers 408 anyway) so the audit log says why.
                OsbError::BodyTimeout(timeout.limit().as_secs())
            } else {
                OsbError::BadRequest(format!("cannot read the request body: {}", rejection.body_text()))
            }
        })?;
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            None => return Err(OsbError::BadRequest("the request body is empty; a JSON object is expected".into())),
            // Every esm request body is an object (serde would take a struct's array form).
            Some(b'{') => {}
            Some(_) => return Err(OsbError::BadRequest("the request body must be a JSON object".into())),
        }
        parse_json(&bytes).map(OsbJson)
    }
}

/// The body of a route that takes none: any body is refused (400), not ignored.
#[derive(Debug)]
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = OsbError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| bad_request("invalid body", &e.body_text()))?;
        if bytes.is_empty() { Ok(NoBody) } else { Err(OsbError::BadRequest("this route takes no body".into())) }
    }
}

/// An extractor of the request head over axum's `$axum`, whose rejection is an OSB
/// 400 in `$context` (the two differ only in those and in `Send`, which `Path` needs).
macro_rules! parts_extractor {
    ($(#[$doc:meta])* $name:ident over $axum:ident, $context:literal $(, $send:ident)?) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<T>(pub T);

        impl<S, T> FromRequestParts<S> for $name<T>
        where
            S: Send + Sync,
            T: DeserializeOwned $(+ $send)?,
        {
            type Rejection = OsbError;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
                $axum::<T>::from_request_parts(parts, state)
                    .await
                    .map(|$axum(value)| $name(value))
                    .map_err(|e| bad_request($context, &e.body_text()))
            }
        }
    };
}

// axum names the parameter (`service_id: a service id must be at most ...`).
parts_extractor!(
    /// Query parameters, as the query string has them.
    NamedQuery over Query, "invalid query string"
);

/// Query parameters. Parameters a route does not know are ignored (platforms add their
/// own), but one without a name (`?=x`) is malformed and refused.
#[derive(Debug)]
pub struct OsbQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for OsbQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = OsbError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|query| query.split('&').any(|pair| pair.starts_with('='))) {
            return Err(bad_request("invalid query string", "a parameter has no name"));
        }
        NamedQuery::from_request_parts(parts, state).await.map(|NamedQuery(value)| OsbQuery(value))
    }
}

// The bounded id types name themselves (`an instance id must be at most ...`).
parts_extractor!(
    /// Path parameters, percent-decoded.
    OsbPath over Path, "invalid path", Send
);

/// What an OSB handler reads of a request besides its body: the state, the path ids
/// `P`, the query `Q`, and the platform that asked (to answer it in its version). One
/// extractor for the lines every OSB handler began with; the path is read before the
/// query, so a request wrong in both is refused for its path, as before.
pub struct Osb<P, Q> {
    /// What handlers share.
    pub state: AppState,
    /// The path parameters.
    pub path: P,
    /// The query parameters.
    pub query: Q,
    /// Who asked: its version, and how to answer it.
    pub platform: Platform,
}

impl<P, Q> FromRequestParts<AppState> for Osb<P, Q>
where
    P: DeserializeOwned + Send,
    Q: DeserializeOwned,
{
    type Rejection = OsbError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let OsbPath(path) = OsbPath::from_request_parts(parts, state).await?;
        let OsbQuery(query) = OsbQuery::from_request_parts(parts, state).await?;
        let platform = Platform::of(&parts.headers, state.broker.settings().retry_after_seconds);
        Ok(Self { state: state.clone(), path, query, platform })
    }
}

/// Deserializes a JSON body; a failure names the path of the field that failed
/// (`plans[0].id: a plan id must be at most 255 bytes (got 900000)`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, OsbError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let detail = if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) };
        let hint = if e.inner().to_string().starts_with("control character") { RAW_CONTROL_HINT } else { "" };
        bad_request("invalid request body", &format!("{detail}{hint}"))
    })?;
    deserializer.end().map_err(|e| bad_request("invalid request body", &e.to_string()))?;
    Ok(value)
}

/// What to do about serde's "control character (\u0000-\u001F) found while parsing a
/// string": the commonest cause is a manifest pasted into a JSON string as it is.
const RAW_CONTROL_HINT: &str = " (a JSON string cannot hold a raw line break or tab: write them as \\n and \\t, \
     e.g. build the body with jq: jq -n --rawfile m manifest.yml '{manifest_content: $m, ...}')";

fn bad_request(context: &str, detail: &str) -> OsbError {
    OsbError::BadRequest(format!("{context}: {}", client_text(detail)))
}

/// The longest error detail quoted back to a client, in bytes.
const MAX_DETAIL_BYTES: usize = 512;

/// `detail` as it may be shown to a client: control and invisible formatting
/// characters escaped (serde's messages quote what was sent, some of it raw), and cut
/// at `MAX_DETAIL_BYTES`.
pub fn client_text(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len().min(MAX_DETAIL_BYTES + 8));
    for c in detail.chars() {
        let shown = if c == ' ' || crate::domain::bounded::Charset::Id.allows(c) {
            c.to_string()
        } else {
            c.escape_default().to_string()
        };
        if out.len() + shown.len() > MAX_DETAIL_BYTES {
            out.push_str("...");
            break;
        }
        out.push_str(&shown);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bounded::ServiceId;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Item {
        #[allow(dead_code)]
        id: ServiceId,
    }

    #[test]
    fn a_refused_field_is_named_with_its_limit() {
        let body = format!(r#"{{"items": [{{"id": "ok"}}, {{"id": "{}"}}]}}"#, "x".repeat(300));
        let err = parse_json::<Body>(body.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with("invalid request body: items[1].id: a service id must be at most 255 bytes"), "{err}");
    }

    #[test]
    fn what_a_message_quotes_is_escaped_and_cut_short() {
        let text = client_text(&format!("unknown variant `\u{1b}]0;x\u{7}{}`", "y".repeat(2000)));
        assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
        assert!(text.len() <= MAX_DETAIL_BYTES + 3, "{}", text.len());
        assert_eq!(client_text("a\u{1b}[2J\nb"), "a\\u{1b}[2J\\nb");
    }

    #[test]
    fn trailing_bytes_after_the_object_are_refused() {
        assert!(parse_json::<serde_json::Value>(b"{} x").is_err());
    }
}
