//! Placing a new instance (or pool member) on an engine. The plan's rule and the
//! engines' states and loads rank the candidates (`domain::placement`); an engine with
//! a capacity is then taken by inserting one of its slots, an inventory record whose id
//! is `slot/<engine>/<n>` for `n` below the capacity, so the store's insert decides
//! who gets room, across replicas, as it does for host ports. The slot belongs to the
//! deployment (its owner is the id the deployment is made under) and goes with the
//! rest of its inventory when the deployment is removed.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::Engines;
use super::fleet::Snapshot;
use crate::backend::Backend;
use crate::broker::PlanView;
use crate::domain::engine::{Engine, EngineState};
use crate::domain::placement::{Candidate, rank, refusal};
use crate::domain::resource::{Resource, ResourceState, SLOT};
use crate::domain::units::{self, Cpus, Memory, UnitKind};
use crate::error::{OsbError, OsbResult};
use crate::store::{Collection, StoreError, Versioned, index};

/// The `backend` of a slot: esm's own record, no backend's resource (reconciliation
/// compares each backend's records with its engine, and leaves these alone).
const SLOT_KEEPER: &str = "esm";
/// Slots tried one by one before the engine's taken slots are read.
const BLIND_TRIES: u32 = 8;
/// How old a slot must be before reconciliation may give it back for want of a
/// deployment: a provision writes its record within moments of taking the slot.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(120);

/// Where a new deployment goes.
pub(in crate::broker) struct Placed {
    /// The engine, when it is not the default one (records name no engine then).
    pub(in crate::broker) engine: Option<String>,
    /// The backend that deploys it there.
    pub(in crate::broker) backend: Arc<dyn Backend>,
}

impl Engines<'_> {
    /// Picks the engine for a new deployment of `view`'s plan made under `holder` (on
    /// engine `only`, when a pool targets one), and takes room on it; 422 with why each
    /// engine was passed over when none fits.
    pub(in crate::broker) async fn place(
        &self,
        view: &PlanView,
        holder: &str,
        only: Option<&str>,
    ) -> OsbResult<Placed> {
        match self.place_by(view, holder, only, self.snapshot().await?).await {
            // The copy may be up to a second old: refused on it, ask the store again.
            Err(OsbError::Unprocessable(_)) => {
                self.room.invalidate();
                self.place_by(view, holder, only, self.snapshot().await?).await
            }
            placed => placed,
        }
    }

    /// [`Engines::place`] on the fleet as `snapshot` has it.
    async fn place_by(
        &self,
        view: &PlanView,
        holder: &str,
        only: Option<&str>,
        snapshot: Arc<Snapshot>,
    ) -> OsbResult<Placed> {
        let rule = view.plan.placement().map_err(OsbError::BadRequest)?;
        let manifest_type = view.manifest.manifest_type.as_str();
        // The single-engine settings alone, unlimited: as before engines, no store call.
        if let [alone] = snapshot.engines.as_slice()
            && alone.is_default()
            && alone.spec.capacity == Default::default()
            && alone.state() == EngineState::Active
            && rule.requires.is_empty()
            && only.is_none_or(|name| name == alone.name.as_str())
        {
            return Ok(Placed { engine: None, backend: Arc::clone(&view.backend) });
        }
        if let Some(kept) = self.slot_of(holder).await? {
            // A retried provision whose first attempt took room and then stopped.
            if let Some(engine) = snapshot.engines.iter().find(|e| e.name.as_str() == kept) {
                return self.placed_on(engine, view).await;
            }
        }
        let candidates: Vec<Candidate<'_>> = snapshot
            .engines
            .iter()
            .filter(|e| only.is_none_or(|name| name == e.name.as_str()))
            .map(|e| Candidate {
                name: e.name.as_str(),
                state: e.state(),
                labels: &e.spec.labels,
                deploys: self.deploys(e, manifest_type),
                used: snapshot.loads.get(e.name.as_str()).copied().unwrap_or(0),
                capacity: e.spec.capacity.instances,
            })
            .collect();
        let ranked = rank(&rule, &candidates).map_err(OsbError::Unprocessable)?;
        // Asked of the manifest only when some engine counts CPU or memory.
        let wanted = match snapshot.engines.iter().any(|e| e.spec.capacity.counts_units()) {
            true => {
                units::wanted(view.backend.demand(&view.manifest).await.map_err(|e| OsbError::BadRequest(e.message))?)
            }
            false => (0, 0),
        };
        let mut passed = Vec::new();
        for name in ranked {
            let Some(engine) = snapshot.engines.iter().find(|e| e.name.as_str() == name) else { continue };
            if let Some(capacity) = engine.spec.capacity.instances {
                let used = snapshot.loads.get(name).copied().unwrap_or(0);
                if !self.take_slot(name, capacity, used, holder).await? {
                    passed.push(format!("{name}: full ({capacity} of {capacity})"));
                    continue;
                }
            }
            if let Some(short) = self.take_units(engine, wanted, holder).await? {
                self.release_slots(holder).await?;
                passed.push(format!("{name}: {short}"));
                continue;
            }
            // The copy may be a second old: the record says whether it still takes
            // placements (a cordon written since is seen here).
            if !self.still_active(engine).await? {
                self.release_slots(holder).await?;
                passed.push(format!("{name}: no longer active"));
                continue;
            }
            self.room.count_placed(name);
            return self.placed_on(engine, view).await;
        }
        Err(OsbError::Unprocessable(refusal(passed)))
    }

    /// Gives back the room `holder` took (a provision that did not go ahead).
    pub(in crate::broker) async fn release_slots(&self, holder: &str) -> OsbResult<()> {
        for kept in self.broker.inventory().resources_of(holder).await? {
            if kept.record.is_slot() {
                self.core.records.delete::<Resource>(&kept.record.id, None).await?;
            }
        }
        Ok(())
    }

    /// Gives back the slots no live record holds (a process that died between taking a
    /// slot and writing its instance), once they are [`ABANDONED_AFTER`] old: what
    /// reconciliation does each round, a page of slots at a time.
    pub(in crate::broker) async fn release_abandoned_slots(&self) -> OsbResult<usize> {
        let now = self.core.clock().timestamp();
        let slots = self.core.records.scan::<Resource>(vec![(index::TYPE.to_owned(), SLOT.to_owned())]);
        let mut slots = std::pin::pin!(slots);
        let mut released = 0;
        while let Some(slot) = futures_util::StreamExt::next(&mut slots).await {
            let Versioned { version, record } = slot?;
            if now.since(record.created_at) < ABANDONED_AFTER || self.core.deployed_as(&record.owner).await?.is_some() {
                continue;
            }
            match self.core.records.delete::<Resource>(&record.id, Some(version)).await {
                Ok(_) => {
                    released += 1;
                    tracing::info!(slot = %record.id, owner = %record.owner, "gave back room on an engine no deployment holds");
                }
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(released)
    }

    /// Where a deployment placed on `engine` goes.
    async fn placed_on(&self, engine: &Engine, view: &PlanView) -> OsbResult<Placed> {
        if engine.is_default() {
            return Ok(Placed { engine: None, backend: Arc::clone(&view.backend) });
        }
        Ok(Placed { engine: Some(engine.name.to_string()), backend: self.backend_for(engine).await? })
    }

    /// Whether `engine`'s record still says it takes placements.
    async fn still_active(&self, engine: &Engine) -> OsbResult<bool> {
        match self.core.records.get::<Engine>(&engine.name).await? {
            Some(stored) => Ok(self.as_declared(stored.record).state() == EngineState::Active),
            None => Ok(engine.is_default()),
        }
    }

    /// The engine `holder` already has a slot on.
    async fn slot_of(&self, holder: &str) -> OsbResult<Option<String>> {
        let held = self.broker.inventory().resources_of(holder).await?;
        Ok(held.into_iter().find(|r| r.record.is_slot()).map(|r| r.record.name))
    }

    /// Takes one of `engine`'s `capacity` slots for `holder`: first a few blindly from
    /// where the load says the free ones start, then from the list of those taken.
    /// Whether one was free.
    async fn take_slot(&self, engine: &str, capacity: u32, used: u64, holder: &str) -> OsbResult<bool> {
        if capacity == 0 {
            return Ok(false);
        }
        let start = u32::try_from(used).unwrap_or(u32::MAX).min(capacity - 1);
        for n in (start..capacity).chain(0..start).take(BLIND_TRIES as usize) {
            if self.insert_slot(engine, n, holder).await? {
                return Ok(true);
            }
        }
        let taken = self.taken_slots(engine, capacity).await?;
        for n in 0..capacity {
            if !taken.contains(&slot_id(engine, n)) && self.insert_slot(engine, n, holder).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Takes the CPU and memory units (`wanted`) a deployment under `holder` declares
    /// on `engine`, for the kinds it counts; what it is short of if it has too few
    /// free (the caller gives back what was taken).
    async fn take_units(&self, engine: &Engine, wanted: (u64, u64), holder: &str) -> OsbResult<Option<String>> {
        let capacity = engine.spec.capacity;
        let kinds = [
            (UnitKind::Cpu, capacity.cpus.map(Cpus::units), wanted.0),
            (UnitKind::Memory, capacity.memory.map(Memory::units), wanted.1),
        ];
        for (kind, has, want) in kinds {
            let Some(has) = has.filter(|_| want > 0) else { continue };
            let taken = self.taken_units(&engine.name, kind, has).await?;
            let free = has.saturating_sub(taken.len() as u64);
            let mut got = 0;
            for n in (0..has).filter(|n| !taken.contains(&unit_id(&engine.name, kind, *n))) {
                if got == want {
                    break;
                }
                if self.insert_resource_slot(unit_id(&engine.name, kind, n), &engine.name, holder).await? {
                    got += 1;
                }
            }
            if got < want {
                return Ok(Some(format!(
                    "not enough {} ({} wanted, {} of {} free)",
                    kind.what(),
                    units::shown(kind, want),
                    units::shown(kind, free),
                    units::shown(kind, has)
                )));
            }
        }
        Ok(None)
    }

    /// How many of `engine`'s `kind` units are taken, when it counts them.
    pub(super) async fn units_used(&self, engine: &Engine, kind: UnitKind) -> OsbResult<Option<u64>> {
        let has = match kind {
            UnitKind::Cpu => engine.spec.capacity.cpus.map(Cpus::units),
            UnitKind::Memory => engine.spec.capacity.memory.map(Memory::units),
        };
        let Some(has) = has else { return Ok(None) };
        Ok(Some(self.taken_units(&engine.name, kind, has).await?.len() as u64))
    }

    /// The ids of `engine`'s `kind` units that are taken (at most `has` are read).
    async fn taken_units(&self, engine: &str, kind: UnitKind, has: u64) -> OsbResult<BTreeSet<String>> {
        let prefix = format!("{SLOT}/{engine}/{}/", kind.as_str());
        let limit = usize::try_from(has).unwrap_or(usize::MAX).saturating_add(1);
        let query = index::Query::new([(index::TYPE, SLOT), (index::NAME, engine)], limit).after(Some(prefix.clone()));
        let ids = self.core.store().page_ids(Collection::Resources, &query).await?;
        Ok(ids.into_iter().filter(|id| id.starts_with(&prefix)).collect())
    }

    /// Inserts slot `n` of `engine` for `holder`; false if it is taken.
    async fn insert_slot(&self, engine: &str, n: u32, holder: &str) -> OsbResult<bool> {
        self.insert_resource_slot(slot_id(engine, n), engine, holder).await
    }

    /// Inserts the slot `id` of `engine` for `holder`; false if it is taken.
    async fn insert_resource_slot(&self, id: String, engine: &str, holder: &str) -> OsbResult<bool> {
        let now = self.core.clock().timestamp();
        let slot = Resource {
            id,
            kind: SLOT.to_owned(),
            name: engine.to_owned(),
            owner: holder.to_owned(),
            backend: SLOT_KEEPER.to_owned(),
            state: ResourceState::InUse,
            created_at: now,
            updated_at: now,
            port: None,
        };
        match self.core.records.insert(&slot).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The ids of `engine`'s slots that are taken (at most `capacity` are read).
    async fn taken_slots(&self, engine: &str, capacity: u32) -> OsbResult<BTreeSet<String>> {
        let query = index::Query::new([(index::TYPE, SLOT), (index::NAME, engine)], capacity as usize + 1);
        Ok(self.core.store().page_ids(Collection::Resources, &query).await?.into_iter().collect())
    }
}

/// The id of slot `n` of `engine`: zero-padded, so ids sort as slots do.
fn slot_id(engine: &str, n: u32) -> String {
    format!("{SLOT}/{engine}/{n:07}")
}

/// The id of unit `n` of `kind` on `engine` (`slot/e1/cpu/0000003`): after the
/// engine's instance slots, whose numbers sort before letters.
fn unit_id(engine: &str, kind: UnitKind, n: u64) -> String {
    format!("{SLOT}/{engine}/{}/{n:07}", kind.as_str())
}
