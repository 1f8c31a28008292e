//! Waiting for a state: the one place tests wait, polling with a deadline (never a
//! fixed sleep standing in for "long enough").

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Polls `probe` until it yields a value and returns it; panics naming `what` once
/// `limit` has passed without one.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}
