//! A backend whose failed calls are counted into [`Metrics`]
//! (`esm_backend_errors_total{backend, call}`).
//!
//! A [`BackendLayer`], so no backend knows about metrics; `app.rs` wraps each
//! configured backend.

use std::sync::Arc;

use super::Metrics;
use crate::backend::layered::{BackendLayer, Call, Layered, Work};
use crate::backend::{Backend, BackendError};

/// The layer that counts a backend's failed calls into [`Metrics`].
pub struct BackendCalls(Metrics);

/// A [`Backend`] whose failures are counted.
pub type MeteredBackend = Layered<BackendCalls>;

impl MeteredBackend {
    /// Counts the failed calls to `inner` into `metrics`.
    pub fn new(inner: Arc<dyn Backend>, metrics: Metrics) -> Self {
        Layered::over(inner, BackendCalls(metrics))
    }
}

impl BackendLayer for BackendCalls {
    async fn around<T: Send>(&self, backend: &'static str, call: Call, work: impl Work<T>) -> Result<T, BackendError> {
        let result = work.await;
        let label = match call {
            // Leasing's question, never counted: a new label would be a series the
            // operator's dashboards have not seen.
            Call::HostPorts => None,
            // A listing is `held` in pages: one label for both.
            Call::Listing => Some(Call::Held.name()),
            call => Some(call.name()),
        };
        if let (Err(_), Some(label)) = (&result, label) {
            self.0.backend_error(backend, label);
        }
        result
    }
}
