//! Backends: what actually deploys an instance described by a manifest.
//!
//! The broker picks a backend by the manifest's `manifest_type` and calls it through the
//! [`Backend`] trait. Backends are stateless towards esm: everything they need to find
//! their work again (container ids, network names, ...) they return in a
//! [`Deployment`], which the broker stores in the instance record. Each call must be
//! idempotent — a restarted esm re-runs the operations it was in the middle of.
//!
//! Like the store, the trait is object-safe and used as `Arc<dyn Backend>`.
//!
//! # Adding a backend
//!
//! A fourth backend (Podman, Nomad) is a module here with a type that implements
//! [`Backend`], and an entry in `config::BackendKind` and `app` that builds it. It
//! builds on two shared pieces rather than on another backend:
//!
//! - [`crate::manifest`]: the compose manifest language. `Compose::parse` under the
//!   operator's [`Policy`](crate::manifest::Policy) is the check at registration
//!   ([`Backend::check_manifest`]) and gives the typed model to deploy; a backend
//!   refuses on top only what it cannot run.
//! - [`kit`]: what deploying is everywhere. A first provision goes through
//!   [`kit::or_clean_up`] (a failure removes what it made), a failed update or
//!   deprovision is marked with [`kit::failed_update`] or [`kit::failed_deprovision`]
//!   (OSB 2.16's `instance_usable` and `update_repeatable`), and every wait for the
//!   engine is [`kit::until`]: look, then wait for a change (the engine's event
//!   stream, if it has one) or the poll, until the deadline.
//!
//! What is left is the backend's own: naming and labelling what it makes
//! ([`labels`], found again by label, never by name), the calls that make and remove
//! it, and reading back what runs for [`Backend::info`], [`Backend::bind`] and
//! liveness ([`Backend::observe`], [`Backend::changes`]). An engine that starts units
//! one by one, as it is told, can instead implement the `Runtime` of the Docker
//! backends' deployment template (`docker::deploy`) and reuse its ordering. The
//! conformance suite (`conformance`, `tests/backend_conformance.rs`) is what a new
//! backend must pass.

pub mod docker;
pub mod dummy;
pub mod host_port;
pub mod kit;
pub mod kubernetes;
pub mod labels;
pub mod layered;
pub mod said;

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use crate::domain::binding::{Binding, Endpoint};
use crate::domain::instance::ServiceInstance;
use crate::domain::liveness::Component;
use crate::domain::manifest::Manifest;
use crate::domain::operation::OperationKind;
use crate::domain::port::PortWant;
use crate::domain::resource::Holding;

/// Whether an operation may, must, or cannot run asynchronously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Quick enough to finish within the request: always answered 200/201.
    Synchronous,
    /// Only asynchronously: needs `accepts_incomplete=true` (else 422 `AsyncRequired`).
    Asynchronous,
    /// Asynchronously when the platform accepts it, otherwise within the request
    /// (clients such as the ElasTest platform never send `accepts_incomplete`).
    Either,
}

/// What a provision or update produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deployment {
    /// The backend's own record of what it created, stored with the instance.
    pub details: Map<String, Value>,
}

/// Live details of a deployment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    /// Flat keys as the original ESM reported them (`<container>_state`,
    /// `<container>_Ip`, `<container>_<port>/tcp/HostPort`, ...): what its clients read.
    pub flat: Map<String, Value>,
    /// The same for programs: one object per container.
    pub containers: Vec<Value>,
    /// Set when the deployment is not what it should be (a container died or vanished).
    pub problem: Option<String>,
}

/// What a bind produced.
#[derive(Debug, Clone, PartialEq)]
pub struct BindOutput {
    /// Credentials for the application.
    pub credentials: Value,
    /// OSB 2.15 endpoints, if the backend knows them.
    pub endpoints: Option<Vec<Endpoint>>,
}

/// What one deployment of a manifest declares it may use: the sum of its containers'
/// limits (each replica counted). An engine's CPU and memory capacity is counted in
/// these (`domain::engine::Capacity`); what declares no limit counts nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// CPUs, in thousandths.
    pub cpu_millis: u64,
    /// Memory, in bytes.
    pub memory_bytes: u64,
}

/// A failed backend call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    /// What went wrong, for the platform's user.
    pub message: String,
    /// After a failed update or deprovision: whether the instance still works.
    pub instance_usable: Option<bool>,
    /// After a failed update: whether repeating it may succeed.
    pub update_repeatable: Option<bool>,
}

impl BackendError {
    /// A failure with just a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), instance_usable: None, update_repeatable: None }
    }
}

/// The longest dashboard URL a backend may report, in bytes.
pub const DASHBOARD_URL_MAX_BYTES: usize = 2048;

/// Checks a dashboard URL a manifest names or a backend reports: `http://` or
/// `https://` with a host, at most [`DASHBOARD_URL_MAX_BYTES`], no whitespace or control
/// character. Clients (the platform's UI, esm's own dashboard) show it as a link, so
/// `javascript:` or `data:` would run in the operator's browser.
pub fn check_dashboard_url(url: &str) -> Result<(), String> {
    if url.len() > DASHBOARD_URL_MAX_BYTES {
        return Err(format!("dashboard_url is longer than {DASHBOARD_URL_MAX_BYTES} bytes"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("dashboard_url may not contain whitespace or control characters".into());
    }
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        url.get(..scheme.len()).filter(|s| s.eq_ignore_ascii_case(scheme)).map(|_| &url[scheme.len()..])
    });
    match rest {
        Some(rest) if !rest.starts_with(['/', '?', '#']) && !rest.is_empty() => Ok(()),
        Some(_) => Err("dashboard_url has no host".into()),
        None => Err("dashboard_url must be an http:// or https:// URL".into()),
    }
}

/// Something that deploys manifests.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A short name for logs and `/health`.
    fn name(&self) -> &'static str;

    /// The `manifest_type` values this backend deploys (aliases included).
    fn manifest_types(&self) -> &'static [&'static str];

    /// Checks a manifest at registration, so a bad one is a 400 then and never a
    /// failure at provision time.
    fn check_manifest(&self, manifest: &Manifest) -> Result<(), String>;

    /// How `kind` runs for instances of this manifest.
    fn execution(&self, manifest: &Manifest, kind: OperationKind) -> Execution;

    /// Whether binding needs an `app_guid` (422 `RequiresApp` without one).
    fn requires_app(&self, _manifest: &Manifest) -> bool {
        false
    }

    /// Whether instances of this manifest can be deployed ahead for a warm pool, and if
    /// not, why (e.g. a fixed host port only one deployment can hold).
    async fn poolable(&self, _manifest: &Manifest) -> Result<(), String> {
        Ok(())
    }

    /// The host ports a deployment of this manifest publishes, for esm to lease from
    /// `ESM_HOST_PORT_RANGE` (the instance's `host_ports` then says which it got).
    async fn host_ports(&self, _manifest: &Manifest) -> Result<Vec<PortWant>, BackendError> {
        Ok(Vec::new())
    }

    /// What a deployment of this manifest declares it may use (its containers'
    /// limits): what placement counts against an engine's CPU and memory capacity.
    /// Nothing by default.
    async fn demand(&self, _manifest: &Manifest) -> Result<Demand, BackendError> {
        Ok(Demand::default())
    }

    /// Whether a process outside esm already holds host port `port`/`protocol` where
    /// this backend publishes, as far as esm can tell from where it runs (false where
    /// it cannot): leasing skips such ports instead of handing out one the engine will
    /// refuse.
    fn host_port_held_elsewhere(&self, _protocol: &str, _port: u16) -> bool {
        false
    }

    /// The instance's dashboard, if it has one. Known before the instance is deployed,
    /// so an asynchronous provision's first answer carries it (as OSB asks). Only a URL
    /// [`check_dashboard_url`] accepts reaches a client: the broker drops any other.
    fn dashboard_url(&self, _instance: &ServiceInstance, _manifest: &Manifest) -> Option<String> {
        None
    }

    /// Deploys an instance.
    async fn provision(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError>;

    /// Redeploys an instance; `instance` already carries the new plan and parameters,
    /// `manifest` is the new plan's.
    async fn update(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Deployment, BackendError>;

    /// Removes everything the instance's deployment created. Succeeds if nothing is left.
    /// `manifest` is absent for an instance whose manifest is gone (records of esm 0.1):
    /// what was deployed must be found without it.
    async fn deprovision(&self, instance: &ServiceInstance, manifest: Option<&Manifest>) -> Result<(), BackendError>;

    /// Creates credentials for a binding.
    async fn bind(
        &self,
        instance: &ServiceInstance,
        binding: &Binding,
        manifest: &Manifest,
    ) -> Result<BindOutput, BackendError>;

    /// Revokes a binding's credentials. By default there is nothing to revoke: the
    /// credentials are addresses of the deployment, not accounts made for the binding.
    async fn unbind(
        &self,
        _instance: &ServiceInstance,
        _binding: &Binding,
        _manifest: &Manifest,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    /// Live details of a deployment, for `/v2/et/service_instances`.
    async fn info(&self, instance: &ServiceInstance, manifest: &Manifest) -> Result<Info, BackendError>;

    /// What this backend holds on its engine (found by esm's labels, never by name):
    /// for the deployment made under `owner`, or with `None` for every deployment.
    async fn held(&self, _owner: Option<&str>) -> Result<Vec<Holding>, BackendError> {
        Ok(Vec::new())
    }

    /// What this backend holds for every deployment, in pages of at most
    /// [`LISTING_PAGE`] owners, each owner's holdings in one page, owners in
    /// ascending (byte) order across pages: what reconciliation merges with the store
    /// without holding the whole listing. By default one [`Backend::held`] answer cut
    /// into pages, for engines whose API does not page (Docker's, and Kubernetes as
    /// esm asks it): the engine's answer is whole, but what reconciliation builds on it
    /// is not.
    fn listing(&self) -> BoxStream<'_, Result<Vec<Holding>, BackendError>> {
        futures_util::stream::once(self.held(None))
            .map_ok(|held| futures_util::stream::iter(owner_pages(held).into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// Removes whatever this backend holds for an instance esm does not know.
    async fn remove_instance(&self, _instance_id: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Each component of an instance's deployment as it is now, for liveness. `Ok(None)`
    /// when this backend cannot tell (the instance stays `unknown` unless it reports
    /// itself); an empty list when nothing of the deployment is left; `Err` when the
    /// engine cannot be asked (the instance becomes `unknown`, never guessed up).
    async fn observe(&self, _instance: &ServiceInstance) -> Result<Option<Vec<Component>>, BackendError> {
        Ok(None)
    }

    /// The ids of instances whose components just changed, as the engine tells them
    /// (Docker's events), so liveness follows within moments rather than at the next
    /// periodic observation. The stream ends when the engine connection drops; the
    /// caller subscribes again. `None` when the backend has no such stream.
    fn changes(&self) -> Option<BoxStream<'static, String>> {
        None
    }

    /// Checks that the backend can work (e.g. the engine answers), for `/health`.
    async fn probe(&self) -> Result<String, BackendError>;
}

/// The most owners one page of [`Backend::listing`] holds.
pub const LISTING_PAGE: usize = 256;

/// `held` sorted by owner and cut into pages of at most [`LISTING_PAGE`] owners.
pub fn owner_pages(mut held: Vec<Holding>) -> Vec<Vec<Holding>> {
    held.sort_by(|a, b| a.owner.cmp(&b.owner));
    let mut pages: Vec<Vec<Holding>> = Vec::new();
    let mut owners = 0;
    for holding in held {
        let new_owner = pages.last().and_then(|p| p.last()).is_none_or(|last| last.owner != holding.owner);
        if new_owner {
            owners += 1;
            if pages.is_empty() || owners > LISTING_PAGE {
                pages.push(Vec::new());
                owners = 1;
            }
        }
        if let Some(page) = pages.last_mut() {
            page.push(holding);
        }
    }
    pages
}

/// The backends esm runs with, by manifest type.
#[derive(Clone, Default)]
pub struct Backends {
    by_type: BTreeMap<&'static str, Arc<dyn Backend>>,
    all: Vec<Arc<dyn Backend>>,
}

impl Backends {
    /// No backends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend under each of its manifest types.
    pub fn with(mut self, backend: Arc<dyn Backend>) -> Self {
        for ty in backend.manifest_types() {
            self.by_type.insert(ty, backend.clone());
        }
        self.all.push(backend);
        self
    }

    /// The backend for a manifest type.
    pub fn get(&self, manifest_type: &str) -> Option<&Arc<dyn Backend>> {
        self.by_type.get(manifest_type)
    }

    /// Every supported manifest type, for error messages.
    pub fn types(&self) -> Vec<&'static str> {
        self.by_type.keys().copied().collect()
    }

    /// Each backend once.
    pub fn all(&self) -> &[Arc<dyn Backend>] {
        &self.all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_cut_into_pages_of_whole_owners_in_owner_order() {
        // Owners listed out of order, each holding a deployment and a port.
        let owners: Vec<String> = (0..600).rev().map(|n| format!("i-{n:04}")).collect();
        let held: Vec<Holding> = owners
            .iter()
            .flat_map(|o| {
                [Holding::new("deployment", o.clone(), o.clone()), Holding::port(None, 30000, "tcp", o.clone())]
            })
            .collect();
        let pages = owner_pages(held);
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2 * LISTING_PAGE, 2 * LISTING_PAGE, 2 * (600 - 2 * LISTING_PAGE)]);
        let listed: Vec<&str> = pages.iter().flatten().map(|h| h.owner.as_str()).collect();
        assert!(listed.windows(2).all(|w| w[0] <= w[1]), "in owner order");
        assert!(owner_pages(Vec::new()).is_empty());
    }
}
