//! What the dummy reports of its instances' liveness, and how a test scripts failures
//! and recoveries (as if an engine reported them), so every liveness path can be
//! tested without Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::stream::BoxStream;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::backend::BackendError;
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::{Component, ComponentStatus};

/// The component of a dummy instance whose manifest names no services.
pub const MAIN_COMPONENT: &str = "main";

/// The deployment detail that turns observation off (`x-esm-dummy: {observe: false}`).
pub(super) const NOT_OBSERVED: &str = "not_observed";

/// Components scripted not up, by instance and component: status and reason.
type Scripted = BTreeMap<String, BTreeMap<String, (ComponentStatus, Option<String>)>>;

/// Scripted liveness: every component of a dummy instance is up unless a test says
/// otherwise.
#[derive(Debug)]
pub struct LivenessScript {
    /// Components not up, by instance and component. A std mutex: never held across
    /// an `.await`.
    scripted: Mutex<Scripted>,
    /// Instances deprovisioned in this process: nothing of them is left. (An instance
    /// this process never saw is taken to run, as containers outlive an esm restart.)
    removed: Mutex<BTreeSet<String>>,
    /// Whether observing fails, as with an engine that does not answer.
    unreachable: AtomicBool,
    /// Replaced when the engine stops answering, which ends every change stream (as an
    /// engine's connection would). A std mutex: held to send or subscribe.
    changes: Mutex<broadcast::Sender<String>>,
}

impl Default for LivenessScript {
    fn default() -> Self {
        Self {
            scripted: Mutex::default(),
            removed: Mutex::default(),
            unreachable: AtomicBool::new(false),
            changes: Mutex::new(broadcast::Sender::new(1024)),
        }
    }
}

impl LivenessScript {
    /// Component `component` of instance `id` is now `status` (for `reason`); the change
    /// is told at once, as an engine's event would be.
    pub fn set(&self, id: &str, component: &str, status: ComponentStatus, reason: Option<&str>) {
        let mut scripted = self.lock();
        let components = scripted.entry(id.to_owned()).or_default();
        if status == ComponentStatus::Up {
            components.remove(component);
        } else {
            components.insert(component.to_owned(), (status, reason.map(str::to_owned)));
        }
        drop(scripted);
        // Nobody listening is not an error.
        let _ = self.sender().send(id.to_owned());
    }

    /// Whether observing fails (`true`), as with an engine that does not answer: then
    /// the change streams end, as they do when an engine's connection drops.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::SeqCst);
        if unreachable {
            *self.sender() = broadcast::Sender::new(1024);
        }
    }

    fn sender(&self) -> MutexGuard<'_, broadcast::Sender<String>> {
        self.changes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Instance `id` was deprovisioned: forget its script, report nothing left.
    pub(super) fn removed(&self, id: &str) {
        self.lock().remove(id);
        self.removed.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_owned());
    }

    /// Whether instance `id` was deprovisioned in this process.
    pub(super) fn was_removed(&self, id: &str) -> bool {
        self.removed.lock().unwrap_or_else(PoisonError::into_inner).contains(id)
    }

    /// Instance `id` was (re)deployed.
    pub(super) fn deployed(&self, id: &str) {
        self.removed.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// Each component of `instance`: those its manifest named (`services`), up unless
    /// scripted otherwise.
    pub(super) fn observe(&self, instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(BackendError::new("the dummy backend was told not to answer"));
        }
        if instance.deployment.get(NOT_OBSERVED) == Some(&Value::Bool(true)) {
            return Ok(None);
        }
        if self.removed.lock().unwrap_or_else(PoisonError::into_inner).contains(&instance.id) {
            return Ok(Some(Vec::new()));
        }
        let mut names: Vec<String> = instance
            .deployment
            .get("services")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if names.is_empty() {
            names.push(MAIN_COMPONENT.to_owned());
        }
        let scripted = self.lock();
        let overrides = scripted.get(&instance.id);
        let components = names
            .into_iter()
            .map(|name| {
                let (status, reason) =
                    overrides.and_then(|o| o.get(&name)).cloned().unwrap_or((ComponentStatus::Up, None));
                Component { name, kind: "dummy".into(), status, reason }
            })
            .collect();
        Ok(Some(components))
    }

    /// The ids of instances a test changed.
    pub(super) fn changes(&self) -> BoxStream<'static, String> {
        let receiver = self.sender().subscribe();
        Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(id) => return Some((id, receiver)),
                    // Missed changes are caught by the periodic round.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Scripted> {
        self.scripted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
