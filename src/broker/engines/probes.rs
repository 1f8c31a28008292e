//! Whether each engine answers. Every replica probes every declared engine each
//! `ESM_ENGINE_PROBE_INTERVAL`, each probe within its own deadline; the record changes
//! only when the answer does (reachable, unreachable, needs repair, new facts), so the
//! store sees a write per change, not per probe. An engine that answers again is
//! reconciled (its orphans removed) before it is marked reachable, so it takes no
//! placement before that. The default engine is not probed
//! here: its backends are the settings', and `/health` reports them as it always did.

use std::sync::Arc;

use futures_util::StreamExt;

use super::Engines;
use crate::broker::Broker;
use crate::domain::engine::{Engine, Health};
use crate::domain::event::Event;
use crate::error::OsbResult;
use crate::store::StoreError;

/// Engines probed at once.
const PROBES_AT_ONCE: usize = 16;

impl Engines<'_> {
    /// Probes every engine each `probe_interval`, until shutdown.
    pub fn spawn_prober(&self) {
        let every = self.core.settings.engines.probe_interval;
        self.broker.spawn_every(every, |broker: Arc<Broker>| async move {
            if let Err(e) = broker.engines().probe_round().await {
                tracing::warn!(error = %e, "cannot probe the engines");
            }
        });
    }

    /// Probes every declared engine once and records what changed.
    pub async fn probe_round(&self) -> OsbResult<()> {
        let engines = self.read_engines().await?;
        let names: Vec<&str> = engines.iter().map(|e| e.name.as_str()).collect();
        self.room.forget_others(&names);
        let probes: Vec<_> = engines.iter().filter(|e| !e.is_default()).map(|engine| self.probe(engine)).collect();
        let probed: Vec<OsbResult<()>> =
            futures_util::stream::iter(probes).buffer_unordered(PROBES_AT_ONCE).collect().await;
        self.room.invalidate();
        probed.into_iter().collect()
    }

    /// Probes one engine and records its answer if it changed anything.
    async fn probe(&self, engine: &Engine) -> OsbResult<()> {
        let deadline = self.core.settings.engines.probe_interval.max(std::time::Duration::from_secs(1));
        let result = match self.backend_for(engine).await {
            Ok(backend) => match tokio::time::timeout(deadline, backend.probe()).await {
                // Back: what it holds for instances esm does not know (deprovisioned
                // while it was away) goes before it takes placements.
                Ok(Ok(facts)) if engine.health != Health::Reachable => {
                    match self.broker.inventory().reconcile_engine(&engine.name, backend.as_ref()).await {
                        Ok(_) => Ok(facts),
                        Err(e) => Err(format!("answers, but reconciling it failed: {e}")),
                    }
                }
                Ok(Ok(facts)) => Ok(facts),
                Ok(Err(e)) => Err(e.message),
                Err(_) => Err(format!("no answer within {} s", deadline.as_secs())),
            },
            Err(e) => Err(e.to_string()),
        };
        let now = self.core.clock().timestamp();
        self.room.probed(&engine.name, now);
        for _ in 0..3 {
            let Some(stored) = self.core.records.get::<Engine>(&engine.name).await? else { return Ok(()) };
            let mut record = stored.record.clone();
            match &result {
                Ok(facts) => {
                    if record.health == Health::Unreachable {
                        tracing::info!(engine = %engine.name, "engine answers again");
                        record.health = Health::Reachable;
                        record.unreachable_since = None;
                    }
                    record.problem = None;
                    record.facts = Some(facts.clone());
                }
                Err(why) => {
                    record.problem = Some(why.clone());
                    let since = *record.unreachable_since.get_or_insert(now);
                    if record.health == Health::Reachable {
                        tracing::warn!(engine = %engine.name, problem = %why, "engine does not answer: no placements there");
                        record.health = Health::Unreachable;
                    }
                    if record.health == Health::Unreachable
                        && now.since(since) >= self.core.settings.engines.repair_after
                    {
                        tracing::warn!(engine = %engine.name, "engine has not answered for the repair threshold: it needs repair");
                        record.health = Health::NeedsRepair;
                    }
                }
            }
            if record == stored.record {
                return Ok(());
            }
            record.updated_at = now;
            match self.core.records.replace(stored.version, &record).await {
                Ok(_) => {
                    let (before, after) = (stored.record.state(), record.state());
                    if before != after {
                        let why = record.problem.clone().unwrap_or_else(|| "answers again".to_owned());
                        let event = Event::on_engine(&engine.name, Some(before.as_str()), after.as_str());
                        self.core.events.emit(event.because(why));
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
