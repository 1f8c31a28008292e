//! When a connection has been quiet too long: no request being handled and nothing
//! written. Reads do not count, so a client trickling bytes keeps nothing open (the
//! header and body timeouts bound those).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::Instant;

use super::Limits;

/// How long a connection that was told to close (idle, or esm is stopping) may go on
/// without handling a request or writing a byte before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What a connection is doing, shared by its I/O, its requests and its watchdog.
pub(super) struct Activity {
    /// When the connection was accepted; the origin of `last_progress_ms`.
    accepted: Instant,
    /// Requests whose handler has not answered yet: while any is, the connection is busy.
    handling: AtomicUsize,
    /// Whether a request arrived at all: before the first, the header timeout applies.
    seen_request: AtomicBool,
    /// Milliseconds after `accepted` of the last progress: a request starting or
    /// answered, or bytes written. Reads do not count, so that a trickle of bytes from
    /// the client does not keep a connection open.
    last_progress_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            accepted: Instant::now(),
            handling: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            last_progress_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn progress(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last_progress(&self) -> Instant {
        self.accepted + Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed))
    }

    fn is_handling(&self) -> bool {
        self.handling.load(Ordering::Acquire) > 0
    }
}

/// Counts a request as being handled for as long as it lives.
pub(super) struct Handling(Arc<Activity>);

impl Handling {
    pub(super) fn start(activity: Arc<Activity>) -> Self {
        activity.handling.fetch_add(1, Ordering::AcqRel);
        activity.seen_request.store(true, Ordering::Relaxed);
        activity.progress();
        Self(activity)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.progress();
        self.0.handling.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the watchdog decided.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not quiet long enough yet.
    Wait,
    /// Quiet too long: ask the connection to close.
    Close,
    /// Asked to close and still quiet: drop it.
    Drop,
}

/// Decides when a connection has been quiet too long: no request being handled and
/// nothing written.
pub(super) struct Watchdog {
    limits: Limits,
    /// Set when the connection was asked to close (idle, or esm is stopping).
    closing_since: Option<Instant>,
}

impl Watchdog {
    pub(super) fn new(limits: Limits) -> Self {
        Self { limits, closing_since: None }
    }

    pub(super) fn is_closing(&self) -> bool {
        self.closing_since.is_some()
    }

    /// Asks for the close: from now on, [`CLOSE_GRACE`] of quiet drops the connection.
    pub(super) fn close(&mut self) {
        self.closing_since = Some(Instant::now());
    }

    /// How long the connection may stay quiet.
    fn allowed_quiet(&self, activity: &Activity) -> Duration {
        if self.is_closing() {
            CLOSE_GRACE
        } else if activity.seen_request.load(Ordering::Relaxed) {
            self.limits.idle
        } else {
            self.limits.idle.min(self.limits.header_read)
        }
    }

    /// When to check again.
    pub(super) fn deadline(&self, activity: &Activity) -> Instant {
        let allowed = self.allowed_quiet(activity);
        if activity.is_handling() {
            // Handlers may take long (a synchronous provision); look again later.
            return Instant::now() + allowed;
        }
        let quiet_since = match self.closing_since {
            Some(at) => activity.last_progress().max(at),
            None => activity.last_progress(),
        };
        quiet_since + allowed
    }

    pub(super) fn check(&mut self, activity: &Activity) -> Verdict {
        if activity.is_handling() || Instant::now() < self.deadline(activity) {
            Verdict::Wait
        } else if self.is_closing() {
            Verdict::Drop
        } else {
            self.close();
            Verdict::Close
        }
    }
}

/// The connection's I/O, recording written bytes as progress.
pub(super) struct Tracked<T> {
    pub(super) inner: T,
    pub(super) activity: Arc<Activity>,
}

impl<T: Read + Unpin> Read for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.progress();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.progress();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
        body_read: Duration::from_secs(30),
        max_connections: 1024,
    };

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
        let activity = Activity::new();
        let mut watchdog = Watchdog::new(LIMITS);
        assert_eq!(watchdog.deadline(&activity), activity.accepted + LIMITS.header_read);
        tokio::time::advance(LIMITS.header_read - Duration::from_millis(1)).await;
        assert_eq!(watchdog.check(&activity), Verdict::Wait);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(watchdog.check(&activity), Verdict::Close);
        tokio::time::advance(CLOSE_GRACE).await;
        assert_eq!(watchdog.check(&activity), Verdict::Drop);
    }

    /// A connection's activity with a request being handled, and its watchdog.
    fn handling_a_request() -> (Arc<Activity>, Watchdog, Handling) {
        let activity = Arc::new(Activity::new());
        let handling = Handling::start(activity.clone());
        (activity, Watchdog::new(LIMITS), handling)
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_being_handled_keeps_the_connection_and_the_idle_time_counts_from_its_answer() {
        let (activity, mut watchdog, handling) = handling_a_request();
        tokio::time::advance(LIMITS.idle * 3).await;
        assert_eq!(watchdog.check(&activity), Verdict::Wait, "a slow handler is not idle");
        drop(handling);
        let answered = Instant::now();
        assert_eq!(watchdog.deadline(&activity), answered + LIMITS.idle);
        tokio::time::advance(LIMITS.idle - Duration::from_secs(1)).await;
        activity.progress(); // the response is still being written
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(watchdog.check(&activity), Verdict::Wait);
        tokio::time::advance(LIMITS.idle).await;
        assert_eq!(watchdog.check(&activity), Verdict::Close);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closing_connection_is_dropped_only_when_quiet() {
        let (activity, mut watchdog, handling) = handling_a_request();
        watchdog.close(); // esm is stopping
        tokio::time::advance(CLOSE_GRACE * 10).await;
        assert_eq!(watchdog.check(&activity), Verdict::Wait, "the request in flight finishes");
        drop(handling);
        tokio::time::advance(CLOSE_GRACE).await;
        assert_eq!(watchdog.check(&activity), Verdict::Drop);
    }
}
