//! The transport under both ports: one accept loop per listener that bounds what a
//! client can hold, so slow or stalled clients cannot starve the others.
//!
//! - **Header read**: the whole request head must arrive within [`Limits::header_read`]
//!   (hyper's HTTP/1 header timer). In hyper 1.12 that timer also runs while a kept-alive
//!   connection waits for its next request, so on HTTP/1.1 a kept-alive connection is
//!   closed after the shorter of the header and idle timeouts.
//! - **Idle** (`serve/watchdog.rs`): a connection with no request being handled and
//!   nothing written for [`Limits::idle`] is closed. Before its first request the
//!   shorter of the header and idle timeouts applies: the auto builder waits for the
//!   first bytes (to tell HTTP/2 from HTTP/1) before hyper's HTTP/1 code, and its header
//!   timer, start.
//! - **Body read** (`serve/body.rs`): a request body must be read completely within
//!   [`Limits::body_read`] of its head; otherwise the request fails with 408 and the
//!   connection is closed.
//! - **Connections**: at most [`Limits::max_connections`] at once per port. When all are
//!   taken the loop stops accepting; new clients wait in the kernel's backlog instead
//!   of costing a file descriptor each.
//!
//! On shutdown the loop stops accepting, every connection finishes the request it is
//! handling and closes, and [`serve`] returns once all are gone, or once its drain
//! time is up (the connections still open are counted in a warning and left to the
//! process's exit).
//!
//! Only HTTP/1.1 is served, as `axum::serve` did in this build (hyper's `http2` feature
//! is off): hyper has no header timer for HTTP/2, and no platform esm serves needs it.

mod body;
mod watchdog;

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

pub use body::BodyTimeout;
use body::RequestService;
use watchdog::{Activity, Tracked, Verdict, Watchdog};

use crate::config::Config;

/// File descriptors kept free for everything but client connections: the listeners,
/// the store's files, MongoDB's pool, the Docker socket, logs.
pub const FD_RESERVE: u64 = 128;

/// The pause after a failed `accept` (out of file descriptors, memory), so that the
/// loop does not spin while the cause lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How often a failing `accept` is logged at most.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// What one port allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole request head must arrive within this.
    pub header_read: Duration,
    /// A connection with no request being handled and nothing written for this long is
    /// closed.
    pub idle: Duration,
    /// A request body must be read completely within this, counted from its head.
    pub body_read: Duration,
    /// Connections served at once on one port.
    pub max_connections: usize,
}

impl Limits {
    /// The limits the config asks for; zero is taken as the least, one second or one
    /// connection, so that no setting can switch a defence off.
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read: Duration::from_secs(config.header_read_timeout),
            idle: Duration::from_secs(config.idle_timeout),
            body_read: Duration::from_secs(config.body_read_timeout),
            max_connections: config.max_connections,
        }
    }
}

/// Raises the soft open-file limit to the hard one where the platform allows, and
/// returns the per-port connection cap that lets `ports` ports at `requested` each, plus
/// [`FD_RESERVE`], fit under it: `requested`, or less (with a warning) when they would not.
pub fn fit_connection_cap(requested: usize, ports: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::Resource::NOFILE.get().ok().map(|(soft, _hard)| soft)
        }
    };
    let cap = cap_under_limit(requested, ports, limit);
    if cap < requested {
        tracing::warn!(
            requested,
            effective = cap,
            open_file_limit = limit,
            reserve = FD_RESERVE,
            "ESM_MAX_CONNECTIONS lowered to fit both ports under the open-file limit; raise `ulimit -n` to allow more"
        );
    }
    cap
}

/// `requested`, or what fits under `limit` for `ports` ports after the reserve (at least 1).
fn cap_under_limit(requested: usize, ports: usize, limit: Option<u64>) -> usize {
    let Some(limit) = limit else { return requested.max(1) };
    let per_port = limit.saturating_sub(FD_RESERVE) / (ports.max(1) as u64);
    requested.min(usize::try_from(per_port).unwrap_or(usize::MAX)).max(1)
}

/// Serves `service` on `listener` until `stop` is cancelled, then lets every connection
/// finish the request it is handling and returns once all are closed or `drain` has
/// passed.
pub async fn serve<S>(listener: TcpListener, service: S, limits: Limits, stop: CancellationToken, drain: Duration)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let connections = TaskTracker::new();
    let mut failures = AcceptFailures::default();
    loop {
        // A free slot before accepting: when all are taken, new clients wait in the
        // kernel's backlog rather than each holding a file descriptor here.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit,
            () = stop.cancelled() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((stream, _peer)) => {
                connections.spawn(serve_connection(stream, service.clone(), limits, stop.clone(), permit));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                drop(permit);
                failures.record(&e);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    // Closing the listener first: clients get "connection refused" while we drain.
    drop(listener);
    connections.close();
    if tokio::time::timeout(drain, connections.wait()).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            seconds = drain.as_secs_f32(),
            "requests still running when the stop's time for them was up; left unanswered"
        );
    }
}

/// Errors of one connection that was reset before it was accepted: nothing to back off from.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Logs failing `accept`s at most once per [`ACCEPT_LOG_INTERVAL`], with how many were not logged.
#[derive(Default)]
struct AcceptFailures {
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    fn record(&mut self, e: &io::Error) {
        let now = Instant::now();
        if self.last_logged.is_some_and(|at| now < at + ACCEPT_LOG_INTERVAL) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(error = %e, also_failed = self.unlogged, "accept failed; backing off");
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

/// Serves one connection; the permit frees its slot when the connection is gone.
async fn serve_connection<S>(
    stream: TcpStream,
    service: S,
    limits: Limits,
    stop: CancellationToken,
    _permit: OwnedSemaphorePermit,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let activity = Arc::new(Activity::new());
    let io = Tracked { inner: TokioIo::new(stream), activity: activity.clone() };
    let requests = RequestService { inner: service, activity: activity.clone(), body_read: limits.body_read };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    let conn = builder.serve_connection(io, requests);
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new(limits);
    loop {
        let deadline = watchdog.deadline(&activity);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                break;
            }
            () = stop.cancelled(), if !watchdog.is_closing() => {
                // Finish the request being handled, then close; the watchdog drops the
                // connection if it stays quiet (a half-sent head) instead.
                conn.as_mut().graceful_shutdown();
                watchdog.close();
            }
            () = tokio::time::sleep_until(deadline) => match watchdog.check(&activity) {
                Verdict::Wait => {}
                Verdict::Close => {
                    tracing::debug!("closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                }
                Verdict::Drop => {
                    tracing::debug!("dropping a connection that did not close");
                    break;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_free_for_both_ports() {
        assert_eq!(cap_under_limit(1024, 2, Some(1_048_576)), 1024);
        assert_eq!(cap_under_limit(1024, 2, Some(1024)), (1024 - 128) / 2);
        assert_eq!(cap_under_limit(1024, 2, Some(100)), 1, "never zero");
        assert_eq!(cap_under_limit(1024, 2, None), 1024);
        assert_eq!(cap_under_limit(0, 2, None), 1);
    }
}
