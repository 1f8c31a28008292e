//! Request bodies with a deadline: a body not read completely within
//! [`Limits::body_read`](super::Limits::body_read)(super::Limits::body_read) of its head fails the request with 408.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};
use tower::{Service, ServiceExt};

use super::watchdog::{Activity, Handling};
use crate::error::OsbError;

/// Hands each request to the router with a body deadline, counting it as handled.
#[derive(Clone)]
pub(super) struct RequestService<S> {
    pub(super) inner: S,
    pub(super) activity: Arc<Activity>,
    pub(super) body_read: Duration,
}

impl<S> hyper::service::Service<Request<Incoming>> for RequestService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let handling = Handling::start(self.activity.clone());
        let timed_out = Arc::new(AtomicBool::new(false));
        let limit = self.body_read;
        let req = req.map(|body| Body::new(DeadlineBody::new(body, limit, timed_out.clone())));
        let service = self.inner.clone();
        Box::pin(async move {
            let Ok(response) = service.oneshot(req).await;
            let response =
                if timed_out.load(Ordering::Relaxed) { after_body_timeout(response, limit) } else { response };
            drop(handling);
            Ok(response)
        })
    }
}

/// A request whose body did not arrive in time answers 408 (whatever its handler made
/// of the failed read) and closes the connection: the rest of the body is still on its way.
fn after_body_timeout(response: Response<Body>, limit: Duration) -> Response<Body> {
    let mut response = if response.status() == StatusCode::REQUEST_TIMEOUT {
        response
    } else {
        OsbError::BodyTimeout(limit.as_secs()).into_response()
    };
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body took longer than [`Limits::body_read`](super::Limits::body_read).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimeout(Duration);

impl BodyTimeout {
    /// The limit that was exceeded.
    pub fn limit(&self) -> Duration {
        self.0
    }

    /// The body timeout behind `error`, if that is why it failed (extractors wrap it).
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a BodyTimeout> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(timeout) = e.downcast_ref::<BodyTimeout>() {
                return Some(timeout);
            }
            current = e.source();
        }
        None
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline has passed.
struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    deadline: Instant,
    /// Made on the first wait only: most bodies are empty or already buffered.
    timer: Option<Pin<Box<Sleep>>>,
    /// Tells the request service the body ran out of time.
    timed_out: Arc<AtomicBool>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration, timed_out: Arc<AtomicBool>) -> Self {
        Self { inner, limit, deadline: Instant::now() + limit, timer: None, timed_out }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
