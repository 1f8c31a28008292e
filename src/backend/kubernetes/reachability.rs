//! Whether the API server answers, logged as it changes rather than once per request.
//!
//! While the API server is down every watch retries with backoff and every liveness
//! look and probe fails; kube-rs's client would log each failed request at ERROR
//! (several lines a second). esm turns that target off ([`quiet_client_failures`]) and
//! wraps the client in a layer ([`Watched`]) that feeds a [`Limiter`]: the first failure
//! is one WARN line, then at most one line per [`INTERVAL`] with the number of failures
//! since the last, and one INFO line when the server answers again.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::Response;
use tower::{Layer, Service};
use tracing_subscriber::EnvFilter;

/// The longest quiet while the API server keeps failing.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// The tracing target of kube-rs's per-request failure lines.
const CLIENT_TARGET: &str = "kube_client::client::builder";

/// `filter` with kube-rs's per-request lines off, unless `rust_log` (the `RUST_LOG`
/// the operator set) names `kube_client`: they asked for them.
pub fn quiet_client_failures(filter: EnvFilter, rust_log: Option<&str>) -> EnvFilter {
    if rust_log.is_some_and(|log| log.contains("kube_client")) {
        return filter;
    }
    filter.add_directive(format!("{CLIENT_TARGET}=off").parse().expect("a valid directive"))
}

/// A line to log about the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// It failed, after answering.
    Down,
    /// It still fails: `failures` since the last line, failing for `since`.
    StillDown { failures: u64, since: Duration },
    /// It answers again after `failures` failures over `after`.
    Up { failures: u64, after: Duration },
}

/// Decides which failures and recoveries are worth a line; time is given, not read.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the current run of failures began; `None` while the server answers.
    failing_since: Option<Instant>,
    /// When the last line about this run was logged.
    last_line: Option<Instant>,
    /// Failures not yet counted in a line.
    unreported: u64,
    /// Failures in this run.
    failures: u64,
}

impl Limiter {
    /// A limiter logging at most once per `interval` while failures go on.
    pub fn new(interval: Duration) -> Self {
        Self { interval, state: Mutex::new(State::default()) }
    }

    /// A request failed at `now`: the line to log, if any.
    pub fn failed(&self, now: Instant) -> Option<Line> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failures += 1;
        let Some(since) = state.failing_since else {
            state.failing_since = Some(now);
            state.last_line = Some(now);
            return Some(Line::Down);
        };
        state.unreported += 1;
        let last = state.last_line.unwrap_or(since);
        if now.saturating_duration_since(last) < self.interval {
            return None;
        }
        state.last_line = Some(now);
        let failures = std::mem::take(&mut state.unreported);
        Some(Line::StillDown { failures, since: now.saturating_duration_since(since) })
    }

    /// A request was answered at `now`: the line to log, if the server was failing.
    pub fn answered(&self, now: Instant) -> Option<Line> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let since = state.failing_since?;
        let failures = state.failures;
        *state = State::default();
        Some(Line::Up { failures, after: now.saturating_duration_since(since) })
    }
}

/// Logs `line`; `error` is the failure that caused it.
fn log(line: &Line, error: &str) {
    match line {
        Line::Down => tracing::warn!(
            error,
            "the Kubernetes API server does not answer; further failures are summarised every {}s",
            INTERVAL.as_secs()
        ),
        Line::StillDown { failures, since } => tracing::warn!(
            error,
            failures,
            failing_for_s = since.as_secs(),
            "the Kubernetes API server still does not answer"
        ),
        Line::Up { failures, after } => {
            tracing::info!(failures, after_s = after.as_secs(), "the Kubernetes API server answers again")
        }
    }
}

/// The layer that watches every request of the client.
#[derive(Debug, Clone)]
pub struct Watch {
    limiter: Arc<Limiter>,
}

impl Watch {
    /// A layer with its own limiter.
    pub fn new() -> Self {
        Self { limiter: Arc::new(Limiter::new(INTERVAL)) }
    }
}

impl<S> Layer<S> for Watch {
    type Service = Watched<S>;
    fn layer(&self, inner: S) -> Watched<S> {
        Watched { inner, limiter: Arc::clone(&self.limiter) }
    }
}

/// The client's service, watched: a transport error or a 5xx is a failure, any other
/// answer a success.
#[derive(Debug, Clone)]
pub struct Watched<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S, R, B> Service<R> for Watched<S>
where
    S: Service<R, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let limiter = Arc::clone(&self.limiter);
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            let now = Instant::now();
            match &result {
                Err(e) => {
                    if let Some(line) = limiter.failed(now) {
                        log(&line, &e.to_string());
                    }
                }
                Ok(response) if response.status().is_server_error() => {
                    if let Some(line) = limiter.failed(now) {
                        log(&line, &format!("status {}", response.status()));
                    }
                }
                Ok(_) => {
                    if let Some(line) = limiter.answered(now) {
                        log(&line, "");
                    }
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_one_line_then_one_per_interval_then_one_on_recovery() {
        let limiter = Limiter::new(Duration::from_secs(60));
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(limiter.answered(at(0)), None, "answers while up say nothing");
        assert_eq!(limiter.failed(at(0)), Some(Line::Down));
        // 3.4 failures a second for a minute: silent until the interval is over.
        let silent = (1..204).filter_map(|n| limiter.failed(at(n * 294))).count();
        assert_eq!(silent, 0);
        assert_eq!(limiter.failed(at(60_000)), Some(Line::StillDown { failures: 204, since: Duration::from_secs(60) }));
        assert_eq!(limiter.failed(at(61_000)), None);
        assert_eq!(limiter.failed(at(120_000)), Some(Line::StillDown { failures: 2, since: Duration::from_secs(120) }));
        assert_eq!(limiter.answered(at(125_000)), Some(Line::Up { failures: 207, after: Duration::from_secs(125) }));
        assert_eq!(limiter.answered(at(126_000)), None);
        assert_eq!(limiter.failed(at(127_000)), Some(Line::Down), "a new run starts with a line of its own");
    }

    #[test]
    fn kube_clients_lines_are_off_unless_asked_for() {
        let quiet = quiet_client_failures(EnvFilter::new("info"), None).to_string();
        assert!(quiet.contains("kube_client::client::builder=off"), "{quiet}");
        let asked = quiet_client_failures(EnvFilter::new("kube_client=debug"), Some("kube_client=debug")).to_string();
        assert!(!asked.contains("=off"), "{asked}");
    }
}
