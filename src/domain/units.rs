//! CPU and memory as an engine's capacity counts them (`engine::Capacity`): written as
//! compose writes limits (`cpus: 1.5`, `mem_limit: 512m`), kept in whole units, so
//! that room is slots a store's insert hands out one at a time, as instance slots are
//! (`broker::engines::placement`). A deployment's declared limits
//! ([`crate::backend::Demand`]) are rounded up to units.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::backend::Demand;

/// A unit of CPU: a tenth of one, in thousandths.
pub const CPU_UNIT_MILLIS: u64 = 100;
/// A unit of memory: 256 MiB.
pub const MEMORY_UNIT_BYTES: u64 = 256 << 20;
/// The most memory an engine may declare: 16 TiB (65,536 units).
pub const MAX_MEMORY_BYTES: u64 = 16 << 40;

/// A number of CPUs, in thousandths; written and answered as a number (`0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus(u64);

impl Cpus {
    /// Whole units of it (tenths of a CPU).
    pub fn units(self) -> u64 {
        self.0 / CPU_UNIT_MILLIS
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[allow(clippy::cast_precision_loss)]
        serializer.serialize_f64(self.0 as f64 / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let nanos = crate::manifest::cpus_of(&value).map_err(serde::de::Error::custom)?;
        let millis = u64::try_from(nanos).unwrap_or(0) / 1_000_000;
        if millis < CPU_UNIT_MILLIS {
            return Err(serde::de::Error::custom("cpus must be at least 0.1"));
        }
        Ok(Self(millis))
    }
}

/// An amount of memory, in bytes; written as compose writes it (`64g`, or bytes),
/// answered in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory(u64);

impl Memory {
    /// In bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// Whole units of it (256 MiB).
    pub fn units(self) -> u64 {
        self.0 / MEMORY_UNIT_BYTES
    }

    /// At least one unit, at most [`MAX_MEMORY_BYTES`].
    pub fn check(self) -> Result<(), String> {
        if self.0 < MEMORY_UNIT_BYTES || self.0 > MAX_MEMORY_BYTES {
            return Err("capacity.memory must be between 256m and 16t".into());
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Memory {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let bytes = crate::manifest::bytes_of(&value).map_err(serde::de::Error::custom)?;
        Ok(Self(u64::try_from(bytes).unwrap_or(0)))
    }
}

/// The units a deployment declaring `demand` takes: (CPU, memory), rounded up.
pub fn wanted(demand: Demand) -> (u64, u64) {
    (demand.cpu_millis.div_ceil(CPU_UNIT_MILLIS), demand.memory_bytes.div_ceil(MEMORY_UNIT_BYTES))
}

/// Units as people read them: CPUs (`1.5 CPUs`) or memory (`768 MiB`, `2.0 GiB`).
pub fn shown(kind: UnitKind, units: u64) -> String {
    match kind {
        #[allow(clippy::cast_precision_loss)]
        UnitKind::Cpu => format!("{} CPUs", units as f64 / 10.0),
        UnitKind::Memory if units.is_multiple_of(4) => format!("{} GiB", units / 4),
        UnitKind::Memory => format!("{} MiB", units * 256),
    }
}

/// Which units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Tenths of a CPU.
    Cpu,
    /// 256 MiB of memory.
    Memory,
}

impl UnitKind {
    /// As slot ids spell it (`slot/<engine>/cpu/<n>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Memory => "memory",
        }
    }

    /// What people call it.
    pub fn what(self) -> &'static str {
        match self {
            Self::Cpu => "CPU",
            Self::Memory => "memory",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn capacities_read_as_compose_writes_limits_and_count_whole_units() {
        let cpus: Cpus = serde_json::from_value(json!(1.55)).expect("cpus");
        assert_eq!((cpus.units(), serde_json::to_value(cpus).expect("json")), (15, json!(1.55)));
        let memory: Memory = serde_json::from_value(json!("2g")).expect("memory");
        assert_eq!((memory.units(), memory.check()), (8, Ok(())));
        for bad in [json!(0.05), json!(-1), json!(2000), json!("many"), json!([1])] {
            assert!(serde_json::from_value::<Cpus>(bad.clone()).is_err(), "{bad}");
        }
        for bad in [json!("1m"), json!(1024)] {
            let memory: Result<Memory, _> = serde_json::from_value(bad.clone());
            assert!(memory.map_or(true, |m| m.check().is_err()), "{bad}");
        }
        assert!(serde_json::from_value::<Memory>(json!("32t")).expect("parses").check().is_err());
        let demand = Demand { cpu_millis: 1_550, memory_bytes: (256 << 20) + 1 };
        assert_eq!(wanted(demand), (16, 2));
        assert_eq!((shown(UnitKind::Cpu, 15), shown(UnitKind::Memory, 6)), ("1.5 CPUs".into(), "1536 MiB".into()));
    }
}
