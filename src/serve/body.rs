//! Request bodies with a deadline: a body not read completely within
//! [`Limits::body_read`](super::Limits::body_read) of its head fails the request with 408.
//!
//! A body its handler left unread (a 413 decided from `Content-Length`, a 401 before
//! the body was looked at) is read and discarded before the answer goes out, up to
//! [`DRAIN_LIMIT`] and within the same deadline. A client may send its whole body
//! before it reads anything; closing a socket with unread data in it makes the kernel
//! reset the connection, and that client would see the reset instead of the answer.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
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
        if req.body().is_end_stream() {
            // No body (most GETs): nothing to time out or drain, so none of the
            // bookkeeping below, which would cost this request three allocations.
            let service = self.inner.clone();
            let req = req.map(|_| Body::empty());
            return Box::pin(async move {
                let Ok(response) = service.oneshot(req).await;
                drop(handling);
                Ok(response)
            });
        }
        let limit = self.body_read;
        let deadline = Instant::now() + limit;
        let state = Arc::new(BodyState::default());
        let expects_continue = expects_continue(req.headers());
        let req = req.map(|body| Body::new(DeadlineBody::new(body, limit, deadline, state.clone())));
        let service = self.inner.clone();
        Box::pin(async move {
            let Ok(mut response) = service.oneshot(req).await;
            if state.timed_out.load(Ordering::Relaxed) {
                response = after_body_timeout(response, limit);
            } else if let Some(body) = state.leftover.lock().ok().and_then(|mut slot| slot.take()) {
                // A client waiting for `100 Continue` that never came has sent nothing
                // and sends nothing now: hyper answers it without reading.
                let sent_nothing = expects_continue && !state.polled.load(Ordering::Relaxed);
                if !sent_nothing && !drain(body, deadline).await {
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
            drop(handling);
            Ok(response)
        })
    }
}

/// The most of an unread body esm reads (and discards) so that its client sees the
/// answer; a larger one is left, and the connection closed.
pub(super) const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

/// Reads and discards the rest of a body, at most [`DRAIN_LIMIT`] bytes and until
/// `deadline`. Whether it ended (so the connection can serve another request).
async fn drain(mut body: Incoming, deadline: Instant) -> bool {
    if body.size_hint().lower() > DRAIN_LIMIT {
        return false;
    }
    let mut left = DRAIN_LIMIT;
    let read_to_end = async {
        loop {
            match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(frame)) => {
                    let read = frame.data_ref().map_or(0, |data| data.len() as u64);
                    let Some(rest) = left.checked_sub(read) else { return false };
                    left = rest;
                }
            }
        }
    };
    tokio::time::timeout_at(deadline, read_to_end).await.unwrap_or(false)
}

/// Whether the client waits for `100 Continue` before sending its body.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// What a request's body tells the connection once its handler has answered.
#[derive(Default)]
struct BodyState {
    /// The body ran out of time (the answer becomes 408).
    timed_out: AtomicBool,
    /// The handler asked for the body at least once (so hyper sent `100 Continue`).
    polled: AtomicBool,
    /// The body as the handler dropped it, if it had not ended: left to drain.
    leftover: Mutex<Option<Incoming>>,
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
    /// Always `Some` until dropped, when an unfinished body goes to `state.leftover`.
    inner: Option<Incoming>,
    limit: Duration,
    deadline: Instant,
    /// Made on the first wait only: most bodies are empty or already buffered.
    timer: Option<Pin<Box<Sleep>>>,
    /// Tells the request service what became of the body.
    state: Arc<BodyState>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration, deadline: Instant, state: Arc<BodyState>) -> Self {
        Self { inner: Some(inner), limit, deadline, timer: None, state }
    }
}

impl Drop for DeadlineBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take().filter(|inner| !inner.is_end_stream())
            && let Ok(mut slot) = self.state.leftover.lock()
        {
            *slot = Some(inner);
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        this.state.polled.store(true, Ordering::Relaxed);
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            this.state.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Incoming::size_hint).unwrap_or_default()
    }
}
