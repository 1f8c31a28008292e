//! The layers every `/v2` request passes: access/audit log with request identity,
//! basic auth (or, on a liveness report only, an instance's reporting token, checked by
//! its handler), and the API version check; plus the path clean-up in front of routing.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::{Layer, Service};

use super::reply;
use super::route::{self, Caller, Route};
use super::version::{ApiVersion, NEWEST_MINOR, OLDEST_MINOR, version_header};
use crate::broker::Reporter;
use crate::error::OsbError;

/// OSB request identity, echoed back on the response (OSB 2.15).
pub const REQUEST_IDENTITY: HeaderName = HeaderName::from_static("x-broker-api-request-identity");
/// OSB originating identity: `<platform> <base64 JSON>` (OSB 2.13).
pub const ORIGINATING_IDENTITY: HeaderName = HeaderName::from_static("x-broker-api-originating-identity");

/// `//v2/et/manifest/x` is served as `/v2/et/manifest/x`: the ElasTest platform's
/// configured URL has a trailing slash and it appends `/v2/...`, so it sends double
/// slashes. Runs before routing.
pub fn collapse_slashes(mut req: Request) -> Request {
    let uri = req.uri();
    if !uri.path().contains("//") {
        return req;
    }
    let mut path = String::with_capacity(uri.path().len());
    for ch in uri.path().chars() {
        if !(ch == '/' && path.ends_with('/')) {
            path.push(ch);
        }
    }
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = path.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(clean) = Uri::from_parts(parts) {
            *req.uri_mut() = clean;
        }
    }
    req
}

/// Basic-auth credentials, kept as SHA-256 digests so that comparing them takes the
/// same time whatever the input (no length or prefix leaks).
#[derive(Clone)]
pub struct BasicAuth {
    user: [u8; 32],
    pass: [u8; 32],
}

impl BasicAuth {
    /// Expects these credentials.
    pub fn new(user: &str, pass: &str) -> Self {
        Self { user: Sha256::digest(user.as_bytes()).into(), pass: Sha256::digest(pass.as_bytes()).into() }
    }

    /// Whether `headers` carry the expected credentials (compared in constant time).
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(decoded) = basic_credentials(headers) else {
            return false;
        };
        // Credentials are text, as they always had to be.
        let Some((user, pass)) = std::str::from_utf8(&decoded).ok().and_then(|text| text.split_once(':')) else {
            return false;
        };
        let user_ok = self.user.ct_eq(&<[u8; 32]>::from(Sha256::digest(user.as_bytes())));
        let pass_ok = self.pass.ct_eq(&<[u8; 32]>::from(Sha256::digest(pass.as_bytes())));
        (user_ok & pass_ok).into()
    }
}

/// The token of a bearer `Authorization` header on the one kind of route a reporting
/// token may call ([`Caller::BrokerOrReporter`], the liveness report), if it is one.
/// Checked by the handler (against the instance's bindings), not here: the layer does
/// not read the store.
fn report_token(req: &Request, row: Option<&Route>) -> Option<String> {
    if row?.caller != Caller::BrokerOrReporter {
        return None;
    }
    let value = req.headers().get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

/// The decoded `user:pass` of a basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<Vec<u8>> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    BASE64.decode(encoded.trim()).ok()
}

/// 412 unless `X-Broker-API-Version` is 2.12 or later in the 2.x line.
///
/// Exempt: a path no route matches (the fallback answers it 404: a header cannot make
/// it exist), and the rows of the route table marked [`route::Version::Exempt`]. A
/// method no row serves on a matched path (405) is checked.
fn version_refusal(req: &Request, matched: bool, row: Option<&Route>) -> Option<OsbError> {
    if !matched || row.is_some_and(Route::exempt) {
        return None;
    }
    check_version(req.headers()).err()
}

fn check_version(headers: &HeaderMap) -> Result<(), OsbError> {
    // Made only for a refusal: the check runs on every request.
    let supported = || format!("esm supports 2.{OLDEST_MINOR} to 2.{NEWEST_MINOR}");
    let Some(text) = version_header(headers) else {
        return Err(OsbError::UnsupportedVersion(format!(
            "the X-Broker-API-Version header is missing; {}",
            supported()
        )));
    };
    match ApiVersion::parse(text) {
        Some(version) if version.0 >= OLDEST_MINOR => Ok(()),
        _ => Err(OsbError::UnsupportedVersion(format!(
            "X-Broker-API-Version {text:?} is not supported; {}",
            supported()
        ))),
    }
}

/// Who asked, from the originating identity header.
#[derive(Debug, Default, PartialEq)]
struct Originator {
    platform: String,
    user: String,
}

fn originator(header: &HeaderValue) -> Option<Originator> {
    let value = header.to_str().ok()?;
    let (platform, encoded) = value.trim().split_once(' ')?;
    let user = BASE64
        .decode(encoded.trim())
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .map(|json| {
            ["user_id", "username", "user", "uid"]
                .iter()
                .find_map(|k| json.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| json.to_string())
        })
        .unwrap_or_else(|| "<undecodable>".to_owned());
    Some(Originator { platform: platform.to_owned(), user })
}

/// What every `/v2` route is wrapped in, outermost first: the audit line and the echo of
/// the request identity, `Retry-After` on a 503, basic auth (when credentials are set),
/// the version check, and the error body as the request's version sees it. Each step
/// asks the route table (`route.rs`) about the matched route.
///
/// One hand-written service rather than an `axum::middleware::from_fn` layer per step:
/// each of those boxes a clone of the service it wraps and two futures per request, and
/// each `Router::layer` call wraps every route once more. On the catalog, served from
/// memory, that was most of what esm itself spent on a request.
#[derive(Clone)]
pub struct V2Layer {
    /// The broker credentials; `None` leaves the API open.
    auth: Option<Arc<BasicAuth>>,
    /// `Retry-After` on a 503 (`ESM_RETRY_AFTER`).
    retry_after: HeaderValue,
}

impl V2Layer {
    /// Checks `auth` when given; a 503 tells the platform to come back in `retry_after_seconds`.
    pub fn new(auth: Option<BasicAuth>, retry_after_seconds: u64) -> Self {
        Self { auth: auth.map(Arc::new), retry_after: retry_after(retry_after_seconds).1 }
    }
}

impl<S> Layer<S> for V2Layer {
    type Service = V2Service<S>;

    fn layer(&self, inner: S) -> Self::Service {
        V2Service { inner, layer: self.clone() }
    }
}

/// A `/v2` route wrapped in [`V2Layer`].
#[derive(Clone)]
pub struct V2Service<S> {
    inner: S,
    layer: V2Layer,
}

impl<S> Service<Request> for V2Service<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // The service that was made ready is the one called; a clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let layer = self.layer.clone();
        Box::pin(async move {
            // The route table says what the request is: one look-up serves every step.
            let matched = req.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
            let row = matched.and_then(|path| Route::find(req.method(), path));
            let audit = Audit::start(&req, route::audit_name(row, matched));
            // A liveness report with a reporting token goes on to its handler, which
            // checks the token; an instance is no platform, and needs no OSB version.
            let refusal = if let Some(token) = report_token(&req, row) {
                req.extensions_mut().insert(Reporter::Token(token));
                None
            } else {
                match &layer.auth {
                    Some(auth) if !auth.accepts(req.headers()) => Some(OsbError::Unauthorized),
                    _ => version_refusal(&req, matched.is_some(), row),
                }
            };
            let mut response = match refusal {
                Some(refusal) => refusal.into_response(),
                None => {
                    let version = ApiVersion::of(req.headers());
                    let mut response = match inner.call(req).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    // Here, once, for every route: an error as the client's version sees it.
                    reply::version_error(&mut response, version);
                    response
                }
            };
            // Every 503 on the API port (the store is down, esm is stopping) says when to
            // come back, unless it already does.
            if response.status() == StatusCode::SERVICE_UNAVAILABLE
                && !response.headers().contains_key(axum::http::header::RETRY_AFTER)
            {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, layer.retry_after);
            }
            audit.finish(&mut response);
            Ok(response)
        })
    }
}

/// What the audit line needs from a request, taken before the request is handed on.
/// Cloning these shares their bytes; nothing is decoded until the line is written.
struct Audit {
    started: Instant,
    /// The broker operation, from the route table.
    operation: &'static str,
    method: Method,
    uri: Uri,
    request_identity: Option<HeaderValue>,
    origin: Option<HeaderValue>,
}

impl Audit {
    fn start(req: &Request, operation: &'static str) -> Self {
        Self {
            started: Instant::now(),
            operation,
            method: req.method().clone(),
            uri: req.uri().clone(),
            request_identity: req.headers().get(&REQUEST_IDENTITY).cloned(),
            origin: req.headers().get(&ORIGINATING_IDENTITY).cloned(),
        }
    }

    /// Echoes the request identity and writes one audit line: the broker operation, its
    /// outcome, the request identity and who originated it. Failures are logged here,
    /// once, with the error the handler returned.
    fn finish(self, response: &mut Response) {
        let Self { started, operation, method, uri, request_identity, origin } = self;
        if let Some(identity) = &request_identity {
            response.headers_mut().insert(REQUEST_IDENTITY, identity.clone());
        }
        let status = response.status().as_u16();
        // What the request did not carry is left out of the line (an `Option` field
        // that is `None` is not written), not written empty.
        let request_id = request_identity.as_ref().and_then(|v| v.to_str().ok());
        let origin = origin.as_ref().and_then(originator);
        let platform = origin.as_ref().map(|o| o.platform.as_str()).filter(|p| !p.is_empty());
        let user = origin.as_ref().map(|o| o.user.as_str()).filter(|u| !u.is_empty());
        let error = response.extensions().get::<OsbError>().map(|e| e.to_string());
        // To the hundredth of a millisecond: what a reader can use, without float noise.
        let millis = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
        let path = uri.path();
        match (status, error) {
            (500.., Some(error)) => tracing::error!(
                target: "esm::audit", operation, %method, path, status, request_id,
                platform, user, millis, error, "request failed"
            ),
            (_, Some(error)) => tracing::info!(
                target: "esm::audit", operation, %method, path, status, request_id,
                platform, user, millis, error, "request refused"
            ),
            _ => tracing::info!(
                target: "esm::audit", operation, %method, path, status, request_id,
                platform, user, millis, "request served"
            ),
        }
    }
}

/// `Retry-After` value in seconds.
pub fn retry_after(seconds: u64) -> (HeaderName, HeaderValue) {
    (axum::http::header::RETRY_AFTER, HeaderValue::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(HeaderName::from_bytes(k.as_bytes()).expect("name"), HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    #[test]
    fn versions_from_2_12_up_are_accepted() {
        for ok in ["2.12", "2.13", "2.17", "2.99", "2.12.0"] {
            assert!(check_version(&headers(&[("x-broker-api-version", ok)])).is_ok(), "{ok}");
        }
        for bad in ["2.11", "1.12", "3.0", "two", ""] {
            assert!(check_version(&headers(&[("x-broker-api-version", bad)])).is_err(), "{bad}");
        }
        assert!(check_version(&headers(&[])).is_err());
        assert!(check_version(&headers(&[("x_broker_api_version", "2.12")])).is_ok());
    }

    #[test]
    fn basic_auth_checks_both_halves() {
        let auth = BasicAuth::new("admin", "secret");
        let good = format!("Basic {}", BASE64.encode("admin:secret"));
        let bad = format!("Basic {}", BASE64.encode("admin:wrong"));
        assert!(auth.accepts(&headers(&[("authorization", &good)])));
        assert!(!auth.accepts(&headers(&[("authorization", &bad)])));
        assert!(!auth.accepts(&headers(&[("authorization", "Basic !!!")])));
        assert!(!auth.accepts(&headers(&[])));
    }

    #[test]
    fn originating_identity_is_decoded() {
        let value = format!("cloudfoundry {}", BASE64.encode(r#"{"user_id":"683ea748"}"#));
        let origin = originator(&HeaderValue::from_str(&value).expect("value")).expect("parsed");
        assert_eq!(origin, Originator { platform: "cloudfoundry".into(), user: "683ea748".into() });
        let garbage = originator(&HeaderValue::from_static("kubernetes ???")).expect("platform kept");
        assert_eq!(garbage.user, "<undecodable>");
    }

    #[test]
    fn double_slashes_collapse() {
        let req = Request::builder().uri("//v2//et/manifest/x?a=b//c").body(axum::body::Body::empty()).expect("req");
        assert_eq!(collapse_slashes(req).uri().to_string(), "/v2/et/manifest/x?a=b//c");
    }
}
