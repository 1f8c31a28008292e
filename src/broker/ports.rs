//! Host ports from `ESM_HOST_PORT_RANGE` (`domain::port`): leased before a deployment
//! is made or remade, kept by the instance across updates and restarts, released with
//! the rest of its inventory when it is removed (or its provision failed). A lease is
//! the port's inventory record, whose id is the port, so the store's insert decides
//! who gets a port.

use crate::broker::Inventory;
use std::collections::{BTreeMap, BTreeSet};

use crate::backend::{Backend, BackendError};
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::port::candidates;
use crate::domain::resource::{Holding, PORT, Resource, ResourceState};
use crate::store::index::{self, Query};
use crate::store::{Collection, StoreError};

impl Inventory<'_> {
    /// The host ports for `instance`'s deployment from `manifest` on `backend`: those it
    /// recorded and holds are kept, the others leased from the range, and leases it no
    /// longer needs released. Without a range, or on an engine other than the default
    /// one, none (the engine picks), and the backend is not asked what the manifest
    /// publishes. A port nobody can have is the
    /// deployment's failure.
    pub(super) async fn lease_host_ports(
        &self,
        backend: &dyn Backend,
        manifest: &Manifest,
        instance: &ServiceInstance,
    ) -> Result<BTreeMap<String, u16>, BackendError> {
        // The range is the default engine's host's: on another engine, the engine
        // picks (its ports are another host's, and the inventory's port records name
        // no engine).
        let Some((low, high)) = self.core.settings.host_ports.filter(|_| instance.engine.is_none()) else {
            return Ok(BTreeMap::new());
        };
        let wants = backend.host_ports(manifest).await?;
        let (holder, current) = (instance.deployed_id(), &instance.host_ports);
        let store = |e: StoreError| BackendError::new(format!("cannot lease host ports: {e}"));
        let owned = self.resources_of(holder).await.map_err(store)?;
        let held: BTreeSet<String> = owned.into_iter().filter(|v| v.record.is_port()).map(|v| v.record.id).collect();
        let mut taken: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        let mut leased = BTreeMap::new();
        for want in &wants {
            let protocol = want.protocol.as_str();
            let kept = want.fixed.or_else(|| current.get(&want.key()).copied());
            if let Some(port) = kept
                && (held.contains(&Resource::port_id(protocol, port))
                    || self.take_port(backend, holder, protocol, port).await.map_err(store)?)
            {
                leased.insert(want.key(), port);
                continue;
            }
            if let Some(port) = want.fixed {
                return Err(BackendError::new(format!("host port {port}/{protocol} is held by another instance")));
            }
            // The range's ports taken for this protocol, read once: most candidates
            // are skipped unread.
            if !taken.contains_key(protocol) {
                let ids = self.ports_taken(protocol, low, high).await.map_err(store)?;
                taken.insert(protocol, ids);
            }
            let taken = taken.entry(protocol).or_default();
            let mut found = None;
            let mut held_elsewhere = Vec::new();
            for port in candidates(low, high, holder) {
                let id = Resource::port_id(protocol, port);
                if taken.contains(&id) {
                    continue;
                }
                taken.insert(id);
                // Free in esm's books but held by another process: the engine would
                // refuse it, and the next provision would lease it again.
                if backend.host_port_held_elsewhere(protocol, port) {
                    held_elsewhere.push(port);
                    continue;
                }
                if self.take_port(backend, holder, protocol, port).await.map_err(store)? {
                    found = Some(port);
                    break;
                }
            }
            if !held_elsewhere.is_empty() {
                tracing::warn!(
                    ports = ?held_elsewhere,
                    protocol,
                    "ports of ESM_HOST_PORT_RANGE are held by processes other than esm: skipped"
                );
            }
            let port = found.ok_or_else(|| {
                let elsewhere = match held_elsewhere.len() {
                    0 => String::new(),
                    n => format!(" ({n} held by processes other than esm)"),
                };
                BackendError::new(format!(
                    "no free host port left in ESM_HOST_PORT_RANGE {low}-{high} for {}{elsewhere}",
                    want.key()
                ))
            })?;
            leased.insert(want.key(), port);
        }
        let keep: BTreeSet<String> =
            wants.iter().filter_map(|w| leased.get(&w.key()).map(|p| Resource::port_id(&w.protocol, *p))).collect();
        for id in held.difference(&keep) {
            self.core.records.delete::<Resource>(id, None).await.map_err(store)?;
        }
        Ok(leased)
    }

    /// The ids of the ports from `low` to `high` someone holds for `protocol`: one
    /// page of the port records, from the range's first id on.
    async fn ports_taken(&self, protocol: &str, low: u16, high: u16) -> Result<BTreeSet<String>, StoreError> {
        let first = Resource::port_id(protocol, low);
        let last = Resource::port_id(protocol, high);
        // Ids sort as ports do; the one before the range's first is its prefix cut.
        let before = first[..first.len() - 1].to_owned();
        let query = Query::new([(index::TYPE, PORT)], usize::from(high - low) + 1).after(Some(before));
        let ids = self.core.store().page_ids(Collection::Resources, &query).await?;
        Ok(ids.into_iter().filter(|id| id.as_str() >= first.as_str() && id.as_str() <= last.as_str()).collect())
    }

    /// Takes `port` for `holder`, deployed by `backend`, if nobody holds it; whether it
    /// did. It is being created until the deployment is made.
    async fn take_port(
        &self,
        backend: &dyn Backend,
        holder: &str,
        protocol: &str,
        port: u16,
    ) -> Result<bool, StoreError> {
        let now = self.core.clock().timestamp();
        let lease =
            Resource::of(&Holding::port(None, port, protocol, holder), backend.name(), ResourceState::Creating, now);
        match self.core.records.insert(&lease).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
