//! A circuit breaker in front of a store that lives on a server (MongoDB).
//!
//! When the server is down every call waits for the driver's server selection (3 s)
//! before it fails, so every `/v2` request would take that long to get its 503. Once a
//! call has failed with [`StoreError::Unavailable`] the breaker knows the store is down:
//! calls fail at once with the same error, while one background task pings the store
//! every [`PROBE_INTERVAL`] and lets calls through again as soon as it answers.
//! `ping` (what `/health` asks) always goes to the store, and a success closes the
//! breaker too.
//!
//! A decorator, so no store implementation knows about it; `app.rs` puts it in front of
//! the MongoDB store.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::layered::{Call, Layered, StoreLayer, Work};
use super::{Store, StoreError};

/// How long the prober waits after a failed ping before the next one.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The longest any call may take. The driver bounds server selection and connecting,
/// not a request on a connection that stopped answering: without this, one wedged
/// connection would hold requests (and `/health`) forever. Generous, since a loaded
/// server can be slow; a call past it fails as unavailable (a write may still have
/// landed, as when a connection drops after sending it).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `call`, failed as unavailable past [`CALL_TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!("the store did not answer within {} s", CALL_TIMEOUT.as_secs())))
    })
}

/// The breaker: a [`StoreLayer`] that fails calls fast while the store is known to be
/// down.
pub struct Breaker {
    shared: Arc<Shared>,
    /// The prober, awaited by `close`.
    prober: Mutex<Option<JoinHandle<()>>>,
}

/// A store with a [`Breaker`] in front.
pub type BreakerStore = Layered<Breaker>;

/// What the breaker and its prober share.
struct Shared {
    /// While the store is down: the error that said so, returned by every call. A std
    /// mutex: held for a clone or an assignment, never across an `.await`.
    down: Mutex<Option<String>>,
    /// Wakes the prober when the breaker opens.
    opened: Notify,
    /// Stops the prober (on `close`, or when the breaker is dropped).
    stop: CancellationToken,
}

impl Shared {
    fn down(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn open(&self, message: &str) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            tracing::warn!(error = message, "the store does not answer; requests get 503 at once until it does");
            *down = Some(message.to_owned());
            self.opened.notify_one();
        }
    }

    fn close(&self) {
        if self.down.lock().unwrap_or_else(|p| p.into_inner()).take().is_some() {
            tracing::info!("the store answers again");
        }
    }

    /// Updates the breaker from a call's outcome: only "unavailable" opens it.
    fn record<T>(&self, result: &Result<T, StoreError>) {
        if let Err(StoreError::Unavailable(message)) = result {
            self.open(message);
        }
    }
}

impl BreakerStore {
    /// Puts a breaker in front of `inner` and starts its prober (on the current runtime).
    pub fn new(inner: Arc<dyn Store>) -> Self {
        let shared = Arc::new(Shared { down: Mutex::new(None), opened: Notify::new(), stop: CancellationToken::new() });
        let prober = tokio::spawn(probe(inner.clone(), shared.clone()));
        Layered::over(inner, Breaker { shared, prober: Mutex::new(Some(prober)) })
    }

    /// Whether calls currently fail at once.
    pub fn is_open(&self) -> bool {
        self.layer().shared.down().is_some()
    }
}

impl StoreLayer for Breaker {
    async fn around<T: Send>(&self, _store: &'static str, call: Call, work: impl Work<T>) -> Result<T, StoreError> {
        // `ping` and `health` (what `/health` asks) always ask the store, and a success
        // closes the breaker; any other call fails at once while it is open.
        let asks_anyway = matches!(call, Call::Ping | Call::Health);
        if !asks_anyway && let Some(message) = self.shared.down() {
            return Err(StoreError::Unavailable(message));
        }
        let result = bounded(work).await;
        match &result {
            Ok(_) if asks_anyway => self.shared.close(),
            _ => self.shared.record(&result),
        }
        result
    }

    async fn close(&self) {
        self.shared.stop.cancel();
        let prober = self.prober.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(prober) = prober {
            let _ = prober.await;
        }
    }
}

impl Drop for Breaker {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// The prober: asleep while the breaker is closed; while it is open, pings the store
/// until it answers, then closes it.
async fn probe(store: Arc<dyn Store>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = shared.opened.notified() => {}
        }
        while shared.down().is_some() {
            tokio::select! {
                () = shared.stop.cancelled() => return,
                answer = bounded(store.ping()) => match answer {
                    Ok(()) => shared.close(),
                    Err(e) => tracing::debug!(error = %e, "the store still does not answer"),
                },
            }
            if shared.down().is_some() {
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(PROBE_INTERVAL) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;
    use tokio::time::Instant;

    use super::*;
    use crate::store::Collection;
    use crate::store::switchable::SwitchableStore;

    /// What a down server costs each call: the driver's server selection.
    const SELECTION: Duration = Duration::from_secs(3);

    fn breaker() -> (Arc<SwitchableStore>, BreakerStore) {
        let flaky = Arc::new(SwitchableStore::new(false, SELECTION));
        let store = BreakerStore::new(flaky.clone());
        (flaky, store)
    }

    /// Waits (in paused time) until the breaker closes.
    async fn until_closed(store: &BreakerStore) {
        tokio::time::timeout(Duration::from_secs(60), async {
            while store.is_open() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the breaker closes once the store answers");
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_store_is_down_calls_fail_at_once_until_it_answers_again() {
        let (flaky, store) = breaker();
        assert_eq!(store.insert(Collection::Instances, "a", json!({})).await, Ok(1));
        flaky.set_down(true);

        let started = Instant::now();
        let first = store.get(Collection::Instances, "a").await;
        assert_eq!(first, Err(StoreError::Unavailable("the fake server does not answer".into())));
        assert_eq!(started.elapsed(), SELECTION, "the first call finds out the slow way");
        assert!(store.is_open());

        let started = Instant::now();
        let calls = flaky.calls();
        let second = store.list(Collection::Instances).await;
        assert_eq!(second, Err(StoreError::Unavailable("the fake server does not answer".into())), "same words");
        assert_eq!(started.elapsed(), Duration::ZERO, "the next one is answered at once");
        // Only the prober's pings reach the store now.
        assert!(flaky.calls() <= calls + 1);

        flaky.set_down(false);
        until_closed(&store).await;
        assert!(store.get(Collection::Instances, "a").await.expect("answers").is_some());
        store.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_fails_as_unavailable_after_the_call_timeout() {
        // A server that holds every call for an hour: a wedged connection.
        let wedged = Arc::new(SwitchableStore::new(false, Duration::from_secs(3600)));
        let store = BreakerStore::new(wedged.clone());
        wedged.set_down(true);
        let started = Instant::now();
        let answer = store.get(Collection::Instances, "a").await;
        assert_eq!(started.elapsed(), CALL_TIMEOUT);
        assert!(
            matches!(&answer, Err(StoreError::Unavailable(m)) if m.contains("did not answer within 30 s")),
            "{answer:?}"
        );
        assert!(store.is_open(), "and the breaker knows");
        assert!(store.ping().await.is_err(), "a ping is bounded too");
        store.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn only_an_unavailable_store_opens_the_breaker() {
        let (_flaky, store) = breaker();
        assert_eq!(store.insert(Collection::Instances, "a", json!({})).await, Ok(1));
        assert!(matches!(store.insert(Collection::Instances, "a", json!({})).await, Err(StoreError::Conflict(_))));
        assert!(matches!(store.replace(Collection::Instances, "b", 1, json!({})).await, Err(StoreError::NotFound(_))));
        assert!(!store.is_open());
        store.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_again_after_it_closed() {
        let (flaky, store) = breaker();
        for _ in 0..2 {
            flaky.set_down(true);
            assert!(store.get(Collection::Instances, "a").await.is_err());
            assert!(store.is_open());
            flaky.set_down(false);
            until_closed(&store).await;
            assert_eq!(store.get(Collection::Instances, "a").await, Ok(None));
        }
        store.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn health_pings_reach_the_store_and_close_the_breaker() {
        let (flaky, store) = breaker();
        flaky.set_down(true);
        assert!(store.ping().await.is_err(), "a ping is a real check");
        assert!(store.is_open(), "and a failed one opens the breaker");
        flaky.set_down(false);
        assert_eq!(store.ping().await, Ok(()));
        assert!(!store.is_open(), "a ping that answers closes it at once");
        store.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn close_stops_the_prober_while_the_store_is_down() {
        let (flaky, store) = breaker();
        flaky.set_down(true);
        assert!(store.get(Collection::Instances, "a").await.is_err());
        let handle = store.layer().prober.lock().expect("lock").as_ref().map(|h| h.abort_handle()).expect("a prober");
        store.close().await;
        assert!(handle.is_finished(), "the prober ended with the store");
    }
}
