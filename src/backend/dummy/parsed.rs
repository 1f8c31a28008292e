//! The dummy's parsed manifests, kept for the next call: every call of a provision
//! (execution mode, ports, the run itself) reads the manifest, and parsing its YAML
//! was a tenth of a dummy provision's CPU.

use std::sync::{Arc, Mutex, PoisonError};

use super::DummyManifest;

/// How many manifests are kept (the most recently parsed; a handful of plans is the
/// usual load). Each is bounded by the manifest limits.
const KEPT: usize = 16;

/// Parsed manifests by their content, the most recently used last.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    kept: Mutex<Vec<(String, Arc<DummyManifest>)>>,
}

impl Parsed {
    /// The manifest parsed from `content`: kept, or parsed by `parse` and kept (an
    /// error is not kept: it is rare, and cheap to make again).
    pub(super) fn get_or(
        &self,
        content: &str,
        parse: impl FnOnce() -> Result<DummyManifest, String>,
    ) -> Result<Arc<DummyManifest>, String> {
        if let Some(found) = self.lock().iter().rev().find(|(kept, _)| kept == content).map(|(_, m)| Arc::clone(m)) {
            return Ok(found);
        }
        // Parsed outside the lock: two calls may parse one content at once; both agree.
        let parsed = Arc::new(parse()?);
        let mut kept = self.lock();
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push((content.to_owned(), Arc::clone(&parsed)));
        Ok(parsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, Arc<DummyManifest>)>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
