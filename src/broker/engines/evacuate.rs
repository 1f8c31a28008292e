//! Evacuation: a draining engine's relocatable instances deployed again elsewhere.
//!
//! Every replica runs a round each `ESM_ENGINE_PROBE_INTERVAL` (and one right after a
//! drain). A round first finishes the moves already made (instances marked
//! `retiring`: their bindings are pointed at the new deployment, then the old one is
//! removed), then starts moves off each draining engine: a `relocate` operation per
//! instance whose plan says `relocatable` (`operations/relocate.rs`), up to 64 per
//! engine and round, 4 at once.
//! Recording the operation is the claim: of two replicas that pick the same instance,
//! one writes it and the other is refused, as two platform requests would be. Only a
//! draining engine that answers is evacuated: moving away from one that does not could
//! leave the instance running twice.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::Engines;
use crate::broker::operations::relocate::Relocate;
use crate::domain::binding::{Binding, Credentials};
use crate::domain::engine::{DEFAULT_ENGINE, Engine, EngineState};
use crate::domain::event::{Event, EventKind};
use crate::domain::instance::{InstanceStatus, ServiceInstance};
use crate::domain::operation::{OperationKind, OperationState};
use crate::domain::registry::Registry;
use crate::error::{OsbError, OsbResult};
use crate::store::{Versioned, index};
use crate::wire::Evacuation;

/// Instances read per page while looking for what to move.
const PAGE: usize = 64;
/// Pages read per engine and round: a round's reads stay bounded however many
/// instances stay on the engine; the next round goes on where this one stopped.
const PAGES_PER_ROUND: usize = 8;
/// Moves one replica runs at once.
const MOVES_AT_ONCE: usize = 4;
/// Moves one replica starts per engine and round (the round ends when they have).
const MOVES_PER_ROUND: usize = 64;
/// How long after a failed move the instance is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// The most instances an engine's progress is counted over when it is shown.
const COUNTED: usize = 1000;
/// Credential keys a move keeps from the old credentials: the reporting token and
/// where to send reports are esm's, not the engine's, and stay valid.
const KEPT_KEYS: [&str; 2] = ["esm_liveness_token", "esm_liveness_url"];

impl Engines<'_> {
    /// Runs an evacuation round each probe interval, until shutdown.
    pub fn spawn_evacuator(&self) {
        let every = self.core.settings.engines.probe_interval;
        self.broker.spawn_every(every, |broker| async move {
            if let Err(e) = broker.engines().evacuate_round().await {
                tracing::warn!(error = %e, "cannot evacuate the draining engines");
            }
        });
    }

    /// Finishes the moves made, then moves what may move off each draining engine.
    /// How many instances this round moved.
    pub async fn evacuate_round(&self) -> OsbResult<usize> {
        let retiring = index::Query::new([(index::RETIRING, "1")], PAGE);
        for stored in self.core.records.page::<ServiceInstance>(&retiring).await? {
            if let Err(e) = self.retire(&stored.record.id).await {
                tracing::warn!(instance = %stored.record.id, error = %e, "a moved instance's old deployment is not retired yet");
            }
        }
        let registry = self.broker.registrar().registry().await?.record;
        let mut movable = Vec::new();
        for engine in self.read_engines().await?.iter().filter(|e| e.state() == EngineState::Draining) {
            movable.extend(self.movable_on(engine, &registry).await?);
        }
        let registry = registry.as_ref();
        let moves = futures_util::stream::iter(movable.into_iter().map(|id| async move {
            match self.relocate(&id, registry).await {
                Ok(moved) => moved,
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "could not move an instance off a draining engine");
                    false
                }
            }
        }));
        let moved: Vec<bool> = moves.buffer_unordered(MOVES_AT_ONCE).collect().await;
        Ok(moved.into_iter().filter(|m| *m).count())
    }

    /// The instances on `engine` a move may start for now, read from where the last
    /// round stopped.
    async fn movable_on(&self, engine: &Engine, registry: &Registry) -> OsbResult<Vec<String>> {
        let name = engine.name.as_str();
        let mut after = self.room.evacuation_cursor(name);
        let mut movable = Vec::new();
        for _ in 0..PAGES_PER_ROUND {
            let filters = vec![(index::ENGINE.to_owned(), name.to_owned()), (index::LIVE.to_owned(), "1".to_owned())];
            let (page, next) = self.core.page_of::<ServiceInstance>(filters, after, PAGE).await?;
            let now = self.core.clock().now();
            movable.extend(page.into_iter().filter(|i| self.may_move(i, name, registry, now)).map(|i| i.id));
            after = next;
            if after.is_none() || movable.len() >= MOVES_PER_ROUND {
                break;
            }
        }
        self.room.set_evacuation_cursor(name, after);
        Ok(movable)
    }

    /// Whether a move of `instance`, on draining engine `engine`, may start now: a
    /// platform's provisioned instance placed there (not one that is leaving it), of
    /// a relocatable plan, with nothing running, and no move of it failed lately.
    fn may_move(
        &self,
        instance: &ServiceInstance,
        engine: &str,
        registry: &Registry,
        now: std::time::SystemTime,
    ) -> bool {
        let recently_failed = instance.operations.last().is_some_and(|op| {
            op.kind == OperationKind::Relocate
                && op.state == OperationState::Failed
                && op.finished_at.is_some_and(|at| now.duration_since(at.time()).unwrap_or_default() < RETRY_AFTER)
        });
        instance.is_platform_instance()
            && instance.status == InstanceStatus::Provisioned
            && instance.engine() == engine
            && instance.retiring.is_none()
            && instance.operations.running().is_none()
            && !recently_failed
            && relocatable(registry, instance)
    }

    /// Starts a move of instance `id` and waits for it: whether it moved. A move
    /// another request or replica got to first is no move and no error. The engine it
    /// goes to is picked, and room taken there, before the operation is recorded, so
    /// every run of the operation deploys in the same place.
    async fn relocate(&self, id: &str, registry: &Registry) -> OsbResult<bool> {
        let Some(Versioned { version, record: mut instance }) = self.core.live_instance(id).await? else {
            return Ok(false);
        };
        let from = instance.engine().to_owned();
        if instance.operations.running().is_some() || instance.retiring.is_some() || !self.still_draining(&from).await?
        {
            return Ok(false);
        }
        let ops = self.broker.operations();
        let mut op = ops.start_op(OperationKind::Relocate, true);
        let (op_id, deployed_id) = (op.id.clone(), op.moved_id().unwrap_or_default());
        let view = self.broker.registrar().instance_view(registry, &instance).await?;
        let placed = match self.place(&view, &deployed_id, None).await {
            Ok(placed) => placed,
            Err(OsbError::Unprocessable(why)) => {
                self.room.evacuation_blocked(&from, Some(why));
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        self.room.evacuation_blocked(&from, None);
        op.relocate_to = Some(placed.engine.unwrap_or_else(|| DEFAULT_ENGINE.to_owned()));
        instance.operations.push(op);
        let written = match self.broker.instances().start_or_give_up(version, &instance).await {
            Ok(written) => written,
            Err(e) => {
                self.release_slots(&deployed_id).await?;
                return match e {
                    OsbError::ConcurrencyError(_) => Ok(false),
                    e => Err(e),
                };
            }
        };
        // A binding operation that started before the move's was written wins, as it
        // does over a deprovision: its credentials would be made on the old deployment.
        let busy = match self.core.bindings_of(id).await {
            Ok(bindings) => bindings.into_iter().find(|b| b.operations.running().is_some()).map(|b| b.id),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = busy {
            let refusal = OsbError::ConcurrencyError(format!("instance {id} is busy ({why})"));
            ops.give_up(id, &op_id, refusal, |_: &mut ServiceInstance| {}).await;
            self.release_slots(&deployed_id).await?;
            return Ok(false);
        }
        let task = ops.spawn_work(Relocate, id.to_owned(), op_id.clone(), Some(written));
        let outcome = task.await.map_err(|e| OsbError::Internal(format!("a move stopped unexpectedly: {e}")))??;
        Ok(outcome.answer(&op_id).is_ok())
    }

    /// Whether engine `name`'s record says it is draining and answers: read now, so
    /// a move does not start after an uncordon.
    pub(in crate::broker) async fn still_draining(&self, name: &str) -> OsbResult<bool> {
        let stored = self.core.records.get::<Engine>(name).await?;
        Ok(stored.is_some_and(|s| self.as_declared(s.record).state() == EngineState::Draining))
    }

    /// Finishes the move of instance `id` (marked `retiring`): its bindings get
    /// credentials from the new deployment, then the old deployment is removed with
    /// what it held, then the mark goes, with an `instance.relocated` event. Each step
    /// may run again (another replica's round, a retry after a failure).
    pub(in crate::broker) async fn retire(&self, id: &str) -> OsbResult<()> {
        let Some(Versioned { record: instance, .. }) = self.core.records.get::<ServiceInstance>(id).await? else {
            return Ok(());
        };
        let Some(retiring) = instance.retiring.clone() else { return Ok(()) };
        let registry = self.broker.registrar().registry().await?.record;
        if instance.is_live() {
            self.rebind(&registry, &instance).await?;
        }
        let old = retiring.deployed(&instance);
        let (backend, manifest) = self.broker.registrar().teardown_backend(&registry, &old).await?;
        self.broker.inventory().mark_releasing(&retiring.deployed_id).await;
        backend
            .deprovision(&old, manifest.as_ref())
            .await
            .map_err(|e| OsbError::Unavailable(format!("engine {}: {}", retiring.engine(), e.message)))?;
        self.broker.inventory().release_resources(&retiring.deployed_id).await?;
        let ops = self.broker.operations();
        let finished = self
            .core
            .records
            .modify::<ServiceInstance, OsbError, _>(id, |current| {
                if current.retiring.as_ref().is_none_or(|r| r.deployed_id != retiring.deployed_id) {
                    return Ok(false);
                }
                current.retiring = None;
                let mut event = Event::new(EventKind::InstanceRelocated);
                event.engine = Some(current.engine().to_owned());
                event.from = Some(retiring.engine().to_owned());
                event.to = Some(current.engine().to_owned());
                ops.announce(current, event);
                Ok(true)
            })
            .await?;
        if finished.is_some() {
            self.core.events.announced();
            self.room.invalidate();
            tracing::info!(instance = %id, from = %retiring.engine(), to = %instance.engine(), "moved an instance off a draining engine");
        }
        Ok(())
    }

    /// Points each bound binding of `instance` at its current deployment: the new
    /// credentials (keeping esm's reporting token) replace the old ones. A binding
    /// being bound or unbound is left alone: a bind reads the instance as moved, and
    /// an unbind removes what is there.
    async fn rebind(&self, registry: &Registry, instance: &ServiceInstance) -> OsbResult<()> {
        let (backend, manifest) = self.broker.registrar().instance_backend(registry, instance).await?;
        for binding in self.core.bindings_of(&instance.id).await? {
            if binding.operations.running().is_some() || binding.credentials.is_none() {
                continue;
            }
            let mut output = backend
                .bind(&instance.deployed(), &binding, &manifest)
                .await
                .map_err(|e| OsbError::Unavailable(format!("binding {}: {}", binding.id, e.message)))?;
            keep_esm_keys(binding.credentials.as_ref(), &mut output.credentials);
            self.core
                .records
                .modify::<Binding, OsbError, _>(&binding.id, |current| {
                    if !current.is_live() || current.operations.running().is_some() || current.credentials.is_none() {
                        return Ok(false);
                    }
                    current.credentials = Some(Credentials(output.credentials.clone()));
                    current.endpoints.clone_from(&output.endpoints);
                    Ok(true)
                })
                .await?;
        }
        Ok(())
    }

    /// How far the evacuation of draining engine `name` is: counted over at most
    /// [`COUNTED`] of its instances.
    pub(super) async fn evacuation(&self, name: &str) -> OsbResult<Evacuation> {
        let registry = self.broker.registrar().registry().await?.record;
        let filters = vec![(index::ENGINE.to_owned(), name.to_owned()), (index::LIVE.to_owned(), "1".to_owned())];
        let (instances, more) = self.core.page_of::<ServiceInstance>(filters, None, COUNTED).await?;
        let blocked = self.room.evacuation_blocked_by(name);
        let mut progress = Evacuation { counted_all: more.is_none(), blocked, ..Evacuation::default() };
        for instance in &instances {
            let moving = instance.operations.running().is_some_and(|op| op.kind == OperationKind::Relocate);
            if instance.engine() != name {
                progress.leaving += 1;
            } else if moving {
                progress.moving += 1;
            } else if relocatable(&registry, instance) {
                progress.to_move += 1;
            } else {
                progress.staying += 1;
            }
        }
        Ok(progress)
    }
}

/// Whether `instance`'s plan lets a drain move it.
fn relocatable(registry: &Registry, instance: &ServiceInstance) -> bool {
    let plan = registry.service(&instance.service_id).and_then(|s| s.plan(&instance.plan_id));
    plan.and_then(|p| p.placement().ok()).is_some_and(|rule| rule.relocatable)
}

/// Copies esm's own keys ([`KEPT_KEYS`]) from `old` credentials into `new` ones.
fn keep_esm_keys(old: Option<&Credentials>, new: &mut Value) {
    let (Some(Value::Object(old)), Value::Object(new)) = (old.map(|c| &c.0), new) else { return };
    for key in KEPT_KEYS {
        if let Some(value) = old.get(key) {
            new.insert(key.to_owned(), value.clone());
        }
    }
}
