//! What every deploying backend does the same way, whatever it deploys on: a first
//! provision that removes what it made when it fails, the OSB 2.16 failure flags of a
//! failed update or deprovision, and the one wait ("look, then wait for a change or
//! poll until the deadline"). The Docker backends and the Kubernetes backend use it; a
//! new backend takes it rather than writing its own.

use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::time::Instant;

use super::BackendError;

/// Runs `attempt`, a first provision or a redeploy; when it fails, `clean_up` removes
/// what it made (orphan mitigation), and the attempt's failure is what the caller gets.
/// A failed clean-up is only logged: reconciliation removes what is left.
pub async fn or_clean_up<T, C>(
    instance_id: &str,
    attempt: impl Future<Output = Result<T, BackendError>>,
    clean_up: impl FnOnce() -> C,
) -> Result<T, BackendError>
where
    C: Future<Output = Result<(), BackendError>>,
{
    let error = match attempt.await {
        Ok(done) => return Ok(done),
        Err(e) => e,
    };
    if let Err(cleanup) = clean_up().await {
        tracing::error!(%instance_id, error = %cleanup, "could not remove a failed deployment");
    }
    Err(error)
}

/// A failed update (OSB 2.16): what ran is gone or half rolled out, so the instance is
/// not usable, and repeating the update may succeed.
pub fn failed_update(mut error: BackendError) -> BackendError {
    error.instance_usable = Some(false);
    error.update_repeatable = Some(true);
    error
}

/// A failed deprovision (OSB 2.16): the instance is half removed, so not usable.
pub fn failed_deprovision(mut error: BackendError) -> BackendError {
    error.instance_usable = Some(false);
    error
}

/// What one look of [`until`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Done: the wait is over.
    Ready,
    /// Not yet.
    Waiting {
        /// The failure should the deadline pass now (what is still waited for).
        late: String,
        /// Something is due then (a unit settling): look again by then, change or not.
        wake: Option<Instant>,
    },
}

/// What wakes a wait: a stream of changes from the engine or cluster (a burst counts
/// once), else a poll, because changes can be missed and some states have none.
pub struct Changes {
    /// `None`: polling alone (no stream, or it ended).
    stream: Option<BoxStream<'static, ()>>,
    /// The longest time between two looks.
    poll: Duration,
}

impl Changes {
    /// Woken by `stream` when there is one, and at least every `poll`.
    pub fn new(stream: Option<BoxStream<'static, ()>>, poll: Duration) -> Self {
        Self { stream, poll }
    }

    /// Returns at `wake`, or earlier when something changed.
    async fn next(&mut self, wake: Instant) {
        let Some(stream) = self.stream.as_mut() else {
            tokio::time::sleep_until(wake).await;
            return;
        };
        let ended = tokio::select! {
            () = tokio::time::sleep_until(wake) => false,
            next = stream.next() => match next {
                None => true,
                Some(()) => loop {
                    match stream.next().now_or_never() {
                        Some(Some(())) => {}
                        Some(None) => break true,
                        None => break false,
                    }
                },
            },
        };
        if ended {
            // The stream dropped: polling alone from here.
            self.stream = None;
        }
    }
}

/// Looks until `look` says [`Look::Ready`]: again on every change `changes` reports, at
/// the poll, and when the last look said something is due. A look's error ends the
/// wait with it; at `deadline`, the wait fails with what the last look was waiting for
/// ([`Look::Waiting::late`]). Tokio's clock: tests run it with paused time.
pub async fn until<F, Fut>(changes: &mut Changes, deadline: Instant, mut look: F) -> Result<(), BackendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Look, BackendError>>,
{
    loop {
        let (late, due) = match look().await? {
            Look::Ready => return Ok(()),
            Look::Waiting { late, wake } => (late, wake),
        };
        if Instant::now() >= deadline {
            return Err(BackendError::new(late));
        }
        let wake = deadline.min(Instant::now() + changes.poll);
        changes.next(due.map_or(wake, |due| wake.min(due))).await;
    }
}
