//! The API port's request metrics: a layer that counts each response by route
//! template, method and status, and times it.
//!
//! Applied with `Router::layer`, so it wraps each route (and the fallbacks) inside the
//! router, where axum has put the [`MatchedPath`] in the request: the label is the
//! template (`/v2/service_instances/{instance_id}`), never the path a client sent. A
//! path no route serves is labelled [`UNMATCHED`], and a method outside HTTP's own
//! `other`, so hostile URLs cannot grow the number of series.
//!
//! A hand-written service and future rather than `axum::middleware::from_fn`: the
//! latter boxes a clone of the inner service and two futures per request (see the
//! note on `V2Layer`); this adds nothing to the heap.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use tower::{Layer, Service};

use super::Metrics;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// A route template as a label value.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// The template axum matched (a cheap clone: it shares the router's string).
    Matched(MatchedPath),
    /// No route: the fallback answered.
    Unmatched,
}

impl Route {
    fn as_str(&self) -> &str {
        match self {
            Self::Matched(path) => path.as_str(),
            Self::Unmatched => UNMATCHED,
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The method as a label: HTTP's own methods by name, anything else `other` (hyper
/// accepts any token as a method).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts and times every request of the routes it wraps.
#[derive(Clone, Debug)]
pub struct HttpMetricsLayer {
    metrics: Metrics,
}

impl HttpMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetricsService { inner, metrics: self.metrics.clone() }
    }
}

/// A route wrapped in [`HttpMetricsLayer`].
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S> Service<Request> for HttpMetricsService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned().map_or(Route::Unmatched, Route::Matched);
        let method = method_label(req.method());
        let started = Instant::now();
        Timed { inner: self.inner.call(req), record: Some((self.metrics.clone(), route, method, started)) }
    }
}

pin_project_lite::pin_project! {
    /// A route's response future; records the response when it is ready. A request
    /// whose client went away before the response is not recorded: it got none.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        record: Option<(Metrics, Route, &'static str, Instant)>,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some((metrics, route, method, started))) = (&result, this.record.take()) {
            metrics.http_request(route, method, response.status().as_u16(), started.elapsed());
        }
        Poll::Ready(result)
    }
}
