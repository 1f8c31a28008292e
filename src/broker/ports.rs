//! Host ports from `ESM_HOST_PORT_RANGE` (`domain::port`): leased before a deployment
//! is made or remade, kept by the instance across updates and restarts, released when
//! it is removed (or its provision failed). A lease is a record whose id is the port,
//! so the store's insert decides who gets a port.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt;

use super::Broker;
use crate::backend::{Backend, BackendError};
use crate::domain::instance::ServiceInstance;
use crate::domain::manifest::Manifest;
use crate::domain::port::{PortLease, candidates};
use crate::error::OsbResult;
use crate::store::index::{self, Query};
use crate::store::{Collection, StoreError, Versioned};

/// The most leases one deployment holds (read in one page).
const HELD_PAGE: usize = 1000;

impl Broker {
    /// The host ports for `instance`'s deployment from `manifest` on `backend`: those it
    /// recorded and holds are kept, the others leased from the range, and leases it no
    /// longer needs released. Without a range, none (the engine picks), and the backend
    /// is not asked what the manifest publishes. A port nobody can have is the
    /// deployment's failure.
    pub(super) async fn lease_host_ports(
        &self,
        backend: &dyn Backend,
        manifest: &Manifest,
        instance: &ServiceInstance,
    ) -> Result<BTreeMap<String, u16>, BackendError> {
        let Some((low, high)) = self.settings.host_ports else {
            return Ok(BTreeMap::new());
        };
        let wants = backend.host_ports(manifest).await?;
        let (holder, current) = (instance.deployed_id(), &instance.host_ports);
        let store = |e: StoreError| BackendError::new(format!("cannot lease host ports: {e}"));
        let held: BTreeSet<String> = self.leases_of(holder).await.map_err(store)?.into_iter().collect();
        let mut taken: Option<BTreeSet<String>> = None;
        let mut leased = BTreeMap::new();
        for want in &wants {
            let protocol = want.protocol.as_str();
            let kept = want.fixed.or_else(|| current.get(&want.key()).copied());
            if let Some(port) = kept
                && (held.contains(&PortLease::id_of(protocol, port))
                    || self.take_port(holder, protocol, port).await.map_err(store)?)
            {
                leased.insert(want.key(), port);
                continue;
            }
            if let Some(port) = want.fixed {
                return Err(BackendError::new(format!("host port {port}/{protocol} is held by another instance")));
            }
            // Every lease in the store, read once: most candidates are skipped unread.
            if taken.is_none() {
                let all = Query::new([], usize::from(high - low) * 2 + 2);
                taken =
                    Some(self.store().page_ids(Collection::Ports, &all).await.map_err(store)?.into_iter().collect());
            }
            let taken = taken.get_or_insert_with(BTreeSet::new);
            let mut found = None;
            for port in candidates(low, high, holder) {
                let id = PortLease::id_of(protocol, port);
                if taken.contains(&id) {
                    continue;
                }
                taken.insert(id);
                if self.take_port(holder, protocol, port).await.map_err(store)? {
                    found = Some(port);
                    break;
                }
            }
            let port = found.ok_or_else(|| {
                BackendError::new(format!(
                    "no free host port left in ESM_HOST_PORT_RANGE {low}-{high} for {}",
                    want.key()
                ))
            })?;
            leased.insert(want.key(), port);
        }
        let keep: BTreeSet<String> =
            wants.iter().filter_map(|w| leased.get(&w.key()).map(|p| PortLease::id_of(&w.protocol, *p))).collect();
        for id in held.difference(&keep) {
            self.records.delete::<PortLease>(id, None).await.map_err(store)?;
        }
        Ok(leased)
    }

    /// Releases every host port the deployment made as `holder` holds.
    pub(super) async fn release_host_ports(&self, holder: &str) -> OsbResult<()> {
        for id in self.leases_of(holder).await? {
            self.records.delete::<PortLease>(&id, None).await?;
        }
        Ok(())
    }

    /// Releases the leases whose holder holds no deployment any more (a provision
    /// killed between its lease and its record's removal, say). Returns how many
    /// holders' leases went.
    pub(super) async fn release_orphaned_ports(&self) -> OsbResult<usize> {
        let leases: Vec<Versioned<PortLease>> = self.records.scan(Vec::new()).try_collect().await?;
        let holders: BTreeSet<String> = leases.into_iter().map(|l| l.record.holder).collect();
        let mut released = 0;
        for holder in holders {
            if self.deployed_as(&holder).await?.is_none() {
                tracing::warn!(holder = %holder, "releasing host ports of a deployment esm no longer holds");
                self.release_host_ports(&holder).await?;
                released += 1;
            }
        }
        Ok(released)
    }

    /// The ids of the leases `holder` holds.
    async fn leases_of(&self, holder: &str) -> Result<Vec<String>, StoreError> {
        self.store().page_ids(Collection::Ports, &Query::new([(index::HOLDER, holder)], HELD_PAGE)).await
    }

    /// Takes `port` for `holder` if nobody holds it; whether it did.
    async fn take_port(&self, holder: &str, protocol: &str, port: u16) -> Result<bool, StoreError> {
        let lease = PortLease {
            id: PortLease::id_of(protocol, port),
            port,
            protocol: protocol.to_owned(),
            holder: holder.to_owned(),
            at: self.clock().timestamp(),
        };
        match self.records.insert(&lease).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
