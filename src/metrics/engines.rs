//! `esm_engine_*`: each engine's state, the instances placed on it and its capacity,
//! read by a scrape at most every [`super::census::MAX_AGE`] (the loads are counted from
//! the instance index, as `esm_instances` is). The rows are replaced whole, so an engine
//! that was removed leaves no series behind (engine names are bounded, and at most 1000
//! engines exist).

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::domain::engine::EngineState;

/// One engine as a scrape read it.
#[derive(Debug, Clone)]
pub struct EngineRow {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: EngineState,
    /// Instances and pool members placed on it.
    pub instances: u64,
    /// The most it takes, if it has a limit.
    pub capacity: Option<u32>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EngineLabels {
    engine: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    engine: String,
    state: &'static str,
}

/// The rows last read, encoded as the `esm_engine_*` families.
#[derive(Debug, Default)]
pub(super) struct Engines {
    rows: Mutex<Arc<Vec<EngineRow>>>,
    /// When they were read.
    taken: Mutex<Option<Instant>>,
}

impl Engines {
    /// Replaces the rows.
    pub(super) fn set(&self, rows: Vec<EngineRow>) {
        *self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rows);
        *self.taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether the rows are older than [`super::census::MAX_AGE`] (or were never read).
    pub(super) fn due(&self) -> bool {
        let taken = *self.taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        taken.is_none_or(|at| at.elapsed() >= super::census::MAX_AGE)
    }
}

impl Collector for Engines {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let label = |row: &EngineRow| EngineLabels { engine: row.name.clone() };
        let mut up = encoder.encode_descriptor(
            "esm_engine_up",
            "1 when the engine takes placements or only an operator keeps it from them (active, cordoned, draining), 0 when it does not answer (unreachable, needs_repair), by engine",
            None,
            MetricType::Gauge,
        )?;
        for row in rows.iter() {
            let answers = !matches!(row.state, EngineState::Unreachable | EngineState::NeedsRepair);
            ConstGauge::new(i64::from(answers)).encode(up.encode_family(&label(row))?)?;
        }
        let mut instances = encoder.encode_descriptor(
            "esm_engine_instances",
            "Instances and warm pool members placed on each engine",
            None,
            MetricType::Gauge,
        )?;
        for row in rows.iter() {
            let count = i64::try_from(row.instances).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(instances.encode_family(&label(row))?)?;
        }
        let mut capacity = encoder.encode_descriptor(
            "esm_engine_capacity",
            "The most instances each engine with a limit takes (engines without one have no series)",
            None,
            MetricType::Gauge,
        )?;
        for row in rows.iter() {
            if let Some(limit) = row.capacity {
                ConstGauge::new(i64::from(limit)).encode(capacity.encode_family(&label(row))?)?;
            }
        }
        let mut state = encoder.encode_descriptor(
            "esm_engine_state",
            "1 for each engine's current state (active, cordoned, draining, unreachable, needs_repair), 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for row in rows.iter() {
            for each in EngineState::ALL {
                let labels = StateLabels { engine: row.name.clone(), state: each.as_str() };
                ConstGauge::new(i64::from(each == row.state)).encode(state.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
